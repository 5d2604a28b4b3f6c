//! In-process caches for the manifest read path.
//!
//! Manifest GETs dominate registry traffic (every `docker pull`, every CI job resolving a tag),
//! and SQLite plus a file read per request cannot reach the target of ~20k requests/s on two
//! cores. Manifests are immutable by digest, so their bytes are cached freely; what a reference
//! resolves to is cached and invalidated on every write through a generation counter, so a
//! reader that raced a writer never re-inserts what the writer replaced.
//!
//! The cache is per process. Replicas sharing one PostgreSQL database tell each other about
//! every tag move through the database's change notices (`Registry::forget_reference`), and
//! each applies them with its `change-listener` worker; a listener that lost its connection
//! forgets every reference.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use lru::LruCache;
use parking_lot::Mutex;
use pinfold_meta::ManifestRecord;
use pinfold_oci::{Digest, RepoName};

/// How many resolved references are remembered.
const REFERENCE_ENTRIES: usize = 16 * 1024;

/// Caches resolved references and manifest bytes.
#[derive(Debug)]
pub struct ManifestCache {
    generation: AtomicU64,
    references: Mutex<LruCache<(RepoName, String), ManifestRecord>>,
    bytes: Mutex<ByteBoundedLru>,
}

#[derive(Debug)]
struct ByteBoundedLru {
    entries: LruCache<Digest, Bytes>,
    total: usize,
    limit: usize,
}

impl ManifestCache {
    /// A cache holding at most `byte_limit` bytes of manifests.
    pub fn new(byte_limit: usize) -> ManifestCache {
        ManifestCache {
            generation: AtomicU64::new(0),
            references: Mutex::new(LruCache::new(
                NonZeroUsize::new(REFERENCE_ENTRIES).unwrap_or(NonZeroUsize::MIN),
            )),
            bytes: Mutex::new(ByteBoundedLru {
                entries: LruCache::unbounded(),
                total: 0,
                limit: byte_limit,
            }),
        }
    }

    /// The current generation; read it before a database lookup and hand it to
    /// [`ManifestCache::insert_reference`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// What `reference` (tag or digest text) of `repo` resolves to, if cached.
    pub fn reference(&self, repo: &RepoName, reference: &str) -> Option<ManifestRecord> {
        self.references
            .lock()
            .get(&(repo.clone(), reference.to_owned()))
            .cloned()
    }

    /// Remembers a lookup made while the generation was `seen`, unless a write happened since.
    pub fn insert_reference(
        &self,
        seen: u64,
        repo: &RepoName,
        reference: &str,
        record: ManifestRecord,
    ) {
        let mut refs = self.references.lock();
        if self.generation.load(Ordering::Acquire) == seen {
            refs.put((repo.clone(), reference.to_owned()), record);
        }
    }

    /// Forgets one reference after a write to it (call after the write committed).
    pub fn invalidate_reference(&self, repo: &RepoName, reference: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.references
            .lock()
            .pop(&(repo.clone(), reference.to_owned()));
    }

    /// Forgets every reference (after deletes that may touch many tags).
    pub fn invalidate_all_references(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.references.lock().clear();
    }

    /// Cached manifest bytes.
    pub fn bytes(&self, digest: &Digest) -> Option<Bytes> {
        self.bytes.lock().entries.get(digest).cloned()
    }

    /// Caches manifest bytes, evicting the least recently used beyond the byte limit.
    pub fn insert_bytes(&self, digest: &Digest, bytes: Bytes) {
        let mut cache = self.bytes.lock();
        if bytes.len() > cache.limit / 4 || cache.entries.contains(digest) {
            return;
        }
        cache.total += bytes.len();
        cache.entries.put(digest.clone(), bytes);
        while cache.total > cache.limit {
            match cache.entries.pop_lru() {
                Some((_, evicted)) => cache.total -= evicted.len(),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(d: &Digest) -> ManifestRecord {
        ManifestRecord {
            digest: d.clone(),
            media_type: "m".into(),
            size: 1,
        }
    }

    #[test]
    fn a_lookup_that_raced_a_write_is_not_cached() {
        let cache = ManifestCache::new(1024);
        let repo: RepoName = "a".parse().unwrap();
        let d = Digest::sha256(b"x");
        let seen = cache.generation();
        cache.invalidate_reference(&repo, "latest");
        cache.insert_reference(seen, &repo, "latest", record(&d));
        assert!(cache.reference(&repo, "latest").is_none());
        let seen = cache.generation();
        cache.insert_reference(seen, &repo, "latest", record(&d));
        assert_eq!(cache.reference(&repo, "latest"), Some(record(&d)));
    }

    #[test]
    fn bytes_stay_under_the_limit() {
        let cache = ManifestCache::new(1000);
        for i in 0..100u32 {
            let b = Bytes::from(vec![0u8; 200]);
            cache.insert_bytes(&Digest::sha256(&i.to_be_bytes()), b);
        }
        let total = cache.bytes.lock().total;
        assert!(total <= 1000, "{total}");
        assert!(cache.bytes(&Digest::sha256(&99u32.to_be_bytes())).is_some());
    }
}
