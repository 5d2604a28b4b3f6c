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
    /// Metadata was to be loaded into a database that already holds some (a restore refuses
    /// to mix two instances' metadata).
    #[error("the metadata database is not empty (table {table} has rows); restore into an empty database")]
    NotEmpty {
        /// The first table found holding rows.
        table: String,
    },
    /// Copying metadata between the engines met schemas that differ, or an engine that
    /// cannot take part (a bug in Pinfold's migrations, or a database from another version).
    #[error("copying metadata between SQLite and PostgreSQL: {0}")]
    SchemaMismatch(String),
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
    /// A manifest names blobs or child manifests the repository does not hold (any more):
    /// checked in the transaction that records it, so a concurrent garbage collection cannot
    /// remove them between the registry's check and the record.
    #[error("manifest {digest} references {missing} unknown to repository {repo}")]
    ReferencesMissing {
        /// The repository.
        repo: String,
        /// The manifest.
        digest: String,
        /// The first missing reference.
        missing: String,
    },
    /// An immutable tag already points at another digest (nothing recorded).
    #[error(
        "tag {tag} of {repo} is immutable: it points at {current} and cannot move to {refused}"
    )]
    TagImmutable {
        /// The repository.
        repo: String,
        /// The tag.
        tag: String,
        /// The digest it keeps.
        current: String,
        /// The digest it was not moved to.
        refused: String,
    },
    /// The caller already has as many open upload sessions as allowed.
    #[error("{owner} already has {limit} open upload sessions")]
    TooManyUploads {
        /// `user:<name>` or `addr:<client address>`.
        owner: String,
        /// The cap.
        limit: u32,
    },
    /// An upload session with this id is already recorded.
    #[error("upload session {0:?} already exists")]
    UploadExists(String),
    /// No APT repository has this name.
    #[error("APT repository {0:?} is unknown")]
    AptRepoUnknown(String),
    /// An APT repository with this name already exists.
    #[error("APT repository {0:?} already exists")]
    AptRepoExists(String),
    /// Another file is already stored at this path of the APT repository.
    #[error("a different file (sha256 {existing_sha256}) is already stored at {path}")]
    AptPathConflict {
        /// The path.
        path: String,
        /// SHA-256 of the file stored there.
        existing_sha256: String,
    },
    /// The distribution, component and architecture already list this package version with
    /// another file.
    #[error("{name} {version} ({architecture}) is already in {distribution}/{component} as another file or at another path")]
    AptPackageConflict {
        /// Package name.
        name: String,
        /// Version.
        version: String,
        /// Architecture index.
        architecture: String,
        /// Distribution.
        distribution: String,
        /// Component.
        component: String,
    },
    /// A snapshot with this name already exists (snapshots are immutable).
    #[error("APT snapshot {0:?} already exists")]
    AptSnapshotExists(String),
    /// No snapshot has this name.
    #[error("APT snapshot {0:?} is unknown")]
    AptSnapshotUnknown(String),
    /// Nothing is published at this prefix and distribution.
    #[error("nothing is published at {prefix}/dists/{distribution}")]
    AptPublicationUnknown {
        /// URL prefix.
        prefix: String,
        /// Distribution.
        distribution: String,
    },
}
