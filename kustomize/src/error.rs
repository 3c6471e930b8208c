//! Build errors. Every error names the file (and, where one applies, the field).

use std::path::PathBuf;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read.
    #[error("{path}: {message}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A path leaves the directory it is confined to.
    #[error("{file}: field `{field}`: security: '{path}' is not in or below '{root}'")]
    OutsideRoot {
        /// The kustomization file naming the path.
        file: PathBuf,
        /// The field naming the path.
        field: String,
        /// The offending path.
        path: PathBuf,
        /// The directory it must stay within.
        root: PathBuf,
    },
    /// A file is larger than the size cap.
    #[error("{path}: file is larger than the {limit}-byte limit")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        limit: u64,
    },
    /// Kustomizations include each other.
    #[error("{file}: field `{field}`: cycle: '{path}' includes itself (via {chain})")]
    Cycle {
        /// The kustomization file.
        file: PathBuf,
        /// The field.
        field: String,
        /// The directory that closes the cycle.
        path: PathBuf,
        /// The chain of directories.
        chain: String,
    },
    /// A file is not valid YAML.
    #[error("{file}: invalid YAML: {message}")]
    Yaml {
        /// The file.
        file: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// The kustomization directory has no kustomization file, or more than one.
    #[error("{dir}: {message}")]
    Kustomization {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A field of a kustomization (or of a file it names) is wrong.
    #[error("{file}: {}{message}", field_prefix(field))]
    Field {
        /// The file.
        file: PathBuf,
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A feature that is deliberately not supported.
    #[error("{file}: field `{field}`: {what} is not supported by riptide")]
    Unsupported {
        /// The file.
        file: PathBuf,
        /// The field.
        field: String,
        /// The feature.
        what: String,
    },
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("field `{field}`: ")
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds a [`Error::Field`].
    pub fn field(
        file: impl Into<PathBuf>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Field {
            file: file.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}
