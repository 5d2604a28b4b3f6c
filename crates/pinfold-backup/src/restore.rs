//! Restoring a data directory from a backup, and repairing one blob by blob.
//!
//! A restore builds the new data directory beside the target (`.<name>.restoring-<id>`), checks
//! every file against the manifest while copying it (blobs through `BlobStore::copy_in`, which
//! hashes on the way in; other files by SHA-256), and only when everything matched renames it
//! onto the target. A damaged backup is refused with the list of damaged files and leaves the
//! target as it was.
//!
//! [`restore_to`] with object storage writes the blobs into the bucket instead (each verified on
//! its way in: a blob is visible only once its digest matched). A damaged backup then leaves
//! the verified blobs it wrote in the bucket, unreferenced (garbage collection's orphan pass
//! removes them), and nothing else: the data directory, the metadata and the shared keys in
//! the bucket's `state/` are written only after every file matched. [`repair`] reads a store's
//! blobs through the store, so it mends either backend.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures_util::{stream, StreamExt};
use pinfold_meta::{Meta, MetaError};
use pinfold_store::{BlobStore, StorageBackend, StorageConfig, StoreError};
use serde::Serialize;

use crate::backup::{BACKUPS_DIR, SHARED_STATE, SNAPSHOT_FILE, STATE_DIR};
use crate::files::{
    blob_rel_path, copy_verified, hash_file, hash_reader, object_label, stat, sync_dir, threads,
};
use crate::manifest::{BackupManifest, BlobEntry, MANIFEST_FILE};
use crate::{BackupError, Progress};

/// One backup found in a backup directory.
#[derive(Debug, Clone, Serialize)]
pub struct BackupListing {
    /// Its name.
    pub name: String,
    /// Its directory.
    pub path: PathBuf,
    /// Whether it has a manifest (an interrupted backup has none).
    pub complete: bool,
}

/// The backups under `<to>/backups/`, oldest first (names are UTC times).
///
/// # Errors
/// [`BackupError::Io`] when the directory cannot be listed.
pub fn list_backups(to: &Path) -> Result<Vec<BackupListing>, BackupError> {
    let dir = to.join(BACKUPS_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BackupError::io("list", &dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| BackupError::io("list", &dir, e))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.starts_with('.') || !path.is_dir() {
            continue;
        }
        let complete = path.join(MANIFEST_FILE).is_file();
        found.push(BackupListing {
            name,
            path,
            complete,
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// The backup `name` of `from`, or its newest complete one, with its checked manifest.
fn choose(from: &Path, name: Option<&str>) -> Result<(PathBuf, BackupManifest), BackupError> {
    let listing = list_backups(from)?;
    let chosen = match name {
        Some(name) => {
            listing
                .iter()
                .find(|b| b.name == name)
                .ok_or_else(|| BackupError::BackupUnknown {
                    dir: from.to_owned(),
                    name: name.to_owned(),
                })?
        }
        None => listing
            .iter()
            .rev()
            .find(|b| b.complete)
            .ok_or_else(|| BackupError::NoBackup {
                dir: from.to_owned(),
                incomplete: listing
                    .iter()
                    .filter(|b| !b.complete)
                    .map(|b| b.name.clone())
                    .collect(),
            })?,
    };
    let manifest = BackupManifest::read(&chosen.path)?;
    Ok((chosen.path.clone(), manifest))
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreSummary {
    /// The backup restored.
    pub backup: String,
    /// The data directory written.
    pub data_dir: PathBuf,
    /// Blobs restored (each verified against its digest).
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Other files restored (meta.db, state).
    pub files: u64,
    /// Whether the metadata went into PostgreSQL (else it is the data directory's meta.db).
    pub metadata_in_postgres: bool,
    /// Blobs the backup itself lacked (missing or corrupt in the data directory it was taken
    /// from), as recorded in its manifest.
    pub missing_in_backup: u64,
    /// Wall time.
    pub seconds: f64,
}

/// Restores the backup `name` (default: the newest complete one) of `from` into `data_dir`,
/// which must not exist or be an empty directory.
///
/// `metadata`: where the metadata goes when it is not the data directory's SQLite file — an
/// empty PostgreSQL database, which the backup's `meta.db` is loaded into
/// ([`Meta::load_snapshot`], one transaction) once every file has been verified and before the
/// data directory is renamed into place; the data directory then holds no `meta.db`.
///
/// # Errors
/// [`BackupError::Meta`] (`MetaError::NotEmpty`) when `metadata` already holds metadata,
/// checked before anything is written;
/// [`BackupError::TargetNotEmpty`], [`BackupError::NoBackup`], [`BackupError::BackupUnknown`],
/// [`BackupError::Incomplete`], [`BackupError::FormatVersion`],
/// [`BackupError::ManifestInvalid`] before anything is written; [`BackupError::Damaged`] naming
/// every missing, truncated or changed file after checking them all (nothing is left behind);
/// [`BackupError::Io`] when writing fails.
pub async fn restore(
    from: &Path,
    name: Option<&str>,
    data_dir: &Path,
    metadata: Option<&Meta>,
    progress: Arc<dyn Progress>,
) -> Result<RestoreSummary, BackupError> {
    restore_to(
        from,
        name,
        data_dir,
        metadata,
        &StorageConfig::default(),
        progress,
    )
    .await
}

/// [`restore`] with the blobs going where `storage` says: the new data directory's `blobs/`,
/// or object storage (`[storage] backend = "s3"`, each blob verified on its way into the
/// bucket; blobs the bucket already holds are kept). With object storage the files replicas
/// share (the APT and token signing keys) are also written to the bucket's `state/`, after
/// every file has been verified, so every replica started on it signs as before.
///
/// # Errors
/// Those of [`restore`], and [`BackupError::Store`] when the object store cannot be used.
#[tracing::instrument(skip_all, fields(from = %from.display(), data_dir = %data_dir.display()))]
pub async fn restore_to(
    from: &Path,
    name: Option<&str>,
    data_dir: &Path,
    metadata: Option<&Meta>,
    storage: &StorageConfig,
    progress: Arc<dyn Progress>,
) -> Result<RestoreSummary, BackupError> {
    let started = Instant::now();
    check_target(data_dir)?;
    let (backup_dir, manifest) = choose(from, name)?;
    if let Some(meta) = metadata {
        if let Some(table) = meta.first_nonempty_table().await? {
            return Err(MetaError::NotEmpty { table }.into());
        }
    }
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| BackupError::io("create directory", &parent, e))?;
    let target_name = data_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("data");
    let staging = parent.join(format!(
        ".{target_name}.restoring-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let opened = if storage.backend == StorageBackend::Filesystem {
        // Creating the blob tree's directories blocks: off the runtime's workers.
        let root = staging.clone();
        tokio::task::spawn_blocking(move || BlobStore::open(root))
            .await
            .map_err(BackupError::from)
            .and_then(|r| r.map_err(BackupError::from))
    } else {
        BlobStore::open_configured(&staging, storage)
            .await
            .map_err(BackupError::from)
    };
    let store = match opened {
        Ok(store) => store,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let result = restore_into(&store, from, &backup_dir, &manifest, &staging, progress).await;
    let mut outcome = result.and_then(|problems| {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(BackupError::Damaged {
                backup: backup_dir.clone(),
                problems,
            })
        }
    });
    if let (Ok(()), Some(meta)) = (&outcome, metadata) {
        outcome = load_metadata(meta, &staging).await;
    }
    if outcome.is_ok() && store.is_object_storage() {
        outcome = share_state(&store, &manifest, &staging).await;
    }
    drop(store);
    if let Err(e) = outcome {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    // Checked again: something may have appeared in the target meanwhile. rename(2) replaces
    // an empty directory and refuses a non-empty one.
    if let Err(e) = check_target(data_dir) {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    if let Err(e) = fs::rename(&staging, data_dir) {
        let _ = fs::remove_dir_all(&staging);
        return Err(BackupError::io("rename into place", data_dir, e));
    }
    sync_dir(&parent)?;
    Ok(RestoreSummary {
        backup: manifest.name.clone(),
        data_dir: data_dir.to_owned(),
        blobs: manifest.blobs.len() as u64,
        bytes: manifest.blobs.iter().map(|b| b.size).sum(),
        files: manifest.files.len() as u64,
        metadata_in_postgres: metadata.is_some(),
        missing_in_backup: manifest.missing.len() as u64,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Writes the restored shared files (verified, in `staging`) to the object store's `state/`.
async fn share_state(
    store: &BlobStore,
    manifest: &BackupManifest,
    staging: &Path,
) -> Result<(), BackupError> {
    for name in SHARED_STATE {
        let in_backup = Path::new(STATE_DIR).join(name);
        if !manifest
            .files
            .iter()
            .any(|f| Path::new(&f.path) == in_backup)
        {
            continue;
        }
        let path = staging.join(name);
        let bytes = fs::read(&path).map_err(|e| BackupError::io("read", &path, e))?;
        store.write_state(name, bytes.into()).await?;
    }
    Ok(())
}

/// Loads the staged `meta.db` into `meta` and removes it (and what opening it left beside it)
/// from the staged data directory.
async fn load_metadata(meta: &Meta, staging: &Path) -> Result<(), BackupError> {
    let snapshot = staging.join(SNAPSHOT_FILE);
    meta.load_snapshot(&snapshot).await?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let path = staging.join(format!("{SNAPSHOT_FILE}{suffix}"));
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BackupError::io("remove", &path, e)),
        }
    }
    Ok(())
}

/// The target must not exist or be an empty directory.
fn check_target(data_dir: &Path) -> Result<(), BackupError> {
    let Some(meta) = stat(data_dir)? else {
        return Ok(());
    };
    if !meta.is_dir() {
        return Err(BackupError::TargetNotEmpty(data_dir.to_owned()));
    }
    let mut entries = fs::read_dir(data_dir).map_err(|e| BackupError::io("list", data_dir, e))?;
    if entries.next().is_some() {
        return Err(BackupError::TargetNotEmpty(data_dir.to_owned()));
    }
    Ok(())
}

/// Copies everything into `staging`, returning one line per damaged file of the backup.
async fn restore_into(
    store: &BlobStore,
    from: &Path,
    backup_dir: &Path,
    manifest: &BackupManifest,
    staging: &Path,
    progress: Arc<dyn Progress>,
) -> Result<Vec<String>, BackupError> {
    let mut problems = Vec::new();

    let total: u64 = manifest.blobs.iter().map(|b| b.size).sum();
    progress.start("restoring blobs", manifest.blobs.len() as u64, total);
    let results: Vec<Result<Option<String>, BackupError>> =
        stream::iter(manifest.blobs.iter().map(|entry| {
            let store = store.clone();
            let progress = Arc::clone(&progress);
            async move {
                let r = restore_blob(&store, from, entry).await;
                progress.advance(1, entry.size);
                r
            }
        }))
        .buffer_unordered(threads())
        .collect()
        .await;
    progress.finish();
    for r in results {
        if let Some(problem) = r? {
            problems.push(problem);
        }
    }

    let backup_dir = backup_dir.to_owned();
    let staging = staging.to_owned();
    let files = manifest.files.clone();
    let file_problems = tokio::task::spawn_blocking(move || -> Result<Vec<String>, BackupError> {
        let mut problems = Vec::new();
        let mut dirs = Vec::new();
        for file in &files {
            let src = backup_dir.join(&file.path);
            // meta.db goes to the top; state/<path> back to <path>.
            let rel = Path::new(&file.path);
            let rel = rel.strip_prefix(STATE_DIR).unwrap_or(rel);
            let dest = staging.join(rel);
            let Some(src_meta) = stat(&src)? else {
                problems.push(format!("{}: missing", src.display()));
                continue;
            };
            if src_meta.len() != file.size {
                problems.push(format!(
                    "{}: {} bytes, the manifest says {} (truncated or changed)",
                    src.display(),
                    src_meta.len(),
                    file.size
                ));
                continue;
            }
            match copy_verified(&src, &dest, None, Some(&file.sha256))? {
                Ok(_) => {
                    fs::set_permissions(&dest, fs::Permissions::from_mode(file.mode & 0o7777))
                        .map_err(|e| BackupError::io("chmod", &dest, e))?;
                    if let Some(parent) = dest.parent() {
                        dirs.push(parent.to_owned());
                    }
                }
                Err(actual) => problems.push(format!(
                    "{}: sha256 {actual}, the manifest says {} (changed)",
                    src.display(),
                    file.sha256
                )),
            }
        }
        dirs.sort();
        dirs.dedup();
        for d in dirs.iter().rev() {
            sync_dir(d)?;
        }
        Ok(problems)
    })
    .await??;
    problems.extend(file_problems);
    Ok(problems)
}

/// Copies one blob of the backup into `store`, verified; `Some(problem)` when the backup's
/// copy is missing, truncated or changed.
async fn restore_blob(
    store: &BlobStore,
    from: &Path,
    entry: &BlobEntry,
) -> Result<Option<String>, BackupError> {
    let src = from.join(blob_rel_path(&entry.digest));
    let size = match stat(&src)? {
        None => return Ok(Some(format!("{}: missing", src.display()))),
        Some(m) => m.len(),
    };
    if size != entry.size {
        return Ok(Some(format!(
            "{}: {size} bytes, the manifest says {} (truncated or changed)",
            src.display(),
            entry.size
        )));
    }
    match store.copy_in(&entry.digest, &src).await {
        Ok(_) => Ok(None),
        Err(StoreError::DigestMismatch { actual, .. }) => Ok(Some(format!(
            "{}: its bytes hash to {actual} (changed)",
            src.display()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// What a repair did.
#[derive(Debug, Clone, Serialize)]
pub struct RepairSummary {
    /// The backup used.
    pub backup: String,
    /// Blobs of the backup checked in the data directory.
    pub checked: u64,
    /// Blobs that were missing and were copied back.
    pub restored_missing: Vec<String>,
    /// Blobs that were corrupt and were replaced.
    pub replaced_corrupt: Vec<String>,
    /// Blobs that needed repair but whose backup copy is damaged too (left as they were).
    pub unrepairable: Vec<String>,
    /// Wall time.
    pub seconds: f64,
}

/// Repairs the blobs of the data directory `store` from backup `name` (default: the newest
/// complete one) of `from`: every blob the backup holds is hashed in the data directory, and
/// one that is missing or corrupt is replaced by the backup's copy (verified on the way in).
/// The metadata and the other blobs are not touched; the server may keep running.
///
/// # Errors
/// The backup-choosing errors of [`restore`]; [`BackupError::Io`] / [`BackupError::Store`] when
/// reading or writing fails.
pub async fn repair(
    from: &Path,
    name: Option<&str>,
    store: &BlobStore,
    progress: Arc<dyn Progress>,
) -> Result<RepairSummary, BackupError> {
    let started = Instant::now();
    let (_, manifest) = choose(from, name)?;
    let total: u64 = manifest.blobs.iter().map(|b| b.size).sum();
    progress.start("checking blobs", manifest.blobs.len() as u64, total);
    let results: Vec<Result<(String, RepairOutcome), BackupError>> =
        stream::iter(manifest.blobs.iter().map(|entry| {
            let store = store.clone();
            let progress = Arc::clone(&progress);
            async move {
                let outcome = repair_blob(&store, from, entry).await;
                progress.advance(1, entry.size);
                outcome.map(|o| (entry.digest.to_string(), o))
            }
        }))
        .buffer_unordered(threads())
        .collect()
        .await;
    progress.finish();
    let mut summary = RepairSummary {
        backup: manifest.name.clone(),
        checked: manifest.blobs.len() as u64,
        restored_missing: Vec::new(),
        replaced_corrupt: Vec::new(),
        unrepairable: Vec::new(),
        seconds: 0.0,
    };
    for r in results {
        let (digest, outcome) = r?;
        match outcome {
            RepairOutcome::Intact => {}
            RepairOutcome::RestoredMissing => summary.restored_missing.push(digest),
            RepairOutcome::ReplacedCorrupt => summary.replaced_corrupt.push(digest),
            RepairOutcome::BackupDamaged(why) => {
                summary.unrepairable.push(format!("{digest}: {why}"))
            }
        }
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

enum RepairOutcome {
    Intact,
    RestoredMissing,
    ReplacedCorrupt,
    BackupDamaged(String),
}

async fn repair_blob(
    store: &BlobStore,
    from: &Path,
    entry: &BlobEntry,
) -> Result<RepairOutcome, BackupError> {
    let algorithm = entry.digest.algorithm();
    let digest = entry.digest.clone();
    let state = if store.is_object_storage() {
        // The reader is made here, on the runtime, and read on a blocking thread.
        match store.open_blob(&entry.digest).await? {
            None => None,
            Some(blob) => {
                let reader = blob.into_reader();
                let label = object_label(&digest);
                tokio::task::spawn_blocking(move || -> Result<Option<bool>, BackupError> {
                    let (actual, _) = hash_reader(reader, &label, algorithm, |_| {})?;
                    Ok(Some(actual == digest))
                })
                .await??
            }
        }
    } else {
        let check = store.blob_path(&entry.digest);
        tokio::task::spawn_blocking(move || -> Result<Option<bool>, BackupError> {
            if stat(&check)?.is_none() {
                return Ok(None);
            }
            let (actual, _) = hash_file(&check, algorithm, |_| {})?;
            Ok(Some(actual == digest))
        })
        .await??
    };
    let outcome = match state {
        Some(true) => return Ok(RepairOutcome::Intact),
        None => RepairOutcome::RestoredMissing,
        Some(false) => {
            store.delete_blob(&entry.digest).await?;
            RepairOutcome::ReplacedCorrupt
        }
    };
    let src = from.join(blob_rel_path(&entry.digest));
    match store.copy_in(&entry.digest, &src).await {
        Ok(_) => Ok(outcome),
        Err(StoreError::DigestMismatch { actual, .. }) => Ok(RepairOutcome::BackupDamaged(
            format!("the backup's copy {} hashes to {actual}", src.display()),
        )),
        Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(
            RepairOutcome::BackupDamaged(format!("the backup's copy {} is missing", src.display())),
        ),
        Err(e) => Err(e.into()),
    }
}
