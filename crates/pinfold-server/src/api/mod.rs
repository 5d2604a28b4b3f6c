//! The management API at `/api/v1/`, JSON in and out, with its own error format
//! (`{"error":{"code","message"}}`): it is Pinfold's API, not the OCI one.

pub(crate) mod error;
mod history;
mod workers;

use axum::routing::get;
use axum::Router;

use crate::AppState;

/// The `/api/v1/` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/repositories/{*path}",
            get(history::repository_path),
        )
        .route("/api/v1/workers", get(workers::list))
}
