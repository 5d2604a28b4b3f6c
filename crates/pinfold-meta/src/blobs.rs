//! Blob links: which blobs are part of which repository.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use pinfold_oci::{Digest, RepoName};

use crate::engine::{impl_for_connections, on_engine};
use crate::repositories::RepoQueries;
use crate::{columns, Meta, MetaError};

/// Digests looked up per statement by [`SizeQueries::stored_sizes`]. Short chunks are padded to
/// this size by repeating a digest, so every call runs the same prepared statement (sqlx caches
/// statements by text) while a typical manifest's ~10–100 references take one or two round
/// trips.
const SIZES_CHUNK: usize = 64;

/// `digest IN ($2, …, $65)` for [`SIZES_CHUNK`] digests after the repository name.
fn in_list() -> String {
    (2..SIZES_CHUNK + 2)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

static BLOB_SIZES_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT b.digest, b.size FROM repository_blobs b JOIN repositories r ON r.id = b.repo_id \
         WHERE r.name = $1 AND b.digest IN ({})",
        in_list()
    )
});

static MANIFEST_SIZES_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT m.digest, m.size FROM manifests m JOIN repositories r ON r.id = m.repo_id \
         WHERE r.name = $1 AND m.digest IN ({})",
        in_list()
    )
});

/// The digest-set lookup, on either engine.
pub(crate) trait SizeQueries {
    /// The stored sizes of those of `digests` that the query `sql` (one of the `*_SIZES_SQL`)
    /// finds in `repo`; a digest it does not find has no entry.
    async fn stored_sizes(
        &mut self,
        sql: &'static str,
        repo: &RepoName,
        digests: &[Digest],
    ) -> Result<HashMap<Digest, u64>, MetaError>;
}

impl_for_connections!(SizeQueries {
    async fn stored_sizes(
        &mut self,
        sql: &'static str,
        repo: &RepoName,
        digests: &[Digest],
    ) -> Result<HashMap<Digest, u64>, MetaError> {
        let mut seen = HashSet::new();
        let distinct: Vec<&Digest> = digests.iter().filter(|d| seen.insert(*d)).collect();
        let mut sizes = HashMap::with_capacity(distinct.len());
        for chunk in distinct.chunks(SIZES_CHUNK) {
            let mut query = sqlx::query_as::<_, (String, i64)>(sql).bind(repo.as_str());
            for i in 0..SIZES_CHUNK {
                // Padding repeats the chunk's first digest; IN is a set, so the answer is the
                // same.
                let d = chunk.get(i).or(chunk.first());
                query = query.bind(d.map(|d| d.as_str()));
            }
            for (digest, size) in query.fetch_all(&mut *self).await? {
                sizes.insert(columns::digest(digest)?, columns::size_from_db(size)?);
            }
        }
        Ok(sizes)
    }
});

/// Each of `digests` that `sizes` lacks, once, in the order first given.
fn absent_from(sizes: &HashMap<Digest, u64>, digests: &[Digest]) -> Vec<Digest> {
    let mut seen = HashSet::new();
    digests
        .iter()
        .filter(|d| !sizes.contains_key(*d) && seen.insert(*d))
        .cloned()
        .collect()
}

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

    /// The repositories that hold a blob, with its size, in name order, at most `limit`
    /// (content discovery picks the first one the caller may read).
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], [`MetaError::CorruptValue`] for a negative stored size or a
    /// stored name that is not a repository name.
    pub async fn repositories_with_blob(
        &self,
        digest: &Digest,
        limit: u32,
    ) -> Result<Vec<(RepoName, u64)>, MetaError> {
        let rows: Vec<(String, i64)> = on_engine!(self, |db| {
            sqlx::query_as(
            "SELECT r.name, b.size FROM repository_blobs b JOIN repositories r ON r.id = b.repo_id \
             WHERE b.digest = $1 ORDER BY r.name LIMIT $2",
        )
        .bind(digest.as_str())
        .bind(i64::from(limit))
        .fetch_all(&db.readers)
        .await?
        });
        rows.into_iter()
            .map(|(name, size)| Ok((columns::repo_name(name)?, columns::size_from_db(size)?)))
            .collect()
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

    /// The stored sizes of those of `digests` that are blobs of `repo`.
    ///
    /// A digest that is not a blob of `repo` (or of any repository, if `repo` does not exist)
    /// has no entry. Looks up 64 digests per query; none for an empty list.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], [`MetaError::CorruptValue`] for a stored value that does not
    /// decode.
    pub async fn blob_sizes(
        &self,
        repo: &RepoName,
        digests: &[Digest],
    ) -> Result<HashMap<Digest, u64>, MetaError> {
        if digests.is_empty() {
            return Ok(HashMap::new());
        }
        on_engine!(self, |db| {
            let mut conn = db.readers.acquire().await?;
            conn.stored_sizes(BLOB_SIZES_SQL.as_str(), repo, digests)
                .await
        })
    }

    /// The stored sizes of those of `digests` that are manifests of `repo`.
    ///
    /// Same contract as [`Meta::blob_sizes`]; the server uses it to check an index's children
    /// and a manifest's subject.
    ///
    /// # Errors
    ///
    /// As [`Meta::blob_sizes`].
    pub async fn manifest_sizes(
        &self,
        repo: &RepoName,
        digests: &[Digest],
    ) -> Result<HashMap<Digest, u64>, MetaError> {
        if digests.is_empty() {
            return Ok(HashMap::new());
        }
        on_engine!(self, |db| {
            let mut conn = db.readers.acquire().await?;
            conn.stored_sizes(MANIFEST_SIZES_SQL.as_str(), repo, digests)
                .await
        })
    }

    /// Which of `digests` are not blobs of `repo`.
    ///
    /// Each missing digest appears once, in the order first given; all of them if the
    /// repository does not exist. [`Meta::blob_sizes`] answers the same question with the sizes.
    ///
    /// # Errors
    ///
    /// As [`Meta::blob_sizes`].
    pub async fn missing_blobs(
        &self,
        repo: &RepoName,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, MetaError> {
        let sizes = self.blob_sizes(repo, digests).await?;
        Ok(absent_from(&sizes, digests))
    }

    /// Which of `digests` are not manifests of `repo`.
    ///
    /// Same contract as [`Meta::missing_blobs`], over [`Meta::manifest_sizes`].
    ///
    /// # Errors
    ///
    /// As [`Meta::blob_sizes`].
    pub async fn missing_manifests(
        &self,
        repo: &RepoName,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, MetaError> {
        let sizes = self.manifest_sizes(repo, digests).await?;
        Ok(absent_from(&sizes, digests))
    }
}
