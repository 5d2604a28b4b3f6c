//! `GET|HEAD|DELETE /v2/<name>/blobs/<digest>`

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pinfold_oci::{Digest, RepoName};

use super::error::{ErrorCode, OciError};
use crate::registry::{BlobBody, Registry};

/// A byte range asked for with `Range: bytes=...`.
#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// No usable range: send the whole blob.
    Whole,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// A syntactically valid range that lies outside the blob.
    Unsatisfiable,
}

/// Parses a single `bytes=` range (RFC 9110 §14.1.2) against a blob of `size` bytes.
/// Several ranges, other units or malformed values are ignored (the whole blob is sent), as
/// the RFC allows.
fn parse_range(value: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // suffix range: the last N bytes
        let Ok(n) = last.parse::<u64>() else {
            return RangeRequest::Whole;
        };
        if n == 0 || size == 0 {
            return RangeRequest::Unsatisfiable;
        }
        return RangeRequest::Part {
            start: size.saturating_sub(n),
            end: size - 1,
        };
    }
    let Ok(start) = first.parse::<u64>() else {
        return RangeRequest::Whole;
    };
    let end = if last.is_empty() {
        size.saturating_sub(1)
    } else {
        match last.parse::<u64>() {
            Ok(end) if end >= start => end.min(size.saturating_sub(1)),
            _ => return RangeRequest::Whole,
        }
    };
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Part { start, end }
}

/// Headers of a blob answer carrying `len` bytes.
fn blob_headers(len: u64, digest: HeaderValue) -> [(header::HeaderName, HeaderValue); 4] {
    [
        (header::CONTENT_LENGTH, HeaderValue::from(len)),
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        ),
        (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
        (
            header::HeaderName::from_static("docker-content-digest"),
            digest,
        ),
    ]
}

pub async fn get(
    registry: &Registry,
    repo: &RepoName,
    digest: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, OciError> {
    let digest: Digest = digest.parse()?;
    let digest_header =
        HeaderValue::from_str(digest.as_str()).map_err(|e| OciError::internal(&e))?;
    if head {
        let size = registry.pull_blob_size(repo, &digest).await?;
        return Ok((StatusCode::OK, blob_headers(size, digest_header)).into_response());
    }
    let file = match registry.pull_blob(repo, &digest).await? {
        BlobBody::File(file) => file,
        // Being fetched upstream: the whole blob as it arrives (a Range is ignored, which
        // RFC 9110 allows; the next request is served from the store with ranges).
        BlobBody::Streaming { size, stream } => {
            return Ok((
                StatusCode::OK,
                blob_headers(size, digest_header),
                Body::from_stream(stream),
            )
                .into_response())
        }
    };
    // Stored and part of the repository: with `[storage] redirect` the client fetches it from
    // the object store itself (ranges included: the store answers them).
    if let Some(url) = registry.store().redirect_url(&digest).await? {
        drop(file);
        return Ok((
            StatusCode::TEMPORARY_REDIRECT,
            [
                (
                    header::LOCATION,
                    HeaderValue::from_str(&url).map_err(|e| OciError::internal(&e))?,
                ),
                (
                    header::HeaderName::from_static("docker-content-digest"),
                    digest_header,
                ),
                (header::CONTENT_LENGTH, HeaderValue::from(0)),
            ],
        )
            .into_response());
    }
    let size = file.size;
    let range = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        size,
    );
    let (status, start, len) = match range {
        RangeRequest::Whole => (StatusCode::OK, 0, size),
        RangeRequest::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        RangeRequest::Unsatisfiable => {
            return Err(OciError::new(ErrorCode::SizeInvalid)
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                .with_header(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{size}"))
                        .map_err(|e| OciError::internal(&e))?,
                )
                .detail(format!(
                    "requested range lies outside the blob's {size} bytes"
                )));
        }
    };
    let mut response = (
        status,
        blob_headers(len, digest_header),
        Body::from_stream(file.into_stream(start, len)),
    )
        .into_response();
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {start}-{}/{size}", start + len - 1);
        response.headers_mut().insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&value).map_err(|e| OciError::internal(&e))?,
        );
    }
    Ok(response)
}

pub async fn delete(
    registry: &Registry,
    repo: &RepoName,
    digest: &str,
) -> Result<Response, OciError> {
    let digest: Digest = digest.parse()?;
    registry.delete_blob(repo, &digest).await?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::CONTENT_LENGTH, HeaderValue::from(0))],
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeRequest::*;
        let table = [
            (None, 10, Whole),
            (Some("bytes=0-4"), 10, Part { start: 0, end: 4 }),
            (Some("bytes=5-"), 10, Part { start: 5, end: 9 }),
            (Some("bytes=5-100"), 10, Part { start: 5, end: 9 }),
            (Some("bytes=-3"), 10, Part { start: 7, end: 9 }),
            (Some("bytes=-30"), 10, Part { start: 0, end: 9 }),
            (Some("bytes=10-"), 10, Unsatisfiable),
            (Some("bytes=10-20"), 10, Unsatisfiable),
            (Some("bytes=-0"), 10, Unsatisfiable),
            (Some("bytes=4-2"), 10, Whole),
            (Some("bytes=0-1,4-5"), 10, Whole),
            (Some("items=0-1"), 10, Whole),
            (Some("bytes=x-1"), 10, Whole),
            (Some("bytes=0-"), 0, Unsatisfiable),
        ];
        for (value, size, want) in table {
            assert_eq!(parse_range(value, size), want, "{value:?} of {size}");
        }
    }
}
