//! Repositories: the catalog, existence, and the id every other table keys on.

use pinfold_oci::RepoName;

use crate::engine::{impl_for_connections, on_engine};
use crate::{columns, Meta, MetaError};

/// Stands for "no limit" in `LIMIT $n`: portable, where SQLite's `-1` and PostgreSQL's `NULL`
/// are not.
pub(crate) const NO_LIMIT: i64 = i64::MAX;

/// `LIMIT` value for an optional page size.
pub(crate) fn limit(n: Option<u32>) -> i64 {
    n.map_or(NO_LIMIT, i64::from)
}

/// Repository lookups run inside a transaction or on one connection, on either engine.
pub(crate) trait RepoQueries {
    /// The id of a repository, if it exists.
    async fn repo_id(&mut self, repo: &RepoName) -> Result<Option<i64>, MetaError>;

    /// The id of a repository, creating it first if needed. Call inside a write transaction.
    async fn ensure_repo(&mut self, repo: &RepoName) -> Result<i64, MetaError>;
}

impl_for_connections!(RepoQueries {
    async fn repo_id(&mut self, repo: &RepoName) -> Result<Option<i64>, MetaError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
                .bind(repo.as_str())
                .fetch_optional(self)
                .await?,
        )
    }

    async fn ensure_repo(&mut self, repo: &RepoName) -> Result<i64, MetaError> {
        // Look up first: the repository almost always exists, and a plain SELECT writes nothing
        // (an upsert with RETURNING would dirty a page on every push).
        if let Some(id) = self.repo_id(repo).await? {
            return Ok(id);
        }
        // DO NOTHING, then look again: on PostgreSQL another replica may create the same
        // repository concurrently (the insert then waits for it and returns no row). SQLite's
        // single writer never gets there.
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO repositories (name, created_at) VALUES ($1, $2) \
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(repo.as_str())
        .bind(columns::now_micros())
        .fetch_optional(&mut *self)
        .await?;
        match inserted {
            Some(id) => Ok(id),
            // Repository rows are never deleted, so the conflicting row is there.
            None => self
                .repo_id(repo)
                .await?
                .ok_or(MetaError::Database(sqlx::Error::RowNotFound)),
        }
    }
});

impl Meta {
    /// Repository names in lexical order, at most `limit`, strictly after `last`.
    ///
    /// Lists the repositories that hold content: at least one manifest or one linked blob. A
    /// repository that only ever saw an upload start is not listed (distribution's catalog
    /// likewise only shows repositories with something in them), but it still "exists" for
    /// [`Meta::repository_exists`] and [`Meta::list_tags`]. Order is by bytes, as the spec's
    /// catalog pagination expects.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], or [`MetaError::CorruptValue`] for a name that does not parse.
    pub async fn list_repositories(
        &self,
        limit: Option<u32>,
        last: Option<&str>,
    ) -> Result<Vec<RepoName>, MetaError> {
        // `name > ''` for "from the start": every name is non-empty, and unlike
        // `($1 IS NULL OR name > $1)` it still walks the unique index on name.
        let names: Vec<String> = on_engine!(self, |db| sqlx::query_scalar(
            "SELECT r.name FROM repositories r \
             WHERE r.name > $1 \
               AND (EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = r.id) \
                    OR EXISTS (SELECT 1 FROM repository_blobs b WHERE b.repo_id = r.id)) \
             ORDER BY r.name \
             LIMIT $2",
        )
        .bind(last.unwrap_or(""))
        .bind(self::limit(limit))
        .fetch_all(&db.readers)
        .await?);
        names.into_iter().map(columns::repo_name).collect()
    }

    /// True if the repository exists (has ever had a blob, manifest or upload).
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`].
    pub async fn repository_exists(&self, repo: &RepoName) -> Result<bool, MetaError> {
        on_engine!(self, |db| {
            let mut conn = db.readers.acquire().await?;
            Ok(conn.repo_id(repo).await?.is_some())
        })
    }
}
