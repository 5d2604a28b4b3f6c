//! `pinfold verify`: recompute every blob's digest and check every reference the metadata makes.
//!
//! Hashing runs on [`threads`](crate::files) threads with 4 MiB reads (each thread one file at a
//! time), optionally throttled to a byte rate shared by all threads so that a scrub of a live
//! registry leaves it disk bandwidth. The metadata is read through a read-only handle, so verify
//! runs beside a serving `pinfold serve` (SQLite in WAL mode admits the extra reader).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pinfold_meta::Meta;
use pinfold_oci::Digest;
use pinfold_store::BlobStore;
use serde::Serialize;

use crate::files::{hash_file, parallel_map, stat, threads};
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
    let (mut findings, blobs_checked, bytes_checked) = tokio::task::spawn_blocking(move || {
        hash_all(&hash_store, digests, options, hash_progress.as_ref())
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
    let seconds = started.elapsed().as_secs_f64();
    Ok(VerifyReport {
        blobs_checked,
        bytes_checked,
        references_checked,
        findings,
        seconds,
        bytes_per_second: if hashing_seconds > 0.0 {
            bytes_checked as f64 / hashing_seconds
        } else {
            0.0
        },
    })
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
    let mut findings = Vec::new();
    let (mut blobs, mut bytes) = (0, 0);
    for (finding, count, size) in results {
        findings.extend(finding);
        blobs += count;
        bytes += size;
    }
    Ok((findings, blobs, bytes))
}
