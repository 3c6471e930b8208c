//! Masterminds-style semver constraints (what Flux's `ref.semver` accepts): `>=1.0.0 <2.0.0`, `~1.2`, `^1`,
//! `1.x`, `*`, `1.2 - 1.4`, `!=1.3.0`, alternatives with `||`, comparisons joined by spaces or commas.

use semver::{Prerelease, Version};

/// A constraint could not be parsed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("improper constraint: {0}")]
pub struct ConstraintError(pub String);

/// Parses a tag the way Masterminds' `NewVersion` does: optional `v`, one to three numeric parts, optional
/// pre-release and build metadata.
pub fn parse_version(tag: &str) -> Option<Version> {
    let s = tag.strip_prefix('v').unwrap_or(tag);
    let (core, build) = match s.split_once('+') {
        Some((c, b)) => (c, Some(b)),
        None => (s, None),
    };
    let (core, pre) = match core.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (core, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    let mut nums = [0u64; 3];
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        nums[i] = part.parse().ok()?;
    }
    let mut version = Version::new(nums[0], nums[1], nums[2]);
    if let Some(pre) = pre {
        version.pre = Prerelease::new(pre).ok()?;
    }
    if let Some(build) = build {
        version.build = semver::BuildMetadata::new(build).ok()?;
    }
    Some(version)
}

/// A partial version in a constraint: missing or wildcard parts are `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Partial {
    major: Option<u64>,
    minor: Option<u64>,
    patch: Option<u64>,
    pre: Prerelease,
}

impl Partial {
    fn parse(s: &str) -> Result<Self, ConstraintError> {
        let err = || ConstraintError(s.to_string());
        let s = s.strip_prefix('v').unwrap_or(s);
        let core = s.split_once('+').map_or(s, |(c, _)| c);
        let (core, pre) = match core.split_once('-') {
            Some((c, p)) => (c, Prerelease::new(p).map_err(|_| err())?),
            None => (core, Prerelease::EMPTY),
        };
        let parts: Vec<&str> = core.split('.').collect();
        if parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(err());
        }
        let mut nums = [None; 3];
        let mut wild = false;
        for (i, part) in parts.iter().enumerate() {
            if matches!(*part, "x" | "X" | "*") {
                wild = true;
            } else if wild {
                return Err(err());
            } else {
                nums[i] = Some(part.parse::<u64>().map_err(|_| err())?);
            }
        }
        Ok(Partial {
            major: nums[0],
            minor: nums[1],
            patch: nums[2],
            pre,
        })
    }

    fn is_exact(&self) -> bool {
        self.major.is_some() && self.minor.is_some() && self.patch.is_some()
    }

    /// The lowest version the partial covers.
    fn lower(&self) -> Version {
        let mut v = Version::new(
            self.major.unwrap_or(0),
            self.minor.unwrap_or(0),
            self.patch.unwrap_or(0),
        );
        v.pre = self.pre.clone();
        v
    }

    /// The first version above what the partial covers (`None`: unbounded).
    fn upper(&self) -> Option<Version> {
        match (self.major, self.minor, self.patch) {
            (None, _, _) => None,
            (Some(m), None, _) => Some(Version::new(m + 1, 0, 0)),
            (Some(m), Some(n), None) => Some(Version::new(m, n + 1, 0)),
            (Some(m), Some(n), Some(p)) => Some(Version::new(m, n, p + 1)),
        }
    }
}

/// One comparison, as a half-open interval or its negation.
#[derive(Clone, Debug)]
struct Range {
    min: Option<(Version, bool)>, // (bound, inclusive)
    max: Option<(Version, bool)>,
    negate: bool,
    has_pre: bool,
}

impl Range {
    fn contains(&self, v: &Version) -> bool {
        let above = match &self.min {
            None => true,
            Some((m, true)) => v >= m,
            Some((m, false)) => v > m,
        };
        let below = match &self.max {
            None => true,
            Some((m, true)) => v <= m,
            Some((m, false)) => v < m,
        };
        (above && below) != self.negate
    }
}

fn between(lo: Version, hi: Option<Version>, has_pre: bool) -> Range {
    Range {
        min: Some((lo, true)),
        max: hi.map(|h| (h, false)),
        negate: false,
        has_pre,
    }
}

fn comparison(op: &str, p: &Partial) -> Range {
    let has_pre = !p.pre.is_empty();
    let lower = p.lower();
    match op {
        "" | "=" if p.is_exact() => Range {
            min: Some((lower.clone(), true)),
            max: Some((lower, true)),
            negate: false,
            has_pre,
        },
        "" | "=" => between(lower, p.upper(), has_pre),
        "!=" => {
            let mut r = comparison("=", p);
            r.negate = true;
            r
        }
        ">" if p.is_exact() => Range {
            min: Some((lower, false)),
            max: None,
            negate: false,
            has_pre,
        },
        ">" => match p.upper() {
            Some(u) => between(u, None, has_pre),
            None => Range {
                min: None,
                max: Some((Version::new(0, 0, 0), false)),
                negate: false,
                has_pre,
            },
        },
        ">=" | "=>" => between(lower, None, has_pre),
        "<" => Range {
            min: None,
            max: Some((lower, false)),
            negate: false,
            has_pre,
        },
        "<=" | "=<" if p.is_exact() => Range {
            min: None,
            max: Some((lower, true)),
            negate: false,
            has_pre,
        },
        "<=" | "=<" => Range {
            min: None,
            max: p.upper().map(|u| (u, false)),
            negate: false,
            has_pre,
        },
        "~" | "~>" => {
            let upper = match (p.major, p.minor) {
                (None, _) => None,
                (Some(m), None) => Some(Version::new(m + 1, 0, 0)),
                (Some(m), Some(n)) => Some(Version::new(m, n + 1, 0)),
            };
            between(lower, upper, has_pre)
        }
        // "^"
        _ => {
            let upper = match (p.major, p.minor, p.patch) {
                (None, _, _) => None,
                (Some(0), None, _) => Some(Version::new(1, 0, 0)),
                (Some(0), Some(0), None) => Some(Version::new(0, 1, 0)),
                (Some(0), Some(0), Some(z)) => Some(Version::new(0, 0, z + 1)),
                (Some(0), Some(n), _) => Some(Version::new(0, n + 1, 0)),
                (Some(m), _, _) => Some(Version::new(m + 1, 0, 0)),
            };
            between(lower, upper, has_pre)
        }
    }
}

/// A parsed constraint: alternatives (`||`) of conjunctions.
#[derive(Clone, Debug)]
pub struct Constraint {
    groups: Vec<Vec<Range>>,
}

const OPS: [&str; 11] = ["!=", ">=", "=>", "<=", "=<", "~>", ">", "<", "=", "~", "^"];

fn split_op(token: &str) -> (&str, &str) {
    for op in OPS {
        if let Some(rest) = token.strip_prefix(op) {
            return (op, rest.trim());
        }
    }
    ("", token)
}

impl Constraint {
    /// Parses a Masterminds constraint string.
    pub fn parse(input: &str) -> Result<Self, ConstraintError> {
        let mut groups = Vec::new();
        for alternative in input.split("||") {
            let text = alternative.replace(',', " ");
            // Glue operators to their versions (">= 1.0" → ">=1.0").
            let mut tokens: Vec<String> = Vec::new();
            let mut pending = String::new();
            for word in text.split_whitespace() {
                if OPS.contains(&word) {
                    pending.push_str(word);
                    continue;
                }
                tokens.push(format!("{pending}{word}"));
                pending.clear();
            }
            if !pending.is_empty() || tokens.is_empty() {
                return Err(ConstraintError(input.to_string()));
            }
            let mut ranges = Vec::new();
            let mut i = 0;
            while i < tokens.len() {
                if tokens.get(i + 1).map(String::as_str) == Some("-") {
                    let hi = tokens
                        .get(i + 2)
                        .ok_or_else(|| ConstraintError(input.to_string()))?;
                    let lo = Partial::parse(&tokens[i])?;
                    let hi = Partial::parse(hi)?;
                    let mut r = comparison(">=", &lo);
                    r.max = comparison("<=", &hi).max;
                    ranges.push(r);
                    i += 3;
                    continue;
                }
                let (op, version) = split_op(&tokens[i]);
                let partial = Partial::parse(version)?;
                ranges.push(comparison(op, &partial));
                i += 1;
            }
            groups.push(ranges);
        }
        Ok(Constraint { groups })
    }

    /// Whether `v` satisfies the constraint. Pre-releases match only when a comparison names one.
    pub fn matches(&self, v: &Version) -> bool {
        self.groups.iter().any(|group| {
            (v.pre.is_empty() || group.iter().any(|r| r.has_pre))
                && group.iter().all(|r| r.contains(v))
        })
    }
}

/// The newest tag satisfying `constraint`, among `tags` (names without `refs/tags/`).
pub fn latest_matching<'a>(
    constraint: &Constraint,
    tags: impl IntoIterator<Item = &'a str>,
) -> Option<(&'a str, Version)> {
    let mut best: Option<(&str, Version)> = None;
    for tag in tags {
        let Some(v) = parse_version(tag) else {
            continue;
        };
        if !constraint.matches(&v) {
            continue;
        }
        let newer = match &best {
            None => true,
            Some((_, b)) => v.cmp_precedence(b).is_gt(),
        };
        if newer {
            best = Some((tag, v));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(constraint: &str, tags: &[&str]) -> Option<String> {
        let c = Constraint::parse(constraint).unwrap();
        latest_matching(&c, tags.iter().copied()).map(|(t, _)| t.to_string())
    }

    const TAGS: &[&str] = &[
        "v0.1.0",
        "v0.2.5",
        "v1.0.0",
        "v1.2.0",
        "v1.2.9",
        "v1.3.0",
        "v1.10.1",
        "v2.0.0",
        "v2.1.0-rc.1",
        "not-a-version",
        "3.0",
    ];

    #[test]
    fn masterminds_forms_flux_documents() {
        assert_eq!(pick(">=1.0.0 <2.0.0", TAGS).as_deref(), Some("v1.10.1"));
        assert_eq!(pick(">=1.0.0, <2.0.0", TAGS).as_deref(), Some("v1.10.1"));
        assert_eq!(pick("~1.2", TAGS).as_deref(), Some("v1.2.9"));
        assert_eq!(pick("~1.2.0", TAGS).as_deref(), Some("v1.2.9"));
        assert_eq!(pick("^1", TAGS).as_deref(), Some("v1.10.1"));
        assert_eq!(pick("^0.1", TAGS).as_deref(), Some("v0.1.0"));
        assert_eq!(pick("1.x", TAGS).as_deref(), Some("v1.10.1"));
        assert_eq!(pick("1.2.x", TAGS).as_deref(), Some("v1.2.9"));
        assert_eq!(pick("*", TAGS).as_deref(), Some("3.0"));
        assert_eq!(
            pick("<1.0.0 || >=2.0.0 <3", TAGS).as_deref(),
            Some("v2.0.0")
        );
        assert_eq!(pick("1.2 - 1.3", TAGS).as_deref(), Some("v1.3.0"));
        assert_eq!(
            pick(">= 1.2, != 1.10.1, < 2", TAGS).as_deref(),
            Some("v1.3.0")
        );
        assert_eq!(pick("=1.2.0", TAGS).as_deref(), Some("v1.2.0"));
        assert_eq!(pick("<=1.2", TAGS).as_deref(), Some("v1.2.9"));
        assert_eq!(pick(">1.2", TAGS).as_deref(), Some("3.0"));
        assert_eq!(pick(">4", TAGS), None);
    }

    #[test]
    fn prereleases_only_when_asked() {
        assert_eq!(pick(">=2.0.0", TAGS).as_deref(), Some("3.0"));
        assert_eq!(
            pick(">=2.1.0-rc.0 <3", TAGS).as_deref(),
            Some("v2.1.0-rc.1")
        );
        assert_eq!(pick("~2.0", TAGS).as_deref(), Some("v2.0.0"));
    }

    #[test]
    fn invalid_constraints() {
        assert!(Constraint::parse("").is_err());
        assert!(Constraint::parse(">=").is_err());
        assert!(Constraint::parse("abc").is_err());
        assert!(Constraint::parse("1.x.3").is_err());
    }

    #[test]
    fn version_coercion() {
        assert_eq!(parse_version("v1.2"), Some(Version::new(1, 2, 0)));
        assert_eq!(parse_version("3"), Some(Version::new(3, 0, 0)));
        assert!(parse_version("release-1").is_none());
        assert!(parse_version("1.2.3.4").is_none());
    }
}
