//! Issue 5, item 7: the disaster. Fill a registry (single- and multi-arch images, a moved tag,
//! an APT package and its signed indices), back it up with `pinfold backup` while pushes
//! continue, delete the data directory, `pinfold restore` it, and pull everything back with
//! the same digests (over HTTP and with skopeo). Then corrupt a blob on disk: `pinfold verify`
//! names it (exit 1), `pinfold restore --repair` copies it back from the backup, and verify
//! passes again. Plus the bad-input cases of the CLI.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{
    require_tool, sha256_digest, Image, ImageFormat, ImageIndex, RegistryClient, Rng, TestServer,
    Tool,
};

/// GET `path` until it answers 200 (bounded), returning the body.
async fn get_when_ready(server: &TestServer, path: &str) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = server
            .client()
            .get(format!("{}{path}", server.url()))
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            return resp.bytes().await.unwrap().to_vec();
        }
        assert!(Instant::now() < deadline, "{path} never became available");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every tag of every repository, with the digest it resolves to.
async fn all_tags(server: &TestServer) -> Vec<(String, String, String)> {
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    let catalog = server.get_json("/v2/_catalog?n=1000").await;
    let mut out = Vec::new();
    for repo in catalog["repositories"].as_array().unwrap() {
        let repo = repo.as_str().unwrap();
        let tags = server
            .get_json(&format!("/v2/{repo}/tags/list?n=1000"))
            .await;
        for tag in tags["tags"].as_array().into_iter().flatten() {
            let tag = tag.as_str().unwrap();
            let m = registry.get_manifest(repo, tag).await.unwrap();
            assert_eq!(m.status, 200, "{repo}:{tag}");
            out.push((repo.to_owned(), tag.to_owned(), sha256_digest(&m.body)));
        }
    }
    out.sort();
    out
}

/// Pulls `repo@digest` and everything it references, checking every digest.
async fn pull_complete(registry: &RegistryClient, repo: &str, digest: &str) {
    let m = registry.get_manifest(repo, digest).await.unwrap();
    assert_eq!(m.status, 200, "{repo}@{digest}");
    assert_eq!(
        sha256_digest(&m.body),
        digest,
        "manifest bytes of {repo}@{digest}"
    );
    let doc: Value = serde_json::from_slice(&m.body).unwrap();
    for child in doc["manifests"].as_array().into_iter().flatten() {
        Box::pin(pull_complete(
            registry,
            repo,
            child["digest"].as_str().unwrap(),
        ))
        .await;
    }
    let blobs = doc["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(doc.get("config"));
    for blob in blobs {
        let d = blob["digest"].as_str().unwrap();
        let b = registry.get_blob(repo, d).await.unwrap();
        assert_eq!(b.status, 200, "{repo} blob {d}");
        assert_eq!(sha256_digest(&b.body), d, "{repo} blob {d}");
    }
}

#[tokio::test]
async fn disaster_backup_while_pushing_restore_pull_verify_repair() {
    let skopeo = require_tool("skopeo", "skopeo");
    let mut server = TestServer::start().await;
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    let mut rng = Rng::with_seed(5);
    let tmp = tempfile::tempdir().unwrap();
    let backup_dir = tmp.path().join("backups");

    // The registry before the disaster.
    let mut images = Vec::new();
    for (repo, tag) in [("team/api", "v1"), ("team/web", "v1"), ("team/web", "v2")] {
        let image = Image::random(&mut rng, ImageFormat::Oci, "amd64", 3, 64 * 1024);
        registry.push_image(repo, tag, &image).await;
        images.push((repo, image));
    }
    // Move a tag, so the journal has history.
    let moved = Image::random(&mut rng, ImageFormat::DockerSchema2, "amd64", 2, 32 * 1024);
    registry.push_image("team/api", "v1", &moved).await;
    images.push(("team/api", moved));
    let index = ImageIndex::random(&mut rng, &["amd64", "arm64"], 2);
    for image in &index.images {
        registry
            .push_image("team/multi", &image.manifest.digest, image)
            .await;
    }
    registry
        .put_manifest("team/multi", "latest", &index.index)
        .await
        .unwrap();
    let deb = std::fs::read(crate::apt_cli::build_deb(tmp.path(), "1.0-1").await).unwrap();
    let resp = server
        .client()
        .put(format!(
            "{}/artifactory/ci/pool/hello_1.0-1_amd64.deb;deb.distribution=stable;deb.component=main;deb.architecture=amd64",
            server.url()
        ))
        .body(deb.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let release = get_when_ready(&server, "/apt/ci/dists/stable/InRelease").await;
    let packages = get_when_ready(&server, "/apt/ci/dists/stable/main/binary-amd64/Packages").await;
    let key = get_when_ready(&server, "/apt/pinfold.asc").await;
    let history = server
        .get_json("/api/v1/repositories/team/api/tags/v1/history")
        .await;
    let tags_before = all_tags(&server).await;

    // Pushes keep coming while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = {
        let registry = registry.clone();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut rng = Rng::with_seed(77);
            let mut pushed = 0;
            for round in 0..200 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let image = Image::random(&mut rng, ImageFormat::Oci, "amd64", 2, 256 * 1024);
                registry
                    .push_image("team/busy", &format!("r{round}"), &image)
                    .await;
                pushed += 1;
            }
            pushed
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = Tool::pinfold()
        .args(["backup", "--json", "--to"])
        .arg(&backup_dir)
        .arg("--data-dir")
        .arg(server.data_dir())
        .output()
        .await;
    assert_eq!(out.code(), Some(0), "backup: {}", out.stderr());
    let summary: Value = serde_json::from_str(&out.stdout()).unwrap();
    assert!(summary["backup"]["blobs_copied"].as_u64().unwrap() > 10);
    assert_eq!(summary["backup"]["missing"], serde_json::json!([]));
    stop.store(true, Ordering::SeqCst);
    let pushed_during = pusher.await.unwrap();
    assert!(pushed_during > 0, "no push ran beside the backup");

    // A second backup of the unchanged registry copies only what the busy pusher added.
    let again = Tool::pinfold()
        .args(["backup", "--json", "--to"])
        .arg(&backup_dir)
        .arg("--data-dir")
        .arg(server.data_dir())
        .output()
        .await;
    assert_eq!(again.code(), Some(0), "{}", again.stderr());
    let again: Value = serde_json::from_str(&again.stdout()).unwrap();
    assert!(
        again["backup"]["blobs_skipped"].as_u64().unwrap()
            >= summary["backup"]["blobs_copied"].as_u64().unwrap()
    );
    let first_name = summary["backup"]["name"].as_str().unwrap().to_owned();

    // The disaster.
    assert!(server.terminate(), "server stops cleanly");
    let data_dir = server.data_dir().to_owned();
    std::fs::remove_dir_all(&data_dir).unwrap();

    // Restore the first backup, the one taken under load.
    let out = Tool::pinfold()
        .args(["restore", "--from"])
        .arg(&backup_dir)
        .args(["--backup", &first_name, "--data-dir"])
        .arg(&data_dir)
        .output()
        .await;
    assert_eq!(out.code(), Some(0), "restore: {}", out.stderr());
    server.restart().await;
    let registry = RegistryClient::new(server.client().clone(), &server.url());

    // Everything from before is back, byte for byte.
    let tags_after = all_tags(&server).await;
    for entry in &tags_before {
        assert!(tags_after.contains(entry), "{entry:?} lost in the restore");
    }
    for (repo, image) in &images {
        pull_complete(&registry, repo, &image.manifest.digest).await;
    }
    pull_complete(&registry, "team/multi", &index.index.digest).await;
    // Whatever the backup caught of the busy repository is complete, never half an image.
    for (repo, tag, digest) in &tags_after {
        pull_complete(&registry, repo, digest).await;
        let _ = tag;
    }
    assert_eq!(
        server
            .get_json("/api/v1/repositories/team/api/tags/v1/history")
            .await,
        history,
        "tag journal"
    );
    assert_eq!(
        get_when_ready(&server, "/apt/ci/dists/stable/InRelease").await,
        release
    );
    assert_eq!(
        get_when_ready(&server, "/apt/ci/dists/stable/main/binary-amd64/Packages").await,
        packages
    );
    assert_eq!(
        get_when_ready(&server, "/apt/pinfold.asc").await,
        key,
        "same signing key"
    );
    assert_eq!(
        get_when_ready(&server, "/apt/ci/pool/hello_1.0-1_amd64.deb").await,
        deb
    );
    // A real client agrees on the index digest.
    let raw = Tool::new(&skopeo)
        .args([
            "--insecure-policy",
            "inspect",
            "--raw",
            "--tls-verify=false",
        ])
        .arg(format!("docker://{}/team/multi:latest", server.host_port()))
        .run_ok()
        .await;
    assert_eq!(sha256_digest(raw.as_bytes()), index.index.digest);

    // Corrupt one layer on disk, while the server runs.
    let victim = images[1].1.layers[0].digest.clone();
    let hex = victim.trim_start_matches("sha256:");
    let victim_path = data_dir.join(format!("blobs/sha256/{}/{hex}", &hex[..2]));
    let mut bytes = std::fs::read(&victim_path).unwrap();
    bytes[100] ^= 0x55;
    std::fs::write(&victim_path, &bytes).unwrap();

    let out = Tool::pinfold()
        .args(["verify", "--json", "--data-dir"])
        .arg(&data_dir)
        .output()
        .await;
    assert_eq!(out.code(), Some(1), "verify finds it: {}", out.stderr());
    let report: Value = serde_json::from_str(&out.stdout()).unwrap();
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0]["kind"], "corrupt");
    assert_eq!(findings[0]["digest"], victim.as_str());
    assert!(findings[0]["referrer"]
        .as_str()
        .unwrap()
        .contains("team/web"));
    let text = Tool::pinfold()
        .args(["verify", "--data-dir"])
        .arg(&data_dir)
        .output()
        .await;
    assert_eq!(text.code(), Some(1));
    assert!(
        text.stdout().contains(&format!("corrupt: {victim}")),
        "{}",
        text.stdout()
    );

    let out = Tool::pinfold()
        .args(["restore", "--repair", "--from"])
        .arg(&backup_dir)
        .arg("--data-dir")
        .arg(&data_dir)
        .output()
        .await;
    assert_eq!(out.code(), Some(0), "repair: {}", out.stderr());
    assert!(
        out.stdout().contains(&format!("replaced corrupt {victim}")),
        "{}",
        out.stdout()
    );
    let out = Tool::pinfold()
        .args(["verify", "--data-dir"])
        .arg(&data_dir)
        .output()
        .await;
    assert_eq!(out.code(), Some(0), "clean after repair: {}", out.stdout());
    let b = registry.get_blob("team/web", &victim).await.unwrap();
    assert_eq!(sha256_digest(&b.body), victim);
}

#[tokio::test]
async fn backup_restore_and_verify_refuse_bad_input_with_exit_2() {
    let server = TestServer::start().await;
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    let mut rng = Rng::with_seed(9);
    let image = Image::random(&mut rng, ImageFormat::Oci, "amd64", 1, 1024);
    registry.push_image("bad/input", "v1", &image).await;
    let tmp = tempfile::tempdir().unwrap();
    let backup_dir = tmp.path().join("b");

    // Not a data directory: nothing is created there.
    let not_data = tmp.path().join("nothing-here");
    std::fs::create_dir(&not_data).unwrap();
    for cmd in ["backup", "verify"] {
        let mut tool = Tool::pinfold().arg(cmd).arg("--data-dir").arg(&not_data);
        if cmd == "backup" {
            tool = tool.arg("--to").arg(&backup_dir);
        }
        let out = tool.output().await;
        assert_eq!(out.code(), Some(2), "{cmd}: {}", out.stderr());
        assert!(
            out.stderr().contains("not a Pinfold data directory"),
            "{}",
            out.stderr()
        );
        assert_eq!(std::fs::read_dir(&not_data).unwrap().count(), 0);
    }

    // No backup yet.
    let out = Tool::pinfold()
        .args(["restore", "--from"])
        .arg(&backup_dir)
        .arg("--data-dir")
        .arg(tmp.path().join("r"))
        .output()
        .await;
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr().contains("no complete backup"),
        "{}",
        out.stderr()
    );

    Tool::pinfold()
        .args(["backup", "--to"])
        .arg(&backup_dir)
        .arg("--data-dir")
        .arg(server.data_dir())
        .run_ok()
        .await;

    // Restoring over the live data directory is refused and changes nothing.
    let before = std::fs::read(server.data_dir().join("meta.db"))
        .unwrap()
        .len();
    let out = Tool::pinfold()
        .args(["restore", "--from"])
        .arg(&backup_dir)
        .arg("--data-dir")
        .arg(server.data_dir())
        .output()
        .await;
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr().contains("is not empty"), "{}", out.stderr());
    assert_eq!(
        std::fs::read(server.data_dir().join("meta.db"))
            .unwrap()
            .len(),
        before
    );
    let m = registry.get_manifest("bad/input", "v1").await.unwrap();
    assert_eq!(m.status, 200);

    // A tampered backup names the file and writes nothing.
    let layer = &image.layers[0].digest;
    let hex = layer.trim_start_matches("sha256:");
    let in_backup = backup_dir.join(format!("blobs/sha256/{}/{hex}", &hex[..2]));
    let mut bytes = std::fs::read(&in_backup).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&in_backup, &bytes).unwrap();
    let target = tmp.path().join("r");
    let out = Tool::pinfold()
        .args(["restore", "--from"])
        .arg(&backup_dir)
        .arg("--data-dir")
        .arg(&target)
        .output()
        .await;
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr().contains("is damaged"), "{}", out.stderr());
    assert!(out.stderr().contains(hex), "{}", out.stderr());
    assert!(!target.exists());

    // A throttle that makes no sense.
    let out = Tool::pinfold()
        .args(["verify", "--rate", "0", "--data-dir"])
        .arg(server.data_dir())
        .output()
        .await;
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr().contains("--rate"), "{}", out.stderr());
}

#[tokio::test]
async fn scheduled_backups_run_inside_serve_and_keep_the_newest() {
    let tmp = tempfile::tempdir().unwrap();
    let backup_dir = tmp.path().join("scheduled");
    let to = backup_dir.to_str().unwrap().to_owned();
    let mut server = TestServer::start_with_env(&[
        ("PINFOLD_BACKUP_TO", &to),
        ("PINFOLD_BACKUP_INTERVAL_SECONDS", "1"),
        ("PINFOLD_BACKUP_KEEP", "2"),
    ])
    .await;
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    let mut rng = Rng::with_seed(3);
    let image = Image::random(&mut rng, ImageFormat::Oci, "amd64", 2, 4096);
    registry.push_image("sched/app", "v1", &image).await;

    // Wait (bounded) for at least three runs after the push.
    let deadline = Instant::now() + Duration::from_secs(60);
    let runs = loop {
        let backup = server.worker("backup").await;
        assert_eq!(backup["errors"], 0, "{backup}");
        let runs = backup["runs"].as_u64().unwrap();
        if runs >= 4 {
            break runs;
        }
        assert!(
            Instant::now() < deadline,
            "backup worker ran {runs} times: {backup}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(runs >= 4);
    // Stopped first: a restore reads a backup that a later scheduled prune could remove.
    assert!(server.terminate());
    let complete: Vec<_> = std::fs::read_dir(backup_dir.join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    assert!(
        (1..=3).contains(&complete.len()),
        "keep=2 (one more may be in progress): {complete:?}"
    );
    let target = tmp.path().join("restored");
    Tool::pinfold()
        .args(["restore", "--from"])
        .arg(&backup_dir)
        .arg("--data-dir")
        .arg(&target)
        .run_ok()
        .await;
    let hex = image.manifest.digest.trim_start_matches("sha256:");
    assert!(target
        .join(format!("blobs/sha256/{}/{hex}", &hex[..2]))
        .is_file());
}
