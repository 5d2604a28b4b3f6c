//! Blob links: which blobs are part of which repository.

use std::collections::HashSet;
use std::sync::LazyLock;

use pinfold_oci::{Digest, RepoName};

use crate::engine::{impl_for_connections, on_engine};
use crate::repositories::RepoQueries;
use crate::{columns, Meta, MetaError};

/// Digests checked per statement by [`MissingQueries::missing`]. Short chunks are padded to this
/// size by repeating a digest, so every call runs the same prepared statement (sqlx caches
/// statements by text) while a typical manifest's ~10–100 references take one or two round
/// trips.
const MISSING_CHUNK: usize = 64;

/// `digest IN ($2, …, $65)` for [`MISSING_CHUNK`] digests after the repository id.
fn in_list() -> String {
    (2..MISSING_CHUNK + 2)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

static MISSING_BLOBS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT digest FROM repository_blobs WHERE repo_id = $1 AND digest IN ({})",
        in_list()
    )
});

static MISSING_MANIFESTS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT digest FROM manifests WHERE repo_id = $1 AND digest IN ({})",
        in_list()
    )
});

/// The digest-set check, on either engine.
pub(crate) trait MissingQueries {
    /// Which of `digests` the query `sql` (one of the `MISSING_*_SQL`) does not find in `repo`:
    /// each missing digest once, in the order first given.
    async fn missing(
        &mut self,
        sql: &'static str,
        repo: &RepoName,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, MetaError>;
}

impl_for_connections!(MissingQueries {
    async fn missing(
        &mut self,
        sql: &'static str,
        repo: &RepoName,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, MetaError> {
        let mut seen = HashSet::new();
        let distinct: Vec<&Digest> = digests.iter().filter(|d| seen.insert(*d)).collect();
        let Some(id) = self.repo_id(repo).await? else {
            return Ok(distinct.into_iter().cloned().collect());
        };
        let mut found: HashSet<String> = HashSet::new();
        for chunk in distinct.chunks(MISSING_CHUNK) {
            let mut query = sqlx::query_scalar::<_, String>(sql).bind(id);
            for i in 0..MISSING_CHUNK {
                // Padding repeats the chunk's first digest; IN is a set, so the answer is the
                // same.
                let d = chunk.get(i).or(chunk.first());
                query = query.bind(d.map(|d| d.as_str()));
            }
            found.extend(query.fetch_all(&mut *self).await?);
        }
        Ok(distinct
            .into_iter()
            .filter(|d| !found.contains(d.as_str()))
            .cloned()
            .collect())
    }
});

impl Meta {
    /// Makes a stored blob part of `repo` (creating the repository if needed). Idempotent.
    ///
    /// # Errors
    ///
    /// [`MetaError::SizeTooLarge`] beyond `i64::MAX` bytes, [`MetaError::Database`].
    pub async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<(), MetaError> {
        let size = columns::size_to_db(size)?;
        on_engine!(self, |db| {
            let mut tx = db.write().await?;
            let id = tx.ensure_repo(repo).await?;
            // Same digest, same bytes, same size: a second link has nothing to change.
            sqlx::query(
                "INSERT INTO repository_blobs (repo_id, digest, size) VALUES ($1, $2, $3) \
                 ON CONFLICT (repo_id, digest) DO NOTHING",
            )
            .bind(id)
            .bind(digest.as_str())
            .bind(size)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The size of a blob if it is part of `repo`.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], [`MetaError::CorruptValue`] for a negative stored size.
    pub async fn repo_blob_size(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        let size: Option<i64> = on_engine!(self, |db| sqlx::query_scalar(
            "SELECT b.size FROM repository_blobs b JOIN repositories r ON r.id = b.repo_id \
             WHERE r.name = $1 AND b.digest = $2",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .fetch_optional(&db.readers)
        .await?);
        size.map(columns::size_from_db).transpose()
    }

    /// The size of a blob if any repository has it.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], [`MetaError::CorruptValue`] for a negative stored size.
    pub async fn any_blob_size(&self, digest: &Digest) -> Result<Option<u64>, MetaError> {
        let size: Option<i64> = on_engine!(self, |db| {
            sqlx::query_scalar("SELECT size FROM repository_blobs WHERE digest = $1 LIMIT 1")
                .bind(digest.as_str())
                .fetch_optional(&db.readers)
                .await?
        });
        size.map(columns::size_from_db).transpose()
    }

    /// Removes a blob from `repo`. `false` if it was not part of it.
    ///
    /// Manifests that reference the blob are not checked: like distribution, a blob DELETE is
    /// the client's decision, and garbage collection works from `manifest_blobs`, not links.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`].
    pub async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, MetaError> {
        let rows = on_engine!(self, |db| sqlx::query(
            "DELETE FROM repository_blobs \
             WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .execute(&db.writer)
        .await?
        .rows_affected());
        Ok(rows > 0)
    }

    /// Which of `digests` are not blobs of `repo`.
    ///
    /// Each missing digest appears once, in the order first given; all of them if the
    /// repository does not exist. Checks 64 digests per query.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`].
    pub async fn missing_blobs(
        &self,
        repo: &RepoName,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, MetaError> {
        on_engine!(self, |db| {
            let mut conn = db.readers.acquire().await?;
            conn.missing(MISSING_BLOBS_SQL.as_str(), repo, digests)
                .await
        })
    }

    /// Which of `digests` are not manifests of `repo`.
    ///
    /// Same contract as [`Meta::missing_blobs`]; the server uses it to check an index's
    /// children.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`].
    pub async fn missing_manifests(
        &self,
        repo: &RepoName,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, MetaError> {
        on_engine!(self, |db| {
            let mut conn = db.readers.acquire().await?;
            conn.missing(MISSING_MANIFESTS_SQL.as_str(), repo, digests)
                .await
        })
    }
}
