//! `GET /v2/_catalog`

use axum::http::{header, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::error::OciError;
use super::pagination::{next_link, page};
use crate::registry::Registry;

#[derive(Serialize)]
struct Catalog<'a> {
    repositories: Vec<&'a str>,
}

pub async fn list(registry: &Registry, uri: &Uri) -> Result<Response, OciError> {
    let (page, _) = page(uri)?;
    let repositories = if page.limit == Some(0) {
        Vec::new()
    } else {
        registry.catalog(page.limit, page.last.as_deref()).await?
    };
    let link = next_link(
        "/v2/_catalog",
        &page,
        repositories.len(),
        repositories.last().map(|r| r.as_str()),
    );
    let body = Catalog {
        repositories: repositories.iter().map(|r| r.as_str()).collect(),
    };
    let mut response = Json(body).into_response();
    if let Some(link) = link {
        response.headers_mut().insert(
            header::LINK,
            HeaderValue::from_str(&link).map_err(|e| OciError::internal(&e))?,
        );
    }
    Ok(response)
}
