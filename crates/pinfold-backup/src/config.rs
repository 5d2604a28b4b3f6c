//! The `[backup]` section of `pinfold.toml`: scheduled backups inside `pinfold serve`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Scheduled backups. Off unless `to` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// Backup directory the server backs up into. Default none: no scheduled backups.
    pub to: Option<PathBuf>,
    /// Seconds between two scheduled backups; the first runs when the server starts.
    /// Default 86400 (daily).
    pub interval_seconds: u64,
    /// Backups kept in `to` after each run (older ones and the blobs only they need are
    /// removed). Default 7; at least 1 is always kept.
    pub keep: usize,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            to: None,
            interval_seconds: 86_400,
            keep: 7,
        }
    }
}
