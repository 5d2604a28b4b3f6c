//! `GET|HEAD|PUT|DELETE /v2/<name>/manifests/<reference>`

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pinfold_oci::{media_type, Reference, RepoName, MAX_MANIFEST_BYTES};

use super::error::{ErrorCode, OciError};
use crate::registry::Registry;

fn header_value(text: &str) -> Result<HeaderValue, OciError> {
    HeaderValue::from_str(text).map_err(|e| OciError::internal(&e))
}

/// True when the client's `Accept` admits `stored`. No `Accept`, a wildcard, or
/// `application/json` (every manifest is JSON; old clients send it) admits everything.
fn acceptable(headers: &HeaderMap, stored: &str) -> bool {
    let mut any = false;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(text) = value.to_str() else { continue };
        for item in text.split(',') {
            let item = media_type::essence(item);
            if item.is_empty() {
                continue;
            }
            any = true;
            if item == stored
                || item == "*/*"
                || item == "application/*"
                || item == "application/json"
            {
                return true;
            }
        }
    }
    !any
}

pub async fn get(
    registry: &Registry,
    repo: &RepoName,
    reference: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, OciError> {
    let reference: Reference = reference.parse()?;
    let (found, stale) = registry.pull_manifest(repo, &reference).await?;
    let stored = found.record.media_type.as_str();
    if !acceptable(headers, stored) {
        return Err(OciError::new(ErrorCode::ManifestUnknown).detail(format!(
            "{repo}:{reference} is a {stored}, which the request's Accept header does not admit"
        )));
    }
    let digest = header_value(found.record.digest.as_str())?;
    let response_headers = [
        (header::CONTENT_TYPE, header_value(stored)?),
        (header::CONTENT_LENGTH, HeaderValue::from(found.bytes.len())),
        (
            header::HeaderName::from_static("docker-content-digest"),
            digest.clone(),
        ),
        (
            header::ETAG,
            header_value(&format!("\"{}\"", found.record.digest))?,
        ),
    ];
    let body = if head {
        Body::empty()
    } else {
        Body::from(found.bytes)
    };
    let mut response = (StatusCode::OK, response_headers, body).into_response();
    if let Some(reason) = stale {
        // RFC 9111 §5.5: 110 "Response is Stale". Tells a client (and its logs) that the
        // mirror could not ask the upstream and served what it had.
        let text = format!("110 pinfold \"{}\"", reason.replace(['"', '\\'], "'"));
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().insert(header::WARNING, value);
        }
    }
    Ok(response)
}

pub async fn put(
    registry: &Registry,
    repo: &RepoName,
    reference: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, OciError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    // Refuse an oversized manifest by its declared length before reading it.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = |n: String| {
        OciError::new(ErrorCode::ManifestInvalid)
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
            .detail(format!("manifest is {n} bytes, over the 4 MiB limit"))
    };
    if let Some(n) = declared.filter(|&n| n > MAX_MANIFEST_BYTES as u64) {
        if n <= MAX_DRAINED_BYTES {
            drain(body).await;
        }
        return Err(too_large(n.to_string()));
    }
    let bytes = axum::body::to_bytes(body, MAX_MANIFEST_BYTES)
        .await
        .map_err(|e| {
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            {
                too_large("more than 4194304".to_owned())
            } else {
                OciError::new(ErrorCode::ManifestInvalid)
                    .detail(format!("reading the manifest failed: {e}"))
            }
        })?;
    let pushed = registry
        .put_manifest(repo, reference, content_type, bytes)
        .await?;
    let mut response = (
        StatusCode::CREATED,
        [
            (
                header::LOCATION,
                header_value(&format!("/v2/{repo}/manifests/{}", pushed.digest))?,
            ),
            (
                header::HeaderName::from_static("docker-content-digest"),
                header_value(pushed.digest.as_str())?,
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(0)),
        ],
    )
        .into_response();
    if let Some(subject) = pushed.subject {
        // distribution-spec 1.1, "Pushing Manifests with Subject": tells the client that this
        // registry maintains the referrers index itself.
        response
            .headers_mut()
            .insert("oci-subject", header_value(subject.as_str())?);
    }
    Ok(response)
}

pub async fn delete(
    registry: &Registry,
    repo: &RepoName,
    reference: &str,
) -> Result<Response, OciError> {
    registry.delete_manifest(repo, reference).await?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::CONTENT_LENGTH, HeaderValue::from(0))],
    )
        .into_response())
}

/// Largest oversized manifest body read (and discarded) before answering 413. A client such as
/// reqwest or Docker writes the whole body before it reads the answer; if the server answered
/// and closed at once, the client would see a broken pipe instead of the 413. Beyond this the
/// connection is simply closed: reading more would only spend bandwidth on a refusal.
const MAX_DRAINED_BYTES: u64 = 64 * 1024 * 1024;

/// Reads `body` to its end, discarding it, while it keeps arriving: stops at its first error,
/// when nothing arrived for [`DRAIN_IDLE`] (a client that waits for the answer before sending,
/// or sends nothing), or after [`DRAIN_TOTAL`] in all.
async fn drain(body: Body) {
    let mut body = body;
    let _ = tokio::time::timeout(DRAIN_TOTAL, async {
        while let Ok(Some(Ok(_))) =
            tokio::time::timeout(DRAIN_IDLE, http_body_util::BodyExt::frame(&mut body)).await
        {
        }
    })
    .await;
}

/// See [`drain`].
const DRAIN_IDLE: std::time::Duration = std::time::Duration::from_millis(250);
/// See [`drain`].
const DRAIN_TOTAL: std::time::Duration = std::time::Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        let mut h = HeaderMap::new();
        assert!(
            acceptable(&h, media_type::OCI_INDEX),
            "no Accept admits everything"
        );
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.docker.distribution.manifest.v2+json"),
        );
        assert!(!acceptable(&h, media_type::OCI_INDEX));
        assert!(acceptable(&h, media_type::DOCKER_MANIFEST));
        h.append(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.oci.image.index.v1+json; q=0.5"),
        );
        assert!(acceptable(&h, media_type::OCI_INDEX));
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        assert!(acceptable(&h, media_type::DOCKER_MANIFEST_LIST));
    }
}
