//! Single-flight blob fetches: however many clients ask for a blob the mirror does not have,
//! one upstream GET fetches it, and every client streams it as the bytes land on disk.
//!
//! The fetch writes through the blob store's upload path (`uploads/<id>`: hashed while
//! written, fsynced, verified against the digest and renamed into place by
//! `complete_upload`), so a mirrored blob becomes visible exactly like a pushed one, and an
//! interrupted fetch or a digest mismatch leaves nothing behind but a cancelled upload.
//! Each waiting client opens the upload file and follows it as it grows ([`Tail`]). A client
//! never receives the blob's last byte before the digest has been verified: on a mismatch
//! its response ends one byte short and the connection is dropped, so no client can take a
//! wrong blob for a complete one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use parking_lot::Mutex;
use pinfold_oci::Digest;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

/// How far a fetch has come.
#[derive(Debug, Clone)]
pub(crate) enum Progress {
    /// Waiting for the upstream's answer.
    Connecting,
    /// Bytes are being written to `path`; the first `written` are in the file.
    Streaming {
        /// The upload file.
        path: PathBuf,
        /// The blob's size, from `Content-Length`.
        size: u64,
        /// Bytes in the file so far.
        written: u64,
    },
    /// Every byte is in the file and the digest matched; being made durable. Followers may
    /// send the last byte: what they sent is the blob, whether or not it is stored yet.
    Verified {
        /// The upload file.
        path: PathBuf,
        /// The blob's size.
        size: u64,
    },
    /// Verified and stored.
    Done {
        /// The upload file as it was (still readable through handles opened before).
        path: PathBuf,
        /// The blob's size.
        size: u64,
    },
    /// Failed; nothing was stored.
    Failed(FetchFailure),
}

/// Why a fetch failed, as its followers learn it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FetchFailure {
    /// The upstream does not have the blob (answered 404).
    pub(crate) missing: bool,
    /// No request slot to the upstream freed up in time (`max_connections`).
    pub(crate) busy: bool,
    /// What happened, for the client's error detail.
    pub(crate) reason: String,
}

impl FetchFailure {
    pub(crate) fn new(reason: impl Into<String>) -> FetchFailure {
        FetchFailure {
            missing: false,
            busy: false,
            reason: reason.into(),
        }
    }
}

/// One blob being fetched.
#[derive(Debug)]
pub(crate) struct Fetch {
    progress: watch::Receiver<Progress>,
}

impl Fetch {
    /// Waits until the fetch knows the blob's size (or failed), then returns a stream of the
    /// whole blob that follows the fetch.
    pub(crate) async fn tail(&self, wait: Duration) -> Result<(u64, Tail), FetchFailure> {
        let mut rx = self.progress.clone();
        let ready = tokio::time::timeout(wait, rx.wait_for(|p| !matches!(p, Progress::Connecting)))
            .await
            .map_err(|_| FetchFailure::new(format!("no answer from the upstream within {wait:?}")))?
            .map_err(|_| FetchFailure::new("the fetch ended without a result"))?
            .clone();
        let (path, size) = match ready {
            Progress::Streaming { path, size, .. }
            | Progress::Verified { path, size }
            | Progress::Done { path, size } => (path, size),
            Progress::Failed(failure) => return Err(failure),
            // `wait_for` returned only once the progress left `Connecting`.
            Progress::Connecting => return Err(FetchFailure::new("the fetch did not start")),
        };
        // Opened now: the handle keeps the bytes readable after the rename or a cancel.
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| FetchFailure::new(format!("opening the fetch file: {e}")))?;
        Ok((size, Tail::new(file, size, rx)))
    }
}

/// The fetches in flight, by digest.
#[derive(Debug, Default)]
pub(crate) struct Fetches {
    in_flight: Mutex<HashMap<Digest, Arc<Fetch>>>,
}

/// What [`Fetches::join`] gives the caller.
pub(crate) enum Joined {
    /// A fetch was already running: follow it.
    Existing(Arc<Fetch>),
    /// No fetch was running: the caller must run it, reporting through `Reporter`.
    Started(Arc<Fetch>, Reporter),
}

/// The running fetch's side: reports progress, and removes the fetch from the map when
/// dropped, so a fetch that ends in any way (even a panic) lets the next request retry.
pub(crate) struct Reporter {
    digest: Digest,
    fetches: Arc<Fetches>,
    tx: watch::Sender<Progress>,
}

impl Reporter {
    pub(crate) fn report(&self, progress: Progress) {
        self.tx.send_replace(progress);
    }

    /// A callback for the store's writer thread: the upload file now holds `len` bytes.
    /// Wakes the followers only when the length moved.
    pub(crate) fn written_callback(&self) -> Arc<dyn Fn(u64) + Send + Sync> {
        let tx = self.tx.clone();
        Arc::new(move |len| {
            tx.send_if_modified(|p| match p {
                Progress::Streaming { written, .. } if *written != len => {
                    *written = len;
                    true
                }
                _ => false,
            });
        })
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.fetches.in_flight.lock().remove(&self.digest);
        // A fetch dropped mid-way (its task cancelled) must not leave followers waiting.
        self.tx.send_if_modified(|p| {
            if matches!(
                p,
                Progress::Connecting | Progress::Streaming { .. } | Progress::Verified { .. }
            ) {
                *p = Progress::Failed(FetchFailure::new("the upstream fetch was abandoned"));
                true
            } else {
                false
            }
        });
    }
}

impl Fetches {
    /// Joins the fetch of `digest`, or registers a new one that the caller then runs.
    pub(crate) fn join(self: &Arc<Self>, digest: &Digest) -> Joined {
        let mut map = self.in_flight.lock();
        if let Some(existing) = map.get(digest) {
            return Joined::Existing(Arc::clone(existing));
        }
        let (tx, rx) = watch::channel(Progress::Connecting);
        let fetch = Arc::new(Fetch { progress: rx });
        map.insert(digest.clone(), Arc::clone(&fetch));
        Joined::Started(
            fetch,
            Reporter {
                digest: digest.clone(),
                fetches: Arc::clone(self),
                tx,
            },
        )
    }

    /// Fetches in flight now.
    pub(crate) fn len(&self) -> usize {
        self.in_flight.lock().len()
    }
}

/// Read size per chunk sent to a client.
const CHUNK: usize = 256 * 1024;

/// How long a follower that caught up with the writer waits for a progress report before
/// looking at the file again anyway.
const CATCH_UP_POLL: Duration = Duration::from_millis(50);

/// A client's view of a fetch: the blob's bytes, from the start, as they are written.
pub(crate) struct Tail {
    file: tokio::fs::File,
    size: u64,
    sent: u64,
    progress: watch::Receiver<Progress>,
}

impl Tail {
    fn new(file: tokio::fs::File, size: u64, progress: watch::Receiver<Progress>) -> Tail {
        Tail {
            file,
            size,
            sent: 0,
            progress,
        }
    }

    /// The stream of chunks; ends with an error if the fetch fails.
    pub(crate) fn into_stream(self) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
        futures_util::stream::unfold(Some(self), |tail| async move {
            let mut tail = tail?;
            match tail.next_chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(tail))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
        .boxed()
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, std::io::Error> {
        // Bounded: each round either sends bytes, ends, or waits; a stalled upstream is ended
        // by the client's read timeout, which fails the fetch.
        loop {
            if self.sent == self.size {
                return Ok(None);
            }
            let (verified, written) = match &*self.progress.borrow_and_update() {
                Progress::Done { .. } | Progress::Verified { .. } => (true, self.size),
                Progress::Streaming { written, .. } => (false, *written),
                Progress::Failed(failure) => {
                    return Err(std::io::Error::other(format!(
                        "upstream fetch failed: {}",
                        failure.reason
                    )))
                }
                Progress::Connecting => (false, 0),
            };
            // Hold the last byte back until the digest is verified.
            let limit = if verified {
                self.size
            } else {
                written.min(self.size - 1)
            };
            let want =
                usize::try_from(limit.saturating_sub(self.sent).min(CHUNK as u64)).unwrap_or(CHUNK);
            if want > 0 {
                let mut buf = BytesMut::zeroed(want);
                // Reads are sequential from offset 0, so the file position is always `sent`:
                // no seek (each would be another trip to the blocking pool).
                let n = self.file.read(&mut buf).await?;
                if n > 0 {
                    buf.truncate(n);
                    self.sent += n as u64;
                    return Ok(Some(buf.freeze()));
                }
            }
            if verified {
                // Done, yet the file is shorter than the size: cannot happen with a verified
                // blob; fail rather than spin.
                return Err(std::io::Error::other(
                    "fetched blob is shorter than its size",
                ));
            }
            // Caught up with the writer: wait for more progress (the timeout only guards
            // against a lost wake-up; every write and every state change is reported).
            let _ = tokio::time::timeout(CATCH_UP_POLL, self.progress.changed()).await;
        }
    }
}
