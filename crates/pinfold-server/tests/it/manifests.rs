//! `GET|HEAD|PUT|DELETE /v2/<name>/manifests/<reference>` (end-3, end-7, end-9): the four stored
//! kinds, byte preservation, `Accept` negotiation, deletion by digest and by tag.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{
    assert_error, assert_head_error, descriptor, header, oci_manifest, random_bytes, sha256,
    sha512, Image, TestServer, DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST,
    OCI_CONFIG, OCI_EMPTY, OCI_INDEX, OCI_LAYER, OCI_MANIFEST,
};

/// GETs a manifest and asserts 200 with exactly `bytes`, `media_type` and the digest headers.
async fn assert_manifest(
    server: &TestServer,
    repo: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
) {
    let digest = sha256(bytes);
    let path = format!("/v2/{repo}/manifests/{reference}");
    let resp = server
        .get(&path)
        .header("accept", media_type)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
    assert_eq!(header(&resp, "content-type").as_deref(), Some(media_type));
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(
        header(&resp, "content-length"),
        Some(bytes.len().to_string())
    );
    let body = resp.bytes().await.unwrap();
    assert!(
        body[..] == bytes[..],
        "GET {path} returns the pushed bytes:\n{}\nvs\n{}",
        String::from_utf8_lossy(&body),
        String::from_utf8_lossy(bytes)
    );

    let resp = server
        .head(&path)
        .header("accept", media_type)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "HEAD {path}");
    assert_eq!(header(&resp, "content-type").as_deref(), Some(media_type));
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    assert_eq!(
        header(&resp, "content-length"),
        Some(bytes.len().to_string()),
        "HEAD {path} announces the manifest's size"
    );
    assert!(resp.bytes().await.unwrap().is_empty(), "HEAD has no body");
}

/// Asserts `GET /v2/<repo>/manifests/<reference>` is 404 MANIFEST_UNKNOWN.
async fn assert_no_manifest(server: &TestServer, repo: &str, reference: &str) {
    let resp = server
        .get(&format!("/v2/{repo}/manifests/{reference}"))
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
}

async fn tags_of(server: &TestServer, repo: &str) -> Vec<String> {
    let resp = server
        .get(&format!("/v2/{repo}/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    v["tags"]
        .as_array()
        .map(|a| a.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// A Docker schema 2 image: (config, layer, manifest), blobs pushed to `repo`.
async fn push_docker_image_blobs(server: &TestServer, repo: &str) -> Vec<u8> {
    let config = serde_json::to_vec(&json!({
        "architecture": "arm64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "nonce": random_bytes(8),
    }))
    .unwrap();
    let layer = random_bytes(777);
    server.push_blob(repo, &config).await;
    server.push_blob(repo, &layer).await;
    serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, &config),
        "layers": [descriptor(DOCKER_LAYER, &layer)],
    }))
    .unwrap()
}

fn index_of(media_type: &str, children: &[(&str, &[u8], &str)]) -> Vec<u8> {
    let manifests: Vec<Value> = children
        .iter()
        .map(|(mt, bytes, arch)| {
            let mut d = descriptor(mt, bytes);
            d["platform"] = json!({"architecture": arch, "os": "linux"});
            d
        })
        .collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": manifests,
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn push_by_tag_then_get_and_head_by_tag_and_digest() {
    let server = TestServer::start().await;
    let image = Image::random();
    server.push_image_blobs("lib/app", &image).await;
    let resp = server
        .put_manifest("lib/app", "v1.0", OCI_MANIFEST, &image.manifest)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(image.digest.as_str())
    );
    let location = header(&resp, "location").expect("Location on 201");
    assert_eq!(
        server.resolve(&location),
        server.url(&format!("/v2/lib/app/manifests/{}", image.digest)),
        "Location is a pullable manifest URL"
    );
    assert_manifest(&server, "lib/app", "v1.0", OCI_MANIFEST, &image.manifest).await;
    assert_manifest(
        &server,
        "lib/app",
        image.digest.as_str(),
        OCI_MANIFEST,
        &image.manifest,
    )
    .await;
    assert_eq!(tags_of(&server, "lib/app").await, ["v1.0"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn push_by_digest() {
    let server = TestServer::start().await;
    let image = Image::random();
    server.push_image_blobs("bydigest", &image).await;
    let resp = server
        .put_manifest(
            "bydigest",
            image.digest.as_str(),
            OCI_MANIFEST,
            &image.manifest,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(image.digest.as_str())
    );
    assert_manifest(
        &server,
        "bydigest",
        image.digest.as_str(),
        OCI_MANIFEST,
        &image.manifest,
    )
    .await;
    assert!(tags_of(&server, "bydigest").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn push_by_sha512_digest() {
    let server = TestServer::start().await;
    let image = Image::random();
    server.push_image_blobs("sha512", &image).await;
    let digest = sha512(&image.manifest);
    let resp = server
        .put_manifest("sha512", digest.as_str(), OCI_MANIFEST, &image.manifest)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    // Spec: Docker-Content-Digest "MUST be equal to the client provided digest".
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    let resp = server
        .get(&format!("/v2/sha512/manifests/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "docker-content-digest").as_deref(),
        Some(digest.as_str())
    );
    assert!(resp.bytes().await.unwrap()[..] == image.manifest[..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn same_manifest_under_two_tags() {
    let server = TestServer::start().await;
    let image = server.push_image("two", "a").await;
    server
        .push_manifest("two", "b", OCI_MANIFEST, &image.manifest)
        .await;
    assert_manifest(&server, "two", "a", OCI_MANIFEST, &image.manifest).await;
    assert_manifest(&server, "two", "b", OCI_MANIFEST, &image.manifest).await;
    assert_eq!(tags_of(&server, "two").await, ["a", "b"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn moving_a_tag_serves_the_new_manifest() {
    let server = TestServer::start().await;
    let a = server.push_image("mover", "latest").await;
    // Read it once so any cache holds the old answer.
    assert_manifest(&server, "mover", "latest", OCI_MANIFEST, &a.manifest).await;
    let b = server.push_image("mover", "latest").await;
    assert_manifest(&server, "mover", "latest", OCI_MANIFEST, &b.manifest).await;
    // The old manifest stays pullable by digest.
    assert_manifest(
        &server,
        "mover",
        a.digest.as_str(),
        OCI_MANIFEST,
        &a.manifest,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_of_another_repository_is_unknown() {
    let server = TestServer::start().await;
    let image = server.push_image("here", "v1").await;
    server.push_blob("there", b"x").await;
    assert_no_manifest(&server, "there", image.digest.as_str()).await;
    assert_no_manifest(&server, "there", "v1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_schema2_manifest() {
    let server = TestServer::start().await;
    let manifest = push_docker_image_blobs(&server, "docker").await;
    server
        .push_manifest("docker", "v2", DOCKER_MANIFEST, &manifest)
        .await;
    assert_manifest(&server, "docker", "v2", DOCKER_MANIFEST, &manifest).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_manifest_list_needs_its_children() {
    let server = TestServer::start().await;
    let arm = push_docker_image_blobs(&server, "multi").await;
    let amd = push_docker_image_blobs(&server, "multi").await;
    server
        .push_manifest("multi", sha256(&arm).as_str(), DOCKER_MANIFEST, &arm)
        .await;
    let list = index_of(
        DOCKER_MANIFEST_LIST,
        &[
            (DOCKER_MANIFEST, &arm, "arm64"),
            (DOCKER_MANIFEST, &amd, "amd64"),
        ],
    );
    // One child is missing.
    let resp = server
        .put_manifest("multi", "latest", DOCKER_MANIFEST_LIST, &list)
        .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    assert_no_manifest(&server, "multi", "latest").await;
    assert_no_manifest(&server, "multi", sha256(&list).as_str()).await;

    server
        .push_manifest("multi", sha256(&amd).as_str(), DOCKER_MANIFEST, &amd)
        .await;
    server
        .push_manifest("multi", "latest", DOCKER_MANIFEST_LIST, &list)
        .await;
    assert_manifest(&server, "multi", "latest", DOCKER_MANIFEST_LIST, &list).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oci_index_and_accept_negotiation() {
    let server = TestServer::start().await;
    let child = Image::random();
    server.push_image_blobs("idx", &child).await;
    let index = index_of(OCI_INDEX, &[(OCI_MANIFEST, &child.manifest, "amd64")]);

    // Children must exist first.
    let resp = server.put_manifest("idx", "multi", OCI_INDEX, &index).await;
    assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    assert_no_manifest(&server, "idx", "multi").await;

    server
        .push_manifest("idx", child.digest.as_str(), OCI_MANIFEST, &child.manifest)
        .await;
    server
        .push_manifest("idx", "multi", OCI_INDEX, &index)
        .await;
    assert_manifest(&server, "idx", "multi", OCI_INDEX, &index).await;

    // Accept listing only image manifest types: the index is not acceptable.
    let only_images = format!("{OCI_MANIFEST}, {DOCKER_MANIFEST}");
    let resp = server
        .get("/v2/idx/manifests/multi")
        .header("accept", &only_images)
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    let resp = server
        .head("/v2/idx/manifests/multi")
        .header("accept", &only_images)
        .send()
        .await
        .unwrap();
    assert_head_error(resp, StatusCode::NOT_FOUND).await;

    // The index type among others, as separate headers and with parameters.
    let resp = server
        .get("/v2/idx/manifests/multi")
        .header("accept", OCI_MANIFEST)
        .header("accept", format!("{OCI_INDEX}; q=0.9"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type").as_deref(), Some(OCI_INDEX));
    assert!(resp.bytes().await.unwrap()[..] == index[..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_schema1_is_refused() {
    let server = TestServer::start().await;
    let schema1 = br#"{"schemaVersion":1,"name":"s1","tag":"v1","architecture":"amd64","fsLayers":[],"history":[],"signatures":[]}"#;
    for content_type in [
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/json",
    ] {
        let resp = server.put_manifest("s1", "v1", content_type, schema1).await;
        assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    }
    assert_no_manifest(&server, "s1", "v1").await;
    assert_no_manifest(&server, "s1", sha256(schema1).as_str()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_are_preserved_exactly() {
    let server = TestServer::start().await;
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = random_bytes(321);
    server.push_blob("exact", config).await;
    server.push_blob("exact", &layer).await;
    // Odd key order, CRLF and tabs, padding, escapes, raw UTF-8, an unknown field, leading and
    // trailing whitespace: none of it may be normalised away.
    let text = format!(
        "\n  {{ \"layers\" : [ {{\"size\":{ls}, \"digest\": \"{ld}\",\"mediaType\":\"{OCI_LAYER}\"}} ],\r\n\
         \t\"x-extra\": [1, 2.50, {{\"nested\": null}}, \"\\u00e9\\/\"],\r\n\
         \"annotations\":{{\"note\":\"caf\\u00e9 \\\"quoted\\\" \u{e9}\u{1F600}\"}},\n \
         \"config\" : {{ \"mediaType\": \"{OCI_CONFIG}\", \"size\": {cs}, \"digest\": \"{cd}\" }} ,\
         \"schemaVersion\"  :  2 , \"mediaType\":\"{OCI_MANIFEST}\"   }}\n\n",
        ls = layer.len(),
        ld = sha256(&layer),
        cs = config.len(),
        cd = sha256(config),
    );
    let bytes = text.into_bytes();
    let digest = server
        .push_manifest("exact", "odd", OCI_MANIFEST, &bytes)
        .await;
    assert_eq!(digest, sha256(&bytes));
    assert_manifest(&server, "exact", "odd", OCI_MANIFEST, &bytes).await;
    assert_manifest(&server, "exact", digest.as_str(), OCI_MANIFEST, &bytes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_are_preserved_across_a_restart() {
    let server = TestServer::start().await;
    let config = br#"{}"#;
    server.push_blob("exact", config).await;
    let bytes = format!(
        "{{\n    \"schemaVersion\": 2,\n    \"config\": {{\"mediaType\": \"{OCI_CONFIG}\", \"size\": 2, \"digest\": \"{}\"}},\n    \"layers\": []\n}}",
        sha256(config)
    )
    .into_bytes();
    server
        .push_manifest("exact", "pretty", OCI_MANIFEST, &bytes)
        .await;
    let server = server.restart().await;
    assert_manifest(&server, "exact", "pretty", OCI_MANIFEST, &bytes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn content_type_parameters_are_ignored() {
    let server = TestServer::start().await;
    let image = Image::random();
    server.push_image_blobs("params", &image).await;
    let resp = server
        .put_manifest(
            "params",
            "v1",
            &format!("{OCI_MANIFEST}; charset=utf-8"),
            &image.manifest,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    // Spec: "The registry SHOULD NOT include parameters on the Content-Type header."
    assert_manifest(&server, "params", "v1", OCI_MANIFEST, &image.manifest).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oci_manifest_without_media_type_field() {
    let server = TestServer::start().await;
    let config = random_bytes(10);
    server.push_blob("nomt", &config).await;
    let bytes = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": [],
    }))
    .unwrap();
    server
        .push_manifest("nomt", "v1", OCI_MANIFEST, &bytes)
        .await;
    assert_manifest(&server, "nomt", "v1", OCI_MANIFEST, &bytes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn content_type_contradicting_media_type_is_manifest_invalid() {
    let server = TestServer::start().await;
    let image = Image::random();
    server.push_image_blobs("contra", &image).await;
    let resp = server
        .put_manifest("contra", "v1", DOCKER_MANIFEST, &image.manifest)
        .await;
    assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    assert_no_manifest(&server, "contra", "v1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_by_digest_removes_the_manifest_and_its_tags() {
    let server = TestServer::start().await;
    let image = server.push_image("deld", "v1").await;
    server
        .push_manifest("deld", "v2", OCI_MANIFEST, &image.manifest)
        .await;
    let keep = server.push_image("deld", "keep").await;
    // Warm any cache.
    assert_manifest(&server, "deld", "v1", OCI_MANIFEST, &image.manifest).await;
    assert_manifest(
        &server,
        "deld",
        image.digest.as_str(),
        OCI_MANIFEST,
        &image.manifest,
    )
    .await;

    let resp = server
        .delete(&format!("/v2/deld/manifests/{}", image.digest))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_no_manifest(&server, "deld", image.digest.as_str()).await;
    assert_no_manifest(&server, "deld", "v1").await;
    assert_no_manifest(&server, "deld", "v2").await;
    let resp = server
        .head(&format!("/v2/deld/manifests/{}", image.digest))
        .send()
        .await
        .unwrap();
    assert_head_error(resp, StatusCode::NOT_FOUND).await;
    assert_eq!(tags_of(&server, "deld").await, ["keep"]);
    assert_manifest(&server, "deld", "keep", OCI_MANIFEST, &keep.manifest).await;

    // Twice: nothing left to delete.
    let resp = server
        .delete(&format!("/v2/deld/manifests/{}", image.digest))
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_by_tag_keeps_the_manifest() {
    let server = TestServer::start().await;
    let image = server.push_image("delt", "v1").await;
    assert_manifest(&server, "delt", "v1", OCI_MANIFEST, &image.manifest).await;
    let resp = server.delete("/v2/delt/manifests/v1").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_no_manifest(&server, "delt", "v1").await;
    assert!(tags_of(&server, "delt").await.is_empty());
    assert_manifest(
        &server,
        "delt",
        image.digest.as_str(),
        OCI_MANIFEST,
        &image.manifest,
    )
    .await;
    let resp = server.delete("/v2/delt/manifests/v1").send().await.unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_in_an_unknown_repository_is_404() {
    let server = TestServer::start().await;
    let resp = server
        .delete(&format!("/v2/ghost/manifests/{}", sha256(b"x")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = server
        .delete("/v2/ghost/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn image_without_layers_is_accepted() {
    // Spec: "The uploaded manifest MUST reference any blobs that make up the object. However,
    // the list of blobs MAY be empty."
    let server = TestServer::start().await;
    let config = random_bytes(20);
    server.push_blob("nolayers", &config).await;
    let bytes = oci_manifest(descriptor(OCI_CONFIG, &config), vec![]);
    server
        .push_manifest("nolayers", "v1", OCI_MANIFEST, &bytes)
        .await;
    assert_manifest(&server, "nolayers", "v1", OCI_MANIFEST, &bytes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_sent_without_a_length_is_stored() {
    let server = TestServer::start().await;
    let image = Image::random();
    server.push_image_blobs("chunkedput", &image).await;
    let pieces: Vec<Result<bytes::Bytes, std::io::Error>> = image
        .manifest
        .chunks(100)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let resp = server
        .put("/v2/chunkedput/manifests/v1")
        .header("content-type", OCI_MANIFEST)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            pieces,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_manifest(&server, "chunkedput", "v1", OCI_MANIFEST, &image.manifest).await;
}

// Issue 16, item 4: a descriptor whose size disagrees with the stored blob or manifest is refused
// with 400 MANIFEST_INVALID naming the descriptor, and nothing is stored.

/// PUTs `bytes` under `tag` and then by digest, asserts both are 400 MANIFEST_INVALID whose
/// detail names `field`, the descriptor's digest and both sizes, and that nothing was stored: the
/// tag and the digest do not resolve and the manifest's bytes are not on disk.
async fn assert_size_refused(
    server: &TestServer,
    repo: &str,
    tag: &str,
    bytes: &[u8],
    field: &str,
    wrong: &Value,
    true_size: usize,
) {
    let digest = sha256(bytes);
    let body: Value = serde_json::from_slice(bytes).expect("manifest JSON");
    let media_type = body["mediaType"]
        .as_str()
        .expect("mediaType in the manifest");
    for reference in [tag.to_owned(), digest.to_string()] {
        let resp = server
            .put_manifest(repo, &reference, media_type, bytes)
            .await;
        let envelope = assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
        let detail = envelope["errors"][0]["detail"]
            .as_str()
            .unwrap_or_else(|| panic!("a text detail: {envelope}"));
        let declared = wrong["size"].as_u64().expect("declared size");
        let descriptor_digest = wrong["digest"].as_str().expect("descriptor digest");
        assert!(
            detail.starts_with(&format!("{field} {descriptor_digest} ")),
            "detail names {field} and its digest: {detail}"
        );
        assert!(
            detail.contains(&format!("declares size {declared},"))
                && detail.contains(&format!("has {true_size} bytes")),
            "detail gives both sizes ({declared} declared, {true_size} stored): {detail}"
        );
    }
    assert_no_manifest(server, repo, tag).await;
    assert_no_manifest(server, repo, digest.as_str()).await;
    assert!(
        !pinfold_store::BlobStore::open(server.data_dir())
            .expect("open the store")
            .blob_path(&digest)
            .exists(),
        "the refused manifest's bytes are not stored"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_16_layer_with_a_wrong_size_is_manifest_invalid() {
    let server = TestServer::start().await;
    let image = Image::random();
    server.push_image_blobs("sizes/layer", &image).await;
    let layer = random_bytes(200);
    server.push_blob("sizes/layer", &layer).await;

    let mut wrong = descriptor(OCI_LAYER, &layer);
    wrong["size"] = json!(999_999);
    let bytes = oci_manifest(descriptor(OCI_CONFIG, &image.config), vec![wrong.clone()]);
    assert_size_refused(
        &server,
        "sizes/layer",
        "v1",
        &bytes,
        "layers[0]",
        &wrong,
        200,
    )
    .await;

    // The third layer, too small, in a Docker manifest; an existing tag does not move.
    let good = server
        .push_manifest("sizes/layer", "v2", OCI_MANIFEST, &image.manifest)
        .await;
    let mut wrong = descriptor(DOCKER_LAYER, &layer);
    wrong["size"] = json!(199);
    let bytes = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, &image.config),
        "layers": [
            descriptor(DOCKER_LAYER, &image.layers[0]),
            descriptor(DOCKER_LAYER, &image.layers[1]),
            wrong,
        ],
    }))
    .unwrap();
    let resp = server
        .put_manifest("sizes/layer", "v2", DOCKER_MANIFEST, &bytes)
        .await;
    let envelope = assert_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    let detail = envelope["errors"][0]["detail"].as_str().unwrap();
    assert_eq!(
        detail,
        format!(
            "layers[2] {} declares size 199, the stored blob has 200 bytes",
            sha256(&layer)
        )
    );
    assert_manifest(&server, "sizes/layer", "v2", OCI_MANIFEST, &image.manifest).await;
    assert_eq!(
        header(
            &server
                .head("/v2/sizes/layer/manifests/v2")
                .header("accept", OCI_MANIFEST)
                .send()
                .await
                .unwrap(),
            "docker-content-digest"
        ),
        Some(good.to_string()),
        "the tag still names the earlier manifest"
    );
    assert_no_manifest(&server, "sizes/layer", sha256(&bytes).as_str()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_16_config_with_a_wrong_size_is_manifest_invalid() {
    let server = TestServer::start().await;
    let image = Image::random();
    server.push_image_blobs("sizes/config", &image).await;

    let mut wrong = descriptor(OCI_CONFIG, &image.config);
    wrong["size"] = json!(image.config.len() + 1);
    let bytes = oci_manifest(
        wrong.clone(),
        image
            .layers
            .iter()
            .map(|l| descriptor(OCI_LAYER, l))
            .collect(),
    );
    assert_size_refused(
        &server,
        "sizes/config",
        "v1",
        &bytes,
        "config",
        &wrong,
        image.config.len(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_16_index_child_with_a_wrong_size_is_manifest_invalid() {
    let server = TestServer::start().await;
    let (amd64, arm64) = (Image::random(), Image::random());
    for image in [&amd64, &arm64] {
        server.push_image_blobs("sizes/index", image).await;
        server
            .push_manifest(
                "sizes/index",
                image.digest.as_str(),
                OCI_MANIFEST,
                &image.manifest,
            )
            .await;
    }

    let mut wrong = arm64.descriptor();
    wrong["size"] = json!(arm64.manifest.len() - 1);
    for media_type in [OCI_INDEX, DOCKER_MANIFEST_LIST] {
        let bytes = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [amd64.descriptor(), wrong],
        }))
        .unwrap();
        assert_size_refused(
            &server,
            "sizes/index",
            "multi",
            &bytes,
            "manifests[1]",
            &wrong,
            arm64.manifest.len(),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_16_stored_subject_with_a_wrong_size_is_manifest_invalid() {
    let server = TestServer::start().await;
    let image = server.push_image("sizes/subject", "v1").await;
    let empty = b"{}";
    server.push_blob("sizes/subject", empty).await;

    let mut wrong = image.descriptor();
    wrong["size"] = json!(image.manifest.len() * 2);
    let bytes = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": descriptor(OCI_EMPTY, empty),
        "layers": [],
        "subject": wrong,
    }))
    .unwrap();
    assert_size_refused(
        &server,
        "sizes/subject",
        "sbom",
        &bytes,
        "subject",
        &wrong,
        image.manifest.len(),
    )
    .await;
    let referrers = server
        .get_json(&format!("/v2/sizes/subject/referrers/{}", image.digest))
        .await;
    assert_eq!(
        referrers["manifests"],
        json!([]),
        "the refused artifact is no referrer"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_16_true_sizes_still_push() {
    let server = TestServer::start().await;
    let repo = "sizes/good";
    let image = server.push_image(repo, "v1").await;
    let docker = push_docker_image_blobs(&server, repo).await;
    server
        .push_manifest(repo, "docker", DOCKER_MANIFEST, &docker)
        .await;

    // A foreign layer is not required to be stored, so its size is not checked.
    let foreign = json!({
        "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar",
        "digest": sha256(b"elsewhere").to_string(),
        "size": 123_456_789,
        "urls": ["https://example.invalid/layer"],
    });
    let with_foreign = oci_manifest(
        descriptor(OCI_CONFIG, &image.config),
        vec![descriptor(OCI_LAYER, &image.layers[0]), foreign],
    );
    server
        .push_manifest(repo, "foreign", OCI_MANIFEST, &with_foreign)
        .await;

    let index = index_of(
        OCI_INDEX,
        &[
            (OCI_MANIFEST, &image.manifest, "amd64"),
            (DOCKER_MANIFEST, &docker, "arm64"),
        ],
    );
    server.push_manifest(repo, "multi", OCI_INDEX, &index).await;
    assert_manifest(&server, repo, "multi", OCI_INDEX, &index).await;

    // A stored subject of the true size, and a subject not stored (any size: referrers may come
    // first).
    let empty = b"{}";
    server.push_blob(repo, empty).await;
    for subject in [
        image.descriptor(),
        json!({
            "mediaType": OCI_MANIFEST,
            "digest": sha256(b"not pushed yet").to_string(),
            "size": 42,
        }),
    ] {
        let bytes = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom",
            "config": descriptor(OCI_EMPTY, empty),
            "layers": [],
            "subject": subject,
        }))
        .unwrap();
        let digest = server
            .push_manifest(repo, &sha256(&bytes).to_string(), OCI_MANIFEST, &bytes)
            .await;
        assert_manifest(&server, repo, digest.as_str(), OCI_MANIFEST, &bytes).await;
    }
}
