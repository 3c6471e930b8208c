//! configMapGenerator / secretGenerator and the name hash suffix.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::kustomization::{GeneratorArgs, GeneratorOptions};
use crate::loader::Loader;
use crate::resource::{Behavior, Resource};
use crate::value::{Map, Value};

/// Where a generator reads its sources from.
pub struct GenCtx<'a> {
    /// The loader.
    pub loader: &'a Loader,
    /// The kustomization directory.
    pub dir: &'a Path,
    /// The kustomization file.
    pub file: &'a Path,
}

fn remove_quotes(s: &str) -> &str {
    let b = s.as_bytes();
    if b.len() >= 2 && b[0] == b[b.len() - 1] && (b[0] == b'"' || b[0] == b'\'') {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

/// Merges generatorOptions into an entry's options (global wins for maps, flags OR).
pub fn merge_options(
    local: Option<&GeneratorOptions>,
    global: Option<&GeneratorOptions>,
) -> GeneratorOptions {
    let mut o = local.cloned().unwrap_or_default();
    if let Some(g) = global {
        for (k, v) in &g.labels {
            o.labels.insert(k.clone(), v.clone());
        }
        for (k, v) in &g.annotations {
            o.annotations.insert(k.clone(), v.clone());
        }
        o.disable_name_suffix_hash |= g.disable_name_suffix_hash;
        o.immutable |= g.immutable;
    }
    o
}

fn load_pairs(
    ctx: &GenCtx<'_>,
    args: &GeneratorArgs,
    field: &str,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut pairs = Vec::new();
    for env in &args.envs {
        let bytes = ctx.loader.read_bytes(ctx.dir, env, ctx.file, field)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::field(ctx.file, field, format!("env file {env} is not UTF-8")))?;
        for (i, line) in text.lines().enumerate() {
            let line = if i == 0 {
                line.trim_start_matches('\u{feff}')
            } else {
                line
            };
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = match line.split_once('=') {
                Some((k, v)) => (k, v),
                None => (line, ""),
            };
            if k.is_empty() || k.contains(char::is_whitespace) {
                return Err(Error::field(
                    ctx.file,
                    field,
                    format!("env file {env}: invalid variable name '{k}'"),
                ));
            }
            pairs.push((k.to_string(), v.as_bytes().to_vec()));
        }
    }
    for lit in &args.literals {
        match lit.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                pairs.push((k.to_string(), remove_quotes(v).as_bytes().to_vec()));
            }
            _ => {
                return Err(Error::field(
                    ctx.file,
                    field,
                    format!("invalid literal source {lit}, expected key=value"),
                ));
            }
        }
    }
    for f in &args.files {
        let (key, path) = match f.matches('=').count() {
            0 => (
                Path::new(f)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                f.as_str(),
            ),
            1 => match f.split_once('=') {
                Some((k, p)) if !k.is_empty() && !p.is_empty() => (k.to_string(), p),
                _ => {
                    return Err(Error::field(
                        ctx.file,
                        field,
                        format!("invalid file source '{f}'"),
                    ));
                }
            },
            _ => {
                return Err(Error::field(
                    ctx.file,
                    field,
                    format!("source {f:?} key name or file path contains '='"),
                ));
            }
        };
        let bytes = ctx.loader.read_bytes(ctx.dir, path, ctx.file, field)?;
        pairs.push((key, bytes));
    }
    let mut seen = std::collections::HashSet::new();
    for (k, _) in &pairs {
        if !seen.insert(k.clone()) {
            return Err(Error::field(
                ctx.file,
                field,
                format!("{} {} illegally repeats the key `{k}`", field, args.name),
            ));
        }
    }
    Ok(pairs)
}

fn wrap_base64(bytes: &[u8]) -> String {
    let enc = base64::engine::general_purpose::STANDARD.encode(bytes);
    if enc.len() < 70 {
        return enc;
    }
    let mut out = String::new();
    for chunk in enc.as_bytes().chunks(70) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out
}

/// Generates one ConfigMap or Secret.
pub fn generate(
    ctx: &GenCtx<'_>,
    args: &GeneratorArgs,
    global: Option<&GeneratorOptions>,
    secret: bool,
) -> Result<Resource> {
    let field = if secret {
        "secretGenerator"
    } else {
        "configMapGenerator"
    };
    if args.name.is_empty() {
        return Err(Error::field(
            ctx.file,
            field,
            "a generator must have a name",
        ));
    }
    let opts = merge_options(args.options.as_ref(), global);
    let pairs = load_pairs(ctx, args, field)?;
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), Value::Str("v1".into()));
    obj.insert(
        "kind".into(),
        Value::Str(if secret { "Secret" } else { "ConfigMap" }.into()),
    );
    let mut meta = Map::new();
    meta.insert("name".into(), Value::Str(args.name.clone()));
    if !args.namespace.is_empty() {
        meta.insert("namespace".into(), Value::Str(args.namespace.clone()));
    }
    if !opts.labels.is_empty() {
        meta.insert("labels".into(), string_map(&opts.labels));
    }
    if !opts.annotations.is_empty() {
        meta.insert("annotations".into(), string_map(&opts.annotations));
    }
    obj.insert("metadata".into(), Value::Map(meta));
    if secret {
        let t = if args.secret_type.is_empty() {
            "Opaque"
        } else {
            &args.secret_type
        };
        obj.insert("type".into(), Value::Str(t.to_string()));
        let mut data = Map::new();
        for (k, v) in pairs {
            data.insert(k, Value::Str(wrap_base64(&v)));
        }
        obj.insert("data".into(), Value::Map(data));
    } else {
        let mut data = Map::new();
        let mut binary = Map::new();
        for (k, v) in pairs {
            match String::from_utf8(v) {
                Ok(s) => {
                    data.insert(k, Value::Str(s));
                }
                Err(e) => {
                    binary.insert(k, Value::Str(wrap_base64(e.as_bytes())));
                }
            }
        }
        if !data.is_empty() {
            obj.insert("data".into(), Value::Map(data));
        }
        if !binary.is_empty() {
            obj.insert("binaryData".into(), Value::Map(binary));
        }
    }
    if opts.immutable {
        obj.insert("immutable".into(), Value::Bool(true));
    }
    let mut r = Resource::new(Value::Map(obj));
    r.needs_hash = !opts.disable_name_suffix_hash;
    r.behavior = match args.behavior.as_str() {
        "create" => Behavior::Create,
        "merge" => Behavior::Merge,
        "replace" => Behavior::Replace,
        "" => Behavior::Unspecified,
        // kustomize accepts unknown values and treats them as unspecified.
        _ => Behavior::Unspecified,
    };
    Ok(r)
}

fn string_map(m: &BTreeMap<String, String>) -> Value {
    Value::Map(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::Str(v.clone())))
            .collect(),
    )
}

/// Writes a value as Go's `encoding/json` would (sorted keys, HTML-escaped).
pub fn go_json(v: &Value, out: &mut String) {
    match v {
        Value::Null | Value::EmptyNull => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => out.push_str(&crate::value::format_float(*f)),
        Value::Str(s) => go_json_string(s, out),
        Value::Seq(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(item, out);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push('{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_string(k, out);
                out.push(':');
                go_json(v, out);
            }
            out.push('}');
        }
    }
}

fn go_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn encode_hash(hex: &str) -> String {
    hex.chars()
        .take(10)
        .map(|c| match c {
            '0' => 'g',
            '1' => 'h',
            '3' => 'k',
            'a' => 'm',
            'e' => 't',
            c => c,
        })
        .collect()
}

/// kustomize's content hash of a ConfigMap or Secret (the name suffix).
pub fn hash(r: &Resource) -> String {
    let obj = &r.obj;
    let field = |k: &str| -> Value {
        match obj.get(k) {
            None => Value::Str(String::new()),
            Some(Value::Map(m)) => Value::Map(m.clone()),
            Some(other) => Value::Str(other.scalar_string().unwrap_or_default()),
        }
    };
    let mut m = Map::new();
    match r.kind() {
        "ConfigMap" => {
            m.insert("kind".into(), Value::Str("ConfigMap".into()));
            // kustomize looks the name up with a path it cannot resolve, so
            // the name is always hashed as "".
            m.insert("name".into(), Value::Str(String::new()));
            m.insert("data".into(), field("data"));
            if let Some(Value::Map(b)) = obj.get("binaryData") {
                m.insert("binaryData".into(), Value::Map(b.clone()));
            }
        }
        "Secret" => {
            m.insert("kind".into(), Value::Str("Secret".into()));
            m.insert("type".into(), field("type"));
            m.insert("name".into(), Value::Str(String::new()));
            m.insert("data".into(), field("data"));
            if let Some(Value::Map(b)) = obj.get("stringData") {
                m.insert("stringData".into(), Value::Map(b.clone()));
            }
        }
        _ => return encode_hash(&hex::encode(Sha256::digest(crate::yaml::emit(obj)))),
    }
    let mut s = String::new();
    go_json(&Value::Map(m), &mut s);
    encode_hash(&hex::encode(Sha256::digest(s.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_removed_from_literals() {
        assert_eq!(remove_quotes("'a'"), "a");
        assert_eq!(remove_quotes("\"a"), "\"a");
    }

    #[test]
    fn go_json_escapes_html() {
        let mut s = String::new();
        go_json(&Value::Str("<a&b>".into()), &mut s);
        assert_eq!(s, "\"\\u003ca\\u0026b\\u003e\"");
    }
}
