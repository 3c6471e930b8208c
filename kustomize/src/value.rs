//! The in-memory model of a Kubernetes object: JSON-like values with sorted maps.
//!
//! kustomize round-trips every object through JSON before printing it, so a
//! JSON-shaped model (null, bool, integer, float, string, sequence, map) is
//! exactly what its output can express. Maps are `BTreeMap`s because kustomize
//! prints keys sorted.

use std::collections::BTreeMap;

/// A map of string keys to values, sorted by key.
pub type Map = BTreeMap<String, Value>;

/// A YAML/JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null` (written `null`, `~`, ...)
    Null,
    /// A null written as nothing at all (`key:`). kustomize drops these, and
    /// only these, when it merges a patch into an object.
    EmptyNull,
    /// `true` / `false`
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// A float that is not integral (integral floats are stored as `Int`).
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Value>),
    /// A map.
    Map(Map),
}

impl Value {
    /// The map inside, if this is a map.
    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The map inside, mutably.
    pub fn as_map_mut(&mut self) -> Option<&mut Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The sequence inside, if this is a sequence.
    pub fn as_seq(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value at `key` if this is a map.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map().and_then(|m| m.get(key))
    }

    /// The value at `key` mutably if this is a map.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.as_map_mut().and_then(|m| m.get_mut(key))
    }

    /// Walks a path of map keys.
    pub fn get_path(&self, path: &[&str]) -> Option<&Value> {
        let mut cur = self;
        for p in path {
            cur = cur.get(p)?;
        }
        Some(cur)
    }

    /// Walks a path of map keys mutably.
    pub fn get_path_mut(&mut self, path: &[&str]) -> Option<&mut Value> {
        let mut cur = self;
        for p in path {
            cur = cur.get_mut(p)?;
        }
        Some(cur)
    }

    /// The string at a path of map keys.
    pub fn str_at(&self, path: &[&str]) -> Option<&str> {
        self.get_path(path).and_then(Value::as_str)
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null | Value::EmptyNull)
    }

    /// The scalar rendered as kustomize renders a scalar node's text.
    pub fn scalar_string(&self) -> Option<String> {
        match self {
            Value::Null | Value::EmptyNull => Some(String::new()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(format_float(*f)),
            Value::Str(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// Ensures the value at `key` of this map is a map, creating it, and returns it.
    /// Returns `None` if `self` is not a map or the existing value is not a map or null.
    pub fn entry_map(&mut self, key: &str) -> Option<&mut Map> {
        let m = self.as_map_mut()?;
        let v = m.entry(key.to_string()).or_insert(Value::Map(Map::new()));
        if v.is_null() {
            *v = Value::Map(Map::new());
        }
        v.as_map_mut()
    }
}

/// Formats a float like Go's `strconv.FormatFloat(f, 'g'-ish, -1)` as used by `encoding/json`.
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        return ".nan".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.to_string();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{f:e}");
        // Rust prints 1e21 / 1.5e-7; Go prints 1e+21 / 1.5e-07.
        if let Some((m, e)) = s.split_once('e') {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            let digits = if digits.len() < 2 {
                format!("0{digits}")
            } else {
                digits.to_string()
            };
            return format!("{m}e{sign}{digits}");
        }
        return s;
    }
    let s = format!("{f}");
    s
}

/// Builds a value from a float, normalising integral values to integers as a
/// JSON round trip through Go does.
pub fn float_value(f: f64) -> Value {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
        #[allow(clippy::cast_possible_truncation)]
        return Value::Int(f as i64);
    }
    Value::Float(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_format_like_go() {
        assert_eq!(format_float(1.5), "1.5");
        assert_eq!(format_float(1e21), "1e+21");
        assert_eq!(format_float(1.5e-7), "1.5e-07");
        assert_eq!(float_value(3.0), Value::Int(3));
    }

    #[test]
    fn paths() {
        let mut m = Map::new();
        m.insert("a".into(), Value::Str("b".into()));
        let v = Value::Map(m);
        assert_eq!(v.str_at(&["a"]), Some("b"));
        assert_eq!(v.str_at(&["a", "c"]), None);
    }
}
