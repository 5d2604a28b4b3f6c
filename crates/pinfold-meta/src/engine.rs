//! The handle, the two engines behind it, and how one query text runs on either.
//!
//! [`Meta`] holds an [`Engine`]: the pools of SQLite or of PostgreSQL. Every method is written
//! once against sqlx's generic query API; [`on_engine!`] expands its body once per engine (each
//! arm monomorphised for that driver), so the SQL of a table group lives in one place and both
//! engines run the same text. Helpers that run inside a write transaction (`repo_id`,
//! `move_tag_in`, `journal::append`, ...) are trait methods implemented for both connection
//! types by [`impl_for_connections!`], again from one body.
//!
//! What genuinely differs is kept here and in the engine modules, small:
//!
//! * opening, pools and durability settings (`sqlite.rs`, `postgres.rs`) and the migrations
//!   (`migrations/sqlite/`, `migrations/postgres/`, numbered alike);
//! * starting a write transaction ([`Pools::write`]): `BEGIN IMMEDIATE` on SQLite, plain `BEGIN`
//!   (read committed) on PostgreSQL;
//! * [`Dialect::lock_tag`]: SQLite's single writer already serialises every write transaction;
//!   PostgreSQL takes a transaction-scoped advisory lock per tag so that two replicas moving the
//!   same tag journal the right `previous_digest`.
//!
//! sqlx's `Any` driver was not used: it would hide SQLite's connect options (WAL, synchronous,
//! read-only readers) behind URL strings and adds a run-time type mapping layer, for no less code
//! than this.

use sqlx::{Database, PgConnection, Pool, Postgres, Sqlite, SqliteConnection};

use crate::MetaError;

/// The pools of one engine.
#[derive(Debug)]
pub(crate) struct Pools<DB: Database> {
    /// Where writes go (SQLite: exactly one connection; PostgreSQL: the same pool as `readers`).
    pub(crate) writer: Pool<DB>,
    /// Where reads go (SQLite: read-only connections beside the writer).
    pub(crate) readers: Pool<DB>,
}

// Derived `Clone` would require `DB: Clone`; the pools are handles and clone without it.
impl<DB: Database> Clone for Pools<DB> {
    fn clone(&self) -> Self {
        Pools {
            writer: self.writer.clone(),
            readers: self.readers.clone(),
        }
    }
}

/// The engine a [`Meta`] talks to.
#[derive(Debug, Clone)]
pub(crate) enum Engine {
    /// An embedded SQLite file.
    Sqlite(Pools<Sqlite>),
    /// A PostgreSQL database.
    Postgres(Pools<Postgres>),
}

/// Handle to the metadata store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Meta {
    pub(crate) engine: Engine,
}

/// Runs `$body` with `$db` bound to the [`Pools`] of whichever engine `$meta` uses.
///
/// The body is expanded once per engine, so it must compile against both drivers: use sqlx's
/// generic functions (`sqlx::query*`), `$N` placeholders and the SQL both engines accept. It is
/// not a closure: `?`, `.await` and `return` act on the enclosing function.
macro_rules! on_engine {
    ($meta:expr, |$db:ident| $body:expr) => {
        match &$meta.engine {
            $crate::engine::Engine::Sqlite($db) => $body,
            $crate::engine::Engine::Postgres($db) => $body,
        }
    };
}
pub(crate) use on_engine;

/// `impl $trait for` both connection types, from one body: `SqliteConnection` and
/// `PgConnection`. Inside, `self` is a `&mut` connection (a write transaction derefs to one).
macro_rules! impl_for_connections {
    ($trait:ident { $($items:tt)* }) => {
        impl $trait for sqlx::SqliteConnection { $($items)* }
        impl $trait for sqlx::PgConnection { $($items)* }
    };
}
pub(crate) use impl_for_connections;

/// The few statements that differ between the engines, run inside a write transaction.
pub(crate) trait Dialect {
    /// Serialises moves of one tag until the transaction ends, so that the `previous_digest`
    /// read before the move is still current when the move commits.
    async fn lock_tag(&mut self, repo: &str, tag: &str) -> Result<(), MetaError>;

    /// Serialises garbage collection's decision about `digest` in repository `repo_id` with a
    /// manifest push that references it, until the transaction ends (`gc.rs`).
    async fn lock_reference(&mut self, repo_id: i64, digest: &str) -> Result<(), MetaError>;

    /// [`Dialect::lock_reference`] without waiting: `false` when a push holds it. Garbage
    /// collection never waits for a reference lock, so it cannot deadlock with pushes that
    /// lock several references.
    async fn try_lock_reference(&mut self, repo_id: i64, digest: &str) -> Result<bool, MetaError>;

    /// Serialises transactions that count and then add rows of one `key` (a caller's upload
    /// sessions), until the transaction ends, so that a cap checked by counting holds.
    async fn lock_count(&mut self, key: &str) -> Result<(), MetaError>;
}

impl Dialect for SqliteConnection {
    async fn lock_count(&mut self, _key: &str) -> Result<(), MetaError> {
        // The single writer serialises every write transaction.
        Ok(())
    }

    async fn lock_tag(&mut self, _repo: &str, _tag: &str) -> Result<(), MetaError> {
        // `BEGIN IMMEDIATE` on the single writer connection already holds the database's only
        // write lock.
        Ok(())
    }

    async fn lock_reference(&mut self, _repo_id: i64, _digest: &str) -> Result<(), MetaError> {
        // As above: the single writer serialises GC and pushes.
        Ok(())
    }

    async fn try_lock_reference(
        &mut self,
        _repo_id: i64,
        _digest: &str,
    ) -> Result<bool, MetaError> {
        Ok(true)
    }
}

impl Dialect for PgConnection {
    async fn lock_count(&mut self, key: &str) -> Result<(), MetaError> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('count:' || $1, 0))")
            .bind(key)
            .execute(self)
            .await?;
        Ok(())
    }

    async fn lock_tag(&mut self, repo: &str, tag: &str) -> Result<(), MetaError> {
        // A 64-bit hash of "repo:tag"; a collision only makes two unrelated moves wait for
        // each other. Released at COMMIT or ROLLBACK.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2, 0))")
            .bind(repo)
            .bind(tag)
            .execute(self)
            .await?;
        Ok(())
    }

    async fn lock_reference(&mut self, repo_id: i64, digest: &str) -> Result<(), MetaError> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('gc:' || $1 || ':' || $2, 0))")
            .bind(repo_id.to_string())
            .bind(digest)
            .execute(self)
            .await?;
        Ok(())
    }

    async fn try_lock_reference(&mut self, repo_id: i64, digest: &str) -> Result<bool, MetaError> {
        Ok(sqlx::query_scalar(
            "SELECT pg_try_advisory_xact_lock(hashtextextended('gc:' || $1 || ':' || $2, 0))",
        )
        .bind(repo_id.to_string())
        .bind(digest)
        .fetch_one(self)
        .await?)
    }
}

impl Meta {
    /// Closes the pools (SQLite: checkpointing the WAL).
    ///
    /// Waits for connections in use to come back. Afterwards every method fails with
    /// [`MetaError::Database`]. Calling it again does nothing.
    pub async fn close(&self) {
        match &self.engine {
            Engine::Sqlite(db) => db.close().await,
            Engine::Postgres(db) => db.close().await,
        }
    }
}
