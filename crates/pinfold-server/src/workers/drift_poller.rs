//! Checks mirrored tags upstream and records drift: the mirror's half of "a tag keeps serving
//! what a build saw, and you learn when the upstream moved it".

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use pinfold_mirror::Mirror;

use super::{WorkResult, Worker};

/// The drift poller: one pass per `[mirror] drift_interval_seconds` (see
/// [`Mirror::poll_drift`] for what a pass does).
pub struct DriftPoller {
    mirror: Mirror,
}

impl DriftPoller {
    /// A poller over `mirror`'s upstreams.
    pub fn new(mirror: Mirror) -> DriftPoller {
        DriftPoller { mirror }
    }
}

impl Worker for DriftPoller {
    fn name(&self) -> &'static str {
        "drift-poller"
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(self.mirror.settings().drift_interval_seconds.max(1))
    }

    fn work(&mut self) -> Pin<Box<dyn Future<Output = WorkResult> + Send + '_>> {
        Box::pin(async move {
            let pass = self.mirror.poll_drift().await.map_err(|e| e.to_string())?;
            Ok(format!(
                "checked {} tags: {} new drift events, {} failed, {} skipped (rate limited)",
                pass.checked, pass.new_drift, pass.failed, pass.skipped
            ))
        })
    }
}
