//! `GET /v2/<name>/tags/list`

use axum::http::Uri;
use axum::response::Response;
use pinfold_oci::RepoName;
use serde::Serialize;

use super::error::OciError;
use super::pagination::{page, paged_json};
use crate::registry::Registry;

#[derive(Serialize)]
struct TagList<'a> {
    name: &'a str,
    tags: Vec<&'a str>,
}

pub async fn list(registry: &Registry, repo: &RepoName, uri: &Uri) -> Result<Response, OciError> {
    let (page, _) = page(uri)?;
    let tags = if page.limit == Some(0) {
        // distribution-spec: `n=0` asks for an empty page, but the repository must exist.
        registry.tags(repo, Some(1), None).await?;
        Vec::new()
    } else {
        registry
            .tags(repo, page.limit, page.last.as_deref())
            .await?
    };
    let body = TagList {
        name: repo.as_str(),
        tags: tags.iter().map(|t| t.as_str()).collect(),
    };
    let last = tags.last().map(|t| t.as_str());
    paged_json(
        body,
        &format!("/v2/{repo}/tags/list"),
        &page,
        tags.len(),
        last,
    )
}
