//! Path traversal (issue 6, item 7): names, references, digests, upload ids and APT paths
//! that try to leave the data directory get clean 4xx answers, and nothing outside the data
//! directory is read or written.
//!
//! The data directory sits in a watched parent next to a sentinel file; requests go out raw
//! (no client normalises `..` or `%2e%2e`), each aiming at the sentinel or at /etc/passwd.
//! Afterwards the parent holds exactly what it held, the sentinel is unchanged, and no answer
//! carried either file's content.

use std::path::Path;

use crate::harness::*;

const SENTINEL: &str = "pinfold-traversal-sentinel-5d41402abc4b2a76";

/// Requests that try to escape, by the part of the API they attack.
fn attacks(digest_of_nothing: &str) -> Vec<(&'static str, String)> {
    let names = [
        "/v2/../../sentinel/manifests/latest",
        "/v2/%2e%2e/%2e%2e/sentinel/manifests/latest",
        "/v2/..%2f..%2fsentinel/manifests/latest",
        "/v2/%2E%2E%2F%2E%2E%2Fsentinel/tags/list",
        "/v2//etc/passwd/manifests/latest",
        "/v2/%2fetc%2fpasswd/manifests/latest",
        "/v2/repo%5c..%5c..%5csentinel/manifests/latest",
        "/v2/repo\\..\\..\\sentinel/manifests/latest",
        "/v2/repo%00/manifests/latest",
        "/v2/../../sentinel/blobs/uploads/",
        "/v2/..%2f..%2fsentinel/blobs/uploads/",
    ];
    let references = [
        "/v2/repo/manifests/..%2f..%2f..%2fsentinel",
        "/v2/repo/manifests/../../../sentinel",
        "/v2/repo/manifests/%2e%2e",
        "/v2/repo/manifests/..",
        "/v2/repo/manifests/latest%00",
        "/v2/repo/manifests/%5c..%5csentinel",
        "/v2/repo/tags/..%2f..%2fsentinel",
    ];
    let digests = [
        "/v2/repo/blobs/sha256:../../etc/passwd".to_owned(),
        "/v2/repo/blobs/sha256:..%2f..%2f..%2fsentinel".to_owned(),
        "/v2/repo/blobs/sha256%3a..%2f..%2fsentinel".to_owned(),
        "/v2/repo/blobs/sha256:%2fetc%2fpasswd".to_owned(),
        "/v2/repo/blobs/..%2f..%2fsentinel".to_owned(),
        "/v2/repo/manifests/sha256:../../../../etc/passwd".to_owned(),
        format!("/v2/repo/blobs/uploads/?digest=sha256:../../sentinel&x={digest_of_nothing}"),
        "/v2/repo/blobs/uploads/?mount=sha256:../../../sentinel&from=other".to_owned(),
    ];
    let uploads = [
        "/v2/repo/blobs/uploads/../../../sentinel",
        "/v2/repo/blobs/uploads/..%2f..%2f..%2fsentinel",
        "/v2/repo/blobs/uploads/%2e%2e",
        "/v2/repo/blobs/uploads/%2fetc%2fpasswd",
        "/v2/repo/blobs/uploads/abc%00def",
    ];
    let apt = [
        "/apt/../../sentinel",
        "/apt/%2e%2e/%2e%2e/sentinel",
        "/apt/repo/dists/../../../sentinel",
        "/apt/repo/dists/stable/..%2f..%2f..%2fsentinel",
        "/apt/repo/pool/../../../../etc/passwd",
        "/apt/repo/pool/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/apt/%2fetc%2fpasswd",
        "/artifactory/repo/..%2f..%2fsentinel",
        "/artifactory/../../etc/passwd",
        "/api/v1/apt/repos/..%2f..%2fsentinel",
    ];
    let mut out = Vec::new();
    for path in names.iter().chain(&references) {
        for method in ["GET", "HEAD", "PUT", "DELETE"] {
            out.push((method, (*path).to_owned()));
        }
    }
    for path in &digests {
        for method in ["GET", "HEAD", "DELETE", "POST"] {
            out.push((method, path.clone()));
        }
    }
    for path in uploads {
        for method in ["GET", "PATCH", "PUT", "DELETE"] {
            out.push((method, path.to_owned()));
        }
        out.push(("PUT", format!("{path}?digest={digest_of_nothing}")));
    }
    for path in apt {
        for method in ["GET", "HEAD", "PUT"] {
            out.push((method, path.to_owned()));
        }
    }
    out
}

fn snapshot(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read the watched directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn traversal_attempts_get_clean_4xx_and_touch_nothing_outside() {
    let parent = tempfile::tempdir().unwrap();
    let sentinel = parent.path().join("sentinel");
    std::fs::write(&sentinel, SENTINEL).unwrap();
    let data = tempfile::tempdir_in(parent.path()).unwrap();
    let server = TestServer::start_in_dir(data).await;
    // Something real beside it, so that a route that resolves a name has a repository.
    server.push_image("repo", "latest").await;
    let before = snapshot(parent.path());
    let sentinel_modified = std::fs::metadata(&sentinel).unwrap().modified().unwrap();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let passwd_line = passwd.lines().next().unwrap_or("root:x:0:0").to_owned();

    let body = SENTINEL.as_bytes();
    let empty_digest = sha256(b"");
    let mut failures = Vec::new();
    for (method, path) in attacks(empty_digest.as_str()) {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            server.addr,
            body.len()
        );
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        let answer = raw_request(server.addr, &bytes).await;
        let text = String::from_utf8_lossy(&answer.body);
        let what = format!("{method} {path} → {} {text}", answer.status);
        if !(400..500).contains(&answer.status) {
            failures.push(format!("not a 4xx: {what}"));
            continue;
        }
        if text.contains(SENTINEL) || text.contains(&passwd_line) {
            failures.push(format!("leaked a file outside the data directory: {what}"));
            continue;
        }
        // A body, when there is one, is the surface's JSON error envelope.
        if method != "HEAD" && !answer.body.is_empty() {
            match serde_json::from_slice::<serde_json::Value>(&answer.body) {
                Ok(v) if v["errors"].is_array() || v["error"].is_object() => {}
                _ => failures.push(format!("not a JSON error: {what}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    assert_eq!(
        snapshot(parent.path()),
        before,
        "files appeared beside the data directory"
    );
    assert_eq!(std::fs::read_to_string(&sentinel).unwrap(), SENTINEL);
    assert_eq!(
        std::fs::metadata(&sentinel).unwrap().modified().unwrap(),
        sentinel_modified
    );
    // The registry still serves what it had.
    let resp = server
        .get("/v2/repo/manifests/latest")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
}
