//! Story 2 of DESIGN.md against the real server: an upstream archive built with `reprepro`
//! and served on loopback by `python3 -m http.server` is mirrored; a snapshot is published;
//! the upstream gains containerd.io 1.2.13-2; a stock apt on the published distribution still
//! gets 1.2.13-1; the snapshot diff shows the upgrade; after promotion apt gets -2.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::apt::{build_deb, require_tool, run, wait_for, AptSandbox};
use crate::harness::TestServer;

/// A static file server on 127.0.0.1 (python3 -m http.server), killed on drop.
struct StaticServer {
    _child: tokio::process::Child,
    url: String,
}

impl StaticServer {
    async fn start(dir: &Path) -> StaticServer {
        let python = require_tool("python3", "python3");
        let mut child = tokio::process::Command::new(python)
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("http.server announces its port within 10 s")
            .unwrap()
            .expect("a line");
        let port = line
            .split(" port ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("port in the announcement")
            .to_owned();
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        StaticServer {
            _child: child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

async fn reprepro(base: &Path, args: &[&str]) {
    let tool = require_tool("reprepro", "reprepro");
    let mut all = vec!["--silent", "-b", base.to_str().unwrap()];
    all.extend_from_slice(args);
    let (ok, out, err) = run(&tool, &all, &[]).await;
    assert!(ok, "reprepro {args:?}: {out}{err}");
}

async fn json_ok(resp: reqwest::Response, status: StatusCode) -> Value {
    let got = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn installs(apt: &AptSandbox, apt_get: &Path) -> String {
    let (ok, out, err) = apt.run(apt_get, &["update"]).await;
    assert!(ok, "apt-get update: {out}{err}");
    let (ok, out, err) = apt.run(apt_get, &["install", "-s", "containerd.io"]).await;
    assert!(ok, "apt-get install -s: {out}{err}");
    out.lines()
        .find(|l| l.starts_with("Inst containerd.io"))
        .unwrap_or_else(|| panic!("no Inst line: {out}"))
        .to_owned()
}

#[tokio::test]
async fn apt_mirror_snapshot_publish_diff_promote_story2() {
    let apt_get = require_tool("apt-get", "apt");
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let upstream = tmp.path().join("upstream");
    std::fs::create_dir_all(upstream.join("conf")).unwrap();
    std::fs::write(
        upstream.join("conf/distributions"),
        "Origin: Docker\nCodename: stable\nSuite: stable\nArchitectures: amd64\nComponents: main\nDescription: upstream\n",
    )
    .unwrap();
    let v1 = build_deb(tmp.path(), "containerd.io", "1.2.13-1", "amd64", None).await;
    let v2 = build_deb(tmp.path(), "containerd.io", "1.2.13-2", "amd64", None).await;
    reprepro(&upstream, &["includedeb", "stable", v1.to_str().unwrap()]).await;
    let web = StaticServer::start(&upstream).await;

    let created = server
        .post("/api/v1/apt/repos")
        .json(&json!({"name": "docker", "kind": "mirror", "upstream_url": web.url, "upstream_suite": "stable", "architectures": ["amd64"]}))
        .send()
        .await
        .unwrap();
    json_ok(created, StatusCode::CREATED).await;
    let report = json_ok(
        server
            .post("/api/v1/apt/repos/docker/sync")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(report["packages"], 1, "{report}");
    assert_eq!(report["downloaded"], 1, "{report}");
    let snap = json!({"name": "docker-1", "repo": "docker", "distribution": "stable"});
    json_ok(
        server
            .post("/api/v1/apt/snapshots")
            .json(&snap)
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let publish = |name: &str| json!({"type": "snapshot", "name": name});
    json_ok(
        server
            .put("/api/v1/apt/publications/hosts/stable")
            .json(&publish("docker-1"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    wait_for(
        &server,
        "/apt/hosts/dists/stable/main/binary-amd64/Packages",
        "Version: 1.2.13-1",
    )
    .await;
    let release = server
        .get("/apt/hosts/dists/stable/Release")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !release.contains("Valid-Until"),
        "a frozen snapshot never expires: {release}"
    );

    let key = server
        .get("/apt/pinfold.asc")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let apt = AptSandbox::new(
        &tmp.path().join("host"),
        &key,
        &format!("{}/apt/hosts stable main", server.base),
    );
    assert!(
        installs(&apt, &apt_get).await.contains("(1.2.13-1"),
        "before the upstream moves"
    );

    // The weekend: upstream replaces -1 with -2; the mirror follows and a new snapshot is taken.
    reprepro(&upstream, &["includedeb", "stable", v2.to_str().unwrap()]).await;
    let report = json_ok(
        server
            .post("/api/v1/apt/repos/docker/sync")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(report["changed"], true, "{report}");
    let snap2 = json!({"name": "docker-2", "repo": "docker", "distribution": "stable"});
    json_ok(
        server
            .post("/api/v1/apt/snapshots")
            .json(&snap2)
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    // Hosts still get -1: the publication points at docker-1.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let line = installs(&apt, &apt_get).await;
    assert!(
        line.contains("(1.2.13-1"),
        "the host moved without a promotion: {line}"
    );

    let diff = json_ok(
        server
            .get("/api/v1/apt/diff?from=docker-1&to=docker-2")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        diff,
        json!({"added": [], "removed": [], "downgraded": [],
               "upgraded": [{"name": "containerd.io", "architecture": "amd64", "from": "1.2.13-1", "to": "1.2.13-2"}]})
    );
    // The web UI says the same to a person: the publication still shows docker-1, the new
    // snapshot links what changed since docker-1, and that page names the upgrade.
    let page = server.get_text("/ui/apt").await;
    for shown in [
        "snapshot <b>docker-1</b> (frozen)",
        r#"href="/ui/apt/diff?from=docker-1&amp;to=docker-2">since docker-1</a>"#,
        "<td>docker stable</td>",
    ] {
        assert!(page.contains(shown), "{shown:?} not on /ui/apt:\n{page}");
    }
    let page = server
        .get_text("/ui/apt/diff?from=docker-1&to=docker-2")
        .await;
    assert!(
        page.contains("<h2>Upgraded (1)</h2>")
            && page.contains(
                "<td><b>containerd.io</b></td><td>amd64</td><td>1.2.13-1</td><td>1.2.13-2</td>"
            )
            && !page.contains("Added")
            && !page.contains("Removed"),
        "{page}"
    );
    let missing = server
        .get("/ui/apt/diff?from=docker-1&to=docker-9")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing
        .text()
        .await
        .unwrap()
        .contains("no snapshot docker-9"));
    let unnamed = server
        .get("/ui/apt/diff?from=docker-1")
        .send()
        .await
        .unwrap();
    assert_eq!(unnamed.status(), StatusCode::BAD_REQUEST);

    // Promotion: switch the publication; hosts get -2, byte for byte.
    json_ok(
        server
            .put("/api/v1/apt/publications/hosts/stable")
            .json(&publish("docker-2"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    wait_for(
        &server,
        "/apt/hosts/dists/stable/main/binary-amd64/Packages",
        "Version: 1.2.13-2",
    )
    .await;
    assert!(
        installs(&apt, &apt_get).await.contains("(1.2.13-2"),
        "after promotion"
    );
    let page = server.get_text("/ui/apt").await;
    assert!(page.contains("snapshot <b>docker-2</b> (frozen)"), "{page}");
    let downloads = tmp.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let (ok, out, err) = apt
        .run_in(&apt_get, &["download", "containerd.io"], &downloads)
        .await;
    assert!(ok, "{out}{err}");
    assert_eq!(
        std::fs::read(downloads.join("containerd.io_1.2.13-2_amd64.deb")).unwrap(),
        std::fs::read(&v2).unwrap()
    );
    // docker-1 is still intact, and a second snapshot name is refused.
    let packages = json_ok(
        server
            .get("/api/v1/apt/snapshots/docker-1/packages")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(packages[0]["version"], "1.2.13-1");
    let again = server
        .post("/api/v1/apt/snapshots")
        .json(&snap)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn apt_mirror_refuses_an_upstream_that_does_not_verify() {
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let upstream = tmp.path().join("upstream");
    std::fs::create_dir_all(upstream.join("conf")).unwrap();
    std::fs::write(
        upstream.join("conf/distributions"),
        "Codename: stable\nArchitectures: amd64\nComponents: main\n",
    )
    .unwrap();
    let v1 = build_deb(tmp.path(), "containerd.io", "1.2.13-1", "amd64", None).await;
    reprepro(&upstream, &["includedeb", "stable", v1.to_str().unwrap()]).await;
    // Tamper with the Packages.gz after the Release listed its hash.
    let packages_gz = upstream.join("dists/stable/main/binary-amd64/Packages.gz");
    let mut bytes = std::fs::read(&packages_gz).unwrap();
    bytes.push(0);
    std::fs::write(&packages_gz, bytes).unwrap();
    let web = StaticServer::start(&upstream).await;
    let created = server
        .post("/api/v1/apt/repos")
        .json(&json!({"name": "m", "kind": "mirror", "upstream_url": web.url, "upstream_suite": "stable"}))
        .send()
        .await
        .unwrap();
    json_ok(created, StatusCode::CREATED).await;
    let resp = server
        .post("/api/v1/apt/repos/m/sync")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not match the Release"),
        "{body}"
    );
    let repo_packages = server
        .get("/apt/m/dists/stable/Release")
        .send()
        .await
        .unwrap();
    assert_eq!(repo_packages.status(), StatusCode::NOT_FOUND);

    // A .deb that differs from its Packages entry: refused, and nothing is kept of it.
    let upstream2 = tmp.path().join("upstream2");
    std::fs::create_dir_all(upstream2.join("conf")).unwrap();
    std::fs::write(
        upstream2.join("conf/distributions"),
        "Codename: stable\nArchitectures: amd64\nComponents: main\n",
    )
    .unwrap();
    reprepro(&upstream2, &["includedeb", "stable", v1.to_str().unwrap()]).await;
    let pool_deb = upstream2.join("pool/main/c/containerd.io/containerd.io_1.2.13-1_amd64.deb");
    let mut deb = std::fs::read(&pool_deb).unwrap();
    let last = deb.len() - 1;
    deb[last] ^= 0xff;
    std::fs::write(&pool_deb, deb).unwrap();
    let web2 = StaticServer::start(&upstream2).await;
    let created = server
        .post("/api/v1/apt/repos")
        .json(&json!({"name": "m2", "kind": "mirror", "upstream_url": web2.url, "upstream_suite": "stable"}))
        .send()
        .await
        .unwrap();
    json_ok(created, StatusCode::CREATED).await;
    let resp = server
        .post("/api/v1/apt/repos/m2/sync")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{body}"
    );
    assert_eq!(server.leftovers(), Vec::<std::path::PathBuf>::new());
    assert_eq!(
        server
            .get("/apt/m2/pool/main/c/containerd.io/containerd.io_1.2.13-1_amd64.deb")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

/// A private GnuPG home with one Ed25519 signing key; its agent is stopped on drop.
struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    async fn new(uid: &str) -> Gpg {
        let gpg = Gpg {
            home: tempfile::tempdir().unwrap(),
        };
        gpg.run(&["--quick-gen-key", uid, "ed25519", "sign", "never"])
            .await;
        gpg
    }

    fn home(&self) -> &str {
        self.home.path().to_str().unwrap()
    }

    async fn run(&self, args: &[&str]) -> String {
        let tool = require_tool("gpg", "gnupg");
        let mut all = vec![
            "--batch",
            "--quiet",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ];
        all.extend_from_slice(args);
        let (ok, out, err) = run(&tool, &all, &[("GNUPGHOME", self.home())]).await;
        assert!(ok, "gpg {args:?}: {err}");
        out
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = std::process::Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

#[tokio::test]
async fn apt_mirror_verifies_a_signed_upstream_inrelease() {
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let signer = Gpg::new("Upstream <up@example.com>").await;
    let stranger = Gpg::new("Stranger <st@example.com>").await;
    let upstream_key = signer.run(&["--armor", "--export"]).await;
    let stranger_key = stranger.run(&["--armor", "--export"]).await;
    let upstream = tmp.path().join("upstream");
    std::fs::create_dir_all(upstream.join("conf")).unwrap();
    std::fs::write(
        upstream.join("conf/distributions"),
        "Codename: stable\nArchitectures: amd64\nComponents: main\nSignWith: default\n",
    )
    .unwrap();
    let v1 = build_deb(tmp.path(), "containerd.io", "1.2.13-1", "amd64", None).await;
    let reprepro_bin = require_tool("reprepro", "reprepro");
    let (ok, out, err) = run(
        &reprepro_bin,
        &[
            "--silent",
            "-b",
            upstream.to_str().unwrap(),
            "includedeb",
            "stable",
            v1.to_str().unwrap(),
        ],
        &[("GNUPGHOME", signer.home())],
    )
    .await;
    assert!(ok, "reprepro: {out}{err}");
    assert!(upstream.join("dists/stable/InRelease").exists());
    let web = StaticServer::start(&upstream).await;
    for (name, key, status) in [
        ("signed", &upstream_key, StatusCode::OK),
        ("forged", &stranger_key, StatusCode::BAD_GATEWAY),
    ] {
        let created = server
            .post("/api/v1/apt/repos")
            .json(&json!({"name": name, "kind": "mirror", "upstream_url": web.url, "upstream_suite": "stable", "upstream_key": key}))
            .send()
            .await
            .unwrap();
        json_ok(created, StatusCode::CREATED).await;
        let resp = server
            .post(&format!("/api/v1/apt/repos/{name}/sync"))
            .send()
            .await
            .unwrap();
        let got = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(got, status, "{name}: {body}");
        if status == StatusCode::OK {
            assert_eq!(body["packages"], 1, "{body}");
        } else {
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("signature"),
                "{body}"
            );
        }
    }
    // A key that is not a key is refused when the mirror is created.
    let resp = server
        .post("/api/v1/apt/repos")
        .json(&json!({"name": "junk", "kind": "mirror", "upstream_url": web.url, "upstream_suite": "stable", "upstream_key": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}
