//! The Docker token flow against an axum app that plays registry and realm: it answers 401
//! with a Bearer challenge, issues opaque tokens, and counts how often it was asked. Here the
//! realm's behaviour is under the test's control (lifetimes, `access_token`, refusals);
//! `jwt_realm.rs` runs the same flow against docker-registry itself.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use parking_lot::Mutex;
use pinfold_client::{ClientConfig, ClientError, Credentials, RegistryClient};
use pinfold_oci::{media_type, Digest, RepoName};

use crate::redirect::serve;

const MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

struct Realm {
    port: Mutex<u16>,
    /// `(username, password)` the realm requires, if any.
    credentials: Option<(String, String)>,
    /// The JSON field the token is sent in (`token` or `access_token`).
    field: &'static str,
    expires_in: Option<u64>,
    issued: AtomicUsize,
    token_queries: Mutex<Vec<String>>,
}

impl Realm {
    fn new(
        credentials: Option<(&str, &str)>,
        field: &'static str,
        expires_in: Option<u64>,
    ) -> Arc<Realm> {
        Arc::new(Realm {
            port: Mutex::new(0),
            credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
            field,
            expires_in,
            issued: AtomicUsize::new(0),
            token_queries: Mutex::new(Vec::new()),
        })
    }
}

async fn handle(State(realm): State<Arc<Realm>>, req: Request) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned());
    if req.uri().path() == "/token" {
        if let Some((u, p)) = &realm.credentials {
            let want = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            );
            if auth.as_deref() != Some(want.as_str()) {
                return StatusCode::UNAUTHORIZED.into_response();
            }
        }
        let n = realm.issued.fetch_add(1, Ordering::SeqCst) + 1;
        realm
            .token_queries
            .lock()
            .push(req.uri().query().unwrap_or_default().to_owned());
        let mut body = serde_json::json!({ realm.field: format!("tok-{n}") });
        if let Some(e) = realm.expires_in {
            body["expires_in"] = e.into();
        }
        return axum::Json(body).into_response();
    }
    let issued = realm.issued.load(Ordering::SeqCst);
    let valid = auth
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer tok-"))
        .and_then(|n| n.parse::<usize>().ok())
        .is_some_and(|n| n >= 1 && n <= issued);
    if !valid {
        let port = *realm.port.lock();
        let challenge = format!(
            r#"Bearer realm="http://127.0.0.1:{port}/token",service="pinfold test",scope="repository:app:pull""#
        );
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, challenge)],
            axum::Json(serde_json::json!({"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]})),
        )
            .into_response();
    }
    match req.uri().path() {
        "/v2/" => axum::Json(serde_json::json!({})).into_response(),
        "/v2/app/manifests/v1" => (
            [
                (header::CONTENT_TYPE, media_type::OCI_MANIFEST.to_owned()),
                (
                    header::HeaderName::from_static("docker-content-digest"),
                    Digest::sha256(MANIFEST).to_string(),
                ),
            ],
            MANIFEST,
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start(realm: Arc<Realm>) -> String {
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(realm.clone());
    let port = serve(app).await;
    *realm.port.lock() = port;
    format!("127.0.0.1:{port}")
}

fn app() -> RepoName {
    "app".parse().unwrap()
}

#[tokio::test]
async fn token_is_fetched_once_and_reused_for_its_scope() {
    let realm = Realm::new(Some(("ci", "s3cret")), "token", Some(300));
    let addr = start(realm.clone()).await;
    let c = RegistryClient::new(&addr, ClientConfig::default())
        .unwrap()
        .with_credentials(Some(Credentials::new("ci", "s3cret")));
    for _ in 0..3 {
        let m = c
            .get_manifest(&app(), &"v1".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(m.bytes.as_ref(), MANIFEST);
    }
    assert_eq!(realm.issued.load(Ordering::SeqCst), 1, "cached per scope");
    let queries = realm.token_queries.lock().clone();
    assert_eq!(
        queries,
        ["service=pinfold+test&scope=repository%3Aapp%3Apull"]
    );
    // /v2/ is another scope: one more token.
    c.ping().await.unwrap();
    assert_eq!(realm.issued.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn concurrent_requests_share_one_token_fetch() {
    let realm = Realm::new(None, "token", Some(300));
    let addr = start(realm.clone()).await;
    let c = Arc::new(RegistryClient::new(&addr, ClientConfig::default()).unwrap());
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.get_manifest(&app(), &"v1".parse().unwrap()).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().bytes.as_ref(), MANIFEST);
    }
    assert_eq!(realm.issued.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn access_token_field_and_short_lifetimes() {
    // expires_in of 1 s is under the client's safety margin: never reused.
    let realm = Realm::new(None, "access_token", Some(1));
    let addr = start(realm.clone()).await;
    let c = RegistryClient::new(&addr, ClientConfig::default()).unwrap();
    for _ in 0..2 {
        c.get_manifest(&app(), &"v1".parse().unwrap())
            .await
            .unwrap();
    }
    assert_eq!(realm.issued.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn default_lifetime_applies_without_expires_in() {
    let realm = Realm::new(None, "token", None);
    let addr = start(realm.clone()).await;
    let c = RegistryClient::new(&addr, ClientConfig::default()).unwrap();
    for _ in 0..2 {
        c.get_manifest(&app(), &"v1".parse().unwrap())
            .await
            .unwrap();
    }
    assert_eq!(realm.issued.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn realm_refusing_credentials_is_unauthorized() {
    let realm = Realm::new(Some(("ci", "s3cret")), "token", None);
    let addr = start(realm.clone()).await;
    let wrong = RegistryClient::new(&addr, ClientConfig::default())
        .unwrap()
        .with_credentials(Some(Credentials::new("ci", "nope")));
    let e = wrong
        .get_manifest(&app(), &"v1".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Unauthorized { .. }), "{e:?}");
    let anonymous = RegistryClient::new(&addr, ClientConfig::default()).unwrap();
    assert!(matches!(
        anonymous.ping().await,
        Err(ClientError::Unauthorized { .. })
    ));
    assert_eq!(realm.issued.load(Ordering::SeqCst), 0);
}
