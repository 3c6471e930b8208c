//! Flags shared by every controller binary.
//!
//! [`RuntimeArgs`] carries the flags that `fluxcd/pkg/runtime` binds in every Flux controller, with Flux's names
//! and defaults, so that a Deployment written for Flux starts a Riptide controller unchanged. Each controller
//! flattens it into its own parser:
//!
//! ```
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Flags {
//!     #[command(flatten)]
//!     runtime: common::cli::RuntimeArgs,
//!     /// A flag only this controller has.
//!     #[arg(long, default_value = "/data")]
//!     storage_path: String,
//! }
//!
//! let flags = Flags::parse_from(["source-controller", "--concurrent=2", "--log-encoding=console"]);
//! assert_eq!(flags.runtime.concurrent, 2);
//! ```
//!
//! A controller whose Flux default differs overrides it in its parser; source-controller's `--concurrent` is 2:
//!
//! ```
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! #[command(mut_arg("concurrent", |a| a.default_value("2")))]
//! struct Flags {
//!     #[command(flatten)]
//!     runtime: common::cli::RuntimeArgs,
//! }
//!
//! assert_eq!(Flags::parse_from(["source-controller"]).runtime.concurrent, 2);
//! ```
//!
//! Boolean flags behave like Go's: `--flag` and `--flag=true` set them, `--flag=false` clears them.
//! Durations use Go's syntax (`750ms`, `15m`, `1h30m`, `1.5h`).
//!
//! `--enable-leader-election` defaults to `false`, as in `fluxcd/pkg/runtime/leaderelection`; Flux's
//! manifests pass `--enable-leader-election` explicitly, and the Riptide chart does the same.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;

/// The environment variable holding the namespace the controller runs in (Flux's `RUNTIME_NAMESPACE`).
pub const RUNTIME_NAMESPACE_ENV: &str = "RUNTIME_NAMESPACE";

/// The default of `--watch-configs-label-selector`: Flux's `reconcile.fluxcd.io/watch=Enabled`.
pub const DEFAULT_WATCH_CONFIGS_LABEL_SELECTOR: &str = "reconcile.fluxcd.io/watch=Enabled";

/// A flag value that could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CliError {
    /// The duration is not in Go's `time.ParseDuration` format.
    #[error("invalid duration {input:?}: {reason}")]
    Duration {
        /// The rejected input.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The listen address is neither `:port`, `host:port` with an IP or `localhost`, nor `[ipv6]:port`.
    #[error("invalid listen address {0:?}: expected \":port\" or \"ip:port\"")]
    ListenAddr(String),
    /// A `--feature-gates` entry is not `Name=true|false`.
    #[error("invalid feature gate {0:?}: expected Name=true or Name=false")]
    FeatureGate(String),
    /// `--interval-jitter-percentage` must be below 100.
    #[error("invalid jitter percentage {0}: must be less than 100")]
    JitterPercentage(u8),
}

/// Log verbosity, as Flux's `--log-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    /// Everything, including trace events.
    Trace,
    /// Debug and above.
    Debug,
    /// Info and above (the default).
    Info,
    /// Errors only.
    Error,
}

impl LogLevel {
    /// The level as a `tracing` filter directive (`"trace"`, `"debug"`, `"info"`, `"error"`).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Error => "error",
        }
    }
}

/// Log encoding, as Flux's `--log-encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogEncoding {
    /// One JSON object per line (the default).
    Json,
    /// Human-readable text.
    Console,
}

/// The flags every Riptide controller accepts, named and defaulted as in `fluxcd/pkg/runtime`.
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeArgs {
    /// The address the metric endpoint binds to.
    #[arg(long, default_value = ":8080", value_parser = parse_listen_addr)]
    pub metrics_addr: SocketAddr,

    /// The address the health endpoint binds to.
    #[arg(long, default_value = ":9440", value_parser = parse_listen_addr)]
    pub health_addr: SocketAddr,

    /// The number of concurrent reconciles per controller.
    #[arg(long, default_value_t = 4)]
    pub concurrent: u16,

    /// The interval at which failing dependencies are reevaluated.
    #[arg(long, default_value = "30s", value_parser = parse_go_duration)]
    pub requeue_dependency: Duration,

    /// Log verbosity level.
    #[arg(long, value_enum, default_value = "info")]
    pub log_level: LogLevel,

    /// Log encoding format.
    #[arg(long, value_enum, default_value = "json")]
    pub log_encoding: LogEncoding,

    /// Enable leader election for controller manager. Enabling this will ensure there is only one active
    /// controller manager.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub enable_leader_election: bool,

    /// Interval at which non-leader candidates will wait to force acquire leadership (duration string).
    #[arg(long, default_value = "35s", value_parser = parse_go_duration)]
    pub leader_election_lease_duration: Duration,

    /// Duration that the leading controller manager will retry refreshing leadership before giving up
    /// (duration string).
    #[arg(long, default_value = "30s", value_parser = parse_go_duration)]
    pub leader_election_renew_deadline: Duration,

    /// Duration the leader election clients should wait between tries of actions (duration string).
    #[arg(long, default_value = "5s", value_parser = parse_go_duration)]
    pub leader_election_retry_period: Duration,

    /// Defines if the leader should step down voluntarily on controller manager shutdown.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub leader_election_release_on_cancel: bool,

    /// The minimum amount of time for which an object being reconciled will have to wait before a retry.
    #[arg(long, default_value = "750ms", value_parser = parse_go_duration)]
    pub min_retry_delay: Duration,

    /// The maximum amount of time for which an object being reconciled will have to wait before a retry.
    #[arg(long, default_value = "15m", value_parser = parse_go_duration)]
    pub max_retry_delay: Duration,

    /// Percentage of jitter to apply to interval durations. A value of 10 will apply a jitter of +/-10% to the
    /// interval duration. It cannot be negative, and must be less than 100.
    #[arg(long, default_value_t = 5, value_parser = parse_jitter_percentage)]
    pub interval_jitter_percentage: u8,

    /// The maximum queries-per-second of requests sent to the Kubernetes API.
    #[arg(long, default_value_t = 50.0)]
    pub kube_api_qps: f32,

    /// The maximum burst queries-per-second of requests sent to the Kubernetes API.
    #[arg(long, default_value_t = 300)]
    pub kube_api_burst: u32,

    /// A comma separated list of key=value pairs defining the state of experimental features.
    #[arg(long, default_value = "")]
    pub feature_gates: FeatureGates,

    /// Watch for resources with matching labels e.g. 'sharding.fluxcd.io/shard=shard1'.
    #[arg(long, default_value = "")]
    pub watch_label_selector: String,

    /// Watch for ConfigMaps and Secrets with matching labels.
    #[arg(long, default_value = DEFAULT_WATCH_CONFIGS_LABEL_SELECTOR)]
    pub watch_configs_label_selector: String,

    /// Watch for resources in all namespaces, if set to false it will only watch the runtime namespace
    /// (the RUNTIME_NAMESPACE environment variable).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub watch_all_namespaces: bool,

    /// The address of the events receiver.
    #[arg(long)]
    pub events_addr: Option<String>,

    /// When set to true, references between custom resources are allowed only if the reference and the referee
    /// are in the same namespace.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub no_cross_namespace_refs: bool,
}

impl RuntimeArgs {
    /// The namespace to watch: `None` means all namespaces.
    ///
    /// With `--watch-all-namespaces=false` this is the `RUNTIME_NAMESPACE` environment variable; as in Flux, an
    /// unset or empty variable falls back to all namespaces.
    pub fn watched_namespace(&self) -> Option<String> {
        self.watched_namespace_in(std::env::var(RUNTIME_NAMESPACE_ENV).ok())
    }

    /// [`Self::watched_namespace`] with the runtime namespace given instead of read from the environment.
    pub fn watched_namespace_in(&self, runtime_namespace: Option<String>) -> Option<String> {
        if self.watch_all_namespaces {
            return None;
        }
        runtime_namespace.filter(|ns| !ns.is_empty())
    }

    /// Whether `--feature-gates` enables the feature `name`; features not mentioned are disabled.
    pub fn feature_enabled(&self, name: &str) -> bool {
        self.feature_gates.enabled(name).unwrap_or(false)
    }

    /// The per-object retry backoff from `--min-retry-delay` and `--max-retry-delay`.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            min: self.min_retry_delay,
            max: self.max_retry_delay,
        }
    }

    /// The interval jitter from `--interval-jitter-percentage`.
    pub fn interval_jitter(&self) -> IntervalJitter {
        IntervalJitter {
            percentage: self.interval_jitter_percentage,
        }
    }

    /// The leader election timings from the `--leader-election-*` flags.
    pub fn leader_election_timings(&self) -> crate::leader::LeaseTimings {
        crate::leader::LeaseTimings {
            lease_duration: self.leader_election_lease_duration,
            renew_deadline: self.leader_election_renew_deadline,
            retry_period: self.leader_election_retry_period,
        }
    }

    /// `--watch-label-selector`, or `None` when empty (watch everything).
    pub fn watch_label_selector(&self) -> Option<&str> {
        Some(self.watch_label_selector.as_str()).filter(|s| !s.is_empty())
    }

    /// `--events-addr`, or `None` when unset or empty (no notification-controller).
    pub fn events_addr(&self) -> Option<&str> {
        self.events_addr.as_deref().filter(|s| !s.is_empty())
    }
}

/// Exponential per-object backoff between `min` and `max`, like Flux's item exponential failure rate limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay after the first failure.
    pub min: Duration,
    /// The cap on the delay.
    pub max: Duration,
}

impl RetryPolicy {
    /// The delay before retrying after `failures` consecutive failures (`failures` counts from 0):
    /// `min * 2^failures`, capped at `max`.
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 2u32.checked_pow(failures.min(31)).unwrap_or(u32::MAX);
        self.min
            .checked_mul(factor)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// Jitter applied to reconcile intervals, as Flux's `--interval-jitter-percentage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntervalJitter {
    /// The jitter in percent of the interval (below 100).
    pub percentage: u8,
}

impl IntervalJitter {
    /// `interval` shifted by a random amount within ±`percentage`% of itself.
    pub fn apply(&self, interval: Duration) -> Duration {
        self.apply_with(interval, &mut rand::rng())
    }

    /// [`Self::apply`] with the random source given (for deterministic tests).
    pub fn apply_with<R: Rng + ?Sized>(&self, interval: Duration, rng: &mut R) -> Duration {
        if self.percentage == 0 || interval.is_zero() {
            return interval;
        }
        let spread = interval.as_secs_f64() * f64::from(self.percentage.min(99)) / 100.0;
        let offset = rng.random_range(-spread..=spread);
        Duration::from_secs_f64((interval.as_secs_f64() + offset).max(0.0))
    }
}

/// The parsed `--feature-gates` flag: feature name to enabled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeatureGates(BTreeMap<String, bool>);

impl FeatureGates {
    /// The state the flag gives feature `name`, or `None` when the flag does not mention it.
    pub fn enabled(&self, name: &str) -> Option<bool> {
        self.0.get(name).copied()
    }

    /// Every feature the flag mentions, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, bool)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

impl FromStr for FeatureGates {
    type Err = CliError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut gates = BTreeMap::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, value) = entry
                .split_once('=')
                .ok_or_else(|| CliError::FeatureGate(entry.to_owned()))?;
            let name = name.trim();
            let value = match value.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "t" => true,
                "false" | "0" | "f" => false,
                _ => return Err(CliError::FeatureGate(entry.to_owned())),
            };
            if name.is_empty() {
                return Err(CliError::FeatureGate(entry.to_owned()));
            }
            gates.insert(name.to_owned(), value);
        }
        Ok(FeatureGates(gates))
    }
}

impl fmt::Display for FeatureGates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, enabled)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{name}={enabled}")?;
        }
        Ok(())
    }
}

/// Parses a listen address the way Go's `net.Listen` reads it: `":8080"` is every interface on port 8080,
/// `"127.0.0.1:8080"` and `"[::1]:8080"` are that IP, `"localhost:8080"` is the IPv4 loopback.
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, CliError> {
    let err = || CliError::ListenAddr(s.to_owned());
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| err())?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    match s.rsplit_once(':') {
        Some(("localhost", port)) => {
            let port: u16 = port.parse().map_err(|_| err())?;
            Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
        }
        _ => Err(err()),
    }
}

/// Parses a duration in Go's `time.ParseDuration` syntax: a sequence of decimal numbers, each with an optional
/// fraction and a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), such as `750ms`, `15m`, `1h30m` or `1.5h`.
/// `0` alone is zero. Negative durations are rejected.
pub fn parse_go_duration(s: &str) -> Result<Duration, CliError> {
    let err = |reason| CliError::Duration {
        input: s.to_owned(),
        reason,
    };
    let rest = s.strip_prefix('+').unwrap_or(s);
    if rest.starts_with('-') {
        return Err(err("negative durations are not allowed"));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(err("empty"));
    }
    let mut total_nanos: f64 = 0.0;
    let mut rest = rest;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| err("missing unit"))?;
        let (number, tail) = rest.split_at(number_len);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(err("expected a number"));
        }
        let value: f64 = number.parse().map_err(|_| err("expected a number"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let nanos_per_unit = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        total_nanos += value * nanos_per_unit;
        rest = tail;
    }
    // Go's durations are int64 nanoseconds: about 292 years.
    if total_nanos > i64::MAX as f64 {
        return Err(err("overflow"));
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

fn parse_jitter_percentage(s: &str) -> Result<u8, String> {
    let value: u8 = s.parse().map_err(|e| format!("{e}"))?;
    if value >= 100 {
        return Err(CliError::JitterPercentage(value).to_string());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use rand::SeedableRng;

    #[derive(Parser, Debug)]
    struct Flags {
        #[command(flatten)]
        runtime: RuntimeArgs,
    }

    fn parse(args: &[&str]) -> RuntimeArgs {
        let mut argv = vec!["controller"];
        argv.extend_from_slice(args);
        Flags::try_parse_from(argv).unwrap().runtime
    }

    #[test]
    fn defaults_match_flux() {
        let a = parse(&[]);
        assert_eq!(a.metrics_addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(a.health_addr, "0.0.0.0:9440".parse().unwrap());
        assert_eq!(a.concurrent, 4);
        assert_eq!(a.requeue_dependency, Duration::from_secs(30));
        assert_eq!(a.log_level, LogLevel::Info);
        assert_eq!(a.log_encoding, LogEncoding::Json);
        assert!(!a.enable_leader_election);
        assert_eq!(a.leader_election_lease_duration, Duration::from_secs(35));
        assert_eq!(a.leader_election_renew_deadline, Duration::from_secs(30));
        assert_eq!(a.leader_election_retry_period, Duration::from_secs(5));
        assert!(a.leader_election_release_on_cancel);
        assert_eq!(a.min_retry_delay, Duration::from_millis(750));
        assert_eq!(a.max_retry_delay, Duration::from_secs(15 * 60));
        assert_eq!(a.interval_jitter_percentage, 5);
        assert_eq!(a.kube_api_qps, 50.0);
        assert_eq!(a.kube_api_burst, 300);
        assert_eq!(a.feature_gates, FeatureGates::default());
        assert_eq!(a.watch_label_selector(), None);
        assert_eq!(
            a.watch_configs_label_selector,
            "reconcile.fluxcd.io/watch=Enabled"
        );
        assert!(a.watch_all_namespaces);
        assert_eq!(a.events_addr(), None);
        assert!(!a.no_cross_namespace_refs);
    }

    #[test]
    fn flags_override_defaults() {
        let a = parse(&[
            "--metrics-addr=127.0.0.1:9090",
            "--health-addr",
            ":0",
            "--concurrent=10",
            "--requeue-dependency=1m30s",
            "--log-level=debug",
            "--log-encoding=console",
            "--enable-leader-election",
            "--leader-election-release-on-cancel=false",
            "--min-retry-delay=1s",
            "--max-retry-delay=1h",
            "--interval-jitter-percentage=10",
            "--kube-api-qps=20.5",
            "--kube-api-burst=100",
            "--feature-gates=OOMWatch=true,CacheSecretsAndConfigMaps=false",
            "--watch-label-selector=sharding.fluxcd.io/shard=shard1",
            "--watch-all-namespaces=false",
            "--events-addr=http://notification-controller.flux-system.svc.cluster.local./",
            "--no-cross-namespace-refs=true",
        ]);
        assert_eq!(a.metrics_addr, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(a.health_addr.port(), 0);
        assert_eq!(a.concurrent, 10);
        assert_eq!(a.requeue_dependency, Duration::from_secs(90));
        assert_eq!(a.log_level, LogLevel::Debug);
        assert_eq!(a.log_encoding, LogEncoding::Console);
        assert!(a.enable_leader_election);
        assert!(!a.leader_election_release_on_cancel);
        assert_eq!(
            a.retry_policy(),
            RetryPolicy {
                min: Duration::from_secs(1),
                max: Duration::from_secs(3600)
            }
        );
        assert_eq!(a.interval_jitter().percentage, 10);
        assert_eq!(a.kube_api_qps, 20.5);
        assert_eq!(a.kube_api_burst, 100);
        assert!(a.feature_enabled("OOMWatch"));
        assert!(!a.feature_enabled("CacheSecretsAndConfigMaps"));
        assert!(!a.feature_enabled("Unknown"));
        assert_eq!(
            a.watch_label_selector(),
            Some("sharding.fluxcd.io/shard=shard1")
        );
        assert!(!a.watch_all_namespaces);
        assert_eq!(
            a.events_addr(),
            Some("http://notification-controller.flux-system.svc.cluster.local./")
        );
        assert!(a.no_cross_namespace_refs);
    }

    #[test]
    fn bad_values_are_rejected() {
        for bad in [
            ["--metrics-addr=8080"].as_slice(),
            &["--min-retry-delay=10"],
            &["--max-retry-delay=-1s"],
            &["--interval-jitter-percentage=100"],
            &["--feature-gates=Foo"],
            &["--feature-gates=Foo=maybe"],
            &["--log-level=warn"],
            &["--log-encoding=text"],
            // Go bool flags take their value only with `=`.
            &["--watch-all-namespaces", "false"],
        ] {
            let mut argv = vec!["controller"];
            argv.extend_from_slice(bad);
            assert!(
                Flags::try_parse_from(&argv).is_err(),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn help_documents_every_flag() {
        use clap::CommandFactory;
        let help = Flags::command().render_long_help().to_string();
        for flag in [
            "--metrics-addr",
            "--health-addr",
            "--concurrent",
            "--requeue-dependency",
            "--log-level",
            "--log-encoding",
            "--enable-leader-election",
            "--leader-election-lease-duration",
            "--leader-election-renew-deadline",
            "--leader-election-retry-period",
            "--leader-election-release-on-cancel",
            "--min-retry-delay",
            "--max-retry-delay",
            "--interval-jitter-percentage",
            "--kube-api-qps",
            "--kube-api-burst",
            "--feature-gates",
            "--watch-label-selector",
            "--watch-configs-label-selector",
            "--watch-all-namespaces",
            "--events-addr",
            "--no-cross-namespace-refs",
        ] {
            assert!(help.contains(flag), "{flag} missing from --help");
        }
        assert!(help.contains("[default: :8080]"));
        assert!(help.contains("[default: 750ms]"));
    }

    #[test]
    fn watched_namespace_follows_watch_all_namespaces() {
        let all = parse(&[]);
        assert_eq!(all.watched_namespace_in(Some("flux-system".into())), None);
        let one = parse(&["--watch-all-namespaces=false"]);
        assert_eq!(
            one.watched_namespace_in(Some("flux-system".into())),
            Some("flux-system".into())
        );
        assert_eq!(one.watched_namespace_in(Some(String::new())), None);
        assert_eq!(one.watched_namespace_in(None), None);
    }

    #[test]
    fn go_durations() {
        let ok = [
            ("0", Duration::ZERO),
            ("750ms", Duration::from_millis(750)),
            ("15m", Duration::from_secs(900)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5h", Duration::from_secs(5400)),
            (
                "2h45m30.5s",
                Duration::from_millis((2 * 3600 + 45 * 60 + 30) * 1000 + 500),
            ),
            ("300us", Duration::from_micros(300)),
            ("300µs", Duration::from_micros(300)),
            ("10ns", Duration::from_nanos(10)),
            ("+5s", Duration::from_secs(5)),
            (".5s", Duration::from_millis(500)),
        ];
        for (input, want) in ok {
            assert_eq!(parse_go_duration(input), Ok(want), "{input}");
        }
        for bad in ["", "5", "1x", "s", "1h30", "-1s", "1..5s", "1 h", "h1"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen_addr(":8080"),
            Ok("0.0.0.0:8080".parse().unwrap())
        );
        assert_eq!(
            parse_listen_addr("127.0.0.1:1"),
            Ok("127.0.0.1:1".parse().unwrap())
        );
        assert_eq!(parse_listen_addr("[::1]:9"), Ok("[::1]:9".parse().unwrap()));
        assert_eq!(
            parse_listen_addr("localhost:80"),
            Ok("127.0.0.1:80".parse().unwrap())
        );
        for bad in ["8080", ":", ":99999", "example.com:80", ""] {
            assert!(parse_listen_addr(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn feature_gates_round_trip() {
        let gates: FeatureGates = " B=false, A=true ,,C=1".parse().unwrap();
        assert_eq!(gates.enabled("A"), Some(true));
        assert_eq!(gates.enabled("B"), Some(false));
        assert_eq!(gates.enabled("C"), Some(true));
        assert_eq!(gates.to_string(), "A=true,B=false,C=true");
        assert!("=true".parse::<FeatureGates>().is_err());
    }

    #[test]
    fn retry_policy_doubles_up_to_max() {
        let p = RetryPolicy {
            min: Duration::from_millis(750),
            max: Duration::from_secs(15 * 60),
        };
        assert_eq!(p.backoff(0), Duration::from_millis(750));
        assert_eq!(p.backoff(1), Duration::from_millis(1500));
        assert_eq!(p.backoff(3), Duration::from_millis(6000));
        assert_eq!(p.backoff(20), Duration::from_secs(15 * 60));
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(15 * 60));
    }

    #[test]
    fn jitter_stays_within_percentage() {
        let jitter = IntervalJitter { percentage: 10 };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let interval = Duration::from_secs(100);
        let mut seen_below = false;
        let mut seen_above = false;
        for _ in 0..1000 {
            let d = jitter.apply_with(interval, &mut rng);
            assert!(
                d >= Duration::from_secs(90) && d <= Duration::from_secs(110),
                "{d:?}"
            );
            seen_below |= d < interval;
            seen_above |= d > interval;
        }
        assert!(seen_below && seen_above);
        let none = IntervalJitter { percentage: 0 };
        assert_eq!(none.apply(interval), interval);
    }
}
