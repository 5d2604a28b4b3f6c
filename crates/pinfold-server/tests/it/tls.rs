//! HTTPS with rustls and HTTP/2 (issue 6, item 4), checked with real clients: curl (HTTP/2 by
//! ALPN, h2c prior knowledge) and skopeo pulling with `--cert-dir`. Certificates are
//! self-signed, made per test with rcgen. Reload on SIGHUP is tested on the `pinfold` binary
//! (crates/pinfold/tests/it/tls.rs).

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;
use tempfile::TempDir;

use crate::harness::*;

/// A self-signed certificate for 127.0.0.1 and localhost, written as `cert.pem` and
/// `key.pem` into a fresh directory.
pub struct TestCert {
    pub dir: TempDir,
}

impl TestCert {
    pub fn new() -> TestCert {
        let dir = tempfile::tempdir().expect("certificate directory");
        let certified = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .expect("generate a self-signed certificate");
        std::fs::write(dir.path().join("cert.pem"), certified.cert.pem()).expect("write cert");
        std::fs::write(
            dir.path().join("key.pem"),
            certified.key_pair.serialize_pem(),
        )
        .expect("write key");
        TestCert { dir }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }
}

async fn start_tls(cert: &TestCert) -> TestServer {
    let (cert, key) = (cert.cert(), cert.key());
    TestServer::start_with(move |cfg| {
        cfg.tls_cert = Some(cert);
        cfg.tls_key = Some(key);
    })
    .await
}

/// Runs curl with `args`, returning its stdout; panics with its stderr when it fails.
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is installed (apt-get install curl)");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

#[tokio::test(flavor = "multi_thread")]
async fn https_serves_http2_by_alpn_and_http1_on_request() {
    let cert = TestCert::new();
    let server = start_tls(&cert).await;
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let url = format!("{}/v2/", server.base);
    let version = curl(&[
        "--cacert",
        path_str(&cert.cert()),
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{http_version}",
        &url,
    ]);
    assert_eq!(version, "200 2");
    let version = curl(&[
        "--cacert",
        path_str(&cert.cert()),
        "--http1.1",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{http_version}",
        &url,
    ]);
    assert_eq!(version, "200 1.1");
    // Without the certificate as a root, curl refuses the server.
    let out = Command::new("curl")
        .args(["--silent", "--max-time", "20", &url])
        .output()
        .expect("curl");
    assert!(
        !out.status.success(),
        "curl trusted a self-signed certificate"
    );
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = format!("http://{}/v2/", server.addr);
    let out = Command::new("curl")
        .args([
            "--silent",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &plain,
        ])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "000");
}

#[tokio::test(flavor = "multi_thread")]
async fn push_and_pull_over_https() {
    let cert = TestCert::new();
    let server = start_tls(&cert).await;
    let image = server.push_image("secure/app", "v1").await;
    // curl pulls the manifest and a layer over HTTP/2.
    let manifest = curl(&[
        "--cacert",
        path_str(&cert.cert()),
        "--http2",
        "-H",
        &format!("Accept: {OCI_MANIFEST}"),
        &format!("{}/v2/secure/app/manifests/v1", server.base),
    ]);
    assert_eq!(manifest.as_bytes(), &image.manifest[..]);
    let layer_digest = sha256(&image.layers[0]);
    let layer = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20", "--http2"])
        .args(["--cacert", path_str(&cert.cert())])
        .arg(format!(
            "{}/v2/secure/app/blobs/{layer_digest}",
            server.base
        ))
        .output()
        .expect("curl");
    assert!(layer.status.success());
    assert_eq!(layer.stdout, image.layers[0]);

    // skopeo trusts the CA files (*.crt) of --cert-dir.
    let cert_dir = tempfile::tempdir().unwrap();
    std::fs::copy(cert.cert(), cert_dir.path().join("ca.crt")).unwrap();
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--cert-dir", path_str(cert_dir.path())])
        .arg(format!("docker://{}/secure/app:v1", server.addr))
        .output()
        .expect("skopeo is installed (apt-get install skopeo)");
    assert!(
        out.status.success(),
        "skopeo inspect over TLS failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, image.manifest);
    let dest = tempfile::tempdir().unwrap();
    let out = Command::new("skopeo")
        .args(["copy", "--src-cert-dir", path_str(cert_dir.path())])
        .arg(format!("docker://{}/secure/app:v1", server.addr))
        .arg(format!("oci:{}:v1", dest.path().display()))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "skopeo copy over TLS failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // skopeo recompresses the random "gzip" layers it sniffs as uncompressed; the config it
    // copies as served.
    let config_digest = sha256(&image.config);
    let copied = dest
        .path()
        .join("blobs/sha256")
        .join(config_digest.as_str().trim_start_matches("sha256:"));
    assert_eq!(std::fs::read(copied).unwrap(), image.config);
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_speaks_h2c_with_prior_knowledge() {
    let server = TestServer::start().await;
    let out = curl(&[
        "--http2-prior-knowledge",
        "-w",
        "\n%{http_code} %{http_version}",
        &format!("{}/v2/nowhere/tags/list", server.base),
    ]);
    let (body, status) = out.rsplit_once('\n').expect("status line");
    assert_eq!(status, "404 2");
    let envelope: Value = serde_json::from_str(body).unwrap();
    assert_eq!(envelope["errors"][0]["code"], "NAME_UNKNOWN");
    // HTTP/1.1 is still spoken on the same port.
    let resp = server.get("/v2/").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_certificate_configuration_refuses_to_start() {
    let cert = TestCert::new();
    let dir = tempfile::tempdir().unwrap();
    let listen = "127.0.0.1:0".parse().unwrap();
    let bind = |config: pinfold_server::ServerConfig| {
        let dir = dir.path().to_owned();
        async move {
            pinfold_server::Server::bind(
                listen,
                &dir,
                &Default::default(),
                &config,
                &Default::default(),
            )
            .await
            .err()
            .map(|e| e.to_string())
        }
    };
    // Only one of the pair.
    let config = pinfold_server::ServerConfig {
        tls_cert: Some(cert.cert()),
        ..Default::default()
    };
    let err = bind(config).await.expect("refused");
    assert!(err.contains("tls_cert and tls_key go together"), "{err}");
    // The key file holds a certificate.
    let config = pinfold_server::ServerConfig {
        tls_cert: Some(cert.cert()),
        tls_key: Some(cert.cert()),
        ..Default::default()
    };
    let err = bind(config).await.expect("refused");
    assert!(err.contains("key.pem") || err.contains("cert.pem"), "{err}");
    // A key of another certificate.
    let other = TestCert::new();
    let config = pinfold_server::ServerConfig {
        tls_cert: Some(cert.cert()),
        tls_key: Some(other.key()),
        ..Default::default()
    };
    let err = bind(config).await.expect("refused");
    assert!(err.starts_with("TLS:"), "{err}");
}

/// A TLS client that completes the handshake and then sends nothing is closed after the
/// header read timeout, like a silent plain-TCP one (limits.rs): checked with a real client,
/// `openssl s_client`, which exits when the server closes the connection.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_client_after_the_tls_handshake_is_closed() {
    let cert = TestCert::new();
    let (cert_path, key_path) = (cert.cert(), cert.key());
    let server = TestServer::start_with(move |cfg| {
        cfg.tls_cert = Some(cert_path);
        cfg.tls_key = Some(key_path);
        cfg.header_read_timeout_seconds = 1;
    })
    .await;
    let mut client = tokio::process::Command::new("openssl")
        .args(["s_client", "-quiet", "-connect"])
        .arg(server.addr.to_string())
        .stdin(std::process::Stdio::piped()) // held open, never written
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl is installed (apt-get install openssl)");
    let started = std::time::Instant::now();
    let status = tokio::time::timeout(std::time::Duration::from_secs(15), client.wait())
        .await
        .expect("the server still holds the silent TLS connection after 15 s")
        .unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(900),
        "closed after {waited:?} (status {status}), before the 1 s header timeout"
    );
    // The handshake itself succeeded: the server closed an established session.
    let resp = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
        .get(format!("https://{}/v2/", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}
