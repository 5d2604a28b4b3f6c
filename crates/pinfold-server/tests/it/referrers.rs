//! `GET /v2/<name>/referrers/<digest>` (end-12a, end-12b) and `OCI-Subject` on manifest push
//! (distribution-spec 1.1, "Listing Referrers", "Pushing Manifests with Subject").

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{
    assert_error, descriptor, header, random_bytes, sha256, Image, TestServer, OCI_EMPTY,
    OCI_INDEX, OCI_MANIFEST,
};

const SBOM: &str = "application/vnd.example.sbom.v1+json";
const SIGNATURE: &str = "application/vnd.example.signature.v1";
const EMPTY_CONFIG: &[u8] = b"{}";

/// An artifact manifest attached to `subject` (an image manifest descriptor), its config the
/// empty descriptor. `artifact_type` `None` leaves the field out.
pub(crate) async fn push_artifact(
    server: &TestServer,
    repo: &str,
    subject: &Value,
    artifact_type: Option<&str>,
    annotations: Value,
) -> (Vec<u8>, reqwest::Response) {
    server.push_blob(repo, EMPTY_CONFIG).await;
    let payload = random_bytes(64);
    server.push_blob(repo, &payload).await;
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_EMPTY, EMPTY_CONFIG),
        "layers": [descriptor("application/octet-stream", &payload)],
        "subject": subject,
        "annotations": annotations,
    });
    if let Some(t) = artifact_type {
        manifest["artifactType"] = json!(t);
    }
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let resp = server
        .put_manifest(repo, sha256(&bytes).as_str(), OCI_MANIFEST, &bytes)
        .await;
    (bytes, resp)
}

/// GETs the referrers and asserts 200 with the OCI index content type; returns the index and
/// the `OCI-Filters-Applied` header.
async fn referrers(server: &TestServer, path_and_query: &str) -> (Value, Option<String>) {
    let resp = server.get(path_and_query).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "GET {path_and_query}");
    assert_eq!(header(&resp, "content-type").as_deref(), Some(OCI_INDEX));
    let filters = header(&resp, "oci-filters-applied");
    let index: Value = resp.json().await.unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], OCI_INDEX);
    assert!(
        index["manifests"].is_array(),
        "manifests is a list: {index}"
    );
    (index, filters)
}

#[tokio::test(flavor = "multi_thread")]
async fn artifact_is_listed_as_a_referrer_of_its_subject() {
    let server = TestServer::start().await;
    let image = server.push_image("app", "v1").await;
    let annotations = json!({
        "org.opencontainers.image.created": "2024-01-01T00:00:00Z",
        "org.example.kind": "sbom",
    });
    let (artifact, resp) = push_artifact(
        &server,
        "app",
        &image.descriptor(),
        Some(SBOM),
        annotations.clone(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        header(&resp, "oci-subject").as_deref(),
        Some(image.digest.as_str()),
        "OCI-Subject tells the client the registry indexed the subject"
    );

    let (index, filters) = referrers(&server, &format!("/v2/app/referrers/{}", image.digest)).await;
    assert!(filters.is_none(), "no filter was asked for");
    assert_eq!(
        index["manifests"],
        json!([{
            "mediaType": OCI_MANIFEST,
            "digest": sha256(&artifact).to_string(),
            "size": artifact.len(),
            "artifactType": SBOM,
            "annotations": annotations,
        }])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn artifact_type_filter_and_fallback_to_config_media_type() {
    let server = TestServer::start().await;
    let image = server.push_image("filt", "v1").await;
    let subject = image.descriptor();
    let (sbom, _) =
        push_artifact(&server, "filt", &subject, Some(SBOM), json!({"k": "sbom"})).await;
    let (sig, _) = push_artifact(
        &server,
        "filt",
        &subject,
        Some(SIGNATURE),
        json!({"k": "sig"}),
    )
    .await;
    // No artifactType: the config's media type stands in (spec, "Listing Referrers").
    let (plain, _) = push_artifact(&server, "filt", &subject, None, json!({"k": "plain"})).await;

    let (index, _) = referrers(&server, &format!("/v2/filt/referrers/{}", image.digest)).await;
    let mut listed: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["digest"].as_str().unwrap().to_owned(),
                d["artifactType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    listed.sort();
    let mut want = vec![
        (sha256(&sbom).to_string(), SBOM.to_owned()),
        (sha256(&sig).to_string(), SIGNATURE.to_owned()),
        (sha256(&plain).to_string(), OCI_EMPTY.to_owned()),
    ];
    want.sort();
    assert_eq!(listed, want);

    // The filter, percent-encoded as a client sends it ('+' would mean a space).
    let encoded = SBOM.replace('/', "%2F").replace('+', "%2B");
    let (index, filters) = referrers(
        &server,
        &format!("/v2/filt/referrers/{}?artifactType={encoded}", image.digest),
    )
    .await;
    assert_eq!(filters.as_deref(), Some("artifactType"));
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    assert_eq!(manifests[0]["digest"], sha256(&sbom).to_string());
    assert_eq!(manifests[0]["annotations"], json!({"k": "sbom"}));

    // A filter matching nothing: empty, still filtered.
    let (index, filters) = referrers(
        &server,
        &format!(
            "/v2/filt/referrers/{}?artifactType=application/vnd.none",
            image.digest
        ),
    )
    .await;
    assert_eq!(filters.as_deref(), Some("artifactType"));
    assert_eq!(index["manifests"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_subject_or_repository_is_an_empty_index() {
    let server = TestServer::start().await;
    server.push_image("known", "v1").await;
    for path in [
        format!("/v2/known/referrers/{}", sha256(b"no such manifest")),
        format!("/v2/unknown-repo/referrers/{}", sha256(b"no such manifest")),
    ] {
        let (index, _) = referrers(&server, &path).await;
        assert_eq!(index["manifests"], json!([]), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn referrer_may_be_pushed_before_its_subject() {
    // Spec: "A registry MUST initially accept an otherwise valid manifest with a subject field
    // that references a manifest that does not exist in the repository".
    let server = TestServer::start().await;
    let image = Image::random();
    let (artifact, resp) =
        push_artifact(&server, "early", &image.descriptor(), Some(SBOM), json!({})).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        header(&resp, "oci-subject").as_deref(),
        Some(image.digest.as_str())
    );
    let path = format!("/v2/early/referrers/{}", image.digest);
    let (index, _) = referrers(&server, &path).await;
    assert_eq!(
        index["manifests"][0]["digest"],
        sha256(&artifact).to_string()
    );

    server.push_image_blobs("early", &image).await;
    server
        .push_manifest("early", "v1", OCI_MANIFEST, &image.manifest)
        .await;
    let (index, _) = referrers(&server, &path).await;
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn referrers_are_per_repository() {
    let server = TestServer::start().await;
    let image = server.push_image("a", "v1").await;
    push_artifact(&server, "a", &image.descriptor(), Some(SBOM), json!({})).await;
    let (index, _) = referrers(&server, &format!("/v2/b/referrers/{}", image.digest)).await;
    assert_eq!(index["manifests"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn index_referrer_without_artifact_type_omits_it() {
    // Spec: "If the artifactType is empty or missing in an index, the artifactType MUST be
    // omitted."
    let server = TestServer::start().await;
    let image = server.push_image("idxref", "v1").await;
    let index_bytes = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [],
        "subject": image.descriptor(),
        "annotations": {"what": "an index"},
    }))
    .unwrap();
    let resp = server
        .put_manifest(
            "idxref",
            sha256(&index_bytes).as_str(),
            OCI_INDEX,
            &index_bytes,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        header(&resp, "oci-subject").as_deref(),
        Some(image.digest.as_str())
    );
    let (index, _) = referrers(&server, &format!("/v2/idxref/referrers/{}", image.digest)).await;
    assert_eq!(
        index["manifests"],
        json!([{
            "mediaType": OCI_INDEX,
            "digest": sha256(&index_bytes).to_string(),
            "size": index_bytes.len(),
            "annotations": {"what": "an index"},
        }])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_referrer_leaves_the_list() {
    let server = TestServer::start().await;
    let image = server.push_image("gone", "v1").await;
    let (artifact, _) =
        push_artifact(&server, "gone", &image.descriptor(), Some(SBOM), json!({})).await;
    let resp = server
        .delete(&format!("/v2/gone/manifests/{}", sha256(&artifact)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let (index, _) = referrers(&server, &format!("/v2/gone/referrers/{}", image.digest)).await;
    assert_eq!(index["manifests"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_without_subject_has_no_oci_subject_header() {
    let server = TestServer::start().await;
    let image = Image::random();
    server.push_image_blobs("plain", &image).await;
    let resp = server
        .put_manifest("plain", "v1", OCI_MANIFEST, &image.manifest)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(header(&resp, "oci-subject").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_digest_is_400() {
    // Spec: "If the request is invalid, such as a <digest> with an invalid syntax, a 400 Bad
    // Request MUST be returned."
    let server = TestServer::start().await;
    server.push_image("bad", "v1").await;
    let resp = server
        .get("/v2/bad/referrers/sha256:zzz")
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn filter_matches_the_config_media_type_stand_in() {
    let server = TestServer::start().await;
    let image = server.push_image("standin", "v1").await;
    let (plain, _) = push_artifact(&server, "standin", &image.descriptor(), None, json!({})).await;
    push_artifact(
        &server,
        "standin",
        &image.descriptor(),
        Some(SBOM),
        json!({}),
    )
    .await;
    let encoded = OCI_EMPTY.replace('/', "%2F").replace('+', "%2B");
    let (index, filters) = referrers(
        &server,
        &format!(
            "/v2/standin/referrers/{}?artifactType={encoded}",
            image.digest
        ),
    )
    .await;
    assert_eq!(filters.as_deref(), Some("artifactType"));
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    assert_eq!(manifests[0]["digest"], sha256(&plain).to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_artifact_type_falls_back_like_a_missing_one() {
    // Spec, "Listing Referrers": "If the artifactType is empty or missing in the image
    // manifest, the value of artifactType MUST be set to the config descriptor mediaType value.
    // If the artifactType is empty or missing in an index, the artifactType MUST be omitted."
    let server = TestServer::start().await;
    let image = server.push_image("emptyat", "v1").await;
    let (manifest, resp) =
        push_artifact(&server, "emptyat", &image.descriptor(), Some(""), json!({})).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let index_bytes = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": "",
        "manifests": [],
        "subject": image.descriptor(),
    }))
    .unwrap();
    let resp = server
        .put_manifest(
            "emptyat",
            sha256(&index_bytes).as_str(),
            OCI_INDEX,
            &index_bytes,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);

    let (index, _) = referrers(&server, &format!("/v2/emptyat/referrers/{}", image.digest)).await;
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2, "{index}");
    for d in manifests {
        if d["digest"] == sha256(&manifest).to_string() {
            assert_eq!(d["artifactType"], OCI_EMPTY, "image manifest: {d}");
        } else {
            assert!(d.get("artifactType").is_none(), "index: {d}");
        }
    }
}
