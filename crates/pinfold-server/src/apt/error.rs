//! Errors of the APT surface (`/artifactory/...`, `/apt/...`, `/api/v1/apt/...`), shaped like
//! Artifactory's so that CI tools written against Artifactory read them:
//! `{"errors":[{"status":409,"message":"..."}]}`.
//!
//! Library errors map to a status in one place (the `From` impls below); what is not mapped
//! is a 500 whose cause is logged once, here, with an id the client sees.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use pinfold_meta::MetaError;
use pinfold_store::StoreError;

/// One failed APT request.
#[derive(Debug)]
pub struct AptError {
    status: StatusCode,
    message: String,
    /// Ask for credentials (401 from a deploy endpoint).
    challenge: bool,
}

#[derive(Serialize)]
struct Envelope<'a> {
    errors: [Item<'a>; 1],
}

#[derive(Serialize)]
struct Item<'a> {
    status: u16,
    message: &'a str,
}

impl AptError {
    fn new(status: StatusCode, message: impl Into<String>) -> AptError {
        AptError {
            status,
            message: message.into(),
            challenge: false,
        }
    }

    /// Any status, for answers every surface gives (the limits of [`crate::limits`]).
    pub fn with_status(status: StatusCode, message: impl Into<String>) -> AptError {
        AptError::new(status, message)
    }

    /// 400: the request is malformed or its content is refused.
    pub fn bad_request(message: impl Into<String>) -> AptError {
        AptError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 400 for a body that is not a usable `.deb`.
    pub fn bad_deb(e: pinfold_apt::DebError) -> AptError {
        AptError::bad_request(format!("not a valid Debian package: {e}"))
    }

    /// 401 with a Basic challenge: no or wrong credentials.
    pub fn unauthorized() -> AptError {
        AptError {
            challenge: true,
            ..AptError::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized: send an API key (X-JFrog-Art-Api, Bearer, or Basic with the key as password)",
            )
        }
    }

    /// 403: the credentials are valid but do not allow this (issue 6).
    pub fn forbidden(message: impl Into<String>) -> AptError {
        AptError::new(StatusCode::FORBIDDEN, message)
    }

    /// 404: nothing here.
    pub fn not_found(message: impl Into<String>) -> AptError {
        AptError::new(StatusCode::NOT_FOUND, message)
    }

    /// 409: the target exists with other content.
    pub fn conflict(message: impl Into<String>) -> AptError {
        AptError::new(StatusCode::CONFLICT, message)
    }

    /// 413: the body exceeds the configured limit.
    pub fn too_large(max: u64) -> AptError {
        AptError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the package exceeds the maximum of {max} bytes"),
        )
    }

    /// 502: the upstream archive of a mirror failed or served something that does not verify.
    pub fn bad_gateway(message: impl Into<String>) -> AptError {
        AptError::new(StatusCode::BAD_GATEWAY, message)
    }

    /// 500: a failure of Pinfold, not of the request. The cause is logged with an id.
    pub fn internal(cause: impl std::fmt::Display) -> AptError {
        let id = uuid::Uuid::new_v4();
        tracing::error!(error_id = %id, "APT request failed: {cause}");
        AptError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error (id {id})"),
        )
    }

    /// Signing failed: a configuration or key problem, reported as 500.
    pub fn signing(e: pinfold_apt::SignError) -> AptError {
        AptError::internal(format!("signing: {e}"))
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for AptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl IntoResponse for AptError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Envelope {
            errors: [Item {
                status: self.status.as_u16(),
                message: &self.message,
            }],
        })
        .unwrap_or_default();
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        if self.challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Pinfold\""),
            );
        }
        response
    }
}

impl From<MetaError> for AptError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::AptPathConflict { .. } | MetaError::AptPackageConflict { .. } => {
                AptError::conflict(e.to_string())
            }
            MetaError::AptRepoExists(_) | MetaError::AptSnapshotExists(_) => {
                AptError::conflict(e.to_string())
            }
            MetaError::AptRepoUnknown(_)
            | MetaError::AptSnapshotUnknown(_)
            | MetaError::AptPublicationUnknown { .. } => AptError::not_found(e.to_string()),
            other => AptError::internal(other),
        }
    }
}

impl From<StoreError> for AptError {
    fn from(e: StoreError) -> Self {
        AptError::internal(e)
    }
}

impl From<AptError> for crate::api::error::ApiError {
    /// `/api/v1/apt/` answers in the management API's format, `{"error":{code,message}}`,
    /// with the same status and message as the Artifactory-shaped answer would carry.
    fn from(e: AptError) -> Self {
        let code = match e.status {
            StatusCode::BAD_REQUEST => "INVALID",
            StatusCode::UNAUTHORIZED => "UNAUTHORIZED",
            StatusCode::NOT_FOUND => "NOT_FOUND",
            StatusCode::CONFLICT => "CONFLICT",
            StatusCode::PAYLOAD_TOO_LARGE => "TOO_LARGE",
            StatusCode::BAD_GATEWAY => "UPSTREAM",
            _ => "INTERNAL",
        };
        crate::api::error::ApiError::with_status(e.status, code, e.message)
    }
}
