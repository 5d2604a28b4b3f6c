//! The management API at `/api/v1/`, JSON in and out, with its own error format
//! (`{"error":{"code","message"}}`): it is Pinfold's API, not the OCI one.

mod audit;
mod drift;
pub(crate) mod error;
mod gc;
mod history;
mod tokens;
mod upstreams;
mod workers;

use axum::routing::{delete, get};
use axum::Router;

use crate::AppState;

/// The `/api/v1/` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/repositories/{*path}",
            get(history::get).post(history::promote),
        )
        .route("/api/v1/drift", get(drift::list))
        .route("/api/v1/drift/{id}", get(drift::one))
        .route("/api/v1/upstreams", get(upstreams::list))
        .route("/api/v1/workers", get(workers::list))
        .route("/api/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/api/v1/tokens/{id}", delete(tokens::revoke))
        .route("/api/v1/audit", get(audit::list))
        .route("/api/v1/gc", get(gc::status).post(gc::run))
}
