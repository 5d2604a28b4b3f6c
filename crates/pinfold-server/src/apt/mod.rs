//! The Debian (APT) repository's HTTP surface (issue 7):
//!
//! | request | file |
//! |---|---|
//! | `PUT /artifactory/<repo>/<path>;deb.distribution=..;deb.component=..;deb.architecture=..` | `deploy.rs` |
//! | `PUT /apt/<repo>/<path>;deb...` (native, same semantics) | `deploy.rs` |
//! | `GET /apt/<prefix>/dists/<dist>/...` (Release, InRelease, Release.gpg, Packages*, by-hash) | `files.rs` |
//! | `GET /apt/<prefix>/<path>` (packages), `GET /artifactory/<repo>/<path>` | `files.rs` |
//! | `GET /apt/pinfold.asc`, `GET /apt/pinfold.gpg` (the signing key) | `files.rs` |
//! | `/api/v1/apt/...` (repositories, mirror sync, snapshots, publications, diff) | `api.rs`, `mirror.rs` |
//!
//! Paths are parsed once (`matrix.rs`); errors are Artifactory-shaped (`error.rs`); the rules
//! live in `service.rs`. Indices are rebuilt by the `apt-reindex` worker.

pub mod api;
pub mod deploy;
pub mod error;
pub mod files;
pub mod matrix;
pub mod mirror;
pub mod service;

use axum::extract::FromRef;
use axum::routing::{get, put};
use axum::Router;

pub use service::{AptService, AptSettings};

use crate::AppState;

impl FromRef<AppState> for AptService {
    fn from_ref(state: &AppState) -> AptService {
        state.apt.clone()
    }
}

/// The APT routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/artifactory/{*path}",
            put(deploy::put_artifactory).get(files::get_artifactory),
        )
        .route("/apt/pinfold.asc", get(files::public_key_armored))
        .route("/apt/pinfold.gpg", get(files::public_key_binary))
        .route("/apt/{*path}", get(files::get_apt).put(deploy::put_native))
        .merge(api::routes())
}
