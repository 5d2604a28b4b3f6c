//! The APT management API under `/api/v1/apt/` (what `pinfold apt ...` calls):
//!
//! | request | answer |
//! |---|---|
//! | `GET /api/v1/apt/repos` | every repository |
//! | `POST /api/v1/apt/repos` `{name, kind: local\|mirror, upstream_url?, upstream_suite?, upstream_key?, components?, architectures?}` | 201, the repository |
//! | `POST /api/v1/apt/repos/<name>/sync` | a mirror's sync report |
//! | `GET /api/v1/apt/snapshots` | every snapshot |
//! | `POST /api/v1/apt/snapshots` `{name, repo, distribution}` | 201, the snapshot |
//! | `GET /api/v1/apt/snapshots/<name>/packages` | its listings |
//! | `GET /api/v1/apt/publications` | every publication |
//! | `PUT /api/v1/apt/publications/<prefix>/<distribution>` `{"type":"snapshot","name":..}` or `{"type":"repo","name":..,"distribution":..}` | the publication (indices follow within a second) |
//! | `GET /api/v1/apt/diff?from=<snapshot>&to=<snapshot>` | `{added, removed, upgraded, downgraded}` |
//!
//! Writes need a deploy key when keys are configured, like uploads. Errors are the management
//! API's `{"error":{code,message}}` (`api/error.rs`), mapped from the APT errors.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use pinfold_meta::{AptPublishSource, AptRepoKind, NewAptRepo};
use serde::Deserialize;

use super::deploy::authorize;
use super::error::AptError;
use super::matrix::{check_index_name, check_repo_name};
use super::service::AptService;
use crate::api::error::ApiError;
use crate::AppState;

/// The `/api/v1/apt/` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/apt/repos", get(list_repos).post(create_repo))
        .route("/api/v1/apt/repos/{name}/sync", post(sync_repo))
        .route(
            "/api/v1/apt/snapshots",
            get(list_snapshots).post(create_snapshot),
        )
        .route(
            "/api/v1/apt/snapshots/{name}/packages",
            get(snapshot_packages),
        )
        .route("/api/v1/apt/publications", get(list_publications))
        .route(
            "/api/v1/apt/publications/{prefix}/{distribution}",
            put(publish),
        )
        .route("/api/v1/apt/diff", get(diff_snapshots))
}

// Each route answers in the management API's error format; the `_apt` functions below do the
// work with the APT error type.
async fn list_repos(a0: State<AptService>) -> Result<Response, ApiError> {
    list_repos_apt(a0).await.map_err(ApiError::from)
}

async fn create_repo(
    a0: State<AptService>,
    a1: HeaderMap,
    a2: axum::body::Bytes,
) -> Result<Response, ApiError> {
    create_repo_apt(a0, a1, a2).await.map_err(ApiError::from)
}

async fn sync_repo(
    a0: State<AptService>,
    a1: HeaderMap,
    a2: Path<String>,
) -> Result<Response, ApiError> {
    sync_repo_apt(a0, a1, a2).await.map_err(ApiError::from)
}

async fn list_snapshots(a0: State<AptService>) -> Result<Response, ApiError> {
    list_snapshots_apt(a0).await.map_err(ApiError::from)
}

async fn create_snapshot(
    a0: State<AptService>,
    a1: HeaderMap,
    a2: axum::body::Bytes,
) -> Result<Response, ApiError> {
    create_snapshot_apt(a0, a1, a2)
        .await
        .map_err(ApiError::from)
}

async fn snapshot_packages(a0: State<AptService>, a1: Path<String>) -> Result<Response, ApiError> {
    snapshot_packages_apt(a0, a1).await.map_err(ApiError::from)
}

async fn list_publications(a0: State<AptService>) -> Result<Response, ApiError> {
    list_publications_apt(a0).await.map_err(ApiError::from)
}

async fn publish(
    a0: State<AptService>,
    a1: HeaderMap,
    a2: Path<(String, String)>,
    a3: axum::body::Bytes,
) -> Result<Response, ApiError> {
    publish_apt(a0, a1, a2, a3).await.map_err(ApiError::from)
}

async fn diff_snapshots(a0: State<AptService>, a1: Query<DiffQuery>) -> Result<Response, ApiError> {
    diff_snapshots_apt(a0, a1).await.map_err(ApiError::from)
}

/// JSON body rejections become 400s.
fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, AptError> {
    serde_json::from_slice(bytes)
        .map_err(|e| AptError::bad_request(format!("invalid JSON body: {e}")))
}

async fn list_repos_apt(State(apt): State<AptService>) -> Result<Response, AptError> {
    Ok(Json(apt.meta().apt_repos().await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRepo {
    name: String,
    kind: AptRepoKind,
    upstream_url: Option<String>,
    upstream_suite: Option<String>,
    upstream_key: Option<String>,
    #[serde(default)]
    components: Vec<String>,
    #[serde(default)]
    architectures: Vec<String>,
}

async fn create_repo_apt(
    State(apt): State<AptService>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, AptError> {
    authorize(&apt, &headers)?;
    let req: CreateRepo = json_body(&body)?;
    check_repo_name(&req.name)?;
    match req.kind {
        AptRepoKind::Local => {
            if req.upstream_url.is_some()
                || req.upstream_suite.is_some()
                || req.upstream_key.is_some()
            {
                return Err(AptError::bad_request("a local repository has no upstream"));
            }
        }
        AptRepoKind::Mirror => {
            let (Some(url), Some(suite)) = (&req.upstream_url, &req.upstream_suite) else {
                return Err(AptError::bad_request(
                    "a mirror needs upstream_url and upstream_suite",
                ));
            };
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(AptError::bad_request(
                    "upstream_url must be http:// or https://",
                ));
            }
            check_index_name("suite", suite)?;
            if let Some(key) = &req.upstream_key {
                // Refuse a key that does not parse now rather than at the first sync.
                pinfold_apt::parse_public_keys(key).map_err(|e| {
                    AptError::bad_request(format!(
                        "upstream_key is not an armored OpenPGP public key: {e}"
                    ))
                })?;
            }
        }
    }
    for c in &req.components {
        check_index_name("component", c)?;
    }
    for a in &req.architectures {
        a.parse::<pinfold_apt::Architecture>()
            .map_err(|_| AptError::bad_request(format!("invalid architecture {a:?}")))?;
    }
    let repo = apt
        .meta()
        .apt_create_repo(&NewAptRepo {
            name: req.name,
            kind: req.kind,
            upstream_url: req.upstream_url,
            upstream_suite: req.upstream_suite,
            upstream_key: req.upstream_key,
            components: req.components,
            architectures: req.architectures,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(repo)).into_response())
}

async fn sync_repo_apt(
    State(apt): State<AptService>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, AptError> {
    authorize(&apt, &headers)?;
    Ok(Json(apt.sync_mirror(&name).await?).into_response())
}

async fn list_snapshots_apt(State(apt): State<AptService>) -> Result<Response, AptError> {
    Ok(Json(apt.meta().apt_snapshots().await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSnapshot {
    name: String,
    repo: String,
    distribution: String,
}

async fn create_snapshot_apt(
    State(apt): State<AptService>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, AptError> {
    authorize(&apt, &headers)?;
    let req: CreateSnapshot = json_body(&body)?;
    check_repo_name(&req.name)?;
    check_index_name("distribution", &req.distribution)?;
    let snapshot = apt
        .meta()
        .apt_create_snapshot(&req.name, &req.repo, &req.distribution)
        .await?;
    Ok((StatusCode::CREATED, Json(snapshot)).into_response())
}

async fn snapshot_packages_apt(
    State(apt): State<AptService>,
    Path(name): Path<String>,
) -> Result<Response, AptError> {
    Ok(Json(apt.meta().apt_snapshot_packages(&name).await?).into_response())
}

async fn list_publications_apt(State(apt): State<AptService>) -> Result<Response, AptError> {
    Ok(Json(apt.meta().apt_publications().await?).into_response())
}

async fn publish_apt(
    State(apt): State<AptService>,
    headers: HeaderMap,
    Path((prefix, distribution)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, AptError> {
    authorize(&apt, &headers)?;
    check_repo_name(&prefix)?;
    check_index_name("distribution", &distribution)?;
    let source: AptPublishSource = json_body(&body)?;
    let publication = apt
        .meta()
        .apt_publish(&prefix, &distribution, &source)
        .await?;
    apt.notify_changed();
    Ok(Json(publication).into_response())
}

#[derive(Deserialize)]
struct DiffQuery {
    from: String,
    to: String,
}

async fn diff_snapshots_apt(
    State(apt): State<AptService>,
    Query(q): Query<DiffQuery>,
) -> Result<Response, AptError> {
    Ok(Json(apt.snapshot_diff(&q.from, &q.to).await?).into_response())
}
