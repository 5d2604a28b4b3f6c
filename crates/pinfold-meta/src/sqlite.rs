//! The SQLite engine: opening the database file, its pools and its durability settings.
//!
//! One file, WAL mode, `synchronous=FULL`: a commit returns only after its WAL frames are
//! fsynced, so an acknowledged push survives `kill -9` and power loss (NORMAL would only survive
//! the former). SQLite allows one writer at a time anyway, so writes go through a pool of exactly
//! one connection — they queue in the pool instead of spinning on `SQLITE_BUSY` — while reads use
//! a separate pool of read-only connections that WAL lets run beside the writer.
//!
//! The queries live in one module per table group (`repositories`, `blobs`, `manifests`, `tags`,
//! `journal`, `uploads`) and are shared with the PostgreSQL engine (see `engine.rs`).

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, Transaction};

use crate::engine::{Engine, Pools};
use crate::{Meta, MetaError};

/// How long a statement waits for a lock held by another process (a backup, the CLI) before it
/// fails with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Read-only connections beside the writer; reads are single indexed lookups, and the server
/// caches the hottest ones, so a few connections keep up with many request tasks.
const READERS: u32 = 4;

impl Meta {
    /// Opens (creating and migrating if needed) the SQLite database at `path`.
    ///
    /// Creates the parent directory and the file if they are missing, switches the file to WAL
    /// and applies pending migrations before any reader connects.
    ///
    /// # Errors
    ///
    /// [`MetaError::CreateDir`] if the parent directory cannot be created,
    /// [`MetaError::Database`] if the file cannot be opened, [`MetaError::Migration`] if the
    /// schema cannot be brought up to date (for instance a database from a newer Pinfold).
    pub async fn open_sqlite(path: &Path) -> Result<Meta, MetaError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|source| MetaError::CreateDir {
                    path: dir.to_owned(),
                    source,
                })?;
        }

        let common = SqliteConnectOptions::new()
            .filename(path)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);

        let writer = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            // Keep the connection (and its prepared statements) for the life of the process.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(
                common
                    .clone()
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full),
            )
            .await?;

        if let Err(e) = sqlx::migrate!("./migrations/sqlite").run(&writer).await {
            writer.close().await;
            return Err(e.into());
        }

        // Opened after the writer has put the file in WAL mode (a persistent property of the
        // file), which read-only connections cannot do themselves.
        let readers = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(READERS)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(common.read_only(true))
            .await;
        let readers = match readers {
            Ok(pool) => pool,
            Err(e) => {
                writer.close().await;
                return Err(e.into());
            }
        };

        Ok(Meta {
            engine: Engine::Sqlite(Pools { writer, readers }),
        })
    }
}

impl Pools<Sqlite> {
    /// Closes the pools, checkpointing the WAL first.
    pub(crate) async fn close(&self) {
        // Readers first: a checkpoint can only copy frames no reader may still need.
        self.readers.close().await;
        if !self.writer.is_closed() {
            // Folds the WAL into the main file so that a copy of the file alone is complete.
            // Closing the last connection would checkpoint too; this makes it explicit and logs
            // a failure instead of dropping it.
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.writer)
                .await
            {
                tracing::warn!(error = %e, "metadata WAL checkpoint failed at close");
            }
        }
        self.writer.close().await;
    }

    /// Starts a write transaction on the writer connection.
    ///
    /// `BEGIN IMMEDIATE` takes the write lock up front, so a transaction that reads before it
    /// writes never fails half-way when another process (a backup, the CLI) holds the lock: it
    /// waits for `busy_timeout` at the start instead.
    pub(crate) async fn write(&self) -> Result<Transaction<'static, Sqlite>, MetaError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

#[cfg(test)]
mod tests {
    use sqlx::SqlitePool;

    use super::*;

    fn pools(meta: &Meta) -> &Pools<Sqlite> {
        match &meta.engine {
            Engine::Sqlite(db) => db,
            Engine::Postgres(_) => panic!("not SQLite"),
        }
    }

    async fn pragma(pool: &SqlitePool, name: &str) -> String {
        let row: (String,) =
            sqlx::query_as(&format!("SELECT CAST({name} AS TEXT) FROM pragma_{name}"))
                .fetch_one(pool)
                .await
                .unwrap();
        row.0
    }

    #[tokio::test]
    async fn writer_is_durable_wal_with_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open_sqlite(&dir.path().join("a/b/meta.db"))
            .await
            .unwrap();
        assert_eq!(pragma(&pools(&meta).writer, "journal_mode").await, "wal");
        // 2 = FULL: the WAL is fsynced at every commit.
        assert_eq!(pragma(&pools(&meta).writer, "synchronous").await, "2");
        assert_eq!(pragma(&pools(&meta).writer, "foreign_keys").await, "1");
        assert_eq!(pragma(&pools(&meta).readers, "journal_mode").await, "wal");
        assert_eq!(pragma(&pools(&meta).readers, "foreign_keys").await, "1");
        meta.close().await;
    }

    #[tokio::test]
    async fn readers_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open_sqlite(&dir.path().join("meta.db"))
            .await
            .unwrap();
        let err = sqlx::query("INSERT INTO repositories (name, created_at) VALUES ('a', 0)")
            .execute(&pools(&meta).readers)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("readonly"), "{err}");
        meta.close().await;
    }

    #[tokio::test]
    async fn close_checkpoints_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let meta = Meta::open_sqlite(&path).await.unwrap();
        meta.close().await;
        meta.close().await;
        let wal = dir.path().join("meta.db-wal");
        assert!(
            !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
            "WAL left with frames after close"
        );
        assert!(meta.repository_exists(&"a".parse().unwrap()).await.is_err());
    }
}
