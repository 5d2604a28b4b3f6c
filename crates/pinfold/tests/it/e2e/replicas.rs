//! Several `pinfold serve` replicas behind Debian's haproxy (issue 17), round robin without
//! sticky sessions ([`haproxy_config`](crate::harness::haproxy_config)), sharing their blobs in
//! Garage (S3) and their metadata in PostgreSQL: skopeo pushes and pulls through the proxy
//! while each request lands on another replica, and every replica serves what any of them
//! stored; a replica killed with SIGKILL during concurrent pushes loses no push it
//! acknowledged; a killed replica's worker leases pass to another one.
//!
//! Needs `TEST_PINFOLD_S3_*` (scripts/garage), `TEST_PINFOLD_POSTGRES_URL` and haproxy. Without
//! the variables the tests say they are skipped, except under CI, where they fail.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::e2e::object_storage::{as_refs, cluster_env};
use crate::e2e::postgres::ScratchDatabase;
use crate::harness::{
    read_oci_layout_blob, require_tool, write_oci_layout, Blob, Haproxy, Image, ImageFormat,
    RegistryClient, Rng, TestServer, Tool,
};

/// `count` replicas over one bucket prefix and one scratch PostgreSQL database; `None` (the
/// test skips) without Garage or PostgreSQL, which CI does not allow.
async fn start_replicas(test: &str, count: usize) -> Option<(Vec<TestServer>, ScratchDatabase)> {
    let (env, database) = cluster_env(test).await?;
    let mut replicas = Vec::new();
    for _ in 0..count {
        replicas.push(TestServer::start_with_env(&as_refs(&env)).await);
    }
    Some((replicas, database))
}

async fn start_haproxy(replicas: &[TestServer]) -> Haproxy {
    let backends: Vec<&str> = replicas.iter().map(TestServer::host_port).collect();
    Haproxy::start(&backends).await
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build HTTP client")
}

/// Asserts that `registry` serves `repo:tag` as `image`: the manifest by tag and by digest,
/// and every blob, each with the bytes pushed.
async fn assert_serves(
    registry: &RegistryClient,
    where_: &str,
    repo: &str,
    tag: &str,
    image: &Image,
) {
    for reference in [tag, image.manifest.digest.as_str()] {
        let fetched = registry
            .get_manifest(repo, reference)
            .await
            .unwrap_or_else(|e| panic!("{where_}: {e}"));
        assert_eq!(
            fetched.status,
            200,
            "{where_}: GET manifest {repo}:{reference}: {}",
            String::from_utf8_lossy(&fetched.body)
        );
        assert!(
            fetched.body == image.manifest.bytes,
            "{where_}: manifest {repo}:{reference} came back with other bytes"
        );
    }
    for blob in image.blobs() {
        let fetched = registry
            .get_blob(repo, &blob.digest)
            .await
            .unwrap_or_else(|e| panic!("{where_}: {e}"));
        assert_eq!(
            fetched.status,
            200,
            "{where_}: GET blob {repo}@{}: {}",
            blob.digest,
            String::from_utf8_lossy(&fetched.body[..fetched.body.len().min(500)])
        );
        assert!(
            fetched.body == blob.bytes,
            "{where_}: blob {repo}@{} came back with other bytes ({} of {} bytes)",
            blob.digest,
            fetched.body.len(),
            blob.bytes.len()
        );
    }
}

/// skopeo pushes an image through haproxy and pulls it back with every digest and byte
/// unchanged, while its requests go round robin to three replicas; then each replica, asked
/// directly, serves the whole image.
#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_behind_haproxy_serve_skopeo_pushes_and_pulls() {
    let Some((replicas, database)) = start_replicas("replicas-skopeo", 3).await else {
        return;
    };
    let skopeo = require_tool("skopeo", "skopeo");
    let proxy = start_haproxy(&replicas).await;
    let mut rng = Rng::new();
    // Layers over 8 MiB go through S3 multipart uploads.
    let image = Image::random(&mut rng, ImageFormat::Oci, "amd64", 3, 9 * 1024 * 1024);
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("source");
    let blobs: Vec<&Blob> = image.blobs().collect();
    write_oci_layout(&source, "1", &image.manifest, blobs.iter().copied());
    let remote = format!("docker://{}/team/app:1", proxy.host_port());
    let copy = |src: String, dst: String| {
        Tool::new(skopeo.clone())
            .arg("--insecure-policy")
            .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
            .arg("--preserve-digests")
            .args([src, dst])
            .timeout(Duration::from_secs(120))
            .run_ok()
    };
    copy(format!("oci:{}:1", source.display()), remote.clone()).await;
    let back = scratch.path().join("back");
    copy(remote, format!("oci:{}:1", back.display())).await;
    for blob in blobs
        .iter()
        .copied()
        .chain(std::iter::once(&image.manifest))
    {
        assert!(
            read_oci_layout_blob(&back, &blob.digest) == blob.bytes,
            "{} came back through haproxy with other bytes",
            blob.digest
        );
    }
    // Round robin, no stickiness: skopeo's requests were spread over every replica.
    let served = proxy.requests_per_replica();
    assert!(
        ["r1", "r2", "r3"]
            .iter()
            .all(|r| served.get(*r).copied().unwrap_or(0) > 0),
        "every replica served some of skopeo's requests: {served:?}\n{}",
        proxy.log_tail()
    );
    eprintln!("requests per replica: {served:?}");

    // Each replica on its own serves the whole image, whichever stored which part.
    let client = http_client();
    for (i, replica) in replicas.iter().enumerate() {
        let registry = RegistryClient::new(client.clone(), &replica.url());
        assert_serves(
            &registry,
            &format!("replica r{}", i + 1),
            "team/app",
            "1",
            &image,
        )
        .await;
    }
    drop(proxy);
    drop(replicas);
    drop(database);
}

/// A push whose manifest PUT was answered 201 through the proxy.
struct Acknowledged {
    repo: String,
    tag: String,
    image: Image,
    at: Instant,
}

/// A request that failed (each retry counts once).
struct Failed {
    started: Instant,
    ended: Instant,
    error: String,
}

/// Whether `error` (a [`RegistryClient`] message) is what a replica dying under the proxy may
/// cause: no answer, or haproxy's own 502 (the replica closed the connection), 503 (no replica
/// reachable) or 504.
fn caused_by_the_kill(error: &str) -> bool {
    error.contains("got error")
        || error.contains("body error")
        || ["got 502", "got 503", "got 504"]
            .iter()
            .any(|status| error.contains(status))
}

/// `at` as `+1.2s` or `-3.4ms` from `origin`.
fn relative(at: Instant, origin: Instant) -> String {
    if at >= origin {
        format!("+{:.1?}", at - origin)
    } else {
        format!("-{:.1?}", origin - at)
    }
}

/// How many times one request is tried.
const ATTEMPTS: usize = 6;
/// How long the pushers push.
const PUSH_FOR: Duration = Duration::from_secs(8);
/// When one replica is killed, after the pushers started.
const KILL_AFTER: Duration = Duration::from_secs(1);
/// How long after the kill requests may still fail: haproxy takes a replica out after two
/// failed checks a second apart, and retries a refused connection 3 times a second apart.
const SETTLE: Duration = Duration::from_secs(8);
/// At most this many images per pusher.
const MAX_IMAGES: usize = 200;

/// Runs `call` up to [`ATTEMPTS`] times, recording each failure; `Ok` once it succeeded.
async fn with_retries<F, Fut>(failures: &Mutex<Vec<Failed>>, what: &str, mut call: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    for _attempt in 0..ATTEMPTS {
        let started = Instant::now();
        match call().await {
            Ok(()) => return true,
            Err(error) => {
                failures.lock().unwrap().push(Failed {
                    started,
                    ended: Instant::now(),
                    error: format!("{what}: {error}"),
                });
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    false
}

/// Pushes small images into `team/pusher<index>` until `until`, tags 0, 1, ...; returns the
/// pushes acknowledged.
async fn pusher(
    registry: RegistryClient,
    index: usize,
    until: Instant,
    failures: Arc<Mutex<Vec<Failed>>>,
) -> Vec<Acknowledged> {
    let mut rng = Rng::new();
    let repo = format!("team/pusher{index}");
    let mut acknowledged = Vec::new();
    'images: for n in 0..MAX_IMAGES {
        if Instant::now() >= until {
            break;
        }
        let image = Image::random(&mut rng, ImageFormat::Oci, "amd64", 2, 4096);
        for blob in image.blobs() {
            let what = format!("{repo} image {n} blob {}", blob.digest);
            if !with_retries(&failures, &what, || registry.push_blob(&repo, blob)).await {
                continue 'images;
            }
        }
        let tag = n.to_string();
        let what = format!("{repo}:{tag} manifest");
        let put = || async {
            registry
                .put_manifest(&repo, &tag, &image.manifest)
                .await
                .map(drop)
        };
        if with_retries(&failures, &what, put).await {
            acknowledged.push(Acknowledged {
                repo: repo.clone(),
                tag,
                image,
                at: Instant::now(),
            });
        }
    }
    acknowledged
}

/// Four clients push small images through haproxy while one of three replicas is killed with
/// SIGKILL; they retry what fails. Every push whose manifest was answered 201 then pulls
/// complete; requests fail only on the dying replica, and only until haproxy took it out.
#[tokio::test(flavor = "multi_thread")]
async fn killing_one_replica_during_concurrent_pushes_loses_no_acknowledged_push() {
    let Some((mut replicas, database)) = start_replicas("replicas-kill", 3).await else {
        return;
    };
    let proxy = start_haproxy(&replicas).await;
    let registry = RegistryClient::new(http_client(), &proxy.url());
    let failures = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let until = started + PUSH_FOR;
    let pushers: Vec<_> = (0..4)
        .map(|index| tokio::spawn(pusher(registry.clone(), index, until, failures.clone())))
        .collect();

    tokio::time::sleep(KILL_AFTER).await;
    let victim_pid = replicas[1].pid();
    // Before the signal: kill() returns only once the process has exited, and requests in
    // flight on it fail in between.
    let killed_at = Instant::now();
    replicas[1].kill();
    eprintln!(
        "killed r2 (pid {victim_pid}) {:.1?} after the pushers started",
        killed_at - started
    );

    let mut acknowledged = Vec::new();
    for pusher in pushers {
        let pushed = tokio::time::timeout(PUSH_FOR + Duration::from_secs(90), pusher)
            .await
            .expect("a pusher finished in time")
            .expect("a pusher did not panic");
        acknowledged.extend(pushed);
    }
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    let after_kill = acknowledged.iter().filter(|a| a.at > killed_at).count();
    eprintln!(
        "{} pushes acknowledged ({after_kill} after the kill), {} failed requests; requests \
         per replica: {:?}",
        acknowledged.len(),
        failures.len(),
        proxy.requests_per_replica()
    );
    for failure in &failures {
        eprintln!(
            "failed {}..{} from the kill: {}",
            relative(failure.started, killed_at),
            relative(failure.ended, killed_at),
            failure.error
        );
    }
    assert!(
        after_kill > 0,
        "no push was acknowledged after the kill, so the test proves nothing\n{}",
        proxy.log_tail()
    );
    // Only the dying replica may fail requests, and only while haproxy takes it out.
    let unexplained: Vec<&str> = failures
        .iter()
        .filter(|f| {
            !caused_by_the_kill(&f.error) || f.ended < killed_at || f.started > killed_at + SETTLE
        })
        .map(|f| f.error.as_str())
        .collect();
    assert!(
        unexplained.is_empty(),
        "requests failed for another reason than the kill of r2:\n{}\n--- haproxy ---\n{}",
        unexplained.join("\n"),
        proxy.log_tail()
    );

    // Every acknowledged push pulls complete through the proxy, from the survivors.
    for pushed in &acknowledged {
        assert_serves(
            &registry,
            "haproxy",
            &pushed.repo,
            &pushed.tag,
            &pushed.image,
        )
        .await;
    }
    drop(proxy);
    drop(replicas);
    drop(database);
}

/// The worker whose lease the test follows.
const LEASED_WORKER: &str = "upload-janitor";

/// `(replica, holder)` of the leased worker as `server` reports it.
async fn lease_of(server: &TestServer) -> (Option<String>, Option<String>) {
    let worker = server.worker(LEASED_WORKER).await;
    let text = |key: &str| worker[key].as_str().map(str::to_owned);
    (text("replica"), text("holder"))
}

/// Of two replicas, the one holding the `upload-janitor` lease is killed with SIGKILL; the
/// other reports itself as the holder within the lease's lapse and one renewal period.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_lease_holder_is_replaced_within_30_seconds() {
    let Some((mut replicas, database)) = start_replicas("replicas-lease", 2).await else {
        return;
    };
    // Who holds the lease, as both replicas see it (the first one started takes it at once,
    // unless the second won the race).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let (holder_index, names) = loop {
        let mut names = Vec::new();
        let mut holders = Vec::new();
        for replica in &replicas {
            let (name, holder) = lease_of(replica).await;
            names.push(name.unwrap_or_else(|| {
                panic!("{LEASED_WORKER} has no `replica` name: {}", replica.url())
            }));
            holders.push(holder);
        }
        assert_ne!(names[0], names[1], "two replicas with one name");
        if let Some(Some(holder)) = holders.first() {
            if holders
                .iter()
                .all(|h| h.as_deref() == Some(holder.as_str()))
            {
                if let Some(index) = names.iter().position(|n| n == holder) {
                    break (index, names);
                }
            }
        }
        seen.push(format!("{holders:?}"));
        assert!(
            Instant::now() < deadline && seen.len() < 300,
            "the replicas {names:?} never agreed on a holder of {LEASED_WORKER}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let survivor_index = 1 - holder_index;
    eprintln!(
        "{} holds the {LEASED_WORKER} lease; killing it",
        names[holder_index]
    );
    let killed_at = Instant::now();
    replicas[holder_index].kill();

    // The survivor takes over within the lease's lapse (20 s) and one renewal period (5 s).
    let survivor = &replicas[survivor_index];
    let mut last = None;
    let mut took_over = None;
    for _poll in 0..450 {
        if killed_at.elapsed() > Duration::from_secs(45) {
            break;
        }
        let (_, holder) = lease_of(survivor).await;
        if holder.as_deref() == Some(names[survivor_index].as_str()) {
            took_over = Some(killed_at.elapsed());
            break;
        }
        last = holder;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(took_over) = took_over else {
        let worker = survivor.worker(LEASED_WORKER).await;
        panic!(
            "{} did not take the {LEASED_WORKER} lease within 45 s of {}'s death (holder: \
             {last:?}); its worker: {worker}",
            names[survivor_index], names[holder_index],
        );
    };
    eprintln!("{} took over after {took_over:.1?}", names[survivor_index]);
    assert!(
        took_over <= Duration::from_secs(31),
        "{} took over only after {took_over:?}",
        names[survivor_index]
    );
    drop(replicas);
    drop(database);
}
