//! `GET /api/v1/audit?since=<RFC 3339>&actor=<name>&limit=<n>`: the audit log, oldest first
//! (admin only; the middleware checks).

use axum::extract::{Query, State};
use axum::Json;
use pinfold_meta::AuditEvent;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::ApiError;
use crate::AppState;

/// Rows answered when `limit` is not given, and at most.
const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 10_000;

/// Query of `GET /api/v1/audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    since: Option<String>,
    actor: Option<String>,
    limit: Option<u32>,
}

/// One audit row as answered.
#[derive(Debug, Serialize)]
pub struct AuditView {
    id: i64,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    actor: String,
    client: String,
    action: String,
    target: String,
    outcome: String,
}

impl From<AuditEvent> for AuditView {
    fn from(e: AuditEvent) -> AuditView {
        AuditView {
            id: e.id,
            at: e.at,
            actor: e.actor,
            client: e.client,
            action: e.action,
            target: e.target,
            outcome: e.outcome,
        }
    }
}

/// `GET /api/v1/audit`.
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Vec<AuditView>>, ApiError> {
    let since = query
        .since
        .as_deref()
        .map(|s| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339))
        .transpose()
        .map_err(|e| ApiError::invalid(format!("since is not an RFC 3339 time: {e}")))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::invalid(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    // Rows are group-committed: wait for those of the writes made before this request.
    state.auth.flush_audit().await;
    let events = state
        .auth
        .meta()
        .audit_events(since, query.actor.as_deref(), limit)
        .await
        .map_err(ApiError::from)?;
    Ok(Json(events.into_iter().map(AuditView::from).collect()))
}
