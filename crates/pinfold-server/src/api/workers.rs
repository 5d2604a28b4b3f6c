//! `GET /api/v1/workers`: what each background worker is doing and how it went.

use axum::extract::State;
use axum::Json;

use crate::workers::{WorkerStatus, Workers};

/// Every worker's status, by name, with the replica holding its lease.
pub async fn list(State(workers): State<Workers>) -> Json<Vec<WorkerStatus>> {
    Json(workers.statuses().await)
}
