//! API tokens (stored as the SHA-256 of their secret) and the append-only audit log.
//!
//! The rules (who may do what, how a secret is made and checked) live in `pinfold-auth`; this
//! module only keeps the records.

use time::OffsetDateTime;

use crate::engine::on_engine;
use crate::{columns, Meta, MetaError};

/// A stored API token. The secret itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Public handle (`pinfold token list`, `pinfold token revoke ID`).
    pub id: String,
    /// The user the token acts as.
    pub user: String,
    /// Lowercase hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// The scope text given at creation (parsed by `pinfold-auth`).
    pub scope: String,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it stops working (`None`: never).
    pub expires_at: Option<OffsetDateTime>,
    /// When it was revoked (`None`: not revoked).
    pub revoked_at: Option<OffsetDateTime>,
}

/// One audit log row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Increasing id (page with it).
    pub id: i64,
    /// When it happened.
    pub at: OffsetDateTime,
    /// Who: a user name, `anonymous`, or the name a failed login claimed.
    pub actor: String,
    /// The client's address.
    pub client: String,
    /// What: `push`, `blob-upload`, `delete`, `tag-move`, `promote`, `token-create`,
    /// `token-revoke`, `login`, ...
    pub action: String,
    /// On what: `repo:tag`, `repo@digest`, a token id, ...
    pub target: String,
    /// How it ended: `ok`, `denied`, `failed`, ...
    pub outcome: String,
}

/// An audit row to append (id and time are assigned by [`Meta::append_audit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEvent {
    /// See [`AuditEvent::actor`].
    pub actor: String,
    /// See [`AuditEvent::client`].
    pub client: String,
    /// See [`AuditEvent::action`].
    pub action: String,
    /// See [`AuditEvent::target`].
    pub target: String,
    /// See [`AuditEvent::outcome`].
    pub outcome: String,
}

const TOKEN_COLUMNS: &str =
    "id, user_name, secret_sha256, scope, created_at, expires_at, revoked_at";
type TokenRow = (
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
);

fn token(row: TokenRow) -> Result<ApiToken, MetaError> {
    let (id, user, secret_sha256, scope, created_at, expires_at, revoked_at) = row;
    Ok(ApiToken {
        id,
        user,
        secret_sha256,
        scope,
        created_at: columns::time_from_micros(created_at)?,
        expires_at: expires_at.map(columns::time_from_micros).transpose()?,
        revoked_at: revoked_at.map(columns::time_from_micros).transpose()?,
    })
}

const AUDIT_COLUMNS: &str = "id, at, actor, client, action, target, outcome";
type AuditRow = (i64, i64, String, String, String, String, String);

fn audit(row: AuditRow) -> Result<AuditEvent, MetaError> {
    let (id, at, actor, client, action, target, outcome) = row;
    Ok(AuditEvent {
        id,
        at: columns::time_from_micros(at)?,
        actor,
        client,
        action,
        target,
        outcome,
    })
}

impl Meta {
    /// Stores a new token record.
    ///
    /// # Errors
    /// [`MetaError::Database`], also when the id or the secret hash already exists.
    pub async fn create_token(&self, token: &ApiToken) -> Result<(), MetaError> {
        let sql =
            format!("INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)");
        on_engine!(self, |db| {
            sqlx::query(&sql)
                .bind(&token.id)
                .bind(&token.user)
                .bind(&token.secret_sha256)
                .bind(&token.scope)
                .bind(columns::micros(token.created_at))
                .bind(token.expires_at.map(columns::micros))
                .bind(token.revoked_at.map(columns::micros))
                .execute(&db.writer)
                .await?;
        });
        Ok(())
    }

    /// The token whose secret hashes to `secret_sha256`, revoked or expired ones included (the
    /// caller decides), or `None`.
    ///
    /// # Errors
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn token_by_secret_hash(
        &self,
        secret_sha256: &str,
    ) -> Result<Option<ApiToken>, MetaError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE secret_sha256 = $1");
        let row: Option<TokenRow> = on_engine!(self, |db| sqlx::query_as(&sql)
            .bind(secret_sha256)
            .fetch_optional(&db.readers)
            .await?);
        row.map(token).transpose()
    }

    /// Every token (of `user`, when given), oldest first.
    ///
    /// # Errors
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>, MetaError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE ($1 IS NULL OR user_name = $1) \
             ORDER BY created_at, id"
        );
        let rows: Vec<TokenRow> = on_engine!(self, |db| sqlx::query_as(&sql)
            .bind(user)
            .fetch_all(&db.readers)
            .await?);
        rows.into_iter().map(token).collect()
    }

    /// Marks token `id` revoked at `at`. Returns the token as it was before (`None`: no such
    /// token). Revoking twice keeps the first time.
    ///
    /// # Errors
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn revoke_token(
        &self,
        id: &str,
        at: OffsetDateTime,
    ) -> Result<Option<ApiToken>, MetaError> {
        let select = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1");
        let row: Option<TokenRow> = on_engine!(self, |db| {
            let mut tx = db.write().await?;
            let row: Option<TokenRow> = sqlx::query_as(&select)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            )
            .bind(id)
            .bind(columns::micros(at))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            row
        });
        row.map(token).transpose()
    }

    /// Appends one audit row, stamped now.
    ///
    /// # Errors
    /// [`MetaError::Database`].
    pub async fn append_audit(&self, event: &NewAuditEvent) -> Result<(), MetaError> {
        self.append_audit_batch(std::slice::from_ref(event)).await
    }

    /// Appends audit rows, stamped now, in one transaction: one commit (one fsync on SQLite)
    /// for a whole batch, so auditing every write does not double the cost of small writes.
    ///
    /// # Errors
    /// [`MetaError::Database`]; nothing is written then.
    pub async fn append_audit_batch(&self, events: &[NewAuditEvent]) -> Result<(), MetaError> {
        if events.is_empty() {
            return Ok(());
        }
        let now = columns::micros(OffsetDateTime::now_utc());
        on_engine!(self, |db| {
            let mut tx = db.write().await?;
            for event in events {
                sqlx::query(
                    "INSERT INTO audit_events (at, actor, client, action, target, outcome) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(now)
                .bind(&event.actor)
                .bind(&event.client)
                .bind(&event.action)
                .bind(&event.target)
                .bind(&event.outcome)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Audit rows at or after `since` (of `actor`, when given), oldest first, at most `limit`.
    ///
    /// # Errors
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn audit_events(
        &self,
        since: Option<OffsetDateTime>,
        actor: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, MetaError> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE at >= $1 \
             AND ($2 IS NULL OR actor = $2) ORDER BY id LIMIT $3"
        );
        let rows: Vec<AuditRow> = on_engine!(self, |db| sqlx::query_as(&sql)
            .bind(since.map(columns::micros).unwrap_or(i64::MIN))
            .bind(actor)
            .bind(i64::from(limit))
            .fetch_all(&db.readers)
            .await?);
        rows.into_iter().map(audit).collect()
    }
}
