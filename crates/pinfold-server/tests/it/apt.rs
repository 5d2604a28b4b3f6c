//! The Debian repository (issue 7) against the real server: uploads in the Artifactory shape,
//! signed indices rebuilt within a second, bad input that changes nothing, and the story-4
//! loop with real `dpkg-deb`, `curl`, `gpgv` and a stock `apt-get` under a private
//! `APT_CONFIG` (never the host's apt configuration).
//!
//! Tools are required: a missing one fails the test with the Debian package to install
//! (`scripts/test` installs them), so a skipped real-client test never reads as a pass.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{eventually, TestServer};

/// How long indices may take to appear after an upload (issue 7: within a second).
const REINDEX_DEADLINE: Duration = Duration::from_secs(1);
/// Limit for one external tool run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// The path of `name` on PATH, or a panic naming the Debian package.
pub(crate) fn require_tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|c| c.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not on PATH; install the Debian package `{package}` (scripts/test does)"))
}

/// Runs a command with a time limit; returns (success, stdout, stderr).
pub(crate) async fn run(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(TOOL_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} {args:?} took longer than {TOOL_TIMEOUT:?}",
                program.display()
            )
        })
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Builds `<name>_<version>_<arch>.deb` with the real dpkg-deb into `dir`; `control_extra`
/// is appended to the control file, `omit` removes a field.
pub(crate) async fn build_deb(
    dir: &Path,
    name: &str,
    version: &str,
    arch: &str,
    omit: Option<&str>,
) -> PathBuf {
    let dpkg_deb = require_tool("dpkg-deb", "dpkg");
    let root = dir.join(format!("{name}-{version}-{arch}"));
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join(format!("usr/share/doc/{name}"))).unwrap();
    std::fs::write(
        root.join(format!("usr/share/doc/{name}/README")),
        format!("{name} {version}\n"),
    )
    .unwrap();
    let fields = [
        ("Package", name.to_owned()),
        ("Version", version.to_owned()),
        ("Architecture", arch.to_owned()),
        ("Maintainer", "Pinfold Tests <tests@example.com>".to_owned()),
        ("Section", "misc".to_owned()),
        ("Priority", "optional".to_owned()),
        (
            "Description",
            format!("test package {name}\n A package built by the apt tests."),
        ),
    ];
    let control: String = fields
        .iter()
        .filter(|(k, _)| Some(*k) != omit)
        .map(|(k, v)| format!("{k}: {v}\n"))
        .collect();
    std::fs::write(root.join("DEBIAN/control"), control).unwrap();
    let out = dir.join(format!("{name}_{version}_{arch}.deb"));
    let root_s = root.to_str().unwrap();
    let out_s = out.to_str().unwrap();
    // --nocheck lets a test build a package with a missing field, as a broken CI job might.
    let (ok, _, err) = run(
        &dpkg_deb,
        &["--nocheck", "--root-owner-group", "--build", root_s, out_s],
        &[],
    )
    .await;
    assert!(ok, "dpkg-deb failed: {err}");
    out
}

pub(crate) fn matrix(dist: &str, comp: &str, arch: &str) -> String {
    format!(";deb.distribution={dist};deb.component={comp};deb.architecture={arch}")
}

/// Polls `path` until its body contains `needle`, at most [`REINDEX_DEADLINE`] plus slack for
/// a loaded test machine; returns the body and how long it took.
pub(crate) async fn wait_for(server: &TestServer, path: &str, needle: &str) -> (String, Duration) {
    let start = Instant::now();
    // Bounded: at most 100 polls, 3 s in all (the second beyond issue 7's bound absorbs
    // two cores shared by parallel tests; the elapsed time is asserted separately).
    for _ in 0..100 {
        let resp = server.get(path).send().await.unwrap();
        if resp.status() == StatusCode::OK {
            let body = resp.text().await.unwrap();
            if body.contains(needle) {
                return (body, start.elapsed());
            }
        }
        if start.elapsed() > Duration::from_secs(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("{path} did not contain {needle:?} within 3 s");
}

pub(crate) async fn assert_apt_error(
    resp: reqwest::Response,
    status: StatusCode,
    needle: &str,
) -> Value {
    assert_eq!(resp.status(), status, "expected {status}");
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let body: Value = resp.json().await.unwrap();
    let errors = body["errors"].as_array().expect("errors array");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["status"], status.as_u16(), "{body}");
    let message = errors[0]["message"].as_str().unwrap();
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    body
}

#[tokio::test]
async fn apt_upload_is_indexed_signed_and_served() {
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let deb = build_deb(tmp.path(), "hello", "1.0-1", "amd64", None).await;
    let bytes = std::fs::read(&deb).unwrap();
    let sha256 = hex(&sha2::Sha256::digest(&bytes));
    let resp = server
        .put(&format!(
            "/artifactory/ci/pool/h/hello_1.0-1_amd64.deb{}",
            matrix("jammy", "main", "amd64")
        ))
        .header("X-Checksum-Sha256", &sha256)
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["repo"], "ci");
    assert_eq!(body["path"], "/pool/h/hello_1.0-1_amd64.deb");
    assert_eq!(body["checksums"]["sha256"], sha256);
    assert_eq!(body["size"], bytes.len().to_string());
    assert!(body["downloadUri"]
        .as_str()
        .unwrap()
        .ends_with("/artifactory/ci/pool/h/hello_1.0-1_amd64.deb"));

    let (packages, took) = wait_for(
        &server,
        "/apt/ci/dists/jammy/main/binary-amd64/Packages",
        "Package: hello",
    )
    .await;
    assert!(
        took <= REINDEX_DEADLINE + Duration::from_millis(500),
        "indexed after {took:?}"
    );
    assert!(
        packages.contains("Filename: pool/h/hello_1.0-1_amd64.deb\n"),
        "{packages}"
    );
    assert!(
        packages.contains(&format!("SHA256: {sha256}\n")),
        "{packages}"
    );
    assert!(
        packages.contains(&format!("Size: {}\n", bytes.len())),
        "{packages}"
    );

    let release = server
        .get("/apt/ci/dists/jammy/Release")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(release.contains("Acquire-By-Hash: yes\n"), "{release}");
    assert!(!release.contains("Valid-Until"), "{release}");
    assert!(
        release.contains("Architectures: amd64\n") && release.contains("Components: main\n"),
        "{release}"
    );
    for section in ["MD5Sum:", "SHA1:", "SHA256:"] {
        assert!(release.contains(section), "{release}");
    }
    // Every file the Release lists is served, by path and by hash, with the listed SHA-256.
    let sha_lines: Vec<&str> = release
        .split("SHA256:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with(' '))
        .collect();
    assert_eq!(sha_lines.len(), 3, "{release}");
    for line in sha_lines {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (hash, path) = (parts[0], parts[2]);
        for url in [
            format!("/apt/ci/dists/jammy/{path}"),
            format!(
                "/apt/ci/dists/jammy/{}/by-hash/SHA256/{hash}",
                path.rsplit_once('/').unwrap().0
            ),
        ] {
            let got = server.get(&url).send().await.unwrap();
            assert_eq!(got.status(), StatusCode::OK, "{url}");
            assert_eq!(
                hex(&sha2::Sha256::digest(got.bytes().await.unwrap())),
                hash,
                "{url}"
            );
        }
    }
    // The pool file and the Artifactory path serve the uploaded bytes.
    for url in [
        "/apt/ci/pool/h/hello_1.0-1_amd64.deb",
        "/artifactory/ci/pool/h/hello_1.0-1_amd64.deb",
    ] {
        let got = server.get(url).send().await.unwrap();
        assert_eq!(got.status(), StatusCode::OK, "{url}");
        assert_eq!(got.bytes().await.unwrap(), bytes, "{url}");
    }
    // gpgv verifies InRelease and Release.gpg with the served key.
    let gpgv = require_tool("gpgv", "gpgv");
    let key = server
        .get("/apt/pinfold.gpg")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let keyring = tmp.path().join("pinfold.gpg");
    std::fs::write(&keyring, &key).unwrap();
    let inrelease = server
        .get("/apt/ci/dists/jammy/InRelease")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let release_gpg = server
        .get("/apt/ci/dists/jammy/Release.gpg")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    std::fs::write(tmp.path().join("InRelease"), &inrelease).unwrap();
    std::fs::write(tmp.path().join("Release"), &release).unwrap();
    std::fs::write(tmp.path().join("Release.gpg"), &release_gpg).unwrap();
    let home = tmp.path().join("gnupg");
    std::fs::create_dir_all(&home).unwrap();
    let env = [("GNUPGHOME", home.to_str().unwrap())];
    let k = keyring.to_str().unwrap();
    let (ok, _, err) = run(
        &gpgv,
        &[
            "--keyring",
            k,
            tmp.path().join("InRelease").to_str().unwrap(),
        ],
        &env,
    )
    .await;
    assert!(ok, "gpgv InRelease: {err}");
    let (ok, _, err) = run(
        &gpgv,
        &[
            "--keyring",
            k,
            tmp.path().join("Release.gpg").to_str().unwrap(),
            tmp.path().join("Release").to_str().unwrap(),
        ],
        &env,
    )
    .await;
    assert!(ok, "gpgv Release.gpg: {err}");
    assert!(String::from_utf8_lossy(&inrelease).contains("Hash: SHA256"));
}

#[tokio::test]
async fn apt_conflicting_path_is_409_and_reupload_is_idempotent() {
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let a = std::fs::read(build_deb(tmp.path(), "hello", "1.0-1", "amd64", None).await).unwrap();
    let b = std::fs::read(build_deb(tmp.path(), "hello", "1.0-2", "amd64", None).await).unwrap();
    let url = format!("/apt/ci/pool/hello.deb{}", matrix("jammy", "main", "amd64"));
    assert_eq!(
        server
            .put(&url)
            .body(a.clone())
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        server
            .put(&url)
            .body(a.clone())
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    let resp = server.put(&url).body(b).send().await.unwrap();
    assert_apt_error(
        resp,
        StatusCode::CONFLICT,
        "already stored at pool/hello.deb",
    )
    .await;
    let got = server
        .get("/apt/ci/pool/hello.deb")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got, a);
}

#[tokio::test]
async fn apt_deploy_keys_are_checked_in_every_form() {
    let server = TestServer::start_with(|c| c.apt_deploy_keys = vec!["s3cret".into()]).await;
    let tmp = tempfile::tempdir().unwrap();
    let deb = std::fs::read(build_deb(tmp.path(), "hello", "1.0", "all", None).await).unwrap();
    let url = |n: u32| {
        format!(
            "/artifactory/ci/pool/hello{n}.deb{}",
            matrix(&format!("stable{n}"), "main", "all")
        )
    };
    let resp = server.put(&url(0)).body(deb.clone()).send().await.unwrap();
    assert!(resp.headers().contains_key("www-authenticate"));
    assert_apt_error(resp, StatusCode::UNAUTHORIZED, "Unauthorized").await;
    let resp = server
        .put(&url(0))
        .header("X-JFrog-Art-Api", "wrong")
        .body(deb.clone())
        .send()
        .await
        .unwrap();
    assert_apt_error(resp, StatusCode::UNAUTHORIZED, "Unauthorized").await;
    let forms = [
        server.put(&url(1)).header("X-JFrog-Art-Api", "s3cret"),
        server.put(&url(2)).bearer_auth("s3cret"),
        server.put(&url(3)).basic_auth("ci-bot", Some("s3cret")),
    ];
    for request in forms {
        let resp = request.body(deb.clone()).send().await.unwrap();
        let status = resp.status();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}",
            resp.text().await.unwrap()
        );
    }
    // Reads need no key.
    assert_eq!(
        server
            .get("/apt/ci/pool/hello1.deb")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn apt_bad_input_is_refused_and_changes_nothing() {
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read(build_deb(tmp.path(), "hello", "1.0-1", "amd64", None).await).unwrap();
    let no_maintainer =
        std::fs::read(build_deb(tmp.path(), "broken", "1.0", "amd64", Some("Maintainer")).await)
            .unwrap();
    let no_version =
        std::fs::read(build_deb(tmp.path(), "broken2", "1.0", "amd64", Some("Version")).await)
            .unwrap();
    let m = matrix("jammy", "main", "amd64");
    assert_eq!(
        server
            .put(&format!("/apt/ci/pool/hello.deb{m}"))
            .body(good.clone())
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    let (_, _) = wait_for(
        &server,
        "/apt/ci/dists/jammy/main/binary-amd64/Packages",
        "Package: hello",
    )
    .await;
    let before = server
        .get("/apt/ci/dists/jammy/InRelease")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let sha_of_good = hex(&sha2::Sha256::digest(&good));
    let cases: Vec<BadCase> = vec![
        (
            format!("/artifactory/ci/pool/x.deb{m}"),
            b"this is not a deb".to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "not an ar archive",
        ),
        (
            format!("/artifactory/ci/pool/x.deb{m}"),
            vec![],
            vec![],
            StatusCode::BAD_REQUEST,
            "not a valid Debian package",
        ),
        (
            format!("/artifactory/ci/pool/x.deb{m}"),
            good[..good.len() / 2].to_vec(),
            vec![],
            StatusCode::BAD_REQUEST,
            "not a valid Debian package",
        ),
        (
            format!("/artifactory/ci/pool/b.deb{m}"),
            no_maintainer,
            vec![],
            StatusCode::BAD_REQUEST,
            "required field Maintainer is missing",
        ),
        (
            format!("/artifactory/ci/pool/b2.deb{m}"),
            no_version,
            vec![],
            StatusCode::BAD_REQUEST,
            "required field Version is missing",
        ),
        (
            format!("/artifactory/ci/pool/x.deb{m};deb.release=1"),
            good.clone(),
            vec![],
            StatusCode::BAD_REQUEST,
            "unknown matrix parameter",
        ),
        (
            "/artifactory/ci/pool/x.deb;deb.distribution=;deb.component=main".into(),
            good.clone(),
            vec![],
            StatusCode::BAD_REQUEST,
            "empty value",
        ),
        (
            "/artifactory/ci/pool/x.deb;deb.component=main".into(),
            good.clone(),
            vec![],
            StatusCode::BAD_REQUEST,
            "deb.distribution is required",
        ),
        (
            format!(
                "/artifactory/ci/pool/x.deb{}",
                matrix("jammy", "main", "arm64")
            ),
            good.clone(),
            vec![],
            StatusCode::BAD_REQUEST,
            "does not match",
        ),
        (
            format!("/artifactory/ci/pool/x.deb{m}"),
            good.clone(),
            vec![("X-Checksum-Sha256", "0".repeat(64))],
            StatusCode::BAD_REQUEST,
            "Checksum mismatch",
        ),
        (
            format!("/artifactory/ci/pool/x.deb{m}"),
            good.clone(),
            vec![("X-Checksum-Sha1", "a".repeat(40))],
            StatusCode::BAD_REQUEST,
            "Checksum mismatch",
        ),
        (
            format!("/artifactory/ci/pool/x.deb{m}"),
            good.clone(),
            vec![("X-Checksum-Sha256", "xyz".into())],
            StatusCode::BAD_REQUEST,
            "64 hex digits",
        ),
        (
            format!("/artifactory/ci/pool/x.deb{m}"),
            vec![],
            vec![
                ("X-Checksum-Deploy", "true".into()),
                ("X-Checksum-Sha256", "1".repeat(64)),
            ],
            StatusCode::NOT_FOUND,
            "Checksum deploy failed",
        ),
        (
            format!("/artifactory/ci/pool/..%2Fx.deb{m}"),
            good.clone(),
            vec![],
            StatusCode::BAD_REQUEST,
            "invalid path segment",
        ),
        (
            format!("/artifactory/ci/dists/jammy/x.deb{m}"),
            good.clone(),
            vec![],
            StatusCode::BAD_REQUEST,
            "dists/",
        ),
        (
            format!("/artifactory/ci/pool/x.txt{m}"),
            good.clone(),
            vec![],
            StatusCode::BAD_REQUEST,
            "not a .deb",
        ),
    ];
    for (url, body, headers, status, needle) in cases {
        let mut request = server.put(&url).body(body);
        for (k, v) in &headers {
            request = request.header(*k, v);
        }
        let resp = request.send().await.unwrap();
        eprintln!("bad input case: {url}");
        assert_apt_error(resp, status, needle).await;
        assert_eq!(
            server
                .get("/apt/ci/pool/x.deb")
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::NOT_FOUND,
            "{url}"
        );
    }
    // A checksum deploy of a stored file works (the positive case of the one above).
    let resp = server
        .put(&format!(
            "/artifactory/ci/pool/again.deb{}",
            matrix("focal", "main", "amd64")
        ))
        .header("X-Checksum-Deploy", "true")
        .header("X-Checksum-Sha256", &sha_of_good)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        server
            .get("/apt/ci/pool/again.deb")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
        good
    );

    // An upload cut off midway: the connection closes after half the announced body.
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "PUT /artifactory/ci/pool/cut.deb{m} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
        server.addr,
        good.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&good[..good.len() / 2]).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    assert_eq!(
        server
            .get("/apt/ci/pool/cut.deb")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    // Refused and cut-off uploads leave no upload session or temp file on disk (the cut-off
    // one is cancelled once the server notices the closed connection: bounded wait).
    eventually("no upload session or temp file is left", || {
        server.leftovers().is_empty()
    })
    .await;

    // Indices of jammy are unchanged after longer than the reindex delay; the checksum
    // deploy went to focal.
    let (packages, _) = wait_for(
        &server,
        "/apt/ci/dists/focal/main/binary-amd64/Packages",
        "Filename: pool/again.deb",
    )
    .await;
    assert!(packages.contains("Package: hello"), "{packages}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = server
        .get("/apt/ci/dists/jammy/InRelease")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(before, after, "refused uploads changed jammy's indices");
    assert!(!after.contains("broken"));
    // The same package at a second path of the same index is a conflict, not a silent no-op.
    let resp = server
        .put(&format!("/artifactory/ci/pool/copy.deb{m}"))
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_apt_error(resp, StatusCode::CONFLICT, "already in jammy/main").await;
}

#[tokio::test]
async fn apt_bad_input_leaves_indices_byte_identical() {
    let server = TestServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read(build_deb(tmp.path(), "hello", "1.0-1", "amd64", None).await).unwrap();
    let m = matrix("jammy", "main", "amd64");
    server
        .put(&format!("/apt/ci/pool/hello.deb{m}"))
        .body(good.clone())
        .send()
        .await
        .unwrap();
    wait_for(
        &server,
        "/apt/ci/dists/jammy/main/binary-amd64/Packages",
        "Package: hello",
    )
    .await;
    let before = server
        .get("/apt/ci/dists/jammy/InRelease")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    for body in [b"garbage".to_vec(), good[..100].to_vec()] {
        let resp = server
            .put(&format!("/apt/ci/pool/bad.deb{m}"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }
    let resp = server
        .put(&format!(
            "/apt/ci/pool/hello.deb{}",
            matrix("jammy", "main", "amd64")
        ))
        .body(std::fs::read(build_deb(tmp.path(), "hello", "9", "amd64", None).await).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after = server
        .get("/apt/ci/dists/jammy/InRelease")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(before, after, "a refused upload changed the signed indices");
}

/// Story 4: the exact curl call of DESIGN.md, then a stock apt installs from Pinfold.
#[tokio::test]
async fn apt_e2e_story4_curl_upload_then_apt_get() {
    require_tool("curl", "curl");
    let apt_get = require_tool("apt-get", "apt");
    let server = TestServer::start_with(|c| c.apt_deploy_keys = vec!["ci-key-123".into()]).await;
    let tmp = tempfile::tempdir().unwrap();
    let d = "bookworm";
    for (arch, version) in [("amd64", "1.0-1"), ("arm64", "1.0-1")] {
        let deb = build_deb(tmp.path(), "pinfold-hello", version, arch, None).await;
        let pkg = deb.file_name().unwrap().to_str().unwrap().to_owned();
        let url = format!("{}/artifactory/ci/pool/p", server.base);
        // DESIGN.md story 4, verbatim:
        // curl -H "X-JFrog-Art-Api:$KEY" -XPUT "$URL/$pkg;deb.distribution=$D;deb.component=non-free;deb.architecture=$A" -T $pkg
        let script = r#"cd "$DIR" && curl -H "X-JFrog-Art-Api:$KEY" -XPUT "$URL/$pkg;deb.distribution=$D;deb.component=non-free;deb.architecture=$A" -T $pkg"#;
        let (ok, out, err) = run(
            Path::new("/bin/sh"),
            &["-c", script],
            &[
                ("DIR", tmp.path().to_str().unwrap()),
                ("KEY", "ci-key-123"),
                ("URL", &url),
                ("pkg", &pkg),
                ("D", d),
                ("A", arch),
            ],
        )
        .await;
        assert!(ok, "curl upload failed: {out} {err}");
        // Without --fail curl exits 0 on any status: the answer must be the 201 deploy JSON.
        let answer: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(answer["repo"], "ci", "{answer}");
        assert_eq!(answer["path"], format!("/pool/p/{pkg}"), "{answer}");
    }
    let arch_all = build_deb(tmp.path(), "pinfold-doc", "2.0", "all", None).await;
    let resp = server
        .put(&format!(
            "/artifactory/ci/pool/p/pinfold-doc_2.0_all.deb{}",
            matrix(d, "non-free", "all")
        ))
        .header("X-JFrog-Art-Api", "ci-key-123")
        .body(std::fs::read(&arch_all).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    wait_for(
        &server,
        &format!("/apt/ci/dists/{d}/non-free/binary-arm64/Packages"),
        "Package: pinfold-doc",
    )
    .await;
    wait_for(
        &server,
        &format!("/apt/ci/dists/{d}/non-free/binary-amd64/Packages"),
        "Package: pinfold-hello",
    )
    .await;

    // A private apt: every directory and file apt reads or writes is under `root`.
    let root = tmp.path().join("apt");
    let key = server
        .get("/apt/pinfold.asc")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let apt = AptSandbox::new(&root, &key, &format!("{}/apt/ci {d} non-free", server.base));
    let (ok, out, err) = apt.run(&apt_get, &["update"]).await;
    assert!(ok, "apt-get update failed:\n{out}\n{err}");
    assert!(
        !err.contains("NO_PUBKEY") && !err.contains("not signed"),
        "{err}"
    );
    assert!(
        !format!("{out}{err}").contains("W: "),
        "apt warned:\n{out}\n{err}"
    );
    let downloads = root.join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    for spec in ["pinfold-hello:amd64", "pinfold-hello:arm64", "pinfold-doc"] {
        let (ok, out, err) = apt.run_in(&apt_get, &["download", spec], &downloads).await;
        assert!(ok, "apt-get download {spec}: {out}\n{err}");
    }
    for (file, original) in [
        (
            "pinfold-hello_1.0-1_amd64.deb",
            "pinfold-hello_1.0-1_amd64.deb",
        ),
        (
            "pinfold-hello_1.0-1_arm64.deb",
            "pinfold-hello_1.0-1_arm64.deb",
        ),
        ("pinfold-doc_2.0_all.deb", "pinfold-doc_2.0_all.deb"),
    ] {
        assert_eq!(
            std::fs::read(downloads.join(file)).unwrap(),
            std::fs::read(tmp.path().join(original)).unwrap(),
            "{file}"
        );
    }
    let (ok, out, err) = apt
        .run(&apt_get, &["install", "-s", "pinfold-hello", "pinfold-doc"])
        .await;
    assert!(ok, "apt-get install -s: {out}\n{err}");
    assert!(out.contains("Inst pinfold-hello (1.0-1"), "{out}");
    assert!(out.contains("Inst pinfold-doc (2.0"), "{out}");

    // A distribution holding only `Architecture: all` packages gets binary-all and
    // `Architectures: all`, which apt reads without warnings.
    let resp = server
        .put(&format!(
            "/apt/ci/pool/p/doc-only.deb{}",
            matrix("docs", "main", "all")
        ))
        .header("X-JFrog-Art-Api", "ci-key-123")
        .body(std::fs::read(&arch_all).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    wait_for(
        &server,
        "/apt/ci/dists/docs/main/binary-all/Packages",
        "Package: pinfold-doc",
    )
    .await;
    let docs = AptSandbox::new(
        &tmp.path().join("apt-docs"),
        &key,
        &format!("{}/apt/ci docs main", server.base),
    );
    let (ok, out, err) = docs.run(&apt_get, &["update"]).await;
    assert!(
        ok && !format!("{out}{err}").contains("W: "),
        "apt-get update (all only):\n{out}\n{err}"
    );
    let (ok, out, err) = docs.run(&apt_get, &["install", "-s", "pinfold-doc"]).await;
    assert!(ok, "apt-get install -s pinfold-doc: {out}\n{err}");
    assert!(out.contains("Inst pinfold-doc (2.0"), "{out}");
}

/// A private apt configuration under one directory: state, cache, sources, keyring, lists,
/// status file. The host's /etc/apt and /var/lib/apt are never read or written.
pub struct AptSandbox {
    config: PathBuf,
}

impl AptSandbox {
    /// Sets up `root` for one `deb [signed-by=...] <line>` source.
    pub fn new(root: &Path, armored_key: &str, line: &str) -> AptSandbox {
        for dir in [
            "state/lists/partial",
            "cache/archives/partial",
            "etc/sources.list.d",
            "etc/apt.conf.d",
            "etc/trusted.gpg.d",
            "etc/preferences.d",
            "log",
        ] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join("status"), "").unwrap();
        let key = root.join("pinfold.asc");
        std::fs::write(&key, armored_key).unwrap();
        std::fs::write(
            root.join("etc/sources.list"),
            format!("deb [signed-by={}] {line}\n", key.display()),
        )
        .unwrap();
        let r = root.display();
        let config = format!(
            "Dir::State \"{r}/state\";\n\
             Dir::State::status \"{r}/status\";\n\
             Dir::Cache \"{r}/cache\";\n\
             Dir::Etc \"{r}/etc\";\n\
             Dir::Etc::sourcelist \"{r}/etc/sources.list\";\n\
             Dir::Etc::sourceparts \"{r}/etc/sources.list.d\";\n\
             Dir::Etc::trusted \"{r}/etc/trusted.gpg\";\n\
             Dir::Etc::trustedparts \"{r}/etc/trusted.gpg.d\";\n\
             Dir::Etc::preferences \"{r}/etc/preferences\";\n\
             Dir::Etc::preferencesparts \"{r}/etc/preferences.d\";\n\
             Dir::Log \"{r}/log\";\n\
             APT::Architecture \"amd64\";\n\
             APT::Architectures {{ \"amd64\"; \"arm64\"; }};\n\
             APT::Sandbox::User \"root\";\n\
             Acquire::Languages \"none\";\n\
             Acquire::Retries \"0\";\n\
             Acquire::http::Timeout \"10\";\n\
             Debug::NoLocking \"true\";\n"
        );
        let path = root.join("apt.conf");
        std::fs::write(&path, config).unwrap();
        AptSandbox { config: path }
    }

    /// Runs an apt tool with `APT_CONFIG` pointing at the private configuration.
    pub async fn run(&self, tool: &Path, args: &[&str]) -> (bool, String, String) {
        self.run_in(tool, args, Path::new("/")).await
    }

    /// As [`Self::run`], in directory `dir` (where `apt-get download` writes).
    pub async fn run_in(&self, tool: &Path, args: &[&str], dir: &Path) -> (bool, String, String) {
        let mut cmd = tokio::process::Command::new(tool);
        cmd.args(args)
            .current_dir(dir)
            .env("APT_CONFIG", &self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = tokio::time::timeout(TOOL_TIMEOUT, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("apt {args:?} took longer than {TOOL_TIMEOUT:?}"))
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// One refused upload: URL, body, extra headers, expected status, expected message part.
type BadCase = (
    String,
    Vec<u8>,
    Vec<(&'static str, String)>,
    StatusCode,
    &'static str,
);

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends a PUT with `Expect: 100-continue` over raw TCP; returns the interim answer (before
/// any body byte was sent) and, if the server asked for the body, the final answer.
async fn put_expecting_continue(
    server: &TestServer,
    path: &str,
    headers: &str,
    body: &[u8],
) -> (String, String) {
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n{headers}\r\n",
        server.addr,
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("an interim or final answer within 5 s")
        .unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    if !first.starts_with("HTTP/1.1 100") {
        return (first, String::new());
    }
    tcp.write_all(body).await.unwrap();
    let mut rest = Vec::new();
    // Bounded: the answer arrives and the connection is closed by us after 5 s at most.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = tcp.read(&mut buf).await.unwrap_or(0);
            rest.extend_from_slice(&buf[..n]);
            if n == 0 || String::from_utf8_lossy(&rest).contains("\"checksums\"") {
                break;
            }
        }
    })
    .await;
    (first, String::from_utf8_lossy(&rest).into_owned())
}

#[tokio::test]
async fn apt_expect_100_continue_asks_for_the_body_only_when_it_can_be_accepted() {
    let server = TestServer::start_with(|c| c.apt_deploy_keys = vec!["k".into()]).await;
    let tmp = tempfile::tempdir().unwrap();
    let deb = std::fs::read(build_deb(tmp.path(), "hello", "1.0", "amd64", None).await).unwrap();
    let path = format!(
        "/artifactory/ci/pool/hello.deb{}",
        matrix("s", "main", "amd64")
    );
    // No key: refused before the body is sent.
    let (first, _) = put_expecting_continue(&server, &path, "", &deb).await;
    assert!(first.starts_with("HTTP/1.1 401"), "{first}");
    // An unknown matrix key: refused before the body too.
    let bad = format!("{path};deb.nope=1");
    let (first, _) = put_expecting_continue(&server, &bad, "X-JFrog-Art-Api: k\r\n", &deb).await;
    assert!(first.starts_with("HTTP/1.1 400"), "{first}");
    // Accepted: 100 Continue, then 201.
    let (first, last) =
        put_expecting_continue(&server, &path, "X-JFrog-Art-Api: k\r\n", &deb).await;
    assert!(first.starts_with("HTTP/1.1 100"), "{first}");
    assert!(
        last.starts_with("HTTP/1.1 201") || last.contains("HTTP/1.1 201"),
        "{last}"
    );
}

#[tokio::test]
async fn apt_old_index_files_are_deleted_after_the_grace_period() {
    let server = TestServer::start_with(|c| {
        c.apt_index_gc_grace_seconds = 0;
        // A pass every second without changes, to collect once the backup below ends.
        c.apt_reindex_poll_seconds = 1;
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let blob_path = |bytes: &[u8]| {
        let hex = hex(&sha2::Sha256::digest(bytes));
        server
            .data_dir()
            .join("blobs/sha256")
            .join(&hex[..2])
            .join(hex)
    };
    // A backup is running (it holds the store's sweep lock shared): nothing may be deleted
    // until it ends.
    let store = pinfold_store::BlobStore::open(server.data_dir()).unwrap();
    let backup = store.lock_blob_set().unwrap();
    let mut first_inrelease = None;
    let mut debs = Vec::new();
    for i in 0..5 {
        let name = format!("pkg{i}");
        let deb = std::fs::read(build_deb(tmp.path(), &name, "1.0", "amd64", None).await).unwrap();
        let resp = server
            .put(&format!(
                "/apt/ci/pool/{name}.deb{}",
                matrix("s", "main", "amd64")
            ))
            .body(deb.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        wait_for(
            &server,
            "/apt/ci/dists/s/main/binary-amd64/Packages",
            &format!("Package: {name}\n"),
        )
        .await;
        let inrelease = server
            .get("/apt/ci/dists/s/InRelease")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        first_inrelease.get_or_insert(inrelease);
        debs.push((name, deb));
    }
    let first = first_inrelease.unwrap();
    // Generation 1 fell out of the by-hash window at generation 4, but the backup holds it.
    // The reindex delay is 200 ms: after a second several collector passes have run.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        blob_path(&first).exists(),
        "an index file was deleted while a backup held the sweep lock"
    );
    drop(backup);
    // Once the backup ended, with no grace period its files are deleted by the next worker
    // pass (bounded wait).
    let start = Instant::now();
    while blob_path(&first).exists() && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let workers = server
        .get("/api/v1/workers")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !blob_path(&first).exists(),
        "the first generation's InRelease is still stored; workers: {workers}"
    );
    // Everything the current Release names is still served, by path and by hash, and every
    // package is intact.
    let release = server
        .get("/apt/ci/dists/s/Release")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sha_lines: Vec<&str> = release.split("SHA256:\n").nth(1).unwrap().lines().collect();
    assert_eq!(sha_lines.len(), 3, "{release}");
    for line in sha_lines {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (hash, path) = (parts[0], parts[2]);
        let dir = path.rsplit_once('/').unwrap().0;
        for url in [
            format!("/apt/ci/dists/s/{path}"),
            format!("/apt/ci/dists/s/{dir}/by-hash/SHA256/{hash}"),
        ] {
            assert_eq!(
                server.get(&url).send().await.unwrap().status(),
                StatusCode::OK,
                "{url}"
            );
        }
    }
    for (name, deb) in debs {
        let got = server
            .get(&format!("/apt/ci/pool/{name}.deb"))
            .send()
            .await
            .unwrap();
        assert_eq!(got.bytes().await.unwrap(), deb, "{name}");
    }
}
