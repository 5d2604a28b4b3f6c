//! The `gc` worker: garbage collection every `[gc] interval_seconds` inside `pinfold serve`
//! (`registry/gc.rs` does the work; `POST /api/v1/gc` runs the same code on demand).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::{WorkResult, Worker};
use crate::registry::gc::GcError;
use crate::registry::Registry;

/// The GC worker.
pub struct GarbageCollector {
    registry: Registry,
    interval: Duration,
    orphan_scan_every: u64,
    runs: u64,
}

impl GarbageCollector {
    /// A worker collecting every `interval`, with the orphan-file pass every
    /// `orphan_scan_every` runs (0: never on its own).
    pub fn new(registry: Registry, interval: Duration, orphan_scan_every: u64) -> Self {
        GarbageCollector {
            registry,
            interval,
            orphan_scan_every,
            runs: 0,
        }
    }

    async fn collect(&mut self) -> WorkResult {
        self.runs += 1;
        let orphans =
            self.orphan_scan_every > 0 && self.runs.is_multiple_of(self.orphan_scan_every);
        match self.registry.collect_garbage(false, orphans).await {
            Ok(report) => Ok(format!(
                "examined {} candidates, removed {} tags by retention, {} manifests and blob links, {} files ({} bytes)",
                report.examined,
                report.retention_removed.len(),
                report.deleted.len(),
                report.files_deleted.len(),
                report.bytes_freed
            )),
            // A backup holds the store: not an error, the next run catches up.
            Err(GcError::Busy) => Ok("skipped: a backup or another GC is running".to_owned()),
            Err(e @ GcError::Registry(_)) => Err(e.to_string()),
        }
    }
}

impl Worker for GarbageCollector {
    fn name(&self) -> &'static str {
        "gc"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn work(&mut self) -> Pin<Box<dyn Future<Output = WorkResult> + Send + '_>> {
        Box::pin(self.collect())
    }
}
