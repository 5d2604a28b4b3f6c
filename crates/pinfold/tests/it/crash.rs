//! Crash consistency: an acknowledged push survives `kill -9`, and nothing partial is ever
//! visible (DESIGN.md, "Visible means verified and durable"); a SIGTERM stops the server
//! cleanly with its data intact.
//!
//! Concurrent pushers upload blobs (monolithic and chunked) and tag manifests in a loop;
//! every push the registry acknowledged (201 Created) is recorded. Under load the server
//! is killed with SIGKILL and restarted on the same data directory, three times. After
//! each restart every
//! acknowledged blob must come back byte for byte, every acknowledged tag must resolve to
//! its digest, every unacknowledged push must be either absent or complete, and every file
//! of the blob tree must hash to its name.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::harness::{
    sha256_digest, sha256_files, to_json_bytes, walk_files, Blob, Image, ImageFormat,
    RegistryClient, Rng, Target, TestServer, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST,
};

const PUSHERS: usize = 8;
/// How long the pushers run before each kill: several crash cycles on one data directory,
/// each at a different point of the load.
const LOADS: [Duration; 3] = [
    Duration::from_millis(1500),
    Duration::from_millis(700),
    Duration::from_millis(1100),
];
/// An upper bound on iterations per pusher, whatever the speed.
const MAX_ROUNDS: usize = 500;
const MIN_BLOB: usize = 256 * 1024;
const MAX_BLOB: usize = 4 * 1024 * 1024;
const CHUNK: usize = 1024 * 1024;

/// One push attempt and whether the registry acknowledged it.
#[derive(Clone)]
struct Attempt {
    repo: String,
    /// `None` for a blob, the tag for a manifest.
    tag: Option<String>,
    content: Blob,
    acked: bool,
}

/// What one pusher attempted, in order.
struct PusherLog {
    /// The repository this pusher pushes to.
    repo: String,
    attempts: Vec<Attempt>,
    /// The manifest digests pushed to `latest`, in order, with their acknowledgement.
    latest: Vec<(String, bool)>,
    /// The first failure message, for the report.
    first_error: Option<String>,
}

impl PusherLog {
    fn record<T>(
        &mut self,
        repo: &str,
        tag: Option<&str>,
        content: &Blob,
        result: Result<T, String>,
    ) -> bool {
        let acked = match result {
            Ok(_) => true,
            Err(e) => {
                self.first_error.get_or_insert(e);
                false
            }
        };
        self.attempts.push(Attempt {
            repo: repo.to_owned(),
            tag: tag.map(str::to_owned),
            content: content.clone(),
            acked,
        });
        acked
    }
}

async fn random_blob(rng_seed: u64, media_type: &'static str) -> Blob {
    tokio::task::spawn_blocking(move || {
        let mut rng = Rng::with_seed(rng_seed);
        let size = rng.range(MIN_BLOB, MAX_BLOB);
        Blob::new(media_type, rng.bytes(size))
    })
    .await
    .expect("blob generator task")
}

async fn pusher(
    repo: String,
    registry: RegistryClient,
    stop: Arc<AtomicBool>,
    acked_manifests: Arc<AtomicUsize>,
) -> PusherLog {
    let mut rng = Rng::new();
    let mut log = PusherLog {
        repo: repo.clone(),
        attempts: Vec::new(),
        latest: Vec::new(),
        first_error: None,
    };
    for round in 0..MAX_ROUNDS {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let layer = random_blob(rng.next_u64(), OCI_LAYER_GZIP).await;
        let pushed = if round % 2 == 0 {
            registry.push_blob(&repo, &layer).await
        } else {
            registry.push_blob_chunked(&repo, &layer, CHUNK).await
        };
        if !log.record(&repo, None, &layer, pushed) {
            continue;
        }
        let config = Blob::new(
            OCI_CONFIG,
            to_json_bytes(&json!({
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
                "repository": repo,
                "round": round,
                "nonce": rng.token(),
            })),
        );
        let pushed = registry.push_blob(&repo, &config).await;
        if !log.record(&repo, None, &config, pushed) {
            continue;
        }
        let manifest = Blob::new(
            OCI_MANIFEST,
            to_json_bytes(&json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config.descriptor(),
                "layers": [layer.descriptor()],
            })),
        );
        let tag = format!("r{round}");
        let pushed = registry.put_manifest(&repo, &tag, &manifest).await;
        if !log.record(&repo, Some(&tag), &manifest, pushed) {
            continue;
        }
        acked_manifests.fetch_add(1, Ordering::SeqCst);
        let pushed = registry.put_manifest(&repo, "latest", &manifest).await;
        let acked = log.record(&repo, Some("latest"), &manifest, pushed);
        log.latest.push((manifest.digest.clone(), acked));
    }
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_pushes_survive_sigkill() {
    let mut server = TestServer::start().await;
    // Every pusher log of every cycle, verified again after each later crash too.
    let mut logs: Vec<PusherLog> = Vec::new();
    for (cycle, load) in LOADS.iter().enumerate() {
        let registry = RegistryClient::new(server.client().clone(), &server.url());
        let stop = Arc::new(AtomicBool::new(false));
        let acked_manifests = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..PUSHERS)
            .map(|i| {
                let repo = format!("crash/c{cycle}p{i}");
                tokio::spawn(pusher(
                    repo,
                    registry.clone(),
                    stop.clone(),
                    acked_manifests.clone(),
                ))
            })
            .collect();

        tokio::time::sleep(*load).await;
        // On a loaded machine (the whole suite runs beside this test) the pushers may not have
        // had a manifest acknowledged yet: a crash then tests nothing, so the load goes on
        // until one is (bounded: 30 s more at most, in 20 ms steps).
        for _ in 0..1500 {
            if acked_manifests.load(Ordering::SeqCst) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pid = server.pid();
        // Kill first, then tell the pushers to stop: requests are in flight at the kill.
        server.kill();
        stop.store(true, Ordering::SeqCst);
        eprintln!(
            "cycle {cycle}: killed server pid {pid} with SIGKILL after at least {load:?} of load"
        );

        let first_new = logs.len();
        for task in tasks {
            let log = tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("a pusher did not stop within 30 s of the kill")
                .expect("pusher task panicked");
            logs.push(log);
        }
        let new_logs = &logs[first_new..];
        let count = |acked: bool, manifest: bool| {
            new_logs
                .iter()
                .flat_map(|l| &l.attempts)
                .filter(|a| a.acked == acked && a.tag.is_some() == manifest)
                .count()
        };
        let (acked_blobs, acked_manifests) = (count(true, false), count(true, true));
        eprintln!(
            "cycle {cycle}: acknowledged {acked_blobs} blobs and {acked_manifests} manifest \
             puts; {} blob and {} manifest attempts not acknowledged",
            count(false, false),
            count(false, true)
        );
        for log in new_logs {
            if let Some(e) = &log.first_error {
                eprintln!("{} first failure: {e}", log.repo);
            }
        }
        assert!(
            acked_blobs > 0 && acked_manifests > 0,
            "cycle {cycle}: too little was acknowledged under load to test anything \
             ({acked_blobs} blobs, {acked_manifests} manifest puts); pusher errors above"
        );

        server.restart().await;
        let registry = RegistryClient::new(server.client().clone(), &server.url());
        let mut failures = verify_pushes(&registry, &logs).await;
        failures.extend(check_blob_tree(&server, &logs));
        // The restarted server still takes pushes.
        let probe = Blob::new(OCI_LAYER_GZIP, Rng::new().bytes(1000));
        if let Err(e) = registry.push_blob("crash/after", &probe).await {
            failures.push(format!("push after restart: {e}"));
        }
        assert!(
            failures.is_empty(),
            "cycle {cycle}: {} failures after kill -9 and restart:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

/// Checks every attempt of every pusher against the restarted registry; returns the
/// failures, each naming the request, what was expected and what came back.
async fn verify_pushes(registry: &RegistryClient, logs: &[PusherLog]) -> Vec<String> {
    let mut failures = Vec::new();
    for attempt in logs.iter().flat_map(|l| &l.attempts) {
        let Attempt {
            repo,
            tag,
            content,
            acked,
        } = attempt;
        let (request, got) = match tag {
            None => (
                format!("GET /v2/{repo}/blobs/{}", content.digest),
                registry.get_blob(repo, &content.digest).await,
            ),
            Some(tag) if tag != "latest" => (
                format!("GET /v2/{repo}/manifests/{tag}"),
                registry.get_manifest(repo, tag).await,
            ),
            Some(_) => continue,
        };
        let got = match got {
            Ok(got) => got,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let complete = got.status == 200 && got.body == content.bytes;
        let got_text = format!(
            "{} with {} bytes (sha256 {}){}",
            got.status,
            got.body.len(),
            sha256_digest(&got.body),
            if got.status == 200 {
                String::new()
            } else {
                format!(
                    ": {}",
                    String::from_utf8_lossy(&got.body[..got.body.len().min(500)])
                )
            }
        );
        let served_digest = got.header("docker-content-digest").map(str::to_owned);
        if *acked && !complete {
            failures.push(format!(
                "{request} (acknowledged before the kill): expected 200 with the {} pushed \
                 bytes of {}, got {got_text}",
                content.bytes.len(),
                content.digest,
            ));
        } else if !acked && !complete && got.status != 404 {
            failures.push(format!(
                "{request} (in flight at the kill, not acknowledged): expected 404 or the \
                 complete {} bytes of {}, got {got_text}",
                content.bytes.len(),
                content.digest,
            ));
        } else if complete && tag.is_some() && served_digest.as_deref() != Some(&content.digest) {
            failures.push(format!(
                "{request}: expected Docker-Content-Digest {}, got {served_digest:?}",
                content.digest
            ));
        }
    }

    for log in logs {
        let request = format!("GET /v2/{}/manifests/latest", log.repo);
        // `latest` may show the last acknowledged move or any later, unacknowledged one
        // (the server may have committed it without answering).
        let last_acked = log.latest.iter().rposition(|(_, acked)| *acked);
        let allowed: Vec<&str> = log.latest[last_acked.unwrap_or(0)..]
            .iter()
            .map(|(digest, _)| digest.as_str())
            .collect();
        let got = match registry.get_manifest(&log.repo, "latest").await {
            Ok(got) => got,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let served = sha256_digest(&got.body);
        match (got.status.as_u16(), last_acked) {
            (200, _) if allowed.contains(&served.as_str()) => {}
            (404, None) => {}
            (status, _) => failures.push(format!(
                "{request}: expected one of {allowed:?}{}, got {status} with digest {served}",
                if last_acked.is_none() { " or 404" } else { "" }
            )),
        }
    }
    failures
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_keeps_pushes() {
    let mut server = TestServer::start().await;
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    let image = Image::random(&mut Rng::new(), ImageFormat::Oci, "amd64", 2, 64 * 1024);
    registry.push_image("stop/app", "1", &image).await;

    let clean = server.terminate();
    // distribution 2.8 drains only when `http.draintimeout` is set; otherwise Go's
    // default SIGTERM action ends it. Pinfold must exit 0.
    if server.target() == Target::Pinfold {
        assert!(clean, "pinfold did not exit with status 0 after SIGTERM");
    }

    server.restart().await;
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    let got = registry
        .get_manifest("stop/app", "1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got.status, 200,
        "GET /v2/stop/app/manifests/1 after SIGTERM and restart"
    );
    assert!(
        got.body == image.manifest.bytes,
        "manifest bytes after SIGTERM and restart"
    );
    for blob in image.blobs() {
        let got = registry
            .get_blob("stop/app", &blob.digest)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            got.status == 200 && got.body == blob.bytes,
            "GET /v2/stop/app/blobs/{} after SIGTERM and restart: expected 200 with the pushed \
             bytes, got {} with {} bytes",
            blob.digest,
            got.status,
            got.body.len()
        );
    }
}

/// A SIGTERM that arrives as soon as the server has announced itself is a clean stop, not the
/// default action's kill: the handlers exist before the `listening on` line (a CI run once
/// caught the window in which they did not). A few rounds, since the window was narrow.
#[tokio::test]
async fn sigterm_right_after_start_is_a_clean_stop() {
    const ROUNDS: usize = 20;
    let mut server = TestServer::start_with_env(&[]).await;
    for round in 1..=ROUNDS {
        assert!(
            server.terminate(),
            "round {round}/{ROUNDS}: pinfold did not exit with status 0 after a SIGTERM right \
             after start\n--- server log ---\n{}",
            server.log_tail()
        );
        server.restart().await;
    }
}

/// Every file of the blob tree must hash to its name; on Pinfold every acknowledged blob
/// must also be a file there.
fn check_blob_tree(server: &TestServer, logs: &[PusherLog]) -> Vec<String> {
    let mut failures = Vec::new();
    // (expected hex, path) of every stored blob.
    let mut stored = Vec::new();
    let mut others = Vec::new();
    match server.target() {
        Target::Pinfold => {
            // <data>/blobs/sha256/<first two hex>/<hex>
            let root = server.data_dir().join("blobs").join("sha256");
            if !root.is_dir() {
                return vec![format!(
                    "no blob tree at {} (expected <data-dir>/blobs/sha256/xx/<hex>); data dir \
                     holds {:?}",
                    root.display(),
                    walk_files(server.data_dir())
                )];
            }
            for path in walk_files(&root) {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                let parent = path
                    .parent()
                    .and_then(|p| p.file_name())
                    .unwrap_or_default();
                if is_sha256_hex(&name) {
                    if parent.to_string_lossy() != name[..2] {
                        failures.push(format!(
                            "{} is in the wrong fan-out directory",
                            path.display()
                        ));
                    }
                    stored.push((name.into_owned(), path));
                } else {
                    others.push(path);
                }
            }
            let attempts = logs.iter().flat_map(|l| &l.attempts);
            for attempt in attempts.filter(|a| a.acked && a.tag.is_none()) {
                let hex = attempt.content.digest.trim_start_matches("sha256:");
                let path = root.join(&hex[..2]).join(hex);
                if !path.is_file() {
                    failures.push(format!(
                        "acknowledged blob {} has no file at {}",
                        attempt.content.digest,
                        path.display()
                    ));
                }
            }
        }
        Target::Distribution => {
            // distribution: <root>/docker/registry/v2/blobs/sha256/<xx>/<hex>/data
            let root = server.data_dir().join("docker/registry/v2/blobs/sha256");
            for path in walk_files(&root) {
                let hex = path
                    .parent()
                    .and_then(|p| p.file_name())
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                if path.file_name().is_some_and(|n| n == "data") && is_sha256_hex(&hex) {
                    stored.push((hex, path));
                } else {
                    others.push(path);
                }
            }
        }
    }
    if !others.is_empty() {
        eprintln!(
            "{} files in the blob tree not named by a digest (temp files?): {others:?}",
            others.len()
        );
    }
    let paths: Vec<_> = stored.iter().map(|(_, path)| path.clone()).collect();
    let hashed = sha256_files(&paths);
    for ((expected, path), actual) in stored.iter().zip(hashed) {
        if *expected != actual {
            failures.push(format!(
                "{} holds content with sha256 {actual}, not its name",
                path.display()
            ));
        }
    }
    eprintln!("blob tree: {} files hashed", stored.len());
    failures
}

fn is_sha256_hex(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
