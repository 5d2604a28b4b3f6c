//! The `backup` worker: scheduled backups inside `pinfold serve` (`[backup]` in
//! `pinfold.toml`). Each run is one `pinfold_backup::backup` of the live data directory (online:
//! a metadata snapshot, then the blobs it names, holding the sweep lock shared so no garbage
//! collection removes them meanwhile) followed by a prune down to `keep` backups.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use pinfold_backup::{BackupConfig, NoProgress};

use super::{WorkResult, Worker};
use crate::registry::Registry;

/// Scheduled backups of this server's data directory.
pub struct ScheduledBackup {
    registry: Registry,
    to: PathBuf,
    interval: Duration,
    keep: usize,
}

impl ScheduledBackup {
    /// A worker backing up into `config.to` every `config.interval_seconds` (the first run at
    /// start), keeping `config.keep` backups. Does nothing useful without `config.to`.
    pub fn new(registry: Registry, config: BackupConfig) -> ScheduledBackup {
        ScheduledBackup {
            registry,
            to: config.to.unwrap_or_default(),
            interval: Duration::from_secs(config.interval_seconds.max(1)),
            keep: config.keep,
        }
    }

    async fn run(&self) -> WorkResult {
        if self.to.as_os_str().is_empty() {
            return Err("no backup directory configured ([backup] to)".into());
        }
        let summary = pinfold_backup::backup(
            self.registry.meta(),
            self.registry.store(),
            &self.to,
            Arc::new(NoProgress),
        )
        .await
        .map_err(|e| e.to_string())?;
        let pruned = pinfold_backup::prune(&self.to, self.keep)
            .await
            .map_err(|e| format!("backup {} done, prune failed: {e}", summary.name))?;
        let result = format!(
            "backup {}: {} blobs copied, {} already there, {} bytes, {:.1} s; pruned {} backups, {} blobs",
            summary.name,
            summary.blobs_copied,
            summary.blobs_skipped,
            summary.bytes_copied,
            summary.seconds,
            pruned.removed_backups.len(),
            pruned.removed_blobs
        );
        if summary.missing.is_empty() {
            Ok(result)
        } else {
            Err(format!(
                "{result}; {} required blobs missing or corrupt in the data directory (first: {} needed by {})",
                summary.missing.len(),
                summary.missing[0].digest,
                summary.missing[0].referrer
            ))
        }
    }
}

impl Worker for ScheduledBackup {
    fn name(&self) -> &'static str {
        "backup"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn work(&mut self) -> Pin<Box<dyn Future<Output = WorkResult> + Send + '_>> {
        Box::pin(self.run())
    }
}
