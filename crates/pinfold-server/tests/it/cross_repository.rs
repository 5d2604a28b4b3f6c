//! Requests that name one repository and read another (issue 16): a cross-repository mount's
//! source, content discovery, and the mirror's aliases check the caller's pull on the
//! repository actually read; writes of every kind leave an audit row; one caller cannot hold
//! unbounded upload sessions.

use pinfold_mirror::{MirrorConfig, MirrorSettings, UpstreamConfig};
use reqwest::{Client, StatusCode};
use serde_json::Value;

use crate::auth::{admin_and_alice, basic, raw};
use crate::harness::*;

/// admin (everything) and alice (pull and push on `team/*`); the harness client is admin.
async fn server() -> TestServer {
    TestServer::start_with_auth(
        admin_and_alice("team/*", vec![]),
        Some(basic("admin", "adminpw")),
    )
    .await
}

/// A POST to `/v2/<repo>/blobs/uploads/<query>` as `authorization`.
async fn post_upload(
    client: &Client,
    server: &TestServer,
    repo: &str,
    query: &str,
    authorization: &str,
) -> reqwest::Response {
    client
        .post(server.url(&format!("/v2/{repo}/blobs/uploads/{query}")))
        .header("authorization", authorization)
        .header("content-length", "0")
        .send()
        .await
        .unwrap()
}

/// Status and the names of the headers of an answer, which must not tell a private blob from
/// a missing one.
fn shape(resp: &reqwest::Response) -> (StatusCode, Vec<String>) {
    let mut names: Vec<String> = resp
        .headers()
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k != "date")
        .collect();
    names.sort();
    (resp.status(), names)
}

async fn audit_rows(server: &TestServer, action: &str) -> Vec<Value> {
    let audit: Value = server.get_json("/api/v1/audit?limit=10000").await;
    audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["action"] == action)
        .cloned()
        .collect()
}

#[tokio::test]
async fn issue_16_a_mount_from_a_repository_the_caller_may_not_pull_is_an_upload_session() {
    let server = server().await;
    let secret = server.push_image("other/secret", "1").await;
    let layer = sha256(&secret.layers[0]);
    let nowhere = sha256(b"a blob nobody has");
    let client = raw();
    let alice = basic("alice", "alicepw");

    for query in [
        format!("?mount={layer}&from=other/secret"),
        format!("?mount={layer}"),
    ] {
        let resp = post_upload(&client, &server, "team/stolen", &query, &alice).await;
        let missing_query = query.replace(layer.as_str(), nowhere.as_str());
        let missing = post_upload(&client, &server, "team/stolen", &missing_query, &alice).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "{query}");
        assert_eq!(
            shape(&resp),
            shape(&missing),
            "{query}: a private blob answers like a missing one"
        );
        let location = header(&resp, "location").unwrap();
        assert!(
            location.starts_with("/v2/team/stolen/blobs/uploads/"),
            "{location}"
        );
        let blob = client
            .get(server.url(&format!("/v2/team/stolen/blobs/{layer}")))
            .header("authorization", &alice)
            .send()
            .await
            .unwrap();
        assert_error(blob, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    }

    // A repository she may pull that holds the same bytes is a source, with `from` and
    // through discovery (which must skip `other/secret`, first in name order).
    let digest = server.push_blob("team/app", &secret.layers[0]).await;
    assert_eq!(digest, layer);
    for query in [
        format!("?mount={layer}&from=team/app"),
        format!("?mount={layer}"),
    ] {
        let target = if query.contains("from") {
            "team/copy1"
        } else {
            "team/copy2"
        };
        let resp = post_upload(&client, &server, target, &query, &alice).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{query}");
        let blob = client
            .get(server.url(&format!("/v2/{target}/blobs/{layer}")))
            .header("authorization", &alice)
            .send()
            .await
            .unwrap();
        assert_eq!(blob.status(), StatusCode::OK);
        assert_eq!(blob.bytes().await.unwrap(), secret.layers[0]);
    }
    // The admin may pull `other/secret`, so may mount from it.
    let admin = basic("admin", "adminpw");
    let config = sha256(&secret.config);
    let resp = post_upload(
        &client,
        &server,
        "team/admins",
        &format!("?mount={config}&from=other/secret"),
        &admin,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);

    // Every mount is audited with actor, client and whether it mounted.
    let rows = audit_rows(&server, "blob-mount").await;
    let by = |actor: &str, outcome: &str| {
        rows.iter()
            .filter(|r| r["actor"] == actor && r["outcome"] == outcome)
            .count()
    };
    assert_eq!(by("alice", "accepted"), 4, "{rows:?}");
    assert_eq!(by("alice", "ok"), 2, "{rows:?}");
    assert_eq!(by("admin", "ok"), 1, "{rows:?}");
    assert!(rows.iter().all(|r| r["client"] == "127.0.0.1"), "{rows:?}");
    assert!(
        rows.iter()
            .any(|r| r["target"] == format!("team/stolen@{layer} from other/secret").as_str()),
        "{rows:?}"
    );
}

#[tokio::test]
async fn issue_16_one_request_uploads_are_audited() {
    let server = server().await;
    let client = raw();
    let bytes = b"one request upload";
    let digest = sha256(bytes);
    let resp = client
        .post(server.url(&format!("/v2/team/app/blobs/uploads/?digest={digest}")))
        .header("authorization", basic("alice", "alicepw"))
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let rows = audit_rows(&server, "blob-upload").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["actor"], "alice");
    assert_eq!(rows[0]["client"], "127.0.0.1");
    assert_eq!(rows[0]["outcome"], "ok");
    assert_eq!(rows[0]["target"], format!("team/app@{digest}").as_str());
    assert!(rows[0]["at"].is_string());
}

/// alice may pull `library/*` but not `docker.io/*`; `library/ruby` (no local repository)
/// means `docker.io/library/ruby` through the default upstream, and `?ns=docker.io` says so
/// outright: both read a repository she may not pull.
#[tokio::test]
async fn issue_16_a_mirror_alias_needs_pull_on_the_repository_it_reads() {
    // Nothing listens on port 9 of loopback: the refusal must come before any upstream call.
    let mut upstream = UpstreamConfig::new("docker.io", "http://127.0.0.1:9".to_owned());
    upstream.default = true;
    let mirror = MirrorConfig {
        upstreams: vec![upstream],
        settings: MirrorSettings {
            upstream_timeout_seconds: 2,
            ..MirrorSettings::default()
        },
    };
    let server = TestServer::start_with_auth_and_mirror(
        admin_and_alice("library/*", vec![]),
        Some(basic("admin", "adminpw")),
        mirror,
    )
    .await;
    let client = raw();
    let alice = basic("alice", "alicepw");
    let get = |path: &str, who: &str| {
        client
            .get(server.url(path))
            .header("authorization", who)
            .header("accept", OCI_MANIFEST)
            .send()
    };
    for path in [
        "/v2/library/ruby/manifests/3.3",
        "/v2/library/ruby/manifests/3.3?ns=docker.io",
        "/v2/library/ruby/tags/list?ns=docker.io",
        "/v2/library/ruby/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let resp = get(path, &alice).await.unwrap();
        let body = assert_error(resp, StatusCode::FORBIDDEN, "DENIED").await;
        assert!(
            body.to_string().contains("docker.io/library/ruby"),
            "{path}: {body}"
        );
        // The admin may pull docker.io/*: the request goes on to the (absent) upstream.
        let resp = get(path, &basic("admin", "adminpw")).await.unwrap();
        assert_ne!(resp.status(), StatusCode::FORBIDDEN, "{path} as admin");
    }
    // A local repository of that name is no alias: alice pulls it.
    server.push_image("library/app", "1").await;
    let resp = get("/v2/library/app/manifests/1", &alice).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn issue_16_open_upload_sessions_are_capped_per_user() {
    let server = TestServer::start_with_auth_and(
        admin_and_alice("team/*", vec![]),
        Some(basic("admin", "adminpw")),
        |config| config.max_upload_sessions_per_user = 3,
    )
    .await;
    let client = raw();
    let alice = basic("alice", "alicepw");
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let resp = post_upload(&client, &server, "team/app", "", &alice).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        sessions.push(server.resolve(&header(&resp, "location").unwrap()));
    }
    // A mount that falls back to a session counts too.
    let nowhere = sha256(b"nobody has this");
    for query in ["".to_owned(), format!("?mount={nowhere}")] {
        let resp = post_upload(&client, &server, "team/other", &query, &alice).await;
        assert_eq!(
            header(&resp, "retry-after").as_deref(),
            Some("60"),
            "{query}"
        );
        let body = assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
        assert!(
            body.to_string().contains("3 open upload sessions"),
            "{body}"
        );
    }
    // Another user is not affected.
    let resp = post_upload(&client, &server, "team/app", "", &basic("admin", "adminpw")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    // Ending a session frees its place.
    let resp = client
        .delete(&sessions[0])
        .header("authorization", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = post_upload(&client, &server, "team/app", "", &alice).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    // A completed upload frees its place as well.
    let bytes = b"completes";
    let resp = client
        .put(with_digest(&sessions[1], &sha256(bytes)))
        .header("authorization", &alice)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = post_upload(&client, &server, "team/app", "", &alice).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn issue_16_anonymous_upload_sessions_are_capped_per_client_address() {
    let server = TestServer::start_with(|config| config.max_upload_sessions_per_user = 2).await;
    for _ in 0..2 {
        server.start_upload("open/app").await;
    }
    let resp = server
        .post("/v2/open/app/blobs/uploads/")
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
}
