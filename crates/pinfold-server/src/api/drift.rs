//! `GET /api/v1/drift[?all=true&limit=N&before=ID]` and `GET /api/v1/drift/<id>`: upstream
//! moves of mirrored tags that the mirror did not follow, newest first.

use axum::extract::{Path, Query, State};
use axum::Json;
use pinfold_meta::DriftEvent;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use crate::registry::Registry;

/// Most events in one answer.
const MAX_LIMIT: u32 = 1000;

/// Query of the list.
#[derive(Debug, Deserialize)]
pub struct DriftQuery {
    /// Include resolved events. Default false: only open ones.
    #[serde(default)]
    all: bool,
    /// At most this many (default 100, at most 1000).
    limit: Option<u32>,
    /// Only events with a smaller id (the next page: the last id of this one).
    before: Option<i64>,
}

/// The list answer.
#[derive(Debug, Serialize)]
pub struct DriftList {
    /// Events, newest first.
    events: Vec<DriftEvent>,
}

/// The drift events.
pub async fn list(
    State(registry): State<Registry>,
    Query(query): Query<DriftQuery>,
) -> Result<Json<DriftList>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::invalid(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let events = registry
        .meta()
        .drift_events(!query.all, query.before, limit)
        .await
        .map_err(crate::v2::error::OciError::from)?;
    Ok(Json(DriftList { events }))
}

/// One event.
pub async fn one(
    State(registry): State<Registry>,
    Path(id): Path<String>,
) -> Result<Json<DriftEvent>, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::invalid(format!("{id:?} is not a drift event id")))?;
    registry
        .meta()
        .drift_event(id)
        .await
        .map_err(crate::v2::error::OciError::from)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no drift event {id}")))
}
