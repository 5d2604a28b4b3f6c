//! `pinfold apt ...` against the real `pinfold serve`: uploads over HTTP, then snapshots,
//! publish and diff through the CLI, with its exit codes (0 same, 1 differences, 2 error).

use std::path::{Path, PathBuf};

use crate::harness::{require_tool, TestServer, Tool};

/// A minimal `containerd.io` package of `version`, built by `dpkg-deb` in `dir`.
pub(crate) async fn build_deb(dir: &Path, version: &str) -> PathBuf {
    let dpkg_deb = require_tool("dpkg-deb", "dpkg");
    let root = dir.join(format!("pkg-{version}"));
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!("Package: containerd.io\nVersion: {version}\nArchitecture: amd64\nMaintainer: t <t@t>\nDescription: test\n"),
    )
    .unwrap();
    let out = dir.join(format!("containerd.io_{version}_amd64.deb"));
    Tool::new(dpkg_deb)
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&out)
        .run_ok()
        .await;
    out
}

fn pinfold(server: &TestServer, args: &[&str]) -> Tool {
    Tool::new(env!("CARGO_BIN_EXE_pinfold"))
        .args(["apt", "--server", &server.url()])
        .args(args)
}

#[tokio::test]
async fn apt_cli_snapshots_diff_and_publish() {
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let upload = |version: &'static str| {
        let server = &server;
        let tmp = tmp.path().to_owned();
        async move {
            let deb = build_deb(&tmp, version).await;
            let url = format!(
                "{}/artifactory/ci/pool/containerd.io_{version}_amd64.deb;deb.distribution=stable;deb.component=main;deb.architecture=amd64",
                server.url()
            );
            let resp = server
                .client()
                .put(url)
                .body(std::fs::read(deb).unwrap())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201);
        }
    };
    upload("1.2.13-1").await;
    pinfold(
        &server,
        &[
            "snapshot",
            "create",
            "s1",
            "--repo",
            "ci",
            "--distribution",
            "stable",
        ],
    )
    .run_ok()
    .await;
    upload("1.2.13-2").await;
    pinfold(
        &server,
        &[
            "snapshot",
            "create",
            "s2",
            "--repo",
            "ci",
            "--distribution",
            "stable",
        ],
    )
    .run_ok()
    .await;

    let diff = pinfold(&server, &["diff", "s1", "s2"]).output().await;
    assert_eq!(diff.code(), Some(1), "{}", diff.stderr());
    // The local repository keeps both versions; apt would install the newest, so the diff
    // compares the newest of each.
    assert_eq!(
        diff.stdout(),
        "↑ containerd.io amd64 1.2.13-1 -> 1.2.13-2\n"
    );
    let same = pinfold(&server, &["diff", "s2", "s2"]).output().await;
    assert_eq!(same.code(), Some(0));
    assert_eq!(same.stdout(), "");
    let json = pinfold(&server, &["diff", "--json", "s2", "s1"])
        .output()
        .await;
    let value: serde_json::Value = serde_json::from_str(&json.stdout()).unwrap();
    assert_eq!(value["downgraded"][0]["to"], "1.2.13-1");

    let published = pinfold(&server, &["publish", "hosts", "stable", "--snapshot", "s1"])
        .run_ok()
        .await;
    assert!(published.contains("\"prefix\": \"hosts\""), "{published}");
    let listed = pinfold(&server, &["snapshot", "list"]).run_ok().await;
    assert!(
        listed.contains("\"s1\"") && listed.contains("\"s2\""),
        "{listed}"
    );
    assert!(pinfold(&server, &["repo", "list"])
        .run_ok()
        .await
        .contains("\"ci\""));

    // Errors exit 2 with the server's message.
    let again = pinfold(
        &server,
        &[
            "snapshot",
            "create",
            "s1",
            "--repo",
            "ci",
            "--distribution",
            "stable",
        ],
    )
    .output()
    .await;
    assert_eq!(again.code(), Some(2));
    assert!(
        again.stderr().contains("already exists"),
        "{}",
        again.stderr()
    );
    let unknown = pinfold(&server, &["diff", "s1", "nope"]).output().await;
    assert_eq!(unknown.code(), Some(2));
    assert!(unknown.stderr().contains("unknown"), "{}", unknown.stderr());
}

/// An acknowledged upload survives `kill -9`: after a restart the package is listed, served
/// byte for byte, and the signed indices (rebuilt at start if the crash came first) name it,
/// signed by the same key.
#[tokio::test]
async fn apt_acknowledged_upload_survives_sigkill() {
    let mut server = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let deb = std::fs::read(build_deb(tmp.path(), "1.2.13-1").await).unwrap();
    let key_before = server
        .client()
        .get(format!("{}/apt/pinfold.asc", server.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let path = "/artifactory/ci/pool/c.deb;deb.distribution=stable;deb.component=main;deb.architecture=amd64";
    let resp = server
        .client()
        .put(format!("{}{path}", server.url()))
        .body(deb.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    // Crash right after the acknowledgement, probably before the debounced reindex ran.
    server.kill();
    server.restart().await;
    let got = server
        .client()
        .get(format!("{}/apt/ci/pool/c.deb", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap(), deb);
    // The reindexer runs once at start: the indices appear without another upload.
    let packages_url = format!(
        "{}/apt/ci/dists/stable/main/binary-amd64/Packages",
        server.url()
    );
    let start = std::time::Instant::now();
    loop {
        let resp = server.client().get(&packages_url).send().await.unwrap();
        if resp.status() == 200 && resp.text().await.unwrap().contains("Version: 1.2.13-1") {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "indices missing after restart"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let key_after = server
        .client()
        .get(format!("{}/apt/pinfold.asc", server.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        key_before, key_after,
        "the signing key changed across a crash"
    );
}
