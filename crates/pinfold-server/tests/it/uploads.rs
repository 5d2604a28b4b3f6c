//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (end-4a, end-4b, end-11) and
//! `GET|PATCH|PUT|DELETE /v2/<name>/blobs/uploads/<id>` (end-13, end-5, end-6).

use bytes::Bytes;
use reqwest::StatusCode;

use crate::harness::{assert_error, header, random_bytes, sha256, sha512, with_digest, TestServer};

/// Asserts the blob is served with exactly `bytes`.
async fn assert_blob(server: &TestServer, repo: &str, digest: &str, bytes: &[u8]) {
    let resp = server
        .get(&format!("/v2/{repo}/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "GET blob {digest} of {repo}");
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest)
    );
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), bytes.len(), "length of {digest}");
    assert!(body[..] == bytes[..], "bytes of {digest}");
}

/// Asserts the blob is not visible in `repo`.
async fn assert_no_blob(server: &TestServer, repo: &str, digest: &str) {
    let resp = server
        .head(&format!("/v2/{repo}/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "{digest} is not in {repo}"
    );
}

/// Asserts a 201 that makes `digest` of `repo` pullable at its Location.
async fn assert_created(server: &TestServer, resp: reqwest::Response, repo: &str, digest: &str) {
    let status = resp.status();
    let location = header(&resp, "location");
    let content_digest = header(&resp, "docker-content-digest");
    let text = resp.text().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "body: {text}");
    assert_eq!(content_digest.as_deref(), Some(digest));
    let location = location.expect("Location on 201");
    assert_eq!(
        server.resolve(&location),
        server.url(&format!("/v2/{repo}/blobs/{digest}")),
        "Location is the pullable blob URL"
    );
}

/// PATCHes `chunk` with `Content-Range: start-end` and returns the response.
async fn patch_chunk(
    server: &TestServer,
    location: &str,
    start: usize,
    chunk: &[u8],
) -> reqwest::Response {
    server
        .client
        .patch(location)
        .header("content-type", "application/octet-stream")
        .header(
            "content-range",
            format!("{start}-{}", start + chunk.len() - 1),
        )
        .body(chunk.to_vec())
        .send()
        .await
        .unwrap()
}

/// `GET` on the upload: asserts 204 and returns the `Range` header.
async fn upload_range(server: &TestServer, location: &str) -> String {
    let resp = server.client.get(location).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT, "GET {location}");
    assert!(header(&resp, "location").is_some(), "Location on 204");
    header(&resp, "range").expect("Range on 204")
}

#[tokio::test(flavor = "multi_thread")]
async fn post_then_put_pushes_a_blob() {
    let server = TestServer::start().await;
    let bytes = random_bytes(5000);
    let digest = sha256(&bytes);

    let resp = server
        .post("/v2/lib/app/blobs/uploads/")
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = header(&resp, "location").expect("Location on 202");
    let uuid = header(&resp, "docker-upload-uuid").expect("Docker-Upload-UUID on 202");
    assert!(
        location.contains(&uuid),
        "Location {location} contains the session id {uuid}"
    );
    assert_eq!(uuid.len(), 36, "a UUID: {uuid}");

    let resp = server
        .client
        .put(with_digest(&server.resolve(&location), &digest))
        .header("content-type", "application/octet-stream")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_created(&server, resp, "lib/app", digest.as_str()).await;
    assert_blob(&server, "lib/app", digest.as_str(), &bytes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn single_post_with_digest_pushes_a_blob() {
    let server = TestServer::start().await;
    let bytes = random_bytes(4096);
    let digest = sha256(&bytes);
    let resp = server
        .post(&format!("/v2/single/blobs/uploads/?digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_created(&server, resp, "single", digest.as_str()).await;
    assert_blob(&server, "single", digest.as_str(), &bytes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_patches_with_content_range_then_put() {
    let server = TestServer::start().await;
    let bytes = random_bytes(10_000);
    let digest = sha256(&bytes);
    let mut location = server.start_upload("chunked").await;
    let mut offset = 0;
    for size in [1, 4095, 4096, 1808] {
        let chunk = &bytes[offset..offset + size];
        let resp = patch_chunk(&server, &location, offset, chunk).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "chunk at {offset}");
        offset += size;
        assert_eq!(
            header(&resp, "range"),
            Some(format!("0-{}", offset - 1)),
            "Range after {offset} bytes"
        );
        location = server.resolve(&header(&resp, "location").expect("Location on 202"));
        assert!(header(&resp, "docker-upload-uuid").is_some());
    }
    assert_eq!(offset, bytes.len());
    assert_eq!(upload_range(&server, &location).await, "0-9999");
    let resp = server
        .client
        .put(with_digest(&location, &digest))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_created(&server, resp, "chunked", digest.as_str()).await;
    assert_blob(&server, "chunked", digest.as_str(), &bytes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_patch_without_content_range() {
    let server = TestServer::start().await;
    let bytes = random_bytes(300_000);
    let digest = sha256(&bytes);
    let location = server.start_upload("streamed").await;
    // A body of unknown length (chunked transfer encoding), in uneven pieces.
    let pieces: Vec<Result<Bytes, std::io::Error>> = bytes
        .chunks(70_001)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let resp = server
        .client
        .patch(&location)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            pieces,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range").as_deref(), Some("0-299999"));
    let location = server.resolve(&header(&resp, "location").unwrap());
    // A second streamed PATCH appends.
    let more = random_bytes(1000);
    let resp = server
        .client
        .patch(&location)
        .body(more.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range").as_deref(), Some("0-300999"));
    let mut all = bytes.clone();
    all.extend_from_slice(&more);
    let digest_all = sha256(&all);
    assert_ne!(digest, digest_all);
    let resp = server
        .client
        .put(with_digest(&location, &digest_all))
        .send()
        .await
        .unwrap();
    assert_created(&server, resp, "streamed", digest_all.as_str()).await;
    assert_blob(&server, "streamed", digest_all.as_str(), &all).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn final_chunk_in_the_closing_put() {
    let server = TestServer::start().await;
    let bytes = random_bytes(3000);
    let digest = sha256(&bytes);
    let location = server.start_upload("finalput").await;
    let resp = patch_chunk(&server, &location, 0, &bytes[..2000]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = server.resolve(&header(&resp, "location").unwrap());
    let resp = server
        .client
        .put(with_digest(&location, &digest))
        .header("content-type", "application/octet-stream")
        .header("content-range", "2000-2999")
        .body(bytes[2000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_created(&server, resp, "finalput", digest.as_str()).await;
    assert_blob(&server, "finalput", digest.as_str(), &bytes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_of_an_upload_is_204_with_range_and_location() {
    let server = TestServer::start().await;
    let location = server.start_upload("status").await;
    let resp = server.client.get(&location).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    // An empty upload answers 0-0, as distribution does.
    assert_eq!(header(&resp, "range").as_deref(), Some("0-0"));
    let resp = patch_chunk(&server, &location, 0, &random_bytes(123)).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = server.client.get(&location).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&resp, "range").as_deref(), Some("0-122"));
    assert_eq!(
        server.resolve(&header(&resp, "location").unwrap()),
        location,
        "status points at the same session"
    );
    let uuid = header(&resp, "docker-upload-uuid").expect("Docker-Upload-UUID");
    assert!(location.ends_with(&uuid));
    assert!(resp.bytes().await.unwrap().is_empty(), "204 has no body");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_upload_is_204_then_unknown() {
    let server = TestServer::start().await;
    let location = server.start_upload("cancel").await;
    let resp = patch_chunk(&server, &location, 0, b"some bytes").await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = server.client.delete(&location).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = server.client.get(&location).send().await.unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    let resp = patch_chunk(&server, &location, 10, b"more").await;
    assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    let resp = server
        .client
        .put(with_digest(&location, &sha256(b"some bytes")))
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    let resp = server.client.delete(&location).send().await.unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    assert_no_blob(&server, "cancel", sha256(b"some bytes").as_str()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_completed_upload_is_gone() {
    let server = TestServer::start().await;
    let bytes = random_bytes(100);
    let digest = sha256(&bytes);
    let location = server.start_upload("done").await;
    let resp = server
        .client
        .put(with_digest(&location, &digest))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = server.client.get(&location).send().await.unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    let resp = patch_chunk(&server, &location, 100, b"late").await;
    assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_order_or_overlapping_chunk_is_416_and_changes_nothing() {
    let server = TestServer::start().await;
    let bytes = random_bytes(30);
    let digest = sha256(&bytes);
    let location = server.start_upload("order").await;
    let resp = patch_chunk(&server, &location, 0, &bytes[..10]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    // A gap, an overlap, a replay of the first chunk, and a first chunk not at 0.
    for (start, chunk) in [
        (20, &bytes[20..30]),
        (5, &bytes[5..15]),
        (0, &bytes[0..10]),
        (11, &bytes[11..20]),
    ] {
        let resp = patch_chunk(&server, &location, start, chunk).await;
        assert_error(
            resp,
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UPLOAD_INVALID",
        )
        .await;
        assert_eq!(
            upload_range(&server, &location).await,
            "0-9",
            "the upload still holds 10 bytes after the chunk at {start}"
        );
    }

    // The right bytes still complete it.
    let resp = patch_chunk(&server, &location, 10, &bytes[10..20]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = server
        .client
        .put(with_digest(&location, &digest))
        .header("content-range", "20-29")
        .body(bytes[20..].to_vec())
        .send()
        .await
        .unwrap();
    assert_created(&server, resp, "order", digest.as_str()).await;
    assert_blob(&server, "order", digest.as_str(), &bytes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn first_chunk_not_at_zero_is_416() {
    let server = TestServer::start().await;
    let location = server.start_upload("order").await;
    let resp = patch_chunk(&server, &location, 1, b"abc").await;
    assert_error(
        resp,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "BLOB_UPLOAD_INVALID",
    )
    .await;
    assert_eq!(upload_range(&server, &location).await, "0-0");
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_from_another_repository_is_201() {
    let server = TestServer::start().await;
    let bytes = random_bytes(2048);
    let digest = server.push_blob("source/repo", &bytes).await;
    assert_no_blob(&server, "target", digest.as_str()).await;
    let resp = server
        .post(&format!(
            "/v2/target/blobs/uploads/?mount={digest}&from=source/repo"
        ))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_created(&server, resp, "target", digest.as_str()).await;
    assert_blob(&server, "target", digest.as_str(), &bytes).await;
    // The source keeps it.
    assert_blob(&server, "source/repo", digest.as_str(), &bytes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_without_from_finds_the_blob() {
    let server = TestServer::start().await;
    let bytes = random_bytes(2048);
    let digest = server.push_blob("somewhere", &bytes).await;
    let resp = server
        .post(&format!("/v2/elsewhere/blobs/uploads/?mount={digest}"))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_created(&server, resp, "elsewhere", digest.as_str()).await;
    assert_blob(&server, "elsewhere", digest.as_str(), &bytes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_of_an_unknown_digest_opens_an_upload_session() {
    let server = TestServer::start().await;
    server.push_blob("source", b"unrelated").await;
    let bytes = random_bytes(500);
    let digest = sha256(&bytes);
    let resp = server
        .post(&format!(
            "/v2/target/blobs/uploads/?mount={digest}&from=source"
        ))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = server.resolve(&header(&resp, "location").expect("Location on 202"));
    assert_no_blob(&server, "target", digest.as_str()).await;
    // The session is a real one: the client uploads through it.
    let resp = server
        .client
        .put(with_digest(&location, &digest))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_created(&server, resp, "target", digest.as_str()).await;
    assert_blob(&server, "target", digest.as_str(), &bytes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_from_a_repository_without_the_blob_opens_a_session() {
    let server = TestServer::start().await;
    let bytes = random_bytes(500);
    let digest = server.push_blob("has-it", &bytes).await;
    server.push_blob("lacks-it", b"other").await;
    let resp = server
        .post(&format!(
            "/v2/target/blobs/uploads/?mount={digest}&from=lacks-it"
        ))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    // The spec lets a registry mount anyway ("MAY cross-mount the blob if it can be found") or
    // open a session; either way the blob must be usable or uploadable, never an error.
    match resp.status() {
        StatusCode::CREATED => assert_blob(&server, "target", digest.as_str(), &bytes).await,
        StatusCode::ACCEPTED => assert!(header(&resp, "location").is_some()),
        other => panic!("mount answered {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_resumes_after_a_restart() {
    let server = TestServer::start().await;
    let bytes = random_bytes(250_000);
    let digest = sha256(&bytes);
    let location = server.start_upload("resume").await;
    let resp = patch_chunk(&server, &location, 0, &bytes[..100_000]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let path = location
        .strip_prefix(&server.base)
        .expect("location on this server")
        .to_owned();

    let server = server.restart().await;
    let location = server.url(&path);
    assert_eq!(upload_range(&server, &location).await, "0-99999");
    let resp = patch_chunk(&server, &location, 100_000, &bytes[100_000..200_000]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range").as_deref(), Some("0-199999"));
    let resp = server
        .client
        .put(with_digest(&location, &digest))
        .header("content-range", "200000-249999")
        .body(bytes[200_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_created(&server, resp, "resume", digest.as_str()).await;
    assert_blob(&server, "resume", digest.as_str(), &bytes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sha512_digests_are_accepted() {
    let server = TestServer::start().await;
    let bytes = random_bytes(9000);
    let digest = sha512(&bytes);
    assert!(digest.as_str().starts_with("sha512:"));
    // POST then PUT, in two chunks.
    let location = server.start_upload("sha512").await;
    let resp = patch_chunk(&server, &location, 0, &bytes[..4000]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = server
        .client
        .put(with_digest(&location, &digest))
        .header("content-range", "4000-8999")
        .body(bytes[4000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_created(&server, resp, "sha512", digest.as_str()).await;
    assert_blob(&server, "sha512", digest.as_str(), &bytes).await;

    // Single POST.
    let other = random_bytes(100);
    let other_digest = sha512(&other);
    let resp = server
        .post(&format!("/v2/sha512/blobs/uploads/?digest={other_digest}"))
        .body(other.clone())
        .send()
        .await
        .unwrap();
    assert_created(&server, resp, "sha512", other_digest.as_str()).await;
    assert_blob(&server, "sha512", other_digest.as_str(), &other).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_belongs_to_its_repository() {
    let server = TestServer::start().await;
    let location = server.start_upload("mine").await;
    let foreign = location.replace("/v2/mine/", "/v2/theirs/");
    let resp = server.client.get(&foreign).send().await.unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    let resp = patch_chunk(&server, &foreign, 0, b"x").await;
    assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    let resp = server.client.delete(&foreign).send().await.unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    // The owner's session is untouched.
    assert_eq!(upload_range(&server, &location).await, "0-0");
}

#[tokio::test(flavor = "multi_thread")]
async fn same_blob_pushed_twice_is_201_both_times() {
    let server = TestServer::start().await;
    let bytes = random_bytes(1000);
    let first = server.push_blob("twice", &bytes).await;
    let second = server.push_blob("twice", &bytes).await;
    assert_eq!(first, second);
    assert_blob(&server, "twice", first.as_str(), &bytes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pushes_all_land() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            // Half of them push the same bytes at the same time.
            let bytes = if i % 2 == 0 {
                b"shared layer".to_vec()
            } else {
                random_bytes(50_000)
            };
            let digest = server.push_blob("busy", &bytes).await;
            (digest, bytes)
        }));
    }
    for t in tasks {
        let (digest, bytes) = t.await.unwrap();
        assert_blob(&server, "busy", digest.as_str(), &bytes).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_chunks_to_one_upload_serialise() {
    let server = TestServer::start().await;
    let location = server.start_upload("serial").await;
    // Two clients claim the same first chunk: exactly one wins.
    let a = random_bytes(1000);
    let b = random_bytes(1000);
    let (ra, rb) = tokio::join!(
        patch_chunk(&server, &location, 0, &a),
        patch_chunk(&server, &location, 0, &b)
    );
    let mut statuses = [ra.status(), rb.status()];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::ACCEPTED, StatusCode::RANGE_NOT_SATISFIABLE]
    );
    let winner = if ra.status() == StatusCode::ACCEPTED {
        &a
    } else {
        &b
    };
    assert_eq!(upload_range(&server, &location).await, "0-999");
    let resp = server
        .client
        .put(with_digest(&location, &sha256(winner)))
        .send()
        .await
        .unwrap();
    assert_created(&server, resp, "serial", sha256(winner).as_str()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn large_blob_round_trips_with_a_tail_range() {
    let server = TestServer::start().await;
    let bytes = random_bytes(16 * 1024 * 1024 + 3);
    let digest = sha256(&bytes);
    let location = server.start_upload("large").await;
    let half = bytes.len() / 2;
    let resp = patch_chunk(&server, &location, 0, &bytes[..half]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = server
        .client
        .put(with_digest(&location, &digest))
        .header("content-range", format!("{half}-{}", bytes.len() - 1))
        .body(bytes[half..].to_vec())
        .send()
        .await
        .unwrap();
    assert_created(&server, resp, "large", digest.as_str()).await;
    assert_blob(&server, "large", digest.as_str(), &bytes).await;
    let resp = server
        .get(&format!("/v2/large/blobs/{digest}"))
        .header("range", "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert!(resp.bytes().await.unwrap()[..] == bytes[bytes.len() - 5..]);
}
