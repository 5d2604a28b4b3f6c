//! Answers distribution does not give on demand (rate limits, denials, oversized or mistyped
//! manifests, a stalled body), from an axum app that plays a misbehaving registry.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use pinfold_client::{ClientConfig, ClientError, RegistryClient};
use pinfold_oci::{media_type, Digest, Reference, RepoName, MAX_MANIFEST_BYTES};

use crate::redirect::serve;

const SMALL: &[u8] = b"{}";

async fn misbehave(req: Request) -> Response {
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/v2/limited/manifests/v1" => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "17")],
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
        )
            .into_response(),
        "/v2/denied/manifests/v1" => (
            StatusCode::FORBIDDEN,
            r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#,
        )
            .into_response(),
        "/v2/broken/manifests/v1" => (StatusCode::BAD_GATEWAY, "<html>bad gateway</html>").into_response(),
        "/v2/huge/manifests/v1" => (
            [(header::CONTENT_TYPE, media_type::OCI_MANIFEST)],
            vec![b' '; MAX_MANIFEST_BYTES + 1],
        )
            .into_response(),
        "/v2/schema1/manifests/v1" => (
            [(header::CONTENT_TYPE, media_type::DOCKER_SCHEMA1_SIGNED)],
            SMALL,
        )
            .into_response(),
        "/v2/lying/manifests/v1" => (
            [
                (header::CONTENT_TYPE, media_type::OCI_MANIFEST.to_owned()),
                (
                    header::HeaderName::from_static("docker-content-digest"),
                    Digest::sha256(b"other").to_string(),
                ),
            ],
            SMALL,
        )
            .into_response(),
        _ if path.starts_with("/v2/stalled/blobs/") => {
            // One chunk, then silence: only the idle-read timeout ends this.
            let chunks = futures_util::stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"abc")) })
                .chain(futures_util::stream::pending());
            Response::builder()
                .header(header::CONTENT_LENGTH, "10")
                .body(Body::from_stream(chunks))
                .unwrap()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start() -> String {
    format!(
        "127.0.0.1:{}",
        serve(axum::Router::new().fallback(misbehave)).await
    )
}

async fn get(c: &RegistryClient, repo: &str) -> ClientError {
    let repo: RepoName = repo.parse().unwrap();
    let reference: Reference = "v1".parse().unwrap();
    c.get_manifest(&repo, &reference).await.unwrap_err()
}

#[tokio::test]
async fn statuses_become_specific_errors() {
    let c = RegistryClient::new(&start().await, ClientConfig::default()).unwrap();
    let e = get(&c, "limited").await;
    assert!(
        matches!(e, ClientError::TooManyRequests { retry_after: Some(d) } if d == Duration::from_secs(17)),
        "{e:?}"
    );
    let e = get(&c, "denied").await;
    assert!(
        matches!(&e, ClientError::Upstream { status: 403, code: Some(code), message: Some(_) } if code == "DENIED"),
        "{e:?}"
    );
    let e = get(&c, "broken").await;
    assert!(
        matches!(
            e,
            ClientError::Upstream {
                status: 502,
                code: None,
                message: None
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn manifests_are_checked_before_they_are_returned() {
    let c = RegistryClient::new(&start().await, ClientConfig::default()).unwrap();
    let e = get(&c, "huge").await;
    assert!(
        matches!(
            e,
            ClientError::ManifestTooLarge {
                limit: MAX_MANIFEST_BYTES
            }
        ),
        "{e:?}"
    );
    let e = get(&c, "schema1").await;
    assert!(
        matches!(e, ClientError::UnsupportedMediaType(ref t) if t == media_type::DOCKER_SCHEMA1_SIGNED),
        "{e:?}"
    );
    let e = get(&c, "lying").await;
    assert!(
        matches!(&e, ClientError::DigestMismatch { expected, actual } if *expected == Digest::sha256(b"other") && *actual == Digest::sha256(SMALL)),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_stalled_blob_ends_at_the_idle_read_timeout() {
    let config = ClientConfig {
        read_timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    };
    let c = RegistryClient::new(&start().await, config).unwrap();
    let started = Instant::now();
    let stream = c
        .get_blob(&"stalled".parse().unwrap(), &Digest::sha256(b"abcdefghij"))
        .await
        .unwrap();
    let e = stream.collect_bytes().await.unwrap_err();
    assert!(matches!(e, ClientError::Transport(_)), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
