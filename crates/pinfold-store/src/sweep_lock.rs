//! Coordination between deleting blobs and reading a stable set of them, across processes.
//!
//! Garbage collection deletes blobs nothing references any more; a backup copies every blob its
//! metadata snapshot names. If a collection swept while a backup was copying, a blob the snapshot
//! still names could vanish before it was copied. Both sides take one advisory lock on
//! `<root>/sweep.lock`: a backup holds it shared for its whole run; a collection takes it
//! exclusive, without waiting, for its sweep. The lock is an OS file lock (`flock`), so it works
//! between `pinfold serve` and a `pinfold backup` run as another process, and it is released when
//! the guard drops or the process dies (a crash never leaves it held).

use std::fs::{File, OpenOptions, TryLockError};

use crate::{BlobStore, StoreError};

/// File name of the lock under the store root.
pub(crate) const SWEEP_LOCK_FILE: &str = "sweep.lock";

/// Holds the sweep lock (shared or exclusive) until dropped.
#[derive(Debug)]
#[must_use = "the lock is released when the guard drops"]
pub struct SweepGuard {
    // Kept open only to keep the lock: closing the file releases it.
    _file: File,
}

impl BlobStore {
    fn open_sweep_lock(&self) -> Result<File, StoreError> {
        let path = self.root().join(SWEEP_LOCK_FILE);
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io("open", &path, e))
    }

    /// Waits for and takes the sweep lock shared: while held, no garbage collection sweeps, so
    /// every blob present now stays present. For backups and other readers of a blob set.
    ///
    /// Blocks the calling thread; call it from `spawn_blocking` in async code.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the lock file cannot be opened or locked.
    pub fn lock_blob_set(&self) -> Result<SweepGuard, StoreError> {
        let file = self.open_sweep_lock()?;
        file.lock_shared()
            .map_err(|e| StoreError::io("lock (shared)", &self.root().join(SWEEP_LOCK_FILE), e))?;
        Ok(SweepGuard { _file: file })
    }

    /// Takes the sweep lock exclusive without waiting: `Ok(None)` when a backup or another
    /// collection holds it, so a second collection refuses to start instead of queueing.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the lock file cannot be opened or locked.
    pub fn try_lock_sweep(&self) -> Result<Option<SweepGuard>, StoreError> {
        let file = self.open_sweep_lock()?;
        match file.try_lock() {
            Ok(()) => Ok(Some(SweepGuard { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(StoreError::io(
                "lock (exclusive)",
                &self.root().join(SWEEP_LOCK_FILE),
                e,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_holder_keeps_the_sweep_out_until_it_drops() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let backup = store.lock_blob_set().unwrap();
        let second_reader = store.lock_blob_set().unwrap();
        assert!(store.try_lock_sweep().unwrap().is_none());
        drop(backup);
        assert!(store.try_lock_sweep().unwrap().is_none());
        drop(second_reader);
        let sweep = store
            .try_lock_sweep()
            .unwrap()
            .expect("free once readers are gone");
        assert!(
            store.try_lock_sweep().unwrap().is_none(),
            "a second sweep is refused"
        );
        drop(sweep);
        assert!(store.try_lock_sweep().unwrap().is_some());
    }
}
