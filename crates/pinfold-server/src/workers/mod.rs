//! Background work as named workers, each with a status the management API reports
//! (`GET /api/v1/workers`). No bare spawned loops: every periodic task is a [`Worker`] run by
//! [`Workers`], which records runs, errors and the last error, and stops all of them on one
//! cancellation token.
//!
//! Every worker is a singleton of the deployment (issue 17): with [`Workers::with_leases`] a
//! worker runs only on the replica holding its lease in the metadata database
//! (`pinfold-meta` `coordination.rs`). The holder renews it every [`LEASE_RENEW`] for
//! [`LEASE_TTL`]; a replica that cannot renew abandons the unit in progress; the others ask every
//! [`LEASE_RENEW`], so one takes over within `LEASE_TTL + LEASE_RENEW` (25 s) of the holder's
//! death, and at once when it stops cleanly (it releases its leases).

mod apt_reindex;
mod backup;
mod change_listener;
mod drift_poller;
mod gc;
mod upload_janitor;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pinfold_meta::Meta;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use apt_reindex::AptReindexer;
pub use backup::ScheduledBackup;
pub use change_listener::ChangeListenerWorker;
pub use drift_poller::DriftPoller;
pub use gc::GarbageCollector;
pub use upload_janitor::UploadJanitor;

/// How long a lease lasts unless renewed.
pub const LEASE_TTL: Duration = Duration::from_secs(20);

/// How often the holder renews its leases, and the others ask for them.
pub const LEASE_RENEW: Duration = Duration::from_secs(5);

/// What one unit of work returns: a one-line summary for the status, e.g. "removed 3 uploads".
pub type WorkResult = Result<String, String>;

/// A periodic background task.
pub trait Worker: Send + 'static {
    /// Stable name, shown in the status.
    fn name(&self) -> &'static str;
    /// Time between two units of work.
    fn interval(&self) -> Duration;
    /// Whether every replica runs it (a cache of its own to keep), rather than the one holding
    /// its lease. Default: one replica.
    fn per_replica(&self) -> bool {
        false
    }
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
    /// `idle`, `working`, `standby` (another replica holds the lease) or `stopped`.
    pub state: &'static str,
    /// The replica holding the worker's lease (`None` without leases, or before anyone took
    /// it); filled in by `GET /api/v1/workers` from the metadata.
    pub holder: Option<String>,
    /// This replica's name.
    pub replica: Option<String>,
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
    leases: Option<Leases>,
}

/// Where the leases are kept and under which name this replica takes them.
#[derive(Clone, Debug)]
struct Leases {
    meta: Meta,
    replica: String,
}

impl Leases {
    /// Takes or renews `name`'s lease; a database error counts as not holding it.
    async fn hold(&self, name: &'static str) -> bool {
        match self
            .meta
            .acquire_lease(name, &self.replica, LEASE_TTL)
            .await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(
                    worker = name,
                    "cannot take or renew the worker's lease: {e}"
                );
                false
            }
        }
    }

    /// Renews `name`'s lease every [`LEASE_RENEW`]; returns when it is lost.
    async fn keep(&self, name: &'static str) {
        loop {
            tokio::time::sleep(LEASE_RENEW).await;
            if !self.hold(name).await {
                tracing::warn!(worker = name, "lost the worker's lease");
                return;
            }
        }
    }
}

impl Workers {
    /// Workers that each run only while this replica, `replica`, holds their lease in `meta`.
    pub fn with_leases(meta: Meta, replica: String) -> Workers {
        Workers {
            leases: Some(Leases { meta, replica }),
            ..Workers::default()
        }
    }

    /// This replica's name, when workers take leases.
    pub fn replica(&self) -> Option<&str> {
        self.leases.as_ref().map(|l| l.replica.as_str())
    }

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
                holder: None,
                replica: self.replica().map(str::to_owned),
            },
        );
        let leases = self.leases.clone().filter(|_| !worker.per_replica());
        let cancel = self.cancel.clone();
        let set_state = move |statuses: &Mutex<BTreeMap<&'static str, WorkerStatus>>, state| {
            if let Some(s) = statuses.lock().get_mut(name) {
                s.state = state;
            }
        };
        self.tasks.lock().spawn(async move {
            // Never completes without leases; with them, when the lease is lost.
            let keep_lease = || async {
                match &leases {
                    Some(leases) => leases.keep(name).await,
                    None => std::future::pending().await,
                }
            };
            'run: loop {
                if let Some(leases) = &leases {
                    while !leases.hold(name).await {
                        set_state(&statuses, "standby");
                        tokio::select! {
                            () = tokio::time::sleep(LEASE_RENEW) => {}
                            () = cancel.cancelled() => break 'run,
                        }
                    }
                }
                set_state(&statuses, "working");
                let result = tokio::select! {
                    result = worker.work() => result,
                    // Another replica may run it now: this one must not go on.
                    () = keep_lease() => continue 'run,
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
                    () = keep_lease() => {}
                    () = cancel.cancelled() => break,
                }
            }
            set_state(&statuses, "stopped");
            if let Some(leases) = &leases {
                // Another replica takes over at once instead of after the lease's lapse.
                if let Err(e) = leases.meta.release_lease(name, &leases.replica).await {
                    tracing::warn!(worker = name, "cannot release the worker's lease: {e}");
                }
            }
        });
    }

    /// Every worker's status, by name, with the holder of its lease when workers take leases.
    pub async fn statuses(&self) -> Vec<WorkerStatus> {
        let mut statuses: Vec<WorkerStatus> = self.statuses.lock().values().cloned().collect();
        let Some(leases) = &self.leases else {
            return statuses;
        };
        match leases.meta.leases().await {
            Ok(held) => {
                let now = OffsetDateTime::now_utc();
                for status in &mut statuses {
                    status.holder = held
                        .iter()
                        .find(|l| l.name == status.name && l.expires_at > now)
                        .map(|l| l.holder.clone());
                }
            }
            Err(e) => tracing::warn!("cannot read the workers' leases: {e}"),
        }
        statuses
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
