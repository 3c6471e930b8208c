//! Artifact storage: `<root>/<kind>/<namespace>/<name>/<file>`, deterministic tarballs, digests, atomic writes
//! and garbage collection, as Flux's `fluxcd/pkg/artifact/storage`.

pub mod ignore;

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::api::source_v1::Artifact;
use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::Digest as _;

use self::ignore::IgnoreRules;

/// Mode of directories in an artifact.
pub const DIR_MODE: u32 = 0o750;
/// Mode of executable files in an artifact.
pub const EXE_FILE_MODE: u32 = 0o700;
/// Mode of other files in an artifact.
pub const FILE_MODE: u32 = 0o600;

/// `--artifact-digest-algo`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DigestAlgo {
    /// SHA-256 (Flux's canonical digest).
    #[default]
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
    /// BLAKE3.
    Blake3,
}

impl DigestAlgo {
    /// The algorithm's prefix in a digest string.
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlgo::Sha256 => "sha256",
            DigestAlgo::Sha384 => "sha384",
            DigestAlgo::Sha512 => "sha512",
            DigestAlgo::Blake3 => "blake3",
        }
    }

    fn from_prefix(prefix: &str) -> Option<Self> {
        match prefix {
            "sha256" => Some(DigestAlgo::Sha256),
            "sha384" => Some(DigestAlgo::Sha384),
            "sha512" => Some(DigestAlgo::Sha512),
            "blake3" => Some(DigestAlgo::Blake3),
            _ => None,
        }
    }

    /// A hasher writing into this algorithm.
    pub fn hasher(self) -> Hasher {
        match self {
            DigestAlgo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            DigestAlgo::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            DigestAlgo::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
            DigestAlgo::Blake3 => Hasher::Blake3(Box::new(blake3::Hasher::new())),
        }
    }
}

/// A running digest (`<algo>:<hex>`).
pub enum Hasher {
    /// SHA-256.
    Sha256(sha2::Sha256),
    /// SHA-384.
    Sha384(sha2::Sha384),
    /// SHA-512.
    Sha512(sha2::Sha512),
    /// BLAKE3.
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
            Hasher::Blake3(h) => {
                h.update(data);
            }
        }
    }

    /// The digest string, `<algo>:<hex>`.
    pub fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            Hasher::Sha384(h) => format!("sha384:{}", hex::encode(h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
            Hasher::Blake3(h) => format!("blake3:{}", h.finalize().to_hex()),
        }
    }
}

/// The digest of a file's bytes with `algo`.
pub fn digest_file(path: &Path, algo: DigestAlgo) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = algo.hasher();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish())
}

/// A storage failure, with the Flux reason it maps to.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A directory could not be created (`DirectoryCreationFailed`).
    #[error("failed to create artifact directory: {0}")]
    Mkdir(#[source] io::Error),
    /// The tree could not be archived (`ArchiveOperationFailed`).
    #[error("unable to archive artifact to storage: {0}")]
    Archive(#[source] io::Error),
    /// Ignore rules could not be loaded.
    #[error("failed to load source ignore patterns from repository: {0}")]
    Ignore(#[from] ignore::IgnoreError),
    /// A file could not be read or removed.
    #[error("{action} '{path}': {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The path, relative to the storage root.
        path: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// The artifact store.
#[derive(Clone, Debug)]
pub struct Storage {
    root: PathBuf,
    hostname: String,
    /// `--artifact-retention-ttl`.
    pub retention_ttl: Duration,
    /// `--artifact-retention-records`.
    pub retention_records: usize,
    /// `--artifact-digest-algo`.
    pub digest_algo: DigestAlgo,
}

/// `gitrepository/<ns>/<name>/<file>`: an artifact's path relative to the storage root.
pub fn artifact_path(kind: &str, namespace: &str, name: &str, file: &str) -> String {
    format!("{}/{namespace}/{name}/{file}", kind.to_lowercase())
}

/// Whether `rel` is a relative path that stays under the root (no `..`, no absolute parts).
pub fn is_safe_relative(rel: &str) -> bool {
    !rel.is_empty()
        && Path::new(rel)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

impl Storage {
    /// A store at `root`, advertising artifacts at `http://<hostname>/<path>`.
    pub fn new(root: impl Into<PathBuf>, hostname: impl Into<String>) -> Self {
        Storage {
            root: root.into(),
            hostname: hostname.into(),
            retention_ttl: Duration::from_secs(60),
            retention_records: 2,
            digest_algo: DigestAlgo::Sha256,
        }
    }

    /// The storage root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of an artifact path.
    pub fn local_path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The URL an artifact path is served at.
    pub fn url(&self, rel: &str) -> String {
        format!("http://{}/{}", self.hostname, rel.trim_start_matches('/'))
    }

    /// Rewrites an artifact's URL for this server's advertised address.
    pub fn set_url(&self, artifact: &mut Artifact) {
        artifact.url = self.url(&artifact.path);
    }

    /// Whether the artifact's file exists and its digest matches. `Ok(false)` when missing or different.
    pub fn verify(&self, artifact: &Artifact) -> io::Result<bool> {
        let path = self.local_path(&artifact.path);
        let algo = artifact
            .digest
            .split_once(':')
            .and_then(|(p, _)| DigestAlgo::from_prefix(p))
            .unwrap_or(self.digest_algo);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(digest_file(&path, algo)? == artifact.digest),
            Ok(_) => Ok(false),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Removes one artifact file (missing is fine).
    pub fn remove(&self, rel: &str) -> io::Result<()> {
        match std::fs::remove_file(self.local_path(rel)) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    /// Removes everything stored for an object (its directory).
    pub fn remove_all(&self, kind: &str, namespace: &str, name: &str) -> io::Result<()> {
        let dir = self
            .root
            .join(kind.to_lowercase())
            .join(namespace)
            .join(name);
        match std::fs::remove_dir_all(dir) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    /// Archives the tree at `dir` (minus what `rules` exclude) as the artifact file `rel`: written to a temporary
    /// file beside it, then renamed. Returns the digest and size.
    pub fn archive(
        &self,
        rel: &str,
        dir: &Path,
        rules: &IgnoreRules,
    ) -> Result<(String, i64), StorageError> {
        let target = self.local_path(rel);
        let parent = target
            .parent()
            .ok_or_else(|| StorageError::Mkdir(io::Error::other("artifact path has no parent")))?;
        std::fs::create_dir_all(parent).map_err(StorageError::Mkdir)?;
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(parent)
            .map_err(StorageError::Archive)?;
        let file = tmp.as_file().try_clone().map_err(StorageError::Archive)?;
        let mut hashing = HashingWriter {
            inner: BufWriter::with_capacity(256 * 1024, file),
            hasher: self.digest_algo.hasher(),
            written: 0,
        };
        write_tarball(dir, rules, &mut hashing).map_err(StorageError::Archive)?;
        hashing.inner.flush().map_err(StorageError::Archive)?;
        let HashingWriter {
            inner,
            hasher,
            written,
        } = hashing;
        drop(inner);
        set_mode(tmp.path(), 0o600).map_err(StorageError::Archive)?;
        tmp.persist(&target)
            .map_err(|e| StorageError::Archive(e.error))?;
        Ok((hasher.finish(), i64::try_from(written).unwrap_or(i64::MAX)))
    }

    /// Garbage-collects the object's directory: keeps `current`, removes files older than the TTL, and keeps at
    /// most `retention_records` artifacts in all (newest first). Returns the removed paths (relative).
    pub fn garbage_collect(&self, current: &str) -> io::Result<Vec<String>> {
        let current_path = self.local_path(current);
        let Some(dir) = current_path.parent() else {
            return Ok(Vec::new());
        };
        let mut others: Vec<(SystemTime, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let meta = entry.metadata()?;
            let name = entry.file_name().to_string_lossy().to_string();
            if path == current_path || !meta.is_file() || name.starts_with(".tmp-") {
                continue;
            }
            others.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), path));
        }
        others.sort_by_key(|o| std::cmp::Reverse(o.0));
        let now = SystemTime::now();
        let keep_others = self.retention_records.saturating_sub(1);
        let mut removed = Vec::new();
        for (i, (modified, path)) in others.into_iter().enumerate() {
            let expired = now
                .duration_since(modified)
                .map(|age| age > self.retention_ttl)
                .unwrap_or(false);
            if expired || i >= keep_others {
                std::fs::remove_file(&path)?;
                if let Ok(rel) = path.strip_prefix(&self.root) {
                    removed.push(rel.to_string_lossy().to_string());
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: Hasher,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the deterministic gzip tarball of `dir` to `out`: entries in lexical walk order, paths relative,
/// directories and regular files only, uid/gid 0, no names, zero times, modes 0750/0700/0600.
pub fn write_tarball(dir: &Path, rules: &IgnoreRules, out: impl Write) -> io::Result<()> {
    let gz = GzEncoder::new(out, Compression::new(6));
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    append_dir(&mut tar, dir, dir, rules)?;
    let gz = tar.into_inner()?;
    gz.finish()?.flush()
}

fn append_dir<W: Write>(
    tar: &mut tar::Builder<W>,
    root: &Path,
    dir: &Path,
    rules: &IgnoreRules,
) -> io::Result<()> {
    let mut entries: Vec<(String, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| (e.file_name().to_string_lossy().to_string(), e.path()))
        .collect();
    entries.sort();
    for (_, path) in entries {
        let meta = std::fs::symlink_metadata(&path)?;
        let is_dir = meta.is_dir();
        if !(is_dir || meta.is_file()) {
            continue; // symlinks, sockets, ...
        }
        if path.file_name().is_some_and(|n| n == ".git") {
            continue; // the repository, or a submodule's gitlink file
        }
        let ignored = rules.is_ignored(&path, is_dir);
        let rel = path
            .strip_prefix(root)
            .map_err(io::Error::other)?
            .to_string_lossy()
            .replace('\\', "/");
        if is_dir {
            if !ignored {
                let mut header = header(tar::EntryType::Directory, DIR_MODE, 0);
                tar.append_data(&mut header, format!("{rel}/"), io::empty())?;
            }
            append_dir(tar, root, &path, rules)?;
        } else if !ignored {
            let mode = if is_executable(&meta) {
                EXE_FILE_MODE
            } else {
                FILE_MODE
            };
            let mut header = header(tar::EntryType::Regular, mode, meta.len());
            let file = File::open(&path)?;
            tar.append_data(&mut header, &rel, file)?;
        }
    }
    Ok(())
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &std::fs::Metadata) -> bool {
    false
}

/// Extracts a stored tarball into `dest` (used for `include`): only relative paths of regular files and
/// directories.
pub fn extract_tarball(archive: &Path, dest: &Path) -> io::Result<()> {
    let file = File::open(archive)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_path_buf();
        if !path.components().all(|c| matches!(c, Component::Normal(_))) {
            continue;
        }
        let target = dest.join(&path);
        match entry.header().entry_type() {
            tar::EntryType::Directory => std::fs::create_dir_all(&target)?,
            tar::EntryType::Regular => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let mut out = File::create(&target)?;
                io::copy(&mut entry, &mut out)?;
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        dir
    }

    fn entries(archive: &Path) -> Vec<(String, u32, u64, u64)> {
        let file = File::open(archive).unwrap();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
        tar.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().to_string(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn same_tree_same_digest_with_normalised_headers() {
        let files = [
            ("b/x.yaml", "x"),
            ("a.yaml", "a"),
            ("run.sh", "#!/bin/sh"),
            ("logo.png", "img"),
        ];
        let one = tree(&files);
        let two = tree(&files);
        set_mode(&one.path().join("run.sh"), 0o755).unwrap();
        set_mode(&two.path().join("run.sh"), 0o775).unwrap();
        let storage_dir = tempfile::tempdir().unwrap();
        let storage = Storage::new(storage_dir.path(), "localhost");
        let rules1 = IgnoreRules::load(one.path(), None).unwrap();
        let rules2 = IgnoreRules::load(two.path(), None).unwrap();
        let (d1, s1) = storage
            .archive("gitrepository/ns/a/1.tar.gz", one.path(), &rules1)
            .unwrap();
        let (d2, s2) = storage
            .archive("gitrepository/ns/a/2.tar.gz", two.path(), &rules2)
            .unwrap();
        assert_eq!((d1.clone(), s1), (d2, s2));
        assert!(d1.starts_with("sha256:") && d1.len() == 7 + 64);
        let path = storage.local_path("gitrepository/ns/a/1.tar.gz");
        assert_eq!(digest_file(&path, DigestAlgo::Sha256).unwrap(), d1);
        assert_eq!(
            entries(&path),
            vec![
                ("a.yaml".into(), 0o600, 0, 0),
                ("b/".into(), 0o750, 0, 0),
                ("b/x.yaml".into(), 0o600, 0, 0),
                ("run.sh".into(), 0o700, 0, 0),
            ]
        );
        let artifact = Artifact {
            digest: d1,
            path: "gitrepository/ns/a/1.tar.gz".into(),
            ..Default::default()
        };
        assert!(storage.verify(&artifact).unwrap());
        std::fs::write(&path, b"tampered").unwrap();
        assert!(!storage.verify(&artifact).unwrap());
    }

    #[test]
    fn digest_algorithms() {
        let dir = tree(&[("f", "abc")]);
        let f = dir.path().join("f");
        assert_eq!(
            digest_file(&f, DigestAlgo::Sha256).unwrap(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(
            digest_file(&f, DigestAlgo::Sha384)
                .unwrap()
                .starts_with("sha384:cb00753f")
        );
        assert!(
            digest_file(&f, DigestAlgo::Sha512)
                .unwrap()
                .starts_with("sha512:ddaf35a1")
        );
        assert!(
            digest_file(&f, DigestAlgo::Blake3)
                .unwrap()
                .starts_with("blake3:6437b3ac")
        );
    }

    #[test]
    fn paths_and_urls() {
        let storage = Storage::new("/data", "source-controller.flux-system.svc.cluster.local.");
        let rel = artifact_path("GitRepository", "default", "podinfo", "abc.tar.gz");
        assert_eq!(rel, "gitrepository/default/podinfo/abc.tar.gz");
        assert_eq!(
            storage.url(&rel),
            "http://source-controller.flux-system.svc.cluster.local./gitrepository/default/podinfo/abc.tar.gz"
        );
        assert!(is_safe_relative(&rel));
        assert!(!is_safe_relative("../etc/passwd"));
        assert!(!is_safe_relative("/etc/passwd"));
        assert!(!is_safe_relative("a/../../b"));
        assert!(!is_safe_relative(""));
    }

    #[test]
    fn garbage_collection_keeps_current_and_newest_records() {
        let root = tempfile::tempdir().unwrap();
        let mut storage = Storage::new(root.path(), "h");
        storage.retention_records = 2;
        storage.retention_ttl = Duration::from_secs(3600);
        let dir = root.path().join("gitrepository/ns/n");
        std::fs::create_dir_all(&dir).unwrap();
        for (i, name) in ["old.tar.gz", "mid.tar.gz", "new.tar.gz", "cur.tar.gz"]
            .iter()
            .enumerate()
        {
            let p = dir.join(name);
            std::fs::write(&p, "x").unwrap();
            let t = SystemTime::now() - Duration::from_secs(100 - i as u64 * 10);
            File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        let mut removed = storage
            .garbage_collect("gitrepository/ns/n/cur.tar.gz")
            .unwrap();
        removed.sort();
        assert_eq!(
            removed,
            vec![
                "gitrepository/ns/n/mid.tar.gz",
                "gitrepository/ns/n/old.tar.gz"
            ]
        );
        assert!(dir.join("new.tar.gz").exists() && dir.join("cur.tar.gz").exists());

        storage.retention_ttl = Duration::from_secs(1);
        let removed = storage
            .garbage_collect("gitrepository/ns/n/cur.tar.gz")
            .unwrap();
        assert_eq!(
            removed,
            vec!["gitrepository/ns/n/new.tar.gz"],
            "expired by TTL"
        );
        storage.remove_all("GitRepository", "ns", "n").unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn extract_round_trip() {
        let src = tree(&[("a/b.yaml", "b"), ("c.yaml", "c")]);
        let root = tempfile::tempdir().unwrap();
        let storage = Storage::new(root.path(), "h");
        let rules = IgnoreRules::load(src.path(), None).unwrap();
        storage
            .archive("x/y/z/t.tar.gz", src.path(), &rules)
            .unwrap();
        let out = tempfile::tempdir().unwrap();
        extract_tarball(&storage.local_path("x/y/z/t.tar.gz"), out.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.path().join("a/b.yaml")).unwrap(),
            "b"
        );
        assert_eq!(
            std::fs::read_to_string(out.path().join("c.yaml")).unwrap(),
            "c"
        );
    }
}
