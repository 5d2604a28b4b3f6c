//! The OCI error table and the `/v2/` error envelope.
//!
//! Every failure under `/v2/` leaves through [`OciError`], which writes the distribution-spec
//! envelope `{"errors":[{"code","message","detail"}]}` (no body on HEAD, the spec forbids one).
//! Statuses follow the spec's endpoint table (distribution-spec v1.1, "Error Codes" and the
//! per-endpoint "Failure" rows); where one call site needs another status for the same code it
//! says so with [`OciError::with_status`].

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pinfold_meta::MetaError;
use pinfold_mirror::MirrorError;
use pinfold_oci::{DigestError, ManifestError, NameError};
use pinfold_store::StoreError;
use serde::Serialize;

/// The error codes of the distribution-spec, one row each: code string, default status, message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// blob unknown to registry
    BlobUnknown,
    /// blob upload invalid
    BlobUploadInvalid,
    /// blob upload unknown to registry
    BlobUploadUnknown,
    /// provided digest did not match uploaded content
    DigestInvalid,
    /// manifest references a manifest or blob unknown to registry
    ManifestBlobUnknown,
    /// manifest invalid
    ManifestInvalid,
    /// manifest unknown to registry
    ManifestUnknown,
    /// invalid repository name
    NameInvalid,
    /// repository name not known to registry
    NameUnknown,
    /// invalid tag (distribution's code; the spec's grammar for `<reference>` rejects it)
    TagInvalid,
    /// provided length did not match content length
    SizeInvalid,
    /// authentication required
    Unauthorized,
    /// requested access to the resource is denied
    Denied,
    /// the operation is unsupported
    Unsupported,
    /// distribution's code for a bad `n` in pagination
    PaginationNumberInvalid,
    /// too many requests
    TooManyRequests,
    /// distribution's code for a service that cannot answer now (here: an upstream the mirror
    /// cannot reach, with nothing cached)
    Unavailable,
    /// Not in the spec's table: Pinfold's code for a request whose body stalled past
    /// `[server] body_idle_timeout_seconds` (408)
    RequestTimeout,
    /// Not in the spec's table: Pinfold's code for a request head over
    /// `[server] max_header_bytes` (431)
    HeadersTooLarge,
    /// Not in the spec's table: distribution's catch-all for server failures, which clients know.
    Unknown,
}

impl ErrorCode {
    /// `(code, status, message)` for each code: the one table.
    fn row(self) -> (&'static str, StatusCode, &'static str) {
        use ErrorCode::*;
        match self {
            BlobUnknown => (
                "BLOB_UNKNOWN",
                StatusCode::NOT_FOUND,
                "blob unknown to registry",
            ),
            BlobUploadInvalid => (
                "BLOB_UPLOAD_INVALID",
                StatusCode::BAD_REQUEST,
                "blob upload invalid",
            ),
            BlobUploadUnknown => (
                "BLOB_UPLOAD_UNKNOWN",
                StatusCode::NOT_FOUND,
                "blob upload unknown to registry",
            ),
            DigestInvalid => (
                "DIGEST_INVALID",
                StatusCode::BAD_REQUEST,
                "provided digest did not match uploaded content",
            ),
            ManifestBlobUnknown => (
                "MANIFEST_BLOB_UNKNOWN",
                StatusCode::BAD_REQUEST,
                "manifest references a manifest or blob unknown to registry",
            ),
            ManifestInvalid => (
                "MANIFEST_INVALID",
                StatusCode::BAD_REQUEST,
                "manifest invalid",
            ),
            ManifestUnknown => (
                "MANIFEST_UNKNOWN",
                StatusCode::NOT_FOUND,
                "manifest unknown to registry",
            ),
            NameInvalid => (
                "NAME_INVALID",
                StatusCode::BAD_REQUEST,
                "invalid repository name",
            ),
            NameUnknown => (
                "NAME_UNKNOWN",
                StatusCode::NOT_FOUND,
                "repository name not known to registry",
            ),
            TagInvalid => ("TAG_INVALID", StatusCode::BAD_REQUEST, "invalid tag"),
            SizeInvalid => (
                "SIZE_INVALID",
                StatusCode::BAD_REQUEST,
                "provided length did not match content length",
            ),
            Unauthorized => (
                "UNAUTHORIZED",
                StatusCode::UNAUTHORIZED,
                "authentication required",
            ),
            Denied => (
                "DENIED",
                StatusCode::FORBIDDEN,
                "requested access to the resource is denied",
            ),
            Unsupported => (
                "UNSUPPORTED",
                StatusCode::METHOD_NOT_ALLOWED,
                "the operation is unsupported",
            ),
            PaginationNumberInvalid => (
                "PAGINATION_NUMBER_INVALID",
                StatusCode::BAD_REQUEST,
                "invalid number of results requested",
            ),
            TooManyRequests => (
                "TOOMANYREQUESTS",
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests",
            ),
            Unavailable => (
                "UNAVAILABLE",
                StatusCode::SERVICE_UNAVAILABLE,
                "service unavailable",
            ),
            RequestTimeout => (
                "REQUEST_TIMEOUT",
                StatusCode::REQUEST_TIMEOUT,
                "request timed out",
            ),
            HeadersTooLarge => (
                "HEADERS_TOO_LARGE",
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request headers too large",
            ),
            Unknown => (
                "UNKNOWN",
                StatusCode::INTERNAL_SERVER_ERROR,
                "unknown error",
            ),
        }
    }

    /// The spec's code string.
    pub fn as_str(self) -> &'static str {
        self.row().0
    }
}

/// An error answer under `/v2/`.
#[derive(Debug)]
pub struct OciError {
    code: ErrorCode,
    status: StatusCode,
    detail: Option<serde_json::Value>,
    /// Replaces the code's generic message when the refusal needs saying in the message
    /// itself: clients such as skopeo and docker print only `message`, not `detail`.
    message: Option<String>,
    /// Extra headers (e.g. `Content-Range` on a 416).
    headers: Vec<(header::HeaderName, HeaderValue)>,
    /// When true the response carries no body (HEAD requests).
    head: bool,
}

impl OciError {
    /// An error with the code's default status.
    pub fn new(code: ErrorCode) -> OciError {
        OciError {
            code,
            status: code.row().1,
            detail: None,
            message: None,
            headers: Vec::new(),
            head: false,
        }
    }

    /// Adds a human-readable detail.
    pub fn detail(mut self, detail: impl Into<String>) -> OciError {
        self.detail = Some(serde_json::Value::String(detail.into()));
        self
    }

    /// Replaces the code's generic message (see the field).
    pub fn with_message(mut self, message: impl Into<String>) -> OciError {
        self.message = Some(message.into());
        self
    }

    /// Overrides the status where the spec's endpoint table gives another one for this code.
    pub fn with_status(mut self, status: StatusCode) -> OciError {
        self.status = status;
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> OciError {
        self.headers.push((name, value));
        self
    }

    /// Drops the body, for answers to HEAD.
    pub fn for_head(mut self, head: bool) -> OciError {
        self.head = head;
        self
    }

    /// The error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The detail, when it is text.
    pub fn detail_text(&self) -> Option<String> {
        self.detail.as_ref()?.as_str().map(str::to_owned)
    }

    /// A 500 whose cause is logged once here, under a fresh id the client sees in `detail`.
    pub fn internal(cause: &dyn std::fmt::Display) -> OciError {
        let id = uuid::Uuid::new_v4();
        tracing::error!(error_id = %id, "internal error: {cause}");
        OciError::new(ErrorCode::Unknown).detail(format!("internal error, id {id}"))
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    errors: [Entry<'a>; 1],
}

#[derive(Serialize)]
struct Entry<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a serde_json::Value>,
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let (code, _, message) = self.code.row();
        let body = if self.head {
            Vec::new()
        } else {
            let envelope = Envelope {
                errors: [Entry {
                    code,
                    message: self.message.as_deref().unwrap_or(message),
                    detail: self.detail.as_ref(),
                }],
            };
            serde_json::to_vec(&envelope).unwrap_or_default()
        };
        let len = body.len();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.head {
            // A HEAD answer announces no body; clients only read the status.
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
        } else {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

impl From<NameError> for OciError {
    fn from(e: NameError) -> Self {
        match e {
            NameError::InvalidName(_) => {
                OciError::new(ErrorCode::NameInvalid).detail(e.to_string())
            }
            NameError::InvalidTag(_) => OciError::new(ErrorCode::TagInvalid).detail(e.to_string()),
            NameError::InvalidDigest(_) => {
                OciError::new(ErrorCode::DigestInvalid).detail(e.to_string())
            }
            _ => OciError::new(ErrorCode::NameInvalid).detail(e.to_string()),
        }
    }
}

impl From<DigestError> for OciError {
    fn from(e: DigestError) -> Self {
        OciError::new(ErrorCode::DigestInvalid).detail(e.to_string())
    }
}

impl From<ManifestError> for OciError {
    fn from(e: ManifestError) -> Self {
        match e {
            // distribution-spec: a registry refusing a manifest for its size answers 413.
            ManifestError::TooLarge(_) => OciError::new(ErrorCode::ManifestInvalid)
                .with_status(StatusCode::PAYLOAD_TOO_LARGE)
                .detail(e.to_string()),
            _ => OciError::new(ErrorCode::ManifestInvalid).detail(e.to_string()),
        }
    }
}

impl From<MetaError> for OciError {
    fn from(e: MetaError) -> Self {
        match &e {
            // The explanation is the message itself: skopeo and docker print `message`, not
            // `detail`.
            MetaError::TagImmutable { .. } => OciError::new(ErrorCode::Denied)
                .detail(e.to_string())
                .with_message(e.to_string()),
            MetaError::TooManyUploads { .. } => OciError::new(ErrorCode::TooManyRequests)
                .detail(format!(
                    "{e}; finish or cancel (DELETE) some before opening more"
                ))
                .with_header(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static("60"),
                ),
            _ => OciError::internal(&e),
        }
    }
}

impl From<StoreError> for OciError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::DigestMismatch { .. } => {
                OciError::new(ErrorCode::DigestInvalid).detail(e.to_string())
            }
            StoreError::UploadUnknown(_) => {
                OciError::new(ErrorCode::BlobUploadUnknown).detail(e.to_string())
            }
            // distribution-spec, PATCH chunk: "416 Requested Range Not Satisfiable" when a chunk is
            // out of order.
            StoreError::UploadOffsetMismatch { .. } => OciError::new(ErrorCode::BlobUploadInvalid)
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                .detail(e.to_string()),
            StoreError::TooLarge { .. } => OciError::new(ErrorCode::SizeInvalid)
                .with_status(StatusCode::PAYLOAD_TOO_LARGE)
                .detail(e.to_string()),
            StoreError::BodyInterrupted(_) => {
                OciError::new(ErrorCode::BlobUploadInvalid).detail(e.to_string())
            }
            // The object store failed after its client's retries: a passing condition the
            // client may retry. The cause goes to the log only (it names the bucket).
            StoreError::Object { .. } => {
                tracing::warn!(error = %e, "object storage request failed");
                OciError::new(ErrorCode::Unavailable)
                    .detail("the blob store is unavailable; retry later")
                    .with_header(
                        axum::http::header::RETRY_AFTER,
                        axum::http::HeaderValue::from_static("5"),
                    )
            }
            _ => OciError::internal(&e),
        }
    }
}

impl OciError {
    /// The answer for a mirror failure; `missing` is the code for "the upstream does not have
    /// it" (MANIFEST_UNKNOWN or BLOB_UNKNOWN).
    pub fn from_mirror(e: MirrorError, missing: ErrorCode) -> OciError {
        use pinfold_client::ClientError;
        match e {
            MirrorError::NotFound { .. } => OciError::new(missing).detail(e.to_string()),
            MirrorError::UnknownUpstream(_) => {
                OciError::new(ErrorCode::NameUnknown).detail(e.to_string())
            }
            MirrorError::Upstream {
                source: ClientError::TooManyRequests { retry_after },
                ..
            } => {
                let mut err = OciError::new(ErrorCode::TooManyRequests).detail(e.to_string());
                if let Some(wait) = retry_after {
                    err = err.with_header(
                        header::RETRY_AFTER,
                        HeaderValue::from(wait.as_secs().max(1)),
                    );
                }
                err
            }
            // Too many requests to that upstream already: the client may retry shortly.
            MirrorError::Busy { .. } => OciError::new(ErrorCode::TooManyRequests)
                .detail(e.to_string())
                .with_header(header::RETRY_AFTER, HeaderValue::from(1u64)),
            // The upstream is down or answered something unusable: a gateway's failure.
            MirrorError::Upstream { .. }
            | MirrorError::InvalidManifest { .. }
            | MirrorError::FetchFailed { .. } => OciError::new(ErrorCode::Unavailable)
                .with_status(StatusCode::BAD_GATEWAY)
                .detail(e.to_string()),
            MirrorError::Meta(e) => e.into(),
            MirrorError::Store(e) => e.into(),
            _ => OciError::internal(&e),
        }
    }
}
