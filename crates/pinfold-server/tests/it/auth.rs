//! Access control (issue 6): every protected endpoint refuses missing, wrong and too-small
//! credentials with 401/403 in its surface's format and changes nothing; registry tokens,
//! API tokens and the audit log work end to end; the safe default refuses to expose an
//! unauthenticated server.

use base64::Engine as _;
use pinfold_auth::{Action, AuthConfig, PermissionRule, UserConfig};
use pinfold_server::{AuthSettings, Server, ServerConfig, ServerError};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{header, Image, TestServer, OCI_MANIFEST};

pub(crate) fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

pub(crate) fn user(name: &str, password: &str, groups: &[&str]) -> UserConfig {
    UserConfig {
        name: name.into(),
        // Cost 4 keeps the tests fast; production hashes come from `htpasswd -B` (cost 5+).
        password_bcrypt: bcrypt::hash(password, 4).unwrap(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

pub(crate) fn rule(
    repos: &str,
    users: &[&str],
    groups: &[&str],
    actions: &[Action],
    anon: bool,
) -> PermissionRule {
    PermissionRule {
        repositories: repos.into(),
        users: users.iter().map(|u| u.to_string()).collect(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        actions: actions.to_vec(),
        anonymous_pull: anon,
    }
}

/// admin (group `admins`: admin on everything) and alice (pull and push on `alice_repos`),
/// then the `more` rules.
pub(crate) fn admin_and_alice(alice_repos: &str, more: Vec<PermissionRule>) -> AuthSettings {
    let mut permissions = vec![
        rule("*", &[], &["admins"], &[Action::Admin], false),
        rule(
            alice_repos,
            &["alice"],
            &[],
            &[Action::Pull, Action::Push],
            false,
        ),
    ];
    permissions.extend(more);
    AuthSettings {
        config: AuthConfig::default(),
        users: vec![
            user("admin", "adminpw", &["admins"]),
            user("alice", "alicepw", &[]),
        ],
        permissions,
        insecure_open: false,
    }
}

/// admin, alice (pull and push on `team/*`), and anonymous pull on `public/*`. The harness
/// client authenticates as admin.
async fn server() -> TestServer {
    let settings = admin_and_alice("team/*", vec![rule("public/*", &[], &[], &[], true)]);
    TestServer::start_with_auth(settings, Some(basic("admin", "adminpw"))).await
}

pub(crate) fn raw() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Every protected request of the surface, with a body where it takes one.
fn endpoints(image: &Image) -> Vec<(Method, String, Option<Vec<u8>>)> {
    let d = &image.digest;
    vec![
        (Method::GET, "/v2/".into(), None),
        (Method::GET, "/v2/team/app/manifests/v1".into(), None),
        (Method::HEAD, "/v2/team/app/manifests/v1".into(), None),
        (Method::GET, format!("/v2/team/app/blobs/{d}"), None),
        (Method::GET, "/v2/team/app/tags/list".into(), None),
        (Method::GET, "/v2/_catalog".into(), None),
        (Method::GET, format!("/v2/team/app/referrers/{d}"), None),
        (Method::PUT, "/v2/team/app/manifests/v2".into(), Some(image.manifest.clone())),
        (Method::POST, "/v2/team/app/blobs/uploads/".into(), None),
        (Method::DELETE, "/v2/team/app/manifests/v1".into(), None),
        (Method::DELETE, format!("/v2/team/app/blobs/{d}"), None),
        (Method::GET, "/api/v1/repositories/team/app/tags/v1/history".into(), None),
        (Method::POST, "/api/v1/repositories/team/app/tags/v1/promote".into(), Some(b"{}".to_vec())),
        (Method::GET, "/api/v1/drift".into(), None),
        (Method::GET, "/api/v1/upstreams".into(), None),
        (Method::GET, "/api/v1/workers".into(), None),
        (Method::GET, "/api/v1/audit".into(), None),
        (Method::POST, "/api/v1/gc".into(), None),
        (Method::GET, "/api/v1/gc".into(), None),
        (Method::GET, "/api/v1/tokens".into(), None),
        (Method::POST, "/api/v1/apt/repos".into(), Some(br#"{"name":"x","kind":"local"}"#.to_vec())),
        (Method::PUT, "/artifactory/debs/pool/x_1_all.deb;deb.distribution=s;deb.component=main;deb.architecture=all".into(), Some(b"not a deb".to_vec())),
        (Method::GET, "/".into(), None),
        (Method::GET, "/ui/repositories/team/app".into(), None),
        (Method::GET, "/ui/history/team/app/tags/v1".into(), None),
        (Method::GET, "/ui/drift".into(), None),
        (Method::GET, "/ui/apt".into(), None),
        (Method::GET, "/ui/apt/diff?from=a&to=b".into(), None),
    ]
}

/// What a user would check did not change: the tag, the manifest, the catalog.
async fn assert_unchanged(server: &TestServer, image: &Image) {
    let tags: Value = server.get_json("/v2/team/app/tags/list").await;
    assert_eq!(tags["tags"], json!(["v1"]), "tags of team/app");
    let resp = server
        .get("/v2/team/app/manifests/v1")
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        image.manifest.as_slice()
    );
    let catalog: Value = server.get_json("/v2/_catalog").await;
    assert_eq!(catalog["repositories"], json!(["team/app"]));
    let repos: Value = server.get_json("/api/v1/apt/repos").await;
    assert!(
        repos.to_string().find("\"x\"").is_none(),
        "no APT repo created: {repos}"
    );
}

async fn send(
    client: &Client,
    base: &str,
    method: &Method,
    path: &str,
    body: &Option<Vec<u8>>,
    auth: Option<(&str, String)>,
) -> reqwest::Response {
    let mut req = client.request(method.clone(), format!("{base}{path}"));
    if let Some(body) = body {
        req = req.body(body.clone()).header("content-type", OCI_MANIFEST);
    }
    if let Some((name, value)) = auth {
        req = req.header(name, value);
    }
    req.send().await.unwrap()
}

/// The status, `WWW-Authenticate` and body of a refusal, checked per surface.
async fn assert_refused(resp: reqwest::Response, method: &Method, path: &str, status: StatusCode) {
    assert_eq!(resp.status(), status, "{method} {path}");
    let challenge = header(&resp, "www-authenticate");
    let body = resp.bytes().await.unwrap();
    if status == StatusCode::UNAUTHORIZED {
        let challenge = challenge.unwrap_or_else(|| panic!("{method} {path}: no challenge"));
        if path.starts_with("/v2/") {
            assert!(
                challenge.starts_with("Bearer realm=\"http://127.0.0.1:"),
                "{challenge}"
            );
            assert!(
                challenge.contains("/v2/token\",service=\"pinfold\""),
                "{challenge}"
            );
            if path.contains("/team/app/manifests/v2") {
                assert!(
                    challenge.contains("scope=\"repository:team/app:pull,push\""),
                    "{challenge}"
                );
            }
        } else {
            assert!(
                challenge.starts_with("Basic realm="),
                "{method} {path}: {challenge}"
            );
        }
    }
    if *method == Method::HEAD {
        return;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or_else(|_| {
        panic!(
            "{method} {path}: body is not JSON: {}",
            String::from_utf8_lossy(&body)
        )
    });
    let text = body.to_string();
    assert!(
        !text.contains("alicepw") && !text.contains("adminpw"),
        "secret echoed: {text}"
    );
    if path.starts_with("/v2/") {
        let code = body["errors"][0]["code"].as_str().unwrap();
        let expect = if status == StatusCode::UNAUTHORIZED {
            "UNAUTHORIZED"
        } else {
            "DENIED"
        };
        assert_eq!(code, expect, "{method} {path}");
    } else if path.starts_with("/api/") || path == "/" || path.starts_with("/ui/") {
        // The web UI refuses as the API does (a Basic challenge a browser answers).
        assert!(body["error"]["code"].is_string(), "{method} {path}: {body}");
    } else {
        assert_eq!(
            body["errors"][0]["status"],
            json!(status.as_u16()),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn every_endpoint_refuses_missing_wrong_and_small_credentials_and_changes_nothing() {
    let server = server().await;
    let image = server.push_image("team/app", "v1").await;
    let client = raw();
    let huge = format!("Bearer {}", "a".repeat(16_000));
    let wrong: Vec<(&str, String)> = vec![
        ("authorization", basic("alice", "wrong")),
        ("authorization", basic("nobody", "alicepw")),
        ("authorization", "Basic !!!not-base64".into()),
        ("authorization", "Basic".into()),
        ("authorization", "Digest abc".into()),
        (
            "authorization",
            "Bearer eyJhbGciOiJFUzI1NiJ9.e30.AAAA".into(),
        ),
        ("authorization", "Bearer pft_doesnotexist".into()),
        ("x-jfrog-art-api", "pft_doesnotexist".into()),
        ("authorization", huge),
    ];
    for (method, path, body) in endpoints(&image) {
        // No credentials.
        let resp = send(&client, &server.base, &method, &path, &body, None).await;
        assert_refused(resp, &method, &path, StatusCode::UNAUTHORIZED).await;
        // Wrong or malformed credentials.
        for (name, value) in &wrong {
            let resp = send(
                &client,
                &server.base,
                &method,
                &path,
                &body,
                Some((name, value.clone())),
            )
            .await;
            assert_refused(resp, &method, &path, StatusCode::UNAUTHORIZED).await;
        }
    }
    // alice may pull and push team/*, nothing else: every admin, delete and promote request
    // is 403 with her valid password.
    let alice = Some(("authorization", basic("alice", "alicepw")));
    for (method, path, body) in endpoints(&image) {
        let too_small = matches!(method, Method::DELETE)
            || path.starts_with("/v2/_catalog")
            || (path.starts_with("/api/v1/")
                && !path.contains("/history")
                && !path.contains("/tokens"))
            || path.starts_with("/artifactory/")
            || path == "/"
            || path == "/ui/drift"
            || path.starts_with("/ui/apt");
        if !too_small {
            continue;
        }
        let resp = send(&client, &server.base, &method, &path, &body, alice.clone()).await;
        assert_refused(resp, &method, &path, StatusCode::FORBIDDEN).await;
    }
    assert_unchanged(&server, &image).await;
    // Her password works where she is allowed.
    let resp = send(
        &client,
        &server.base,
        &Method::GET,
        "/v2/team/app/manifests/v1",
        &None,
        alice.clone(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    for page in ["/ui/repositories/team/app", "/ui/history/team/app/tags/v1"] {
        let resp = send(
            &client,
            &server.base,
            &Method::GET,
            page,
            &None,
            alice.clone(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK, "{page} as alice");
        assert!(resp.text().await.unwrap().contains(image.digest.as_str()));
    }
    // Failed logins are in the audit log, under the name claimed, never with the secret.
    let audit: Value = server.get_json("/api/v1/audit?actor=nobody").await;
    let rows = audit.as_array().unwrap();
    assert!(!rows.is_empty());
    assert!(rows
        .iter()
        .all(|r| r["action"] == "login" && r["outcome"] == "failed" && r["client"] == "127.0.0.1"));
    let all: Value = server.get_json("/api/v1/audit?limit=10000").await;
    assert!(!all.to_string().contains("alicepw"));
}

pub(crate) async fn registry_token(
    server: &TestServer,
    auth: Option<String>,
    scopes: &[&str],
) -> (StatusCode, Value) {
    let query: Vec<(&str, &str)> = std::iter::once(("service", "pinfold"))
        .chain(scopes.iter().map(|s| ("scope", *s)))
        .collect();
    let mut req = raw().get(format!("{}/v2/token", server.base)).query(&query);
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

pub(crate) fn claims(token: &str) -> Value {
    let body = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn registry_tokens_grant_only_what_is_allowed() {
    let server = server().await;
    let image = server.push_image("team/app", "v1").await;
    let pushed = Image::random();
    let (status, answer) = registry_token(
        &server,
        Some(basic("alice", "alicepw")),
        &[
            "repository:team/new:pull,push",
            "repository:other/x:pull,push,delete",
            "registry:catalog:*",
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let token = answer["token"].as_str().unwrap().to_owned();
    assert_eq!(answer["access_token"], answer["token"]);
    let c = claims(&token);
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["aud"], "pinfold");
    assert_eq!(
        c["access"],
        json!([
            {"type": "repository", "name": "team/new", "actions": ["pull", "push"]},
            {"type": "repository", "name": "other/x", "actions": []},
        ])
    );
    let bearer = format!("Bearer {token}");
    let client = raw();
    // The token pushes where it grants push.
    for blob in std::iter::once(&pushed.config).chain(&pushed.layers) {
        let digest = crate::harness::sha256(blob);
        let resp = client
            .post(format!(
                "{}/v2/team/new/blobs/uploads/?digest={digest}",
                server.base
            ))
            .header("authorization", &bearer)
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let resp = client
        .put(format!("{}/v2/team/new/manifests/v1", server.base))
        .header("authorization", &bearer)
        .header("content-type", OCI_MANIFEST)
        .body(pushed.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    // Elsewhere it is 401 insufficient_scope, with the challenge for the needed scope, even
    // where alice herself could read (team/app was not in the token).
    let resp = client
        .get(format!("{}/v2/team/app/manifests/v1", server.base))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = header(&resp, "www-authenticate").unwrap();
    assert!(
        challenge.contains("scope=\"repository:team/app:pull\"")
            && challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    // The journal names alice as the pusher.
    let history: Value = server
        .get_json("/api/v1/repositories/team/new/tags/v1/history")
        .await;
    assert_eq!(history[0]["actor"], "alice");
    // A token for the wrong service, a wrong password, a tampered token: refused.
    let resp = raw()
        .get(format!("{}/v2/token?service=elsewhere", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let (status, _) = registry_token(&server, Some(basic("alice", "nope")), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut c2 = c.clone();
    c2["access"][0]["name"] = json!("team/app");
    let forged_body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c2.to_string());
    parts[1] = &forged_body;
    let resp = client
        .get(format!("{}/v2/team/app/manifests/v1", server.base))
        .header("authorization", format!("Bearer {}", parts.join(".")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&resp, "www-authenticate")
        .unwrap()
        .contains("error=\"invalid_token\""));
    // Anonymous: a token with pull on public/*, nothing on team/*.
    let (status, answer) = registry_token(
        &server,
        None,
        &[
            "repository:public/base:pull,push",
            "repository:team/app:pull",
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let c = claims(answer["token"].as_str().unwrap());
    assert_eq!(c["sub"], "");
    assert_eq!(c["access"][0]["actions"], json!(["pull"]));
    assert_eq!(c["access"][1]["actions"], json!([]));
    let _ = image;
}

/// `POST /v2/token`, the OAuth2 form containerd tries first: a password grant and a refresh
/// token grant (an API token) issue the same scoped tokens as `GET`; wrong credentials are 401
/// and audited; malformed forms get OAuth2 errors.
#[tokio::test]
async fn oauth2_token_form_issues_scoped_tokens() {
    let server = server().await;
    server.push_image("team/app", "v1").await;
    let client = raw();
    let post = |form: Vec<(&'static str, String)>| {
        client
            .post(format!("{}/v2/token", server.base))
            .form(&form)
            .send()
    };
    let scope = "repository:team/app:pull repository:other/x:pull,push".to_owned();
    let resp = post(vec![
        ("grant_type", "password".into()),
        ("username", "alice".into()),
        ("password", "alicepw".into()),
        ("service", "pinfold".into()),
        ("client_id", "containerd".into()),
        ("scope", scope.clone()),
    ])
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let answer: Value = resp.json().await.unwrap();
    let token = answer["access_token"].as_str().unwrap().to_owned();
    assert!(answer["expires_in"].as_i64().unwrap() > 0);
    let c = claims(&token);
    assert_eq!(c["sub"], "alice");
    assert_eq!(
        c["access"],
        json!([
            {"type": "repository", "name": "team/app", "actions": ["pull"]},
            {"type": "repository", "name": "other/x", "actions": []},
        ])
    );
    let manifest = format!("{}/v2/team/app/manifests/v1", server.base);
    let resp = client
        .get(&manifest)
        .header("authorization", format!("Bearer {token}"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // A refresh token grant with alice's API token.
    let created: Value = client
        .post(format!("{}/api/v1/tokens", server.base))
        .header("authorization", basic("alice", "alicepw"))
        .json(&json!({"scope": "repository:team/*:pull"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let resp = post(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", secret.clone()),
        ("service", "pinfold".into()),
        ("client_id", "containerd".into()),
        ("scope", "repository:team/app:pull,push".into()),
    ])
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let c = claims(
        resp.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(c["sub"], "alice");
    // The API token's own scope (pull only) bounds the registry token.
    assert_eq!(c["access"][0]["actions"], json!(["pull"]));

    // Wrong password, unknown refresh token: 401 with a challenge, and the failure is audited.
    for form in [
        vec![
            ("grant_type", "password".to_owned()),
            ("username", "alice".into()),
            ("password", "wrong".into()),
        ],
        vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", "pft_notatoken".into()),
        ],
        vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", "something-else".into()),
        ],
    ] {
        let resp = post(form).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(resp.headers().contains_key("www-authenticate"));
        let body = resp.text().await.unwrap();
        assert!(!body.contains("wrong") && !body.contains("pft_"), "{body}");
    }
    let audit: Value = server.get_json("/api/v1/audit?limit=1000").await;
    let failed = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "failed" && e["target"] == "/v2/token")
        .count();
    assert!(failed >= 3, "{audit}");
    assert!(!audit.to_string().contains("wrong"));

    // Malformed forms: OAuth2 error bodies.
    for (form, error) in [
        (
            vec![("grant_type", "client_credentials".to_owned())],
            "unsupported_grant_type",
        ),
        (vec![("username", "alice".to_owned())], "invalid_request"),
        (
            vec![
                ("grant_type", "password".to_owned()),
                ("username", "alice".into()),
            ],
            "invalid_request",
        ),
    ] {
        let resp = post(form).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(resp.json::<Value>().await.unwrap()["error"], error);
    }
}

/// APT uploads on a server with users: the deploy keys of `[server] apt_deploy_keys` still
/// work, users upload with their password or an API token where they have push on
/// `apt/<repo>`, and every other credential is refused in the APT surface's format with nothing
/// stored. Reads need pull on `apt/<repo>`. Every upload is audited with its actor.
#[tokio::test]
async fn apt_uploads_take_deploy_keys_and_user_credentials() {
    let settings = admin_and_alice("apt/ci", Vec::new());
    let server = TestServer::start_with_auth_and(settings, Some(basic("admin", "adminpw")), |c| {
        c.apt_deploy_keys = vec!["ci-deploy-key".into()]
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let deb = std::fs::read(crate::apt::build_deb(tmp.path(), "hello", "1.0", "all", None).await)
        .unwrap();
    let client = raw();
    let url = |repo: &str, n: u32| {
        format!(
            "{}/artifactory/{repo}/pool/hello{n}.deb{}",
            server.base,
            // One distribution per upload: the same package twice in one is a conflict.
            crate::apt::matrix(&format!("stable{n}"), "main", "all")
        )
    };
    // alice's pull-only API token, for the "too small" case.
    let created: Value = client
        .post(format!("{}/api/v1/tokens", server.base))
        .header("authorization", basic("alice", "alicepw"))
        .json(&json!({"scope": "repository:apt/ci:pull"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pull_only = created["secret"].as_str().unwrap().to_owned();
    let created: Value = client
        .post(format!("{}/api/v1/tokens", server.base))
        .header("authorization", basic("alice", "alicepw"))
        .json(&json!({"scope": "repository:apt/ci:pull,push"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pusher = created["secret"].as_str().unwrap().to_owned();

    let refused = [
        (client.put(url("ci", 90)), StatusCode::UNAUTHORIZED),
        (
            client
                .put(url("ci", 91))
                .header("X-JFrog-Art-Api", "wrong-key"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            client
                .put(url("ci", 92))
                .header("authorization", basic("alice", "nope")),
            StatusCode::UNAUTHORIZED,
        ),
        (
            client
                .put(url("ci", 93))
                .header("X-JFrog-Art-Api", &pull_only),
            StatusCode::FORBIDDEN,
        ),
        (
            client
                .put(url("other", 94))
                .header("authorization", basic("alice", "alicepw")),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (n, (request, status)) in refused.into_iter().enumerate() {
        let resp = request.body(deb.clone()).send().await.unwrap();
        assert_eq!(resp.status(), status, "refused case {n}");
        if status == StatusCode::UNAUTHORIZED {
            assert!(resp.headers().contains_key("www-authenticate"));
        }
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["errors"][0]["status"], status.as_u16(), "{body}");
    }
    let accepted = [
        client
            .put(url("ci", 1))
            .header("X-JFrog-Art-Api", "ci-deploy-key"),
        client
            .put(url("ci", 2))
            .header("authorization", basic("alice", "alicepw")),
        client.put(url("ci", 3)).header("X-JFrog-Art-Api", &pusher),
        client
            .put(url("ci", 4))
            .header("authorization", basic("alice", &pusher)),
    ];
    for (n, request) in accepted.into_iter().enumerate() {
        let resp = request.body(deb.clone()).send().await.unwrap();
        let status = resp.status();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "accepted case {n}: {}",
            resp.text().await.unwrap()
        );
    }
    // Nothing of the refused uploads was stored; the accepted ones are there.
    for (n, want) in [
        (90, 404),
        (91, 404),
        (92, 404),
        (93, 404),
        (1, 200),
        (4, 200),
    ] {
        let status = server
            .get(&format!("/apt/ci/pool/hello{n}.deb"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), want, "hello{n}.deb");
    }
    // Reads need pull: anonymous is refused, alice reads.
    let pool = format!("{}/apt/ci/pool/hello1.deb", server.base);
    assert_eq!(
        client.get(&pool).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        client
            .get(&pool)
            .header("authorization", basic("alice", "alicepw"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // The audit log names who uploaded, and never holds a key.
    let audit: Value = server.get_json("/api/v1/audit?limit=1000").await;
    let uploads: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "apt-upload" && e["outcome"] == "ok")
        .map(|e| (e["actor"].as_str().unwrap(), e["target"].as_str().unwrap()))
        .collect();
    assert_eq!(uploads.len(), 4, "{audit}");
    assert!(uploads.iter().any(|(actor, _)| *actor == "deploy-key"));
    assert_eq!(
        uploads
            .iter()
            .filter(|(actor, _)| *actor == "alice")
            .count(),
        3
    );
    let text = audit.to_string();
    assert!(
        !text.contains("ci-deploy-key") && !text.contains(&pusher) && !text.contains("alicepw")
    );
}

#[tokio::test]
async fn anonymous_pull_is_per_glob() {
    let server = server().await;
    let image = server.push_image("public/base", "v1").await;
    server.push_image("team/app", "v1").await;
    let client = raw();
    let resp = client
        .get(format!("{}/v2/public/base/manifests/v1", server.base))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        image.manifest.as_slice()
    );
    let resp = client
        .get(format!("{}/v2/team/app/manifests/v1", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = client
        .put(format!("{}/v2/public/base/manifests/v2", server.base))
        .header("content-type", OCI_MANIFEST)
        .body(image.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn api_tokens_are_scoped_revocable_and_audited() {
    let server = server().await;
    server.push_image("team/app", "v1").await;
    let client = raw();
    let alice = basic("alice", "alicepw");
    // alice creates her own pull-only token; she may not create one for admin.
    let resp = client
        .post(format!("{}/api/v1/tokens", server.base))
        .header("authorization", &alice)
        .json(&json!({"scope": "repository:team/*:pull", "expires_in_seconds": 3600}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let created: Value = resp.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("pft_"));
    let resp = client
        .post(format!("{}/api/v1/tokens", server.base))
        .header("authorization", &alice)
        .json(&json!({"user": "admin", "scope": "repository:*:admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // The listing never shows a secret.
    let list: Value = client
        .get(format!("{}/api/v1/tokens", server.base))
        .header("authorization", &alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("secret").is_none());
    // The token works as Bearer, as X-JFrog-Art-Api and as Basic password; push is beyond its scope.
    let manifest = format!("{}/v2/team/app/manifests/v1", server.base);
    for (name, value) in [
        ("authorization", format!("Bearer {secret}")),
        ("x-jfrog-art-api", secret.clone()),
        ("authorization", basic("alice", &secret)),
    ] {
        let resp = client
            .get(&manifest)
            .header(name, &value)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{name}");
    }
    // Basic with another user's name and alice's token is refused.
    let resp = client
        .get(&manifest)
        .header("authorization", basic("admin", &secret))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = client
        .put(format!("{}/v2/team/app/manifests/v9", server.base))
        .header("authorization", format!("Bearer {secret}"))
        .header("content-type", OCI_MANIFEST)
        .body(Image::random().manifest)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // Revoked: refused at once (the revoking replica drops its cache).
    let resp = client
        .delete(format!("{}/api/v1/tokens/{id}", server.base))
        .header("authorization", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = client
        .get(&manifest)
        .header("authorization", format!("Bearer {secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // The audit log has the writes with their actors; alice may not read it.
    let resp = client
        .get(format!("{}/api/v1/audit", server.base))
        .header("authorization", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let audit: Value = server.get_json("/api/v1/audit").await;
    let rows: Vec<(String, String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap().into(),
                r["action"].as_str().unwrap().into(),
                r["outcome"].as_str().unwrap().into(),
            )
        })
        .collect();
    let has = |actor: &str, action: &str, outcome: &str| {
        rows.contains(&(actor.into(), action.into(), outcome.into()))
    };
    assert!(has("admin", "blob-upload", "ok"), "{rows:?}");
    assert!(has("admin", "push", "ok"), "{rows:?}");
    assert!(has("alice", "token-create", "ok"), "{rows:?}");
    assert!(has("alice", "push", "denied"), "{rows:?}");
    assert!(has("alice", "token-revoke", "ok"), "{rows:?}");
    assert!(has("admin", "login", "failed"), "{rows:?}");
    assert!(!audit.to_string().contains(&secret));
}

#[tokio::test]
async fn no_users_refuses_a_non_loopback_address_unless_insecure_open() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = pinfold_mirror::MirrorConfig::default();
    let meta = pinfold_meta::MetaConfig::default();
    let config = ServerConfig::default();
    let bind = || {
        Server::bind(
            "0.0.0.0:0".parse().unwrap(),
            dir.path(),
            &meta,
            &config,
            &mirror,
        )
    };
    let server = bind().await.unwrap();
    let result = server.run(async {}).await;
    assert!(
        matches!(result, Err(ServerError::InsecureOpen { .. })),
        "{result:?}"
    );
    let server = bind().await.unwrap().with_auth(AuthSettings {
        insecure_open: true,
        ..Default::default()
    });
    server.run(async {}).await.unwrap();
}

/// Issue 16: `X-Checksum-Deploy` reuses a stored file only when the caller may pull a
/// repository holding it. alice may push to `apt/team` (and pull it, and `team/*`); a `.deb`
/// the admin uploaded to `apt/secret`, or pushed as a blob into the OCI repository
/// `private/img`, is a checksum she gets the 404 of a checksum nobody has for, with the same
/// body, and nothing is listed. Files she may pull (an APT package of `apt/team`, a blob of
/// `team/debs`) still deploy by checksum (201). A deploy key may pull nothing: always the 404.
#[tokio::test]
async fn issue_16_checksum_deploy_reuses_only_files_the_caller_may_pull() {
    use sha2::Digest as _;
    let more = vec![rule(
        "team/*",
        &["alice"],
        &[],
        &[Action::Pull, Action::Push],
        false,
    )];
    let settings = admin_and_alice("apt/team", more);
    let server = TestServer::start_with_auth_and(settings, Some(basic("admin", "adminpw")), |c| {
        c.apt_deploy_keys = vec!["ci-deploy-key".into()]
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let mut debs = Vec::new();
    for name in ["secret", "hidden", "teampkg", "ocipkg"] {
        let path = crate::apt::build_deb(tmp.path(), name, "1.0", "all", None).await;
        let bytes = std::fs::read(path).unwrap();
        let sha = crate::apt::hex(&sha2::Sha256::digest(&bytes));
        debs.push((bytes, sha));
    }
    let [secret, hidden, teampkg, ocipkg] = <[(Vec<u8>, String); 4]>::try_from(debs).unwrap();
    let unknown = "1".repeat(64);
    let client = raw();
    let alice = basic("alice", "alicepw");
    let put = |repo: &str, file: &str, dist: &str| {
        client.put(format!(
            "{}/artifactory/{repo}/pool/{file}{}",
            server.base,
            crate::apt::matrix(dist, "main", "all")
        ))
    };

    // The admin's private files: an APT package, and an OCI blob.
    let resp = put("secret", "secret.deb", "stable")
        .header("authorization", basic("admin", "adminpw"))
        .body(secret.0.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    server.push_blob("private/img", &hidden.0).await;

    // Alice's checksum deploys of them answer as for a checksum nobody has.
    let checksum_deploy = |sha: &str, file: &str, dist: &str, credential: (&str, String)| {
        put("team", file, dist)
            .header(credential.0, credential.1)
            .header("X-Checksum-Deploy", "true")
            .header("X-Checksum-Sha256", sha)
            .send()
    };
    let mut answers = Vec::new();
    for (n, sha) in [&secret.1, &hidden.1, &unknown].into_iter().enumerate() {
        let file = format!("stolen{n}.deb");
        let resp = checksum_deploy(sha, &file, "stolen", ("authorization", alice.clone()))
            .await
            .unwrap();
        let body =
            crate::apt::assert_apt_error(resp, StatusCode::NOT_FOUND, "Checksum deploy failed")
                .await;
        answers.push(body.to_string().replace(sha.as_str(), "<sha256>"));
    }
    assert_eq!(
        answers[0], answers[2],
        "a private APT package is not confirmed"
    );
    assert_eq!(
        answers[1], answers[2],
        "a private OCI blob is not confirmed"
    );

    // What she may pull deploys by checksum: a package of apt/team, a blob of team/debs.
    let resp = put("team", "teampkg.deb", "stable")
        .header("authorization", alice.clone())
        .body(teampkg.0.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = checksum_deploy(
        &teampkg.1,
        "again.deb",
        "testing",
        ("authorization", alice.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{}",
        resp.text().await.unwrap()
    );
    // The same file as a blob of an OCI repository she may pull.
    let location = client
        .post(format!("{}/v2/team/debs/blobs/uploads/", server.base))
        .header("authorization", alice.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(location.status(), StatusCode::ACCEPTED);
    let location = server.resolve(&header(&location, "location").unwrap());
    let sep = if location.contains('?') { '&' } else { '?' };
    let resp = client
        .put(format!("{location}{sep}digest=sha256:{}", ocipkg.1))
        .header("authorization", alice.clone())
        .body(ocipkg.0.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = checksum_deploy(
        &ocipkg.1,
        "ocipkg.deb",
        "testing",
        ("authorization", alice.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{}",
        resp.text().await.unwrap()
    );

    // A deploy key may read nothing: even a file of apt/team is the unknown checksum's 404.
    let resp = checksum_deploy(
        &teampkg.1,
        "bykey.deb",
        "keyed",
        ("X-JFrog-Art-Api", "ci-deploy-key".into()),
    )
    .await
    .unwrap();
    let body =
        crate::apt::assert_apt_error(resp, StatusCode::NOT_FOUND, "Checksum deploy failed").await;
    assert_eq!(body.to_string().replace(&teampkg.1, "<sha256>"), answers[2]);

    // Nothing of the refused deploys is listed or served; the accepted ones are.
    for (file, want) in [
        ("stolen0.deb", StatusCode::NOT_FOUND),
        ("stolen1.deb", StatusCode::NOT_FOUND),
        ("stolen2.deb", StatusCode::NOT_FOUND),
        ("bykey.deb", StatusCode::NOT_FOUND),
        ("again.deb", StatusCode::OK),
        ("ocipkg.deb", StatusCode::OK),
    ] {
        let resp = client
            .get(format!("{}/artifactory/team/pool/{file}", server.base))
            .header("authorization", alice.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), want, "{file}");
    }
    for dist in ["stolen", "keyed"] {
        let resp = client
            .get(format!(
                "{}/apt/team/dists/{dist}/main/binary-all/Packages",
                server.base
            ))
            .header("authorization", alice.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::NOT_FOUND,
            "{dist} is not published"
        );
    }
}
