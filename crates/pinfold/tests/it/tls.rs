//! `pinfold serve --tls-cert --tls-key`: HTTPS from the binary, and SIGHUP swapping the
//! certificate without closing the listener (issue 6, item 4). curl checks which certificate a
//! new connection sees by trusting only one of the two.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the binary may take to print its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a reload may take to show.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes a fresh self-signed certificate for 127.0.0.1 as `<name>.crt` / `<name>.key`.
fn make_cert(dir: &Path, name: &str) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
        .expect("generate a certificate");
    std::fs::write(dir.join(format!("{name}.crt")), certified.cert.pem()).unwrap();
    std::fs::write(
        dir.join(format!("{name}.key")),
        certified.key_pair.serialize_pem(),
    )
    .unwrap();
}

/// Whether curl, trusting only `ca`, completes `GET url` with 200 over a new connection.
fn curl_trusts(ca: &Path, url: &str) -> bool {
    let out = Command::new("curl")
        .args([
            "--silent",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg("--cacert")
        .arg(ca)
        .arg(url)
        .output()
        .expect("curl is installed (apt-get install curl)");
    out.status.success() && out.stdout == b"200"
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) on the child this test spawned and has not reaped.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal})");
}

#[test]
fn sighup_reloads_the_certificate_for_new_connections() {
    let certs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    make_cert(certs.path(), "first");
    make_cert(certs.path(), "second");
    let (live_cert, live_key) = (certs.path().join("live.crt"), certs.path().join("live.key"));
    std::fs::copy(certs.path().join("first.crt"), &live_cert).unwrap();
    std::fs::copy(certs.path().join("first.key"), &live_key).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_pinfold"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .arg("--tls-cert")
        .arg(&live_cert)
        .arg("--tls-key")
        .arg(&live_key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pinfold serve");
    let stdout = child.stdout.take().expect("stdout");
    let server = Serve(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix("pinfold listening on ") {
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    let base = rx
        .recv_timeout(STARTUP_TIMEOUT)
        .expect("pinfold printed its address");
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let url = format!("{base}/v2/");
    let (first, second) = (
        certs.path().join("first.crt"),
        certs.path().join("second.crt"),
    );
    assert!(curl_trusts(&first, &url), "the first certificate is served");
    assert!(!curl_trusts(&second, &url));

    // A broken file and SIGHUP: the certificate in force stays.
    std::fs::write(&live_cert, "not a certificate").unwrap();
    signal(&server.0, libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        curl_trusts(&first, &url),
        "a failed reload keeps the old certificate"
    );

    // The second pair and SIGHUP: new connections see it, on the same port.
    std::fs::copy(certs.path().join("second.crt"), &live_cert).unwrap();
    std::fs::copy(certs.path().join("second.key"), &live_key).unwrap();
    signal(&server.0, libc::SIGHUP);
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    while !curl_trusts(&second, &url) {
        assert!(
            Instant::now() < deadline,
            "the second certificate not served within {RELOAD_TIMEOUT:?} of SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!curl_trusts(&first, &url), "the old certificate is gone");
}

#[test]
fn a_tls_cert_without_a_key_is_refused_by_the_cli() {
    let certs = tempfile::tempdir().unwrap();
    make_cert(certs.path(), "only");
    let out = Command::new(env!("CARGO_BIN_EXE_pinfold"))
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(certs.path().join("only.crt"))
        .output()
        .expect("run pinfold");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--tls-key"), "{stderr}");
}
