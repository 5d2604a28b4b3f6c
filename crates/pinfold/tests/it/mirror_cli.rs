//! The mirror's commands end to end: `pinfold upstream add|list|remove` on a real
//! `pinfold.toml`, and `pinfold drift`, `history` and `promote` against a mirror Pinfold
//! pulling through an upstream Pinfold whose tag moves.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{
    Image, ImageFormat, RegistryClient, Rng, TestServer, ToolOutput, MANIFEST_ACCEPT,
};
use crate::harness::{Target, Tool};

/// The hand-written configuration the upstream commands edit.
const CONFIG: &str = "# Pinfold for the build farm\nlisten = \"127.0.0.1:5000\" # loopback only\n";

/// Runs the real binary with `args`.
async fn pinfold(args: &[&str]) -> ToolOutput {
    Tool::new(env!("CARGO_BIN_EXE_pinfold"))
        .args(args)
        .env("RUST_LOG", "warn")
        .timeout(Duration::from_secs(60))
        .output()
        .await
}

fn assert_code(out: &ToolOutput, code: i32) {
    assert_eq!(
        out.code(),
        Some(code),
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        out.stdout(),
        out.stderr()
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read pinfold.toml")
}

#[tokio::test]
async fn mirror_cli_upstream_add_list_remove() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pinfold.toml");
    std::fs::write(&path, CONFIG).expect("write config");
    let config = path.to_str().expect("utf-8 path");

    let out = pinfold(&[
        "--config",
        config,
        "upstream",
        "add",
        "docker.io",
        "https://registry-1.docker.io",
        "--policy",
        "cooldown",
        "--cooldown-seconds",
        "86400",
        "--redirect-host",
        "*.cloudflare.docker.com",
    ])
    .await;
    assert_code(&out, 0);
    assert!(out.stdout().contains("restart"), "{}", out.stdout());
    let out = pinfold(&[
        "--config",
        config,
        "upstream",
        "add",
        "ghcr.io",
        "https://ghcr.io",
        "--username",
        "bot",
        "--default",
        "--refresh-seconds",
        "60",
    ])
    .await;
    assert_code(&out, 0);
    let text = read(&path);
    assert!(text.starts_with(CONFIG), "comments kept:\n{text}");
    assert_eq!(text.matches("[[upstream]]").count(), 2, "{text}");

    let out = pinfold(&["--config", config, "upstream", "list"]).await;
    assert_code(&out, 0);
    let table = out.stdout();
    assert!(table.contains("NAME"), "{table}");
    assert!(
        table.contains("docker.io") && table.contains("cooldown"),
        "{table}"
    );
    assert!(
        table.contains("ghcr.io") && table.contains("60s"),
        "{table}"
    );
    let out = pinfold(&["--config", config, "upstream", "list", "--json"]).await;
    assert_code(&out, 0);
    let list: Value = serde_json::from_str(&out.stdout()).expect("list JSON");
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["name"], "docker.io");
    assert_eq!(list[0]["policy"], "cooldown");
    assert_eq!(list[0]["cooldown_seconds"], 86400);
    assert_eq!(list[1]["username"], "bot");
    assert_eq!(list[1]["default"], true);
    assert!(list[1].get("password").is_none());

    // Bad inputs: exit 2 and the file is left as it was.
    let before = read(&path);
    for args in [
        vec!["upstream", "add", "Docker.IO", "https://x.example"],
        vec!["upstream", "add", "a/b", "https://x.example"],
        vec!["upstream", "add", "docker.io", "https://other.example"],
        vec!["upstream", "add", "quay.io", "ftp://quay.io"],
        vec!["upstream", "add", "quay.io", "https://quay.io", "--default"],
        vec!["upstream", "remove", "nope"],
    ] {
        let mut full = vec!["--config", config];
        full.extend(args.iter().copied());
        let out = pinfold(&full).await;
        assert_code(&out, 2);
        assert!(!out.stderr().is_empty(), "{args:?}: no message");
        assert_eq!(read(&path), before, "{args:?} changed the file");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");

    for name in ["ghcr.io", "docker.io"] {
        let out = pinfold(&["--config", config, "upstream", "remove", name]).await;
        assert_code(&out, 0);
    }
    assert_eq!(read(&path), CONFIG, "removing both restores the file");

    // A missing file is created.
    let fresh = dir.path().join("new.toml");
    let fresh_str = fresh.to_str().expect("utf-8 path");
    let out = pinfold(&[
        "--config",
        fresh_str,
        "upstream",
        "add",
        "up",
        "http://127.0.0.1:5001",
    ])
    .await;
    assert_code(&out, 0);
    assert!(read(&fresh).contains("name = \"up\""));
}

/// Polls `pinfold drift --json` until it lists an open event (bounded).
async fn wait_for_drift(server: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = pinfold(&["drift", "--json", "--server", server]).await;
        if out.code() == Some(1) {
            let events: Value = serde_json::from_str(&out.stdout()).expect("drift JSON");
            return events.as_array().expect("events").clone();
        }
        assert_code(&out, 0);
        assert!(
            Instant::now() < deadline,
            "no drift within 30 s: {}",
            out.stdout()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn mirror_cli_drift_history_promote_story() {
    if Target::from_env() != Target::Pinfold {
        return;
    }
    let upstream = TestServer::start_target(Target::Pinfold).await;
    let up = RegistryClient::new(upstream.client().clone(), &upstream.url());
    let mut rng = Rng::new();
    let a = Image::random(&mut rng, ImageFormat::Oci, "amd64", 1, 256);
    let b = Image::random(&mut rng, ImageFormat::Oci, "amd64", 1, 256);
    up.push_image("ruby", "2.7", &a).await;

    let upstreams = format!(
        "[{{name = \"up\", url = \"{}\", refresh_seconds = 1}}]",
        upstream.url()
    );
    let mirror = TestServer::start_with_env(&[
        ("PINFOLD_UPSTREAM", upstreams.as_str()),
        ("PINFOLD_MIRROR_DRIFT_INTERVAL_SECONDS", "1"),
    ])
    .await;
    let server = mirror.url();
    let manifest = |reference: String| {
        let client = mirror.client().clone();
        let url = format!("{server}/v2/up/ruby/manifests/{reference}");
        async move {
            let response = client
                .get(&url)
                .header("Accept", MANIFEST_ACCEPT)
                .send()
                .await
                .expect("GET manifest");
            assert!(response.status().is_success(), "GET {url}: {response:?}");
            response.bytes().await.expect("manifest body").to_vec()
        }
    };
    assert_eq!(manifest("2.7".into()).await, a.manifest.bytes);

    // Before any move: no drift, the journal has A.
    assert_code(&pinfold(&["drift", "--server", &server]).await, 0);
    let out = pinfold(&["history", "up/ruby:2.7", "--server", &server, "--json"]).await;
    assert_code(&out, 0);
    let history: Value = serde_json::from_str(&out.stdout()).expect("history JSON");
    assert_eq!(history[0]["new_digest"], a.manifest.digest.as_str());

    // The upstream moves the tag; the poller notices.
    up.push_image("ruby", "2.7", &b).await;
    let events = wait_for_drift(&server).await;
    assert_eq!(events[0]["repository"], "up/ruby");
    assert_eq!(events[0]["pinned_digest"], a.manifest.digest.as_str());
    assert_eq!(events[0]["upstream_digest"], b.manifest.digest.as_str());
    let short = |d: &str| d[..19].to_owned();
    let out = pinfold(&["drift", "--server", &server]).await;
    assert_code(&out, 1);
    let table = out.stdout();
    assert!(table.contains("TAG REF"), "{table}");
    assert!(table.contains("up/ruby:2.7"), "{table}");
    assert!(table.contains(&short(&a.manifest.digest)), "{table}");
    assert!(table.contains(&short(&b.manifest.digest)), "{table}");
    assert!(table.contains("open"), "{table}");
    // Pinned: the mirror still serves A.
    assert_eq!(manifest("2.7".into()).await, a.manifest.bytes);
    let out = pinfold(&["history", "up/ruby:2.7", "--server", &server]).await;
    assert_code(&out, 0);
    assert!(out.stdout().contains(&short(&a.manifest.digest)));

    // Promote, with the server's host:port in the reference as a docker user would write it.
    let reference = format!("{}/up/ruby:2.7", mirror.host_port());
    let out = pinfold(&[
        "promote", &reference, "--actor", "alice", "--server", &server,
    ])
    .await;
    assert_code(&out, 0);
    assert!(
        out.stdout().starts_with("promoted up/ruby:2.7 "),
        "{}",
        out.stdout()
    );
    assert!(out.stdout().contains(&short(&b.manifest.digest)));
    assert_eq!(manifest("2.7".into()).await, b.manifest.bytes);
    let out = pinfold(&["promote", "up/ruby:2.7", "--server", &server]).await;
    assert_code(&out, 0);
    assert!(out.stdout().contains("already at"), "{}", out.stdout());

    let out = pinfold(&["history", "up/ruby:2.7", "--server", &server, "--json"]).await;
    assert_code(&out, 0);
    let history: Value = serde_json::from_str(&out.stdout()).expect("history JSON");
    let history = history.as_array().expect("history array");
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0]["new_digest"], a.manifest.digest.as_str());
    assert_eq!(history[1]["previous_digest"], a.manifest.digest.as_str());
    assert_eq!(history[1]["new_digest"], b.manifest.digest.as_str());
    assert_eq!(history[1]["source"], "promote");
    assert_eq!(history[1]["actor"], "alice");
    let out = pinfold(&["history", "up/ruby:2.7", "--server", &server]).await;
    assert_code(&out, 0);
    let table = out.stdout();
    assert!(
        table.contains("SOURCE") && table.contains("promote"),
        "{table}"
    );
    let out = pinfold(&[
        "history",
        "up/ruby:2.7",
        "--at",
        "2000-01-01T00:00:00Z",
        "--server",
        &server,
    ])
    .await;
    assert_code(&out, 0);
    assert!(out.stdout().contains("did not exist"), "{}", out.stdout());

    assert_code(&pinfold(&["drift", "--server", &server]).await, 0);
    let out = pinfold(&["drift", "--all", "--json", "--server", &server]).await;
    assert_code(&out, 0);
    let events: Value = serde_json::from_str(&out.stdout()).expect("drift JSON");
    assert!(!events[0]["resolved_at"].is_null(), "{events}");

    // The old digest is still served.
    assert_eq!(manifest(a.manifest.digest.clone()).await, a.manifest.bytes);

    // API errors print the server's message and exit 2.
    let out = pinfold(&["history", "up/nothing:1", "--server", &server]).await;
    assert_code(&out, 2);
    assert!(out.stderr().contains("no history"), "{}", out.stderr());
}
