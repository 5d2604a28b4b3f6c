//! Rebuilds APT indices after changes: woken by every upload or publish, it waits a short
//! debounce delay (so a burst of uploads is indexed once) and rebuilds every publication whose
//! content changed. It also runs every interval without a wake-up, which picks up changes
//! made by another replica sharing the database, and once at start, which finishes work a
//! crash interrupted (the `change_seq` marks are in the database). After each pass it deletes
//! the blobs of index files pruned from the by-hash window longer than a grace period ago.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::{WorkResult, Worker};
use crate::apt::AptService;

/// The `apt-reindex` worker.
pub struct AptReindexer {
    apt: AptService,
    interval: Duration,
}

impl AptReindexer {
    /// A reindexer polling every `interval` besides its wake-ups.
    pub fn new(apt: AptService, interval: Duration) -> AptReindexer {
        AptReindexer { apt, interval }
    }
}

impl Worker for AptReindexer {
    fn name(&self) -> &'static str {
        "apt-reindex"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn work(&mut self) -> Pin<Box<dyn Future<Output = WorkResult> + Send + '_>> {
        Box::pin(async move {
            let rebuilt = self
                .apt
                .reindex_pending()
                .await
                .map_err(|e| e.to_string())?;
            // After reindexing, in the same worker: no reindex of this process runs while
            // the collector deletes (see `AptService::collect_index_garbage`).
            let deleted = self
                .apt
                .collect_index_garbage()
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "rebuilt the indices of {rebuilt} publications, deleted {deleted} old index files"
            ))
        })
    }

    fn wait_for_work(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            tokio::select! {
                () = self.apt.changed() => {
                    tokio::time::sleep(self.apt.settings().reindex_delay).await;
                }
                () = tokio::time::sleep(self.interval) => {}
            }
        })
    }
}
