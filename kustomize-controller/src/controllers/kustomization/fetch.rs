//! Artifact download: bounded retries, a size cap and a timeout; the digest is verified before anything is
//! unpacked; the tarball is unpacked safely (regular files and directories only, every path component checked,
//! a byte cap) into a directory the caller owns (a `TempDir`, removed on every path).

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use sha2::Digest as _;

/// Download and unpack limits.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Attempts after the first one for network errors and 5xx responses.
    pub retries: u32,
    /// Largest accepted download, in bytes.
    pub max_download_size: u64,
    /// Largest accepted total of unpacked file bytes.
    pub max_untar_size: u64,
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// `SOURCE_CONTROLLER_LOCALHOST`: replaces the artifact URL's `host:port`.
    pub hostname_override: Option<String>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            retries: 9,
            max_download_size: 512 << 20,
            max_untar_size: 1 << 30,
            timeout: Duration::from_secs(60),
            hostname_override: None,
        }
    }
}

/// Why an artifact could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("artifact URL '{0}' is invalid")]
    InvalidUrl(String),
    /// The server answered 404: the source-controller no longer has this artifact.
    #[error("artifact not found at '{0}'")]
    NotFound(String),
    #[error("failed to download archive from '{url}' after {attempts} attempts: {reason}")]
    Download {
        url: String,
        attempts: u32,
        reason: String,
    },
    #[error("artifact from '{url}' exceeds the size limit of {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("unsupported digest algorithm in '{0}'")]
    DigestAlgorithm(String),
    #[error("failed to verify artifact: computed digest doesn't match '{expected}'")]
    DigestMismatch { expected: String },
    #[error("failed to extract archive: {0}")]
    Untar(String),
}

/// Applies `SOURCE_CONTROLLER_LOCALHOST`: the URL's authority becomes `host`.
pub fn override_host(url: &str, host: Option<&str>) -> Result<String, FetchError> {
    let Some(host) = host.filter(|h| !h.is_empty()) else {
        return Ok(url.to_string());
    };
    let mut parsed =
        reqwest::Url::parse(url).map_err(|_| FetchError::InvalidUrl(url.to_string()))?;
    let (name, port) = match host.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty() => {
            (h, p.parse::<u16>().ok())
        }
        _ => (host, None),
    };
    parsed
        .set_host(Some(name))
        .map_err(|_| FetchError::InvalidUrl(url.to_string()))?;
    parsed
        .set_port(port)
        .map_err(|_| FetchError::InvalidUrl(url.to_string()))?;
    Ok(parsed.to_string())
}

/// Downloads the artifact at `url`, verifies `digest` (`<algo>:<hex>`) and unpacks it into `dir`.
pub async fn fetch(
    http: &reqwest::Client,
    url: &str,
    digest: &str,
    dir: &Path,
    opts: &FetchOptions,
) -> Result<(), FetchError> {
    let url = override_host(url, opts.hostname_override.as_deref())?;
    let bytes = download(http, &url, opts).await?;
    verify_digest(&bytes, digest)?;
    let dir = dir.to_path_buf();
    let max = opts.max_untar_size;
    tokio::task::spawn_blocking(move || untar(&bytes, &dir, max))
        .await
        .map_err(|e| FetchError::Untar(e.to_string()))?
}

async fn download(
    http: &reqwest::Client,
    url: &str,
    opts: &FetchOptions,
) -> Result<Vec<u8>, FetchError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = tokio::time::timeout(opts.timeout, download_once(http, url, opts)).await;
        let reason = match result {
            Ok(Ok(bytes)) => return Ok(bytes),
            Ok(Err(Attempt::Fatal(err))) => return Err(err),
            Ok(Err(Attempt::Retry(reason))) => reason,
            Err(_) => format!("timeout after {:?}", opts.timeout),
        };
        if attempt > opts.retries {
            return Err(FetchError::Download {
                url: url.to_string(),
                attempts: attempt,
                reason,
            });
        }
        // Exponential backoff between attempts, capped at 2s.
        let delay = Duration::from_millis(50u64 << attempt.min(5)).min(Duration::from_secs(2));
        tokio::time::sleep(delay).await;
    }
}

enum Attempt {
    Retry(String),
    Fatal(FetchError),
}

async fn download_once(
    http: &reqwest::Client,
    url: &str,
    opts: &FetchOptions,
) -> Result<Vec<u8>, Attempt> {
    let mut response = http
        .get(url)
        .send()
        .await
        .map_err(|e| Attempt::Retry(without_url(&e)))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(Attempt::Fatal(FetchError::NotFound(url.to_string())));
    }
    if !status.is_success() {
        let reason = format!("unexpected status code {}", status.as_u16());
        return Err(if status.is_server_error() || status.as_u16() == 429 {
            Attempt::Retry(reason)
        } else {
            Attempt::Fatal(FetchError::Download {
                url: url.to_string(),
                attempts: 1,
                reason,
            })
        });
    }
    let too_large = || {
        Attempt::Fatal(FetchError::TooLarge {
            url: url.to_string(),
            limit: opts.max_download_size,
        })
    };
    if response
        .content_length()
        .is_some_and(|l| l > opts.max_download_size)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Attempt::Retry(without_url(&e)))?
    {
        if (body.len() + chunk.len()) as u64 > opts.max_download_size {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(u) = e.url() {
        text = text.replace(&format!(" for url ({u})"), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Checks `bytes` against `<algo>:<hex>` (sha256, sha384, sha512).
pub fn verify_digest(bytes: &[u8], digest: &str) -> Result<(), FetchError> {
    let Some((algo, expected)) = digest.split_once(':') else {
        return Err(FetchError::DigestAlgorithm(digest.to_string()));
    };
    let computed = match algo {
        "sha256" => hex::encode(sha2::Sha256::digest(bytes)),
        "sha384" => hex::encode(sha2::Sha384::digest(bytes)),
        "sha512" => hex::encode(sha2::Sha512::digest(bytes)),
        _ => return Err(FetchError::DigestAlgorithm(digest.to_string())),
    };
    if !computed.eq_ignore_ascii_case(expected) {
        return Err(FetchError::DigestMismatch {
            expected: digest.to_string(),
        });
    }
    Ok(())
}

/// The path of a tar entry below `dir`, refusing absolute paths, `..` and anything but normal components.
fn entry_path(dir: &Path, name: &Path) -> Result<Option<PathBuf>, FetchError> {
    let mut out = dir.to_path_buf();
    let mut depth = 0;
    for component in name.components() {
        match component {
            Component::Normal(part) => {
                out.push(part);
                depth += 1;
            }
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(FetchError::Untar(format!(
                    "illegal path in archive: '{}'",
                    name.display()
                )));
            }
        }
    }
    Ok((depth > 0).then_some(out))
}

/// Unpacks a gzip-compressed tarball into `dir`: only regular files and directories, at most `max` file bytes.
pub fn untar(bytes: &[u8], dir: &Path, max: u64) -> Result<(), FetchError> {
    let untar_err = |e: std::io::Error| FetchError::Untar(e.to_string());
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut total: u64 = 0;
    for entry in archive.entries().map_err(untar_err)? {
        let mut entry = entry.map_err(untar_err)?;
        let name = entry.path().map_err(untar_err)?.into_owned();
        let kind = entry.header().entry_type();
        let Some(target) = entry_path(dir, &name)? else {
            continue;
        };
        // No component of the target may already be something other than a directory we created.
        let mut check = dir.to_path_buf();
        if let Ok(rel) = target.strip_prefix(dir) {
            let parts: Vec<_> = rel.components().collect();
            for part in parts.iter().take(parts.len().saturating_sub(1)) {
                check.push(part);
                if let Ok(meta) = std::fs::symlink_metadata(&check)
                    && !meta.is_dir()
                {
                    return Err(FetchError::Untar(format!(
                        "illegal path in archive: '{}'",
                        name.display()
                    )));
                }
            }
        }
        match kind {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&target).map_err(untar_err)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.header().size().map_err(untar_err)?;
                total = total.saturating_add(size);
                if total > max {
                    return Err(FetchError::Untar(format!(
                        "archive exceeds the unpacked size limit of {max} bytes"
                    )));
                }
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(untar_err)?;
                }
                if std::fs::symlink_metadata(&target).is_ok_and(|m| !m.is_file()) {
                    return Err(FetchError::Untar(format!(
                        "illegal path in archive: '{}'",
                        name.display()
                    )));
                }
                let mut file = std::fs::File::create(&target).map_err(untar_err)?;
                let copied =
                    std::io::copy(&mut (&mut entry).take(size), &mut file).map_err(untar_err)?;
                if copied != size {
                    return Err(FetchError::Untar(format!(
                        "truncated entry '{}'",
                        name.display()
                    )));
                }
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
            other => {
                return Err(FetchError::Untar(format!(
                    "unsupported entry type {other:?} for '{}'",
                    name.display()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tar.gz with the given (path, contents) regular files.
    pub fn tarball(files: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        for (path, contents) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(contents.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, path, contents.as_bytes())
                .unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn raw_tarball(name: &[u8], kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_size(if kind == tar::EntryType::Regular {
            1
        } else {
            0
        });
        header.set_mode(0o644);
        header.set_entry_type(kind);
        if let Some(l) = link {
            header.set_link_name(l).unwrap();
        }
        header.set_cksum();
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        let data: &[u8] = if kind == tar::EntryType::Regular {
            b"x"
        } else {
            b""
        };
        builder.append(&header, data).unwrap();
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn unpacks_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = tarball(&[("deploy/app.yaml", "a: 1"), ("./b.yaml", "b: 2")]);
        untar(&bytes, dir.path(), 1 << 20).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("deploy/app.yaml")).unwrap(),
            "a: 1"
        );
        assert!(dir.path().join("b.yaml").exists());
    }

    #[test]
    fn refuses_traversal_absolute_symlinks_and_devices() {
        for (name, kind, link) in [
            (&b"../evil.yaml"[..], tar::EntryType::Regular, None),
            (&b"a/../../evil.yaml"[..], tar::EntryType::Regular, None),
            (&b"/etc/evil.yaml"[..], tar::EntryType::Regular, None),
            (&b"link"[..], tar::EntryType::Symlink, Some("/etc/passwd")),
            (&b"hard"[..], tar::EntryType::Link, Some("x")),
            (&b"dev"[..], tar::EntryType::Char, None),
            (&b"fifo"[..], tar::EntryType::Fifo, None),
        ] {
            let parent = tempfile::tempdir().unwrap();
            let dir = parent.path().join("root");
            std::fs::create_dir(&dir).unwrap();
            let bytes = raw_tarball(name, kind, link);
            let err = untar(&bytes, &dir, 1 << 20).unwrap_err();
            assert!(
                matches!(err, FetchError::Untar(_)),
                "{:?}: {err}",
                String::from_utf8_lossy(name)
            );
            assert!(!parent.path().join("evil.yaml").exists());
        }
    }

    #[test]
    fn enforces_the_byte_cap() {
        let dir = tempfile::tempdir().unwrap();
        let big = "x".repeat(2048);
        let bytes = tarball(&[("a.yaml", &big)]);
        assert!(untar(&bytes, dir.path(), 1024).is_err());
    }

    #[test]
    fn digest_is_checked() {
        let data = b"hello";
        let good = format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)));
        verify_digest(data, &good).unwrap();
        assert!(matches!(
            verify_digest(b"other", &good),
            Err(FetchError::DigestMismatch { .. })
        ));
        assert!(matches!(
            verify_digest(data, "md5:abc"),
            Err(FetchError::DigestAlgorithm(_))
        ));
    }

    #[test]
    fn hostname_override() {
        assert_eq!(
            override_host(
                "http://source-controller.flux-system.svc.cluster.local./gitrepository/a/b/c.tar.gz",
                Some("localhost:8080")
            )
            .unwrap(),
            "http://localhost:8080/gitrepository/a/b/c.tar.gz"
        );
        assert_eq!(
            override_host("http://x/y", None).unwrap(),
            "http://x/y".to_string()
        );
    }
}
