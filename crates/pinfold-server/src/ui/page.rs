//! The page shell every UI page shares, its error pages, and the headers that keep a browser
//! from running or loading anything the page did not mean to.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use serde::de::DeserializeOwned;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// No scripts, no frames, nothing fetched from elsewhere; the one inline style block allowed.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'none'";

const STYLE: &str = "\
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:80rem;padding:0 1rem;color:#222}\
header{display:flex;gap:1.5rem;align-items:baseline;border-bottom:1px solid #ccc;padding:.6rem 0}\
header b{font-size:1.15rem}a{color:#0a58ca;text-decoration:none}a:hover{text-decoration:underline}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .6rem;\
border-bottom:1px solid #eee;vertical-align:top}th{background:#f6f6f6}\
code{font-size:.85em;word-break:break-all}td.num{text-align:right}time{white-space:nowrap}";

/// A whole page titled `title` around `body`, answered 200.
pub(super) fn page(title: &str, body: Markup) -> Response {
    html_response(StatusCode::OK, title, body)
}

fn html_response(status: StatusCode, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — Pinfold" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                header {
                    b { a href="/" { "Pinfold" } }
                    a href="/" { "Repositories" }
                    a href="/ui/drift" { "Drift" }
                    a href="/ui/apt" { "APT" }
                }
                h1 { (title) }
                (body)
            }
        }
    };
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Pages show live state (tags move): never serve one from a cache.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A table cell with a time in RFC 3339 (UTC), as the API and the CLI give it.
pub(super) fn time_cell(at: OffsetDateTime) -> Markup {
    let text = at.format(&Rfc3339).unwrap_or_else(|_| at.to_string());
    html! { td { time datetime=(text) { (text) } } }
}

/// A refusal or failure, answered as an HTML page with its status.
#[derive(Debug)]
pub(super) struct UiError {
    status: StatusCode,
    message: String,
}

impl UiError {
    pub(super) fn bad_request(message: String) -> UiError {
        UiError {
            status: StatusCode::BAD_REQUEST,
            message,
        }
    }

    pub(super) fn not_found(message: String) -> UiError {
        UiError {
            status: StatusCode::NOT_FOUND,
            message,
        }
    }

    /// A failure of the server's own (the database): logged, not shown.
    pub(super) fn internal(error: impl std::fmt::Display) -> UiError {
        tracing::error!(%error, "web UI page failed");
        UiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "The page could not be made; the server's log says why.".to_owned(),
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error").to_owned();
        html_response(self.status, &title, html! { p { (self.message) } })
    }
}

/// axum's `Query`, refused (a bad `?before=`, say) with an HTML 400 page like every other UI
/// error rather than a plain-text one.
pub(super) struct UiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for UiQuery<T> {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, UiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(query)| UiQuery(query))
            .map_err(|rejection| UiError::bad_request(rejection.body_text()))
    }
}
