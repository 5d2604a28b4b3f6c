//! Group commit for the audit log.
//!
//! Every write is audited, so an audit row per request in its own transaction would add a
//! commit (an fsync on SQLite) to every push, doubling the cost of small writes such as tag
//! pushes. Instead, requests hand their rows to one writer task, which appends whatever has
//! queued up in one transaction. Requests do not wait for the commit; a reader of the log
//! ([`AuditWriter::flush`]) waits for every row queued before it, so the log reads its own
//! writes. A crash can lose the rows of the last moment's writes (never the writes themselves).

use pinfold_meta::{Meta, NewAuditEvent};
use tokio::sync::{mpsc, oneshot};

/// Rows waiting for the writer at most; a request waits for room beyond that.
const QUEUE: usize = 4096;

/// Rows appended in one transaction at most.
const BATCH: usize = 512;

enum Message {
    Event(NewAuditEvent),
    /// Answered once every row queued before it is committed (or failed).
    Flush(oneshot::Sender<()>),
}

/// The handle requests use; the writer task stops when every handle is dropped, after
/// committing what is queued.
#[derive(Debug, Clone)]
pub(crate) struct AuditWriter {
    tx: mpsc::Sender<Message>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Event(e) => f.debug_tuple("Event").field(&e.action).finish(),
            Message::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl AuditWriter {
    /// Starts the writer task on the current Tokio runtime; `None` outside one (the caller
    /// then appends directly).
    pub(crate) fn start(meta: Meta) -> Option<AuditWriter> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        runtime.spawn(write_batches(meta, rx));
        Some(AuditWriter { tx })
    }

    /// Queues a row. `false` when the writer is gone (the caller appends directly).
    pub(crate) async fn append(&self, event: NewAuditEvent) -> Result<(), NewAuditEvent> {
        self.tx
            .send(Message::Event(event))
            .await
            .map_err(|e| match e.0 {
                Message::Event(event) => event,
                // Only events are sent here.
                Message::Flush(_) => unreachable!("append sends events"),
            })
    }

    /// Waits until every row queued before this call is committed.
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_batches(meta: Meta, mut rx: mpsc::Receiver<Message>) {
    // Bounded per round by BATCH; ends when every sender is gone and the queue is empty.
    while let Some(first) = rx.recv().await {
        let mut events = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Event(event) => events.push(event),
                Message::Flush(done) => flushes.push(done),
            }
            if events.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if let Err(e) = meta.append_audit_batch(&events).await {
            tracing::error!(rows = events.len(), "cannot write audit events: {e}");
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}
