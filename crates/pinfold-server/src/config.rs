//! The `[server]` section of `pinfold.toml`.

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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            manifest_cache_bytes: 8 * 1024 * 1024,
            max_blob_bytes: None,
            shutdown_grace_seconds: 30,
            upload_idle_expiry_seconds: 86_400,
            upload_janitor_interval_seconds: 600,
        }
    }
}
