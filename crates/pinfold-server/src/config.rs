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
            apt_deploy_keys: Vec::new(),
            apt_max_deb_bytes: 2 * 1024 * 1024 * 1024,
            apt_signing_key: None,
            apt_reindex_delay_ms: 200,
            apt_reindex_poll_seconds: 30,
            apt_index_gc_grace_seconds: 3600,
            rules: crate::registry::gc::GcRules::default(),
        }
    }
}
