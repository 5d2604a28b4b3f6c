//! The management API at `/api/v1/`, JSON in and out, with its own error format
//! (`{"error":{"code","message"}}`): it is Pinfold's API, not the OCI one.

mod drift;
mod gc;
pub(crate) mod error;
mod history;
mod upstreams;
mod workers;

use axum::routing::get;
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
        .route("/api/v1/gc", get(gc::status).post(gc::run))
}
