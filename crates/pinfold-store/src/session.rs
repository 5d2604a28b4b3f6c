//! In-memory state of upload sessions.
//!
//! The upload file is the session's only durable state; what is kept here makes it fast and
//! safe: one async lock per upload, so operations on one upload run one at a time while
//! different uploads run in parallel, and the running SHA-256 of what this process wrote, so
//! completing an upload does not read the file back. Both are rebuilt lazily, so after a
//! restart every upload file on disk is a working session again.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pinfold_oci::{DigestAlgorithm, Digester};
use tokio::sync::Mutex as AsyncMutex;

use crate::UploadId;

/// The running hash of an upload's first `len` bytes.
#[derive(Clone)]
pub(crate) struct RunningHash {
    /// SHA-256, the algorithm nearly every client uses; SHA-512 uploads are hashed from disk
    /// when they complete.
    pub(crate) digester: Digester,
    /// How many bytes of the file `digester` has seen.
    pub(crate) len: u64,
}

impl RunningHash {
    /// The hash of an empty upload.
    pub(crate) fn empty() -> RunningHash {
        RunningHash {
            digester: Digester::new(DigestAlgorithm::Sha256),
            len: 0,
        }
    }
}

/// What the per-upload lock protects.
pub(crate) struct Session {
    /// Set when the upload was completed or cancelled, for tasks that were already waiting on
    /// the lock.
    pub(crate) ended: bool,
    /// The hash of the file's content when this process wrote all of it in order.
    pub(crate) hash: Option<RunningHash>,
}

impl Session {
    /// Drops the running hash unless it covers exactly `file_len` bytes: the file is the
    /// truth, and a hash of anything else would verify the wrong content.
    pub(crate) fn reconcile(&mut self, file_len: u64) {
        self.hash = match self.hash.take() {
            Some(hash) if hash.len == file_len => Some(hash),
            None if file_len == 0 => Some(RunningHash::empty()),
            _ => None,
        };
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("ended", &self.ended)
            .field("hashed_len", &self.hash.as_ref().map(|h| h.len))
            .finish()
    }
}

/// Marks "no settled length known" in [`SessionHandle::settled_len`].
const UNKNOWN_LEN: u64 = u64::MAX;

/// One upload's lock, plus its length as of the last finished operation.
#[derive(Debug)]
pub(crate) struct SessionHandle {
    /// Taken by every operation that reads or changes the upload.
    pub(crate) state: Arc<AsyncMutex<Session>>,
    /// The upload's length before the operation now holding `state` began, so that a status
    /// request (`GET` on the upload) answers at once instead of waiting for a long `PATCH`,
    /// and never reports bytes that a failing append is about to roll back.
    settled_len: AtomicU64,
}

impl SessionHandle {
    fn new(hash: Option<RunningHash>) -> SessionHandle {
        SessionHandle {
            state: Arc::new(AsyncMutex::new(Session { ended: false, hash })),
            settled_len: AtomicU64::new(UNKNOWN_LEN),
        }
    }

    /// The settled length, if an operation has recorded one.
    pub(crate) fn settled_len(&self) -> Option<u64> {
        match self.settled_len.load(Ordering::Acquire) {
            UNKNOWN_LEN => None,
            len => Some(len),
        }
    }

    /// Records the settled length; called with `state` locked.
    pub(crate) fn set_settled_len(&self, len: Option<u64>) {
        self.settled_len
            .store(len.unwrap_or(UNKNOWN_LEN), Ordering::Release);
    }
}

/// All sessions this process has touched since it started.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: parking_lot::Mutex<HashMap<UploadId, Arc<SessionHandle>>>,
}

impl Sessions {
    /// Registers a session that was just created (empty file, empty hash).
    pub(crate) fn insert_new(&self, id: &UploadId) {
        let handle = Arc::new(SessionHandle::new(Some(RunningHash::empty())));
        handle.set_settled_len(Some(0));
        self.map.lock().insert(id.clone(), handle);
    }

    /// The handle of `id`, if this process has one.
    pub(crate) fn get(&self, id: &UploadId) -> Option<Arc<SessionHandle>> {
        self.map.lock().get(id).cloned()
    }

    /// The handle of `id`, made on first use (e.g. for an upload created before a restart).
    /// The flag tells whether it was made by this call.
    pub(crate) fn get_or_insert(&self, id: &UploadId) -> (Arc<SessionHandle>, bool) {
        let mut map = self.map.lock();
        if let Some(handle) = map.get(id) {
            return (Arc::clone(handle), false);
        }
        let handle = Arc::new(SessionHandle::new(None));
        map.insert(id.clone(), Arc::clone(&handle));
        (handle, true)
    }

    /// Removes `handle` from the map (upload ended, or no such upload), unless the map already
    /// holds a different handle for `id`.
    pub(crate) fn forget(&self, id: &UploadId, handle: &Arc<SessionHandle>) {
        let mut map = self.map.lock();
        if map.get(id).is_some_and(|h| Arc::ptr_eq(h, handle)) {
            map.remove(id);
        }
    }

    /// How many sessions are in memory.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_keeps_only_a_hash_of_the_whole_file() {
        let mut session = Session {
            ended: false,
            hash: None,
        };
        session.reconcile(0);
        assert_eq!(session.hash.as_ref().map(|h| h.len), Some(0));
        session.reconcile(3);
        assert!(session.hash.is_none());
        session.reconcile(3);
        assert!(session.hash.is_none());
    }

    #[test]
    fn forget_removes_only_the_same_handle() {
        let sessions = Sessions::default();
        let id = UploadId::new_random();
        let (first, made) = sessions.get_or_insert(&id);
        assert!(made);
        let (again, made) = sessions.get_or_insert(&id);
        assert!(!made && Arc::ptr_eq(&first, &again));
        sessions.forget(&id, &first);
        assert!(sessions.get(&id).is_none());
        sessions.insert_new(&id);
        sessions.forget(&id, &first);
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions.get(&id).and_then(|h| h.settled_len()), Some(0));
    }
}
