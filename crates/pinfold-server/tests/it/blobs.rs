//! `GET|HEAD|DELETE /v2/<name>/blobs/<digest>` (end-2, end-10), with `Range` (RFC 9110 §14).

use reqwest::StatusCode;

use crate::harness::{assert_error, assert_head_error, header, random_bytes, sha256, TestServer};

#[tokio::test(flavor = "multi_thread")]
async fn get_and_head_return_exact_bytes_length_and_digest() {
    let server = TestServer::start().await;
    let bytes = random_bytes(70_000);
    let digest = server.push_blob("lib/app", &bytes).await;

    let resp = server
        .get(&format!("/v2/lib/app/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "content-length"),
        Some(bytes.len().to_string())
    );
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), bytes.len());
    assert!(body[..] == bytes[..], "GET returns the pushed bytes");

    let resp = server
        .head(&format!("/v2/lib/app/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "content-length"),
        Some(bytes.len().to_string())
    );
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    assert!(resp.bytes().await.unwrap().is_empty(), "HEAD has no body");
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_blob_round_trips() {
    let server = TestServer::start().await;
    let digest = server.push_blob("empty", b"").await;
    assert_eq!(
        digest.as_str(),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let resp = server
        .get(&format!("/v2/empty/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length").as_deref(), Some("0"));
    assert!(resp.bytes().await.unwrap().is_empty());
}

/// GETs `range` of the blob and returns (status, Content-Range, body).
async fn get_range(
    server: &TestServer,
    repo: &str,
    digest: &str,
    range: &str,
) -> (StatusCode, Option<String>, Option<String>, Vec<u8>) {
    let resp = server
        .get(&format!("/v2/{repo}/blobs/{digest}"))
        .header("range", range)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let content_range = header(&resp, "content-range");
    let content_length = header(&resp, "content-length");
    let body = resp.bytes().await.unwrap().to_vec();
    (status, content_range, content_length, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn ranges_answer_206_with_the_exact_slice() {
    let server = TestServer::start().await;
    let bytes = random_bytes(1000);
    let digest = server.push_blob("ranges", &bytes).await;
    let d = digest.as_str();

    // (Range, first byte, last byte)
    let cases: [(&str, usize, usize); 6] = [
        ("bytes=0-99", 0, 99),        // prefix
        ("bytes=100-199", 100, 199),  // middle
        ("bytes=-10", 990, 999),      // suffix
        ("bytes=900-", 900, 999),     // open-ended
        ("bytes=999-999", 999, 999),  // last byte
        ("bytes=950-5000", 950, 999), // end past the size is clamped (RFC 9110 §14.1.2)
    ];
    for (range, first, last) in cases {
        let (status, content_range, content_length, body) =
            get_range(&server, "ranges", d, range).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            content_range.as_deref(),
            Some(format!("bytes {first}-{last}/1000").as_str()),
            "{range}"
        );
        assert_eq!(
            content_length,
            Some((last - first + 1).to_string()),
            "{range}"
        );
        assert!(body == bytes[first..=last], "slice of {range}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn range_past_the_end_is_416_with_the_size() {
    let server = TestServer::start().await;
    let bytes = random_bytes(100);
    let digest = server.push_blob("ranges", &bytes).await;
    for range in ["bytes=100-", "bytes=100-200", "bytes=5000-6000"] {
        let resp = server
            .get(&format!("/v2/ranges/blobs/{digest}"))
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(
            header(&resp, "content-range").as_deref(),
            Some("bytes */100"),
            "{range}"
        );
        assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_of_another_repository_is_unknown() {
    let server = TestServer::start().await;
    let digest = server.push_blob("owner", &random_bytes(64)).await;
    let resp = server
        .get(&format!("/v2/stranger/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    let resp = server
        .head(&format!("/v2/stranger/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_head_error(resp, StatusCode::NOT_FOUND).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_blob_is_404_blob_unknown() {
    let server = TestServer::start().await;
    server.push_blob("repo", b"something").await;
    let digest = sha256(b"never pushed");
    let resp = server
        .get(&format!("/v2/repo/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_blob_is_202_then_404() {
    let server = TestServer::start().await;
    let digest = server.push_blob("del", &random_bytes(300)).await;
    let path = format!("/v2/del/blobs/{digest}");
    let resp = server.delete(&path).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = server.get(&path).send().await.unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    let resp = server.head(&path).send().await.unwrap();
    assert_head_error(resp, StatusCode::NOT_FOUND).await;
    // Deleting again: the blob is not found (spec: "If the blob is not found, a 404").
    let resp = server.delete(&path).send().await.unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_blob_in_one_repository_keeps_it_in_another() {
    let server = TestServer::start().await;
    let bytes = random_bytes(300);
    let digest = server.push_blob("one", &bytes).await;
    server.push_blob("two", &bytes).await;
    let resp = server
        .delete(&format!("/v2/one/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = server
        .get(&format!("/v2/two/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.bytes().await.unwrap()[..] == bytes[..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_blob_can_be_pushed_again() {
    let server = TestServer::start().await;
    let bytes = random_bytes(500);
    let digest = server.push_blob("again", &bytes).await;
    let path = format!("/v2/again/blobs/{digest}");
    assert_eq!(
        server.delete(&path).send().await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    server.push_blob("again", &bytes).await;
    let resp = server.get(&path).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.bytes().await.unwrap()[..] == bytes[..]);
}
