//! pinfold-backup against real data directories: a store and a SQLite metadata database made
//! through their crates, backed up, damaged, restored, verified and repaired.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use pinfold_backup::{
    backup, list_backups, prune, repair, restore, verify, BackupError, Finding, NoProgress,
    VerifyOptions,
};
use pinfold_meta::Meta;
use pinfold_oci::{Digest, RepoName};
use pinfold_store::BlobStore;
use tempfile::TempDir;

/// A data directory with `blobs` blobs linked to one repository and an APT signing key.
struct DataDir {
    _tmp: TempDir,
    root: PathBuf,
    store: BlobStore,
    meta: Meta,
    digests: Vec<Digest>,
}

impl DataDir {
    async fn new(blobs: usize) -> DataDir {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        let store = BlobStore::open(&root).unwrap();
        let meta = Meta::open_sqlite(&root.join("meta.db")).await.unwrap();
        let mut data = DataDir {
            _tmp: tmp,
            root,
            store,
            meta,
            digests: Vec::new(),
        };
        for i in 0..blobs {
            data.add_blob(&format!("blob number {i} ").repeat(i + 1))
                .await;
        }
        fs::create_dir_all(data.root.join("apt")).unwrap();
        let key = data.root.join("apt/signing-key.asc");
        fs::write(&key, b"-----BEGIN PGP PRIVATE KEY BLOCK-----\nsecret\n").unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        data
    }

    async fn add_blob(&mut self, content: &str) -> Digest {
        let bytes = Bytes::from(content.to_owned());
        let digest = Digest::sha256(&bytes);
        self.store.put_blob(&digest, bytes.clone()).await.unwrap();
        let repo: RepoName = "team/app".parse().unwrap();
        self.meta
            .link_blob(&repo, &digest, bytes.len() as u64)
            .await
            .unwrap();
        self.digests.push(digest.clone());
        digest
    }
}

fn progress() -> Arc<NoProgress> {
    Arc::new(NoProgress)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                pending.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn backup_restore_round_trip_is_byte_identical_and_incremental() {
    let mut data = DataDir::new(20).await;
    let to = tempfile::tempdir().unwrap();
    let first = backup(&data.meta, &data.store, to.path(), progress())
        .await
        .unwrap();
    assert_eq!(first.blobs_copied, 20);
    assert_eq!(first.blobs_skipped, 0);
    assert!(first.missing.is_empty());

    // A blob in the store that the metadata does not name is not needed.
    let stray = Bytes::from_static(b"not referenced");
    data.store
        .put_blob(&Digest::sha256(&stray), stray)
        .await
        .unwrap();
    let added = data.add_blob("pushed between backups").await;
    let second = backup(&data.meta, &data.store, to.path(), progress())
        .await
        .unwrap();
    assert_eq!(second.blobs_copied, 1, "only the new blob is copied");
    assert_eq!(second.blobs_skipped, 20);
    assert_ne!(first.name, second.name);

    let target = to.path().join("restored");
    let restored = restore(to.path(), None, &target, None, progress())
        .await
        .unwrap();
    assert_eq!(restored.backup, second.name);
    assert_eq!(restored.blobs, 21);
    for digest in &data.digests {
        let hex = digest.encoded();
        let rel = format!("blobs/sha256/{}/{hex}", &hex[..2]);
        assert_eq!(
            fs::read(target.join(&rel)).unwrap(),
            fs::read(data.root.join(&rel)).unwrap()
        );
    }
    assert!(target
        .join(format!(
            "blobs/sha256/{}/{}",
            &added.encoded()[..2],
            added.encoded()
        ))
        .is_file());
    let key = target.join("apt/signing-key.asc");
    assert_eq!(
        fs::read(&key).unwrap(),
        fs::read(data.root.join("apt/signing-key.asc")).unwrap()
    );
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let meta = Meta::open_sqlite(&target.join("meta.db")).await.unwrap();
    assert_eq!(
        meta.blob_references().await.unwrap(),
        data.meta.blob_references().await.unwrap()
    );
    meta.close().await;

    // An older backup by name.
    let older = to.path().join("older");
    let r = restore(to.path(), Some(&first.name), &older, None, progress())
        .await
        .unwrap();
    assert_eq!(r.blobs, 20);
}

/// Restore of a damaged backup: refused, every damaged file named, nothing written.
async fn assert_refused(to: &Path, target: &Path, expect: &str) {
    let err = restore(to, None, target, None, progress())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains(expect), "{expect:?} not in {text:?}");
    assert!(!target.exists(), "nothing written for {expect:?}");
    let parent = target.parent().unwrap();
    let leftovers: Vec<_> = fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("restoring"))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
}

#[tokio::test]
async fn restore_refuses_truncated_tampered_incomplete_and_foreign_backups() {
    let data = DataDir::new(5).await;
    let to = tempfile::tempdir().unwrap();
    let summary = backup(&data.meta, &data.store, to.path(), progress())
        .await
        .unwrap();
    let target_parent = tempfile::tempdir().unwrap();
    let target = target_parent.path().join("data");
    let blob_rel = |d: &Digest| format!("blobs/sha256/{}/{}", &d.encoded()[..2], d.encoded());

    // Truncated blob.
    let truncated = to.path().join(blob_rel(&data.digests[1]));
    let original = fs::read(&truncated).unwrap();
    fs::write(&truncated, &original[..original.len() / 2]).unwrap();
    // Tampered blob, same size.
    let tampered = to.path().join(blob_rel(&data.digests[2]));
    let mut bytes = fs::read(&tampered).unwrap();
    bytes[0] ^= 0xff;
    fs::write(&tampered, &bytes).unwrap();
    // Tampered snapshot, same size.
    let snapshot = summary.path.join("meta.db");
    let mut db = fs::read(&snapshot).unwrap();
    let last = db.len() - 1;
    db[last] ^= 0x01;
    fs::write(&snapshot, &db).unwrap();
    let err = restore(to.path(), None, &target, None, progress())
        .await
        .unwrap_err();
    let BackupError::Damaged { problems, .. } = &err else {
        panic!("expected Damaged, got {err}");
    };
    assert_eq!(problems.len(), 3, "{problems:#?}");
    let all = problems.join("\n");
    for needle in [
        truncated.display().to_string(),
        tampered.display().to_string(),
        snapshot.display().to_string(),
    ] {
        assert!(all.contains(&needle), "{needle} not named in {all}");
    }
    assert_refused(to.path(), &target, "truncated").await;

    // Repaired backup files: the restore goes through.
    fs::write(&truncated, &original).unwrap();
    bytes[0] ^= 0xff;
    fs::write(&tampered, &bytes).unwrap();
    db[last] ^= 0x01;
    fs::write(&snapshot, &db).unwrap();

    // Another format version.
    let manifest_path = summary.path.join("manifest.json");
    let manifest = fs::read_to_string(&manifest_path).unwrap();
    fs::write(
        &manifest_path,
        manifest.replacen("\"format\": 1", "\"format\": 2", 1),
    )
    .unwrap();
    assert_refused(to.path(), &target, "format version 2").await;

    // A manifest naming a file outside the backup.
    fs::write(
        &manifest_path,
        manifest.replacen("\"path\": \"meta.db\"", "\"path\": \"../../meta.db\"", 1),
    )
    .unwrap();
    assert_refused(to.path(), &target, "leaves the backup directory").await;

    // No manifest at all: incomplete.
    fs::remove_file(&manifest_path).unwrap();
    assert_refused(to.path(), &target, "no complete backup").await;
    let err = restore(to.path(), Some(&summary.name), &target, None, progress())
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::Incomplete(_)), "{err}");
    fs::write(&manifest_path, &manifest).unwrap();

    // A non-empty target is refused and left alone.
    fs::create_dir_all(&target).unwrap();
    fs::write(target.join("keep-me"), b"x").unwrap();
    let err = restore(to.path(), None, &target, None, progress())
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::TargetNotEmpty(_)), "{err}");
    assert_eq!(files_under(&target), vec![target.join("keep-me")]);

    // An empty existing directory is fine.
    fs::remove_file(target.join("keep-me")).unwrap();
    restore(to.path(), None, &target, None, progress())
        .await
        .unwrap();
    assert!(target.join("meta.db").is_file());
}

#[tokio::test]
async fn verify_finds_corrupt_and_missing_blobs_and_repair_fixes_them() {
    let data = DataDir::new(6).await;
    let to = tempfile::tempdir().unwrap();
    backup(&data.meta, &data.store, to.path(), progress())
        .await
        .unwrap();
    let clean = verify(
        &data.store,
        Some(&data.meta),
        VerifyOptions::default(),
        progress(),
    )
    .await
    .unwrap();
    assert!(clean.findings.is_empty(), "{:?}", clean.findings);
    assert_eq!(clean.blobs_checked, 6);
    assert_eq!(clean.references_checked, 6);

    let corrupt = data.store.blob_path(&data.digests[0]);
    let mut bytes = fs::read(&corrupt).unwrap();
    bytes[3] ^= 0x20;
    fs::write(&corrupt, &bytes).unwrap();
    let gone = data.store.blob_path(&data.digests[4]);
    fs::remove_file(&gone).unwrap();

    let report = verify(
        &data.store,
        Some(&data.meta),
        VerifyOptions::default(),
        progress(),
    )
    .await
    .unwrap();
    assert_eq!(report.findings.len(), 2, "{:?}", report.findings);
    assert!(report.findings.iter().any(|f| matches!(f,
        Finding::Corrupt { digest, referrer: Some(r), .. } if digest == &data.digests[0] && r.contains("team/app"))));
    assert!(report
        .findings
        .iter()
        .any(|f| matches!(f, Finding::Missing { digest, .. } if digest == &data.digests[4])));

    let fixed = repair(to.path(), None, &data.store, progress())
        .await
        .unwrap();
    assert_eq!(fixed.replaced_corrupt, vec![data.digests[0].to_string()]);
    assert_eq!(fixed.restored_missing, vec![data.digests[4].to_string()]);
    assert!(fixed.unrepairable.is_empty());
    let after = verify(
        &data.store,
        Some(&data.meta),
        VerifyOptions::default(),
        progress(),
    )
    .await
    .unwrap();
    assert!(after.findings.is_empty(), "{:?}", after.findings);
}

#[tokio::test]
async fn verify_throttle_limits_the_rate() {
    let mut data = DataDir::new(0).await;
    let big = "x".repeat(3 * 1024 * 1024);
    data.add_blob(&big).await;
    let options = VerifyOptions {
        rate_bytes_per_second: Some(2 * 1024 * 1024),
        threads: 2,
    };
    let report = verify(&data.store, None, options, progress())
        .await
        .unwrap();
    assert!(
        report.seconds >= 1.0,
        "3 MiB at 2 MiB/s took {}s",
        report.seconds
    );
}

#[tokio::test]
async fn prune_keeps_the_newest_backups_and_only_their_blobs() {
    let mut data = DataDir::new(2).await;
    let to = tempfile::tempdir().unwrap();
    let first = backup(&data.meta, &data.store, to.path(), progress())
        .await
        .unwrap();
    // The first backup's blobs go away from the registry's metadata.
    let repo: RepoName = "team/app".parse().unwrap();
    for d in data.digests.clone() {
        data.meta.unlink_blob(&repo, &d).await.unwrap();
    }
    let kept_blob = data.add_blob("second").await;
    let second = backup(&data.meta, &data.store, to.path(), progress())
        .await
        .unwrap();
    // An interrupted backup (no manifest).
    fs::create_dir_all(to.path().join("backups/2000-01-01T00-00-00.000Z")).unwrap();

    let pruned = prune(to.path(), 1).await.unwrap();
    assert_eq!(pruned.removed_blobs, 2);
    assert_eq!(pruned.removed_backups.len(), 2);
    assert!(pruned.removed_backups.contains(&first.name));
    let left: Vec<_> = list_backups(to.path())
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(left, vec![second.name]);
    let blobs: Vec<_> = files_under(&to.path().join("blobs"));
    assert_eq!(blobs.len(), 1);
    assert!(blobs[0].ends_with(kept_blob.encoded()));
    restore(to.path(), None, &to.path().join("r"), None, progress())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_missing_blob_is_recorded_and_the_backup_still_completes() {
    let data = DataDir::new(3).await;
    fs::remove_file(data.store.blob_path(&data.digests[1])).unwrap();
    let to = tempfile::tempdir().unwrap();
    let summary = backup(&data.meta, &data.store, to.path(), progress())
        .await
        .unwrap();
    assert_eq!(summary.missing.len(), 1);
    assert_eq!(summary.missing[0].digest, data.digests[1]);
    assert_eq!(summary.missing[0].reason, "missing");
    let r = restore(to.path(), None, &to.path().join("r"), None, progress())
        .await
        .unwrap();
    assert_eq!(r.missing_in_backup, 1);
}

/// A tmpfs of `bytes` mounted at a fresh directory, unmounted on drop. `None` (with the reason
/// printed) where mounting is not permitted (not root, no CAP_SYS_ADMIN).
struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> Result<SmallDisk, String> {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(SmallDisk { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_disk_that_fills_during_backup_is_a_clear_error_and_leaves_no_backup() {
    let mut data = DataDir::new(0).await;
    for i in 0..6 {
        data.add_blob(&format!("{i}").repeat(512 * 1024)).await;
    }
    let disk = match SmallDisk::mount(1024 * 1024) {
        Ok(d) => d,
        Err(why) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "cannot mount a small tmpfs in CI: {why}"
            );
            eprintln!("skipped: cannot mount a small tmpfs here ({why})");
            return;
        }
    };
    let to = disk.dir.path().join("b");
    let err = backup(&data.meta, &data.store, &to, progress())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("No space left on device"),
        "unclear error: {text}"
    );
    assert!(
        list_backups(&to).unwrap().is_empty(),
        "the failed backup's directory is removed"
    );
    let err = restore(&to, None, &to.join("r"), None, progress())
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::NoBackup { .. }), "{err}");
    // The registry is untouched.
    let report = verify(
        &data.store,
        Some(&data.meta),
        VerifyOptions::default(),
        progress(),
    )
    .await
    .unwrap();
    assert!(report.findings.is_empty());
    assert_eq!(report.blobs_checked, 6);
    drop(disk);
}

/// The store's configuration for Garage from `TEST_PINFOLD_S3_*` (`scripts/garage env`) under
/// a prefix of this test's own, or `None` (after saying so; under `CI` the variables must be
/// set).
fn s3_config(test: &str) -> Option<pinfold_store::StorageConfig> {
    let var = |name: &str| std::env::var(format!("TEST_PINFOLD_S3_{name}")).ok();
    let Some(endpoint) = var("ENDPOINT").filter(|e| !e.is_empty()) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide TEST_PINFOLD_S3_ENDPOINT (scripts/garage)"
        );
        eprintln!("{test}: skipped: TEST_PINFOLD_S3_ENDPOINT not set");
        return None;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    Some(pinfold_store::StorageConfig {
        backend: pinfold_store::StorageBackend::S3,
        endpoint: Some(endpoint),
        bucket: var("BUCKET").expect("TEST_PINFOLD_S3_BUCKET"),
        region: var("REGION").unwrap_or_else(|| "garage".to_owned()),
        prefix: format!("backup/{test}-{}-{nanos}", std::process::id()),
        access_key_id: var("ACCESS_KEY_ID").expect("TEST_PINFOLD_S3_ACCESS_KEY_ID"),
        secret_access_key: var("SECRET_ACCESS_KEY").expect("TEST_PINFOLD_S3_SECRET_ACCESS_KEY"),
        ..pinfold_store::StorageConfig::default()
    })
}

/// Blobs in object storage: a backup reads them from the bucket (incrementally) and the shared
/// signing key from its `state/`; verify hashes every object and finds a corrupt and a
/// missing one, which repair replaces from the backup; the backup restores onto the
/// filesystem and into another prefix, each complete by verify, the key back in the bucket.
#[tokio::test(flavor = "multi_thread")]
async fn object_storage_backs_up_verifies_repairs_and_restores_both_ways() {
    let Some(base) = s3_config("round-trip") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // `raw` writes any bytes under a blob key of `store` (its `state/` is `store`'s prefix),
    // which the store itself never would: the corruption below.
    let raw = BlobStore::open_configured(tmp.path().join("raw"), &base)
        .await
        .unwrap();
    let mut config = base.clone();
    config.prefix = format!("{}/state", base.prefix);
    let root = tmp.path().join("data");
    let store = BlobStore::open_configured(&root, &config).await.unwrap();
    let meta = Meta::open_sqlite(&root.join("meta.db")).await.unwrap();
    let repo: RepoName = "team/app".parse().unwrap();
    let mut digests = Vec::new();
    for i in 0..5usize {
        // The last one is a multipart object.
        let len = if i == 4 { 9 << 20 } else { 1000 * (i + 1) };
        let bytes = Bytes::from((0..len).map(|n| (n * 31 + i) as u8).collect::<Vec<u8>>());
        let digest = Digest::sha256(&bytes);
        store.put_blob(&digest, bytes.clone()).await.unwrap();
        meta.link_blob(&repo, &digest, bytes.len() as u64)
            .await
            .unwrap();
        digests.push(digest);
    }
    let key = Bytes::from_static(b"-----BEGIN PGP PRIVATE KEY BLOCK-----\nshared\n");
    store
        .write_state("apt/signing-key.asc", key.clone())
        .await
        .unwrap();

    let to = tempfile::tempdir().unwrap();
    let first = backup(&meta, &store, to.path(), progress()).await.unwrap();
    assert!(first.missing.is_empty(), "{:?}", first.missing);
    assert_eq!(first.blobs_copied, 5);
    let saved = first.path.join("state/apt/signing-key.asc");
    assert_eq!(fs::read(&saved).unwrap(), key);
    assert_eq!(
        fs::metadata(&saved).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = backup(&meta, &store, to.path(), progress()).await.unwrap();
    assert_eq!((again.blobs_copied, again.blobs_skipped), (0, 5));

    let check = |store: BlobStore, meta: Meta| async move {
        verify(&store, Some(&meta), VerifyOptions::default(), progress())
            .await
            .unwrap()
    };
    let clean = check(store.clone(), meta.clone()).await;
    assert!(clean.findings.is_empty(), "{:?}", clean.findings);
    assert_eq!((clean.blobs_checked, clean.references_checked), (5, 5));

    let hex = digests[0].encoded().to_owned();
    raw.write_state(
        &format!("blobs/sha256/{}/{hex}", &hex[..2]),
        Bytes::from_static(b"not the blob"),
    )
    .await
    .unwrap();
    assert!(store.delete_blob(&digests[4]).await.unwrap());
    let report = check(store.clone(), meta.clone()).await;
    assert_eq!(report.findings.len(), 2, "{:?}", report.findings);
    assert!(report.findings.iter().any(|f| matches!(f,
        Finding::Corrupt { digest, referrer: Some(r), .. } if digest == &digests[0] && r.contains("team/app"))));
    assert!(report
        .findings
        .iter()
        .any(|f| matches!(f, Finding::Missing { digest, .. } if digest == &digests[4])));
    let fixed = repair(to.path(), None, &store, progress()).await.unwrap();
    assert_eq!(fixed.replaced_corrupt, vec![digests[0].to_string()]);
    assert_eq!(fixed.restored_missing, vec![digests[4].to_string()]);
    assert!(fixed.unrepairable.is_empty());
    let after = check(store.clone(), meta.clone()).await;
    assert!(after.findings.is_empty(), "{:?}", after.findings);

    // Onto the filesystem: blob files, the key in the data directory.
    let plain = tmp.path().join("plain");
    restore(to.path(), None, &plain, None, progress())
        .await
        .unwrap();
    assert_eq!(fs::read(plain.join("apt/signing-key.asc")).unwrap(), key);
    let plain_store = BlobStore::open(&plain).unwrap();
    let plain_meta = Meta::open_sqlite(&plain.join("meta.db")).await.unwrap();
    let report = check(plain_store.clone(), plain_meta).await;
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.blobs_checked, 5);
    assert!(fs::metadata(plain_store.blob_path(&digests[4])).is_ok());

    // Into another prefix: the blobs and the key in the bucket, none on the local disk.
    let mut other = base.clone();
    other.prefix = format!("{}/other", base.prefix);
    let back = tmp.path().join("back");
    pinfold_backup::restore_to(to.path(), None, &back, None, &other, progress())
        .await
        .unwrap();
    assert!(
        files_under(&back.join("blobs")).is_empty(),
        "{:?}",
        files_under(&back.join("blobs"))
    );
    let back_store = BlobStore::open_configured(&back, &other).await.unwrap();
    assert_eq!(
        back_store.read_state("apt/signing-key.asc").await.unwrap(),
        Some(key)
    );
    let back_meta = Meta::open_sqlite(&back.join("meta.db")).await.unwrap();
    let report = check(back_store, back_meta).await;
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.blobs_checked, 5);
}
