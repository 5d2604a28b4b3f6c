//! The `[server]` section of `pinfold.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The server's limits and caches (where it listens and keeps data are top-level settings of
/// `pinfold.toml`, handed to [`crate::Server::bind`] beside this).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Bytes of manifests kept in memory for the read path. Default 8 MiB.
    pub manifest_cache_bytes: usize,
    /// Largest blob accepted, in bytes; `None` (the default) for no limit.
    pub max_blob_bytes: Option<u64>,
    /// Seconds in-flight requests get to finish after SIGTERM or Ctrl-C. Default 30.
    pub shutdown_grace_seconds: u64,
    /// An upload session that received nothing for this many seconds is removed by the upload
    /// janitor. Default 86400 (one day).
    pub upload_idle_expiry_seconds: u64,
    /// Seconds between two runs of the upload janitor. Default 600.
    pub upload_janitor_interval_seconds: u64,
    /// Upload sessions one user (or, for anonymous callers, one client address) may hold open
    /// at once; one more is answered 429 `TOOMANYREQUESTS`. Default 1000: a push opens one
    /// session per layer, and a CI account pushing dozens of images in parallel stays far
    /// below it, while one caller can no longer fill the disk's directory with sessions.
    pub max_upload_sessions_per_user: u32,
    /// This replica's name in worker leases and `GET /api/v1/workers`. Default
    /// `<hostname>-<process id>`, unique among replicas unless containers share a hostname and
    /// a pid: name them then.
    pub replica_name: Option<String>,
    /// API keys accepted for APT uploads (`X-JFrog-Art-Api`, Bearer, or Basic password).
    /// Default none: uploads need no key (zero-config on loopback); set keys on any other
    /// listen address.
    pub apt_deploy_keys: Vec<String>,
    /// Largest `.deb` accepted, in bytes. Default 2 GiB. Uploads stream to disk; this bounds
    /// the disk one upload may take before it is refused.
    pub apt_max_deb_bytes: u64,
    /// Armored OpenPGP secret key signing the APT indices (Ed25519, or RSA ≥ 3072 bits).
    /// Default `<data_dir>/apt/signing-key.asc`, generated (Ed25519) on first start.
    pub apt_signing_key: Option<PathBuf>,
    /// Milliseconds between a change and the start of reindexing (uploads in a burst are
    /// indexed once). Default 200.
    pub apt_reindex_delay_ms: u64,
    /// Seconds between two reindex checks without a change seen by this process (changes made
    /// by another replica). Default 30.
    pub apt_reindex_poll_seconds: u64,
    /// Seconds an index file pruned from the by-hash window (three generations) stays stored
    /// before its blob is deleted. Default 3600.
    pub apt_index_gc_grace_seconds: u64,
    /// Garbage collection, retention and immutable tags: `[gc]`, `[[retention]]` and
    /// `[[immutable]]` at the top level of `pinfold.toml` (the binary moves them here).
    #[serde(skip)]
    pub rules: crate::registry::gc::GcRules,
    /// Where blobs live: `[storage]` at the top level of `pinfold.toml` (the binary moves it
    /// here). The filesystem under the data directory by default.
    #[serde(skip)]
    pub storage: pinfold_store::StorageConfig,
    /// Seconds a client gets to send a request's complete headers; past them the connection
    /// is closed (slowloris). Default 30.
    pub header_read_timeout_seconds: u64,
    /// Seconds a request body may stall (no byte received while the handler waits for one)
    /// before the request is answered 408; a chunk interrupted this way leaves the upload as
    /// it was. Default 60.
    pub body_idle_timeout_seconds: u64,
    /// Largest request head (request line and headers), in bytes; more is answered 431.
    /// Default 64 KiB.
    pub max_header_bytes: usize,
    /// Requests per second each client address may send (token bucket refilled at this
    /// rate); past it, 429 with `Retry-After`. Default 0: no limit.
    pub rate_limit_per_second: u32,
    /// Requests a client may send at once above the rate (the bucket's size). Default 0: twice
    /// the rate, at least 1.
    pub rate_limit_burst: u32,
    /// PEM certificate chain to serve HTTPS with (with `tls_key`); reloaded on SIGHUP.
    /// Default none: plain HTTP.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl ServerConfig {
    /// The APT settings, with the signing key defaulting into `data_dir`.
    pub fn apt_settings(&self, data_dir: &Path) -> crate::apt::AptSettings {
        crate::apt::AptSettings {
            deploy_keys: self.apt_deploy_keys.clone(),
            max_deb_bytes: self.apt_max_deb_bytes,
            signing_key_path: self
                .apt_signing_key
                .clone()
                .unwrap_or_else(|| data_dir.join("apt").join("signing-key.asc")),
            reindex_delay: Duration::from_millis(self.apt_reindex_delay_ms),
            index_gc_grace: Duration::from_secs(self.apt_index_gc_grace_seconds),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            manifest_cache_bytes: 8 * 1024 * 1024,
            max_blob_bytes: None,
            shutdown_grace_seconds: 30,
            upload_idle_expiry_seconds: 86_400,
            upload_janitor_interval_seconds: 600,
            max_upload_sessions_per_user: 1000,
            replica_name: None,
            apt_deploy_keys: Vec::new(),
            apt_max_deb_bytes: 2 * 1024 * 1024 * 1024,
            apt_signing_key: None,
            apt_reindex_delay_ms: 200,
            apt_reindex_poll_seconds: 30,
            apt_index_gc_grace_seconds: 3600,
            rules: crate::registry::gc::GcRules::default(),
            storage: pinfold_store::StorageConfig::default(),
            header_read_timeout_seconds: 30,
            body_idle_timeout_seconds: 60,
            max_header_bytes: 64 * 1024,
            rate_limit_per_second: 0,
            rate_limit_burst: 0,
            tls_cert: None,
            tls_key: None,
        }
    }
}
