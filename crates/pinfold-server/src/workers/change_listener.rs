//! The `change-listener` worker: applies the tag moves other replicas announce (PostgreSQL
//! `LISTEN`) to this replica's reference cache, so that a push through one replica is what
//! every other one serves next. It runs on every replica (no lease); on SQLite there is no other
//! process and it is not started.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use pinfold_meta::{Change, ChangeListener};

use super::{WorkResult, Worker};
use crate::registry::Registry;

/// How long one unit waits for notices before it reports.
const UNIT: Duration = Duration::from_secs(30);

/// See the module documentation.
pub struct ChangeListenerWorker {
    registry: Registry,
    listener: Option<ChangeListener>,
}

impl ChangeListenerWorker {
    /// A listener for `registry`'s metadata database.
    pub fn new(registry: Registry) -> ChangeListenerWorker {
        ChangeListenerWorker {
            registry,
            listener: None,
        }
    }

    async fn listen(&mut self) -> WorkResult {
        let listener = match &mut self.listener {
            Some(listener) => listener,
            None => {
                let listener = self
                    .registry
                    .meta()
                    .listen_changes()
                    .await
                    .map_err(|e| format!("cannot listen for changes: {e}"))?
                    .ok_or("the metadata engine has no change notices")?;
                // Whatever happened before listening was not heard.
                self.registry.apply_change(&Change::Lost);
                self.listener.insert(listener)
            }
        };
        let deadline = tokio::time::Instant::now() + UNIT;
        let mut applied = 0u64;
        loop {
            match tokio::time::timeout_at(deadline, listener.recv()).await {
                Err(_) => return Ok(format!("applied {applied} changes")),
                Ok(Ok(change)) => {
                    self.registry.apply_change(&change);
                    applied += 1;
                }
                Ok(Err(e)) => {
                    self.listener = None;
                    self.registry.apply_change(&Change::Lost);
                    return Err(format!("change notices interrupted: {e}"));
                }
            }
        }
    }
}

impl Worker for ChangeListenerWorker {
    fn name(&self) -> &'static str {
        "change-listener"
    }

    fn interval(&self) -> Duration {
        // Back at once after a unit; after an error, a short pause before reconnecting.
        Duration::from_secs(1)
    }

    fn per_replica(&self) -> bool {
        true
    }

    fn work(&mut self) -> Pin<Box<dyn Future<Output = WorkResult> + Send + '_>> {
        Box::pin(self.listen())
    }
}
