//! Confined file access: nothing outside the build root is read, and files a
//! kustomization names (patches, generator sources, configurations, ...) must
//! sit in or below that kustomization's own directory, as with kustomize's
//! default `LoadRestrictionsRootOnly`. Paths are checked on the fully resolved
//! path (symlinks followed), so symlinks cannot escape either boundary.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Default cap on the size of any one file (8 MiB).
pub const DEFAULT_MAX_FILE_SIZE: u64 = 8 * 1024 * 1024;

/// Reads files under a confinement root.
#[derive(Debug, Clone)]
pub struct Loader {
    root: PathBuf,
    max_file_size: u64,
}

fn io_err(path: &Path, e: &std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Whether a reference is a remote (URL or git) resource.
pub fn is_remote(s: &str) -> bool {
    s.contains("://")
        || s.starts_with("git@")
        || s.starts_with("github.com/")
        || s.starts_with("gitlab.com/")
        || s.starts_with("bitbucket.org/")
        || s.contains("?ref=")
        || s.contains(".git//")
}

impl Loader {
    /// A loader confined to `root` (which must exist).
    pub fn new(root: &Path, max_file_size: u64) -> Result<Self> {
        let root = root.canonicalize().map_err(|e| io_err(root, &e))?;
        Ok(Loader {
            root,
            max_file_size,
        })
    }

    /// The canonical confinement root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves `rel` against directory `base`, refusing absolute paths and
    /// anything that resolves outside the build root. Returns the canonical path.
    pub fn resolve(&self, base: &Path, rel: &str, file: &Path, field: &str) -> Result<PathBuf> {
        let relp = Path::new(rel);
        if relp.is_absolute() || relp.components().any(|c| matches!(c, Component::Prefix(_))) {
            return Err(Error::field(
                file,
                field,
                format!("absolute path '{rel}' is not allowed"),
            ));
        }
        let joined = base.join(relp);
        let canon = joined.canonicalize().map_err(|e| io_err(&joined, &e))?;
        if !canon.starts_with(&self.root) {
            return Err(Error::OutsideRoot {
                file: file.to_path_buf(),
                field: field.to_string(),
                path: canon,
                root: self.root.clone(),
            });
        }
        Ok(canon)
    }

    /// Reads a file that must be in or below `kdir` (a kustomization's directory).
    pub fn read_file(&self, kdir: &Path, rel: &str, file: &Path, field: &str) -> Result<String> {
        let path = self.resolve(kdir, rel, file, field)?;
        if !path.starts_with(kdir) {
            return Err(Error::OutsideRoot {
                file: file.to_path_buf(),
                field: field.to_string(),
                path,
                root: kdir.to_path_buf(),
            });
        }
        self.read_abs(&path)
    }

    /// Reads a file already resolved and checked.
    pub fn read_abs(&self, path: &Path) -> Result<String> {
        let meta = std::fs::metadata(path).map_err(|e| io_err(path, &e))?;
        if meta.is_dir() {
            return Err(Error::Io {
                path: path.to_path_buf(),
                message: "is a directory".into(),
            });
        }
        if meta.len() > self.max_file_size {
            return Err(Error::TooLarge {
                path: path.to_path_buf(),
                limit: self.max_file_size,
            });
        }
        let bytes = std::fs::read(path).map_err(|e| io_err(path, &e))?;
        String::from_utf8(bytes).map_err(|_| Error::Io {
            path: path.to_path_buf(),
            message: "file is not valid UTF-8".into(),
        })
    }

    /// Reads a file's raw bytes (for generator sources), confined to `kdir`.
    pub fn read_bytes(&self, kdir: &Path, rel: &str, file: &Path, field: &str) -> Result<Vec<u8>> {
        let path = self.resolve(kdir, rel, file, field)?;
        if !path.starts_with(kdir) {
            return Err(Error::OutsideRoot {
                file: file.to_path_buf(),
                field: field.to_string(),
                path,
                root: kdir.to_path_buf(),
            });
        }
        let meta = std::fs::metadata(&path).map_err(|e| io_err(&path, &e))?;
        if meta.len() > self.max_file_size {
            return Err(Error::TooLarge {
                path,
                limit: self.max_file_size,
            });
        }
        std::fs::read(&path).map_err(|e| io_err(&path, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_detection() {
        assert!(is_remote("https://github.com/x/y"));
        assert!(is_remote("github.com/x/y?ref=v1"));
        assert!(!is_remote("../base"));
    }

    #[test]
    fn refuses_escapes() {
        let dir = std::env::temp_dir().join(format!("riptide-loader-{}", std::process::id()));
        let inner = dir.join("inner");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::write(dir.join("secret.yaml"), "a: 1").unwrap();
        let l = Loader::new(&inner, 1024).unwrap();
        let base = l.root().to_path_buf();
        let e = l
            .read_file(&base, "../secret.yaml", Path::new("k.yaml"), "resources")
            .unwrap_err();
        assert!(e.to_string().contains("security"), "{e}");
        let e = l
            .read_file(&base, "/etc/passwd", Path::new("k.yaml"), "resources")
            .unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
