//! Appending a request body to an upload file, fast and all-or-nothing.
//!
//! The async side pulls the body, hashes each chunk as it arrives and hands batches of chunks
//! (no copies) to a blocking thread that writes them with `writev`. Hashing (SHA-NI,
//! ~1.7 GB/s) thus overlaps with the disk (~640 MB/s write+fsync on the reference machine),
//! and a bounded queue keeps at most [`BATCH_BYTES`] × ([`QUEUE_BATCHES`] + 2) of one body in
//! memory. The writer asks the kernel to start writeback every [`WRITEBACK_WINDOW`] bytes and
//! waits for the window before that one, so the fsync when the upload completes has at most
//! two windows left to do, and one large upload never fills the page cache with dirty pages.
//! Measured on the reference machine (1 GiB body in 64 KiB chunks, including the completing
//! fsync): 750–1450 MB/s against 800–1600 MB/s on tmpfs and 800–1300 MB/s for
//! `dd conv=fdatasync` (which starts writeback only at its final fsync) in adjacent runs; the
//! completing fsync took 2–25 ms. 16 parallel uploads added about 20 MiB of RSS in total.
//!
//! A caller whose client does not wait for the completing fsync (the mirror, which serves a
//! fetched blob to its clients as it arrives and makes it durable afterwards) can let more
//! dirty pages pile up ([`AppendOptions::max_dirty_bytes`]): writeback still starts every
//! window, but the append waits for it only beyond that bound, so it runs at memory speed.
//!
//! The writer thread owns the upload's lock until it is done: if the append fails, or the
//! caller's future is dropped mid-body (client gone), it truncates the file back to its
//! previous length and restores the previous running hash before anyone else can touch the
//! upload. The price: an append occupies one thread of Tokio's blocking pool (512 by default)
//! for as long as its body streams, slow client or not.

use std::fs::File;
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::{mpsc, OwnedMutexGuard};

use crate::session::{RunningHash, Session, SessionHandle};
use crate::StoreError;

/// Body chunks are gathered into batches of about this size before they go to the writer: one
/// `writev` per batch keeps syscalls few, and the size bounds memory per upload.
const BATCH_BYTES: usize = 256 * 1024;

/// A batch is also sent when it has this many chunks, below the kernel's `IOV_MAX` (1024).
const MAX_BATCH_CHUNKS: usize = 512;

/// Batches that may wait for the writer. Two keep it busy while the async side hashes.
const QUEUE_BATCHES: usize = 2;

/// Writeback is started every this many bytes. Small enough that dirty pages never pile up
/// (the final fsync stays short), large enough that the disk sees big sequential writes;
/// 4, 8, 16 and 64 MiB measured alike for throughput.
const WRITEBACK_WINDOW: u64 = 8 * 1024 * 1024;

/// How an append paces the disk, and who hears of its progress.
#[derive(Clone)]
pub struct AppendOptions {
    /// The most bytes written but not yet known to be on disk before the append waits for
    /// writeback. The default, one writeback window, keeps the completing fsync short (a
    /// pushing client waits for it) and never fills the page cache; a caller that answers its
    /// client before the fsync may allow much more, rounded up to whole windows.
    pub max_dirty_bytes: u64,
    /// Called from the writer thread with the upload's length after each write, so readers
    /// following the file know how far they may read.
    pub on_written: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

impl Default for AppendOptions {
    fn default() -> Self {
        AppendOptions {
            max_dirty_bytes: WRITEBACK_WINDOW,
            on_written: None,
        }
    }
}

impl std::fmt::Debug for AppendOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendOptions")
            .field("max_dirty_bytes", &self.max_dirty_bytes)
            .field("on_written", &self.on_written.is_some())
            .finish()
    }
}

/// A message from the body reader to the writer thread.
enum WriteMsg {
    /// Chunks to append, in order.
    Data(Vec<Bytes>),
    /// The body ended well: keep what was written; this is the new running hash (boxed: it
    /// is sent once, batches many times).
    Commit(Box<Option<RunningHash>>),
}

/// How the writer thread ended.
enum WriteEnd {
    /// Everything was written and kept; the upload's new length.
    Committed(u64),
    /// No commit came (the append was abandoned): the file and hash are as before.
    RolledBack,
    /// A write failed (the append was rolled back) or the rollback itself failed.
    Failed(StoreError),
}

/// Appends `body` to the upload file `file` (at `path`, currently `start` bytes long) and
/// returns its new length. `guard` is the upload's lock, already checked and reconciled with
/// `start`; it is released when the writer thread finishes.
///
/// # Errors
/// [`StoreError::BodyInterrupted`] when the body fails, [`StoreError::TooLarge`] when the
/// upload would exceed `max_size`: in both cases the upload is left as it was.
/// [`StoreError::Io`] when writing fails (the upload is rolled back too) or the rollback fails.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn append_body<S, E>(
    path: PathBuf,
    file: File,
    start: u64,
    mut guard: OwnedMutexGuard<Session>,
    handle: Arc<SessionHandle>,
    mut body: S,
    max_size: Option<u64>,
    options: AppendOptions,
) -> Result<u64, StoreError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: std::fmt::Display,
{
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| StoreError::io("start writer", &path, io::Error::other(e)))?;
    // The hash leaves the session while the body streams; the writer puts back either the
    // extended one (commit) or this copy of the old one (rollback).
    let mut running = guard.hash.take();
    let before = running.clone();
    let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
    let writer_path = path.clone();
    let writer = runtime.spawn_blocking(move || {
        write_batches(
            file,
            &writer_path,
            start,
            rx,
            guard,
            &handle,
            before,
            &options,
        )
    });

    let mut abort = None;
    let mut writer_gone = false;
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batch_len = 0usize;
    let mut received = 0u64;
    loop {
        let chunk = match body.next().await {
            None => break,
            Some(Err(e)) => {
                abort = Some(StoreError::BodyInterrupted(e.to_string()));
                break;
            }
            Some(Ok(chunk)) => chunk,
        };
        if chunk.is_empty() {
            continue;
        }
        received = received.saturating_add(chunk.len() as u64);
        if let Some(max) = max_size {
            if start.saturating_add(received) > max {
                abort = Some(StoreError::TooLarge { max });
                break;
            }
        }
        if let Some(hash) = running.as_mut() {
            hash.digester.update(&chunk);
            hash.len += chunk.len() as u64;
        }
        batch_len += chunk.len();
        batch.push(chunk);
        if batch_len >= BATCH_BYTES || batch.len() >= MAX_BATCH_CHUNKS {
            batch_len = 0;
            if tx
                .send(WriteMsg::Data(std::mem::take(&mut batch)))
                .await
                .is_err()
            {
                // The writer stopped on an error; it reports it below.
                writer_gone = true;
                break;
            }
        }
    }
    if abort.is_none() && !writer_gone {
        if !batch.is_empty() && tx.send(WriteMsg::Data(batch)).await.is_err() {
            writer_gone = true;
        }
        if !writer_gone {
            // A failed send means the writer failed; it reports why below.
            let _ = tx.send(WriteMsg::Commit(Box::new(running))).await;
        }
    }
    drop(tx);

    let end = writer
        .await
        .map_err(|e| StoreError::io("write upload", &path, io::Error::other(e)))?;
    match (abort, end) {
        (_, WriteEnd::Failed(e)) => Err(e),
        (Some(reason), _) => Err(reason),
        (None, WriteEnd::Committed(len)) => Ok(len),
        (None, WriteEnd::RolledBack) => Err(StoreError::io(
            "write upload",
            &path,
            io::Error::other("writer stopped before the body ended"),
        )),
    }
}

/// The writer thread: appends batches until a commit, then keeps them; on anything else
/// (channel closed without commit, write error) truncates back to `start`. Releases the
/// upload's lock (`guard`) only when the file and hash are consistent again.
#[allow(clippy::too_many_arguments)]
fn write_batches(
    mut file: File,
    path: &std::path::Path,
    start: u64,
    mut rx: mpsc::Receiver<WriteMsg>,
    mut guard: OwnedMutexGuard<Session>,
    handle: &SessionHandle,
    before: Option<RunningHash>,
    options: &AppendOptions,
) -> WriteEnd {
    let written = receive_and_write(&mut file, start, &mut rx, options);
    // Stop the async side at once if it is still sending.
    drop(rx);
    let failure = match written {
        Ok(Some((len, hash))) => {
            guard.hash = hash;
            handle.set_settled_len(Some(len));
            return WriteEnd::Committed(len);
        }
        Ok(None) => None,
        Err(e) => Some(StoreError::io("write upload", path, e)),
    };
    match file.set_len(start) {
        Ok(()) => {
            guard.hash = before;
            handle.set_settled_len(Some(start));
            failure.map_or(WriteEnd::RolledBack, WriteEnd::Failed)
        }
        Err(e) => {
            // The file length is now unknown: no hash, and status requests stat the file.
            guard.hash = None;
            handle.set_settled_len(None);
            if let Some(first) = failure {
                tracing::error!(error = %first, "upload write failed before the rollback failed");
            }
            WriteEnd::Failed(StoreError::io("truncate upload", path, e))
        }
    }
}

/// Writes batches at `start` onwards. `Some((new length, hash))` on commit, `None` when the
/// channel closed without one.
fn receive_and_write(
    file: &mut File,
    start: u64,
    rx: &mut mpsc::Receiver<WriteMsg>,
    options: &AppendOptions,
) -> io::Result<Option<(u64, Option<RunningHash>)>> {
    file.seek(SeekFrom::Start(start))?;
    let mut pos = start;
    // Writeback was started for everything before `kicked`; everything before `flushed` is
    // on disk.
    let mut flushed = start;
    let mut kicked = start;
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            WriteMsg::Data(batch) => {
                pos += write_all_vectored(file, &batch)?;
                if let Some(on_written) = &options.on_written {
                    on_written(pos);
                }
                if pos - kicked >= WRITEBACK_WINDOW {
                    writeback(file, kicked, pos - kicked, Writeback::Start);
                    kicked = pos;
                    // The disk is the bottleneck of a large upload: waiting here, oldest
                    // window first, with the newer ones already queued, costs nothing and
                    // bounds dirty pages.
                    while kicked - flushed > options.max_dirty_bytes {
                        let end = (flushed + WRITEBACK_WINDOW).min(kicked);
                        writeback(file, flushed, end - flushed, Writeback::Wait);
                        flushed = end;
                    }
                }
            }
            WriteMsg::Commit(hash) => {
                writeback(file, kicked, pos - kicked, Writeback::Start);
                return Ok(Some((pos, *hash)));
            }
        }
    }
    Ok(None)
}

/// Writes every chunk of `batch` at the file position with as few `writev` calls as the
/// kernel allows, and returns the number of bytes written.
fn write_all_vectored(file: &mut File, batch: &[Bytes]) -> io::Result<u64> {
    let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
    let mut rest = &mut slices[..];
    let mut total = 0u64;
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => {
                total += n as u64;
                IoSlice::advance_slices(&mut rest, n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// What [`writeback`] asks of the kernel.
#[derive(Clone, Copy)]
enum Writeback {
    /// Start writing the range to disk; do not wait.
    Start,
    /// Write the range and wait until it is on disk.
    Wait,
}

/// Asks the kernel to write `len` bytes at `offset` to disk (`sync_file_range`), so the disk
/// works while the body is still arriving. Best effort, and not a durability guarantee: a
/// real write error surfaces at the fsync that completes the upload.
#[cfg(target_os = "linux")]
fn writeback(file: &File, offset: u64, len: u64, mode: Writeback) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    if len == 0 {
        // For sync_file_range a length of 0 means "to the end of the file".
        return;
    }
    let flags = match mode {
        Writeback::Start => libc::SYNC_FILE_RANGE_WRITE,
        Writeback::Wait => {
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER
        }
    };
    // SAFETY: the descriptor is open for the duration of the call (borrowed from `file`), and
    // sync_file_range only reads its integer arguments.
    let _ = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
}

/// Elsewhere there is no writeback hint; the completing fsync does all the work.
#[cfg(not(target_os = "linux"))]
fn writeback(_file: &File, _offset: u64, _len: u64, _mode: Writeback) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_many_chunks_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        let mut file = File::create(&path).unwrap();
        // More chunks than IOV_MAX, to exercise partial vectored writes.
        let batch: Vec<Bytes> = (0..1500u32)
            .map(|i| Bytes::from(vec![(i % 256) as u8; 3]))
            .collect();
        assert_eq!(write_all_vectored(&mut file, &batch).unwrap(), 4500);
        let expected: Vec<u8> = batch.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }
}
