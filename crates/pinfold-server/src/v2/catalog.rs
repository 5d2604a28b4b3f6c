//! `GET /v2/_catalog`

use axum::http::Uri;
use axum::response::Response;
use serde::Serialize;

use super::error::OciError;
use super::pagination::{page, paged_json};
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
    let body = Catalog {
        repositories: repositories.iter().map(|r| r.as_str()).collect(),
    };
    let last = repositories.last().map(|r| r.as_str());
    paged_json(body, "/v2/_catalog", &page, repositories.len(), last)
}
