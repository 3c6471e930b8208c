//! Logging setup from `--log-level` / `--log-encoding`, reconcile spans, and credential masking.
//!
//! - [`init`] installs the global `tracing` subscriber: JSON lines by default (Flux-like keys `level`, `ts`,
//!   `logger`, `msg`, with the fields of the enclosing spans flattened in), human-readable text with
//!   `--log-encoding=console`; a `RUST_LOG` environment variable, when set, replaces `--log-level`.
//! - [`reconcile_span`] makes the span every reconcile runs in, so each log line names its object.
//! - [`mask_url_credentials`] removes credentials from URLs inside a message. Everything that leaves the process
//!   (logs, events, conditions) must go through it when it may contain a URL.

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::{LogEncoding, LogLevel, RuntimeArgs};

/// Installing the subscriber failed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A global subscriber is already installed (in this process, `init` may succeed once).
    #[error("a global tracing subscriber is already installed: {0}")]
    AlreadyInitialized(#[source] tracing_subscriber::util::TryInitError),
    /// `RUST_LOG` is set but is not a valid filter.
    #[error("invalid RUST_LOG filter: {0}")]
    Filter(#[source] tracing_subscriber::filter::ParseError),
}

/// The filter for `level`, unless `rust_log` (the value of `RUST_LOG`) is set and non-empty.
pub fn filter(level: LogLevel, rust_log: Option<&str>) -> Result<EnvFilter, TelemetryError> {
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        Some(directives) => EnvFilter::try_new(directives).map_err(TelemetryError::Filter),
        None => Ok(EnvFilter::new(level.as_str())),
    }
}

/// Installs the global subscriber for `level` and `encoding`, writing to stderr; `RUST_LOG` overrides `level`.
pub fn init(level: LogLevel, encoding: LogEncoding) -> Result<(), TelemetryError> {
    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let filter = filter(level, rust_log.as_deref())?;
    subscriber(filter, encoding, std::io::stderr)
        .try_init()
        .map_err(TelemetryError::AlreadyInitialized)
}

/// The subscriber [`init`] installs, writing to `writer` instead of stderr.
pub fn subscriber<W>(
    filter: EnvFilter,
    encoding: LogEncoding,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync + 'static>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match encoding {
        LogEncoding::Json => Box::new(
            builder
                .fmt_fields(JsonFields::new())
                .event_format(FlatJson)
                .finish(),
        ),
        LogEncoding::Console => Box::new(builder.with_ansi(false).finish()),
    }
}

/// One JSON object per line with the span fields flattened in, like Flux's zap lines:
/// `{"level":"info","ts":"…","logger":"…","msg":"…","kind":"GitRepository","namespace":"…","name":"…",…}`.
/// Event fields win over span fields of the same name; inner spans win over outer ones.
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "level".into(),
            Value::from(meta.level().as_str().to_ascii_lowercase()),
        );
        line.insert("ts".into(), Value::from(jiff::Timestamp::now().to_string()));
        line.insert("logger".into(), Value::from(meta.target()));
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields.as_str()) {
                    line.extend(fields);
                }
            }
        }
        let mut visitor = JsonVisitor(Map::new());
        event.record(&mut visitor);
        for (key, value) in visitor.0 {
            let key = if key == "message" {
                "msg".to_owned()
            } else {
                key
            };
            line.insert(key, value);
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

struct JsonVisitor(Map<String, Value>);

impl Visit for JsonVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::from(format!("{value:?}")));
    }
}

/// [`init`] from the parsed runtime flags.
pub fn init_from_args(args: &RuntimeArgs) -> Result<(), TelemetryError> {
    init(args.log_level, args.log_encoding)
}

/// The span one reconcile of `kind` `namespace`/`name` runs in, with a fresh `reconcile_id` to tell apart the
/// lines of concurrent or successive reconciles of the same object.
pub fn reconcile_span(kind: &str, namespace: &str, name: &str) -> tracing::Span {
    let reconcile_id = format!("{:032x}", rand::random::<u128>());
    tracing::info_span!("reconcile", kind, namespace, name, reconcile_id)
}

/// `message` with the credentials of every URL in it replaced by `***`.
///
/// A URL's userinfo (what sits between `scheme://` and the last `@` before the host ends) is replaced when it
/// holds a password (`user:password@`), and for `http`/`https` URLs also when it is a single token
/// (`https://ghp_token@github.com`, a common way to pass access tokens). A bare SSH user such as
/// `ssh://git@github.com` is kept. The rest of the message is unchanged.
///
/// ```
/// use common::telemetry::mask_url_credentials;
/// assert_eq!(
///     mask_url_credentials("clone of https://bob:s3cr3t@example.com/repo.git failed"),
///     "clone of https://***@example.com/repo.git failed",
/// );
/// ```
pub fn mask_url_credentials(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(sep) = rest.find("://") {
        let scheme_start = rest[..sep]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let scheme = &rest[scheme_start..sep];
        let authority_start = sep + 3;
        let after = &rest[authority_start..];
        let authority_len = after
            .find(|c: char| {
                matches!(
                    c,
                    '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`' | ',' | ';'
                ) || c.is_whitespace()
            })
            .unwrap_or(after.len());
        let authority = &after[..authority_len];
        out.push_str(&rest[..authority_start]);
        match authority.rfind('@') {
            Some(at) if should_mask(scheme, &authority[..at]) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &after[authority_len..];
    }
    out.push_str(rest);
    out
}

fn should_mask(scheme: &str, userinfo: &str) -> bool {
    if userinfo.is_empty() {
        return false;
    }
    userinfo.contains(':') || matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_user_and_password() {
        assert_eq!(
            mask_url_credentials("https://user:pass@example.com/org/repo.git"),
            "https://***@example.com/org/repo.git"
        );
        assert_eq!(
            mask_url_credentials("ssh://git:hunter2@github.com:22/org/repo"),
            "ssh://***@github.com:22/org/repo"
        );
        assert_eq!(
            mask_url_credentials("oci://u:p@ghcr.io"),
            "oci://***@ghcr.io"
        );
    }

    #[test]
    fn masks_every_url_in_a_message() {
        let msg = "failed to fetch 'https://a:b@one.example/x' and \"http://c:d@two.example?q=1\"; giving up";
        assert_eq!(
            mask_url_credentials(msg),
            "failed to fetch 'https://***@one.example/x' and \"http://***@two.example?q=1\"; giving up"
        );
    }

    #[test]
    fn masks_tokens_in_http_urls_but_keeps_ssh_users() {
        assert_eq!(
            mask_url_credentials("https://ghp_abcdef@github.com/org/repo"),
            "https://***@github.com/org/repo"
        );
        assert_eq!(
            mask_url_credentials("ssh://git@github.com/org/repo"),
            "ssh://git@github.com/org/repo"
        );
    }

    #[test]
    fn passwords_with_at_signs_are_masked_whole() {
        assert_eq!(
            mask_url_credentials("https://user:p@ss@example.com/"),
            "https://***@example.com/"
        );
    }

    #[test]
    fn leaves_everything_else_alone() {
        for msg in [
            "",
            "no urls here",
            "https://example.com/path@v1.2.3",
            "email me at someone@example.com",
            "https://example.com:8443/a?b=c@d",
            "://weird",
            "http://",
            "héllo wörld https://exämple.com/ünïcode",
        ] {
            assert_eq!(mask_url_credentials(msg), msg);
        }
    }

    #[test]
    fn handles_non_ascii_around_urls() {
        assert_eq!(
            mask_url_credentials("échec: https://ü:ö@exämple.com/ fin"),
            "échec: https://***@exämple.com/ fin"
        );
    }

    #[test]
    fn rust_log_overrides_the_level() {
        assert_eq!(filter(LogLevel::Debug, None).unwrap().to_string(), "debug");
        assert_eq!(
            filter(LogLevel::Error, Some("")).unwrap().to_string(),
            "error"
        );
        assert_eq!(
            filter(LogLevel::Info, Some("common=trace"))
                .unwrap()
                .to_string(),
            "common=trace"
        );
        assert!(filter(LogLevel::Info, Some("common=notalevel")).is_err());
    }

    #[test]
    fn second_init_is_an_error_not_a_panic() {
        // Whichever call comes first in this test binary may win; the second must fail cleanly.
        let first = init(LogLevel::Info, LogEncoding::Json);
        let second = init(LogLevel::Info, LogEncoding::Console);
        assert!(second.is_err(), "first: {first:?}");
        assert!(matches!(second, Err(TelemetryError::AlreadyInitialized(_))));
    }

    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(encoding: LogEncoding, level: LogLevel) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let sub = subscriber(filter(level, None).unwrap(), encoding, move || {
            writer.clone()
        });
        tracing::subscriber::with_default(sub, || {
            let span = reconcile_span("GitRepository", "flux-system", "podinfo");
            let _enter = span.enter();
            tracing::debug!("hidden at info");
            tracing::info!(revision = "main@sha1:abc", "stored artifact");
        });
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn json_lines_carry_the_reconcile_span_fields() {
        let out = capture(LogEncoding::Json, LogLevel::Info);
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{out}");
        let line = &lines[0];
        assert_eq!(line["level"], "info");
        assert_eq!(line["msg"], "stored artifact");
        assert_eq!(line["logger"], "common::telemetry::tests");
        assert!(
            line["ts"]
                .as_str()
                .unwrap()
                .parse::<jiff::Timestamp>()
                .is_ok()
        );
        assert_eq!(line["revision"], "main@sha1:abc");
        assert_eq!(line["kind"], "GitRepository");
        assert_eq!(line["namespace"], "flux-system");
        assert_eq!(line["name"], "podinfo");
        assert_eq!(line["reconcile_id"].as_str().unwrap().len(), 32);
    }

    #[test]
    fn console_encoding_is_text_and_level_filters() {
        let out = capture(LogEncoding::Console, LogLevel::Debug);
        assert!(
            out.contains("hidden at info") && out.contains("stored artifact"),
            "{out}"
        );
        assert!(out.contains(r#"name="podinfo""#), "{out}");
        assert!(serde_json::from_str::<serde_json::Value>(out.lines().next().unwrap()).is_err());
        let out = capture(LogEncoding::Console, LogLevel::Error);
        assert!(out.is_empty(), "{out}");
    }
}
