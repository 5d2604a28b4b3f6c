//! Repositories: the catalog, existence, and the id every other table keys on.

use pinfold_oci::RepoName;
use sqlx::SqliteConnection;

use crate::{columns, Meta, MetaError};

/// Stands for "no limit" in `LIMIT $n`: portable, where SQLite's `-1` and PostgreSQL's `NULL`
/// are not.
pub(crate) const NO_LIMIT: i64 = i64::MAX;

/// `LIMIT` value for an optional page size.
pub(crate) fn limit(n: Option<u32>) -> i64 {
    n.map_or(NO_LIMIT, i64::from)
}

/// The id of a repository, if it exists.
pub(crate) async fn repo_id(
    conn: &mut SqliteConnection,
    repo: &RepoName,
) -> Result<Option<i64>, MetaError> {
    Ok(
        sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
            .bind(repo.as_str())
            .fetch_optional(conn)
            .await?,
    )
}

/// The id of a repository, creating it first if needed. Call inside a write transaction.
pub(crate) async fn ensure_repo(
    conn: &mut SqliteConnection,
    repo: &RepoName,
) -> Result<i64, MetaError> {
    // Look up first: the repository almost always exists, and a plain SELECT writes nothing
    // (an upsert with RETURNING would dirty a page on every push).
    if let Some(id) = repo_id(conn, repo).await? {
        return Ok(id);
    }
    Ok(sqlx::query_scalar(
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2) RETURNING id",
    )
    .bind(repo.as_str())
    .bind(columns::now_micros())
    .fetch_one(conn)
    .await?)
}

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
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT r.name FROM repositories r \
             WHERE r.name > $1 \
               AND (EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = r.id) \
                    OR EXISTS (SELECT 1 FROM repository_blobs b WHERE b.repo_id = r.id)) \
             ORDER BY r.name \
             LIMIT $2",
        )
        .bind(last.unwrap_or(""))
        .bind(self::limit(limit))
        .fetch_all(&self.readers)
        .await?;
        names.into_iter().map(columns::repo_name).collect()
    }

    /// True if the repository exists (has ever had a blob, manifest or upload).
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`].
    pub async fn repository_exists(&self, repo: &RepoName) -> Result<bool, MetaError> {
        let mut conn = self.readers.acquire().await?;
        Ok(repo_id(&mut conn, repo).await?.is_some())
    }
}
