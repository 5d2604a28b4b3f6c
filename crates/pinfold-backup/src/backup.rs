//! Taking a backup, and pruning old ones.
//!
//! Order, for consistency while the server serves and accepts pushes:
//!
//! 1. take the backup directory's lock (one backup or prune at a time) and the data directory's
//!    sweep lock shared (`BlobStore::lock_blob_set`: no garbage collection sweeps until the end,
//!    so every blob the snapshot names stays on disk);
//! 2. snapshot the metadata (`Meta::snapshot_to`, one read transaction);
//! 3. copy every blob that snapshot names and the shared tree lacks (a blob already there with
//!    the same size is skipped without reading: the tree is content-addressed and every file in
//!    it was verified when copied); blobs pushed after the snapshot are not needed by it;
//! 4. copy the other state files of the data directory (the APT signing key, ...);
//! 5. write `manifest.json` last, atomically. On any error the backup's directory is removed;
//!    blobs already copied stay (they are content-addressed and the next run reuses them).
//!
//! With object storage (`BlobStore::is_object_storage`) the blobs are read through the store,
//! 16 at a time: one `HEAD` per blob (its size, for the skip), and a streamed `GET` hashed while
//! it is written for a blob the tree lacks. The files replicas share ([`SHARED_STATE`]) are
//! taken from the bucket's `state/`, not from this machine's data directory. The backup format
//! is the same, so a backup restores onto either backend. The sweep lock is a file lock of this
//! machine's data directory: a replica elsewhere may collect garbage meanwhile, and a blob the
//! snapshot needs that is gone by the time it is read is recorded as missing (the run exits 1),
//! never skipped silently.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use pinfold_meta::{BlobReference, Meta};
use pinfold_oci::Digest;
use pinfold_store::BlobStore;
use serde::Serialize;
use time::OffsetDateTime;

use crate::files::{
    blob_rel_path, copy_verified, copy_verified_from, object_label, open_blob_blocking,
    parallel_map, sha256_file, stat, sync_dir, threads, write_atomic, OBJECT_THREADS,
};
use crate::manifest::{BackupManifest, BlobEntry, FileEntry, MissingBlob};
use crate::{BackupError, Progress, FORMAT_VERSION};

/// The metadata snapshot's file name inside a backup's directory (and in a data directory).
pub(crate) const SNAPSHOT_FILE: &str = "meta.db";
/// Where a backup keeps the data directory's other files.
pub(crate) const STATE_DIR: &str = "state";
// The files replicas over one bucket share through the store's `state/` (see `pinfold-server`
// `app.rs`, `share_key_file`), each also kept at the same path in every replica's data
// directory. With object storage a backup takes them from the bucket, and a restore into object
// storage puts them back there.
pub(crate) use pinfold_store::SHARED_STATE;
/// Their mode in a backup and a restored data directory (private keys).
const SHARED_STATE_MODE: u32 = 0o600;
/// The per-backup directories.
pub(crate) const BACKUPS_DIR: &str = "backups";
/// The lock file of a backup directory.
const LOCK_FILE: &str = "lock";

/// Top-level names of a data directory that are not copied as state: the blob tree and the
/// snapshot are backed up their own way; uploads are transient sessions; the rest is the live
/// database's side files and the sweep lock.
const NOT_STATE: [&str; 7] = [
    "blobs",
    "uploads",
    "meta.db",
    "meta.db-wal",
    "meta.db-shm",
    "meta.db-journal",
    "sweep.lock",
];

/// What a backup run did.
#[derive(Debug, Clone, Serialize)]
pub struct BackupSummary {
    /// The backup's name (its directory under `backups/`).
    pub name: String,
    /// Its directory.
    pub path: PathBuf,
    /// Blobs copied into the shared tree by this run.
    pub blobs_copied: u64,
    /// Blobs the tree already had (not read).
    pub blobs_skipped: u64,
    /// Bytes copied by this run (blobs and files).
    pub bytes_copied: u64,
    /// Bytes of every blob the backup holds.
    pub bytes_total: u64,
    /// Blobs the metadata requires that the data directory lacked or held corrupt.
    pub missing: Vec<MissingBlob>,
    /// Wall time of the run.
    pub seconds: f64,
}

/// What a prune removed.
#[derive(Debug, Clone, Serialize)]
pub struct PruneSummary {
    /// Backups removed (complete ones beyond `keep`, and interrupted ones).
    pub removed_backups: Vec<String>,
    /// Blobs no kept backup needs, removed.
    pub removed_blobs: u64,
    /// Their bytes.
    pub removed_bytes: u64,
}

/// Holds a backup directory's lock until dropped.
pub(crate) struct DirLock {
    _file: File,
}

/// Creates the backup directory's skeleton and takes its lock without waiting.
pub(crate) fn lock_backup_dir(to: &Path) -> Result<DirLock, BackupError> {
    for dir in [to.to_owned(), to.join(BACKUPS_DIR), to.join("blobs")] {
        fs::create_dir_all(&dir).map_err(|e| BackupError::io("create directory", &dir, e))?;
    }
    let path = to.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| BackupError::io("open", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(BackupError::BackupDirBusy(to.to_owned())),
        Err(TryLockError::Error(e)) => Err(BackupError::io("lock", &path, e)),
    }
}

/// Backs up the data directory of `store` and `meta` into `to` (created if missing) while the
/// server keeps running, and returns what it did.
///
/// # Errors
/// [`BackupError::BackupDirBusy`] when another backup or prune runs into `to`;
/// [`BackupError::Meta`] when the metadata cannot be snapshotted; [`BackupError::Io`] when copying fails (disk full, ...). On error
/// the new backup's directory is removed and the data directory is untouched.
#[tracing::instrument(skip_all, fields(to = %to.display()))]
pub async fn backup(
    meta: &Meta,
    store: &BlobStore,
    to: &Path,
    progress: Arc<dyn Progress>,
) -> Result<BackupSummary, BackupError> {
    let started = Instant::now();
    let to = to.to_owned();
    let lock_to = to.clone();
    let lock = tokio::task::spawn_blocking(move || lock_backup_dir(&lock_to)).await??;
    let sweep_store = store.clone();
    let sweep = tokio::task::spawn_blocking(move || sweep_store.lock_blob_set()).await??;

    let now = OffsetDateTime::now_utc();
    let (name, dir) = create_backup_dir(&to, now)?;
    let result = run(meta, store, &to, &name, &dir, now, progress).await;
    drop(sweep);
    drop(lock);
    match result {
        Ok(mut summary) => {
            summary.seconds = started.elapsed().as_secs_f64();
            tracing::info!(
                name = %summary.name,
                copied = summary.blobs_copied,
                skipped = summary.blobs_skipped,
                missing = summary.missing.len(),
                "backup complete"
            );
            Ok(summary)
        }
        Err(e) => {
            if let Err(rm) = fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %rm, "could not remove the failed backup's directory; it has no manifest, so restore ignores it");
            }
            Err(e)
        }
    }
}

/// `backups/<UTC time>` as a new directory, with a suffix in the rare case the name is taken.
fn create_backup_dir(to: &Path, now: OffsetDateTime) -> Result<(String, PathBuf), BackupError> {
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}-{:02}-{:02}.{:03}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    );
    for attempt in 0..100u32 {
        let name = if attempt == 0 {
            base.clone()
        } else {
            format!("{base}-{attempt}")
        };
        let dir = to.join(BACKUPS_DIR).join(&name);
        match fs::create_dir(&dir) {
            Ok(()) => return Ok((name, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(BackupError::io("create directory", &dir, e)),
        }
    }
    Err(BackupError::io(
        "create directory",
        &to.join(BACKUPS_DIR).join(base),
        std::io::Error::from(std::io::ErrorKind::AlreadyExists),
    ))
}

/// How one blob went.
enum BlobOutcome {
    Copied(u64),
    Skipped(u64),
    /// Not on disk; `true` when the metadata requires it.
    Absent(bool),
    /// On disk but hashing to something else.
    Corrupt(String),
}

async fn run(
    meta: &Meta,
    store: &BlobStore,
    to: &Path,
    name: &str,
    dir: &Path,
    now: OffsetDateTime,
    progress: Arc<dyn Progress>,
) -> Result<BackupSummary, BackupError> {
    let snapshot = dir.join(SNAPSHOT_FILE);
    meta.snapshot_to(&snapshot).await?;
    let snap = Meta::open_sqlite_read_only(&snapshot).await?;
    let references = snap.blob_references().await;
    snap.close().await;
    let references = references?;

    // With object storage, the files every replica shares live in the bucket: the backup
    // takes them from there (the local copies of this data directory may be missing or old).
    let mut shared = Vec::new();
    if store.is_object_storage() {
        for name in SHARED_STATE {
            if let Some(bytes) = store.read_state(name).await? {
                shared.push((name, bytes));
            }
        }
    }

    let store = store.clone();
    let to = to.to_owned();
    let dir = dir.to_owned();
    let name = name.to_owned();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        copy_everything(
            &Source {
                store: &store,
                runtime: &runtime,
            },
            &to,
            &dir,
            &name,
            now,
            &references,
            &shared,
            progress.as_ref(),
        )
    })
    .await?
}

/// The store blobs are copied from, and the runtime that reads it when it is object storage.
struct Source<'a> {
    store: &'a BlobStore,
    runtime: &'a tokio::runtime::Handle,
}

#[allow(clippy::too_many_arguments)]
fn copy_everything(
    source: &Source<'_>,
    to: &Path,
    dir: &Path,
    name: &str,
    now: OffsetDateTime,
    references: &[BlobReference],
    shared: &[(&str, bytes::Bytes)],
    progress: &dyn Progress,
) -> Result<BackupSummary, BackupError> {
    let store = source.store;
    progress.start("copying blobs", references.len() as u64, 0);
    let workers = if store.is_object_storage() {
        OBJECT_THREADS
    } else {
        threads()
    };
    let outcomes = parallel_map(references, workers, |r| {
        let outcome = if store.is_object_storage() {
            copy_object_blob(source, to, r)?
        } else {
            copy_blob(store, to, r)?
        };
        let bytes = match outcome {
            BlobOutcome::Copied(n) => n,
            _ => 0,
        };
        progress.advance(1, bytes);
        Ok(outcome)
    })?;
    progress.finish();

    let mut summary = BackupSummary {
        name: name.to_owned(),
        path: dir.to_owned(),
        blobs_copied: 0,
        blobs_skipped: 0,
        bytes_copied: 0,
        bytes_total: 0,
        missing: Vec::new(),
        seconds: 0.0,
    };
    let mut blobs = Vec::new();
    let mut touched_dirs = BTreeSet::new();
    for (r, outcome) in references.iter().zip(outcomes) {
        match outcome {
            BlobOutcome::Copied(size) | BlobOutcome::Skipped(size) => {
                if matches!(outcome, BlobOutcome::Copied(_)) {
                    summary.blobs_copied += 1;
                    summary.bytes_copied += size;
                    if let Some(parent) = to.join(blob_rel_path(&r.digest)).parent() {
                        touched_dirs.insert(parent.to_owned());
                    }
                } else {
                    summary.blobs_skipped += 1;
                }
                summary.bytes_total += size;
                blobs.push(BlobEntry {
                    digest: r.digest.clone(),
                    size,
                });
            }
            BlobOutcome::Absent(false) => {}
            BlobOutcome::Absent(true) => summary.missing.push(MissingBlob {
                digest: r.digest.clone(),
                referrer: r.referrer.clone(),
                reason: "missing".into(),
            }),
            BlobOutcome::Corrupt(actual) => summary.missing.push(MissingBlob {
                digest: r.digest.clone(),
                referrer: r.referrer.clone(),
                reason: format!("corrupt (its bytes hash to {actual})"),
            }),
        }
    }
    for missing in &summary.missing {
        tracing::warn!(digest = %missing.digest, referrer = %missing.referrer, reason = %missing.reason, "blob not backed up");
    }
    // New names are durable once their directories are: the fan-out directories that got
    // blobs, and the tree above them (create_dir_all may have made new ones).
    for d in &touched_dirs {
        sync_dir(d)?;
    }
    if !touched_dirs.is_empty() {
        for alg in ["sha256", "sha512"] {
            let alg_dir = to.join("blobs").join(alg);
            if alg_dir.exists() {
                sync_dir(&alg_dir)?;
            }
        }
        sync_dir(&to.join("blobs"))?;
    }

    let mut files = Vec::new();
    let snapshot = dir.join(SNAPSHOT_FILE);
    File::open(&snapshot)
        .and_then(|f| f.sync_all())
        .map_err(|e| BackupError::io("fsync", &snapshot, e))?;
    let (sha256, size) = sha256_file(&snapshot)?;
    summary.bytes_copied += size;
    files.push(FileEntry {
        path: SNAPSHOT_FILE.into(),
        sha256,
        size,
        mode: 0o600,
    });
    let mut state = copy_state(store.root(), dir)?;
    if !shared.is_empty() {
        let shared = write_shared_state(dir, shared)?;
        state.retain(|f| !shared.iter().any(|s| s.path == f.path));
        state.extend(shared);
    }
    for state in state {
        summary.bytes_copied += state.size;
        files.push(state);
    }

    let manifest = BackupManifest {
        format: FORMAT_VERSION,
        pinfold_version: env!("CARGO_PKG_VERSION").into(),
        name: name.to_owned(),
        created_at: now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        files,
        blobs,
        missing: summary.missing.clone(),
    };
    sync_dir(dir)?;
    manifest.write(dir)?;
    sync_dir(&to.join(BACKUPS_DIR))?;
    Ok(summary)
}

fn copy_blob(store: &BlobStore, to: &Path, r: &BlobReference) -> Result<BlobOutcome, BackupError> {
    let src = store.blob_path(&r.digest);
    let Some(src_meta) = stat(&src)? else {
        return Ok(BlobOutcome::Absent(r.required));
    };
    let dest = to.join(blob_rel_path(&r.digest));
    if stat(&dest)?.is_some_and(|m| m.len() == src_meta.len()) {
        return Ok(BlobOutcome::Skipped(src_meta.len()));
    }
    match copy_verified(
        &src,
        &dest,
        Some(r.digest.algorithm()),
        Some(r.digest.as_str()),
    )? {
        Ok(copied) => Ok(BlobOutcome::Copied(copied.size)),
        Err(actual) => Ok(BlobOutcome::Corrupt(actual)),
    }
}

/// [`copy_blob`] from object storage: the blob is read through the store (one `HEAD` when the
/// backup already has it with the same size; else a streamed `GET`, hashed as it is written).
fn copy_object_blob(
    source: &Source<'_>,
    to: &Path,
    r: &BlobReference,
) -> Result<BlobOutcome, BackupError> {
    let Some((size, reader)) = open_blob_blocking(source.runtime, source.store, &r.digest)? else {
        return Ok(BlobOutcome::Absent(r.required));
    };
    let dest = to.join(blob_rel_path(&r.digest));
    if stat(&dest)?.is_some_and(|m| m.len() == size) {
        return Ok(BlobOutcome::Skipped(size));
    }
    let copied = copy_verified_from(
        reader,
        &object_label(&r.digest),
        &dest,
        Some(r.digest.algorithm()),
        Some(r.digest.as_str()),
    );
    match copied {
        Ok(Ok(copied)) => Ok(BlobOutcome::Copied(copied.size)),
        Ok(Err(actual)) => Ok(BlobOutcome::Corrupt(actual)),
        // Deleted while it was read (garbage collection on another machine): as if absent.
        Err(e) => match source.runtime.block_on(source.store.blob_size(&r.digest)) {
            Ok(None) => Ok(BlobOutcome::Absent(r.required)),
            _ => Err(e),
        },
    }
}

/// Writes the shared files read from object storage into `<dir>/state/<name>` (owner-only:
/// they are signing keys) and returns their entries.
fn write_shared_state(
    dir: &Path,
    shared: &[(&str, bytes::Bytes)],
) -> Result<Vec<FileEntry>, BackupError> {
    use sha2::Digest as _;
    let mut entries = Vec::new();
    for (name, bytes) in shared {
        let rel = Path::new(STATE_DIR).join(name);
        let dest = dir.join(&rel);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| BackupError::io("create directory", parent, e))?;
        }
        write_atomic(&dest, bytes)?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(SHARED_STATE_MODE))
            .map_err(|e| BackupError::io("chmod", &dest, e))?;
        entries.push(FileEntry {
            path: path_string(&rel)?,
            sha256: crate::files::hex(&sha2::Sha256::digest(bytes)),
            size: bytes.len() as u64,
            mode: SHARED_STATE_MODE,
        });
    }
    let state_dir = dir.join(STATE_DIR);
    for parent in entries
        .iter()
        .filter_map(|e| dir.join(&e.path).parent().map(Path::to_owned))
        .chain([state_dir])
        .collect::<BTreeSet<_>>()
        .iter()
        .rev()
    {
        sync_dir(parent)?;
    }
    Ok(entries)
}

/// Copies the data directory's other files into `<dir>/state/`, keeping their modes.
fn copy_state(data_dir: &Path, dir: &Path) -> Result<Vec<FileEntry>, BackupError> {
    let mut entries = Vec::new();
    let mut pending = vec![PathBuf::new()];
    let mut made_dirs = Vec::new();
    while let Some(rel) = pending.pop() {
        let abs = data_dir.join(&rel);
        let listing = fs::read_dir(&abs).map_err(|e| BackupError::io("list", &abs, e))?;
        for entry in listing {
            let entry = entry.map_err(|e| BackupError::io("list", &abs, e))?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else {
                continue;
            };
            if (rel.as_os_str().is_empty() && NOT_STATE.contains(&name))
                || name.starts_with(".tmp-")
            {
                continue;
            }
            let child_rel = rel.join(name);
            let kind = entry
                .file_type()
                .map_err(|e| BackupError::io("stat", &entry.path(), e))?;
            if kind.is_dir() {
                pending.push(child_rel);
            } else if kind.is_file() {
                let src = entry.path();
                let mode = entry
                    .metadata()
                    .map_err(|e| BackupError::io("stat", &src, e))?
                    .permissions()
                    .mode()
                    & 0o7777;
                let backup_rel = Path::new(STATE_DIR).join(&child_rel);
                let dest = dir.join(&backup_rel);
                let copied = match copy_verified(&src, &dest, None, None)? {
                    Ok(c) => c,
                    Err(actual) => actual_unreachable(&src, actual)?,
                };
                fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
                    .map_err(|e| BackupError::io("chmod", &dest, e))?;
                if let Some(parent) = dest.parent() {
                    made_dirs.push(parent.to_owned());
                }
                entries.push(FileEntry {
                    path: path_string(&backup_rel)?,
                    sha256: copied.hash,
                    size: copied.size,
                    mode,
                });
            }
        }
    }
    made_dirs.sort();
    made_dirs.dedup();
    for d in made_dirs.iter().rev() {
        sync_dir(d)?;
    }
    if dir.join(STATE_DIR).exists() {
        sync_dir(&dir.join(STATE_DIR))?;
    }
    Ok(entries)
}

/// `copy_verified` without an expected hash never reports a mismatch.
fn actual_unreachable(src: &Path, actual: String) -> Result<crate::files::Copied, BackupError> {
    Err(BackupError::Task(format!(
        "unexpected hash mismatch copying {} ({actual})",
        src.display()
    )))
}

/// A relative path as the manifest's `/`-separated text.
fn path_string(path: &Path) -> Result<String, BackupError> {
    path.to_str().map(str::to_owned).ok_or_else(|| {
        BackupError::io(
            "name",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "file name is not UTF-8"),
        )
    })
}

/// Removes complete backups beyond the newest `keep` (at least one is always kept), backups
/// left without a manifest by an interrupted run, and then every blob of the shared tree that
/// no kept backup lists.
///
/// # Errors
/// [`BackupError::BackupDirBusy`] when a backup runs into `to`; [`BackupError::Io`] when
/// listing or removing fails.
pub async fn prune(to: &Path, keep: usize) -> Result<PruneSummary, BackupError> {
    let to = to.to_owned();
    tokio::task::spawn_blocking(move || prune_blocking(&to, keep.max(1))).await?
}

fn prune_blocking(to: &Path, keep: usize) -> Result<PruneSummary, BackupError> {
    let _lock = lock_backup_dir(to)?;
    let listing = crate::restore::list_backups(to)?;
    let mut summary = PruneSummary {
        removed_backups: Vec::new(),
        removed_blobs: 0,
        removed_bytes: 0,
    };
    let complete: Vec<_> = listing.iter().filter(|b| b.complete).collect();
    let cut = complete.len().saturating_sub(keep);
    let mut kept_blobs: HashSet<Digest> = HashSet::new();
    for (i, b) in complete.iter().enumerate() {
        if i < cut {
            continue;
        }
        let manifest = BackupManifest::read(&b.path)?;
        kept_blobs.extend(manifest.blobs.into_iter().map(|e| e.digest));
    }
    // We hold the lock, so no backup is being written: a directory without a manifest is an
    // interrupted run.
    let doomed = complete
        .iter()
        .take(cut)
        .copied()
        .chain(listing.iter().filter(|b| !b.complete));
    for b in doomed {
        fs::remove_dir_all(&b.path).map_err(|e| BackupError::io("remove", &b.path, e))?;
        summary.removed_backups.push(b.name.clone());
    }
    sync_dir(&to.join(BACKUPS_DIR))?;
    let blobs_dir = to.join("blobs");
    for alg in ["sha256", "sha512"] {
        let alg_dir = blobs_dir.join(alg);
        let Ok(fan_outs) = fs::read_dir(&alg_dir) else {
            continue;
        };
        for fan_out in fan_outs {
            let fan_out = fan_out.map_err(|e| BackupError::io("list", &alg_dir, e))?;
            let fan_dir = fan_out.path();
            if !fan_dir.is_dir() {
                continue;
            }
            for blob in fs::read_dir(&fan_dir).map_err(|e| BackupError::io("list", &fan_dir, e))? {
                let blob = blob.map_err(|e| BackupError::io("list", &fan_dir, e))?;
                let keep_it = blob
                    .file_name()
                    .to_str()
                    .and_then(|hex| format!("{alg}:{hex}").parse::<Digest>().ok())
                    .is_some_and(|d| kept_blobs.contains(&d));
                if keep_it {
                    continue;
                }
                let path = blob.path();
                let size = blob.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&path).map_err(|e| BackupError::io("remove", &path, e))?;
                summary.removed_blobs += 1;
                summary.removed_bytes += size;
            }
        }
    }
    Ok(summary)
}
