//! `pinfold serve` with its metadata in PostgreSQL (`PINFOLD_META_POSTGRES_URL`): pushes,
//! tag moves and the journal survive a restart, exactly as on SQLite.
//!
//! Needs `TEST_PINFOLD_POSTGRES_URL` (scripts/test starts a local cluster and sets it). Without
//! it the test says it is skipped, except under CI, where it fails.

use std::path::Path;
use std::time::Duration;

use crate::harness::{Image, ImageFormat, RegistryClient, Rng, TestServer, Tool};

const POSTGRES_URL: &str = "PINFOLD_META_POSTGRES_URL";

/// The tag journal of `team/pg:1`.
const HISTORY: &str = "/api/v1/repositories/team/pg/tags/1/history";

/// A fresh database on the cluster behind `base_url`, dropped on drop.
pub(crate) struct ScratchDatabase {
    admin_url: String,
    name: String,
    /// The scratch database's URL.
    pub(crate) url: String,
}

impl ScratchDatabase {
    async fn create(base_url: &str) -> ScratchDatabase {
        let name = format!(
            "pinfold_it_{}_{}",
            std::process::id(),
            Rng::new().next_u64() % 1_000_000
        );
        let (prefix, _) = base_url
            .rsplit_once('/')
            .expect("database URL has a /database part");
        psql(base_url, &format!("CREATE DATABASE {name}")).await;
        ScratchDatabase {
            admin_url: base_url.to_owned(),
            url: format!("{prefix}/{name}"),
            name,
        }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        // Best effort, synchronous (drop cannot await); the connect timeout bounds it.
        let _ = std::process::Command::new("psql")
            .env("PGCONNECT_TIMEOUT", "10")
            .args([self.admin_url.as_str(), "-q", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

async fn psql(url: &str, sql: &str) {
    Tool::new("psql")
        .args([url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .timeout(Duration::from_secs(30))
        .run_ok()
        .await;
}

/// A scratch database on the PostgreSQL server of `TEST_PINFOLD_POSTGRES_URL`; `None` (the
/// test skips) when that is not set, which CI does not allow.
pub(crate) async fn scratch_database() -> Option<ScratchDatabase> {
    let Ok(base_url) = std::env::var("TEST_PINFOLD_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide TEST_PINFOLD_POSTGRES_URL"
        );
        eprintln!("e2e::postgres: skipped: TEST_PINFOLD_POSTGRES_URL not set");
        return None;
    };
    Some(ScratchDatabase::create(&base_url).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_in_postgresql_survives_a_restart() {
    let Some(database) = scratch_database().await else {
        return;
    };
    let mut server =
        TestServer::start_with_env(&[("PINFOLD_META_POSTGRES_URL", &database.url)]).await;
    assert!(
        !server.data_dir().join("meta.db").exists(),
        "with a PostgreSQL URL no SQLite database may be created"
    );
    let mut rng = Rng::new();
    let first = Image::random(&mut rng, ImageFormat::Oci, "amd64", 2, 8 * 1024);
    let second = Image::random(&mut rng, ImageFormat::Oci, "amd64", 2, 8 * 1024);
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    registry.push_image("team/pg", "1", &first).await;
    registry.push_image("team/pg", "1", &second).await;

    server.restart().await;
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    let fetched = registry
        .get_manifest("team/pg", "1")
        .await
        .expect("tag resolves after restart");
    assert_eq!(
        fetched.body, second.manifest.bytes,
        "the tag points at the second push"
    );
    let by_digest = registry
        .get_manifest("team/pg", &first.manifest.digest)
        .await
        .expect("first by digest");
    assert_eq!(by_digest.body, first.manifest.bytes);
    let history = registry
        .get("/api/v1/repositories/team/pg/tags/1/history", None)
        .await
        .expect("history");
    let entries: serde_json::Value =
        serde_json::from_slice(&history.body).expect("history is JSON");
    let moves: Vec<(serde_json::Value, serde_json::Value)> = entries
        .as_array()
        .expect("history is an array")
        .iter()
        .map(|e| (e["previous_digest"].clone(), e["new_digest"].clone()))
        .collect();
    assert_eq!(
        moves,
        vec![
            (
                serde_json::Value::Null,
                first.manifest.digest.clone().into()
            ),
            (
                first.manifest.digest.clone().into(),
                second.manifest.digest.clone().into()
            ),
        ]
    );
}

/// Garbage collection on PostgreSQL while pushes go on: the triggers, the reference locks (GC
/// only tries them) and the sweep work there as on SQLite. Pushers move one tag per round and
/// leave an untagged image; GC runs in a bounded loop beside them (grace period 1 s). Every tag pulls complete at
/// the end and the garbage is gone.
#[tokio::test(flavor = "multi_thread")]
async fn gc_in_postgresql_beside_pushes_keeps_every_tag() {
    let Some(database) = scratch_database().await else {
        return;
    };
    let server = TestServer::start_with_env(&[
        ("PINFOLD_META_POSTGRES_URL", &database.url),
        // One second: pushes in flight are protected, earlier rounds' garbage is not.
        ("PINFOLD_GC_GRACE_SECONDS", "1"),
    ])
    .await;
    let url = server.url();
    let client = server.client().clone();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));

    let collector = {
        let (client, url, done) = (client.clone(), url.clone(), done.clone());
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut runs = 0;
            while runs < 30
                && started.elapsed() < Duration::from_secs(60)
                && !done.load(std::sync::atomic::Ordering::SeqCst)
            {
                let resp = client
                    .post(format!("{url}/api/v1/gc"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
                runs += 1;
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            runs
        })
    };
    let mut pushers = Vec::new();
    for p in 0..2 {
        let registry = RegistryClient::new(client.clone(), &url);
        pushers.push(tokio::spawn(async move {
            let mut rng = Rng::new();
            let repo = format!("pg/gc{p}");
            let mut garbage = Vec::new();
            let mut last = None;
            for _ in 0..5 {
                // Should GC collect a blob between its upload and the manifest anyway, the
                // registry refuses the manifest (nothing recorded) and the client pushes again.
                let image = Image::random(&mut rng, ImageFormat::Oci, "amd64", 1, 512);
                let mut pushed = false;
                for _ in 0..5 {
                    for blob in image.blobs() {
                        registry.push_blob(&repo, blob).await.unwrap();
                    }
                    match registry.put_manifest(&repo, "v", &image.manifest).await {
                        Ok(_) => {
                            pushed = true;
                            break;
                        }
                        Err(e) if e.contains("MANIFEST_BLOB_UNKNOWN") => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
                assert!(pushed, "push to {repo} raced GC five times");
                let untagged = Image::random(&mut rng, ImageFormat::Oci, "amd64", 1, 512);
                for blob in untagged.blobs() {
                    registry.push_blob(&repo, blob).await.unwrap();
                }
                match registry
                    .put_manifest(&repo, &untagged.manifest.digest, &untagged.manifest)
                    .await
                {
                    Ok(_) => garbage.push(untagged.manifest.digest.clone()),
                    Err(e) if e.contains("MANIFEST_BLOB_UNKNOWN") => {}
                    Err(e) => panic!("{e}"),
                }
                last = Some(image);
            }
            (repo, last.unwrap(), garbage)
        }));
    }
    let mut outcomes = Vec::new();
    for pusher in pushers {
        outcomes.push(pusher.await.unwrap());
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(collector.await.unwrap() >= 1);
    // Past the grace period, a last run collects what is left.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let resp = client
        .post(format!("{url}/api/v1/gc"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let registry = RegistryClient::new(client.clone(), &url);
    for (repo, image, garbage) in outcomes {
        let manifest = registry.get_manifest(&repo, "v").await.unwrap();
        assert_eq!(manifest.status, 200, "{repo}:v");
        assert_eq!(manifest.body, image.manifest.bytes);
        for blob in image.blobs() {
            let fetched = registry.get_blob(&repo, &blob.digest).await.unwrap();
            assert_eq!(fetched.status, 200, "{repo}@{}", blob.digest);
            assert_eq!(fetched.body, blob.bytes);
        }
        for digest in garbage {
            let fetched = registry.get_manifest(&repo, &digest).await.unwrap();
            assert_eq!(fetched.status, 404, "garbage {repo}@{digest}");
        }
    }
}

/// `pinfold restore --from <backups> --data-dir <data_dir>`, to add options and environment to.
fn restore(backups: &Path, data_dir: &Path) -> Tool {
    Tool::pinfold()
        .args(["restore", "--from"])
        .arg(backups)
        .arg("--data-dir")
        .arg(data_dir)
}

/// Every image of `images` pulls from `server` by digest, byte for byte, and `repo:tag` is
/// the last one.
async fn serves_exactly(server: &TestServer, repo: &str, tag: &str, images: &[&Image]) {
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    for image in images {
        let manifest = registry
            .get_manifest(repo, &image.manifest.digest)
            .await
            .unwrap();
        assert_eq!(manifest.status, 200, "{repo}@{}", image.manifest.digest);
        assert_eq!(manifest.body, image.manifest.bytes);
        for blob in image.blobs() {
            let fetched = registry.get_blob(repo, &blob.digest).await.unwrap();
            assert_eq!(fetched.status, 200, "{repo}@{}", blob.digest);
            assert_eq!(fetched.body, blob.bytes);
        }
    }
    let tagged = registry.get_manifest(repo, tag).await.unwrap();
    let last = images.last().expect("at least one image");
    assert_eq!(tagged.body, last.manifest.bytes, "{repo}:{tag}");
}

/// Issue 5's backups on a PostgreSQL instance: `pinfold backup` snapshots the metadata from
/// PostgreSQL while the server runs, `pinfold restore` loads it into an empty PostgreSQL
/// database (the data directory then has no meta.db) and the restored server serves the same
/// tags, digests, bytes and journal; a corrupt blob there is found by `verify` and mended by
/// `restore --repair`. A database that already holds metadata is refused with exit 2 and
/// nothing written; without PostgreSQL configured the same backup restores onto
/// SQLite, which `pinfold verify` finds complete.
#[tokio::test(flavor = "multi_thread")]
async fn a_postgresql_backup_restores_into_postgresql_and_into_sqlite() {
    let (Some(source), Some(target)) = (scratch_database().await, scratch_database().await) else {
        return;
    };
    let mut server = TestServer::start_with_env(&[(POSTGRES_URL, &source.url)]).await;
    let mut rng = Rng::new();
    let first = Image::random(&mut rng, ImageFormat::Oci, "amd64", 2, 16 * 1024);
    let second = Image::random(&mut rng, ImageFormat::DockerSchema2, "amd64", 3, 16 * 1024);
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    registry.push_image("team/pg", "1", &first).await;
    registry.push_image("team/pg", "1", &second).await;
    let history = server.get_json(HISTORY).await;
    assert_eq!(history.as_array().map(Vec::len), Some(2), "{history}");

    let tmp = tempfile::tempdir().unwrap();
    let backups = tmp.path().join("backups");
    let out = Tool::pinfold()
        .env(POSTGRES_URL, &source.url)
        .args(["backup", "--json", "--to"])
        .arg(&backups)
        .arg("--data-dir")
        .arg(server.data_dir())
        .output()
        .await;
    assert_eq!(out.code(), Some(0), "backup: {}", out.stderr());
    let summary: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(summary["backup"]["missing"], serde_json::json!([]));
    // Each image: its manifest, its config and its layers.
    assert_eq!(summary["backup"]["blobs_copied"], (1 + 1 + 2) + (1 + 1 + 3));

    // The disaster: the data directory is gone; the metadata goes into a new database.
    assert!(server.terminate(), "server stops cleanly");
    let data_dir = server.data_dir().to_owned();
    std::fs::remove_dir_all(&data_dir).unwrap();
    let out = restore(&backups, &data_dir)
        .env(POSTGRES_URL, &target.url)
        .arg("--json")
        .output()
        .await;
    assert_eq!(out.code(), Some(0), "restore: {}", out.stderr());
    let restored: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(restored["metadata_in_postgres"], true);
    assert!(
        !data_dir.join("meta.db").exists(),
        "the metadata went into PostgreSQL, not beside the blobs"
    );
    server.set_env(POSTGRES_URL, &target.url);
    server.restart().await;
    serves_exactly(&server, "team/pg", "1", &[&first, &second]).await;
    assert_eq!(
        server.get_json(HISTORY).await,
        history,
        "the tag journal, ids and times included"
    );
    // New moves continue the journal.
    let third = Image::random(&mut rng, ImageFormat::Oci, "amd64", 1, 1024);
    RegistryClient::new(server.client().clone(), &server.url())
        .push_image("team/pg", "1", &third)
        .await;
    let after = server.get_json(HISTORY).await;
    assert_eq!(after.as_array().map(Vec::len), Some(3), "{after}");

    // A corrupt blob in the PostgreSQL instance's data directory (which has no meta.db):
    // verify reads the metadata from PostgreSQL and names it, --repair copies it back.
    let victim = &second.layers[0].digest;
    let hex = victim.trim_start_matches("sha256:");
    let victim_path = data_dir.join(format!("blobs/sha256/{}/{hex}", &hex[..2]));
    let mut bytes = std::fs::read(&victim_path).unwrap();
    bytes[10] ^= 0x55;
    std::fs::write(&victim_path, &bytes).unwrap();
    let verify = || {
        Tool::pinfold()
            .env(POSTGRES_URL, &target.url)
            .args(["verify", "--data-dir"])
            .arg(&data_dir)
    };
    let out = verify().output().await;
    assert_eq!(out.code(), Some(1), "{}{}", out.stdout(), out.stderr());
    assert!(
        out.stdout().contains(&format!("corrupt: {victim}")),
        "{}",
        out.stdout()
    );
    let out = restore(&backups, &data_dir)
        .env(POSTGRES_URL, &target.url)
        .arg("--repair")
        .output()
        .await;
    assert_eq!(out.code(), Some(0), "repair: {}", out.stderr());
    let out = verify().output().await;
    assert_eq!(out.code(), Some(0), "clean after repair: {}", out.stdout());

    // Restoring into a database that holds metadata is refused before anything is written.
    let elsewhere = tmp.path().join("elsewhere");
    let out = restore(&backups, &elsewhere)
        .env(POSTGRES_URL, &target.url)
        .output()
        .await;
    assert_eq!(out.code(), Some(2), "{}", out.stderr());
    assert!(out.stderr().contains("not empty"), "{}", out.stderr());
    assert!(!elsewhere.exists(), "nothing written");
    assert_eq!(
        server.get_json(HISTORY).await,
        after,
        "the database is unchanged"
    );

    // The same backup onto SQLite: a complete data directory of its own.
    let on_sqlite = tmp.path().join("sqlite");
    let out = restore(&backups, &on_sqlite).arg("--json").output().await;
    assert_eq!(out.code(), Some(0), "restore: {}", out.stderr());
    assert!(on_sqlite.join("meta.db").is_file());
    let out = Tool::pinfold()
        .args(["verify", "--json", "--data-dir"])
        .arg(&on_sqlite)
        .output()
        .await;
    assert_eq!(out.code(), Some(0), "verify: {}", out.stdout());
    let report: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(report["findings"], serde_json::json!([]));
    // The nine blobs of both images, each named by the restored metadata and present.
    assert_eq!(report["references_checked"], 9, "{report}");
    assert_eq!(report["blobs_checked"], 9, "{report}");
}

/// The scheduled `backup` worker of `pinfold serve` on PostgreSQL: it runs without errors, and
/// what it wrote restores (here onto SQLite) into a data directory that names the pushed image
/// and holds its blobs.
#[tokio::test(flavor = "multi_thread")]
async fn scheduled_backups_work_on_postgresql() {
    let Some(database) = scratch_database().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let backups = tmp.path().join("scheduled");
    let to = backups.to_str().unwrap().to_owned();
    let mut server = TestServer::start_with_env(&[
        (POSTGRES_URL, &database.url),
        ("PINFOLD_BACKUP_TO", &to),
        ("PINFOLD_BACKUP_INTERVAL_SECONDS", "1"),
    ])
    .await;
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    let image = Image::random(&mut Rng::new(), ImageFormat::Oci, "amd64", 2, 4096);
    registry.push_image("sched/pg", "v1", &image).await;

    // Bounded wait for two runs after the push (the first runs at start).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let backup = server.worker("backup").await;
        assert_eq!(backup["errors"], 0, "{backup}");
        if backup["runs"].as_u64().unwrap() >= 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{backup}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(server.terminate());

    let restored = tmp.path().join("restored");
    restore(&backups, &restored).run_ok().await;
    let out = Tool::pinfold()
        .args(["verify", "--json", "--data-dir"])
        .arg(&restored)
        .output()
        .await;
    assert_eq!(out.code(), Some(0), "verify: {}", out.stdout());
    let report: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    // The manifest, its config and its two layers, named by the metadata and present.
    assert_eq!(report["references_checked"], 4, "{report}");
}
