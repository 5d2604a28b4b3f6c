//! File plumbing shared by backup, restore and verify: hashing with big reads, verified durable
//! copies (temp file, fsync, rename, fsync the directory), and a bounded thread pool.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use pinfold_oci::{Digest, DigestAlgorithm, Digester};
use pinfold_store::{BlobReader, BlobStore};
use sha2::{Digest as _, Sha256};

use crate::BackupError;

/// Read size for hashing and copying. Large reads keep the hash fed: measured on the bench
/// machine, 4 MiB reads hash a page-cached file as fast as `openssl dgst` does.
pub(crate) const READ_BYTES: usize = 4 * 1024 * 1024;

/// How many files to hash or copy at once: one per core (hashing is CPU-bound on page-cached
/// data, and copying to another disk overlaps reads with writes), at most 8.
pub(crate) fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8))
}

/// `blobs/<alg>/<xx>/<hex>` relative to a backup directory: the same shape as the data
/// directory's blob tree.
pub(crate) fn blob_rel_path(digest: &Digest) -> PathBuf {
    let hex = digest.encoded();
    let fan_out = hex.get(..2).unwrap_or(hex);
    Path::new("blobs")
        .join(digest.algorithm().as_str())
        .join(fan_out)
        .join(hex)
}

/// Reads `path` to its end in big chunks, handing each chunk to `sink`. Returns the size.
pub(crate) fn read_chunks(
    path: &Path,
    sink: impl FnMut(&[u8]) -> Result<(), BackupError>,
) -> Result<u64, BackupError> {
    let file = File::open(path).map_err(|e| BackupError::io("open", path, e))?;
    read_chunks_from(file, path, sink)
}

/// Reads `reader` (the bytes of `path`, or of the object `path` names) to its end in big
/// chunks, handing each chunk to `sink`. Returns the size.
pub(crate) fn read_chunks_from(
    mut file: impl Read,
    path: &Path,
    mut sink: impl FnMut(&[u8]) -> Result<(), BackupError>,
) -> Result<u64, BackupError> {
    let mut buf = vec![0u8; READ_BYTES];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BackupError::io("read", path, e)),
        };
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            return Ok(size);
        };
        sink(chunk)?;
        size += n as u64;
    }
}

/// The digest (with `algorithm`) and size of the file at `path`; `on_chunk` sees each chunk's
/// length (progress, throttling).
pub(crate) fn hash_file(
    path: &Path,
    algorithm: DigestAlgorithm,
    on_chunk: impl FnMut(u64),
) -> Result<(Digest, u64), BackupError> {
    let file = File::open(path).map_err(|e| BackupError::io("open", path, e))?;
    hash_reader(file, path, algorithm, on_chunk)
}

/// [`hash_file`] of a reader (`path` names its source in errors).
pub(crate) fn hash_reader(
    reader: impl Read,
    path: &Path,
    algorithm: DigestAlgorithm,
    mut on_chunk: impl FnMut(u64),
) -> Result<(Digest, u64), BackupError> {
    let mut digester = Digester::new(algorithm);
    let size = read_chunks_from(reader, path, |chunk| {
        digester.update(chunk);
        on_chunk(chunk.len() as u64);
        Ok(())
    })?;
    Ok((digester.finalize(), size))
}

/// Lowercase hex SHA-256 and size of the file at `path` (the manifest's record of non-blob
/// files).
pub(crate) fn sha256_file(path: &Path) -> Result<(String, u64), BackupError> {
    let mut hasher = Sha256::new();
    let size = read_chunks(path, |chunk| {
        hasher.update(chunk);
        Ok(())
    })?;
    Ok((hex(&hasher.finalize()), size))
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Removes the temp file on drop unless disarmed.
struct TempGuard {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// What a verified copy found.
pub(crate) struct Copied {
    /// SHA-256 (hex) or the blob digest of what was read.
    pub(crate) hash: String,
    /// Bytes copied.
    pub(crate) size: u64,
}

/// Copies `src` to `dest` durably, hashing as it copies with `algorithm` (SHA-256 when `None`,
/// returned as hex; a blob algorithm returns the digest string). When `expected` is given and
/// differs from what was read, nothing is left at `dest` and `Ok(Err(actual))` says what was
/// found. The copy goes to a temp file beside `dest`, is fsynced and renamed; the caller fsyncs
/// `dest`'s directory (once for many files).
pub(crate) fn copy_verified(
    src: &Path,
    dest: &Path,
    algorithm: Option<DigestAlgorithm>,
    expected: Option<&str>,
) -> Result<Result<Copied, String>, BackupError> {
    let file = File::open(src).map_err(|e| BackupError::io("open", src, e))?;
    copy_verified_from(file, src, dest, algorithm, expected)
}

/// [`copy_verified`] from a reader (a blob in object storage); `src` names it in errors.
pub(crate) fn copy_verified_from(
    reader: impl Read,
    src: &Path,
    dest: &Path,
    algorithm: Option<DigestAlgorithm>,
    expected: Option<&str>,
) -> Result<Result<Copied, String>, BackupError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| BackupError::io("create directory", dir, e))?;
    let temp = TempGuard {
        path: dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple())),
        armed: true,
    };
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp.path)
        .map_err(|e| BackupError::io("create", &temp.path, e))?;
    enum Hasher {
        Blob(Digester),
        File(Sha256),
    }
    let mut hasher = match algorithm {
        Some(a) => Hasher::Blob(Digester::new(a)),
        None => Hasher::File(Sha256::new()),
    };
    let size = read_chunks_from(reader, src, |chunk| {
        match &mut hasher {
            Hasher::Blob(d) => d.update(chunk),
            Hasher::File(h) => h.update(chunk),
        }
        out.write_all(chunk)
            .map_err(|e| BackupError::io("write", &temp.path, e))
    })?;
    let hash = match hasher {
        Hasher::Blob(d) => d.finalize().to_string(),
        Hasher::File(h) => hex(&h.finalize()),
    };
    if expected.is_some_and(|e| e != hash) {
        return Ok(Err(hash));
    }
    out.sync_all()
        .map_err(|e| BackupError::io("fsync", &temp.path, e))?;
    drop(out);
    fs::rename(&temp.path, dest).map_err(|e| BackupError::io("rename", &temp.path, e))?;
    let mut temp = temp;
    temp.armed = false;
    Ok(Ok(Copied { hash, size }))
}

/// fsyncs a directory so the names created or renamed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BackupError::io("fsync directory", dir, e))
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync the directory. A reader
/// sees the old file, no file, or the whole new one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = TempGuard {
        path: dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple())),
        armed: true,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp.path)
        .map_err(|e| BackupError::io("create", &temp.path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| BackupError::io("write", &temp.path, e))?;
    drop(file);
    fs::rename(&temp.path, path).map_err(|e| BackupError::io("rename", &temp.path, e))?;
    let mut temp = temp;
    temp.armed = false;
    sync_dir(dir)
}

/// Runs `work` on every item with [`threads`] threads and returns the results in item order.
/// The first error stops the others from taking new items and is returned.
pub(crate) fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    work: impl Fn(&T) -> Result<R, BackupError> + Sync,
) -> Result<Vec<R>, BackupError> {
    let next = AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let results: Mutex<Vec<(usize, R)>> = Mutex::new(Vec::with_capacity(items.len()));
    let first_error: Mutex<Option<BackupError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1).min(items.len().max(1)) {
            scope.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else {
                    return;
                };
                match work(item) {
                    Ok(r) => {
                        if let Ok(mut v) = results.lock() {
                            v.push((i, r));
                        }
                    }
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        if let Ok(mut slot) = first_error.lock() {
                            slot.get_or_insert(e);
                        }
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    let mut results = results
        .into_inner()
        .map_err(|_| BackupError::Task("a worker thread panicked".into()))?;
    results.sort_by_key(|(i, _)| *i);
    if results.len() != items.len() {
        return Err(BackupError::Task("a worker thread panicked".into()));
    }
    Ok(results.into_iter().map(|(_, r)| r).collect())
}

/// How many blobs to read from object storage at once: each read waits mostly on the network.
pub(crate) const OBJECT_THREADS: usize = 16;

/// What names the blob `digest` of a store in object storage in messages and findings: its key
/// under the store's prefix, `s3:blobs/<alg>/<xx>/<hex>`.
pub(crate) fn object_label(digest: &Digest) -> PathBuf {
    PathBuf::from(format!("s3:{}", blob_rel_path(digest).display()))
}

/// Opens the blob `digest` of `store` from a plain (non-async) thread, waiting on `runtime`:
/// its size and a blocking reader of its bytes, or `None` when it is not stored. Nothing is
/// read until the reader is.
pub(crate) fn open_blob_blocking(
    runtime: &tokio::runtime::Handle,
    store: &BlobStore,
    digest: &Digest,
) -> Result<Option<(u64, BlobReader)>, BackupError> {
    let Some(blob) = runtime.block_on(store.open_blob(digest))? else {
        return Ok(None);
    };
    let size = blob.size;
    // The reader bridges the object stream to blocking reads on the current runtime.
    let _entered = runtime.enter();
    Ok(Some((size, blob.into_reader())))
}

/// `Ok(None)` for "not found", the metadata otherwise.
pub(crate) fn stat(path: &Path) -> Result<Option<fs::Metadata>, BackupError> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BackupError::io("stat", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_verified_refuses_unexpected_content_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::write(&src, b"hello").unwrap();
        let dest = dir.path().join("out/dest");
        let wrong = copy_verified(&src, &dest, None, Some("00")).unwrap();
        assert!(wrong.is_err());
        assert!(!dest.exists());
        assert_eq!(fs::read_dir(dir.path().join("out")).unwrap().count(), 0);
        let ok = copy_verified(&src, &dest, Some(DigestAlgorithm::Sha256), None)
            .unwrap()
            .unwrap();
        assert_eq!(ok.hash, Digest::sha256(b"hello").to_string());
        assert_eq!(fs::read(&dest).unwrap(), b"hello");
    }

    #[test]
    fn parallel_map_keeps_order_and_stops_on_error() {
        let items: Vec<u32> = (0..100).collect();
        let doubled = parallel_map(&items, 4, |i| Ok(i * 2)).unwrap();
        assert_eq!(doubled, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        let err = parallel_map(&items, 4, |i| {
            if *i == 50 {
                Err(BackupError::Task("boom".into()))
            } else {
                Ok(*i)
            }
        });
        assert!(err.is_err());
    }
}
