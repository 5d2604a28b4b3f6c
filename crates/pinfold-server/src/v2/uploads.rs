//! `POST /v2/<name>/blobs/uploads/` and `GET|PATCH|PUT|DELETE /v2/<name>/blobs/uploads/<id>`

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::Query;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pinfold_oci::{Digest, RepoName};

use super::error::{ErrorCode, OciError};
use crate::auth::Access;
use crate::registry::Registry;
use pinfold_auth::Action;

const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");

fn value(text: &str) -> Result<HeaderValue, OciError> {
    HeaderValue::from_str(text).map_err(|e| OciError::internal(&e))
}

fn query(parts: &Parts) -> Result<HashMap<String, String>, OciError> {
    Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
        .map(|Query(q)| q)
        .map_err(|e| OciError::new(ErrorCode::BlobUploadInvalid).detail(e.to_string()))
}

/// The `Range` value for an upload holding `offset` bytes. Like distribution, an empty upload
/// answers `0-0`: the header has no form for "nothing yet".
fn range_value(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

/// 202/204 answer describing an open session.
fn session_response(
    status: StatusCode,
    repo: &RepoName,
    id: &str,
    offset: u64,
) -> Result<Response, OciError> {
    Ok((
        status,
        [
            (
                header::LOCATION,
                value(&format!("/v2/{repo}/blobs/uploads/{id}"))?,
            ),
            (header::RANGE, value(&range_value(offset))?),
            (UPLOAD_UUID, value(id)?),
            (header::CONTENT_LENGTH, HeaderValue::from(0)),
        ],
    )
        .into_response())
}

/// 201 answer for a blob now in the repository.
fn created(repo: &RepoName, digest: &Digest) -> Result<Response, OciError> {
    Ok((
        StatusCode::CREATED,
        [
            (
                header::LOCATION,
                value(&format!("/v2/{repo}/blobs/{digest}"))?,
            ),
            (CONTENT_DIGEST, value(digest.as_str())?),
            (header::CONTENT_LENGTH, HeaderValue::from(0)),
        ],
    )
        .into_response())
}

fn parse_digest(text: Option<&String>) -> Result<Digest, OciError> {
    let text = text.ok_or_else(|| {
        OciError::new(ErrorCode::DigestInvalid)
            .detail("the digest query parameter is required to complete an upload")
    })?;
    Ok(text.parse()?)
}

/// Fails a chunk's body when it does not carry exactly `expected` bytes (its `Content-Range`),
/// so that the store rolls the append back. Needed where no `Content-Length` was checked
/// (chunked transfer encoding).
/// With `expected = None` (no `Content-Range`) the body passes through unchanged.
fn exactly<S, E>(
    body: S,
    expected: Option<u64>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, String>> + Send + Unpin
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Send + Unpin + 'static,
    E: std::fmt::Display + Send + 'static,
{
    use futures_util::StreamExt;
    Box::pin(futures_util::stream::unfold(
        (body, 0u64, false),
        move |(mut body, seen, done)| async move {
            if done {
                return None;
            }
            let Some(expected) = expected else {
                let next = body.next().await?.map_err(|e| e.to_string());
                let done = next.is_err();
                return Some((next, (body, seen, done)));
            };
            match body.next().await {
                Some(Ok(chunk)) => {
                    let seen = seen + chunk.len() as u64;
                    if seen > expected {
                        let e = format!(
                            "chunk is longer than the {expected} bytes of its Content-Range"
                        );
                        Some((Err(e), (body, seen, true)))
                    } else {
                        Some((Ok(chunk), (body, seen, false)))
                    }
                }
                Some(Err(e)) => Some((Err(e.to_string()), (body, seen, true))),
                None if seen < expected => {
                    let e = format!(
                        "chunk ended after {seen} of the {expected} bytes of its Content-Range"
                    );
                    Some((Err(e), (body, seen, true)))
                }
                None => None,
            }
        },
    ))
}

/// `Content-Range: <start>-<end>` of a chunk, checked against `Content-Length`.
fn chunk_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, OciError> {
    let Some(raw) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let invalid = || {
        OciError::new(ErrorCode::BlobUploadInvalid)
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
            .detail(format!("Content-Range {raw:?} is not <start>-<end>"))
    };
    let text = raw.to_str().map_err(|_| invalid())?;
    // Some clients send the HTTP form "bytes 0-99/*"; accept it as well.
    let text = text
        .trim()
        .trim_start_matches("bytes ")
        .split('/')
        .next()
        .unwrap_or_default();
    let (start, end) = text.split_once('-').ok_or_else(invalid)?;
    let start: u64 = start.trim().parse().map_err(|_| invalid())?;
    let end: u64 = end.trim().parse().map_err(|_| invalid())?;
    if end < start {
        return Err(invalid());
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = length {
        if length != end - start + 1 {
            return Err(OciError::new(ErrorCode::SizeInvalid).detail(format!(
                "Content-Range {start}-{end} announces {} bytes, Content-Length {length}",
                end - start + 1
            )));
        }
    }
    Ok(Some((start, end)))
}

/// True when the request carries a body.
fn has_body(headers: &HeaderMap) -> bool {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match length {
        Some(n) => n > 0,
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

pub async fn start(
    registry: &Registry,
    repo: &RepoName,
    parts: &Parts,
    body: Body,
) -> Result<Response, OciError> {
    let query = query(parts)?;
    let access = parts.extensions.get::<Access>().ok_or_else(|| {
        OciError::internal(&"an upload request reached its handler without the auth layer")
    })?;
    if let Some(mount) = query.get("mount") {
        let digest: Digest = mount.parse()?;
        let from = match query.get("from") {
            Some(from) => Some(from.parse::<RepoName>().map_err(OciError::from)?),
            None => None,
        };
        // Only repositories the caller may pull are sources (issue 16): a mount must not read
        // what a GET could not.
        let may_pull = |source: &RepoName| access.allows(source.as_str(), Action::Pull);
        if registry
            .mount_blob(repo, &digest, from.as_ref(), may_pull)
            .await?
        {
            return created(repo, &digest);
        }
        // distribution-spec: when the mount cannot be done (nothing to mount, or nothing the
        // caller may read), the registry opens an ordinary upload session instead (202), the
        // same answer either way.
    } else if query.contains_key("digest") {
        let digest = parse_digest(query.get("digest"))?;
        registry
            .upload_monolithic(repo, &digest, body.into_data_stream())
            .await?;
        return created(repo, &digest);
    }
    let id = registry.start_upload(repo, &access.quota_owner()).await?;
    session_response(StatusCode::ACCEPTED, repo, id.as_str(), 0)
}

pub async fn status(registry: &Registry, repo: &RepoName, id: &str) -> Result<Response, OciError> {
    let (id, offset) = registry.upload_offset(repo, id).await?;
    session_response(StatusCode::NO_CONTENT, repo, id.as_str(), offset)
}

pub async fn patch(
    registry: &Registry,
    repo: &RepoName,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, OciError> {
    let range = chunk_range(headers)?;
    let body = exactly(
        body.into_data_stream(),
        range.map(|(start, end)| end - start + 1),
    );
    let start = range.map(|(start, _)| start);
    let (id, offset) = registry.append_upload(repo, id, start, body).await?;
    session_response(StatusCode::ACCEPTED, repo, id.as_str(), offset)
}

pub async fn put(
    registry: &Registry,
    repo: &RepoName,
    id: &str,
    parts: &Parts,
    body: Body,
) -> Result<Response, OciError> {
    let query = query(parts)?;
    let digest = parse_digest(query.get("digest"))?;
    let range = chunk_range(&parts.headers)?;
    let start = range.map(|(start, _)| start);
    let final_chunk = has_body(&parts.headers).then(|| {
        exactly(
            body.into_data_stream(),
            range.map(|(start, end)| end - start + 1),
        )
    });
    registry
        .complete_upload(repo, id, &digest, start, final_chunk)
        .await?;
    created(repo, &digest)
}

pub async fn delete(registry: &Registry, repo: &RepoName, id: &str) -> Result<Response, OciError> {
    registry.cancel_upload(repo, id).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::CONTENT_LENGTH, HeaderValue::from(0))],
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk_start(headers: &HeaderMap) -> Result<Option<u64>, OciError> {
        Ok(chunk_range(headers)?.map(|(start, _)| start))
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn content_range() {
        assert_eq!(chunk_start(&headers(&[])).unwrap(), None);
        assert_eq!(
            chunk_start(&headers(&[("content-range", "10-19")])).unwrap(),
            Some(10)
        );
        assert_eq!(
            chunk_start(&headers(&[
                ("content-range", "10-19"),
                ("content-length", "10")
            ]))
            .unwrap(),
            Some(10)
        );
        assert_eq!(
            chunk_start(&headers(&[("content-range", "bytes 0-9/*")])).unwrap(),
            Some(0)
        );
        for bad in ["x", "5-1", "-", "1-"] {
            let h = headers(&[("content-range", bad)]);
            assert_eq!(
                chunk_start(&h).unwrap_err().code(),
                ErrorCode::BlobUploadInvalid,
                "{bad}"
            );
        }
        let h = headers(&[("content-range", "0-9"), ("content-length", "3")]);
        assert_eq!(chunk_start(&h).unwrap_err().code(), ErrorCode::SizeInvalid);
    }

    #[test]
    fn range_of_empty_and_full_uploads() {
        assert_eq!(range_value(0), "0-0");
        assert_eq!(range_value(10), "0-9");
    }
}
