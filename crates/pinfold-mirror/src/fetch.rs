//! Single-flight blob fetches: however many clients ask for a blob the mirror does not have,
//! one upstream GET fetches it, and every client streams it as the bytes arrive.
//!
//! The fetch writes through the blob store's upload path (`uploads/<id>`: hashed while
//! written, fsynced, verified against the digest and renamed into place by
//! `complete_upload`), so a mirrored blob becomes visible exactly like a pushed one, and an
//! interrupted fetch or a digest mismatch leaves nothing behind but a cancelled upload.
//!
//! Each chunk received from the upstream also goes, without a copy, into a bounded window of
//! recent chunks ([`Received`]); the waiting clients ([`Tail`]) are fed from that window, so a
//! client that keeps up costs no file read, no buffer and no trip to the blocking pool. A
//! client that joins late or falls more than [`RECENT_BYTES`] behind reads the upload file
//! instead (as far as it has been written), and returns to the window once it caught up.
//! A client never receives the blob's last byte before the digest has been verified: on a
//! mismatch its response ends one byte short and the connection is dropped, so no client can
//! take a wrong blob for a complete one.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use parking_lot::Mutex;
use pinfold_oci::{Digest, RepoName};
use tokio::sync::watch;

/// How far a fetch has come.
#[derive(Debug, Clone)]
pub(crate) enum Progress {
    /// Waiting for the upstream's answer.
    Connecting,
    /// Bytes are arriving (see [`Received`] for how far) and being written to `path`.
    Streaming {
        /// The upload file.
        path: PathBuf,
        /// The blob's size, from `Content-Length`.
        size: u64,
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
    /// The mirrored repository the fetch was started for: its upstream is the one asked.
    repo: RepoName,
    progress: watch::Receiver<Progress>,
    received: Arc<Mutex<Received>>,
}

impl Fetch {
    /// The mirrored repository the fetch was started for. A request for another repository
    /// follows it only once its own upstream confirmed the blob (issue 16: the fetch's
    /// upstream may be one the other repository's callers may not read).
    pub(crate) fn repo(&self) -> &RepoName {
        &self.repo
    }

    /// Says whether the fetch stored the blob (verified, durable, and linked into
    /// [`Fetch::repo`]), waiting (at most `wait`) for the end of a fetch that has verified the
    /// digest already; one that has not is `false` at once.
    pub(crate) async fn stored(&self, wait: Duration) -> bool {
        let mut rx = self.progress.clone();
        if !matches!(
            *rx.borrow_and_update(),
            Progress::Verified { .. } | Progress::Done { .. }
        ) {
            return false;
        }
        let ended = rx.wait_for(|p| matches!(p, Progress::Done { .. } | Progress::Failed(_)));
        let done = match tokio::time::timeout(wait, ended).await {
            Ok(Ok(progress)) => matches!(*progress, Progress::Done { .. }),
            Ok(Err(_)) | Err(_) => false,
        };
        done
    }

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
            .map_err(|e| FetchFailure::new(format!("opening the fetch file: {e}")))?
            .into_std()
            .await;
        Ok((
            size,
            Tail {
                file: Arc::new(file),
                size,
                sent: 0,
                from_file: 0,
                progress: rx,
                received: Arc::clone(&self.received),
            },
        ))
    }
}

/// The fetches in flight, by digest (one per digest whichever repository asked first).
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
    received: Arc<Mutex<Received>>,
}

impl Reporter {
    pub(crate) fn report(&self, progress: Progress) {
        self.tx.send_replace(progress);
    }

    /// Hands a chunk just received from the upstream (the next bytes of the blob, in order)
    /// to the followers. Wakes them once per [`NOTIFY_BYTES`], not per chunk: a follower that
    /// caught up then finds a run of chunks at each wake-up.
    pub(crate) fn feed(&self, chunk: &Bytes) {
        if self.received.lock().push(chunk.clone()) {
            self.tx.send_modify(|_| {});
        }
    }

    /// A callback for the store's writer thread: the upload file now holds `len` bytes.
    /// Wakes nobody: followers reading the file are woken by [`Reporter::feed`] (the writer
    /// trails the upstream by a few batches) and by the final state change.
    pub(crate) fn written_callback(&self) -> Arc<dyn Fn(u64) + Send + Sync> {
        let received = Arc::clone(&self.received);
        Arc::new(move |len| received.lock().written = len)
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
    /// Joins the fetch of `digest`, or registers a new one for `repo` that the caller then
    /// runs. An existing fetch may have been started for another repository
    /// ([`Fetch::repo`]): the caller decides whether it may follow it.
    pub(crate) fn join(self: &Arc<Self>, digest: &Digest, repo: &RepoName) -> Joined {
        let mut map = self.in_flight.lock();
        if let Some(existing) = map.get(digest) {
            return Joined::Existing(Arc::clone(existing));
        }
        let (tx, rx) = watch::channel(Progress::Connecting);
        let received = Arc::new(Mutex::new(Received::default()));
        let fetch = Arc::new(Fetch {
            repo: repo.clone(),
            progress: rx,
            received: Arc::clone(&received),
        });
        map.insert(digest.clone(), Arc::clone(&fetch));
        Joined::Started(
            fetch,
            Reporter {
                digest: digest.clone(),
                fetches: Arc::clone(self),
                tx,
                received,
            },
        )
    }

    /// Fetches in flight now.
    pub(crate) fn len(&self) -> usize {
        self.in_flight.lock().len()
    }
}

/// Received bytes kept in memory for the followers, per fetch. A follower further behind
/// reads the upload file; the writer trails the upstream by about a megabyte (the store's
/// append queue), so everything that left the window is in the file by then.
pub(crate) const RECENT_BYTES: usize = 32 * 1024 * 1024;

/// Followers are woken each time this many more bytes arrived (and on every state change).
const NOTIFY_BYTES: u64 = 256 * 1024;

/// Most bytes one read of the upload file gives a follower that fell behind.
const FILE_CHUNK: u64 = 1024 * 1024;

/// How long a follower that caught up waits for a wake-up before looking again anyway.
const CATCH_UP_POLL: Duration = Duration::from_millis(50);

/// What the fetch has received so far, shared by the fetch and its followers.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// The newest chunks, each with its offset in the blob, oldest first: at most
    /// [`RECENT_BYTES`] plus the newest chunk.
    recent: VecDeque<(u64, Bytes)>,
    /// Bytes in `recent`.
    recent_len: usize,
    /// Bytes received from the upstream so far: the end of `recent`.
    received: u64,
    /// Bytes in the upload file so far.
    written: u64,
    /// `received` when the followers were last woken.
    notified: u64,
}

/// Where a follower finds the bytes at its offset.
#[derive(Debug, PartialEq, Eq)]
enum Lookup {
    /// In memory: the bytes from the offset to the end of their chunk (or the limit).
    Memory(Bytes),
    /// No longer in memory: the file holds the bytes before this offset.
    File(u64),
    /// Not received yet (or held back by the limit).
    Pending,
}

impl Received {
    /// Appends the next chunk, drops the oldest beyond the window, and says whether the
    /// followers should be woken.
    fn push(&mut self, chunk: Bytes) -> bool {
        if chunk.is_empty() {
            return false;
        }
        self.received += chunk.len() as u64;
        self.recent_len += chunk.len();
        self.recent
            .push_back((self.received - chunk.len() as u64, chunk));
        while self.recent_len > RECENT_BYTES && self.recent.len() > 1 {
            if let Some((_, old)) = self.recent.pop_front() {
                self.recent_len -= old.len();
            }
        }
        if self.received - self.notified >= NOTIFY_BYTES {
            self.notified = self.received;
            return true;
        }
        false
    }

    /// The bytes at `offset`, not reaching `limit`.
    fn at(&self, offset: u64, limit: u64) -> Lookup {
        let start = self.recent.front().map_or(self.received, |(at, _)| *at);
        if offset < start {
            return Lookup::File(self.written);
        }
        if offset >= self.received || offset >= limit {
            return Lookup::Pending;
        }
        // The chunk holding `offset`: the last one starting at or before it (there is one,
        // as `start <= offset < received`).
        let index = self.recent.partition_point(|(at, _)| *at <= offset) - 1;
        let (at, chunk) = &self.recent[index];
        let end = (at + chunk.len() as u64).min(limit);
        // Both within one chunk, which is a `usize` long.
        let (from, to) = ((offset - at) as usize, (end - at) as usize);
        Lookup::Memory(chunk.slice(from..to))
    }
}

/// A client's view of a fetch: the blob's bytes, from the start, as they arrive.
pub(crate) struct Tail {
    /// The upload file, for bytes that left the window.
    file: Arc<File>,
    size: u64,
    sent: u64,
    /// Bytes sent from the file rather than from memory.
    from_file: u64,
    progress: watch::Receiver<Progress>,
    received: Arc<Mutex<Received>>,
}

impl Tail {
    /// The stream of chunks; ends with an error if the fetch fails.
    pub(crate) fn into_stream(self) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
        futures_util::stream::unfold(Some(self), |tail| async move {
            let mut tail = tail?;
            match tail.next_chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(tail))),
                Ok(None) => {
                    tracing::debug!(
                        bytes = tail.size,
                        from_file = tail.from_file,
                        "followed a fetch"
                    );
                    None
                }
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
            let verified = match &*self.progress.borrow_and_update() {
                Progress::Done { .. } | Progress::Verified { .. } => true,
                Progress::Streaming { .. } | Progress::Connecting => false,
                Progress::Failed(failure) => {
                    return Err(std::io::Error::other(format!(
                        "upstream fetch failed: {}",
                        failure.reason
                    )))
                }
            };
            // Hold the last byte back until the digest is verified.
            let limit = if verified { self.size } else { self.size - 1 };
            let lookup = self.received.lock().at(self.sent, limit);
            match lookup {
                Lookup::Memory(chunk) => {
                    self.sent += chunk.len() as u64;
                    return Ok(Some(chunk));
                }
                Lookup::File(written) if written.min(limit) > self.sent => {
                    let want = (written.min(limit) - self.sent).min(FILE_CHUNK);
                    let chunk = self.read_file(want).await?;
                    if !chunk.is_empty() {
                        self.sent += chunk.len() as u64;
                        self.from_file += chunk.len() as u64;
                        return Ok(Some(chunk));
                    }
                }
                Lookup::File(_) | Lookup::Pending => {}
            }
            if verified {
                // Verified, yet neither memory nor the file has the next bytes: cannot happen
                // with a verified blob; fail rather than spin.
                return Err(std::io::Error::other(
                    "fetched blob is shorter than its size",
                ));
            }
            // Caught up: wait for more bytes (the timeout only guards against a lost
            // wake-up; arrivals and every state change are reported).
            let _ = tokio::time::timeout(CATCH_UP_POLL, self.progress.changed()).await;
        }
    }

    /// Reads up to `want` bytes of the upload file at the current offset.
    async fn read_file(&self, want: u64) -> Result<Bytes, std::io::Error> {
        let file = Arc::clone(&self.file);
        let offset = self.sent;
        let want = usize::try_from(want).unwrap_or(usize::MAX);
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0; want];
            let n = file.read_at(&mut buf, offset)?;
            buf.truncate(n);
            Ok(Bytes::from(buf))
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(len: usize, byte: u8) -> Bytes {
        Bytes::from(vec![byte; len])
    }

    #[test]
    fn followers_find_each_offset_in_the_right_chunk() {
        let mut received = Received::default();
        received.push(chunk(10, 1));
        received.push(chunk(5, 2));
        received.push(chunk(7, 3));
        assert_eq!(received.at(0, 100), Lookup::Memory(chunk(10, 1)));
        assert_eq!(received.at(4, 100), Lookup::Memory(chunk(6, 1)));
        assert_eq!(received.at(10, 100), Lookup::Memory(chunk(5, 2)));
        assert_eq!(received.at(16, 100), Lookup::Memory(chunk(6, 3)));
        // The limit cuts the chunk; at the limit or beyond what arrived, nothing yet.
        assert_eq!(received.at(16, 20), Lookup::Memory(chunk(4, 3)));
        assert_eq!(received.at(20, 20), Lookup::Pending);
        assert_eq!(received.at(22, 100), Lookup::Pending);
    }

    #[test]
    fn the_window_is_bounded_and_older_bytes_come_from_the_file() {
        let mut received = Received::default();
        let piece = 1024 * 1024;
        let mut wakes = 0;
        for i in 0..(RECENT_BYTES / piece + 8) {
            if received.push(chunk(piece, (i % 251) as u8)) {
                wakes += 1;
            }
            received.written = received.received - piece as u64;
        }
        assert!(received.recent_len <= RECENT_BYTES);
        assert_eq!(received.recent_len, RECENT_BYTES);
        let total = received.received;
        let start = total - RECENT_BYTES as u64;
        assert_eq!(received.at(0, total), Lookup::File(total - piece as u64));
        assert_eq!(
            received.at(start - 1, total),
            Lookup::File(total - piece as u64)
        );
        assert!(matches!(received.at(start, total), Lookup::Memory(b) if b.len() == piece));
        // One wake-up per chunk here: each is larger than NOTIFY_BYTES.
        assert_eq!(wakes, RECENT_BYTES / piece + 8);
    }

    /// Issue 16: a fetch remembers the repository it was started for, whoever joins it, and
    /// says it stored the blob only once it is done; it waits only for one past the digest
    /// check.
    #[tokio::test]
    async fn fetches_know_their_repository_and_whether_they_stored() {
        let fetches = Arc::new(Fetches::default());
        let digest = Digest::sha256(b"blob");
        let first: RepoName = "up/org/app".parse().unwrap();
        let other: RepoName = "up/org/other".parse().unwrap();
        let Joined::Started(fetch, reporter) = fetches.join(&digest, &first) else {
            panic!("nothing was in flight");
        };
        let Joined::Existing(joined) = fetches.join(&digest, &other) else {
            panic!("the fetch is in flight");
        };
        assert_eq!((fetch.repo(), joined.repo()), (&first, &first));
        // Not past the digest check: false at once (a wait would outlast the test's timeout).
        let forever = Duration::from_secs(3600);
        assert!(!fetch.stored(forever).await);
        reporter.report(Progress::Verified {
            path: "f".into(),
            size: 4,
        });
        let finishing = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            reporter.report(Progress::Done {
                path: "f".into(),
                size: 4,
            });
            reporter
        });
        assert!(joined.stored(forever).await);
        drop(finishing.await.unwrap());
        assert_eq!(fetches.len(), 0);

        // Verified, then abandoned (the store's rename failed): not stored.
        let Joined::Started(fetch, reporter) = fetches.join(&digest, &other) else {
            panic!("the last fetch ended");
        };
        assert_eq!(fetch.repo(), &other);
        reporter.report(Progress::Verified {
            path: "f".into(),
            size: 4,
        });
        drop(reporter);
        assert!(!fetch.stored(forever).await);
    }

    #[test]
    fn small_chunks_wake_followers_once_per_notify_bytes() {
        let mut received = Received::default();
        let wakes = (0..1024).filter(|_| received.push(chunk(1024, 0))).count();
        assert_eq!(wakes as u64, 1024 * 1024 / NOTIFY_BYTES);
        assert!(!received.push(Bytes::new()));
    }
}
