//! `n`/`last` pagination and the `Link` header, shared by tags and the catalog
//! (distribution-spec, "Listing Tags" and distribution's catalog extension).

use std::collections::HashMap;

use axum::extract::Query;
use axum::http::{header, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::OciError;

/// The largest page Pinfold serves, whatever `n` asks for.
pub const MAX_PAGE: u32 = 10_000;

/// A requested page.
#[derive(Debug, Default)]
pub struct Page {
    /// `n`, capped at [`MAX_PAGE`].
    pub limit: Option<u32>,
    /// `last`.
    pub last: Option<String>,
}

/// Reads `n` and `last` from the query string.
///
/// # Errors
/// PAGINATION_NUMBER_INVALID (distribution's code) for an `n` that is not a number.
pub fn page(uri: &Uri) -> Result<(Page, HashMap<String, String>), OciError> {
    let Query(query) = Query::<HashMap<String, String>>::try_from_uri(uri).map_err(|e| {
        OciError::new(super::error::ErrorCode::PaginationNumberInvalid).detail(e.to_string())
    })?;
    let limit = match query.get("n") {
        None => None,
        Some(n) => Some(n.parse::<u32>().map_err(|_| {
            OciError::new(super::error::ErrorCode::PaginationNumberInvalid)
                .detail(format!("n={n:?} is not a count"))
        })?),
    };
    let page = Page {
        limit: limit.map(|n| n.min(MAX_PAGE)),
        last: query.get("last").cloned(),
    };
    Ok((page, query))
}

/// Answers a listing as JSON, with `Link: <path?n=..&last=..>; rel="next"` when the page was
/// full (distribution-spec, "Listing Tags").
pub fn paged_json<T: serde::Serialize>(
    body: T,
    path: &str,
    page: &Page,
    returned: usize,
    last_item: Option<&str>,
) -> Result<Response, OciError> {
    let mut response = Json(body).into_response();
    if let Some(link) = next_link(path, page, returned, last_item) {
        let value = HeaderValue::from_str(&link).map_err(|e| OciError::internal(&e))?;
        response.headers_mut().insert(header::LINK, value);
    }
    Ok(response)
}

/// The `Link` header value for the next page, when this page was full.
fn next_link(path: &str, page: &Page, returned: usize, last_item: Option<&str>) -> Option<String> {
    let limit = page.limit?;
    if limit == 0 || returned < limit as usize {
        return None;
    }
    let last = last_item?;
    Some(format!("<{path}?n={limit}&last={last}>; rel=\"next\""))
}
