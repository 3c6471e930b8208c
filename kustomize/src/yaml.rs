//! YAML reading (go-yaml v3 scalar resolution, as kustomize reads) and writing
//! (go-yaml v2 style, as kustomize prints: sorted keys, unindented sequences).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::LazyLock;

use regex::Regex;
use saphyr_parser::{Event, Parser, ScalarStyle, Tag};

use crate::value::{Map, Value, float_value, format_float};

/// Parses a multi-document YAML stream. Empty documents are kept as `Null`.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, String> {
    let mut builder = Builder::default();
    let no_final_newline = !text.ends_with('\n');
    let total_chars = if no_final_newline {
        text.chars().count()
    } else {
        0
    };
    for ev in Parser::new_from_str(text) {
        let (mut ev, span) = ev.map_err(|e| e.to_string())?;
        // The parser reports an absent value as a plain `~` with an empty span.
        if let Event::Scalar(s, ScalarStyle::Plain, _, None) = &mut ev
            && s == "~"
            && span.start.index() == span.end.index()
        {
            *s = std::borrow::Cow::Borrowed("");
        }
        // go-yaml (which kustomize uses) keeps an extra line break where a
        // folded scalar moves from a normal line to a more-indented one.
        if let Event::Scalar(s, ScalarStyle::Folded, _, _) = &mut ev
            && s.contains("\n ")
        {
            *s = std::borrow::Cow::Owned(go_yaml_folding(s));
        }
        // A block scalar that ends the input without a final line break has no
        // trailing newline (clip chomping); the parser adds one regardless.
        if no_final_newline
            && let Event::Scalar(s, style, _, _) = &mut ev
            && matches!(style, ScalarStyle::Literal | ScalarStyle::Folded)
            && span.end.index() >= total_chars
            && s.ends_with('\n')
            && !s.ends_with("\n\n")
        {
            let mut owned = s.to_string();
            owned.pop();
            *s = std::borrow::Cow::Owned(owned);
        }
        builder
            .event(ev)
            .map_err(|e| format!("line {}: {e}", span.start.line()))?;
    }
    Ok(builder.docs)
}

/// Parses a single YAML document (the first one; `Null` when empty).
pub fn parse_one(text: &str) -> Result<Value, String> {
    Ok(parse_documents(text)?
        .into_iter()
        .next()
        .unwrap_or(Value::Null))
}

/// Doubles the line break between a normal line and a following
/// more-indented line of a folded scalar, as go-yaml reads it.
fn go_yaml_folding(s: &str) -> String {
    let lines: Vec<&str> = s.split('\n').collect();
    let mut out = String::with_capacity(s.len() + 8);
    for (i, line) in lines.iter().enumerate() {
        out.push_str(line);
        if i + 1 < lines.len() {
            out.push('\n');
            let next = lines[i + 1];
            let blank_led = |l: &str| l.starts_with(' ') || l.starts_with('\t');
            if !line.is_empty() && !blank_led(line) && blank_led(next) {
                out.push('\n');
            }
        }
    }
    out
}

enum Frame {
    Seq(Vec<Value>, usize),
    Map(Map, Option<Value>, usize, Vec<Value>),
}

#[derive(Default)]
struct Builder {
    docs: Vec<Value>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Value>,
}

impl Builder {
    fn event(&mut self, ev: Event<'_>) -> Result<(), String> {
        match ev {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => {}
            Event::DocumentStart(_) => {
                self.anchors.clear();
            }
            Event::Alias(id) => {
                let v = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| "unknown anchor".to_string())?;
                self.push(v, 0, true)?;
            }
            Event::Scalar(s, style, anchor, tag) => {
                let v = resolve_scalar(&s, style, tag.as_deref());
                self.push(v, anchor, false)?;
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq(Vec::new(), anchor)),
            Event::SequenceEnd => {
                if let Some(Frame::Seq(v, anchor)) = self.stack.pop() {
                    self.push(Value::Seq(v), anchor, false)?;
                }
            }
            Event::MappingStart(anchor, _) => {
                self.stack
                    .push(Frame::Map(Map::new(), None, anchor, Vec::new()));
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(mut m, _, anchor, merges)) = self.stack.pop() {
                    for merge in merges {
                        let list = match merge {
                            Value::Seq(l) => l,
                            other => vec![other],
                        };
                        for item in list {
                            if let Value::Map(src) = item {
                                for (k, v) in src {
                                    m.entry(k).or_insert(v);
                                }
                            }
                        }
                    }
                    self.push(Value::Map(m), anchor, false)?;
                }
            }
        }
        Ok(())
    }

    fn push(&mut self, v: Value, anchor: usize, _alias: bool) -> Result<(), String> {
        if anchor != 0 {
            self.anchors.insert(anchor, v.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(v),
            Some(Frame::Seq(items, _)) => items.push(v),
            Some(Frame::Map(m, pending, _, merges)) => match pending.take() {
                None => *pending = Some(v),
                Some(key) => {
                    if key == Value::Str("<<".into()) && matches!(v, Value::Map(_) | Value::Seq(_))
                    {
                        merges.push(v);
                    } else {
                        let k = key_string(&key)?;
                        m.insert(k, v);
                    }
                }
            },
        }
        Ok(())
    }
}

fn key_string(key: &Value) -> Result<String, String> {
    match key {
        Value::Seq(_) | Value::Map(_) => Err("complex mapping keys are not supported".into()),
        other => Ok(other.scalar_string().unwrap_or_default()),
    }
}

static YAML_FLOAT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$").unwrap_or_else(|_| never())
});

#[allow(clippy::panic)]
fn never() -> Regex {
    // Only reached if a constant regex fails to compile, which tests rule out.
    panic!("invalid builtin regex")
}

/// Resolves a scalar as go-yaml v3 does when decoding into `interface{}`.
fn resolve_scalar(s: &str, style: ScalarStyle, tag: Option<&Tag>) -> Value {
    if let Some(tag) = tag {
        if tag.is_yaml_core_schema() {
            match tag.suffix.as_str() {
                "str" | "binary" | "timestamp" => return Value::Str(s.to_string()),
                "null" => return Value::Null,
                "bool" | "int" | "float" => return resolve_plain(s),
                _ => {}
            }
        }
        if tag.handle == "!" && tag.suffix.is_empty() {
            return Value::Str(s.to_string());
        }
    }
    if style != ScalarStyle::Plain {
        return Value::Str(s.to_string());
    }
    if s.is_empty() {
        return Value::EmptyNull;
    }
    resolve_plain(s)
}

fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.') {
        return Value::Str(s.to_string());
    }
    if let Some(i) = parse_go_int(s) {
        return Value::Int(i);
    }
    if YAML_FLOAT.is_match(s)
        && let Ok(f) = s.parse::<f64>()
    {
        return float_value(f);
    }
    Value::Str(s.to_string())
}

/// Go's `strconv.ParseInt(s, 0, 64)` (with underscores) plus YAML's `0o`/`0b`.
fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return None;
    }
    let (radix, digits) = if let Some(d) = body.strip_prefix("0x").or(body.strip_prefix("0X")) {
        (16, d)
    } else if let Some(d) = body.strip_prefix("0o").or(body.strip_prefix("0O")) {
        (8, d)
    } else if let Some(d) = body.strip_prefix("0b").or(body.strip_prefix("0B")) {
        (2, d)
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') {
        return None;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    if radix == 10 && clean.len() != digits.len() {
        return None;
    }
    let v = i64::from_str_radix(&clean, radix).ok()?;
    Some(if neg { -v } else { v })
}

// ---------------------------------------------------------------- emitting

/// Writes documents as kustomize prints them: `---` between documents.
pub fn emit_documents(docs: &[Value]) -> String {
    let mut out = String::new();
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&emit(d));
    }
    out
}

/// Writes one value as a YAML document.
pub fn emit(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Map(m) if !m.is_empty() => emit_map(&mut out, m, 0),
        Value::Seq(s) if !s.is_empty() => emit_seq(&mut out, s, 0),
        other => {
            out.push_str(&scalar_text(other, 0));
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push(' ');
    }
}

fn emit_map(out: &mut String, m: &Map, ind: usize) {
    let mut first = true;
    for (k, v) in m {
        if !first {
            indent(out, ind);
        }
        first = false;
        out.push_str(&quote_string(k, ind));
        out.push(':');
        emit_value_after_key(out, v, ind);
    }
}

fn emit_value_after_key(out: &mut String, v: &Value, ind: usize) {
    match v {
        Value::Map(m) if !m.is_empty() => {
            out.push('\n');
            indent(out, ind + 2);
            emit_map(out, m, ind + 2);
        }
        Value::Seq(s) if !s.is_empty() => {
            out.push('\n');
            indent(out, ind);
            emit_seq(out, s, ind);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar_text(other, ind + 2));
            out.push('\n');
        }
    }
}

fn emit_seq(out: &mut String, s: &[Value], ind: usize) {
    let mut first = true;
    for v in s {
        if !first {
            indent(out, ind);
        }
        first = false;
        out.push('-');
        match v {
            Value::Map(m) if !m.is_empty() => {
                out.push(' ');
                emit_map(out, m, ind + 2);
            }
            Value::Seq(inner) if !inner.is_empty() => {
                out.push(' ');
                emit_seq(out, inner, ind + 2);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar_text(other, ind + 2));
                out.push('\n');
            }
        }
    }
}

fn scalar_text(v: &Value, ind: usize) -> String {
    match v {
        Value::Null | Value::EmptyNull => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format_float(*f),
        Value::Str(s) => quote_string(s, ind),
        Value::Map(_) => "{}".into(),
        Value::Seq(_) => "[]".into(),
    }
}

static AMBIGUOUS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?:",
        // YAML 1.1 / 1.2 null and bool
        r"~|null|Null|NULL|y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF",
        // ints (all bases, underscores, sexagesimal)
        r"|[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+",
        // floats
        r"|[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*(?:[eE][-+]?[0-9]+)",
        r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        // timestamps
        r"|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)?",
        r"|<<|=",
        r")$"
    ))
    .unwrap_or_else(|_| never())
});

fn is_printable(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{20}'..='\u{7e}' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
        && c != '\u{feff}'
}

/// Renders a string scalar, quoting only when go-yaml would.
fn quote_string(s: &str, ind: usize) -> String {
    if s.is_empty() {
        return "\"\"".into();
    }
    if AMBIGUOUS.is_match(s) {
        return double_quoted(s);
    }
    let printable = s.chars().all(is_printable);
    if s.contains('\n') {
        if printable && !s.contains(" \n") && !s.ends_with(' ') && !s.contains("\t\n") {
            return literal_block(s, ind);
        }
        return double_quoted(s);
    }
    if !printable {
        return double_quoted(s);
    }
    if plain_allowed(s) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "''"))
}

fn plain_allowed(s: &str) -> bool {
    let first = s.chars().next().unwrap_or(' ');
    let last = s.chars().last().unwrap_or(' ');
    if first.is_whitespace() || last.is_whitespace() {
        return false;
    }
    if "#,[]{}&*!|>'\"%@`".contains(first) {
        return false;
    }
    if "-?:".contains(first) {
        let second = s.chars().nth(1);
        if second.is_none_or(|c| c == ' ' || ",[]{}".contains(c)) {
            return false;
        }
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') || s.contains('\t') {
        return false;
    }
    if s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    true
}

fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if !is_printable(c) => {
                let n = c as u32;
                if n <= 0xff {
                    let _ = write!(out, "\\x{n:02X}");
                } else if n <= 0xffff {
                    let _ = write!(out, "\\u{n:04X}");
                } else {
                    let _ = write!(out, "\\U{n:08X}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn literal_block(s: &str, ind: usize) -> String {
    let mut out = String::from("|");
    if s.starts_with(' ') || s.starts_with('\n') {
        out.push('2');
    }
    let body = s.trim_end_matches('\n');
    let trailing = s.len() - body.len();
    match trailing {
        0 => out.push('-'),
        1 => {}
        _ => out.push('+'),
    }
    out.push('\n');
    let lines: Vec<&str> = if trailing > 1 {
        s[..s.len() - 1].split('\n').collect()
    } else {
        body.split('\n').collect()
    };
    let n = lines.len();
    for (i, line) in lines.iter().enumerate() {
        if !line.is_empty() {
            indent(&mut out, ind);
            out.push_str(line);
        }
        if i + 1 < n {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(v: &Value) -> Value {
        parse_one(&emit(v)).unwrap()
    }

    #[test]
    fn scalars_resolve_like_go_yaml_v3() {
        let v = parse_one("a: yes\nb: 1.0\nc: 0x10\nd: '1'\ne: ~\nf: 1e3\ng: 017\nh: 1.5").unwrap();
        assert_eq!(v.get("a"), Some(&Value::Str("yes".into())));
        assert_eq!(v.get("b"), Some(&Value::Int(1)));
        assert_eq!(v.get("c"), Some(&Value::Int(16)));
        assert_eq!(v.get("d"), Some(&Value::Str("1".into())));
        assert_eq!(v.get("e"), Some(&Value::Null));
        assert_eq!(v.get("f"), Some(&Value::Int(1000)));
        assert_eq!(v.get("g"), Some(&Value::Int(15)));
        assert_eq!(v.get("h"), Some(&Value::Float(1.5)));
    }

    #[test]
    fn ambiguous_strings_are_quoted() {
        for s in [
            "yes",
            "on",
            "1",
            "1.0",
            "0777",
            "2001-12-14",
            "",
            "- a",
            "a: b",
            "#x",
            "1:20",
            "null",
            "true",
            ".5",
            "1e3",
            " x",
            "x ",
        ] {
            let v = Value::Str(s.into());
            let mut m = Map::new();
            m.insert("k".into(), v.clone());
            let m = Value::Map(m);
            assert_eq!(roundtrip(&m), m, "{s}");
        }
    }

    #[test]
    fn multiline_and_nested() {
        let text = "a:\n- b: |\n    line1\n     line2\n  c:\n  - 1\n  - x\nd: \"  lead\\n x\"\ne: \"a \\nb\"\nf: \"x\\n\\n\"\n";
        let v = parse_one(text).unwrap();
        assert_eq!(roundtrip(&v), v);
        let out = emit(&v);
        assert!(out.contains("- b: |\n"), "{out}");
    }

    #[test]
    fn anchors_and_merge_keys() {
        let v = parse_one("a: &x {p: 1}\nb:\n  <<: *x\n  q: 2\n").unwrap();
        assert_eq!(v.get_path(&["b", "p"]), Some(&Value::Int(1)));
    }

    #[test]
    fn regexes_compile() {
        assert!(AMBIGUOUS.is_match("yes"));
        assert!(YAML_FLOAT.is_match("1.5"));
    }
}
