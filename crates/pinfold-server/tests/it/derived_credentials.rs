//! A credential never yields a wider one (issue 16): every way one credential makes another —
//! `POST /api/v1/tokens` with a password, a registry token (JWT) or an API token, and
//! `/v2/token` with an API token as password or OAuth2 refresh token — stays within the
//! creating credential's scope, the caller's permissions, and its expiry.

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::auth::{admin_and_alice, basic, claims, raw, registry_token};
use crate::harness::*;

async fn server() -> TestServer {
    TestServer::start_with_auth(
        admin_and_alice("team/*", vec![]),
        Some(basic("admin", "adminpw")),
    )
    .await
}

/// `POST /api/v1/tokens` as `authorization`.
async fn create_token(
    client: &Client,
    server: &TestServer,
    authorization: &str,
    body: Value,
) -> (StatusCode, Value) {
    let resp = client
        .post(server.url("/api/v1/tokens"))
        .header("authorization", authorization)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

/// An API token's `Bearer` header, created by `authorization` (which must succeed).
async fn api_token(
    client: &Client,
    server: &TestServer,
    authorization: &str,
    body: Value,
) -> String {
    let (status, created) = create_token(client, server, authorization, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    format!("Bearer {}", created["secret"].as_str().unwrap())
}

/// A registry token for alice, pull on `team/app` only.
async fn alice_jwt(server: &TestServer) -> String {
    let (status, answer) = registry_token(
        server,
        Some(basic("alice", "alicepw")),
        &["repository:team/app:pull"],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    format!("Bearer {}", answer["token"].as_str().unwrap())
}

/// Each (credential, what it asks for beyond itself) is refused with 403 naming what was
/// refused, and creates nothing.
#[tokio::test]
async fn issue_16_derived_tokens_never_exceed_their_parent() {
    let server = server().await;
    server.push_image("team/app", "v1").await;
    let client = raw();
    let password = basic("alice", "alicepw");
    let jwt = alice_jwt(&server).await;
    let pull_token = api_token(
        &client,
        &server,
        &password,
        json!({"scope": "repository:team/app:pull", "expires_in_seconds": 3600}),
    )
    .await;
    let admin_narrowed = api_token(
        &client,
        &server,
        &basic("admin", "adminpw"),
        json!({"scope": "repository:team/app:pull"}),
    )
    .await;

    let cases: Vec<(&str, &String, Value, &str)> = vec![
        // wider scope
        (
            "password",
            &password,
            json!({"scope": "repository:*:pull,push"}),
            "repository:*:pull",
        ),
        (
            "password",
            &password,
            json!({"scope": "repository:team/app:delete"}),
            "repository:team/app:delete",
        ),
        (
            "jwt",
            &jwt,
            json!({"scope": "repository:team/app:pull,push", "expires_in_seconds": 60}),
            "repository:team/app:push",
        ),
        (
            "jwt",
            &jwt,
            json!({"scope": "repository:team/*:pull", "expires_in_seconds": 60}),
            "repository:team/*:pull",
        ),
        (
            "api token",
            &pull_token,
            json!({"scope": "repository:team/app:push", "expires_in_seconds": 60}),
            "repository:team/app:push",
        ),
        (
            "api token",
            &pull_token,
            json!({"scope": "repository:*:pull", "expires_in_seconds": 60}),
            "repository:*:pull",
        ),
        // admin
        (
            "password",
            &password,
            json!({"scope": "repository:*:admin"}),
            "repository:*:admin",
        ),
        (
            "jwt",
            &jwt,
            json!({"scope": "repository:*:*", "expires_in_seconds": 60}),
            "repository:*:admin",
        ),
        (
            "api token",
            &pull_token,
            json!({"scope": "repository:team/app:*", "expires_in_seconds": 60}),
            "repository:team/app:admin",
        ),
        (
            "admin's narrowed token",
            &admin_narrowed,
            json!({"scope": "repository:*:admin"}),
            "repository:*:admin",
        ),
        (
            "admin's narrowed token",
            &admin_narrowed,
            json!({"user": "alice", "scope": "repository:team/app:pull"}),
            "admin",
        ),
        // later expiry (or none) than the credential's
        (
            "jwt",
            &jwt,
            json!({"scope": "repository:team/app:pull", "expires_in_seconds": 3600}),
            "expires",
        ),
        (
            "jwt",
            &jwt,
            json!({"scope": "repository:team/app:pull"}),
            "expires",
        ),
        (
            "api token",
            &pull_token,
            json!({"scope": "repository:team/app:pull", "expires_in_seconds": 7200}),
            "expires",
        ),
        (
            "api token",
            &pull_token,
            json!({"scope": "repository:team/app:pull"}),
            "expires",
        ),
    ];
    let before: Value = server.get_json("/api/v1/tokens").await;
    for (credential, authorization, body, named) in &cases {
        let (status, answer) = create_token(&client, &server, authorization, body.clone()).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{credential} asking {body}: {answer}"
        );
        assert_eq!(answer["error"]["code"], "DENIED", "{credential} {body}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(named),
            "{credential} asking {body}: the refusal names {named:?}: {message}"
        );
    }
    let after: Value = server.get_json("/api/v1/tokens").await;
    assert_eq!(before, after, "no refused request created a token");

    // Within the parent, each credential may create a token, and the token is no wider.
    for (credential, authorization, body) in [
        (
            "password",
            &password,
            json!({"scope": "repository:team/*:pull,push"}),
        ),
        (
            "jwt",
            &jwt,
            json!({"scope": "repository:team/app:pull", "expires_in_seconds": 60}),
        ),
        (
            "api token",
            &pull_token,
            json!({"scope": "repository:team/app:pull", "expires_in_seconds": 600}),
        ),
    ] {
        let (status, answer) = create_token(&client, &server, authorization, body.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{credential} {body}: {answer}");
    }
    let child = api_token(
        &client,
        &server,
        &pull_token,
        json!({"scope": "repository:team/app:pull", "expires_in_seconds": 600}),
    )
    .await;
    let image = Image::random();
    let resp = client
        .put(server.url("/v2/team/app/manifests/pushed"))
        .header("authorization", &child)
        .header("content-type", OCI_MANIFEST)
        .body(image.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::FORBIDDEN,
        "the child token cannot push"
    );
    let resp = client
        .post(server.url("/api/v1/gc?dry_run=true"))
        .header("authorization", &admin_narrowed)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::FORBIDDEN,
        "a narrowed admin token is no admin"
    );
}

/// `/v2/token` with an API token (as the Basic password and as the OAuth2 refresh token): the
/// registry token holds no action beyond the API token's scope, and expires no later.
#[tokio::test]
async fn issue_16_registry_tokens_from_api_tokens_stay_within_them() {
    let server = server().await;
    server.push_image("team/app", "v1").await;
    let client = raw();
    let created = create_token(
        &client,
        &server,
        &basic("alice", "alicepw"),
        json!({"scope": "repository:team/app:pull", "expires_in_seconds": 60}),
    )
    .await;
    assert_eq!(created.0, StatusCode::CREATED);
    let secret = created.1["secret"].as_str().unwrap().to_owned();
    let expires = OffsetDateTime::parse(
        created.1["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp();

    let scope =
        "repository:team/app:pull,push,delete repository:team/other:pull registry:catalog:*";
    let (status, basic_answer) =
        registry_token(&server, Some(basic("alice", &secret)), &[scope]).await;
    assert_eq!(status, StatusCode::OK);
    let resp = client
        .post(server.url("/v2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", secret.as_str()),
            ("service", "pinfold"),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let refresh_answer: Value = resp.json().await.unwrap();
    for (how, answer) in [
        ("password", basic_answer),
        ("refresh_token", refresh_answer),
    ] {
        let token = answer["token"]
            .as_str()
            .or(answer["access_token"].as_str())
            .unwrap();
        let c = claims(token);
        assert_eq!(
            c["access"],
            json!([
                {"type": "repository", "name": "team/app", "actions": ["pull"]},
                {"type": "repository", "name": "team/other", "actions": []},
            ]),
            "{how}"
        );
        assert!(
            c["exp"].as_i64().unwrap() <= expires,
            "{how}: exp {} after the API token's {expires}",
            c["exp"]
        );
        assert!(
            answer["expires_in"].as_i64().unwrap() <= 60,
            "{how}: {answer}"
        );
        // And the registry token cannot push.
        let resp = client
            .put(server.url("/v2/team/app/manifests/v9"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", OCI_MANIFEST)
            .body(Image::random().manifest)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{how}");
    }
}
