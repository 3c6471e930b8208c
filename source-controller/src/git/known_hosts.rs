//! `known_hosts` matching for ssh host keys (OpenSSH format: plain host patterns, `[host]:port`, `*`/`?`
//! wildcards, `!` negation; `@revoked` lines reject).

use base64::Engine as _;

fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn host_matches(patterns: &str, host: &str) -> bool {
    let mut matched = false;
    for pattern in patterns.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        if glob(&pattern.to_lowercase(), &host.to_lowercase()) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// Whether `known_hosts` lists `key` (the raw host key blob) for `host` on `port`.
pub fn matches(known_hosts: &str, host: &str, port: Option<u16>, key: &[u8]) -> bool {
    let name = match port {
        Some(p) if p != 22 => format!("[{host}]:{p}"),
        _ => host.to_string(),
    };
    let mut found = false;
    for line in known_hosts.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let Some(mut first) = fields.next() else {
            continue;
        };
        let mut revoked = false;
        if first.starts_with('@') {
            revoked = first == "@revoked";
            if !revoked {
                continue; // @cert-authority: not supported
            }
            let Some(next) = fields.next() else { continue };
            first = next;
        }
        let (Some(_keytype), Some(blob)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !host_matches(first, &name) {
            continue;
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(blob) else {
            continue;
        };
        if decoded == key {
            if revoked {
                return false;
            }
            found = true;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_plain_bracketed_and_wildcard_hosts() {
        let key = b"\x00\x00\x00\x0bssh-ed25519abc";
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        let other = base64::engine::general_purpose::STANDARD.encode(b"other");
        let kh = format!(
            "# comment\ngithub.com ssh-ed25519 {b64}\n[127.0.0.1]:2222 ssh-ed25519 {b64}\n*.corp,!bad.corp ssh-ed25519 {b64}\n"
        );
        assert!(matches(&kh, "github.com", None, key));
        assert!(matches(&kh, "github.com", Some(22), key));
        assert!(!matches(&kh, "github.com", Some(2222), key));
        assert!(matches(&kh, "127.0.0.1", Some(2222), key));
        assert!(matches(&kh, "git.corp", None, key));
        assert!(!matches(&kh, "bad.corp", None, key));
        assert!(!matches(&kh, "gitlab.com", None, key));
        assert!(!matches(
            &format!("github.com ssh-ed25519 {other}"),
            "github.com",
            None,
            key
        ));
        assert!(!matches(
            &format!("{kh}@revoked github.com ssh-ed25519 {b64}"),
            "github.com",
            None,
            key
        ));
    }
}
