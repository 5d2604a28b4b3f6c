//! Blob GETs follow redirects to storage, but the registry's Authorization stays behind:
//! distribution cannot be configured to redirect on the filesystem driver, so two small axum
//! apps play registry and storage (different host names: `127.0.0.1` and `localhost`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use pinfold_client::{ClientConfig, Credentials, RegistryClient};
use pinfold_oci::Digest;

const BLOB: &[u8] = b"layer bytes that live in object storage";

#[derive(Default)]
struct Seen {
    registry_auth: Vec<Option<String>>,
    storage_auth: Vec<Option<String>>,
}

fn auth_of(req: &Request) -> Option<String> {
    req.headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned())
}

pub async fn serve(app: axum::Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

#[tokio::test]
async fn redirected_blob_gets_no_registry_authorization() {
    let seen = Arc::new(Mutex::new(Seen::default()));

    let storage = axum::Router::new()
        .fallback(
            |State(seen): State<Arc<Mutex<Seen>>>, req: Request| async move {
                seen.lock().storage_auth.push(auth_of(&req));
                BLOB
            },
        )
        .with_state(seen.clone());
    let storage_port = serve(storage).await;

    let registry = axum::Router::new()
        .fallback(
            move |State(seen): State<Arc<Mutex<Seen>>>, req: Request| async move {
                let auth = auth_of(&req);
                seen.lock().registry_auth.push(auth.clone());
                if auth.is_none() {
                    return (
                        StatusCode::UNAUTHORIZED,
                        [(header::WWW_AUTHENTICATE, "Basic realm=\"test\"")],
                    )
                        .into_response();
                }
                Response::builder()
                    .status(StatusCode::TEMPORARY_REDIRECT)
                    .header(
                        header::LOCATION,
                        format!("http://localhost:{storage_port}/bucket/blob?sig=x"),
                    )
                    .body(axum::body::Body::empty())
                    .unwrap()
            },
        )
        .with_state(seen.clone());
    let registry_port = serve(registry).await;

    let client = RegistryClient::new(
        &format!("127.0.0.1:{registry_port}"),
        ClientConfig::default(),
    )
    .unwrap()
    .with_credentials(Some(Credentials::new("u", "p")));
    let blob = client
        .get_blob(&"app".parse().unwrap(), &Digest::sha256(BLOB))
        .await
        .unwrap()
        .collect_bytes()
        .await
        .unwrap();
    assert_eq!(blob.as_ref(), BLOB);

    let seen = seen.lock();
    assert_eq!(
        seen.registry_auth.len(),
        2,
        "challenge, then retry with Basic"
    );
    assert!(seen.registry_auth[1]
        .as_deref()
        .is_some_and(|a| a.starts_with("Basic ")));
    assert_eq!(
        seen.storage_auth,
        vec![None],
        "storage must not see credentials"
    );
}
