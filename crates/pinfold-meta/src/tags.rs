//! Tags. [`TagQueries::move_tag_in`] is the only code that changes the `tags` table, and it
//! writes the journal row in the same transaction as the change.

use pinfold_oci::{Digest, RepoName, Tag};

use crate::engine::{impl_for_connections, on_engine, Dialect};
use crate::journal::JournalQueries;
use crate::manifests::manifest_record;
use crate::repositories::{limit, RepoQueries};
use crate::{columns, ManifestRecord, Meta, MetaError, TagMove};

/// Changing a tag, on either engine.
pub(crate) trait TagQueries {
    /// Points `tag` of `repo` (whose id is `repo_id`) at `new`, or deletes it with `None`, and
    /// journals the move. Returns whether the tag changed: nothing is written when it already
    /// points at `new` (or is already absent).
    ///
    /// Call inside a write transaction, which the caller commits. Takes the tag's lock first
    /// ([`TagQueries::lock_tag_digest`]), so the previous digest it reads is the one it replaces.
    ///
    /// # Errors
    ///
    /// [`MetaError::ManifestUnknown`] if `repo` has no manifest `new` (the foreign key refuses
    /// it), [`MetaError::Database`].
    async fn move_tag_in(
        &mut self,
        repo: &RepoName,
        repo_id: i64,
        tag: &Tag,
        new: Option<&Digest>,
        mv: &TagMove,
        now: i64,
    ) -> Result<bool, MetaError>;

    /// Takes `tag`'s lock ([`Dialect::lock_tag`]) and reads the digest it points at now, which
    /// then stays so until the caller's transaction ends.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`].
    async fn lock_tag_digest(
        &mut self,
        repo: &RepoName,
        repo_id: i64,
        tag: &Tag,
    ) -> Result<Option<String>, MetaError>;

    /// Refuses moving the immutable `tag` of `repo` (id `repo_id`) to `to` when it points at
    /// another digest already. Takes the tag's lock first, so no concurrent move slips in
    /// between this check and the caller's change in the same transaction.
    ///
    /// # Errors
    ///
    /// [`MetaError::TagImmutable`], [`MetaError::Database`].
    async fn keep_immutable_in(
        &mut self,
        repo: &RepoName,
        repo_id: i64,
        tag: &Tag,
        to: &Digest,
    ) -> Result<(), MetaError>;
}

impl_for_connections!(TagQueries {
    async fn move_tag_in(
        &mut self,
        repo: &RepoName,
        repo_id: i64,
        tag: &Tag,
        new: Option<&Digest>,
        mv: &TagMove,
        now: i64,
    ) -> Result<bool, MetaError> {
        let previous = self.lock_tag_digest(repo, repo_id, tag).await?;
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
                .execute(&mut *self)
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
                    .execute(&mut *self)
                    .await?;
            }
        }
        self.append_journal(repo, tag, previous.as_deref(), new, mv, now)
            .await?;
        Ok(true)
    }

    async fn lock_tag_digest(
        &mut self,
        repo: &RepoName,
        repo_id: i64,
        tag: &Tag,
    ) -> Result<Option<String>, MetaError> {
        self.lock_tag(repo.as_str(), tag.as_str()).await?;
        Ok(
            sqlx::query_scalar("SELECT digest FROM tags WHERE repo_id = $1 AND name = $2")
                .bind(repo_id)
                .bind(tag.as_str())
                .fetch_optional(&mut *self)
                .await?,
        )
    }

    async fn keep_immutable_in(
        &mut self,
        repo: &RepoName,
        repo_id: i64,
        tag: &Tag,
        to: &Digest,
    ) -> Result<(), MetaError> {
        match self.lock_tag_digest(repo, repo_id, tag).await? {
            Some(current) if current != to.as_str() => Err(MetaError::TagImmutable {
                repo: repo.to_string(),
                tag: tag.to_string(),
                current,
                refused: to.to_string(),
            }),
            _ => Ok(()),
        }
    }
});

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
        let row: Option<(String, String, i64)> = on_engine!(self, |db| sqlx::query_as(
            "SELECT m.digest, m.media_type, m.size \
             FROM repositories r \
             JOIN tags t ON t.repo_id = r.id \
             JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest \
             WHERE r.name = $1 AND t.name = $2",
        )
        .bind(repo.as_str())
        .bind(tag.as_str())
        .fetch_optional(&db.readers)
        .await?);
        row.map(manifest_record).transpose()
    }

    /// Points `tag` of `repo` at a manifest the repository already holds (promote, restore),
    /// journaling the move with `mv` in the same transaction. With `tag_immutable` (the tag
    /// matches an `[[immutable]]` rule) a tag that points at another digest is not moved.
    ///
    /// Returns whether the tag changed; `false` (and no journal row) if it already pointed there.
    ///
    /// # Errors
    ///
    /// [`MetaError::ManifestUnknown`] if `repo` does not hold the manifest `digest`;
    /// [`MetaError::TagImmutable`]; [`MetaError::Database`]. Nothing changes then.
    #[tracing::instrument(level = "debug", skip_all, fields(%repo, %tag, %digest))]
    pub async fn move_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        digest: &Digest,
        mv: &TagMove,
        tag_immutable: bool,
    ) -> Result<bool, MetaError> {
        let now = columns::now_micros();
        on_engine!(self, |db| {
            let mut tx = db.write().await?;
            let Some(id) = tx.repo_id(repo).await? else {
                return Err(MetaError::ManifestUnknown {
                    repo: repo.clone(),
                    digest: digest.clone(),
                });
            };
            if tag_immutable {
                tx.keep_immutable_in(repo, id, tag, digest).await?;
            }
            let moved = tx.move_tag_in(repo, id, tag, Some(digest), mv, now).await?;
            if moved {
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            Ok(moved)
        })
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
        on_engine!(self, |db| {
            let mut tx = db.write().await?;
            let Some(id) = tx.repo_id(repo).await? else {
                return Ok(false);
            };
            let deleted = tx.move_tag_in(repo, id, tag, None, mv, now).await?;
            if deleted {
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            Ok(deleted)
        })
    }

    /// Tags of `repo` in lexical order, at most `limit`, strictly after `last`; `None` if the
    /// repository does not exist.
    ///
    /// Lexical means case-insensitive, then by bytes (see `LIST_TAGS_SQL`): `A` < `a` < `B`.
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
        let names: Option<Vec<String>> = on_engine!(self, |db| {
            let mut conn = db.readers.acquire().await?;
            match conn.repo_id(repo).await? {
                None => None,
                Some(id) => Some(
                    sqlx::query_scalar(LIST_TAGS_SQL)
                        .bind(id)
                        .bind(last.unwrap_or(""))
                        .bind(self::limit(limit))
                        .fetch_all(&mut *conn)
                        .await?,
                ),
            }
        });
        let Some(names) = names else {
            return Ok(None);
        };
        names
            .into_iter()
            .map(columns::tag)
            .collect::<Result<_, _>>()
            .map(Some)
    }
}

/// Tags after `$2` in listing order, at most `$3`.
///
/// distribution-spec, "Listing Tags": "lexical order (i.e. case-insensitive alphanumeric
/// order)". Tags equal but for case are then ordered by bytes, so the order is total and `last`
/// pages through it without skipping or repeating. `lower()` folds ASCII only (SQLite always;
/// PostgreSQL because the column is `COLLATE "C"`), which is all a tag may contain. Both
/// schemas index `(repo_id, lower(name), name)`.
const LIST_TAGS_SQL: &str = "SELECT name FROM tags WHERE repo_id = $1 \
     AND (lower(name) > lower($2) OR (lower(name) = lower($2) AND name > $2)) \
     ORDER BY lower(name), name LIMIT $3";
