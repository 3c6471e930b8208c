//! Flux's post-build variable substitution syntax (`fluxcd/pkg/envsubst`): `${var}` and the bash-like operators
//! `${var:=default}`, `${var:-default}`, `${var=default}`, `${#var}`, `${var^}`, `${var^^}`, `${var,}`, `${var,,}`,
//! `${var:offset}`, `${var:offset:length}`, `${var#glob}`, `${var##glob}`, `${var%glob}`, `${var%%glob}`,
//! `${var/from/to}`, `${var//from/to}`, `${var/#from/to}`, `${var/%from/to}`. `$$` is a literal `$` (so `$${var}`
//! stays `${var}`); a bare `$var` is left alone.

use std::collections::BTreeMap;

/// Why a text could not be substituted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubstError {
    #[error("bad substitution")]
    BadSubstitution,
    #[error("missing closing brace")]
    MissingClosingBrace,
    #[error("unable to parse variable name")]
    VariableName,
    #[error("variable not set (strict mode): {0:?}")]
    NotSet(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Func {
        name: String,
        op: String,
        args: Vec<Vec<Node>>,
    },
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    _src: &'a str,
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            chars: src.chars().collect(),
            pos: 0,
            _src: src,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }

    /// Top-level text: `$$` → `$`, `${` opens a function.
    fn parse_any(&mut self) -> Result<Vec<Node>, SubstError> {
        let mut nodes = Vec::new();
        let mut text = String::new();
        while let Some(c) = self.peek() {
            if c == '$' && self.peek_at(1) == Some('$') {
                text.push('$');
                self.pos += 2;
            } else if c == '$' && self.peek_at(1) == Some('{') {
                if !text.is_empty() {
                    nodes.push(Node::Text(std::mem::take(&mut text)));
                }
                self.pos += 2;
                nodes.push(self.parse_func()?);
            } else {
                text.push(c);
                self.pos += 1;
            }
        }
        if !text.is_empty() {
            nodes.push(Node::Text(text));
        }
        Ok(nodes)
    }

    fn ident(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek().filter(|c| is_ident(*c)) {
            name.push(c);
            self.pos += 1;
        }
        name
    }

    fn expect_close(&mut self) -> Result<(), SubstError> {
        if self.peek() == Some('}') {
            self.pos += 1;
            Ok(())
        } else {
            Err(SubstError::BadSubstitution)
        }
    }

    /// An argument: text and nested `${...}` until one of `stops` (not consumed). `\/` and `\\` escape.
    fn param(&mut self, stops: &[char]) -> Result<Vec<Node>, SubstError> {
        let mut nodes = Vec::new();
        let mut text = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(SubstError::MissingClosingBrace);
            };
            if stops.contains(&c) {
                break;
            }
            if c == '\\' && matches!(self.peek_at(1), Some('/') | Some('\\')) {
                if let Some(n) = self.peek_at(1) {
                    text.push(n);
                }
                self.pos += 2;
            } else if c == '$' && self.peek_at(1) == Some('$') {
                text.push('$');
                self.pos += 2;
            } else if c == '$' && self.peek_at(1) == Some('{') {
                if !text.is_empty() {
                    nodes.push(Node::Text(std::mem::take(&mut text)));
                }
                self.pos += 2;
                nodes.push(self.parse_func()?);
            } else {
                text.push(c);
                self.pos += 1;
            }
        }
        if !text.is_empty() {
            nodes.push(Node::Text(text));
        }
        Ok(nodes)
    }

    /// After `${`.
    fn parse_func(&mut self) -> Result<Node, SubstError> {
        if self.peek() == Some('#') {
            self.pos += 1;
            let name = self.ident();
            if name.is_empty() {
                return Err(SubstError::BadSubstitution);
            }
            self.expect_close()?;
            return Ok(Node::Func {
                name,
                op: "len".into(),
                args: vec![],
            });
        }
        let name = self.ident();
        if name.is_empty() {
            return Err(SubstError::VariableName);
        }
        let func = |op: &str, args| Node::Func {
            name: name.clone(),
            op: op.to_string(),
            args,
        };
        match self.peek() {
            Some('}') => {
                self.pos += 1;
                Ok(func("", vec![]))
            }
            Some(':') => match self.peek_at(1) {
                Some(c @ ('=' | '-' | '?' | '+')) => {
                    self.pos += 2;
                    let arg = self.param(&['}'])?;
                    self.expect_close()?;
                    Ok(func(&format!(":{c}"), vec![arg]))
                }
                _ => {
                    self.pos += 1;
                    let offset = self.param(&[':', '}'])?;
                    let mut args = vec![offset];
                    if self.peek() == Some(':') {
                        self.pos += 1;
                        args.push(self.param(&['}'])?);
                    }
                    self.expect_close()?;
                    Ok(func(":", args))
                }
            },
            Some(c @ ('=' | '-')) => {
                self.pos += 1;
                let arg = self.param(&['}'])?;
                self.expect_close()?;
                Ok(func(&c.to_string(), vec![arg]))
            }
            Some(c @ (',' | '^')) => {
                self.pos += 1;
                let mut op = c.to_string();
                if self.peek() == Some(c) {
                    self.pos += 1;
                    op.push(c);
                }
                self.expect_close()?;
                Ok(func(&op, vec![]))
            }
            Some('/') => {
                self.pos += 1;
                let op = match self.peek() {
                    Some(c @ ('/' | '#' | '%')) => {
                        self.pos += 1;
                        format!("/{c}")
                    }
                    _ => "/".to_string(),
                };
                let from = self.param(&['/', '}'])?;
                let mut args = vec![from];
                if self.peek() == Some('/') {
                    self.pos += 1;
                    args.push(self.param(&['}'])?);
                }
                self.expect_close()?;
                Ok(func(&op, args))
            }
            Some(c @ ('#' | '%')) => {
                self.pos += 1;
                let mut op = c.to_string();
                if self.peek() == Some(c) {
                    self.pos += 1;
                    op.push(c);
                }
                let arg = self.param(&['}'])?;
                self.expect_close()?;
                Ok(func(&op, vec![arg]))
            }
            _ => Err(SubstError::MissingClosingBrace),
        }
    }
}

/// Substitutes `${...}` expressions in `text` with `vars`. In strict mode an unset variable without a default
/// operator is an error; otherwise it is the empty string.
pub fn substitute(
    text: &str,
    vars: &BTreeMap<String, String>,
    strict: bool,
) -> Result<String, SubstError> {
    let nodes = Parser::new(text).parse_any()?;
    let mut out = String::with_capacity(text.len());
    eval(&nodes, vars, strict, &mut out)?;
    Ok(out)
}

fn eval(
    nodes: &[Node],
    vars: &BTreeMap<String, String>,
    strict: bool,
    out: &mut String,
) -> Result<(), SubstError> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Func { name, op, args } => {
                let mut evaluated = Vec::with_capacity(args.len());
                for arg in args {
                    let mut s = String::new();
                    eval(arg, vars, strict, &mut s)?;
                    evaluated.push(s);
                }
                let value = vars.get(name);
                let is_default = matches!(op.as_str(), "-" | "=" | ":-" | ":=" | ":?" | ":+");
                if strict && value.is_none() && !is_default {
                    return Err(SubstError::NotSet(name.clone()));
                }
                let v = value.map(String::as_str).unwrap_or_default();
                out.push_str(&apply(op, v, &evaluated));
            }
        }
    }
    Ok(())
}

fn apply(op: &str, s: &str, args: &[String]) -> String {
    let arg = |i: usize| args.get(i).map(String::as_str);
    match op {
        "" => s.to_string(),
        "len" => s.len().to_string(),
        "," => first_char(s, |c| c.to_lowercase().collect()),
        ",," => s.to_lowercase(),
        "^" => first_char(s, |c| c.to_uppercase().collect()),
        "^^" => s.to_uppercase(),
        ":" => substr(s, arg(0).unwrap_or_default(), arg(1)),
        "/" => match arg(0) {
            Some(from) if !from.is_empty() => s.replacen(from, arg(1).unwrap_or_default(), 1),
            _ => s.to_string(),
        },
        "//" => match arg(0) {
            Some(from) if !from.is_empty() => s.replace(from, arg(1).unwrap_or_default()),
            _ => s.to_string(),
        },
        "/#" => match (arg(0), arg(1)) {
            (Some(from), Some(to)) if s.starts_with(from) => format!("{to}{}", &s[from.len()..]),
            _ => s.to_string(),
        },
        "/%" => match (arg(0), arg(1)) {
            (Some(from), Some(to)) if s.ends_with(from) => {
                format!("{}{to}", &s[..s.len() - from.len()])
            }
            _ => s.to_string(),
        },
        "#" => trim_prefix(s, arg(0).unwrap_or_default(), false),
        "##" => trim_prefix(s, arg(0).unwrap_or_default(), true),
        "%" => trim_suffix(s, arg(0).unwrap_or_default(), false),
        "%%" => trim_suffix(s, arg(0).unwrap_or_default(), true),
        // Default operators: the value, or the default when it is empty.
        _ => {
            if s.is_empty() {
                args.concat()
            } else {
                s.to_string()
            }
        }
    }
}

fn first_char(s: &str, f: impl Fn(char) -> String) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => format!("{}{}", f(c), chars.as_str()),
        None => String::new(),
    }
}

fn substr(s: &str, offset: &str, length: Option<&str>) -> String {
    let Ok(mut pos) = offset.trim().parse::<i64>() else {
        return s.to_string();
    };
    let len = s.len() as i64;
    if pos < 0 {
        pos = (len + pos).max(0);
    }
    let start = pos as usize;
    let slice = |a: usize, b: usize| s.get(a..b).unwrap_or_default().to_string();
    match length {
        None => {
            if start < s.len() {
                slice(start, s.len())
            } else {
                String::new()
            }
        }
        Some(l) => {
            let Ok(l) = l.trim().parse::<i64>() else {
                return s.to_string();
            };
            if pos + l >= len {
                if start < s.len() {
                    slice(start, s.len())
                } else {
                    String::new()
                }
            } else {
                slice(start, (pos + l).max(pos) as usize)
            }
        }
    }
}

/// Shell glob match (`*`, `?`, `[...]`), whole string.
fn glob(pattern: &[char], s: &[char]) -> bool {
    match pattern.first() {
        None => s.is_empty(),
        Some('*') => (0..=s.len()).any(|i| glob(&pattern[1..], &s[i..])),
        Some('?') => !s.is_empty() && glob(&pattern[1..], &s[1..]),
        Some('[') => {
            let Some(end) = pattern.iter().skip(1).position(|c| *c == ']') else {
                return !s.is_empty() && s[0] == '[' && glob(&pattern[1..], &s[1..]);
            };
            let class = &pattern[1..=end];
            let Some(c) = s.first() else { return false };
            let (negate, class) = match class.first() {
                Some('^') | Some('!') => (true, &class[1..]),
                _ => (false, class),
            };
            let mut matched = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == '-' {
                    if class[i] <= *c && *c <= class[i + 2] {
                        matched = true;
                    }
                    i += 3;
                } else {
                    if class[i] == *c {
                        matched = true;
                    }
                    i += 1;
                }
            }
            matched != negate && glob(&pattern[end + 2..], &s[1..])
        }
        Some('\\') if pattern.len() > 1 => {
            !s.is_empty() && s[0] == pattern[1] && glob(&pattern[2..], &s[1..])
        }
        Some(p) => !s.is_empty() && s[0] == *p && glob(&pattern[1..], &s[1..]),
    }
}

fn trim_prefix(s: &str, pattern: &str, longest: bool) -> String {
    let p: Vec<char> = pattern.chars().collect();
    let chars: Vec<char> = s.chars().collect();
    let ends: Vec<usize> = if longest {
        (0..=chars.len()).rev().collect()
    } else {
        (0..=chars.len()).collect()
    };
    for end in ends {
        if glob(&p, &chars[..end]) {
            return chars[end..].iter().collect();
        }
    }
    s.to_string()
}

fn trim_suffix(s: &str, pattern: &str, longest: bool) -> String {
    let p: Vec<char> = pattern.chars().collect();
    let chars: Vec<char> = s.chars().collect();
    let starts: Vec<usize> = if longest {
        (0..=chars.len()).collect()
    } else {
        (0..=chars.len()).rev().collect()
    };
    for start in starts {
        if glob(&p, &chars[start..]) {
            return chars[..start].iter().collect();
        }
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [
            ("name", "podinfo"),
            ("env", "Prod"),
            ("path", "a/b/c.tar.gz"),
            ("empty", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn sub(s: &str) -> String {
        substitute(s, &vars(), false).unwrap()
    }

    #[test]
    fn plain_and_escaped() {
        assert_eq!(sub("app: ${name}"), "app: podinfo");
        assert_eq!(sub("cost: $5 $name"), "cost: $5 $name");
        assert_eq!(sub("keep: $${name}"), "keep: ${name}");
        assert_eq!(sub("${missing}x"), "x", "unset is empty when not strict");
    }

    #[test]
    fn defaults() {
        assert_eq!(sub("${missing:=fallback}"), "fallback");
        assert_eq!(sub("${missing:-fall back}"), "fall back");
        assert_eq!(sub("${empty:=d}"), "d");
        assert_eq!(sub("${name:=d}"), "podinfo");
        assert_eq!(sub("${missing:=${name}-x}"), "podinfo-x");
        assert_eq!(sub("${missing=}"), "");
    }

    #[test]
    fn operators() {
        assert_eq!(sub("${#name}"), "7");
        assert_eq!(sub("${env,,}"), "prod");
        assert_eq!(sub("${env^^}"), "PROD");
        assert_eq!(sub("${name^}"), "Podinfo");
        assert_eq!(sub("${env,}"), "prod");
        assert_eq!(sub("${name:3}"), "info");
        assert_eq!(sub("${name:0:3}"), "pod");
        assert_eq!(sub("${path#*/}"), "b/c.tar.gz");
        assert_eq!(sub("${path##*/}"), "c.tar.gz");
        assert_eq!(sub("${path%.*}"), "a/b/c.tar");
        assert_eq!(sub("${path%%.*}"), "a/b/c");
        assert_eq!(sub("${name/o/0}"), "p0dinfo");
        assert_eq!(sub("${name//o/0}"), "p0dinf0");
        assert_eq!(sub("${name/#pod/web}"), "webinfo");
        assert_eq!(sub("${name/%info/cast}"), "podcast");
    }

    #[test]
    fn strict_mode_requires_variables_or_defaults() {
        let v = vars();
        assert_eq!(
            substitute("${missing}", &v, true),
            Err(SubstError::NotSet("missing".into()))
        );
        assert_eq!(substitute("${missing:=x}", &v, true).unwrap(), "x");
        assert_eq!(
            substitute("${missing}", &v, true).unwrap_err().to_string(),
            "variable not set (strict mode): \"missing\""
        );
    }

    #[test]
    fn malformed() {
        let v = vars();
        assert!(substitute("${name", &v, false).is_err());
        assert!(substitute("${}", &v, false).is_err());
        assert!(substitute("${name:=x", &v, false).is_err());
    }
}
