//! Tags. [`move_tag_in`] is the only code that changes the `tags` table, and it writes the
//! journal row in the same transaction as the change.

use pinfold_oci::{Digest, RepoName, Tag};
use sqlx::SqliteConnection;

use crate::manifests::manifest_record;
use crate::repositories::{limit, repo_id};
use crate::{columns, journal, ManifestRecord, Meta, MetaError, TagMove};

/// Points `tag` of `repo` (whose id is `repo_id`) at `new`, or deletes it with `None`, and
/// journals the move. Returns whether the tag changed: nothing is written when it already points
/// at `new` (or is already absent).
///
/// Call inside a write transaction, which the caller commits.
///
/// # Errors
///
/// [`MetaError::ManifestUnknown`] if `repo` has no manifest `new` (the foreign key refuses it),
/// [`MetaError::Database`].
pub(crate) async fn move_tag_in(
    conn: &mut SqliteConnection,
    repo: &RepoName,
    repo_id: i64,
    tag: &Tag,
    new: Option<&Digest>,
    mv: &TagMove,
    now: i64,
) -> Result<bool, MetaError> {
    let previous: Option<String> =
        sqlx::query_scalar("SELECT digest FROM tags WHERE repo_id = $1 AND name = $2")
            .bind(repo_id)
            .bind(tag.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    if previous.as_deref() == new.map(Digest::as_str) {
        return Ok(false);
    }
    match new {
        Some(digest) => {
            let upsert = sqlx::query(
                "INSERT INTO tags (repo_id, name, digest, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (repo_id, name) \
                 DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
            )
            .bind(repo_id)
            .bind(tag.as_str())
            .bind(digest.as_str())
            .bind(now)
            .execute(&mut *conn)
            .await;
            match upsert {
                Ok(_) => {}
                Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                    return Err(MetaError::ManifestUnknown {
                        repo: repo.clone(),
                        digest: digest.clone(),
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
        None => {
            sqlx::query("DELETE FROM tags WHERE repo_id = $1 AND name = $2")
                .bind(repo_id)
                .bind(tag.as_str())
                .execute(&mut *conn)
                .await?;
        }
    }
    journal::append(conn, repo, tag, previous.as_deref(), new, mv, now).await?;
    Ok(true)
}

impl Meta {
    /// The manifest a tag points to.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn resolve_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        // One statement over three primary-key / unique-index lookups.
        let row: Option<(String, String, i64)> = sqlx::query_as(
            "SELECT m.digest, m.media_type, m.size \
             FROM repositories r \
             JOIN tags t ON t.repo_id = r.id \
             JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest \
             WHERE r.name = $1 AND t.name = $2",
        )
        .bind(repo.as_str())
        .bind(tag.as_str())
        .fetch_optional(&self.readers)
        .await?;
        row.map(manifest_record).transpose()
    }

    /// Points `tag` of `repo` at a manifest the repository already holds (promote, restore),
    /// journaling the move with `mv` in the same transaction.
    ///
    /// Returns whether the tag changed; `false` (and no journal row) if it already pointed there.
    ///
    /// # Errors
    ///
    /// [`MetaError::ManifestUnknown`] if `repo` does not hold the manifest `digest`;
    /// [`MetaError::Database`]. Nothing changes then.
    #[tracing::instrument(level = "debug", skip_all, fields(%repo, %tag, %digest))]
    pub async fn move_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        digest: &Digest,
        mv: &TagMove,
    ) -> Result<bool, MetaError> {
        let now = columns::now_micros();
        let mut tx = self.write().await?;
        let Some(id) = repo_id(&mut tx, repo).await? else {
            return Err(MetaError::ManifestUnknown {
                repo: repo.clone(),
                digest: digest.clone(),
            });
        };
        let moved = move_tag_in(&mut tx, repo, id, tag, Some(digest), mv, now).await?;
        if moved {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(moved)
    }

    /// Deletes a tag (journaled); the manifest stays. `false` if unknown.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`].
    #[tracing::instrument(level = "debug", skip_all, fields(%repo, %tag))]
    pub async fn delete_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        mv: &TagMove,
    ) -> Result<bool, MetaError> {
        let now = columns::now_micros();
        let mut tx = self.write().await?;
        let Some(id) = repo_id(&mut tx, repo).await? else {
            return Ok(false);
        };
        let deleted = move_tag_in(&mut tx, repo, id, tag, None, mv, now).await?;
        if deleted {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(deleted)
    }

    /// Tags of `repo` in lexical order, at most `limit`, strictly after `last`; `None` if the
    /// repository does not exist.
    ///
    /// Lexical means by bytes, as the spec's tag pagination expects: `B` sorts before `a`.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn list_tags(
        &self,
        repo: &RepoName,
        limit: Option<u32>,
        last: Option<&str>,
    ) -> Result<Option<Vec<Tag>>, MetaError> {
        let mut conn = self.readers.acquire().await?;
        let Some(id) = repo_id(&mut conn, repo).await? else {
            return Ok(None);
        };
        // distribution-spec, "Listing Tags": "lexical order (i.e. case-insensitive
        // alphanumeric order)". Tags equal but for case are then ordered by bytes, so the order
        // is total and `last` pages through it without skipping or repeating. `lower()` folds
        // ASCII only, which is all a tag may contain.
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM tags WHERE repo_id = $1 \
             AND (lower(name) > lower($2) OR (lower(name) = lower($2) AND name > $2)) \
             ORDER BY lower(name), name LIMIT $3",
        )
        .bind(id)
        .bind(last.unwrap_or(""))
        .bind(self::limit(limit))
        .fetch_all(&mut *conn)
        .await?;
        names
            .into_iter()
            .map(columns::tag)
            .collect::<Result<_, _>>()
            .map(Some)
    }
}
