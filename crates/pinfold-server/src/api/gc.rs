//! `POST /api/v1/gc` (`?dry_run=true`, `?orphans=true`): run garbage collection now and
//! answer its report; `GET /api/v1/gc`: the last real run's report and the pending work.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use crate::registry::gc::{GcError, GcReport};
use crate::registry::Registry;

/// Query parameters of `POST /api/v1/gc`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunParams {
    /// List what would go, change nothing.
    #[serde(default)]
    dry_run: bool,
    /// Also look for files no row names (lists every file).
    #[serde(default)]
    orphans: bool,
}

/// Runs GC once. 409 when a backup or another GC is running (nothing deleted).
pub async fn run(
    State(registry): State<Registry>,
    params: Result<Query<RunParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<GcReport>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::invalid(e.body_text()))?;
    match registry
        .collect_garbage(params.dry_run, params.orphans)
        .await
    {
        Ok(report) => Ok(Json(report)),
        Err(e @ GcError::Busy) => Err(ApiError::with_status(
            StatusCode::CONFLICT,
            "GC_BUSY",
            e.to_string(),
        )),
        Err(GcError::Registry(e)) => Err(e.into()),
    }
}

/// The last real run (`null` before the first) and how many candidates wait.
pub async fn status(State(registry): State<Registry>) -> Result<Json<serde_json::Value>, ApiError> {
    let last_run = registry.last_gc_run().await?;
    let pending = registry
        .meta()
        .gc_pending()
        .await
        .map_err(crate::v2::error::OciError::from)?;
    Ok(Json(
        json!({ "last_run": last_run, "pending_candidates": pending }),
    ))
}
