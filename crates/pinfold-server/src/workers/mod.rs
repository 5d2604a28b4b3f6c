//! Background work as named workers, each with a status the management API reports
//! (`GET /api/v1/workers`). No bare spawned loops: every periodic task is a [`Worker`] run by
//! [`Workers`], which records runs, errors and the last error, and stops all of them on one
//! cancellation token.

mod apt_reindex;
mod backup;
mod drift_poller;
mod gc;
mod upload_janitor;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use apt_reindex::AptReindexer;
pub use backup::ScheduledBackup;
pub use drift_poller::DriftPoller;
pub use gc::GarbageCollector;
pub use upload_janitor::UploadJanitor;

/// What one unit of work returns: a one-line summary for the status, e.g. "removed 3 uploads".
pub type WorkResult = Result<String, String>;

/// A periodic background task.
pub trait Worker: Send + 'static {
    /// Stable name, shown in the status.
    fn name(&self) -> &'static str;
    /// Time between two units of work.
    fn interval(&self) -> Duration;
    /// One bounded unit of work.
    fn work(&mut self) -> Pin<Box<dyn Future<Output = WorkResult> + Send + '_>>;
    /// Waits until the next unit is due: by default one interval; a worker that is woken by
    /// events (the APT reindexer) returns earlier.
    fn wait_for_work(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let interval = self.interval();
        Box::pin(tokio::time::sleep(interval))
    }
}

/// A worker's state as reported by the API.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerStatus {
    /// The worker's name.
    pub name: &'static str,
    /// `idle`, `working` or `stopped`.
    pub state: &'static str,
    /// Units of work done.
    pub runs: u64,
    /// Units that failed.
    pub errors: u64,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// The last success's summary.
    pub last_result: Option<String>,
    /// When the last unit ended.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_run_at: Option<OffsetDateTime>,
}

/// Runs workers and keeps their statuses. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Workers {
    statuses: Arc<Mutex<BTreeMap<&'static str, WorkerStatus>>>,
    cancel: CancellationToken,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Workers {
    /// Starts `worker` on the current runtime: a first unit right away, then one per interval.
    pub fn spawn(&self, mut worker: impl Worker) {
        let name = worker.name();
        let statuses = Arc::clone(&self.statuses);
        statuses.lock().insert(
            name,
            WorkerStatus {
                name,
                state: "idle",
                runs: 0,
                errors: 0,
                last_error: None,
                last_result: None,
                last_run_at: None,
            },
        );
        let cancel = self.cancel.clone();
        let set_state = move |statuses: &Mutex<BTreeMap<&'static str, WorkerStatus>>, state| {
            if let Some(s) = statuses.lock().get_mut(name) {
                s.state = state;
            }
        };
        self.tasks.lock().spawn(async move {
            loop {
                set_state(&statuses, "working");
                let result = tokio::select! {
                    result = worker.work() => result,
                    () = cancel.cancelled() => break,
                };
                if let Some(s) = statuses.lock().get_mut(name) {
                    s.state = "idle";
                    s.runs += 1;
                    s.last_run_at = Some(OffsetDateTime::now_utc());
                    match result {
                        Ok(summary) => s.last_result = Some(summary),
                        Err(e) => {
                            tracing::warn!(worker = name, "work failed: {e}");
                            s.errors += 1;
                            s.last_error = Some(e);
                        }
                    }
                }
                tokio::select! {
                    () = worker.wait_for_work() => {}
                    () = cancel.cancelled() => break,
                }
            }
            set_state(&statuses, "stopped");
        });
    }

    /// Every worker's status, by name.
    pub fn statuses(&self) -> Vec<WorkerStatus> {
        self.statuses.lock().values().cloned().collect()
    }

    /// Stops every worker (a unit in progress is abandoned at its next await) and waits for
    /// them, at most `deadline`.
    pub async fn stop(&self, deadline: Duration) {
        self.cancel.cancel();
        let mut tasks = std::mem::take(&mut *self.tasks.lock());
        let _ = tokio::time::timeout(deadline, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
    }
}
