//! Coordination between processes sharing one database (issue 17): leases that let exactly one
//! replica run each background worker, and change notices that let every replica drop what it
//! cached about a tag another replica moved.
//!
//! On SQLite there is one process: leases still go through their table (one code path, and
//! `GET /api/v1/workers` shows the holder), and change notices have no one to reach. On
//! PostgreSQL, notices are `NOTIFY pinfold_changes` and each replica `LISTEN`s on a connection of
//! its own ([`ChangeListener`]).

use std::time::Duration;

use time::OffsetDateTime;

use crate::engine::{on_engine, Engine};
use crate::{columns, Meta, MetaError};

/// The PostgreSQL channel of change notices.
const CHANGES_CHANNEL: &str = "pinfold_changes";

/// Who holds a worker's lease, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The worker.
    pub name: String,
    /// The replica holding it.
    pub holder: String,
    /// When it lapses unless renewed.
    pub expires_at: OffsetDateTime,
}

impl Meta {
    /// Whether other processes may share this database (PostgreSQL): then caches need change
    /// notices and workers need leases to stay one per deployment.
    pub fn is_shared(&self) -> bool {
        matches!(self.engine, Engine::Postgres(_))
    }

    /// Takes or renews the lease `name` for `holder` for `ttl`: `true` when `holder` holds it
    /// now (it was free, expired, or already `holder`'s), `false` when another live holder has
    /// it. One statement, so two replicas asking at once cannot both win.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`].
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, MetaError> {
        let now = columns::now_micros();
        let ttl = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
        let won: Option<String> = on_engine!(self, |db| sqlx::query_scalar(
            "INSERT INTO worker_leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at \
             WHERE worker_leases.holder = excluded.holder OR worker_leases.expires_at < $4 \
             RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now.saturating_add(ttl))
        .bind(now)
        .fetch_optional(&db.writer)
        .await?);
        Ok(won.is_some())
    }

    /// Gives the lease up (a replica stopping cleanly), so another takes it at once. Nothing
    /// happens when `holder` does not hold it.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`].
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), MetaError> {
        on_engine!(self, |db| sqlx::query(
            "DELETE FROM worker_leases WHERE name = $1 AND holder = $2"
        )
        .bind(name)
        .bind(holder)
        .execute(&db.writer)
        .await
        .map(drop)?);
        Ok(())
    }

    /// Every lease, by name (expired ones included: their holder is who ran it last).
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn leases(&self) -> Result<Vec<Lease>, MetaError> {
        let rows: Vec<(String, String, i64)> = on_engine!(self, |db| sqlx::query_as(
            "SELECT name, holder, expires_at FROM worker_leases ORDER BY name"
        )
        .fetch_all(&db.readers)
        .await?);
        rows.into_iter()
            .map(|(name, holder, expires_at)| {
                Ok(Lease {
                    name,
                    holder,
                    expires_at: columns::time_from_micros(expires_at)?,
                })
            })
            .collect()
    }

    /// Tells every other replica that something it may have cached changed (`what`, e.g. the
    /// repository and tag). Nothing on SQLite, where there is no other process.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`].
    pub async fn notify_change(&self, what: &str) -> Result<(), MetaError> {
        if let Engine::Postgres(db) = &self.engine {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANGES_CHANNEL)
                .bind(what)
                .execute(&db.writer)
                .await?;
        }
        Ok(())
    }

    /// A listener for the notices of [`Meta::notify_change`] on its own connection, or `None`
    /// on SQLite.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`] when the connection or the `LISTEN` fails.
    pub async fn listen_changes(&self) -> Result<Option<ChangeListener>, MetaError> {
        let Engine::Postgres(db) = &self.engine else {
            return Ok(None);
        };
        let mut listener = sqlx::postgres::PgListener::connect_with(&db.writer).await?;
        listener.listen(CHANGES_CHANNEL).await?;
        Ok(Some(ChangeListener { listener }))
    }
}

/// What a [`ChangeListener`] heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Another replica changed what the payload names.
    Changed(String),
    /// The connection was lost and made again: notices sent meanwhile are lost, so whatever was
    /// cached must be forgotten.
    Lost,
}

/// Receives change notices (PostgreSQL `LISTEN`).
#[derive(Debug)]
pub struct ChangeListener {
    listener: sqlx::postgres::PgListener,
}

impl ChangeListener {
    /// The next notice. Reconnects by itself after a lost connection (answering
    /// [`Change::Lost`] once).
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`] when the connection cannot be made again.
    pub async fn recv(&mut self) -> Result<Change, MetaError> {
        Ok(match self.listener.try_recv().await? {
            Some(notice) => Change::Changed(notice.payload().to_owned()),
            None => Change::Lost,
        })
    }
}
