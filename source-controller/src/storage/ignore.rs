//! Flux's `.sourceignore` rules (`fluxcd/pkg/sourceignore`): gitignore semantics, one domain per directory that
//! holds a `.sourceignore`, `spec.ignore` last (highest priority), and the default exclusions used only when no
//! user pattern exists at all (the VCS exclusions always apply).

use std::path::{Path, PathBuf};

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// The ignore file Flux reads from every directory of a source.
pub const IGNORE_FILE: &str = ".sourceignore";
/// Version-control files, always excluded.
pub const EXCLUDE_VCS: &[&str] = &[".git/", ".gitignore", ".gitmodules", ".gitattributes"];
/// Default exclusions (extensions, CI config, extra), replaced by any user pattern.
pub const EXCLUDE_DEFAULT: &[&str] = &[
    "*.jpg",
    "*.jpeg",
    "*.gif",
    "*.png",
    "*.wmv",
    "*.flv",
    "*.tar.gz",
    "*.zip",
    ".github/",
    ".circleci/",
    ".travis.yml",
    ".gitlab-ci.yml",
    "appveyor.yml",
    ".drone.yml",
    "cloudbuild.yaml",
    "codeship-services.yml",
    "codeship-steps.yml",
    "**/.goreleaser.yml",
    "**/.sops.yaml",
    "**/.flux.yaml",
];

/// An ignore pattern could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    /// A `.sourceignore` could not be read.
    #[error("failed to read '{path}': {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A pattern set could not be compiled.
    #[error("invalid ignore pattern: {0}")]
    Pattern(#[from] ignore::Error),
}

/// Patterns in priority order (later layers win), each scoped to a directory of the tree.
pub struct IgnoreRules {
    layers: Vec<Gitignore>,
}

fn layer(root: &Path, lines: &[&str]) -> Result<Option<Gitignore>, IgnoreError> {
    let mut builder = GitignoreBuilder::new(root);
    let mut any = false;
    for line in lines {
        let trimmed = line.trim_end_matches('\r');
        if trimmed.starts_with('#') || trimmed.trim().is_empty() {
            continue;
        }
        builder.add_line(None, trimmed)?;
        any = true;
    }
    Ok(if any { Some(builder.build()?) } else { None })
}

impl IgnoreRules {
    /// Rules for the tree at `dir`: every `.sourceignore` in it (parents before children) and then `spec_ignore`.
    pub fn load(dir: &Path, spec_ignore: Option<&str>) -> Result<Self, IgnoreError> {
        let mut user = Vec::new();
        collect_ignore_files(dir, &mut user)?;
        if let Some(spec) = spec_ignore {
            let lines: Vec<&str> = spec.lines().collect();
            if let Some(l) = layer(dir, &lines)? {
                user.push(l);
            }
        }
        let mut layers = Vec::new();
        if let Some(vcs) = layer(dir, EXCLUDE_VCS)? {
            layers.push(vcs);
        }
        if user.is_empty()
            && let Some(defaults) = layer(dir, EXCLUDE_DEFAULT)?
        {
            layers.push(defaults);
        }
        layers.extend(user);
        Ok(IgnoreRules { layers })
    }

    /// Whether `path` (under the loaded directory) is excluded.
    pub fn is_ignored(&self, path: &Path, is_dir: bool) -> bool {
        for layer in self.layers.iter().rev() {
            if !path.starts_with(layer.path()) {
                continue;
            }
            match layer.matched_path_or_any_parents(path, is_dir) {
                Match::Ignore(_) => return true,
                Match::Whitelist(_) => return false,
                Match::None => {}
            }
        }
        false
    }
}

fn collect_ignore_files(dir: &Path, out: &mut Vec<Gitignore>) -> Result<(), IgnoreError> {
    let file = dir.join(IGNORE_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            if let Some(l) = layer(dir, &lines)? {
                out.push(l);
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(IgnoreError::Read { path: file, source }),
    }
    let mut children: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| IgnoreError::Read {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false) && e.file_name() != ".git")
        .map(|e| e.path())
        .collect();
    children.sort();
    for child in children {
        collect_ignore_files(&child, out)?;
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

    #[test]
    fn defaults_apply_without_user_patterns() {
        let dir = tree(&[("a.yaml", ""), ("logo.png", ""), (".github/ci.yml", "")]);
        let rules = IgnoreRules::load(dir.path(), None).unwrap();
        let p = |s: &str| dir.path().join(s);
        assert!(!rules.is_ignored(&p("a.yaml"), false));
        assert!(rules.is_ignored(&p("logo.png"), false));
        assert!(rules.is_ignored(&p(".github/ci.yml"), false));
        assert!(rules.is_ignored(&p(".github"), true));
        assert!(rules.is_ignored(&p(".gitignore"), false));
    }

    #[test]
    fn user_patterns_replace_the_defaults_but_not_vcs() {
        let dir = tree(&[("a.yaml", ""), ("logo.png", "")]);
        let rules = IgnoreRules::load(dir.path(), Some("*.yaml\n")).unwrap();
        let p = |s: &str| dir.path().join(s);
        assert!(rules.is_ignored(&p("a.yaml"), false));
        assert!(
            !rules.is_ignored(&p("logo.png"), false),
            "defaults replaced"
        );
        assert!(rules.is_ignored(&p(".gitmodules"), false), "VCS always");
    }

    #[test]
    fn flux_doc_exclude_all_but_deploy() {
        let dir = tree(&[
            ("deploy/app.yaml", ""),
            ("src/main.go", ""),
            ("README.md", ""),
        ]);
        let rules = IgnoreRules::load(
            dir.path(),
            Some("# exclude all\n/*\n# include deploy dir\n!/deploy\n"),
        )
        .unwrap();
        let p = |s: &str| dir.path().join(s);
        assert!(!rules.is_ignored(&p("deploy"), true));
        assert!(!rules.is_ignored(&p("deploy/app.yaml"), false));
        assert!(rules.is_ignored(&p("src/main.go"), false));
        assert!(rules.is_ignored(&p("README.md"), false));
    }

    #[test]
    fn nested_sourceignore_is_scoped_to_its_directory_and_spec_wins() {
        let dir = tree(&[
            ("apps/.sourceignore", "*.txt\n"),
            ("apps/notes.txt", ""),
            ("notes.txt", ""),
            ("keep.md", ""),
        ]);
        let rules = IgnoreRules::load(dir.path(), Some("!apps/notes.txt\n")).unwrap();
        let p = |s: &str| dir.path().join(s);
        assert!(!rules.is_ignored(&p("notes.txt"), false), "scoped to apps/");
        assert!(
            !rules.is_ignored(&p("apps/notes.txt"), false),
            "spec.ignore wins"
        );
        let rules = IgnoreRules::load(dir.path(), None).unwrap();
        assert!(rules.is_ignored(&p("apps/notes.txt"), false));
        assert!(!rules.is_ignored(&p("keep.md"), false));
    }
}
