//! `GET /v2/<name>/referrers/<digest>` (distribution-spec 1.1, "Listing Referrers")

use std::collections::{BTreeMap, HashMap};

use axum::extract::Query;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use pinfold_oci::{media_type, Digest, RepoName};
use serde::Serialize;

use super::error::{ErrorCode, OciError};
use crate::registry::Registry;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u8,
    media_type: &'static str,
    manifests: Vec<Entry>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    media_type: String,
    digest: Digest,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
}

pub async fn list(
    registry: &Registry,
    repo: &RepoName,
    digest: &str,
    uri: &Uri,
) -> Result<Response, OciError> {
    let subject: Digest = digest.parse()?;
    let Query(query) = Query::<HashMap<String, String>>::try_from_uri(uri).map_err(|e| {
        OciError::new(ErrorCode::Unsupported)
            .with_status(StatusCode::BAD_REQUEST)
            .detail(e.to_string())
    })?;
    // An empty `artifactType=` filters nothing.
    let artifact_type = query
        .get("artifactType")
        .map(String::as_str)
        .filter(|t| !t.is_empty());
    // An unknown subject (or repository) answers an empty index, never 404 (spec).
    let referrers = registry.referrers(repo, &subject, artifact_type).await?;
    let index = Index {
        schema_version: 2,
        media_type: media_type::OCI_INDEX,
        manifests: referrers
            .into_iter()
            .map(|r| Entry {
                media_type: r.media_type,
                digest: r.digest,
                size: r.size,
                artifact_type: r.artifact_type,
                annotations: r.annotations,
            })
            .collect(),
    };
    let body = serde_json::to_vec(&index).map_err(|e| OciError::internal(&e))?;
    let mut response = (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(media_type::OCI_INDEX),
        )],
        body,
    )
        .into_response();
    if artifact_type.is_some() {
        response.headers_mut().insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(response)
}
