//! Limits against slow, flooding and oversized clients (issue 6, item 5): each answered with
//! the protocol's error and changing nothing.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

async fn upload_range(server: &TestServer, location: &str) -> String {
    let resp = server.client.get(location).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT, "GET {location}");
    header(&resp, "range").expect("Range on 204")
}

async fn assert_no_blob(server: &TestServer, repo: &str, digest: &str) {
    let resp = server
        .head(&format!("/v2/{repo}/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "blob {digest} stored");
}

/// Reads whatever the server sends until it closes the connection, bounded by `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut buf = Vec::new();
    tokio::time::timeout(limit, async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("connection still open after {limit:?}"));
    buf
}

/// Connects, sends `sent`, and checks the server closes the connection no sooner than its 1 s
/// header read timeout: closed, or answered 408 and closed, never a 2xx for an incomplete
/// request.
async fn assert_closed_by_the_1s_header_timeout(server: &TestServer, what: &str, sent: &[u8]) {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(sent).await.unwrap();
    let started = Instant::now();
    let answer = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "{what}: closed after {waited:?}, before the 1 s header timeout"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{what}: unexpected answer: {text:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_sent_too_slowly_get_the_connection_closed() {
    let server = TestServer::start_with(|cfg| cfg.header_read_timeout_seconds = 1).await;
    // Slowloris: a request line and one header, then nothing.
    assert_closed_by_the_1s_header_timeout(
        &server,
        "an incomplete head",
        b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n",
    )
    .await;
    // Other clients are served meanwhile and after. A new client: the harness's pooled
    // connection sat idle past the 1 s header timeout too, and the server closed it.
    let resp = reqwest::Client::new()
        .get(server.url("/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// A client that connects and sends nothing, or stops inside the HTTP/2 preface (before the
/// server can tell which protocol it speaks), holds a connection like a slowloris does: it is
/// closed after the header read timeout too.
#[tokio::test(flavor = "multi_thread")]
async fn connections_that_send_nothing_or_half_a_preface_are_closed() {
    let server = TestServer::start_with(|cfg| cfg.header_read_timeout_seconds = 1).await;
    for (what, sent) in [
        ("nothing", &b""[..]),
        ("half the HTTP/2 preface", &b"PRI * HTTP/2.0\r\n"[..]),
    ] {
        assert_closed_by_the_1s_header_timeout(&server, what, sent).await;
    }
    let resp = reqwest::Client::new()
        .get(server.url("/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_chunk_is_408_and_the_upload_resumes_where_it_was() {
    let server = TestServer::start_with(|cfg| cfg.body_idle_timeout_seconds = 1).await;
    let blob = random_bytes(30);
    let digest = sha256(&blob);
    let location = server.start_upload("stalled").await;
    let resp = server
        .client
        .patch(&location)
        .header("content-range", "0-9")
        .header("content-type", "application/octet-stream")
        .body(blob[..10].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = server.resolve(&header(&resp, "location").expect("Location"));
    assert_eq!(upload_range(&server, &location).await, "0-9");

    // The next chunk announces 20 bytes, sends 5 and stalls.
    let path = location
        .strip_prefix(&server.base)
        .expect("location on this server");
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Range: 10-29\r\nContent-Length: 20\r\n\r\n",
        server.addr
    );
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&blob[10..15]).await.unwrap();
    let started = Instant::now();
    let answer = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    let text = String::from_utf8_lossy(&answer).into_owned();
    assert!(text.starts_with("HTTP/1.1 408"), "answer: {text}");
    let body = &text[text.find("\r\n\r\n").expect("head end") + 4..];
    let envelope: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    check_envelope(&envelope, body);
    assert_eq!(envelope["errors"][0]["code"], "REQUEST_TIMEOUT");

    // Nothing of the stalled chunk was kept, nothing was stored: the upload resumes at 10.
    assert_eq!(upload_range(&server, &location).await, "0-9");
    assert_no_blob(&server, "stalled", digest.as_str()).await;
    let resp = server
        .client
        .put(with_digest(&location, &digest))
        .header("content-range", "10-29")
        .header("content-type", "application/octet-stream")
        .body(blob[10..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = server
        .get(&format!("/v2/stalled/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &blob[..]);
    assert!(server.leftovers().is_empty(), "{:?}", server.leftovers());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_but_moving_body_is_not_cut() {
    let server = TestServer::start_with(|cfg| cfg.body_idle_timeout_seconds = 1).await;
    let blob = random_bytes(40);
    let digest = sha256(&blob);
    let location = server.start_upload("slow").await;
    let path = with_digest(&location, &digest);
    let path = path
        .strip_prefix(&server.base)
        .expect("location on this server");
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/octet-stream\r\nContent-Length: 40\r\n\r\n",
        server.addr
    );
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    // 2.4 s in all, longer than the idle timeout, but never 1 s without a byte.
    for piece in blob.chunks(5) {
        stream.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let answer = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 201"), "answer: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_over_its_rate_gets_429_with_retry_after() {
    let server = TestServer::start_with(|cfg| {
        cfg.rate_limit_per_second = 1;
        cfg.rate_limit_burst = 3;
    })
    .await;
    // The harness's readiness probe may have taken one token; the bucket holds 3.
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..6 {
        let resp = server.get("/v2/").send().await.unwrap();
        statuses.push(resp.status());
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(resp);
            break;
        }
    }
    let resp = refused.unwrap_or_else(|| panic!("never refused: {statuses:?}"));
    assert!(statuses.len() >= 3, "refused too early: {statuses:?}");
    let retry_after: u64 = header(&resp, "retry-after")
        .expect("Retry-After on 429")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;

    // The management API answers in its own format, the same limit.
    let resp = server.get("/api/v1/workers").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TOOMANYREQUESTS", "{body}");

    // Waiting as told lets the client in again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let resp = server.get("/v2/").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_rate_limit_by_default() {
    let server = TestServer::start().await;
    for _ in 0..50 {
        let resp = server.get("/v2/").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_headers_are_431_in_each_surfaces_format() {
    let server = TestServer::start_with(|cfg| cfg.max_header_bytes = 8 * 1024).await;
    let big = "a".repeat(10 * 1024);
    let resp = server
        .get("/v2/")
        .header("x-padding", &big)
        .send()
        .await
        .unwrap();
    assert_error(
        resp,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "HEADERS_TOO_LARGE",
    )
    .await;
    // A push with a huge header changes nothing.
    let blob = random_bytes(10);
    let digest = sha256(&blob);
    let resp = server
        .post(&format!("/v2/big/blobs/uploads/?digest={digest}"))
        .header("x-padding", &big)
        .body(blob)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_no_blob(&server, "big", digest.as_str()).await;
    // The APT surface answers in Artifactory's format.
    let resp = server
        .get("/apt/nowhere/dists/stable/Release")
        .header("x-padding", &big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["status"], 431, "{body}");
    // Under the limit is served.
    let resp = server
        .get("/v2/")
        .header("x-padding", "a".repeat(4 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_4_mib_manifest_limit_is_413() {
    let server = TestServer::start().await;
    let mut huge = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"pad":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'a', 4 * 1024 * 1024));
    huge.extend_from_slice(br#""}}"#);
    let resp = server
        .put("/v2/huge/manifests/latest")
        .header("content-type", OCI_MANIFEST)
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "MANIFEST_INVALID").await;
    let resp = server
        .get("/v2/huge/manifests/latest")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}
