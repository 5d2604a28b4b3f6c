//! Errors of the management API.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::v2::error::OciError;

/// One failure of the management API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// 404 for a path that names nothing.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "NOT_FOUND",
            message: message.into(),
        }
    }

    /// Any status with its code string, for surfaces mapped onto this format (the APT
    /// management API maps its errors here: `apt/api.rs`).
    pub fn with_status(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 for a malformed name or parameter.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "INVALID",
            message: message.into(),
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Envelope {
            error: Body {
                code: self.code,
                message: &self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<pinfold_meta::MetaError> for ApiError {
    fn from(e: pinfold_meta::MetaError) -> Self {
        // The OCI mapping logs the cause and hides it behind a request id.
        ApiError::from(OciError::from(e))
    }
}

impl From<OciError> for ApiError {
    fn from(e: OciError) -> Self {
        // The registry layer already logged any internal cause; carry its code and detail so
        // a CLI can say what went wrong (a promote of an unknown digest, an unreachable
        // upstream).
        let code = e.code().as_str();
        let detail = e.detail_text();
        let status = e.into_response().status();
        ApiError {
            status,
            code,
            message: detail.unwrap_or_else(|| format!("registry answered {status}")),
        }
    }
}
