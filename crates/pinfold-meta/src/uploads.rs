//! Upload sessions: which repository an upload id belongs to and when it started. The bytes are
//! the blob store's business.

use pinfold_oci::RepoName;
use time::OffsetDateTime;

use crate::engine::{on_engine, Dialect};
use crate::repositories::RepoQueries;
use crate::{columns, Meta, MetaError, UploadRecord};

fn record(row: (String, String, i64)) -> Result<UploadRecord, MetaError> {
    let (id, repo, created_at) = row;
    Ok(UploadRecord {
        id,
        repo: columns::repo_name(repo)?,
        created_at: columns::time_from_micros(created_at)?,
    })
}

impl Meta {
    /// Records a new upload session for `repo` opened by `owner` (creating the repository if
    /// needed), unless `owner` already has `max_per_owner` sessions open. The count and the
    /// insert are one transaction, serialised per owner on both engines, so the cap holds
    /// under concurrent requests.
    ///
    /// # Errors
    ///
    /// [`MetaError::TooManyUploads`] at the cap, [`MetaError::UploadExists`] if `id` is
    /// already recorded, [`MetaError::Database`].
    pub async fn create_upload(
        &self,
        id: &str,
        repo: &RepoName,
        owner: &str,
        max_per_owner: u32,
    ) -> Result<(), MetaError> {
        on_engine!(self, |db| {
            let mut tx = db.write().await?;
            tx.lock_count(owner).await?;
            let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM uploads WHERE owner = $1")
                .bind(owner)
                .fetch_one(&mut *tx)
                .await?;
            if open >= i64::from(max_per_owner) {
                return Err(MetaError::TooManyUploads {
                    owner: owner.to_owned(),
                    limit: max_per_owner,
                });
            }
            let repo_id = tx.ensure_repo(repo).await?;
            let inserted = sqlx::query(
                "INSERT INTO uploads (id, repo_id, created_at, owner) VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(repo_id)
            .bind(columns::now_micros())
            .bind(owner)
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {}
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    return Err(MetaError::UploadExists(id.to_owned()))
                }
                Err(e) => return Err(e.into()),
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// An upload session.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn upload(&self, id: &str) -> Result<Option<UploadRecord>, MetaError> {
        let row: Option<(String, String, i64)> = on_engine!(self, |db| sqlx::query_as(
            "SELECT u.id, r.name, u.created_at \
             FROM uploads u JOIN repositories r ON r.id = u.repo_id \
             WHERE u.id = $1",
        )
        .bind(id)
        .fetch_optional(&db.readers)
        .await?);
        row.map(record).transpose()
    }

    /// Forgets an upload session. `false` if unknown.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`].
    pub async fn delete_upload(&self, id: &str) -> Result<bool, MetaError> {
        let rows = on_engine!(self, |db| sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(&db.writer)
            .await?
            .rows_affected());
        Ok(rows > 0)
    }

    /// Upload sessions started before `before` (for the janitor), oldest first.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn uploads_started_before(
        &self,
        before: OffsetDateTime,
    ) -> Result<Vec<UploadRecord>, MetaError> {
        let rows: Vec<(String, String, i64)> = on_engine!(self, |db| sqlx::query_as(
            "SELECT u.id, r.name, u.created_at \
             FROM uploads u JOIN repositories r ON r.id = u.repo_id \
             WHERE u.created_at < $1 \
             ORDER BY u.created_at, u.id",
        )
        .bind(columns::micros(before))
        .fetch_all(&db.readers)
        .await?);
        rows.into_iter().map(record).collect()
    }
}
