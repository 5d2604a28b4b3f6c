//! `pinfold verify`: recompute every blob's digest and check every reference the metadata makes.
//!
//! Hashing runs on [`threads`](crate::files) threads with 4 MiB reads (each thread one file at a
//! time), optionally throttled to a byte rate shared by all threads so that a scrub of a live
//! registry leaves it disk bandwidth. The metadata is read through a read-only handle, so verify
//! runs beside a serving `pinfold serve` (SQLite in WAL mode admits the extra reader).
//!
//! With object storage every listed blob is read through the store (16 at a time, each streamed
//! and hashed as it arrives) and a required blob is looked up with a `HEAD`; findings name the
//! blob by its key under the store's prefix, `s3:blobs/<alg>/<xx>/<hex>`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pinfold_meta::Meta;
use pinfold_oci::Digest;
use pinfold_store::BlobStore;
use serde::Serialize;

use futures_util::{stream, StreamExt};

use crate::files::{
    hash_file, hash_reader, object_label, open_blob_blocking, parallel_map, stat, threads,
    OBJECT_THREADS,
};
use crate::{BackupError, Progress};

/// How a verification runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions {
    /// At most this many bytes per second hashed, all threads together (`None`: full speed).
    pub rate_bytes_per_second: Option<u64>,
    /// Threads hashing at once (0: one per core, at most 8).
    pub threads: usize,
}

/// Something wrong found by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// A blob file whose bytes hash to something other than its name.
    Corrupt {
        /// The blob (its file name).
        digest: Digest,
        /// What its bytes hash to.
        actual: Digest,
        /// Its file.
        path: PathBuf,
        /// Who needs it, when the metadata names it.
        referrer: Option<String>,
    },
    /// A blob the metadata requires that is not stored.
    Missing {
        /// The blob.
        digest: Digest,
        /// Who needs it (`manifest repo@sha256:..`, `APT package ...`).
        referrer: String,
    },
    /// A blob file that could not be read.
    Unreadable {
        /// The blob.
        digest: Digest,
        /// Its file.
        path: PathBuf,
        /// The error.
        error: String,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Corrupt {
                digest,
                actual,
                path,
                referrer,
            } => {
                write!(
                    f,
                    "corrupt: {digest} ({}) hashes to {actual}",
                    path.display()
                )?;
                if let Some(r) = referrer {
                    write!(f, "; needed by {r}")?;
                }
                Ok(())
            }
            Finding::Missing { digest, referrer } => {
                write!(f, "missing: {digest}, needed by {referrer}")
            }
            Finding::Unreadable {
                digest,
                path,
                error,
            } => write!(f, "unreadable: {digest} ({}): {error}", path.display()),
        }
    }
}

/// What [`verify`] checked and found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Blob files hashed.
    pub blobs_checked: u64,
    /// Their bytes.
    pub bytes_checked: u64,
    /// Distinct blobs the metadata names (checked to exist).
    pub references_checked: u64,
    /// Everything wrong, corrupt blobs first.
    pub findings: Vec<Finding>,
    /// Wall time.
    pub seconds: f64,
    /// Hashing throughput, bytes per second of wall time.
    pub bytes_per_second: f64,
}

/// Hashes every blob of `store` and, with `meta`, checks that every blob the metadata requires
/// exists (manifests, their layers and configs, index children, blobs linked to repositories,
/// APT packages and index files).
///
/// A blob deleted while verify runs (by garbage collection) is skipped, and a required blob not
/// seen in the listing is looked up again before it is reported, so a verify beside a busy
/// server reports no false findings.
///
/// # Errors
/// [`BackupError::Store`] when the blob tree cannot be listed; [`BackupError::Meta`] when the
/// metadata cannot be read. Unreadable blob files are findings, not errors.
pub async fn verify(
    store: &BlobStore,
    meta: Option<&Meta>,
    options: VerifyOptions,
    progress: Arc<dyn Progress>,
) -> Result<VerifyReport, BackupError> {
    let started = Instant::now();
    let digests = store.list_blobs().await?;
    let hash_store = store.clone();
    let hash_progress = Arc::clone(&progress);
    let runtime = tokio::runtime::Handle::current();
    let (mut findings, blobs_checked, bytes_checked) = tokio::task::spawn_blocking(move || {
        if hash_store.is_object_storage() {
            hash_all_objects(
                &hash_store,
                &runtime,
                digests,
                options,
                hash_progress.as_ref(),
            )
        } else {
            hash_all(&hash_store, digests, options, hash_progress.as_ref())
        }
    })
    .await??;
    let hashing_seconds = started.elapsed().as_secs_f64();

    let mut references_checked = 0;
    if let Some(meta) = meta {
        let references = meta.blob_references().await?;
        references_checked = references.len() as u64;
        let referrers: HashMap<&Digest, &str> = references
            .iter()
            .map(|r| (&r.digest, r.referrer.as_str()))
            .collect();
        for finding in &mut findings {
            if let Finding::Corrupt {
                digest, referrer, ..
            } = finding
            {
                *referrer = referrers.get(&*digest).map(|r| (*r).to_owned());
            }
        }
        let required: Vec<_> = references.iter().filter(|r| r.required).cloned().collect();
        if store.is_object_storage() {
            findings.extend(missing_objects(store, required).await?);
            return Ok(report(
                started,
                hashing_seconds,
                blobs_checked,
                bytes_checked,
                references_checked,
                findings,
            ));
        }
        let check_store = store.clone();
        let missing = tokio::task::spawn_blocking(move || -> Result<Vec<Finding>, BackupError> {
            let mut missing = Vec::new();
            let mut seen = HashSet::new();
            for r in required {
                if !seen.insert(r.digest.clone()) {
                    continue;
                }
                if stat(&check_store.blob_path(&r.digest))?.is_none() {
                    missing.push(Finding::Missing {
                        digest: r.digest,
                        referrer: r.referrer,
                    });
                }
            }
            Ok(missing)
        })
        .await??;
        findings.extend(missing);
    }
    Ok(report(
        started,
        hashing_seconds,
        blobs_checked,
        bytes_checked,
        references_checked,
        findings,
    ))
}

fn report(
    started: Instant,
    hashing_seconds: f64,
    blobs_checked: u64,
    bytes_checked: u64,
    references_checked: u64,
    findings: Vec<Finding>,
) -> VerifyReport {
    VerifyReport {
        blobs_checked,
        bytes_checked,
        references_checked,
        findings,
        seconds: started.elapsed().as_secs_f64(),
        bytes_per_second: if hashing_seconds > 0.0 {
            bytes_checked as f64 / hashing_seconds
        } else {
            0.0
        },
    }
}

/// The required blobs absent from object storage, looked up (`HEAD`) a few at a time.
async fn missing_objects(
    store: &BlobStore,
    required: Vec<pinfold_meta::BlobReference>,
) -> Result<Vec<Finding>, BackupError> {
    let mut seen = HashSet::new();
    let unique: Vec<_> = required
        .into_iter()
        .filter(|r| seen.insert(r.digest.clone()))
        .collect();
    let sizes: Vec<Result<Option<u64>, pinfold_store::StoreError>> =
        stream::iter(unique.iter().map(|r| store.blob_size(&r.digest)))
            .buffered(OBJECT_THREADS)
            .collect()
            .await;
    let mut missing = Vec::new();
    for (r, size) in unique.into_iter().zip(sizes) {
        if size?.is_none() {
            missing.push(Finding::Missing {
                digest: r.digest,
                referrer: r.referrer,
            });
        }
    }
    Ok(missing)
}

/// Shares a byte budget between threads: each sleeps while the bytes hashed so far are ahead of
/// `rate × elapsed`.
struct Throttle {
    rate: Option<u64>,
    started: Instant,
    done: AtomicU64,
}

impl Throttle {
    fn consume(&self, bytes: u64) {
        let Some(rate) = self.rate.filter(|r| *r > 0) else {
            return;
        };
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let due = Duration::from_secs_f64(done as f64 / rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            // Bounded: one 4 MiB chunk at the slowest sensible rate is a few seconds.
            std::thread::sleep((due - elapsed).min(Duration::from_secs(10)));
        }
    }
}

/// Findings, blobs checked and bytes hashed, summed over the per-blob results.
fn tally(results: Vec<(Option<Finding>, u64, u64)>) -> (Vec<Finding>, u64, u64) {
    let mut findings = Vec::new();
    let (mut blobs, mut bytes) = (0, 0);
    for (finding, count, size) in results {
        findings.extend(finding);
        blobs += count;
        bytes += size;
    }
    (findings, blobs, bytes)
}

/// [`hash_all`] for object storage: each worker opens a blob (`HEAD`; one deleted since the
/// listing is skipped) and hashes it as it streams in. Sizes are not known up front, so the
/// progress counts blobs.
fn hash_all_objects(
    store: &BlobStore,
    runtime: &tokio::runtime::Handle,
    digests: Vec<Digest>,
    options: VerifyOptions,
    progress: &dyn Progress,
) -> Result<(Vec<Finding>, u64, u64), BackupError> {
    progress.start("verifying blobs", digests.len() as u64, 0);
    let throttle = Throttle {
        rate: options.rate_bytes_per_second,
        started: Instant::now(),
        done: AtomicU64::new(0),
    };
    let n = if options.threads == 0 {
        OBJECT_THREADS
    } else {
        options.threads
    };
    let results = parallel_map(&digests, n, |digest| {
        let path = object_label(digest);
        let hashed = open_blob_blocking(runtime, store, digest).and_then(|opened| {
            opened
                .map(|(_, reader)| {
                    hash_reader(reader, &path, digest.algorithm(), |bytes| {
                        throttle.consume(bytes);
                    })
                })
                .transpose()
        });
        progress.advance(1, 0);
        Ok(match hashed {
            // Deleted since the listing: nothing to check.
            Ok(None) => (None, 0, 0),
            Ok(Some((actual, size))) if &actual == digest => (None, 1, size),
            Ok(Some((actual, size))) => (
                Some(Finding::Corrupt {
                    digest: digest.clone(),
                    actual,
                    path,
                    referrer: None,
                }),
                1,
                size,
            ),
            // Deleted while it was read: nothing to check either.
            Err(_) if matches!(runtime.block_on(store.blob_size(digest)), Ok(None)) => (None, 0, 0),
            Err(e) => (
                Some(Finding::Unreadable {
                    digest: digest.clone(),
                    path,
                    error: e.to_string(),
                }),
                1,
                0,
            ),
        })
    })?;
    progress.finish();
    Ok(tally(results))
}

fn hash_all(
    store: &BlobStore,
    digests: Vec<Digest>,
    options: VerifyOptions,
    progress: &dyn Progress,
) -> Result<(Vec<Finding>, u64, u64), BackupError> {
    let mut sized = Vec::with_capacity(digests.len());
    for digest in digests {
        let path = store.blob_path(&digest);
        // Deleted since the listing: nothing to check.
        if let Some(meta) = stat(&path)? {
            sized.push((digest, path, meta.len()));
        }
    }
    let total: u64 = sized.iter().map(|(_, _, size)| size).sum();
    progress.start("verifying blobs", sized.len() as u64, total);
    let throttle = Throttle {
        rate: options.rate_bytes_per_second,
        started: Instant::now(),
        done: AtomicU64::new(0),
    };
    let n = if options.threads == 0 {
        threads()
    } else {
        options.threads
    };
    let results = parallel_map(&sized, n, |(digest, path, _)| {
        let hashed = hash_file(path, digest.algorithm(), |bytes| {
            progress.advance(0, bytes);
            throttle.consume(bytes);
        });
        progress.advance(1, 0);
        Ok(match hashed {
            Ok((actual, size)) if &actual == digest => (None, 1, size),
            Ok((actual, size)) => (
                Some(Finding::Corrupt {
                    digest: digest.clone(),
                    actual,
                    path: path.clone(),
                    referrer: None,
                }),
                1,
                size,
            ),
            Err(BackupError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                (None, 0, 0)
            }
            Err(e) => (
                Some(Finding::Unreadable {
                    digest: digest.clone(),
                    path: path.clone(),
                    error: e.to_string(),
                }),
                1,
                0,
            ),
        })
    })?;
    progress.finish();
    Ok(tally(results))
}
