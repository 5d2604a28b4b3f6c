//! Pinfold's HTTP surface: the OCI Distribution API at `/v2/` ([`v2`]), the management API at
//! `/api/v1/` ([`api`]), the Debian repository at `/apt/` and `/artifactory/` ([`apt`]) and `/healthz`, over the registry rules in [`registry`].
//!
//! Requests are found by folder: `v2/manifests.rs` answers `/v2/<name>/manifests/<ref>`,
//! `v2/uploads.rs` `/v2/<name>/blobs/uploads/...`, and so on. Handlers translate; the
//! [`registry::Registry`] decides; `pinfold-store` and `pinfold-meta` keep bytes and records.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
mod app;
pub mod apt;
pub mod auth;
mod config;
pub mod limits;
mod listen;
pub mod registry;
pub mod tls;
mod ui;
pub mod v2;
pub mod workers;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use app::{open_registry, router, AppState, Server};
pub use auth::AuthSettings;
pub use config::ServerConfig;
pub use tls::{TlsCertificate, TlsError};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The data directory cannot be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The blob store cannot be opened.
    #[error(transparent)]
    Store(#[from] pinfold_store::StoreError),
    /// The metadata database cannot be opened.
    #[error(transparent)]
    Meta(#[from] pinfold_meta::MetaError),
    /// The mirror's configuration is invalid.
    #[error(transparent)]
    Mirror(#[from] pinfold_mirror::MirrorError),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The APT signing key cannot be loaded or generated.
    #[error("APT signing key: {0}")]
    AptKey(#[source] pinfold_apt::SignError),
    /// Users or the registry-token key could not be loaded.
    #[error("authentication: {0}")]
    Auth(#[from] auth::AuthSetupError),
    /// No user is configured and the listen address is not loopback (issue 6: safe defaults).
    #[error("refusing to serve {addr} without users: anyone reaching it could push and delete. Configure [[user]] / [auth] htpasswd, listen on 127.0.0.1, or pass --insecure-open")]
    InsecureOpen {
        /// The address.
        addr: SocketAddr,
    },
    /// `[server] tls_cert` / `tls_key` cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// A key the replicas share through the object store cannot be set up.
    #[error("key {name} shared through the object store: {reason}")]
    SharedKey {
        /// Which key (`apt/signing-key.asc`, `auth/jwt-es256.pk8`).
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// A combination of settings this version cannot serve yet.
    #[error("not supported yet: {0}")]
    Unsupported(&'static str),
    /// The accept loop failed.
    #[error("serving failed: {source}")]
    Serve {
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}
