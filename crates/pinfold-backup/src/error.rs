//! What can go wrong with backups, restores and verification.

use std::path::{Path, PathBuf};

use pinfold_meta::MetaError;
use pinfold_store::StoreError;

/// An error of a backup, restore, repair or verification run. Findings about the data (a
/// corrupt blob in a verified directory) are not errors but part of the reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// A file-system operation failed (disk full, permission, ...).
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The metadata could not be snapshotted or read.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The blob store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The directory to back up or verify is not a Pinfold data directory.
    #[error("{0} is not a Pinfold data directory (no meta.db)")]
    NotADataDir(PathBuf),
    /// Another backup or prune is running into the same backup directory.
    #[error("another backup or prune is running into {0} (its lock file is held)")]
    BackupDirBusy(PathBuf),
    /// The backup directory holds no complete backup.
    #[error("{dir} holds no complete backup{}", incomplete_note(.incomplete))]
    NoBackup {
        /// The backup directory.
        dir: PathBuf,
        /// Backups found without a manifest (interrupted).
        incomplete: Vec<String>,
    },
    /// The named backup does not exist.
    #[error("backup {name:?} does not exist in {dir}")]
    BackupUnknown {
        /// The backup directory.
        dir: PathBuf,
        /// The name asked for.
        name: String,
    },
    /// The named backup has no manifest: it was interrupted (or its manifest was removed).
    #[error("backup {0} is incomplete: it has no manifest.json (the backup was interrupted); choose another with --backup")]
    Incomplete(PathBuf),
    /// The manifest is not valid JSON of the expected shape.
    #[error("backup manifest {path} is unreadable: {reason}")]
    ManifestInvalid {
        /// The manifest.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The backup was written in a format this Pinfold does not read.
    #[error("backup {path} has format version {found} (written by Pinfold {written_by}); this Pinfold reads format {expected} only")]
    FormatVersion {
        /// The manifest.
        path: PathBuf,
        /// Its format.
        found: u64,
        /// The Pinfold version that wrote it, as recorded.
        written_by: String,
        /// The format this build reads.
        expected: u32,
    },
    /// Files of the backup are missing, truncated or changed; nothing was restored.
    #[error("backup {backup} is damaged, nothing was restored:\n  {}", .problems.join("\n  "))]
    Damaged {
        /// The backup.
        backup: PathBuf,
        /// One line per damaged file, naming it.
        problems: Vec<String>,
    },
    /// The restore target exists and is not an empty directory.
    #[error("restore target {0} is not empty; restore into a new or empty directory (or use --repair to fix blobs of an existing one)")]
    TargetNotEmpty(PathBuf),
    /// The registry refused a pull or push, or a digest did not verify.
    #[error(transparent)]
    Client(#[from] pinfold_client::ClientError),
    /// An OCI image layout is not what export or import needs.
    #[error("OCI layout {path}: {reason}")]
    Layout {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A background task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
}

fn incomplete_note(incomplete: &[String]) -> String {
    if incomplete.is_empty() {
        String::new()
    } else {
        format!(
            " (incomplete, without manifest.json: {})",
            incomplete.join(", ")
        )
    }
}

impl BackupError {
    /// An I/O error on `path`.
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> BackupError {
        BackupError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

impl From<tokio::task::JoinError> for BackupError {
    fn from(e: tokio::task::JoinError) -> Self {
        BackupError::Task(e.to_string())
    }
}
