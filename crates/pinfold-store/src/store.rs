//! The blob store: durable, verified, content-addressed files, and the upload sessions that
//! feed it.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::Stream;
use pinfold_oci::Digest;

use crate::append::{append_body, AppendOptions};
use crate::durable::{copy_file_in, install_blob, sync_dir, Content};
use crate::layout::{self, Layout, ALGORITHMS, TEMP_PREFIX};
use crate::object::{ObjectBlobs, ObjectReader};
use crate::session::Sessions;
use crate::{StorageBackend, StorageConfig};
use crate::{StoreError, UploadId};

/// Size of the chunks [`BlobFile::into_stream`] reads. Big enough that a 1 GiB blob takes few
/// syscalls per chunk sent; small enough that 16 parallel downloads stay within a few MiB.
const STREAM_CHUNK_BYTES: usize = 256 * 1024;

/// Chunks read ahead of the consumer per stream: the next read runs while the HTTP writer
/// sends the current chunk, and a slow client costs little memory.
const STREAM_PREFETCH_CHUNKS: usize = 2;

/// An open blob, ready to be streamed whole or in part.
#[derive(Debug)]
pub struct BlobFile {
    /// Size of the blob in bytes.
    pub size: u64,
    source: BlobSource,
}

/// A blocking reader of a blob's or an upload's bytes, for use on a blocking thread (it may
/// wait on the async runtime it was made on).
pub type BlobReader = Box<dyn Read + Send>;

/// A blocking reader over a stream of bytes, made on (and waiting on) the current runtime.
fn blocking_reader(
    stream: impl Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static,
) -> BlobReader {
    Box::new(tokio_util::io::SyncIoBridge::new(
        tokio_util::io::StreamReader::new(stream),
    ))
}

/// Where an open blob's bytes come from.
#[derive(Debug)]
enum BlobSource {
    File(File),
    Object(ObjectReader),
}

impl BlobFile {
    /// The whole blob as a blocking reader (a file, or the object streamed), for parsing on a
    /// blocking thread. Must be called inside a Tokio runtime.
    pub fn into_reader(self) -> BlobReader {
        match self.source {
            BlobSource::File(file) => Box::new(file),
            BlobSource::Object(reader) => {
                use futures_util::StreamExt;
                blocking_reader(reader.stream(0..self.size).boxed())
            }
        }
    }

    /// Streams bytes `start..start + len` of the blob, in chunks of up to 256 KiB, each read
    /// by a short task on the blocking pool (never on the async runtime's workers), two
    /// chunks ahead of the consumer. No thread waits for a slow client; dropping the stream
    /// stops the reads.
    ///
    /// The caller has checked `start + len <= self.size`; a range past the end of the file
    /// yields an [`io::ErrorKind::UnexpectedEof`] error item, never a short stream. The stream
    /// must be polled inside a Tokio runtime; elsewhere it yields one error.
    pub fn into_stream(
        self,
        start: u64,
        len: u64,
    ) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        use futures_util::StreamExt;
        let file = match self.source {
            BlobSource::File(file) => file,
            BlobSource::Object(reader) => {
                return reader.stream(start..start.saturating_add(len)).boxed();
            }
        };
        let reader = RangeReader {
            file: Arc::new(file),
            next: start,
            end: start.saturating_add(len),
            first: true,
            in_flight: VecDeque::with_capacity(STREAM_PREFETCH_CHUNKS),
        };
        futures_util::stream::unfold(Some(reader), |reader| async move {
            let mut reader = reader?;
            match reader.next_chunk().await {
                None => None,
                // After an error the stream ends.
                Some(Err(e)) => Some((Err(e), None)),
                Some(Ok(chunk)) => Some((Ok(chunk), Some(reader))),
            }
        })
        .boxed()
    }
}

/// Shared-state names are a few fixed, lowercase paths (`apt/signing-key.asc`): nothing a
/// caller passes may climb out of `state/`.
fn check_state_name(name: &str) -> Result<(), StoreError> {
    let valid = !name.is_empty()
        && name.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        });
    if valid {
        Ok(())
    } else {
        Err(StoreError::io(
            "name shared state",
            Path::new(name),
            io::Error::new(io::ErrorKind::InvalidInput, "not a shared-state name"),
        ))
    }
}

/// The state of [`BlobFile::into_stream`]: the reads in flight and where the next one starts.
struct RangeReader {
    file: Arc<File>,
    /// Offset of the first byte no read has been started for.
    next: u64,
    end: u64,
    /// Whether no read has been started yet.
    first: bool,
    in_flight: VecDeque<tokio::task::JoinHandle<io::Result<Bytes>>>,
}

impl RangeReader {
    /// The next chunk, or `None` at the end of the range.
    ///
    /// Bytes in the page cache (a blob pulled or pushed recently: the common case) are read
    /// right here, without waiting for the disk (`RWF_NOWAIT`): no trip to the blocking pool
    /// and no thread wake-up per chunk. Otherwise reads go to the blocking pool, up to the
    /// prefetch depth ahead, so the disk works while the consumer sends; the stream stays
    /// on that path, as a blob not in the page cache is read from the disk to its end.
    async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        if std::mem::take(&mut self.first) {
            // Cheap (it only sets the file's read-ahead mode), so done right here.
            advise_sequential(&self.file, self.next, self.end - self.next);
        }
        if self.in_flight.is_empty() && self.next < self.end {
            let want = self.chunk_len();
            if let Some(chunk) = read_cached(&self.file, self.next, want) {
                self.next += chunk.len() as u64;
                return Some(Ok(chunk));
            }
        }
        while self.in_flight.len() < STREAM_PREFETCH_CHUNKS && self.next < self.end {
            let runtime = match tokio::runtime::Handle::try_current() {
                Ok(runtime) => runtime,
                Err(e) => return Some(Err(io::Error::other(e))),
            };
            let offset = self.next;
            let want = self.chunk_len();
            self.next += want as u64;
            let file = Arc::clone(&self.file);
            self.in_flight
                .push_back(runtime.spawn_blocking(move || read_exact_at(&file, offset, want)));
        }
        let read = self.in_flight.pop_front()?;
        Some(read.await.unwrap_or_else(|e| Err(io::Error::other(e))))
    }

    /// The length of the next read: a chunk, or what is left of the range.
    fn chunk_len(&self) -> usize {
        usize::try_from(self.end - self.next)
            .map_or(STREAM_CHUNK_BYTES, |rest| rest.min(STREAM_CHUNK_BYTES))
    }
}

/// Reads up to `want` bytes at `offset` if the page cache holds them, without waiting for the
/// disk (`preadv2` with `RWF_NOWAIT`): `None` when it does not (or the kernel cannot tell, or
/// the file ends first), and the caller reads the blocking way, which also reports errors.
#[cfg(target_os = "linux")]
fn read_cached(file: &File, offset: u64, want: usize) -> Option<Bytes> {
    use std::os::fd::AsRawFd;
    let offset = i64::try_from(offset).ok()?;
    let mut buf: Vec<u8> = Vec::with_capacity(want);
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: want,
    };
    // SAFETY: `iov` describes `want` bytes of `buf`'s allocation, which outlives the call;
    // the kernel writes at most that many, and `set_len` covers only the `n` it wrote.
    let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, libc::RWF_NOWAIT) };
    let n = usize::try_from(n).ok().filter(|n| *n > 0)?;
    // SAFETY: the kernel initialized the first `n <= want` bytes.
    unsafe { buf.set_len(n) };
    Some(Bytes::from(buf))
}

/// Elsewhere every read takes the blocking path.
#[cfg(not(target_os = "linux"))]
fn read_cached(_file: &File, _offset: u64, _want: usize) -> Option<Bytes> {
    None
}

/// Reads exactly `want` bytes at `offset` into a new buffer that is never zeroed first (the
/// kernel fills it); [`io::ErrorKind::UnexpectedEof`] if the file ends before.
fn read_exact_at(file: &File, offset: u64, want: usize) -> io::Result<Bytes> {
    use std::os::fd::AsRawFd;
    let mut buf: Vec<u8> = Vec::with_capacity(want);
    while buf.len() < want {
        let at = i64::try_from(offset + buf.len() as u64).map_err(io::Error::other)?;
        let rest = want - buf.len();
        // SAFETY: the pointer and length describe the unused part of `buf`'s allocation
        // (`want` bytes reserved), which outlives the call; the kernel writes at most `rest`
        // bytes there, and `set_len` covers only those it reports written.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                buf.as_mut_ptr().add(buf.len()).cast(),
                rest,
                at,
            )
        };
        match usize::try_from(n) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            // SAFETY: the kernel initialized `n <= rest` more bytes.
            Ok(n) => unsafe { buf.set_len(buf.len() + n.min(rest)) },
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(Bytes::from(buf))
}

/// Tells the kernel the range will be read sequentially, which doubles its read-ahead for
/// blobs not in the page cache. Best effort.
#[cfg(target_os = "linux")]
fn advise_sequential(file: &File, start: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(start), Ok(len)) = (i64::try_from(start), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor is open for the duration of the call (borrowed from `file`), and
    // posix_fadvise only reads its integer arguments.
    let _ =
        unsafe { libc::posix_fadvise(file.as_raw_fd(), start, len, libc::POSIX_FADV_SEQUENTIAL) };
}

/// Elsewhere the default read-ahead applies.
#[cfg(not(target_os = "linux"))]
fn advise_sequential(_file: &File, _start: u64, _len: u64) {}

/// The content-addressed blob store rooted at one directory. Cheap to clone; clones share
/// the in-memory upload sessions.
///
/// One process owns a store root at a time: upload locks and running hashes live in memory.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

struct Inner {
    layout: Layout,
    /// Set when blobs live in object storage; `layout` is then local scratch only.
    object: Option<ObjectBlobs>,
    sessions: Sessions,
    /// Completions that had to hash the upload file from disk (tests check the fast path).
    rehashed_uploads: AtomicU64,
}

impl fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStore")
            .field("root", &self.inner.layout.root())
            .finish_non_exhaustive()
    }
}

/// Runs blocking file-system work off the async runtime's workers.
async fn blocking<T, F>(op: &'static str, path: &Path, work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| StoreError::io(op, path, io::Error::other(e)))?;
    runtime
        .spawn_blocking(work)
        .await
        .map_err(|e| StoreError::io(op, path, io::Error::other(e)))?
}

/// `Some(value)`, or `None` when the error is "not found".
fn found<T>(result: io::Result<T>, op: &'static str, path: &Path) -> Result<Option<T>, StoreError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io(op, path, e)),
    }
}

/// `path`'s length, or `None` when it does not exist.
fn file_len(path: &Path) -> Result<Option<u64>, StoreError> {
    Ok(found(fs::metadata(path), "stat", path)?.map(|m| m.len()))
}

/// The upload files in `uploads/` with their modification times. Files whose names are not
/// upload ids are skipped (the store never makes any).
fn read_uploads_dir(dir: &Path) -> Result<Vec<(UploadId, SystemTime)>, StoreError> {
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io("list", dir, e))?;
    let mut uploads = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("list", dir, e))?;
        let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<UploadId>().ok())
        else {
            continue;
        };
        let path = entry.path();
        // An upload completed or cancelled since the listing is simply not listed.
        let Some(meta) = found(fs::metadata(&path), "stat", &path)? else {
            continue;
        };
        let modified = meta
            .modified()
            .map_err(|e| StoreError::io("stat", &path, e))?;
        uploads.push((id, modified));
    }
    Ok(uploads)
}

impl BlobStore {
    /// Opens (creating if needed) the store at `root`.
    ///
    /// Creates `blobs/<alg>/<00..ff>` and `uploads/` and fsyncs the directories, so that
    /// writing a blob never has to create (and make durable) a directory. Upload files left
    /// by an earlier process are live sessions again; nothing is read from them until used.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the directories cannot be created.
    pub fn open(root: impl Into<PathBuf>) -> Result<BlobStore, StoreError> {
        let layout = Layout::new(root.into());
        let create = |dir: &Path| {
            fs::create_dir_all(dir).map_err(|e| StoreError::io("create directory", dir, e))
        };
        create(&layout.uploads_dir())?;
        for algorithm in ALGORITHMS {
            let algorithm_dir = layout.algorithm_dir(algorithm);
            create(&algorithm_dir)?;
            for name in layout::fan_out_names() {
                create(&algorithm_dir.join(name))?;
            }
            sync_dir(&algorithm_dir)?;
        }
        sync_dir(&layout.blobs_dir())?;
        sync_dir(layout.root())?;
        Ok(BlobStore {
            inner: Arc::new(Inner {
                layout,
                object: None,
                sessions: Sessions::default(),
                rehashed_uploads: AtomicU64::new(0),
            }),
        })
    }

    /// Opens the store `config` names: the filesystem under `root`, or object storage (with
    /// `root` as local scratch), checked once before this returns.
    ///
    /// # Errors
    /// [`StoreError::Io`] for the directories; [`StoreError::Unavailable`] when the object
    /// store cannot be used (missing bucket, refused credentials, unreachable endpoint).
    pub async fn open_configured(
        root: impl Into<PathBuf>,
        config: &StorageConfig,
    ) -> Result<BlobStore, StoreError> {
        let store = BlobStore::open(root)?;
        if config.backend == StorageBackend::Filesystem {
            return Ok(store);
        }
        let object = ObjectBlobs::connect(config).await?;
        let Ok(mut inner) = Arc::try_unwrap(store.inner) else {
            unreachable!("a store just opened has no other handle")
        };
        inner.object = Some(object);
        Ok(BlobStore {
            inner: Arc::new(inner),
        })
    }

    /// Where a client may fetch the blob `digest` itself (a presigned URL of the object store),
    /// when blobs live in object storage and `[storage] redirect` is on; `None` otherwise.
    ///
    /// # Errors
    /// [`StoreError::Object`] when the URL cannot be signed.
    pub async fn redirect_url(&self, digest: &Digest) -> Result<Option<String>, StoreError> {
        match &self.inner.object {
            Some(object) => object.redirect_url(digest).await,
            None => Ok(None),
        }
    }

    /// A small file every process sharing the store must see alike (the APT signing key),
    /// `state/<name>` in the bucket or under the root; `None` when there is none.
    ///
    /// # Errors
    /// [`StoreError::Io`] / [`StoreError::Object`] when it cannot be read.
    pub async fn read_state(&self, name: &str) -> Result<Option<Bytes>, StoreError> {
        check_state_name(name)?;
        if let Some(object) = &self.inner.object {
            return object.read_state(name).await;
        }
        let path = self.inner.layout.root().join("state").join(name);
        blocking("read", &path.clone(), move || {
            Ok(found(fs::read(&path), "read", &path)?.map(Bytes::from))
        })
        .await
    }

    /// Writes the shared file `state/<name>` (see [`BlobStore::read_state`]), durably: readers
    /// see the old or the new content.
    ///
    /// # Errors
    /// [`StoreError::Io`] / [`StoreError::Object`] when it cannot be written.
    pub async fn write_state(&self, name: &str, bytes: Bytes) -> Result<(), StoreError> {
        check_state_name(name)?;
        if let Some(object) = &self.inner.object {
            return object.write_state(name, bytes).await;
        }
        let path = self.inner.layout.root().join("state").join(name);
        blocking("write", &path.clone(), move || {
            let dir = path.parent().unwrap_or(Path::new("."));
            fs::create_dir_all(dir).map_err(|e| StoreError::io("create directory", dir, e))?;
            let temp = path.with_extension("tmp");
            let write = || -> io::Result<()> {
                use std::io::Write;
                let mut file = File::create(&temp)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
                fs::rename(&temp, &path)
            };
            write().map_err(|e| StoreError::io("write", &path, e))?;
            sync_dir(dir)
        })
        .await
    }

    /// Whether blobs live in object storage (some operations need the filesystem).
    pub fn is_object_storage(&self) -> bool {
        self.inner.object.is_some()
    }

    /// The store's root directory (local scratch when blobs live in object storage).
    pub fn root(&self) -> &Path {
        self.inner.layout.root()
    }

    /// The size of a stored blob, or `None` if it is not stored.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the blob cannot be looked up.
    pub async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        if let Some(object) = &self.inner.object {
            return object.blob_size(digest).await;
        }
        let path = self.inner.layout.blob_path(digest);
        blocking("stat", &path.clone(), move || file_len(&path)).await
    }

    /// Opens a stored blob for reading, or `None` if it is not stored.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the blob exists but cannot be opened.
    pub async fn open_blob(&self, digest: &Digest) -> Result<Option<BlobFile>, StoreError> {
        if let Some(object) = &self.inner.object {
            return Ok(object
                .open_blob(digest)
                .await?
                .map(|(size, reader)| BlobFile {
                    size,
                    source: BlobSource::Object(reader),
                }));
        }
        let path = self.inner.layout.blob_path(digest);
        blocking("open", &path.clone(), move || {
            let Some(file) = found(File::open(&path), "open", &path)? else {
                return Ok(None);
            };
            let size = file
                .metadata()
                .map_err(|e| StoreError::io("stat", &path, e))?
                .len();
            Ok(Some(BlobFile {
                size,
                source: BlobSource::File(file),
            }))
        })
        .await
    }

    /// Reads a whole blob into memory, or `None` if it is not stored. For manifests and
    /// configs; refuses blobs larger than `max_len`.
    ///
    /// # Errors
    /// [`StoreError::BlobTooLarge`] when the blob has more than `max_len` bytes;
    /// [`StoreError::Io`] when it cannot be read.
    pub async fn read_blob(
        &self,
        digest: &Digest,
        max_len: usize,
    ) -> Result<Option<Bytes>, StoreError> {
        if let Some(object) = &self.inner.object {
            return object.read_blob(digest, max_len).await;
        }
        let path = self.inner.layout.blob_path(digest);
        let digest = digest.clone();
        blocking("read", &path.clone(), move || {
            let Some(file) = found(File::open(&path), "open", &path)? else {
                return Ok(None);
            };
            let size = file
                .metadata()
                .map_err(|e| StoreError::io("stat", &path, e))?
                .len();
            let max = max_len as u64;
            if size > max {
                return Err(StoreError::BlobTooLarge { digest, size, max });
            }
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(max_len));
            // `take` bounds the read even if the file were to grow (blobs never do).
            file.take(max.saturating_add(1))
                .read_to_end(&mut bytes)
                .map_err(|e| StoreError::io("read", &path, e))?;
            if bytes.len() > max_len {
                return Err(StoreError::BlobTooLarge {
                    digest,
                    size: bytes.len() as u64,
                    max,
                });
            }
            Ok(Some(Bytes::from(bytes)))
        })
        .await
    }

    /// Stores `bytes` as the blob `digest` after verifying that they hash to it. A blob that
    /// already exists is left untouched.
    ///
    /// When this returns `Ok`, the blob is durable (file and directory fsynced).
    ///
    /// # Errors
    /// [`StoreError::DigestMismatch`] when `bytes` hash to another digest (nothing is
    /// written); [`StoreError::Io`] when writing fails (nothing is left behind).
    #[tracing::instrument(skip_all, fields(%digest, len = bytes.len()))]
    pub async fn put_blob(&self, digest: &Digest, bytes: Bytes) -> Result<(), StoreError> {
        if let Some(object) = &self.inner.object {
            return object.put_blob(digest, bytes).await;
        }
        let inner = Arc::clone(&self.inner);
        let digest = digest.clone();
        let path = inner.layout.blob_path(&digest);
        blocking("write", &path, move || {
            install_blob(&inner.layout, &digest, Content::Bytes(bytes)).map(|_| ())
        })
        .await
    }

    /// Copies the file at `source` into the store as the blob `digest`, verifying while it
    /// copies (for restoring from a backup). A blob already stored is kept without reading
    /// `source`; to replace a corrupt blob, [`delete_blob`](Self::delete_blob) it first.
    ///
    /// When this returns `Ok`, the blob is durable (file and directory fsynced).
    ///
    /// # Errors
    /// [`StoreError::DigestMismatch`] when `source` hashes to another digest (nothing is
    /// written); [`StoreError::Io`] when reading or writing fails (nothing is left behind).
    #[tracing::instrument(skip_all, fields(%digest, source = %source.display()))]
    pub async fn copy_in(&self, digest: &Digest, source: &Path) -> Result<u64, StoreError> {
        if let Some(object) = &self.inner.object {
            return object.copy_in(digest, source).await;
        }
        let inner = Arc::clone(&self.inner);
        let digest = digest.clone();
        let source = source.to_owned();
        let path = inner.layout.blob_path(&digest);
        blocking("copy in", &path, move || {
            copy_file_in(&inner.layout, &digest, &source)
        })
        .await
    }

    /// Where the blob `digest` lives (or would live) on disk: for readers that stream many
    /// blobs on their own threads (verification, backup). Writers go through the store.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner.layout.blob_path(digest)
    }

    /// Starts an upload session: an empty file `uploads/<id>`.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the file cannot be created.
    pub async fn create_upload(&self) -> Result<UploadId, StoreError> {
        if let Some(object) = &self.inner.object {
            return object.create_upload().await;
        }
        let id = UploadId::new_random();
        let path = self.inner.layout.upload_path(&id);
        blocking("create upload", &path.clone(), move || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map(drop)
                .map_err(|e| StoreError::io("create upload", &path, e))
        })
        .await?;
        self.inner.sessions.insert_new(&id);
        Ok(id)
    }

    /// The file holding an upload's bytes so far. The pull-through mirror opens it to stream a
    /// blob to waiting clients while the upstream fetch is still writing it; an open handle
    /// keeps reading the same bytes after the upload completes (renamed) or is cancelled.
    pub fn upload_file_path(&self, id: &UploadId) -> PathBuf {
        self.inner.layout.upload_path(id)
    }

    /// Bytes received so far by an upload, or `None` if the upload is unknown.
    ///
    /// While an append is in flight this answers at once with the length before it (what the
    /// upload holds if that append fails), never with bytes that may still be rolled back.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the upload file cannot be looked up.
    pub async fn upload_offset(&self, id: &UploadId) -> Result<Option<u64>, StoreError> {
        if let Some(object) = &self.inner.object {
            return object.upload_offset(id).await;
        }
        let path = self.inner.layout.upload_path(id);
        let guard = match self.inner.sessions.get(id) {
            // No operation of this process has touched it: the file is settled.
            None => None,
            Some(handle) => match Arc::clone(&handle.state).try_lock_owned() {
                Ok(guard) => Some(guard),
                Err(_) => match handle.settled_len() {
                    Some(len) => return Ok(Some(len)),
                    None => Some(Arc::clone(&handle.state).lock_owned().await),
                },
            },
        };
        if guard.as_ref().is_some_and(|g| g.ended) {
            return Ok(None);
        }
        // The lock (if any) is held across the stat so that no append runs meanwhile.
        blocking("stat", &path.clone(), move || {
            let len = file_len(&path);
            drop(guard);
            len
        })
        .await
    }

    /// Appends a request body to an upload that currently holds `expected_offset` bytes (any
    /// length when `None`) and returns the new offset. On any failure the upload is left
    /// exactly as it was.
    ///
    /// Appends to one upload run one at a time, in arrival order; appends to different
    /// uploads run in parallel. The body is hashed while it is written, so completing an
    /// upload written this way does not read it back. If the caller's future is dropped
    /// mid-body, the partial append is rolled back before the upload accepts another.
    ///
    /// # Errors
    /// [`StoreError::UploadUnknown`] when there is no such upload;
    /// [`StoreError::UploadOffsetMismatch`] when `expected_offset` is not the current length;
    /// [`StoreError::BodyInterrupted`] when `body` yields an error;
    /// [`StoreError::TooLarge`] when the upload would exceed `max_size` bytes;
    /// [`StoreError::Io`] when writing fails.
    pub async fn append_upload<S, E>(
        &self,
        id: &UploadId,
        expected_offset: Option<u64>,
        body: S,
        max_size: Option<u64>,
    ) -> Result<u64, StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        self.append_upload_with(
            id,
            expected_offset,
            body,
            max_size,
            AppendOptions::default(),
        )
        .await
    }

    /// [`BlobStore::append_upload`] with a disk pace and a progress callback of the caller's
    /// choosing ([`AppendOptions`]).
    ///
    /// # Errors
    /// As [`BlobStore::append_upload`].
    #[tracing::instrument(skip_all, fields(upload = %id, ?expected_offset))]
    pub async fn append_upload_with<S, E>(
        &self,
        id: &UploadId,
        expected_offset: Option<u64>,
        body: S,
        max_size: Option<u64>,
        options: AppendOptions,
    ) -> Result<u64, StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        if let Some(object) = &self.inner.object {
            // The disk pace and write reports of `options` are about local files.
            let _ = options;
            return object
                .append_upload(id, expected_offset, body, max_size)
                .await;
        }
        let sessions = &self.inner.sessions;
        let (handle, _) = sessions.get_or_insert(id);
        let mut guard = Arc::clone(&handle.state).lock_owned().await;
        if guard.ended {
            return Err(StoreError::UploadUnknown(id.to_string()));
        }
        let path = self.inner.layout.upload_path(id);
        let open_path = path.clone();
        let opened = blocking("open upload", &path, move || {
            let opened = OpenOptions::new().write(true).open(&open_path);
            let Some(file) = found(opened, "open upload", &open_path)? else {
                return Ok(None);
            };
            let len = file
                .metadata()
                .map_err(|e| StoreError::io("stat", &open_path, e))?
                .len();
            Ok(Some((file, len)))
        })
        .await?;
        let Some((file, len)) = opened else {
            guard.ended = true;
            sessions.forget(id, &handle);
            return Err(StoreError::UploadUnknown(id.to_string()));
        };
        guard.reconcile(len);
        handle.set_settled_len(Some(len));
        if let Some(requested) = expected_offset {
            if requested != len {
                return Err(StoreError::UploadOffsetMismatch {
                    current: len,
                    requested,
                });
            }
        }
        append_body(path, file, len, guard, handle, body, max_size, options).await
    }

    /// The digest of what an upload holds now, from the hash kept while this process wrote
    /// it; `None` when there is none (the upload was resumed after a restart, or is SHA-512),
    /// in which case only [`BlobStore::complete_upload`] can tell. Lets a caller that streams
    /// an upload to readers as it arrives release the last byte once the content is verified,
    /// before the completing fsync.
    ///
    /// # Errors
    /// [`StoreError::UploadUnknown`] when there is no such upload.
    pub async fn upload_digest(&self, id: &UploadId) -> Result<Option<Digest>, StoreError> {
        if let Some(object) = &self.inner.object {
            return object.upload_digest(id).await;
        }
        let unknown = || StoreError::UploadUnknown(id.to_string());
        // No session in memory: nothing this process wrote, so no running hash either way.
        let handle = self.inner.sessions.get(id);
        let hash = match &handle {
            Some(handle) => {
                let guard = handle.state.lock().await;
                if guard.ended {
                    return Err(unknown());
                }
                guard.hash.clone()
            }
            None => None,
        };
        if hash.is_none() && self.upload_offset(id).await?.is_none() {
            return Err(unknown());
        }
        Ok(hash.map(|h| h.digester.finalize()))
    }

    /// Completes an upload: verifies the received bytes hash to `expected`, makes the blob
    /// durable and visible, ends the session and returns the blob's size.
    ///
    /// If the blob is already stored, the upload is discarded and the stored blob kept. When
    /// this process received the whole upload in order, the digest computed during the
    /// appends is used; otherwise (after a restart, an interrupted append, or for SHA-512)
    /// the file is hashed from disk first.
    ///
    /// # Errors
    /// [`StoreError::UploadUnknown`] when there is no such upload;
    /// [`StoreError::DigestMismatch`] when the bytes hash to something else: the upload is
    /// left in place, unchanged, for the client to cancel or fix;
    /// [`StoreError::Io`] when verifying or writing fails (the upload is kept).
    #[tracing::instrument(skip_all, fields(upload = %id, %expected))]
    pub async fn complete_upload(
        &self,
        id: &UploadId,
        expected: &Digest,
    ) -> Result<u64, StoreError> {
        if let Some(object) = &self.inner.object {
            return object.complete_upload(id, expected).await;
        }
        let sessions = &self.inner.sessions;
        let (handle, _) = sessions.get_or_insert(id);
        let mut guard = Arc::clone(&handle.state).lock_owned().await;
        if guard.ended {
            return Err(StoreError::UploadUnknown(id.to_string()));
        }
        // A copy: if the digest does not match, the session keeps its hash.
        let running = guard
            .hash
            .clone()
            .filter(|h| h.digester.algorithm() == expected.algorithm());
        let inner = Arc::clone(&self.inner);
        let path = inner.layout.upload_path(id);
        let expected = expected.clone();
        let installed = blocking("complete upload", &path.clone(), move || {
            // Read to hash it if need be; write so that fsync is defined on every platform.
            let opened = OpenOptions::new().read(true).write(true).open(&path);
            let Some(file) = found(opened, "open upload", &path)? else {
                return Ok(None);
            };
            let len = file
                .metadata()
                .map_err(|e| StoreError::io("stat", &path, e))?
                .len();
            let digest = running
                .filter(|h| h.len == len)
                .map(|h| h.digester.finalize());
            if digest.is_none() {
                inner.rehashed_uploads.fetch_add(1, Ordering::Relaxed);
            }
            let content = Content::Upload {
                path,
                file,
                len,
                digest,
            };
            install_blob(&inner.layout, &expected, content).map(Some)
        })
        .await?;
        guard.ended = true;
        handle.set_settled_len(None);
        sessions.forget(id, &handle);
        installed.ok_or_else(|| StoreError::UploadUnknown(id.to_string()))
    }

    /// Opens an upload's bytes for reading, or `None` if the upload is unknown: for callers
    /// that must check the content (e.g. parse a Debian package) before completing it. The
    /// caller must not append to the upload while reading. The reader blocks: use it on a
    /// blocking thread.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the file exists but cannot be opened; [`StoreError::Object`]
    /// when the upload's objects cannot be listed.
    pub async fn open_upload(&self, id: &UploadId) -> Result<Option<BlobReader>, StoreError> {
        if let Some(object) = &self.inner.object {
            return Ok(object.upload_stream(id).await?.map(|stream| {
                use futures_util::{StreamExt, TryStreamExt};
                blocking_reader(stream.map_err(io::Error::other).boxed())
            }));
        }
        let path = self.inner.layout.upload_path(id);
        blocking("open upload", &path.clone(), move || {
            found(File::open(&path), "open upload", &path)
        })
        .await
        .map(|file| file.map(|f| Box::new(f) as BlobReader))
    }

    /// Cancels an upload and deletes what it received. `false` if it was unknown.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the upload file cannot be removed.
    #[tracing::instrument(skip_all, fields(upload = %id))]
    pub async fn cancel_upload(&self, id: &UploadId) -> Result<bool, StoreError> {
        if let Some(object) = &self.inner.object {
            return object.cancel_upload(id).await;
        }
        let sessions = &self.inner.sessions;
        let (handle, _) = sessions.get_or_insert(id);
        let mut guard = Arc::clone(&handle.state).lock_owned().await;
        if guard.ended {
            return Ok(false);
        }
        let path = self.inner.layout.upload_path(id);
        let removed = blocking("remove upload", &path.clone(), move || {
            found(fs::remove_file(&path), "remove upload", &path)
        })
        .await?;
        guard.ended = true;
        handle.set_settled_len(None);
        sessions.forget(id, &handle);
        Ok(removed.is_some())
    }

    /// The ids of all upload sessions on disk, in no particular order.
    ///
    /// # Errors
    /// [`StoreError::Io`] when `uploads/` cannot be listed.
    pub async fn list_uploads(&self) -> Result<Vec<UploadId>, StoreError> {
        if let Some(object) = &self.inner.object {
            return object.list_uploads().await;
        }
        let dir = self.inner.layout.uploads_dir();
        let uploads = blocking("list", &dir.clone(), move || read_uploads_dir(&dir)).await?;
        Ok(uploads.into_iter().map(|(id, _)| id).collect())
    }

    /// Cancels every upload that received nothing since `older_than` and returns their ids:
    /// the upload janitor's unit of work.
    ///
    /// Uploads in use right now are skipped, and each upload's age is checked again under its
    /// lock, so an upload that a client resumes meanwhile is never removed.
    ///
    /// # Errors
    /// [`StoreError::Io`] when `uploads/` cannot be listed or a file cannot be removed.
    #[tracing::instrument(skip_all)]
    pub async fn remove_stale_uploads(
        &self,
        older_than: SystemTime,
    ) -> Result<Vec<UploadId>, StoreError> {
        if let Some(object) = &self.inner.object {
            return object.remove_stale_uploads(older_than).await;
        }
        let dir = self.inner.layout.uploads_dir();
        let uploads = blocking("list", &dir.clone(), move || read_uploads_dir(&dir)).await?;
        let sessions = &self.inner.sessions;
        let mut removed = Vec::new();
        for (id, modified) in uploads {
            if modified >= older_than {
                continue;
            }
            let (handle, made_here) = sessions.get_or_insert(&id);
            let Ok(mut guard) = Arc::clone(&handle.state).try_lock_owned() else {
                continue;
            };
            if guard.ended {
                continue;
            }
            let path = self.inner.layout.upload_path(&id);
            let gone = blocking("remove upload", &path.clone(), move || {
                let Some(meta) = found(fs::metadata(&path), "stat", &path)? else {
                    return Ok(true);
                };
                let modified = meta
                    .modified()
                    .map_err(|e| StoreError::io("stat", &path, e))?;
                if modified >= older_than {
                    return Ok(false);
                }
                found(fs::remove_file(&path), "remove upload", &path).map(|_| true)
            })
            .await?;
            if gone {
                guard.ended = true;
                handle.set_settled_len(None);
                sessions.forget(&id, &handle);
                removed.push(id);
            } else if made_here {
                // Not stale after all; do not keep a handle this call made just to look.
                sessions.forget(&id, &handle);
            }
        }
        Ok(removed)
    }

    /// Removes a blob's file. `false` if it was not stored.
    ///
    /// The removal is not fsynced: a blob that reappears after a crash is harmless and is
    /// collected again. Deciding that nothing references the blob is the caller's job.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the file cannot be removed.
    pub async fn delete_blob(&self, digest: &Digest) -> Result<bool, StoreError> {
        if let Some(object) = &self.inner.object {
            return object.delete_blob(digest).await;
        }
        let path = self.inner.layout.blob_path(digest);
        blocking("remove blob", &path.clone(), move || {
            Ok(found(fs::remove_file(&path), "remove blob", &path)?.is_some())
        })
        .await
    }

    /// Deletes a blob file unless it was written at or after `cutoff` (its modification time;
    /// a blob rewritten by an upload or a push is as fresh as a new one). `Ok(false)` when it
    /// is fresh or absent. Garbage collection calls this after the metadata stopped naming the
    /// digest, so a concurrent re-upload of the same bytes is never deleted under its writer.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the file cannot be inspected or removed.
    pub async fn delete_blob_older_than(
        &self,
        digest: &Digest,
        cutoff: std::time::SystemTime,
    ) -> Result<bool, StoreError> {
        if let Some(object) = &self.inner.object {
            return object.delete_blob_older_than(digest, cutoff).await;
        }
        let path = self.inner.layout.blob_path(digest);
        blocking("remove blob", &path.clone(), move || {
            let Some(meta) = found(fs::metadata(&path), "inspect blob", &path)? else {
                return Ok(false);
            };
            let modified = meta.modified().map_err(|source| StoreError::Io {
                op: "inspect blob",
                path: path.display().to_string(),
                source,
            })?;
            if modified >= cutoff {
                return Ok(false);
            }
            Ok(found(fs::remove_file(&path), "remove blob", &path)?.is_some())
        })
        .await
    }

    /// The digests of all stored blobs, in no particular order (for garbage collection,
    /// verification and backup). Temp files and anything not named like a blob are skipped.
    ///
    /// # Errors
    /// [`StoreError::Io`] when a directory cannot be listed.
    pub async fn list_blobs(&self) -> Result<Vec<Digest>, StoreError> {
        if let Some(object) = &self.inner.object {
            return object.list_blobs().await;
        }
        let inner = Arc::clone(&self.inner);
        let blobs_dir = inner.layout.blobs_dir();
        blocking("list", &blobs_dir, move || {
            let mut digests = Vec::new();
            walk_blob_dirs(&inner.layout, |algorithm, entry| {
                let name = entry.file_name();
                let parsed = name
                    .to_str()
                    .and_then(|hex| format!("{algorithm}:{hex}").parse::<Digest>().ok());
                if let Some(digest) = parsed {
                    digests.push(digest);
                }
                Ok(())
            })?;
            Ok(digests)
        })
        .await
    }

    /// Removes temp files older than `older_than` from the blob tree and returns how many.
    /// Temp files outlive their write only when the process died mid-write; the janitor calls
    /// this so that crashes leave nothing behind for long.
    ///
    /// # Errors
    /// [`StoreError::Io`] when a directory cannot be listed or a file cannot be removed.
    pub async fn remove_stale_temp_files(
        &self,
        older_than: SystemTime,
    ) -> Result<usize, StoreError> {
        if let Some(object) = &self.inner.object {
            return {
                // Nothing temporary is ever written under a blob key; multipart uploads
                // abandoned by a crash are the bucket's lifecycle rules' to abort.
                let _ = (object, older_than);
                Ok(0)
            };
        }
        let inner = Arc::clone(&self.inner);
        let blobs_dir = inner.layout.blobs_dir();
        blocking("list", &blobs_dir, move || {
            let mut removed = 0;
            walk_blob_dirs(&inner.layout, |_, entry| {
                let is_temp = entry
                    .file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(TEMP_PREFIX));
                if !is_temp {
                    return Ok(());
                }
                let path = entry.path();
                let Some(meta) = found(fs::metadata(&path), "stat", &path)? else {
                    return Ok(());
                };
                let modified = meta
                    .modified()
                    .map_err(|e| StoreError::io("stat", &path, e))?;
                if modified < older_than
                    && found(fs::remove_file(&path), "remove temp file", &path)?.is_some()
                {
                    removed += 1;
                }
                Ok(())
            })?;
            Ok(removed)
        })
        .await
    }

    /// How many completions had to hash the upload file from disk.
    #[cfg(test)]
    fn rehashed_uploads(&self) -> u64 {
        self.inner.rehashed_uploads.load(Ordering::Relaxed)
    }
}

/// Calls `visit` with every entry of every fan-out directory, with its algorithm.
fn walk_blob_dirs(
    layout: &Layout,
    mut visit: impl FnMut(pinfold_oci::DigestAlgorithm, &fs::DirEntry) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    for algorithm in ALGORITHMS {
        for name in layout::fan_out_names() {
            let dir = layout.algorithm_dir(algorithm).join(name);
            let Some(entries) = found(fs::read_dir(&dir), "list", &dir)? else {
                continue;
            };
            for entry in entries {
                let entry = entry.map_err(|e| StoreError::io("list", &dir, e))?;
                visit(algorithm, &entry)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use futures_util::{stream, StreamExt};
    use pinfold_oci::DigestAlgorithm;

    use super::*;

    /// Deterministic, non-repeating-looking test content.
    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 9) as u8))
            .collect()
    }

    /// A body that yields `bytes` in chunks of `chunk` bytes.
    fn body(
        bytes: &[u8],
        chunk: usize,
    ) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + Unpin {
        let chunks: Vec<_> = bytes
            .chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        stream::iter(chunks)
    }

    /// A body that yields `bytes` and then fails, like a client that disconnects.
    fn failing_body(bytes: &[u8]) -> impl Stream<Item = Result<Bytes, String>> + Send + Unpin {
        let mut items: Vec<Result<Bytes, String>> = bytes
            .chunks(1000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        items.push(Err("connection reset".to_owned()));
        items.push(Ok(Bytes::from_static(b"never read")));
        stream::iter(items)
    }

    fn open_store() -> (tempfile::TempDir, BlobStore) {
        let tmp = tempfile::tempdir().unwrap();
        let store = BlobStore::open(tmp.path().join("store")).unwrap();
        (tmp, store)
    }

    async fn collect(stream: impl Stream<Item = io::Result<Bytes>>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut stream = std::pin::pin!(stream);
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    async fn read_whole(store: &BlobStore, digest: &Digest) -> Vec<u8> {
        let file = store.open_blob(digest).await.unwrap().unwrap();
        let size = file.size;
        collect(file.into_stream(0, size)).await.unwrap()
    }

    /// Asserts that the store holds only what its layout allows: `blobs/<alg>/<xx>/<hex>`
    /// files whose names are digests of that algorithm and fan-out, and `uploads/<id>` files.
    /// No temp files, nothing else. Returns the number of blobs and of uploads.
    fn assert_only_store_files(store: &BlobStore) -> (usize, usize) {
        let root = store.root();
        let mut top: Vec<String> = fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert_eq!(top, ["blobs", "uploads"]);
        let mut algorithms: Vec<String> = fs::read_dir(root.join("blobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        algorithms.sort();
        assert_eq!(algorithms, ["sha256", "sha512"]);
        let mut blobs = 0;
        for algorithm in ALGORITHMS {
            for fan_out in fs::read_dir(root.join("blobs").join(algorithm.as_str())).unwrap() {
                let fan_out = fan_out.unwrap();
                let prefix = fan_out.file_name().into_string().unwrap();
                assert!(fan_out.file_type().unwrap().is_dir(), "{prefix}");
                for entry in fs::read_dir(fan_out.path()).unwrap() {
                    let entry = entry.unwrap();
                    let name = entry.file_name().into_string().unwrap();
                    let digest: Digest = format!("{algorithm}:{name}")
                        .parse()
                        .unwrap_or_else(|_| panic!("stray file {}", entry.path().display()));
                    assert!(digest.encoded().starts_with(&prefix));
                    assert!(entry.file_type().unwrap().is_file());
                    blobs += 1;
                }
            }
        }
        let mut uploads = 0;
        for entry in fs::read_dir(root.join("uploads")).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            assert!(name.parse::<UploadId>().is_ok(), "stray upload file {name}");
            uploads += 1;
        }
        (blobs, uploads)
    }

    fn upload_bytes(store: &BlobStore, id: &UploadId) -> Vec<u8> {
        fs::read(store.inner.layout.upload_path(id)).unwrap()
    }

    #[tokio::test]
    async fn put_then_read_round_trips() {
        let (_tmp, store) = open_store();
        let bytes = Bytes::from(data(70_000, 1));
        let digest = Digest::sha256(&bytes);
        assert_eq!(store.blob_size(&digest).await.unwrap(), None);
        assert!(store.open_blob(&digest).await.unwrap().is_none());
        assert!(store.read_blob(&digest, 1 << 20).await.unwrap().is_none());

        store.put_blob(&digest, bytes.clone()).await.unwrap();
        // Again: the stored blob is kept, and that is not an error.
        store.put_blob(&digest, bytes.clone()).await.unwrap();

        assert_eq!(store.blob_size(&digest).await.unwrap(), Some(70_000));
        assert_eq!(
            store.read_blob(&digest, 70_000).await.unwrap(),
            Some(bytes.clone())
        );
        assert_eq!(read_whole(&store, &digest).await, bytes);
        let err = store.read_blob(&digest, 69_999).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::BlobTooLarge {
                    size: 70_000,
                    max: 69_999,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(store.list_blobs().await.unwrap(), vec![digest.clone()]);
        assert_eq!(assert_only_store_files(&store), (1, 0));

        assert!(store.delete_blob(&digest).await.unwrap());
        assert!(!store.delete_blob(&digest).await.unwrap());
        assert_eq!(store.blob_size(&digest).await.unwrap(), None);
    }

    #[tokio::test]
    async fn put_with_wrong_digest_leaves_nothing() {
        let (_tmp, store) = open_store();
        let wrong = Digest::sha256(b"something else");
        let err = store
            .put_blob(&wrong, Bytes::from_static(b"content"))
            .await
            .unwrap_err();
        match err {
            StoreError::DigestMismatch { expected, actual } => {
                assert_eq!(expected, wrong);
                assert_eq!(actual, Digest::sha256(b"content"));
            }
            other => panic!("unexpected {other}"),
        }
        assert_eq!(store.blob_size(&wrong).await.unwrap(), None);
        assert_eq!(assert_only_store_files(&store), (0, 0));
    }

    #[tokio::test]
    async fn chunked_appends_check_offsets_and_complete() {
        let (_tmp, store) = open_store();
        let content = data(300_000, 2);
        let digest = Digest::sha256(&content);
        let id = store.create_upload().await.unwrap();
        assert_eq!(store.upload_offset(&id).await.unwrap(), Some(0));

        let first = store
            .append_upload(&id, Some(0), body(&content[..100_000], 7_000), None)
            .await
            .unwrap();
        assert_eq!(first, 100_000);
        let err = store
            .append_upload(&id, Some(90_000), body(&content[100_000..], 7_000), None)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::UploadOffsetMismatch {
                    current: 100_000,
                    requested: 90_000
                }
            ),
            "{err}"
        );
        assert_eq!(store.upload_offset(&id).await.unwrap(), Some(100_000));
        let second = store
            .append_upload(
                &id,
                Some(100_000),
                body(&content[100_000..200_000], 64 * 1024),
                None,
            )
            .await
            .unwrap();
        assert_eq!(second, 200_000);
        // No offset: append at the end. An empty body changes nothing.
        let third = store
            .append_upload(&id, None, body(&content[200_000..], 1 << 20), None)
            .await
            .unwrap();
        assert_eq!(third, 300_000);
        let empty = store
            .append_upload(&id, Some(300_000), body(&[], 1), None)
            .await
            .unwrap();
        assert_eq!(empty, 300_000);
        assert_eq!(store.list_uploads().await.unwrap(), vec![id.clone()]);

        assert_eq!(store.complete_upload(&id, &digest).await.unwrap(), 300_000);
        assert_eq!(
            store.rehashed_uploads(),
            0,
            "the running hash should have been used"
        );
        assert_eq!(read_whole(&store, &digest).await, content);
        assert_eq!(store.upload_offset(&id).await.unwrap(), None);
        assert!(matches!(
            store.complete_upload(&id, &digest).await,
            Err(StoreError::UploadUnknown(_))
        ));
        assert!(matches!(
            store.append_upload(&id, None, body(b"x", 1), None).await,
            Err(StoreError::UploadUnknown(_))
        ));
        assert_eq!(assert_only_store_files(&store), (1, 0));
        assert_eq!(store.inner.sessions.len(), 0);
    }

    #[tokio::test]
    async fn unknown_uploads_are_reported_and_not_remembered() {
        let (_tmp, store) = open_store();
        let id = UploadId::new_random();
        assert_eq!(store.upload_offset(&id).await.unwrap(), None);
        assert!(matches!(
            store
                .append_upload(&id, Some(0), body(b"abc", 1), None)
                .await,
            Err(StoreError::UploadUnknown(_))
        ));
        assert!(matches!(
            store.complete_upload(&id, &Digest::sha256(b"")).await,
            Err(StoreError::UploadUnknown(_))
        ));
        assert!(!store.cancel_upload(&id).await.unwrap());
        assert_eq!(store.inner.sessions.len(), 0);
        assert_eq!(assert_only_store_files(&store), (0, 0));
    }

    #[tokio::test]
    async fn interrupted_or_oversized_body_leaves_upload_as_it_was() {
        let (_tmp, store) = open_store();
        let content = data(50_000, 3);
        let id = store.create_upload().await.unwrap();
        store
            .append_upload(&id, Some(0), body(&content[..20_000], 4096), None)
            .await
            .unwrap();

        let err = store
            .append_upload(
                &id,
                Some(20_000),
                failing_body(&content[20_000..45_000]),
                None,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::BodyInterrupted(m) if m.contains("connection reset")),
            "{err}"
        );
        assert_eq!(store.upload_offset(&id).await.unwrap(), Some(20_000));
        assert_eq!(upload_bytes(&store, &id), &content[..20_000]);

        let err = store
            .append_upload(
                &id,
                Some(20_000),
                body(&content[20_000..], 1000),
                Some(49_999),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::TooLarge { max: 49_999 }), "{err}");
        assert_eq!(upload_bytes(&store, &id), &content[..20_000]);

        // Exactly at the limit is fine.
        store
            .append_upload(
                &id,
                Some(20_000),
                body(&content[20_000..], 1000),
                Some(50_000),
            )
            .await
            .unwrap();
        let size = store
            .complete_upload(&id, &Digest::sha256(&content))
            .await
            .unwrap();
        assert_eq!(size, 50_000);
        assert_eq!(
            store.rehashed_uploads(),
            0,
            "a rollback must restore the running hash"
        );
        assert_eq!(assert_only_store_files(&store), (1, 0));
    }

    #[tokio::test]
    async fn dropped_append_is_rolled_back() {
        let (_tmp, store) = open_store();
        let content = data(2 << 20, 4);
        let id = store.create_upload().await.unwrap();
        store
            .append_upload(&id, Some(0), body(&content[..1000], 1000), None)
            .await
            .unwrap();
        // A client that sends 1.5 MiB and then stalls until the server gives up on it.
        let stalled = body(&content[1000..1_500_000], 64 * 1024).chain(stream::pending());
        let append = store.append_upload(&id, Some(1000), stalled, None);
        assert!(tokio::time::timeout(Duration::from_millis(300), append)
            .await
            .is_err());
        // The writer may still be rolling back: status answers the settled length at once.
        assert_eq!(store.upload_offset(&id).await.unwrap(), Some(1000));
        // The next append waits for the rollback, then continues where the upload was.
        let end = store
            .append_upload(&id, Some(1000), body(&content[1000..], 100_000), None)
            .await
            .unwrap();
        assert_eq!(end, content.len() as u64);
        assert_eq!(
            store
                .complete_upload(&id, &Digest::sha256(&content))
                .await
                .unwrap(),
            content.len() as u64
        );
        assert_eq!(store.rehashed_uploads(), 0);
        assert_eq!(assert_only_store_files(&store), (1, 0));
    }

    #[tokio::test]
    async fn upload_survives_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("store");
        let content = data(700_000, 5);
        let digest = Digest::sha256(&content);
        let id = {
            let store = BlobStore::open(&root).unwrap();
            let id = store.create_upload().await.unwrap();
            store
                .append_upload(&id, Some(0), body(&content[..300_000], 10_000), None)
                .await
                .unwrap();
            id
        };

        let store = BlobStore::open(&root).unwrap();
        assert_eq!(store.list_uploads().await.unwrap(), vec![id.clone()]);
        assert_eq!(store.upload_offset(&id).await.unwrap(), Some(300_000));
        store
            .append_upload(&id, Some(300_000), body(&content[300_000..], 10_000), None)
            .await
            .unwrap();
        // A wrong digest first: the upload stays, and the right one still completes it.
        let wrong = Digest::sha256(b"not it");
        let err = store.complete_upload(&id, &wrong).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::DigestMismatch { actual, .. } if *actual == digest),
            "{err}"
        );
        assert_eq!(store.upload_offset(&id).await.unwrap(), Some(700_000));
        assert_eq!(store.complete_upload(&id, &digest).await.unwrap(), 700_000);
        assert_eq!(
            store.rehashed_uploads(),
            2,
            "after a restart the file is hashed from disk"
        );
        assert_eq!(read_whole(&store, &digest).await, content);
        assert_eq!(assert_only_store_files(&store), (1, 0));
    }

    #[tokio::test]
    async fn wrong_digest_keeps_the_upload_and_its_hash() {
        let (_tmp, store) = open_store();
        let content = data(10_000, 6);
        let id = store.create_upload().await.unwrap();
        store
            .append_upload(&id, None, body(&content, 3000), None)
            .await
            .unwrap();
        let wrong = Digest::sha256(b"nope");
        assert!(matches!(
            store.complete_upload(&id, &wrong).await,
            Err(StoreError::DigestMismatch { .. })
        ));
        assert_eq!(store.blob_size(&wrong).await.unwrap(), None);
        assert_eq!(assert_only_store_files(&store), (0, 1));
        assert_eq!(upload_bytes(&store, &id), content);
        store
            .complete_upload(&id, &Digest::sha256(&content))
            .await
            .unwrap();
        assert_eq!(store.rehashed_uploads(), 0);
        assert_eq!(assert_only_store_files(&store), (1, 0));
    }

    #[tokio::test]
    async fn completing_a_stored_blob_discards_the_upload() {
        let (_tmp, store) = open_store();
        let content = data(5000, 7);
        let digest = Digest::sha256(&content);
        store
            .put_blob(&digest, Bytes::from(content.clone()))
            .await
            .unwrap();
        let id = store.create_upload().await.unwrap();
        store
            .append_upload(&id, Some(0), body(&content, 999), None)
            .await
            .unwrap();
        assert_eq!(store.complete_upload(&id, &digest).await.unwrap(), 5000);
        assert_eq!(store.upload_offset(&id).await.unwrap(), None);
        assert_eq!(read_whole(&store, &digest).await, content);
        assert_eq!(assert_only_store_files(&store), (1, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_to_one_upload_serialize() {
        let (_tmp, store) = open_store();
        let id = store.create_upload().await.unwrap();
        let a = data(400_000, 8);
        let b = data(400_000, 9);
        // Bodies that trickle in, so the two appends overlap in time.
        let slow = |bytes: Vec<u8>| {
            Box::pin(
                stream::iter(
                    bytes
                        .chunks(20_000)
                        .map(Bytes::copy_from_slice)
                        .collect::<Vec<_>>(),
                )
                .then(|chunk| async move {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    Ok::<_, Infallible>(chunk)
                }),
            )
        };
        let (ra, rb) = tokio::join!(
            store.append_upload(&id, None, slow(a.clone()), None),
            store.append_upload(&id, None, slow(b.clone()), None),
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(ra.max(rb), 800_000);
        assert_eq!(ra.min(rb), 400_000);
        let got = upload_bytes(&store, &id);
        let ab = [a.as_slice(), b.as_slice()].concat();
        let ba = [b.as_slice(), a.as_slice()].concat();
        assert!(got == ab || got == ba, "appends interleaved");
        // Both offsets given: the second to run must fail, not interleave.
        let id2 = store.create_upload().await.unwrap();
        let (ra, rb) = tokio::join!(
            store.append_upload(&id2, Some(0), slow(a.clone()), None),
            store.append_upload(&id2, Some(0), slow(b.clone()), None),
        );
        assert!(ra.is_ok() != rb.is_ok());
        assert_eq!(store.upload_offset(&id2).await.unwrap(), Some(400_000));

        let size = store
            .complete_upload(&id, &Digest::sha256(&got))
            .await
            .unwrap();
        assert_eq!(size, 800_000);
        assert_eq!(store.rehashed_uploads(), 0);
    }

    #[tokio::test]
    async fn range_streams_return_exact_bytes() {
        let (_tmp, store) = open_store();
        let content = data(3 * STREAM_CHUNK_BYTES + 123, 10);
        let digest = Digest::sha256(&content);
        store
            .put_blob(&digest, Bytes::from(content.clone()))
            .await
            .unwrap();
        let size = content.len() as u64;
        let c = STREAM_CHUNK_BYTES as u64;
        for (start, len) in [
            (0, size),
            (1, size - 1),
            (c - 1, 2),
            (c, c),
            (size - 1, 1),
            (12_345, 2 * c + 7),
            (size, 0),
            (0, 0),
        ] {
            let file = store.open_blob(&digest).await.unwrap().unwrap();
            assert_eq!(file.size, size);
            let got = collect(file.into_stream(start, len)).await.unwrap();
            let want = &content[start as usize..(start + len) as usize];
            assert!(got == want, "range {start}+{len}");
        }
        // A range past the end is an error, not a short body.
        let file = store.open_blob(&digest).await.unwrap().unwrap();
        let err = collect(file.into_stream(size - 10, 11)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        // A consumer that stops early just drops the stream.
        let file = store.open_blob(&digest).await.unwrap().unwrap();
        let mut stream = std::pin::pin!(file.into_stream(0, size));
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first.len(), STREAM_CHUNK_BYTES);
    }

    /// Whether the page cache holds every page of `path` (`mincore` on a mapping of it).
    fn fully_cached(path: &Path) -> bool {
        use std::os::fd::AsRawFd;
        let file = File::open(path).unwrap();
        let len = usize::try_from(file.metadata().unwrap().len()).unwrap();
        let page = 4096;
        // SAFETY: a private read-only mapping of an open file, unmapped below; `mincore`
        // writes one byte per page into a vector of that many bytes.
        unsafe {
            let map = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(map, libc::MAP_FAILED);
            let mut pages = vec![0u8; len.div_ceil(page)];
            assert_eq!(libc::mincore(map, len, pages.as_mut_ptr()), 0);
            libc::munmap(map, len);
            pages.iter().all(|p| p & 1 == 1)
        }
    }

    /// Drops `path`'s pages from the page cache (they are clean: the store fsynced them).
    fn evict(path: &Path) {
        use std::os::fd::AsRawFd;
        let file = File::open(path).unwrap();
        file.sync_all().unwrap();
        // SAFETY: posix_fadvise only reads its integer arguments.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0);
    }

    #[tokio::test]
    async fn blobs_stream_alike_from_the_page_cache_and_from_the_disk() {
        // Cached bytes are read on the runtime's thread (RWF_NOWAIT); bytes the page cache
        // does not hold go through the blocking pool. Both give the exact range, and a
        // range past the end is an error either way.
        let (_tmp, store) = open_store();
        let content = data(5 * STREAM_CHUNK_BYTES + 77, 12);
        let digest = Digest::sha256(&content);
        store
            .put_blob(&digest, Bytes::from(content.clone()))
            .await
            .unwrap();
        let path = store.blob_path(&digest);
        let size = content.len() as u64;
        for cached in [true, false] {
            for (start, len) in [
                (0, size),
                (STREAM_CHUNK_BYTES as u64 + 3, 2 * STREAM_CHUNK_BYTES as u64),
            ] {
                if cached {
                    let _ = std::fs::read(&path).unwrap();
                } else {
                    evict(&path);
                    // Some file systems (tmpfs) cannot drop pages: then both rounds take
                    // the cached path, which is still checked.
                }
                let file = store.open_blob(&digest).await.unwrap().unwrap();
                let got = collect(file.into_stream(start, len)).await.unwrap();
                let want = &content[start as usize..(start + len) as usize];
                assert!(got == want, "cached {cached}, range {start}+{len}");
            }
            if cached {
                assert!(fully_cached(&path));
            }
            let file = store.open_blob(&digest).await.unwrap().unwrap();
            let err = collect(file.into_stream(size - 10, 11)).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "cached {cached}");
        }
    }

    #[tokio::test]
    async fn sha512_blobs_and_uploads_work() {
        let (_tmp, store) = open_store();
        let manifest = Bytes::from_static(b"{\"schemaVersion\":2}");
        let digest = Digest::compute(DigestAlgorithm::Sha512, &manifest);
        store.put_blob(&digest, manifest.clone()).await.unwrap();
        assert_eq!(store.read_blob(&digest, 100).await.unwrap(), Some(manifest));

        let content = data(200_000, 11);
        let digest = Digest::compute(DigestAlgorithm::Sha512, &content);
        let id = store.create_upload().await.unwrap();
        store
            .append_upload(&id, Some(0), body(&content, 30_000), None)
            .await
            .unwrap();
        // The sha256 of the same bytes does not complete a sha512 upload as something else.
        let sha256 = Digest::sha256(&content);
        let sha512_of_other = Digest::compute(DigestAlgorithm::Sha512, b"other");
        assert!(matches!(
            store.complete_upload(&id, &sha512_of_other).await,
            Err(StoreError::DigestMismatch { .. })
        ));
        assert_eq!(store.complete_upload(&id, &digest).await.unwrap(), 200_000);
        assert_eq!(read_whole(&store, &digest).await, content);
        assert_eq!(store.blob_size(&sha256).await.unwrap(), None);
        assert_eq!(assert_only_store_files(&store), (2, 0));
        let mut listed = store.list_blobs().await.unwrap();
        listed.sort();
        assert_eq!(listed.len(), 2);
        assert!(listed
            .iter()
            .all(|d| d.algorithm() == DigestAlgorithm::Sha512));
    }

    #[tokio::test]
    async fn large_upload_in_small_chunks() {
        // Many batches and several writeback windows.
        let (_tmp, store) = open_store();
        let content = data(40 << 20, 12);
        let digest = Digest::sha256(&content);
        let id = store.create_upload().await.unwrap();
        let end = store
            .append_upload(&id, Some(0), body(&content, 16 * 1024), Some(40 << 20))
            .await
            .unwrap();
        assert_eq!(end, 40 << 20);
        assert_eq!(store.complete_upload(&id, &digest).await.unwrap(), 40 << 20);
        assert_eq!(store.rehashed_uploads(), 0);
        assert!(read_whole(&store, &digest).await == content);
    }

    #[tokio::test]
    async fn unpaced_append_reports_each_write_and_its_digest_before_completion() {
        // The mirror's fetch path: many windows without waiting for the disk, progress
        // reported as the file grows, the digest known before the completing fsync.
        let (_tmp, store) = open_store();
        let content = data(24 << 20, 7);
        let digest = Digest::sha256(&content);
        let id = store.create_upload().await.unwrap();
        let reports = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let seen = Arc::clone(&reports);
        let options = AppendOptions {
            max_dirty_bytes: 1 << 30,
            on_written: Some(Arc::new(move |len| seen.lock().push(len))),
        };
        let end = store
            .append_upload_with(&id, Some(0), body(&content, 64 * 1024), None, options)
            .await
            .unwrap();
        assert_eq!(end, 24 << 20);
        let reports = reports.lock().clone();
        assert!(reports.len() > 1, "one report per written batch");
        assert!(reports.windows(2).all(|w| w[0] < w[1]), "lengths only grow");
        assert_eq!(reports.last(), Some(&(24 << 20)));
        assert_eq!(
            store.upload_digest(&id).await.unwrap(),
            Some(digest.clone())
        );
        // Not visible until completed.
        assert_eq!(store.blob_size(&digest).await.unwrap(), None);
        assert_eq!(store.complete_upload(&id, &digest).await.unwrap(), 24 << 20);
        assert!(read_whole(&store, &digest).await == content);
        assert!(matches!(
            store.upload_digest(&id).await,
            Err(StoreError::UploadUnknown(_))
        ));
    }

    #[tokio::test]
    async fn upload_digest_is_unknown_without_a_running_hash() {
        // After a restart the hash of an upload file is not in memory: `None`, and only
        // completing the upload (which hashes the file) decides.
        let tmp = tempfile::tempdir().unwrap();
        let content = data(1000, 3);
        let id = {
            let store = BlobStore::open(tmp.path()).unwrap();
            let id = store.create_upload().await.unwrap();
            store
                .append_upload(&id, Some(0), body(&content, 100), None)
                .await
                .unwrap();
            id
        };
        let store = BlobStore::open(tmp.path()).unwrap();
        store
            .append_upload(&id, Some(1000), body(&content, 100), None)
            .await
            .unwrap();
        assert_eq!(store.upload_digest(&id).await.unwrap(), None);
    }

    #[tokio::test]
    async fn cancel_deletes_the_upload() {
        let (_tmp, store) = open_store();
        let id = store.create_upload().await.unwrap();
        store
            .append_upload(&id, Some(0), body(b"abc", 1), None)
            .await
            .unwrap();
        assert!(store.cancel_upload(&id).await.unwrap());
        assert!(!store.cancel_upload(&id).await.unwrap());
        assert_eq!(store.upload_offset(&id).await.unwrap(), None);
        assert_eq!(assert_only_store_files(&store), (0, 0));
        assert_eq!(store.inner.sessions.len(), 0);
    }

    #[tokio::test]
    async fn janitor_removes_only_stale_uploads_and_temp_files() {
        let (_tmp, store) = open_store();
        let a = store.create_upload().await.unwrap();
        let b = store.create_upload().await.unwrap();
        let past = SystemTime::UNIX_EPOCH;
        assert!(store.remove_stale_uploads(past).await.unwrap().is_empty());

        // `b` is busy with an append: skipped even though it is old enough.
        let busy = store.inner.sessions.get(&b).unwrap();
        let guard = Arc::clone(&busy.state).lock_owned().await;
        let future = SystemTime::now() + Duration::from_secs(60);
        assert_eq!(
            store.remove_stale_uploads(future).await.unwrap(),
            vec![a.clone()]
        );
        drop(guard);
        assert_eq!(
            store.remove_stale_uploads(future).await.unwrap(),
            vec![b.clone()]
        );
        assert_eq!(store.inner.sessions.len(), 0);

        // A temp file left by a crash mid-write.
        let stray = store.root().join("blobs/sha256/ab/.tmp-crashed");
        fs::write(&stray, b"partial").unwrap();
        assert!(store.list_blobs().await.unwrap().is_empty());
        assert_eq!(store.remove_stale_temp_files(past).await.unwrap(), 0);
        assert_eq!(store.remove_stale_temp_files(future).await.unwrap(), 1);
        assert_eq!(assert_only_store_files(&store), (0, 0));
    }

    #[test]
    fn open_creates_the_layout_and_reopens() {
        let tmp = tempfile::tempdir().unwrap();
        let store = BlobStore::open(tmp.path().join("a/b")).unwrap();
        assert!(store.root().join("blobs/sha512/ff").is_dir());
        assert!(store.root().join("uploads").is_dir());
        BlobStore::open(tmp.path().join("a/b")).unwrap();
        assert!(format!("{store:?}").contains("a/b"));
        // A file where the root should be is an I/O error, not a panic.
        fs::write(tmp.path().join("file"), b"").unwrap();
        assert!(matches!(
            BlobStore::open(tmp.path().join("file")),
            Err(StoreError::Io { .. })
        ));
    }
}
