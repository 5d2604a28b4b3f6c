//! Bad input under `/v2/`: each answer carries the spec's status and JSON error envelope, and
//! none of them changes anything ("Errors are answers. Bad input changes nothing.", DESIGN.md).

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{
    assert_error, assert_head_error, descriptor, eventually, header, oci_manifest, random_bytes,
    raw_request, send_partial_and_close, sha256, with_digest, Image, TestServer, OCI_CONFIG,
    OCI_LAYER, OCI_MANIFEST,
};

const MAX_MANIFEST: usize = 4 * 1024 * 1024;

/// Asserts `GET /v2/<repo>/manifests/<reference>` is 404 MANIFEST_UNKNOWN.
async fn assert_no_manifest(server: &TestServer, repo: &str, reference: &str) {
    let resp = server
        .get(&format!("/v2/{repo}/manifests/{reference}"))
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
}

/// Asserts the repository was never created: its tag list is NAME_UNKNOWN.
async fn assert_no_repository(server: &TestServer, repo: &str) {
    let resp = server
        .get(&format!("/v2/{repo}/tags/list"))
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
}

async fn assert_no_blob(server: &TestServer, repo: &str, digest: &str) {
    let resp = server
        .head(&format!("/v2/{repo}/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_head_error(resp, StatusCode::NOT_FOUND).await;
}

/// `GET` on an upload: asserts 204 and returns its `Range`.
async fn upload_range(server: &TestServer, location: &str) -> String {
    let resp = server.client.get(location).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT, "GET {location}");
    header(&resp, "range").expect("Range on 204")
}

fn path_of<'a>(server: &TestServer, location: &'a str) -> &'a str {
    location
        .strip_prefix(&server.base)
        .expect("location on this server")
}

// ---------------------------------------------------------------------------------------------
// Manifests

#[tokio::test(flavor = "multi_thread")]
async fn malformed_manifest_is_manifest_invalid_and_changes_nothing() {
    let server = TestServer::start().await;
    let config = br#"{}"#;
    let bad_digest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": "sha256:nothex", "size": 2},
        "layers": [],
    }))
    .unwrap();
    let wrong_schema = serde_json::to_vec(&json!({
        "schemaVersion": 3,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [],
    }))
    .unwrap();
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("not JSON", b"not json at all".to_vec()),
        ("truncated", br#"{"schemaVersion":2,"config":"#.to_vec()),
        ("array", b"[]".to_vec()),
        ("no config", br#"{"schemaVersion":2,"layers":[]}"#.to_vec()),
        ("bad descriptor digest", bad_digest),
        ("schemaVersion 3", wrong_schema),
        (
            "invalid UTF-8",
            b"{\"schemaVersion\":2,\"x\":\"\xff\"}".to_vec(),
        ),
    ];
    for (what, body) in bodies {
        let resp = server
            .put_manifest("malformed", "v1", OCI_MANIFEST, &body)
            .await;
        let envelope = assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
        assert!(envelope["errors"][0]["message"].is_string(), "{what}");
    }
    assert_no_repository(&server, "malformed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_push_to_an_existing_tag_leaves_it_alone() {
    let server = TestServer::start().await;
    let image = server.push_image("keep", "v1").await;
    let resp = server.put_manifest("keep", "v1", OCI_MANIFEST, b"{").await;
    assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    let resp = server.get("/v2/keep/manifests/v1").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.bytes().await.unwrap()[..] == image.manifest[..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_referencing_a_blob_not_in_the_repo_is_manifest_blob_unknown() {
    let server = TestServer::start().await;
    let image = Image::random();
    server.push_blob("partial", &image.config).await;
    server.push_blob("partial", &image.layers[0]).await;
    // The second layer exists, but in another repository.
    server.push_blob("other", &image.layers[1]).await;
    let resp = server
        .put_manifest("partial", "v1", OCI_MANIFEST, &image.manifest)
        .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    assert_no_manifest(&server, "partial", "v1").await;
    assert_no_manifest(&server, "partial", image.digest.as_str()).await;

    // A missing config is refused the same way.
    let layer = random_bytes(10);
    server.push_blob("partial", &layer).await;
    let no_config = oci_manifest(
        descriptor(OCI_CONFIG, b"{\"never\":\"pushed\"}"),
        vec![descriptor(OCI_LAYER, &layer)],
    );
    let resp = server
        .put_manifest("partial", "v2", OCI_MANIFEST, &no_config)
        .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    assert_no_manifest(&server, "partial", "v2").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn put_by_a_digest_the_bytes_do_not_hash_to_is_digest_invalid() {
    let server = TestServer::start().await;
    let image = Image::random();
    server.push_image_blobs("mismatch", &image).await;
    let wrong = sha256(b"something else");
    let resp = server
        .put_manifest("mismatch", wrong.as_str(), OCI_MANIFEST, &image.manifest)
        .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_no_manifest(&server, "mismatch", wrong.as_str()).await;
    assert_no_manifest(&server, "mismatch", image.digest.as_str()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_over_4_mib_is_413_and_changes_nothing() {
    let server = TestServer::start().await;
    // Announced by Content-Length: refused before the body is read.
    let request = format!(
        "PUT /v2/big/manifests/v1 HTTP/1.1\r\nHost: {}\r\nContent-Type: {OCI_MANIFEST}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        server.addr,
        MAX_MANIFEST + 1
    );
    let resp = raw_request(server.addr, request.as_bytes()).await;
    assert_eq!(resp.status, 413);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.error_code(), "MANIFEST_INVALID");

    // Streamed without a length: refused once the limit is crossed.
    let mut body = b"{\"schemaVersion\":2,\"pad\":\"".to_vec();
    body.resize(MAX_MANIFEST + 1, b'a');
    let pieces: Vec<Result<bytes::Bytes, std::io::Error>> = body
        .chunks(256 * 1024)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let resp = server
        .put("/v2/big/manifests/v1")
        .header("content-type", OCI_MANIFEST)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            pieces,
        )))
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "MANIFEST_INVALID").await;
    assert_no_repository(&server, "big").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_of_exactly_4_mib_is_accepted() {
    // Spec: "Client and registry implementations SHOULD expect to be able to support manifest
    // pushes of at least 4 megabytes."
    let server = TestServer::start().await;
    let config = br#"{}"#;
    server.push_blob("big", config).await;
    let head = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"config\":{},\"layers\":[],\"annotations\":{{\"pad\":\"",
        descriptor(OCI_CONFIG, config)
    );
    let tail = "\"}}";
    let mut bytes = head.into_bytes();
    bytes.resize(MAX_MANIFEST - tail.len(), b'p');
    bytes.extend_from_slice(tail.as_bytes());
    assert_eq!(bytes.len(), MAX_MANIFEST);
    let digest = server
        .push_manifest("big", "exactly-4mib", OCI_MANIFEST, &bytes)
        .await;
    let resp = server
        .get(&format!("/v2/big/manifests/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().len(), MAX_MANIFEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_manifest_is_manifest_unknown() {
    let server = TestServer::start().await;
    server.push_image("known", "v1").await;
    for (repo, reference) in [
        ("known", "v2".to_owned()),
        ("known", sha256(b"nothing").to_string()),
        ("unknown-repo", "v1".to_owned()),
    ] {
        assert_no_manifest(&server, repo, &reference).await;
        let resp = server
            .head(&format!("/v2/{repo}/manifests/{reference}"))
            .send()
            .await
            .unwrap();
        assert_head_error(resp, StatusCode::NOT_FOUND).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Names, tags and digests in URLs

#[tokio::test(flavor = "multi_thread")]
async fn invalid_repository_names_are_name_invalid() {
    let server = TestServer::start().await;
    let digest = sha256(b"x");
    let long = "a".repeat(256);
    for name in [
        "",
        "Upper",
        "a//b",
        "trailing-",
        "a%2Fb",
        "-lead",
        "a/B/c",
        long.as_str(),
    ] {
        for (method, path) in [
            ("GET", format!("/v2/{name}/manifests/v1")),
            ("PUT", format!("/v2/{name}/manifests/v1")),
            ("GET", format!("/v2/{name}/blobs/{digest}")),
            ("POST", format!("/v2/{name}/blobs/uploads/")),
            ("GET", format!("/v2/{name}/tags/list")),
            ("GET", format!("/v2/{name}/referrers/{digest}")),
        ] {
            let method: reqwest::Method = method.parse().unwrap();
            let resp = server
                .client
                .request(method.clone(), server.url(&path))
                .body(Vec::new())
                .send()
                .await
                .unwrap();
            assert_error(resp, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
        }
    }
    // `..` segments: sent raw, since a client library would resolve them away.
    for path in [
        "/v2/../manifests/v1",
        "/v2/a/../b/tags/list",
        "/v2/a/./b/tags/list",
        "/v2/../../etc/blobs/uploads/",
    ] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            server.addr
        );
        let resp = raw_request(server.addr, request.as_bytes()).await;
        assert_eq!(resp.status, 400, "{path}");
        assert_eq!(resp.error_code(), "NAME_INVALID", "{path}");
    }
    // The longest valid name, 255 characters, is accepted.
    let longest = format!("{}/{}", "a".repeat(127), "b".repeat(127));
    assert_eq!(longest.len(), 255);
    server.push_image(&longest, "v1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_tags_are_tag_invalid() {
    let server = TestServer::start().await;
    let image = Image::random();
    server.push_image_blobs("tags", &image).await;
    let long = "t".repeat(129);
    for tag in [long.as_str(), ".hidden", "-dash", "a+b", "caf%C3%A9"] {
        let resp = server
            .put_manifest("tags", tag, OCI_MANIFEST, &image.manifest)
            .await;
        assert_error(resp, StatusCode::BAD_REQUEST, "TAG_INVALID").await;
        let resp = server
            .get(&format!("/v2/tags/manifests/{tag}"))
            .send()
            .await
            .unwrap();
        assert_error(resp, StatusCode::BAD_REQUEST, "TAG_INVALID").await;
        let resp = server
            .delete(&format!("/v2/tags/manifests/{tag}"))
            .send()
            .await
            .unwrap();
        assert_error(resp, StatusCode::BAD_REQUEST, "TAG_INVALID").await;
    }
    assert_no_manifest(&server, "tags", image.digest.as_str()).await;
    // The longest valid tag, 128 characters, is accepted.
    let longest = format!("_{}", "T.-".repeat(42) + "x");
    assert_eq!(longest.len(), 128);
    server
        .push_manifest("tags", &longest, OCI_MANIFEST, &image.manifest)
        .await;
    let resp = server
        .get(&format!("/v2/tags/manifests/{longest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_digests_in_urls_are_digest_invalid() {
    let server = TestServer::start().await;
    server.push_image("dg", "v1").await;
    let upper = format!("sha256:{}", "A".repeat(64));
    let short = format!("sha256:{}", "a".repeat(63));
    let md5 = "md5:d41d8cd98f00b204e9800998ecf8427e".to_owned();
    let bad_hex = format!("sha256:{}", "g".repeat(64));
    for digest in [upper, short, md5, bad_hex, "sha256:".to_owned()] {
        for (method, path) in [
            ("GET", format!("/v2/dg/blobs/{digest}")),
            ("DELETE", format!("/v2/dg/blobs/{digest}")),
            ("GET", format!("/v2/dg/manifests/{digest}")),
            ("PUT", format!("/v2/dg/manifests/{digest}")),
            ("DELETE", format!("/v2/dg/manifests/{digest}")),
            ("GET", format!("/v2/dg/referrers/{digest}")),
            ("POST", format!("/v2/dg/blobs/uploads/?digest={digest}")),
        ] {
            let method: reqwest::Method = method.parse().unwrap();
            let resp = server
                .client
                .request(method.clone(), server.url(&path))
                .header("content-type", OCI_MANIFEST)
                .body(b"{}".to_vec())
                .send()
                .await
                .unwrap();
            assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
        }
        let location = server.start_upload("dg").await;
        let resp = server
            .client
            .put(format!("{location}?digest={digest}"))
            .body(b"abc".to_vec())
            .send()
            .await
            .unwrap();
        assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    }
    // A blob digest without an algorithm.
    let resp = server.get("/v2/dg/blobs/nodigest").send().await.unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

// ---------------------------------------------------------------------------------------------
// Uploads

#[tokio::test(flavor = "multi_thread")]
async fn unknown_or_malformed_upload_ids_are_blob_upload_unknown() {
    let server = TestServer::start().await;
    server.push_blob("up", b"x").await;
    let digest = sha256(b"y");
    for id in [
        "0b0b8c9f-5f0e-4f7a-9d0c-3a6e4f1e2d3c",
        "0B0B8C9F-5F0E-4F7A-9D0C-3A6E4F1E2D3C",
        "not-a-uuid",
        "..%2F..%2Fetc",
        "..%2F..%2F..%2Fmeta.db",
    ] {
        let path = format!("/v2/up/blobs/uploads/{id}");
        let resp = server.get(&path).send().await.unwrap();
        assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
        let resp = server
            .patch(&path)
            .header("content-range", "0-0")
            .body(b"y".to_vec())
            .send()
            .await
            .unwrap();
        assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
        let resp = server
            .put(&format!("{path}?digest={digest}"))
            .body(b"y".to_vec())
            .send()
            .await
            .unwrap();
        assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
        let resp = server.delete(&path).send().await.unwrap();
        assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    }
    assert_no_blob(&server, "up", digest.as_str()).await;

    // Literal dot segments, sent raw (a client library would resolve them).
    let request = format!(
        "GET /v2/up/blobs/uploads/.. HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.addr
    );
    let resp = raw_request(server.addr, request.as_bytes()).await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.error_code(), "BLOB_UPLOAD_UNKNOWN");
    for method in ["GET", "PATCH", "PUT", "DELETE"] {
        let request = format!(
            "{method} /v2/up/blobs/uploads/../../etc?digest={digest} HTTP/1.1\r\nHost: {}\r\n\
             Content-Length: 1\r\nConnection: close\r\n\r\ny",
            server.addr
        );
        let resp = raw_request(server.addr, request.as_bytes()).await;
        // Not an upload URL at all (it names `/v2/up/etc`): any 4xx with the envelope will do,
        // as long as nothing is touched.
        assert!(
            (400..500).contains(&resp.status),
            "{method} ../../etc answered {}",
            resp.status
        );
        resp.error_code();
    }
    assert_no_blob(&server, "up", digest.as_str()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn put_with_the_wrong_digest_is_digest_invalid_and_no_blob_appears() {
    let server = TestServer::start().await;
    let bytes = random_bytes(1000);
    let right = sha256(&bytes);
    let wrong = sha256(b"other bytes");

    // Whole body in the PUT.
    let first = server.start_upload("wrong").await;
    let resp = server
        .client
        .put(with_digest(&first, &wrong))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_no_blob(&server, "wrong", wrong.as_str()).await;
    assert_no_blob(&server, "wrong", right.as_str()).await;

    // After PATCHes, an empty PUT.
    let location = server.start_upload("wrong").await;
    let resp = server
        .client
        .patch(&location)
        .header("content-range", "0-999")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = server
        .client
        .put(with_digest(&location, &wrong))
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_no_blob(&server, "wrong", wrong.as_str()).await;
    assert_no_blob(&server, "wrong", right.as_str()).await;

    // Single POST.
    let resp = server
        .post(&format!("/v2/wrong/blobs/uploads/?digest={wrong}"))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_no_blob(&server, "wrong", wrong.as_str()).await;
    assert_no_blob(&server, "wrong", right.as_str()).await;
    // Nor a session file of its own (the two sessions above are the client's to cancel).
    for location in [&first, &location] {
        let resp = server
            .client
            .delete(location.as_str())
            .send()
            .await
            .unwrap();
        // 404 if the server already cancelled the session on the refused PUT, as distribution
        // does.
        assert!(
            [StatusCode::NO_CONTENT, StatusCode::NOT_FOUND].contains(&resp.status()),
            "DELETE {location}: {}",
            resp.status()
        );
    }
    assert_eq!(server.leftovers(), Vec::<std::path::PathBuf>::new());
    // Nothing of it may serve another repository's mount either.
    let resp = server
        .post(&format!("/v2/elsewhere/blobs/uploads/?mount={right}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED, "nothing to mount");
}

#[tokio::test(flavor = "multi_thread")]
async fn put_without_a_digest_is_digest_invalid_and_changes_nothing() {
    let server = TestServer::start().await;
    let bytes = random_bytes(100);
    let location = server.start_upload("nodigest").await;
    let resp = server
        .client
        .patch(&location)
        .header("content-range", "0-49")
        .body(bytes[..50].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = server
        .client
        .put(&location)
        .header("content-range", "50-99")
        .body(bytes[50..].to_vec())
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_eq!(upload_range(&server, &location).await, "0-49");
    assert_no_blob(&server, "nodigest", sha256(&bytes).as_str()).await;
    // The session still completes.
    let resp = server
        .client
        .put(with_digest(&location, &sha256(&bytes)))
        .header("content-range", "50-99")
        .body(bytes[50..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread")]
async fn content_range_disagreeing_with_content_length_changes_nothing() {
    let server = TestServer::start().await;
    let location = server.start_upload("sizes").await;
    let resp = server
        .client
        .patch(&location)
        .header("content-range", "0-9")
        .body(b"12345".to_vec())
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "SIZE_INVALID").await;
    assert_eq!(upload_range(&server, &location).await, "0-0");
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_patch_leaves_the_offset_unchanged() {
    let server = TestServer::start().await;
    let bytes = random_bytes(1010);
    let location = server.start_upload("trunc").await;
    let resp = server
        .client
        .patch(&location)
        .header("content-range", "0-9")
        .body(bytes[..10].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let path = path_of(&server, &location).to_owned();

    // With Content-Length and Content-Range: 1000 bytes announced, 100 sent.
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\n\
         Content-Range: 10-1009\r\nContent-Length: 1000\r\n\r\n",
        server.addr
    );
    send_partial_and_close(server.addr, &head, &bytes[10..110]).await;
    assert_eq!(upload_range(&server, &location).await, "0-9");

    // Streamed (chunked transfer encoding), cut inside a chunk.
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        server.addr
    );
    let mut partial = b"64\r\n".to_vec();
    partial.extend_from_slice(&bytes[10..110]);
    partial.extend_from_slice(b"\r\n3e8\r\n");
    partial.extend_from_slice(&bytes[110..150]);
    send_partial_and_close(server.addr, &head, &partial).await;
    assert_eq!(upload_range(&server, &location).await, "0-9");

    // A closing PUT cut short.
    let digest = sha256(&bytes);
    let head = format!(
        "PUT {path}?digest={digest} HTTP/1.1\r\nHost: {}\r\nContent-Range: 10-1009\r\n\
         Content-Length: 1000\r\n\r\n",
        server.addr
    );
    send_partial_and_close(server.addr, &head, &bytes[10..500]).await;
    assert_no_blob(&server, "trunc", digest.as_str()).await;
    assert_no_blob(&server, "trunc", sha256(&bytes[..500]).as_str()).await;
    assert_eq!(upload_range(&server, &location).await, "0-9");

    // The next chunk goes exactly where the offset says, and the blob is right.
    let resp = server
        .client
        .patch(&location)
        .header("content-range", "10-1009")
        .body(bytes[10..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = server
        .client
        .put(with_digest(&location, &digest))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = server
        .get(&format!("/v2/trunc/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert!(resp.bytes().await.unwrap()[..] == bytes[..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_leaving_mid_single_post_leaves_no_blob() {
    let server = TestServer::start().await;
    let bytes = random_bytes(200_000);
    let digest = sha256(&bytes);
    let head = format!(
        "POST /v2/gone/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: {}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        server.addr,
        bytes.len()
    );
    send_partial_and_close(server.addr, &head, &bytes[..100_000]).await;
    // Nor does the single request leave a session or temporary file behind, once the server
    // has noticed the closed connection.
    eventually("the cut-off POST's upload file is removed", || {
        server.leftovers().is_empty()
    })
    .await;
    assert_no_blob(&server, "gone", digest.as_str()).await;
    // A complete push afterwards works and serves the right bytes.
    let resp = server
        .post(&format!("/v2/gone/blobs/uploads/?digest={digest}"))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = server
        .get(&format!("/v2/gone/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert!(resp.bytes().await.unwrap()[..] == bytes[..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn final_put_with_a_misplaced_chunk_is_416_and_changes_nothing() {
    let server = TestServer::start().await;
    let bytes = random_bytes(30);
    let digest = sha256(&bytes);
    let location = server.start_upload("misplaced").await;
    let resp = server
        .client
        .patch(&location)
        .header("content-range", "0-9")
        .body(bytes[..10].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = server
        .client
        .put(with_digest(&location, &digest))
        .header("content-range", "15-29")
        .body(bytes[15..].to_vec())
        .send()
        .await
        .unwrap();
    assert_error(
        resp,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "BLOB_UPLOAD_INVALID",
    )
    .await;
    assert_no_blob(&server, "misplaced", digest.as_str()).await;
    assert_eq!(upload_range(&server, &location).await, "0-9");
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_over_the_size_limit_is_refused_and_changes_nothing() {
    let server = TestServer::start_with(|cfg| cfg.max_blob_bytes = Some(1000)).await;
    let location = server.start_upload("limited").await;
    let resp = server
        .client
        .patch(&location)
        .header("content-range", "0-1999")
        .body(random_bytes(2000))
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
    assert_eq!(upload_range(&server, &location).await, "0-0");
    // A single POST over the limit leaves nothing either.
    let big = random_bytes(2000);
    let digest = sha256(&big);
    let resp = server
        .post(&format!("/v2/limited/blobs/uploads/?digest={digest}"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
    assert_no_blob(&server, "limited", digest.as_str()).await;
    // Up to the limit is fine.
    server.push_blob("limited", &random_bytes(1000)).await;
}

// ---------------------------------------------------------------------------------------------
// Other resources and methods

#[tokio::test(flavor = "multi_thread")]
async fn tags_of_an_unknown_repository_are_name_unknown() {
    let server = TestServer::start().await;
    let resp = server.get("/v2/nowhere/tags/list").send().await.unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
    let resp = server
        .get("/v2/nowhere/tags/list?n=0")
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_methods_are_405_unsupported() {
    let server = TestServer::start().await;
    let image = server.push_image("m", "v1").await;
    let blob = sha256(&image.config);
    for (method, path) in [
        ("POST", "/v2/m/manifests/v1".to_owned()),
        ("PATCH", "/v2/m/manifests/v1".to_owned()),
        ("POST", format!("/v2/m/blobs/{blob}")),
        ("PUT", format!("/v2/m/blobs/{blob}")),
        ("PATCH", format!("/v2/m/blobs/{blob}")),
        ("PUT", "/v2/m/tags/list".to_owned()),
        ("DELETE", "/v2/m/tags/list".to_owned()),
        ("DELETE", "/v2/_catalog".to_owned()),
        ("POST", "/v2/".to_owned()),
        ("PUT", "/v2/m/blobs/uploads/".to_owned()),
        ("DELETE", format!("/v2/m/referrers/{}", image.digest)),
    ] {
        let method: reqwest::Method = method.parse().unwrap();
        let resp = server
            .client
            .request(method.clone(), server.url(&path))
            .body(b"{}".to_vec())
            .send()
            .await
            .unwrap();
        assert_error(resp, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    }
    // Nothing changed.
    let resp = server.get("/v2/m/manifests/v1").send().await.unwrap();
    assert!(resp.bytes().await.unwrap()[..] == image.manifest[..]);
    let resp = server
        .get(&format!("/v2/m/blobs/{blob}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_405_lists_the_allowed_methods() {
    // RFC 9110 §15.5.6: "The origin server MUST generate an Allow header field in a 405 (Method
    // Not Allowed) response containing a list of the target resource's currently supported
    // methods."
    let server = TestServer::start().await;
    server.push_image("m", "v1").await;
    let resp = server.post("/v2/m/manifests/v1").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = header(&resp, "allow").expect("Allow header on a 405");
    for method in ["GET", "HEAD", "PUT", "DELETE"] {
        assert!(allow.contains(method), "Allow {allow:?} lists {method}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_are_404_with_the_envelope() {
    let server = TestServer::start().await;
    for path in ["/v2/a", "/v2/a/b", "/v2/a/things/x", "/v2/a/tags/other"] {
        let resp = server.get(path).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        let envelope: serde_json::Value = resp.json().await.unwrap();
        crate::harness::check_envelope(&envelope, path);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_is_json_and_head_errors_have_no_body() {
    let server = TestServer::start().await;
    server.push_image("e", "v1").await;
    let unknown = sha256(b"unknown");
    let paths = [
        format!("/v2/e/blobs/{unknown}"),
        format!("/v2/e/manifests/{unknown}"),
        "/v2/e/manifests/nope".to_owned(),
        "/v2/E/manifests/v1".to_owned(),
        "/v2/e/manifests/.bad".to_owned(),
        "/v2/e/blobs/sha256:bad".to_owned(),
        "/v2/ghost/manifests/v1".to_owned(),
    ];
    for path in &paths {
        let resp = server.get(path).send().await.unwrap();
        let status = resp.status();
        assert!(status.is_client_error(), "GET {path}: {status}");
        assert_eq!(
            header(&resp, "content-type").as_deref(),
            Some("application/json"),
            "GET {path}"
        );
        let text = resp.text().await.unwrap();
        let envelope: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("GET {path}: body is not JSON ({e}): {text}"));
        crate::harness::check_envelope(&envelope, &text);

        let resp = server.head(path).send().await.unwrap();
        assert_eq!(resp.status(), status, "HEAD {path} answers like GET");
        assert_head_error(resp, status).await;
    }
    // A HEAD's answer on the wire: headers and nothing else, even with the connection kept
    // open until the server closes it.
    let request = format!(
        "HEAD /v2/e/manifests/nope HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.addr
    );
    let resp = raw_request(server.addr, request.as_bytes()).await;
    assert_eq!(resp.status, 404);
    assert!(
        resp.body.is_empty(),
        "HEAD answer carries bytes: {:?}",
        resp.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn head_is_answered_wherever_get_is() {
    // RFC 9110 §9.1: "All general-purpose servers MUST support the methods GET and HEAD."
    // §9.3.2: HEAD is "identical to GET except that the server MUST NOT send content".
    let server = TestServer::start().await;
    let image = server.push_image("h", "v1").await;
    let location = server.start_upload("h").await;
    let upload_path = location.strip_prefix(&server.base).unwrap().to_owned();
    for path in [
        upload_path,
        "/v2/h/tags/list".to_owned(),
        "/v2/_catalog".to_owned(),
        format!("/v2/h/referrers/{}", image.digest),
        "/v2/ghost/tags/list".to_owned(),
        "/v2/h/blobs/uploads/0b0b8c9f-5f0e-4f7a-9d0c-3a6e4f1e2d3c".to_owned(),
    ] {
        let get = server.get(&path).send().await.unwrap();
        let head = server.head(&path).send().await.unwrap();
        assert_eq!(head.status(), get.status(), "HEAD {path} answers like GET");
        for name in ["content-type", "range", "location", "link"] {
            assert_eq!(
                header(&head, name),
                header(&get, name),
                "{name} of HEAD {path}"
            );
        }
        assert!(
            head.bytes().await.unwrap().is_empty(),
            "HEAD {path} has no body"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_put_with_the_wrong_digest_does_not_keep_its_chunk() {
    // "Bad input changes nothing": a refused closing PUT must not leave its final chunk in the
    // session. (distribution cancels the session instead; either is acceptable here.)
    let server = TestServer::start().await;
    let bytes = random_bytes(20);
    let location = server.start_upload("keepchunk").await;
    let resp = server
        .client
        .patch(&location)
        .header("content-range", "0-9")
        .body(bytes[..10].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = server
        .client
        .put(with_digest(&location, &sha256(b"not these bytes")))
        .header("content-range", "10-19")
        .body(bytes[10..].to_vec())
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_no_blob(&server, "keepchunk", sha256(&bytes).as_str()).await;
    let resp = server.client.get(&location).send().await.unwrap();
    match resp.status() {
        StatusCode::NOT_FOUND => {
            assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
        }
        StatusCode::NO_CONTENT => assert_eq!(
            header(&resp, "range").as_deref(),
            Some("0-9"),
            "the refused PUT's chunk stayed in the upload"
        ),
        other => panic!("upload status answered {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_single_post_creates_no_repository() {
    let server = TestServer::start().await;
    let resp = server
        .post(&format!(
            "/v2/fresh/blobs/uploads/?digest={}",
            sha256(b"other")
        ))
        .body(b"these bytes".to_vec())
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_no_repository(&server, "fresh").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn content_range_disagreeing_with_a_streamed_body_changes_nothing() {
    // A chunk sent without Content-Length (chunked transfer encoding) whose bytes do not fill
    // the range it claims: the server can only tell at the end of the body, and must then
    // keep none of it.
    let server = TestServer::start().await;
    for (claimed, sent) in [("0-9", 20), ("0-9", 5)] {
        let location = server.start_upload("streamrange").await;
        let pieces: Vec<Result<bytes::Bytes, std::io::Error>> =
            vec![Ok(bytes::Bytes::from(random_bytes(sent)))];
        let resp = server
            .client
            .patch(&location)
            .header("content-range", claimed)
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                pieces,
            )))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        assert!(
            status.is_client_error(),
            "Content-Range {claimed} with {sent} bytes answered {status}"
        );
        assert_eq!(
            upload_range(&server, &location).await,
            "0-0",
            "Content-Range {claimed} with {sent} bytes"
        );
    }
}
