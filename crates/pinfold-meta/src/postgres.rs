//! The PostgreSQL engine: one pool for reads and writes, migrations at open.
//!
//! For deployments that outgrow one machine: several Pinfold replicas share one database.
//! Statements are the ones SQLite runs (see `engine.rs`); the schema (`migrations/postgres/`)
//! keeps SQLite's byte order with `COLLATE "C"` on every identifier column, stores sizes, times
//! and ids as `BIGINT`, and numbers the journal with an identity column. Durability is the
//! server's: a commit returns once PostgreSQL has flushed its WAL (`synchronous_commit`, on by
//! default).

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Postgres, Transaction};

use crate::engine::{Engine, Pools};
use crate::{Meta, MetaError};

/// Connections per Pinfold process. PostgreSQL runs writes concurrently (row locks, one advisory
/// lock per tag move), so unlike SQLite there is no separate writer.
const CONNECTIONS: u32 = 8;

/// How long a request waits for a free connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

impl Meta {
    /// Connects to the PostgreSQL database at `url` (`postgres://user:password@host/db`) and
    /// applies pending migrations.
    ///
    /// The database must exist; the role needs the right to create tables in it (the first
    /// time). Migrations take PostgreSQL's advisory migration lock, so replicas starting
    /// together apply them once.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`] if the URL is invalid or the server cannot be reached,
    /// [`MetaError::Migration`] if the schema cannot be brought up to date (for instance a
    /// database from a newer Pinfold).
    pub async fn open_postgres(url: &str) -> Result<Meta, MetaError> {
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await?;
        if let Err(e) = sqlx::migrate!("./migrations/postgres").run(&pool).await {
            pool.close().await;
            return Err(e.into());
        }
        Ok(Meta {
            engine: Engine::Postgres(Pools {
                writer: pool.clone(),
                readers: pool,
            }),
        })
    }
}

impl Pools<Postgres> {
    /// Closes the pool (`writer` and `readers` are the same one).
    pub(crate) async fn close(&self) {
        self.writer.close().await;
    }

    /// Starts a write transaction (read committed). Moves of one tag are serialised by
    /// [`crate::engine::Dialect::lock_tag`]; everything else is an idempotent insert or a
    /// delete, which row locks and unique constraints keep consistent.
    pub(crate) async fn write(&self) -> Result<Transaction<'static, Postgres>, MetaError> {
        Ok(self.writer.begin().await?)
    }
}
