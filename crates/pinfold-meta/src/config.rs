//! The `[meta]` section of `pinfold.toml`: which engine holds the metadata.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Meta, MetaError};

/// Where the metadata lives.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetaConfig {
    /// A PostgreSQL URL (`postgres://user:password@host:port/db`) for deployments whose replicas
    /// share one database. Default: none, which means SQLite in `<data_dir>/meta.db`.
    pub postgres_url: Option<String>,
}

// By hand: the URL may hold a password, and configs end up in logs.
impl fmt::Debug for MetaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetaConfig")
            .field("postgres_url", &self.postgres_url.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl MetaConfig {
    /// Opens the configured engine: PostgreSQL when a URL is set, otherwise SQLite in
    /// `data_dir/meta.db`.
    ///
    /// # Errors
    /// As [`Meta::open_postgres`] and [`Meta::open_sqlite`].
    pub async fn open(&self, data_dir: &Path) -> Result<Meta, MetaError> {
        match &self.postgres_url {
            Some(url) => Meta::open_postgres(url).await,
            None => Meta::open_sqlite(&data_dir.join("meta.db")).await,
        }
    }

    /// The engine's name for start-up messages (never the URL).
    pub fn engine_name(&self) -> &'static str {
        if self.postgres_url.is_some() {
            "postgresql"
        } else {
            "sqlite"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_url() {
        let c = MetaConfig {
            postgres_url: Some("postgres://u:secret@h/db".into()),
        };
        assert!(!format!("{c:?}").contains("secret"));
        assert_eq!(c.engine_name(), "postgresql");
        assert_eq!(MetaConfig::default().engine_name(), "sqlite");
    }
}
