use std::path::PathBuf;

use pinfold_oci::{Digest, RepoName};

/// What went wrong in the metadata store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    /// The database failed (I/O, corruption, lock timeout).
    #[error("metadata database: {0}")]
    Database(#[from] sqlx::Error),
    /// Schema migration failed at start-up.
    #[error("metadata migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A stored value does not parse back (a digest, name or time written by another tool).
    #[error("metadata row holds an invalid {what}: {value:?}")]
    CorruptValue {
        /// Which column.
        what: &'static str,
        /// What it holds.
        value: String,
    },
    /// The directory meant to hold the database could not be created.
    #[error("creating metadata directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A size does not fit the database's signed 64-bit integers.
    #[error("size {0} is too large to record")]
    SizeTooLarge(u64),
    /// A manifest's annotations could not be encoded as JSON.
    #[error("encoding manifest annotations: {0}")]
    AnnotationsEncoding(#[source] serde_json::Error),
    /// A tag was to point at a manifest that `repo` does not hold.
    #[error("manifest {digest} is unknown in repository {repo}")]
    ManifestUnknown {
        /// The repository.
        repo: RepoName,
        /// The manifest digest.
        digest: Digest,
    },
    /// An upload session with this id is already recorded.
    #[error("upload session {0:?} already exists")]
    UploadExists(String),
}
