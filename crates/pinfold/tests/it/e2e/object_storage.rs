//! `pinfold serve` with its blobs in S3-compatible object storage (`[storage] backend = "s3"`),
//! on Garage (issue 17): skopeo pushes and pulls with every digest unchanged and no blob on the
//! local disk; two servers sharing the bucket and a PostgreSQL database carry one chunked upload
//! between them, also when the one that began it is killed; a store that cannot be used stops
//! `pinfold serve` at start with one line.
//!
//! Needs `TEST_PINFOLD_S3_*` (scripts/test starts Garage with `scripts/garage` and sets them)
//! and, for the two-server test, `TEST_PINFOLD_POSTGRES_URL`. Without them the tests say they
//! are skipped, except under CI, where they fail.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::e2e::postgres::scratch_database;
use crate::harness::{
    read_oci_layout_blob, require_tool, walk_files, write_oci_layout, Image, ImageFormat,
    RegistryClient, Rng, TestServer, Tool,
};

/// `PINFOLD_STORAGE_*` for the Garage of `TEST_PINFOLD_S3_*`, under a prefix of this test's
/// own; `None` (the test skips) when the variables are not set, which CI does not allow.
pub(crate) fn storage_env(test: &str) -> Option<Vec<(String, String)>> {
    let var = |name: &str| std::env::var(format!("TEST_PINFOLD_S3_{name}")).ok();
    let Some(endpoint) = var("ENDPOINT") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide TEST_PINFOLD_S3_ENDPOINT (scripts/garage)"
        );
        eprintln!("e2e::object_storage::{test}: skipped: TEST_PINFOLD_S3_ENDPOINT not set");
        return None;
    };
    let prefix = format!("e2e/{test}-{}-{}", std::process::id(), Rng::new().token());
    Some(vec![
        ("PINFOLD_STORAGE_BACKEND".into(), "s3".into()),
        ("PINFOLD_STORAGE_ENDPOINT".into(), endpoint),
        (
            "PINFOLD_STORAGE_BUCKET".into(),
            var("BUCKET").expect("bucket"),
        ),
        (
            "PINFOLD_STORAGE_REGION".into(),
            var("REGION").expect("region"),
        ),
        ("PINFOLD_STORAGE_PREFIX".into(), prefix),
        (
            "PINFOLD_STORAGE_ACCESS_KEY_ID".into(),
            var("ACCESS_KEY_ID").expect("key id"),
        ),
        (
            "PINFOLD_STORAGE_SECRET_ACCESS_KEY".into(),
            var("SECRET_ACCESS_KEY").expect("secret"),
        ),
    ])
}

/// The environment of a cluster of replicas: [`storage_env`] and a scratch PostgreSQL database
/// (dropped with the returned guard); `None` when the test is skipped.
pub(crate) async fn cluster_env(
    test: &str,
) -> Option<(Vec<(String, String)>, crate::e2e::postgres::ScratchDatabase)> {
    let mut env = storage_env(test)?;
    let database = scratch_database().await?;
    env.push(("PINFOLD_META_POSTGRES_URL".into(), database.url.clone()));
    Some((env, database))
}

pub(crate) fn as_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Files (not directories) under the server's data directory that hold blob bytes.
fn local_blob_files(data_dir: &Path) -> Vec<std::path::PathBuf> {
    let blobs = data_dir.join("blobs");
    if !blobs.exists() {
        return Vec::new();
    }
    walk_files(&blobs)
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_pushes_and_pulls_through_object_storage_with_digests_unchanged() {
    let Some(env) = storage_env("skopeo") else {
        return;
    };
    let skopeo = require_tool("skopeo", "skopeo");
    let mut server = TestServer::start_with_env(&as_refs(&env)).await;
    let mut rng = Rng::new();
    // Layers over 8 MiB go through S3 multipart uploads.
    let image = Image::random(&mut rng, ImageFormat::Oci, "amd64", 3, 9 * 1024 * 1024);
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("source");
    let blobs: Vec<_> = std::iter::once(&image.config)
        .chain(image.layers.iter())
        .collect();
    write_oci_layout(&source, "1", &image.manifest, blobs.iter().copied());
    let dest = format!("docker://{}/team/s3:1", server.host_port());
    let copy = |src: String, dst: String| {
        Tool::new(skopeo.clone())
            .arg("--insecure-policy")
            .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
            .arg("--preserve-digests")
            .args([src, dst])
            .timeout(Duration::from_secs(120))
            .run_ok()
    };
    copy(format!("oci:{}:1", source.display()), dest.clone()).await;
    assert!(
        local_blob_files(server.data_dir()).is_empty(),
        "no blob bytes on the local disk: {:?}",
        local_blob_files(server.data_dir())
    );

    // After a restart (nothing in memory), everything comes back byte for byte.
    server.restart().await;
    let back = scratch.path().join("back");
    let dest = format!("docker://{}/team/s3:1", server.host_port());
    copy(dest, format!("oci:{}:1", back.display())).await;
    for blob in blobs.iter().chain(std::iter::once(&&image.manifest)) {
        assert!(
            read_oci_layout_blob(&back, &blob.digest) == blob.bytes,
            "{} came back with other bytes",
            blob.digest
        );
    }
    // Ranges are served from the store too.
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    let layer = &image.layers[0];
    let ranged = server
        .client()
        .get(format!(
            "{}/v2/team/s3/blobs/{}",
            server.url(),
            layer.digest
        ))
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.bytes().await.unwrap(), &layer.bytes[100..200]);
    let fetched = registry
        .get_manifest("team/s3", "1")
        .await
        .expect("manifest");
    assert_eq!(fetched.body, image.manifest.bytes);
}

/// Two servers over one bucket and one PostgreSQL database: an upload begun on one continues
/// on the other (no sticky sessions), also after the first was killed with SIGKILL, and what
/// one wrote the other serves.
#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_upload_moves_between_servers_sharing_the_bucket_and_database() {
    let Some((env, database)) = cluster_env("replicas").await else {
        return;
    };
    let mut first = TestServer::start_with_env(&as_refs(&env)).await;
    let second = TestServer::start_with_env(&as_refs(&env)).await;
    let client = first.client().clone();
    let mut rng = Rng::new();
    let image = Image::random(&mut rng, ImageFormat::Oci, "amd64", 1, 3 * 1024 * 1024);
    let layer = &image.layers[0];
    let third = layer.bytes.len() / 3;

    // POST and the first chunk on the first server.
    let started = client
        .post(format!("{}/v2/team/moved/blobs/uploads/", first.url()))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let location = started.headers()["location"].to_str().unwrap().to_owned();
    let patch = |base: String, start: usize, end: usize| {
        let client = client.clone();
        let location = location.clone();
        let bytes = layer.bytes[start..end].to_vec();
        async move {
            client
                .patch(format!("{base}{location}"))
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("{start}-{}", end - 1))
                .body(bytes)
                .send()
                .await
                .unwrap()
        }
    };
    let answer = patch(first.url(), 0, third).await;
    assert_eq!(answer.status(), 202);
    // The second server knows the session and where it stands.
    let status = client
        .get(format!("{}{location}", second.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 204);
    assert_eq!(
        status.headers()["range"].to_str().unwrap(),
        format!("0-{}", third - 1)
    );
    let answer = patch(second.url(), third, 2 * third).await;
    assert_eq!(answer.status(), 202);
    // The first server dies; the upload does not.
    first.kill();
    let answer = patch(second.url(), 2 * third, layer.bytes.len()).await;
    assert_eq!(answer.status(), 202);
    let done = client
        .put(format!(
            "{}{location}?digest={}",
            second.url(),
            layer.digest
        ))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 201, "{}", done.text().await.unwrap());

    // The rest of the image through the second server; read it all through a restarted first.
    let registry = RegistryClient::new(client.clone(), &second.url());
    registry
        .push_blob("team/moved", &image.config)
        .await
        .unwrap();
    registry
        .put_manifest("team/moved", "1", &image.manifest)
        .await
        .unwrap();
    first.restart().await;
    let registry = RegistryClient::new(client.clone(), &first.url());
    let fetched = registry
        .get_blob("team/moved", &layer.digest)
        .await
        .unwrap();
    assert_eq!(fetched.body, layer.bytes);
    let fetched = registry.get_manifest("team/moved", "1").await.unwrap();
    assert_eq!(fetched.body, image.manifest.bytes);
    drop(second);
    drop(database);
}

/// Wrong credentials, a missing bucket, an unreachable endpoint: `pinfold serve` exits 2 at
/// start with one line that says what is wrong and never the secret.
#[tokio::test(flavor = "multi_thread")]
async fn serve_refuses_a_store_it_cannot_use_with_one_line() {
    let Some(env) = storage_env("refusals") else {
        return;
    };
    let secret = env
        .iter()
        .find(|(k, _)| k == "PINFOLD_STORAGE_SECRET_ACCESS_KEY")
        .map(|(_, v)| v.clone())
        .unwrap();
    for (change, value, expect) in [
        (
            "PINFOLD_STORAGE_SECRET_ACCESS_KEY",
            "f".repeat(64),
            "object storage s3://",
        ),
        (
            "PINFOLD_STORAGE_BUCKET",
            "no-such-bucket".to_owned(),
            "no-such-bucket",
        ),
        (
            "PINFOLD_STORAGE_ENDPOINT",
            "http://127.0.0.1:9".to_owned(),
            "127.0.0.1:9",
        ),
    ] {
        let data = tempfile::tempdir().unwrap();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pinfold"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .kill_on_drop(true);
        for (k, v) in &env {
            command.env(k, if k == change { &value } else { v });
        }
        let started = Instant::now();
        let output = tokio::time::timeout(Duration::from_secs(90), command.output())
            .await
            .unwrap_or_else(|_| panic!("{change}: pinfold serve did not stop within 90 s"))
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{change}: {stderr}");
        assert!(stderr.contains(expect), "{change}: {stderr}");
        assert!(
            !stderr.contains(&secret) && !stderr.contains(&"f".repeat(64)),
            "{change}: the secret is never printed: {stderr}"
        );
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(lines.len() <= 2, "{change}: short: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(60), "{change}");
    }
}

/// Two replicas over one bucket and one PostgreSQL database: a tag moved through one is what
/// the other serves next, although the other had the old digest cached; each background worker
/// runs on exactly one of them, and the other takes it over when the holder dies.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_see_each_others_tag_moves_and_share_out_the_workers() {
    let Some((env, database)) = cluster_env("coordination").await else {
        return;
    };
    let first = TestServer::start_with_env(&as_refs(&env)).await;
    let second = TestServer::start_with_env(&as_refs(&env)).await;
    let mut rng = Rng::new();
    let old = Image::random(&mut rng, ImageFormat::Oci, "amd64", 1, 1024);
    let new = Image::random(&mut rng, ImageFormat::Oci, "amd64", 1, 1024);
    let through_first = RegistryClient::new(first.client().clone(), &first.url());
    let through_second = RegistryClient::new(second.client().clone(), &second.url());
    through_first.push_image("team/moving", "1", &old).await;
    // The second replica resolves (and caches) the tag, twice.
    for _ in 0..2 {
        let fetched = through_second
            .get_manifest("team/moving", "1")
            .await
            .unwrap();
        assert_eq!(fetched.body, old.manifest.bytes);
    }
    through_first.push_image("team/moving", "1", &new).await;
    let moved = Instant::now();
    loop {
        let fetched = through_second
            .get_manifest("team/moving", "1")
            .await
            .unwrap();
        if fetched.body == new.manifest.bytes {
            break;
        }
        assert!(
            moved.elapsed() < Duration::from_secs(5),
            "the second replica still serves the old digest 5 s after the move"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Each worker has one holder, the same seen from both replicas, and it works on that one.
    let holders = |workers: &serde_json::Value| -> Vec<(String, String)> {
        workers
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["name"] != "change-listener")
            .map(|w| {
                (
                    w["name"].as_str().unwrap().to_owned(),
                    w["holder"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (a, b) = loop {
        let a = first.get_json("/api/v1/workers").await;
        let b = second.get_json("/api/v1/workers").await;
        if holders(&a) == holders(&b) && holders(&a).iter().all(|(_, h)| !h.is_empty()) {
            break (a, b);
        }
        assert!(Instant::now() < deadline, "no agreed holders: {a} / {b}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = (a, b);
    let mut servers = [first, second];
    let mut janitors = Vec::new();
    for server in &servers {
        janitors.push(server.worker("upload-janitor").await);
    }
    assert_eq!(janitors[0]["holder"], janitors[1]["holder"]);
    let held = janitors
        .iter()
        .position(|j| j["holder"] == j["replica"])
        .unwrap_or_else(|| panic!("one replica holds the janitor: {janitors:?}"));
    let other = 1 - held;
    assert_eq!(janitors[other]["state"], "standby", "{janitors:?}");
    let killed = Instant::now();
    servers[held].kill();
    loop {
        let j = servers[other].worker("upload-janitor").await;
        if j["holder"] == j["replica"] && j["state"] != "standby" {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the surviving replica did not take the lease within 30 s: {j}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(servers);
    drop(database);
}

/// `[storage] redirect = true`: a blob GET answers 307 to a presigned URL of the store, which
/// serves the exact bytes (ranges too); skopeo pulls through it; a blob the repository does not
/// hold is still a 404, never a URL.
#[tokio::test(flavor = "multi_thread")]
async fn blob_gets_redirect_to_presigned_store_urls_when_asked() {
    let Some(mut env) = storage_env("redirect") else {
        return;
    };
    env.push(("PINFOLD_STORAGE_REDIRECT".into(), "true".into()));
    let server = TestServer::start_with_env(&as_refs(&env)).await;
    let mut rng = Rng::new();
    let image = Image::random(&mut rng, ImageFormat::Oci, "amd64", 2, 64 * 1024);
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    registry.push_image("team/redirected", "1", &image).await;
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let layer = &image.layers[0];
    let answer = no_follow
        .get(format!(
            "{}/v2/team/redirected/blobs/{}",
            server.url(),
            layer.digest
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 307);
    assert_eq!(
        answer.headers()["docker-content-digest"].to_str().unwrap(),
        layer.digest
    );
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    let endpoint = std::env::var("TEST_PINFOLD_S3_ENDPOINT").unwrap();
    assert!(location.starts_with(&endpoint), "{location}");
    assert!(location.contains("X-Amz-Signature="), "{location}");
    let direct = no_follow.get(&location).send().await.unwrap();
    assert_eq!(direct.status(), 200);
    assert_eq!(direct.bytes().await.unwrap(), layer.bytes);
    let ranged = no_follow
        .get(&location)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.bytes().await.unwrap(), &layer.bytes[10..20]);
    // HEAD stays with Pinfold (sizes and digests, no body to offload).
    let head = no_follow
        .head(format!(
            "{}/v2/team/redirected/blobs/{}",
            server.url(),
            layer.digest
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    // Another repository does not hold it: 404, no URL handed out.
    let other = no_follow
        .get(format!(
            "{}/v2/team/other/blobs/{}",
            server.url(),
            layer.digest
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    assert!(other.headers().get("location").is_none());
    // skopeo follows the redirects.
    let skopeo = require_tool("skopeo", "skopeo");
    let scratch = tempfile::tempdir().unwrap();
    let back = scratch.path().join("back");
    Tool::new(skopeo)
        .arg("--insecure-policy")
        .args(["copy", "--src-tls-verify=false", "--preserve-digests"])
        .arg(format!("docker://{}/team/redirected:1", server.host_port()))
        .arg(format!("oci:{}:1", back.display()))
        .timeout(Duration::from_secs(120))
        .run_ok()
        .await;
    for blob in std::iter::once(&image.config).chain(image.layers.iter()) {
        assert!(read_oci_layout_blob(&back, &blob.digest) == blob.bytes);
    }
}

/// APT on object storage with two replicas: a `.deb` uploaded through one (Artifactory's call)
/// is listed in the indices and served, byte for byte, by the other; both sign with one key,
/// the one the first replica to start put in the store.
#[tokio::test(flavor = "multi_thread")]
async fn apt_uploads_and_indices_are_shared_by_replicas_on_object_storage() {
    let Some((env, database)) = cluster_env("apt").await else {
        return;
    };
    let first = TestServer::start_with_env(&as_refs(&env)).await;
    let second = TestServer::start_with_env(&as_refs(&env)).await;
    let tmp = tempfile::tempdir().unwrap();
    let deb = std::fs::read(crate::apt_cli::build_deb(tmp.path(), "1.2.13-1").await).unwrap();
    let put = first
        .client()
        .put(format!(
            "{}/artifactory/ci/pool/containerd.io_1.2.13-1_amd64.deb;deb.distribution=stable;deb.component=main;deb.architecture=amd64",
            first.url()
        ))
        .body(deb.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "{}", put.text().await.unwrap());

    let get = |server: &TestServer, path: &str| {
        let request = server.client().get(format!("{}{path}", server.url()));
        async move {
            let answer = request.send().await.unwrap();
            (
                answer.status().as_u16(),
                answer.bytes().await.unwrap().to_vec(),
            )
        }
    };
    let key_first = get(&first, "/apt/pinfold.asc").await;
    let key_second = get(&second, "/apt/pinfold.asc").await;
    assert_eq!(key_first.0, 200);
    assert_eq!(key_first, key_second, "both replicas sign with one key");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, packages) =
            get(&second, "/apt/ci/dists/stable/main/binary-amd64/Packages").await;
        if status == 200 && String::from_utf8_lossy(&packages).contains("Version: 1.2.13-1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second replica does not list the package: {status} {}",
            String::from_utf8_lossy(&packages)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, in_release) = get(&second, "/apt/ci/dists/stable/InRelease").await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&in_release).contains("BEGIN PGP SIGNED MESSAGE"));
    let (status, served) = get(&second, "/apt/ci/pool/containerd.io_1.2.13-1_amd64.deb").await;
    assert_eq!(status, 200);
    assert!(served == deb, "the .deb comes back byte for byte");
    for server in [&first, &second] {
        assert!(
            local_blob_files(server.data_dir()).is_empty(),
            "no blob bytes on the local disk"
        );
    }
    drop((first, second));
    drop(database);
}

/// With users, a registry token issued by one replica is accepted by another: replicas over
/// one bucket share the token-signing key (the first to start stores it).
#[tokio::test(flavor = "multi_thread")]
async fn a_registry_token_from_one_replica_works_on_another() {
    let Some((mut env, database)) = cluster_env("tokens").await else {
        return;
    };
    // bcrypt (cost 5) of "benchpw".
    let users = r#"[{name = "alice", password_bcrypt = "$2b$05$021bV4BQImEEeSxl/Wk/HOse9zTeArg2FJnTXJksxUyonuCJDR5fy"}]"#;
    let rules = r#"[{repositories = "team/*", users = ["alice"], actions = ["pull", "push"]}]"#;
    env.push(("PINFOLD_USER".into(), users.into()));
    env.push(("PINFOLD_PERMISSION".into(), rules.into()));
    let first = TestServer::start_with_env(&as_refs(&env)).await;
    let second = TestServer::start_with_env(&as_refs(&env)).await;
    let answer: serde_json::Value = first
        .client()
        .get(format!(
            "{}/v2/token?service=pinfold&scope=repository:team/app:pull,push",
            first.url()
        ))
        .basic_auth("alice", Some("benchpw"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = answer["token"].as_str().expect("a token").to_owned();
    for server in [&first, &second] {
        let answer = server
            .client()
            .post(format!("{}/v2/team/app/blobs/uploads/", server.url()))
            .bearer_auth(&token)
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202, "{}", server.url());
    }
    let key =
        |server: &TestServer| std::fs::read(server.data_dir().join("auth/jwt-es256.pk8")).unwrap();
    assert!(key(&first) == key(&second), "one signing key");
    drop((first, second));
    drop(database);
}

/// Issue 17 item 4, durability tools on object storage: `pinfold backup` of a cluster (S3 and
/// PostgreSQL) reads the blobs from the bucket (a second run copies none) and the keys the
/// replicas share from its `state/`; `pinfold verify` hashes every blob in the bucket. The
/// backup restores onto one plain node (filesystem and SQLite, none of the cluster's
/// configuration), which serves the image with the same digests and signs APT indices with
/// the cluster's key, and back into a fresh bucket prefix and PostgreSQL database, where a
/// server serves it again and no blob lands on the local disk.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_backup_restores_onto_a_plain_node_and_back() {
    use crate::harness::Tool;
    let Some(mut env) = storage_env("backup") else {
        return;
    };
    let (Some(source), Some(target)) = (scratch_database().await, scratch_database().await) else {
        return;
    };
    let mut env_back = storage_env("backup-back").expect("storage env");
    env.push(("PINFOLD_META_POSTGRES_URL".into(), source.url.clone()));
    env_back.push(("PINFOLD_META_POSTGRES_URL".into(), target.url.clone()));
    let with_env =
        |tool: Tool, env: &[(String, String)]| env.iter().fold(tool, |tool, (k, v)| tool.env(k, v));

    let cluster = TestServer::start_with_env(&as_refs(&env)).await;
    let mut rng = Rng::new();
    // Layers over 8 MiB: multipart objects.
    let image = Image::random(&mut rng, ImageFormat::Oci, "amd64", 2, 9 * 1024 * 1024);
    RegistryClient::new(cluster.client().clone(), &cluster.url())
        .push_image("team/dr", "1", &image)
        .await;
    let apt_key = |server: &TestServer| {
        let request = server
            .client()
            .get(format!("{}/apt/pinfold.asc", server.url()));
        async move {
            let answer = request.send().await.unwrap();
            assert_eq!(answer.status(), 200);
            answer.bytes().await.unwrap().to_vec()
        }
    };
    let cluster_key = apt_key(&cluster).await;

    // The backup runs from a machine of its own: an empty data directory, the cluster's
    // configuration.
    let tmp = tempfile::tempdir().unwrap();
    let backups = tmp.path().join("backups");
    let backup_node = tmp.path().join("backup-node");
    let backup = || {
        with_env(Tool::pinfold(), &env)
            .args(["backup", "--json", "--to"])
            .arg(&backups)
            .arg("--data-dir")
            .arg(&backup_node)
            .output()
    };
    let out = backup().await;
    assert_eq!(out.code(), Some(0), "backup: {}", out.stderr());
    let summary: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(
        summary["backup"]["missing"],
        serde_json::json!([]),
        "{summary}"
    );
    // The manifest, the config and two layers.
    assert_eq!(summary["backup"]["blobs_copied"], 4, "{summary}");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(summary["backup"]["path"].as_str().unwrap()).join("manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let files: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    for shared in ["state/apt/signing-key.asc", "state/auth/jwt-es256.pk8"] {
        assert!(
            files.contains(&shared),
            "{shared} from the bucket: {files:?}"
        );
    }
    // Incremental: a second backup reads no blob again.
    let out = backup().await;
    assert_eq!(out.code(), Some(0), "backup: {}", out.stderr());
    let again: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(again["backup"]["blobs_copied"], 0, "{again}");
    assert_eq!(again["backup"]["blobs_skipped"], 4, "{again}");

    let verify = |env: &[(String, String)], data_dir: &Path| {
        with_env(Tool::pinfold(), env)
            .args(["verify", "--json", "--data-dir"])
            .arg(data_dir)
            .output()
    };
    let out = verify(&env, &backup_node).await;
    assert_eq!(
        out.code(),
        Some(0),
        "verify: {}{}",
        out.stdout(),
        out.stderr()
    );
    let report: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(report["findings"], serde_json::json!([]), "{report}");
    assert_eq!(report["blobs_checked"], 4, "{report}");
    assert_eq!(report["references_checked"], 4, "{report}");
    drop(cluster);

    let serves_the_image = |server: &TestServer| {
        let registry = RegistryClient::new(server.client().clone(), &server.url());
        let image = &image;
        async move {
            let fetched = registry.get_manifest("team/dr", "1").await.unwrap();
            assert_eq!(fetched.status, 200);
            assert!(fetched.body == image.manifest.bytes, "the same manifest");
            for blob in image.blobs() {
                let fetched = registry.get_blob("team/dr", &blob.digest).await.unwrap();
                assert_eq!(fetched.status, 200, "{}", blob.digest);
                assert!(fetched.body == blob.bytes, "{} byte for byte", blob.digest);
            }
        }
    };
    let restore = |env: &[(String, String)], data_dir: &Path| {
        with_env(Tool::pinfold(), env)
            .args(["restore", "--json", "--from"])
            .arg(&backups)
            .arg("--data-dir")
            .arg(data_dir)
            .output()
    };

    // Onto one plain node: filesystem and SQLite.
    let mut plain = TestServer::start_with_env(&[]).await;
    assert!(plain.terminate(), "server stops cleanly");
    let plain_dir = plain.data_dir().to_owned();
    std::fs::remove_dir_all(&plain_dir).unwrap();
    let out = restore(&[], &plain_dir).await;
    assert_eq!(out.code(), Some(0), "restore: {}", out.stderr());
    let restored: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(restored["metadata_in_postgres"], false, "{restored}");
    assert!(plain_dir.join("meta.db").is_file());
    assert_eq!(
        local_blob_files(&plain_dir).len(),
        4,
        "the blobs are files now"
    );
    plain.restart().await;
    serves_the_image(&plain).await;
    assert!(
        apt_key(&plain).await == cluster_key,
        "the cluster's APT key"
    );
    let out = verify(&[], &plain_dir).await;
    assert_eq!(
        out.code(),
        Some(0),
        "verify: {}{}",
        out.stdout(),
        out.stderr()
    );
    drop(plain);

    // And back: a fresh bucket prefix and PostgreSQL database.
    let mut back = TestServer::start_with_env(&[]).await;
    assert!(back.terminate(), "server stops cleanly");
    let back_dir = back.data_dir().to_owned();
    std::fs::remove_dir_all(&back_dir).unwrap();
    let out = restore(&env_back, &back_dir).await;
    assert_eq!(out.code(), Some(0), "restore: {}", out.stderr());
    let restored: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(restored["metadata_in_postgres"], true, "{restored}");
    assert!(
        local_blob_files(&back_dir).is_empty(),
        "the blobs went into the bucket: {:?}",
        local_blob_files(&back_dir)
    );
    for (key, value) in &env_back {
        back.set_env(key, value);
    }
    back.restart().await;
    serves_the_image(&back).await;
    assert!(apt_key(&back).await == cluster_key, "the cluster's APT key");
    let out = verify(&env_back, &back_dir).await;
    assert_eq!(
        out.code(),
        Some(0),
        "verify: {}{}",
        out.stdout(),
        out.stderr()
    );
    let report: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(report["blobs_checked"], 4, "{report}");
    drop(back);
    drop((source, target));
}
