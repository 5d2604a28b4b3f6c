//! The one way content becomes a visible blob: verify, fsync, rename, fsync the directory.
//!
//! Both [`BlobStore::put_blob`](crate::BlobStore::put_blob) (bytes in memory) and
//! [`BlobStore::complete_upload`](crate::BlobStore::complete_upload) (a finished upload file)
//! go through [`install_blob`], so "visible means verified and durable" is decided in one place.
//! Everything here blocks; callers run it on a blocking thread.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use pinfold_oci::{Digest, DigestAlgorithm, Digester};

use crate::layout::{self, Layout};
use crate::StoreError;

/// Read size when an upload file has to be hashed from disk.
const HASH_READ_BYTES: usize = 1024 * 1024;

/// What to make into a blob.
pub(crate) enum Content {
    /// Bytes held in memory (manifests, configs). Written to a temp file beside the blob.
    Bytes(Bytes),
    /// A finished upload file, renamed into place (uploads/ is on the store's file system).
    Upload {
        /// `uploads/<id>`.
        path: PathBuf,
        /// The open upload file.
        file: File,
        /// Its length.
        len: u64,
        /// Its digest when it was computed while the bytes arrived; `None` hashes the file.
        digest: Option<Digest>,
    },
}

/// Makes `content` the blob `expected` and returns the blob's size.
///
/// In order: hash `content` (unless an upload's digest is already known) and compare with
/// `expected`; if the blob already exists, keep it and discard an upload file (content
/// addressing makes them identical); otherwise fsync the content, rename it into
/// `blobs/<alg>/<xx>/<hex>` and fsync that directory. A temp file is removed on every early
/// exit. An upload file is left untouched by any failure before the rename, so the client can
/// retry or cancel.
///
/// # Errors
/// [`StoreError::DigestMismatch`] when the content hashes to something else (nothing changes);
/// [`StoreError::Io`] when a file-system step fails.
pub(crate) fn install_blob(
    layout: &Layout,
    expected: &Digest,
    content: Content,
) -> Result<u64, StoreError> {
    let actual = match &content {
        Content::Bytes(bytes) => Digest::compute(expected.algorithm(), bytes),
        Content::Upload {
            digest: Some(digest),
            ..
        } => digest.clone(),
        Content::Upload {
            path,
            file,
            len,
            digest: None,
        } => hash_file(file, path, *len, expected.algorithm())?,
    };
    if &actual != expected {
        return Err(StoreError::DigestMismatch {
            expected: expected.clone(),
            actual,
        });
    }

    let dest = layout.blob_path(expected);
    if exists(&dest)? {
        return match content {
            Content::Bytes(bytes) => Ok(bytes.len() as u64),
            Content::Upload { path, len, .. } => {
                fs::remove_file(&path).map_err(|e| StoreError::io("remove upload", &path, e))?;
                Ok(len)
            }
        };
    }

    let dir = layout.blob_dir(expected);
    ensure_blob_dir(layout, expected.algorithm(), &dir)?;
    let size = match content {
        Content::Bytes(bytes) => {
            let (temp, mut file) = TempFile::create(&dir)?;
            file.write_all(&bytes)
                .map_err(|e| StoreError::io("write", &temp.path, e))?;
            file.sync_data()
                .map_err(|e| StoreError::io("fsync", &temp.path, e))?;
            drop(file);
            fs::rename(&temp.path, &dest).map_err(|e| StoreError::io("rename", &temp.path, e))?;
            temp.disarm();
            bytes.len() as u64
        }
        Content::Upload {
            path, file, len, ..
        } => {
            // Most of the data is already on disk: appends start writeback as they go
            // (`append::writeback`), so this waits only for the tail.
            file.sync_data()
                .map_err(|e| StoreError::io("fsync", &path, e))?;
            drop(file);
            fs::rename(&path, &dest).map_err(|e| StoreError::io("rename", &path, e))?;
            len
        }
    };
    // The rename is durable only once the directory holding the new name is.
    sync_dir(&dir)?;
    Ok(size)
}

/// Copies the file at `source` into the store as the blob `expected`, hashing while it copies,
/// and returns the blob's size. For restoring blobs from a backup: the bytes are verified on
/// the way in, so a backup file changed since it was checked is never installed.
///
/// A blob already stored is kept and `source` is not read (content addressing makes them
/// identical; a caller replacing a corrupt blob deletes it first). The copy goes to a temp file
/// beside the blob, is fsynced and renamed into place and the directory fsynced; the temp file is
/// removed on every early exit.
///
/// # Errors
/// [`StoreError::DigestMismatch`] when `source` hashes to something else (nothing changes);
/// [`StoreError::Io`] when reading `source` or a file-system step fails.
pub(crate) fn copy_file_in(
    layout: &Layout,
    expected: &Digest,
    source: &Path,
) -> Result<u64, StoreError> {
    let dest = layout.blob_path(expected);
    if let Ok(meta) = fs::symlink_metadata(&dest) {
        return Ok(meta.len());
    }
    let mut input = File::open(source).map_err(|e| StoreError::io("open", source, e))?;
    let dir = layout.blob_dir(expected);
    ensure_blob_dir(layout, expected.algorithm(), &dir)?;
    let (temp, mut file) = TempFile::create(&dir)?;
    let mut digester = Digester::new(expected.algorithm());
    let mut buf = vec![0u8; HASH_READ_BYTES];
    let mut size = 0u64;
    loop {
        let n =
            io::Read::read(&mut input, &mut buf).map_err(|e| StoreError::io("read", source, e))?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        digester.update(chunk);
        file.write_all(chunk)
            .map_err(|e| StoreError::io("write", &temp.path, e))?;
        size += n as u64;
    }
    let actual = digester.finalize();
    if &actual != expected {
        return Err(StoreError::DigestMismatch {
            expected: expected.clone(),
            actual,
        });
    }
    file.sync_data()
        .map_err(|e| StoreError::io("fsync", &temp.path, e))?;
    drop(file);
    fs::rename(&temp.path, &dest).map_err(|e| StoreError::io("rename", &temp.path, e))?;
    temp.disarm();
    sync_dir(&dir)?;
    Ok(size)
}

/// SHA-2 of the first `len` bytes of `file`, read from disk. Used when the running hash is
/// not available: after a restart, after an interrupted append, or for SHA-512.
fn hash_file(
    file: &File,
    path: &Path,
    len: u64,
    algorithm: DigestAlgorithm,
) -> Result<Digest, StoreError> {
    let mut digester = Digester::new(algorithm);
    let mut buf = vec![0u8; HASH_READ_BYTES];
    let mut offset = 0u64;
    while offset < len {
        let want = usize::try_from(len - offset).map_or(buf.len(), |rest| rest.min(buf.len()));
        let chunk = buf.get_mut(..want).unwrap_or_default();
        file.read_exact_at(chunk, offset)
            .map_err(|e| StoreError::io("read upload", path, e))?;
        digester.update(chunk);
        offset += want as u64;
    }
    Ok(digester.finalize())
}

/// Whether `path` exists (without following a final symlink; the store makes none).
fn exists(path: &Path) -> Result<bool, StoreError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io("stat", path, e)),
    }
}

/// Makes sure a blob's fan-out directory exists durably. `BlobStore::open` creates all of
/// them, so this only acts when one was removed behind the store's back.
fn ensure_blob_dir(
    layout: &Layout,
    algorithm: DigestAlgorithm,
    dir: &Path,
) -> Result<(), StoreError> {
    if exists(dir)? {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| StoreError::io("create directory", dir, e))?;
    sync_dir(&layout.algorithm_dir(algorithm))?;
    sync_dir(&layout.blobs_dir())?;
    sync_dir(layout.root())
}

/// fsyncs a directory, making the names created or renamed in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync directory", dir, e))
}

/// A temp file that is deleted when dropped, unless [`TempFile::disarm`] was called after it
/// was renamed into place.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    /// Creates a new, empty temp file in `dir` and returns its guard and the open file.
    fn create(dir: &Path) -> Result<(TempFile, File), StoreError> {
        let path = layout::temp_path(dir);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::io("create temp file", &path, e))?;
        Ok((TempFile { path, armed: true }, file))
    }

    /// The file now has its final name; keep it.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Err(e) = fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                // Dropped errors are logged where they are dropped; the janitor's
                // `remove_stale_temp_files` deletes what this could not.
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove temp file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn layout_with_dirs(root: &Path) -> Layout {
        let layout = Layout::new(root.to_path_buf());
        fs::create_dir_all(layout.uploads_dir()).unwrap();
        fs::create_dir_all(layout.algorithm_dir(DigestAlgorithm::Sha256)).unwrap();
        layout
    }

    #[test]
    fn installs_bytes_and_leaves_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = layout_with_dirs(tmp.path());
        let bytes = Bytes::from_static(b"hello");
        let digest = Digest::sha256(&bytes);
        // The fan-out directory is missing: it is created on demand.
        assert_eq!(
            install_blob(&layout, &digest, Content::Bytes(bytes.clone())).unwrap(),
            5
        );
        assert_eq!(fs::read(layout.blob_path(&digest)).unwrap(), b"hello");
        assert_eq!(
            names_in(&layout.blob_dir(&digest)),
            vec![digest.encoded().to_owned()]
        );
        // Installing again keeps the blob.
        assert_eq!(
            install_blob(&layout, &digest, Content::Bytes(bytes)).unwrap(),
            5
        );
    }

    #[test]
    fn mismatched_upload_is_left_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = layout_with_dirs(tmp.path());
        let path = layout.uploads_dir().join("u");
        fs::write(&path, b"abc").unwrap();
        let wrong = Digest::sha256(b"abd");
        let content = Content::Upload {
            path: path.clone(),
            file: File::open(&path).unwrap(),
            len: 3,
            digest: None,
        };
        let err = install_blob(&layout, &wrong, content).unwrap_err();
        assert!(
            matches!(&err, StoreError::DigestMismatch { actual, .. } if *actual == Digest::sha256(b"abc")),
            "{err}"
        );
        assert_eq!(fs::read(&path).unwrap(), b"abc");
        assert!(!layout.blob_path(&wrong).exists());
    }

    #[test]
    fn hashes_only_the_given_length() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        let data: Vec<u8> = (0..(3 * HASH_READ_BYTES + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let len = data.len() as u64 - 5;
        let got = hash_file(&file, &path, len, DigestAlgorithm::Sha512).unwrap();
        let want = Digest::compute(DigestAlgorithm::Sha512, &data[..data.len() - 5]);
        assert_eq!(got, want);
        // A file shorter than claimed is an error, not a short hash.
        assert!(hash_file(&file, &path, data.len() as u64 + 1, DigestAlgorithm::Sha256).is_err());
    }
}
