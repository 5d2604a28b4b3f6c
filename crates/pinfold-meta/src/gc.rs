//! Garbage collection's metadata half: which (repository, digest) pairs nothing needs any more,
//! and removing their rows safely while pushes go on.
//!
//! GC never scans every blob. Migration `0006_gc.sql` keeps a table of candidates, filled by
//! triggers in the very transactions that drop a reference (a tag moved or deleted, a manifest
//! deleted, which cascades to its blob and child references and re-enqueues its referrers) or
//! create something that may stay unreferenced (a blob link, a manifest pushed by digest).
//! Journal rows that leave their retention window are enqueued by
//! [`Meta::gc_enqueue_expired_journal`]. A run examines only those rows, so its cost follows
//! the churn since the last run, not the size of the registry.
//!
//! Each candidate is decided inside a write transaction holding [`Dialect::try_lock_reference`]
//! (the lock [`Meta::put_manifest_checked`] takes for every reference of a pushed manifest; GC
//! never waits for it: a candidate whose lock is held is left for the next run), so a
//! push that references a blob either commits before (and GC sees the reference) or after
//! (and finds the link gone, failing cleanly). Protections that end by themselves (the grace
//! period, the journal's retention, mirror pins, drift events, open upload sessions) keep the
//! candidate for a later run; protections whose end fires a trigger (a tag, a parent index, a
//! referencing manifest, a kept subject) drop it.

use pinfold_oci::{Digest, RepoName};
use serde::Serialize;
use time::OffsetDateTime;

use crate::engine::{impl_for_connections, on_engine, Dialect};
use crate::{columns, Meta, MetaError};

/// Which table a collected pair lived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GcKind {
    /// A blob link (`repository_blobs`).
    Blob,
    /// A manifest (`manifests`, with its references).
    Manifest,
}

/// One pair removed (or, in a dry run, that would be removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcItem {
    /// The repository.
    pub repository: RepoName,
    /// The digest.
    pub digest: Digest,
    /// Blob link or manifest.
    pub kind: GcKind,
}

/// What protects a pair for now; decided per repository by the caller (retention rules are
/// configuration the metadata crate does not know).
pub struct GcPolicy<'a> {
    /// Pairs enqueued, used or created less than this long ago are kept (the grace period).
    /// Measured from each batch's start, so that a pair that lost its last reference earlier
    /// in the same run (a collected index's children, a collected subject's referrers) is
    /// decided by the same rule as any other.
    pub grace: std::time::Duration,
    /// For a repository, journal rows at or after the returned time protect the digests they
    /// name; `None` means the whole journal protects them (no retention rule). Called when a
    /// candidate is decided.
    pub journal_cutoff: &'a (dyn Fn(&str) -> Option<OffsetDateTime> + Send + Sync),
    /// Candidates decided per transaction (bounds how long a pass holds the write lock).
    pub batch: usize,
}

/// What a GC pass over the candidates decided.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcSweep {
    /// Candidates examined.
    pub examined: u64,
    /// Candidates kept for a later run (grace, journal, pin, drift event, open upload).
    pub kept: u64,
    /// Pairs removed (dry run: that would be removed).
    pub deleted: Vec<GcItem>,
    /// Digests of `deleted` that no row names any more (no repository, no manifest, no APT
    /// file): their files may go. Checked inside the transactions; the caller re-checks with
    /// [`Meta::gc_digest_referenced`] right before deleting a file.
    pub unreferenced: Vec<Digest>,
}

/// Upper bound on transactions in one pass, so a run always ends (each batch makes progress:
/// every examined row is either removed or marked as examined by this run).
const MAX_BATCHES: usize = 100_000;

pub(crate) enum Decision {
    /// Protected by something whose removal re-enqueues the pair: forget it.
    Drop,
    /// Protected for a time: look again next run.
    Keep,
    /// Removed.
    Deleted,
}

pub(crate) trait GcQueries {
    /// Decides up to `policy.batch` candidates not yet examined by `run`; returns how many
    /// were examined.
    async fn gc_batch(
        &mut self,
        run: i64,
        policy: &GcPolicy<'_>,
        out: &mut GcSweep,
    ) -> Result<usize, MetaError>;

    /// Whether any row still names `digest` (see [`Meta::gc_digest_referenced`]).
    async fn digest_referenced(&mut self, digest: &str) -> Result<bool, MetaError>;

    /// Whether `sql` (binding `$1` repository id, `$2` digest, selecting one BIGINT) has a row.
    async fn has_row(
        &mut self,
        sql: &'static str,
        repo_id: i64,
        digest: &str,
    ) -> Result<bool, MetaError>;

    /// Decides a manifest candidate (removing it when nothing protects it).
    async fn decide_manifest(
        &mut self,
        repo_id: i64,
        digest: &str,
        fresh_at: i64,
        repo_name: &str,
        grace: i64,
        policy: &GcPolicy<'_>,
    ) -> Result<Decision, MetaError>;

    /// Decides a blob-link candidate (removing it when nothing protects it).
    async fn decide_blob(
        &mut self,
        repo_id: i64,
        digest: &str,
        fresh_at: i64,
        grace: i64,
    ) -> Result<Decision, MetaError>;
}

impl_for_connections!(GcQueries {
    async fn gc_batch(
        &mut self,
        run: i64,
        policy: &GcPolicy<'_>,
        out: &mut GcSweep,
    ) -> Result<usize, MetaError> {
        let grace = columns::now_micros()
            .saturating_sub(i64::try_from(policy.grace.as_micros()).unwrap_or(i64::MAX));
        let limit = i64::try_from(policy.batch.max(1)).unwrap_or(i64::MAX);
        // Manifests first: removing one enqueues its blobs, decided in the same run.
        let rows: Vec<(i64, String, String, i64, String)> = sqlx::query_as(
            "SELECT c.repo_id, c.digest, c.kind, c.fresh_at, r.name \
             FROM gc_candidates c JOIN repositories r ON r.id = c.repo_id \
             WHERE c.examined_run <> $1 \
             ORDER BY c.kind DESC, c.repo_id, c.digest LIMIT $2",
        )
        .bind(run)
        .bind(limit)
        .fetch_all(&mut *self)
        .await?;
        let examined = rows.len();
        for (repo_id, digest, kind, fresh_at, repo_name) in rows {
            // A push recording a manifest that references this pair holds its lock: decide it
            // next run rather than wait (waiting could deadlock with a push locking several).
            let decision = if !self.try_lock_reference(repo_id, &digest).await? {
                Decision::Keep
            } else if kind == "manifest" {
                self.decide_manifest(repo_id, &digest, fresh_at, &repo_name, grace, policy)
                    .await?
            } else {
                self.decide_blob(repo_id, &digest, fresh_at, grace).await?
            };
            out.examined += 1;
            match decision {
                Decision::Keep => {
                    out.kept += 1;
                    sqlx::query(
                        "UPDATE gc_candidates SET examined_run = $1 \
                         WHERE repo_id = $2 AND digest = $3 AND kind = $4",
                    )
                    .bind(run)
                    .bind(repo_id)
                    .bind(&digest)
                    .bind(&kind)
                    .execute(&mut *self)
                    .await?;
                }
                Decision::Drop | Decision::Deleted => {
                    if matches!(decision, Decision::Deleted) {
                        let item = GcItem {
                            repository: columns::repo_name(repo_name)?,
                            digest: columns::digest(digest.clone())?,
                            kind: if kind == "manifest" {
                                GcKind::Manifest
                            } else {
                                GcKind::Blob
                            },
                        };
                        if !self.digest_referenced(&digest).await?
                            && !out.unreferenced.contains(&item.digest)
                        {
                            out.unreferenced.push(item.digest.clone());
                        }
                        out.deleted.push(item);
                    }
                    sqlx::query(
                        "DELETE FROM gc_candidates WHERE repo_id = $1 AND digest = $2 AND kind = $3",
                    )
                    .bind(repo_id)
                    .bind(&digest)
                    .bind(&kind)
                    .execute(&mut *self)
                    .await?;
                }
            }
        }
        Ok(examined)
    }

    async fn digest_referenced(&mut self, digest: &str) -> Result<bool, MetaError> {
        // APT tables name files by bare SHA-256 hex.
        let hex = digest.strip_prefix("sha256:").unwrap_or("");
        let row: Option<String> = sqlx::query_scalar(
            "SELECT digest FROM repository_blobs WHERE digest = $1 \
             UNION ALL SELECT digest FROM manifests WHERE digest = $1 \
             UNION ALL SELECT sha256 FROM apt_packages WHERE sha256 = $2 \
             UNION ALL SELECT sha256 FROM apt_snapshot_packages WHERE sha256 = $2 \
             UNION ALL SELECT sha256 FROM apt_index_files WHERE sha256 = $2 \
             UNION ALL SELECT sha256 FROM apt_index_garbage WHERE sha256 = $2 \
             LIMIT 1",
        )
        .bind(digest)
        .bind(hex)
        .fetch_optional(&mut *self)
        .await?;
        Ok(row.is_some())
    }

    async fn has_row(
        &mut self,
        sql: &'static str,
        repo_id: i64,
        digest: &str,
    ) -> Result<bool, MetaError> {
        let row: Option<i64> = sqlx::query_scalar(sql)
            .bind(repo_id)
            .bind(digest)
            .fetch_optional(&mut *self)
            .await?;
        Ok(row.is_some())
    }

    async fn decide_manifest(
        &mut self,
        repo_id: i64,
        digest: &str,
        fresh_at: i64,
        repo_name: &str,
        grace: i64,
        policy: &GcPolicy<'_>,
    ) -> Result<Decision, MetaError> {
        let row: Option<(i64, Option<String>)> = sqlx::query_as(
            "SELECT created_at, subject_digest FROM manifests WHERE repo_id = $1 AND digest = $2",
        )
        .bind(repo_id)
        .bind(digest)
        .fetch_optional(&mut *self)
        .await?;
        let Some((created_at, subject)) = row else {
            return Ok(Decision::Drop);
        };
        // Protections whose end re-enqueues the manifest (a trigger fires).
        if self
            .has_row(
                "SELECT repo_id FROM tags WHERE repo_id = $1 AND digest = $2 LIMIT 1",
                repo_id,
                digest,
            )
            .await?
            || self
                .has_row(
                    "SELECT repo_id FROM manifest_children \
                     WHERE repo_id = $1 AND child_digest = $2 LIMIT 1",
                    repo_id,
                    digest,
                )
                .await?
        {
            return Ok(Decision::Drop);
        }
        if let Some(subject) = subject {
            if self
                .has_row(
                    "SELECT repo_id FROM manifests WHERE repo_id = $1 AND digest = $2",
                    repo_id,
                    &subject,
                )
                .await?
            {
                return Ok(Decision::Drop);
            }
        }
        // Protections that end with time or outside these tables: look again next run.
        if created_at >= grace || fresh_at >= grace {
            return Ok(Decision::Keep);
        }
        let journaled: Option<i64> = match (policy.journal_cutoff)(repo_name) {
            None => sqlx::query_scalar(
                "SELECT id FROM tag_journal WHERE repository = $1 AND new_digest = $2 \
                 UNION ALL SELECT id FROM tag_journal \
                 WHERE repository = $1 AND previous_digest = $2 LIMIT 1",
            )
            .bind(repo_name)
            .bind(digest)
            .fetch_optional(&mut *self)
            .await?,
            Some(cutoff) => sqlx::query_scalar(
                "SELECT id FROM tag_journal WHERE repository = $1 AND new_digest = $2 AND at >= $3 \
                 UNION ALL SELECT id FROM tag_journal \
                 WHERE repository = $1 AND previous_digest = $2 AND at >= $3 LIMIT 1",
            )
            .bind(repo_name)
            .bind(digest)
            .bind(columns::micros(cutoff))
            .fetch_optional(&mut *self)
            .await?,
        };
        if journaled.is_some() {
            return Ok(Decision::Keep);
        }
        let pinned: Option<String> = sqlx::query_scalar(
            "SELECT tag FROM mirror_tags WHERE repository = $1 AND upstream_digest = $2 \
             UNION ALL SELECT tag FROM drift_events WHERE repository = $1 AND upstream_digest = $2 \
             UNION ALL SELECT tag FROM drift_events WHERE repository = $1 AND pinned_digest = $2 \
             LIMIT 1",
        )
        .bind(repo_name)
        .bind(digest)
        .fetch_optional(&mut *self)
        .await?;
        if pinned.is_some() {
            return Ok(Decision::Keep);
        }
        sqlx::query("DELETE FROM manifests WHERE repo_id = $1 AND digest = $2")
            .bind(repo_id)
            .bind(digest)
            .execute(&mut *self)
            .await?;
        Ok(Decision::Deleted)
    }

    async fn decide_blob(
        &mut self,
        repo_id: i64,
        digest: &str,
        fresh_at: i64,
        grace: i64,
    ) -> Result<Decision, MetaError> {
        if !self
            .has_row(
                "SELECT repo_id FROM repository_blobs WHERE repo_id = $1 AND digest = $2",
                repo_id,
                digest,
            )
            .await?
        {
            return Ok(Decision::Drop);
        }
        if self
            .has_row(
                "SELECT repo_id FROM manifest_blobs WHERE repo_id = $1 AND blob_digest = $2 LIMIT 1",
                repo_id,
                digest,
            )
            .await?
        {
            return Ok(Decision::Drop);
        }
        if fresh_at >= grace {
            return Ok(Decision::Keep);
        }
        // A client uploading into this repository may be about to push the manifest that
        // references blobs it uploaded earlier.
        let uploading: Option<String> =
            sqlx::query_scalar("SELECT id FROM uploads WHERE repo_id = $1 LIMIT 1")
                .bind(repo_id)
                .fetch_optional(&mut *self)
                .await?;
        if uploading.is_some() {
            return Ok(Decision::Keep);
        }
        sqlx::query("DELETE FROM repository_blobs WHERE repo_id = $1 AND digest = $2")
            .bind(repo_id)
            .bind(digest)
            .execute(&mut *self)
            .await?;
        Ok(Decision::Deleted)
    }
});

impl Meta {
    /// Decides every pending candidate under `policy`: removes the rows of pairs nothing
    /// protects and reports them. With `dry_run` everything happens in one transaction that is
    /// rolled back, so the report is exactly what a real run at this moment would remove
    /// (cascades included) and nothing changes.
    ///
    /// A real run commits every `policy.batch` candidates, so pushes wait at most one batch.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], [`MetaError::CorruptValue`]; batches already committed stay.
    pub async fn gc_collect(
        &self,
        policy: &GcPolicy<'_>,
        dry_run: bool,
    ) -> Result<GcSweep, MetaError> {
        // A run id different from every earlier one (and from the column's default 0).
        let run = columns::now_micros();
        let mut out = GcSweep::default();
        on_engine!(self, |db| {
            if dry_run {
                let mut tx = db.write().await?;
                for _ in 0..MAX_BATCHES {
                    if tx.gc_batch(run, policy, &mut out).await? == 0 {
                        break;
                    }
                }
                tx.rollback().await?;
            } else {
                for _ in 0..MAX_BATCHES {
                    let mut tx = db.write().await?;
                    let examined = tx.gc_batch(run, policy, &mut out).await?;
                    tx.commit().await?;
                    if examined == 0 {
                        break;
                    }
                }
            }
        });
        Ok(out)
    }

    /// Whether any row names `digest`: a blob link or manifest in any repository, or an APT
    /// package, snapshot or index file. A file is deleted only when this is `false`.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`].
    pub async fn gc_digest_referenced(&self, digest: &Digest) -> Result<bool, MetaError> {
        on_engine!(self, |db| {
            let mut conn = db.readers.acquire().await?;
            conn.digest_referenced(digest.as_str()).await
        })
    }

    /// Marks a blob of `repo` as just used (HEAD, GET, mount), so that a GC in the next grace
    /// period keeps it: a client told "the blob exists" may reference it in a manifest it is
    /// about to push. Costs one indexed read unless the pair is a GC candidate.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`].
    pub async fn gc_touch(&self, repo: &RepoName, digest: &Digest) -> Result<(), MetaError> {
        on_engine!(self, |db| {
            let candidate: Option<i64> = sqlx::query_scalar(
                "SELECT c.repo_id FROM gc_candidates c JOIN repositories r ON r.id = c.repo_id \
                 WHERE r.name = $1 AND c.digest = $2 AND c.kind = 'blob'",
            )
            .bind(repo.as_str())
            .bind(digest.as_str())
            .fetch_optional(&db.readers)
            .await?;
            if let Some(repo_id) = candidate {
                sqlx::query(
                    "UPDATE gc_candidates SET fresh_at = $1, examined_run = 0 \
                     WHERE repo_id = $2 AND digest = $3 AND kind = 'blob'",
                )
                .bind(columns::now_micros())
                .bind(repo_id)
                .bind(digest.as_str())
                .execute(&db.writer)
                .await?;
            }
            Ok(())
        })
    }

    /// Enqueues the manifests named by journal rows that left the shortest journal retention
    /// since the last call (`cutoff`: now minus that retention). Each row is read once over
    /// the life of the registry; the per-repository retention is applied when the candidate is
    /// decided.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`].
    pub async fn gc_enqueue_expired_journal(
        &self,
        cutoff: OffsetDateTime,
    ) -> Result<u64, MetaError> {
        let cutoff = columns::micros(cutoff);
        on_engine!(self, |db| {
            let mut tx = db.write().await?;
            let from: i64 = sqlx::query_scalar("SELECT journal_cutoff FROM gc_state WHERE id = 1")
                .fetch_one(&mut *tx)
                .await?;
            if cutoff <= from {
                tx.rollback().await?;
                return Ok(0);
            }
            let enqueued = sqlx::query(
                "INSERT INTO gc_candidates (repo_id, digest, kind, fresh_at) \
                 SELECT DISTINCT r.id, d.digest, 'manifest', $3 FROM ( \
                     SELECT repository, new_digest AS digest FROM tag_journal \
                     WHERE at > $1 AND at <= $2 AND new_digest IS NOT NULL \
                     UNION SELECT repository, previous_digest FROM tag_journal \
                     WHERE at > $1 AND at <= $2 AND previous_digest IS NOT NULL) d \
                 JOIN repositories r ON r.name = d.repository WHERE 1 = 1 \
                 ON CONFLICT (repo_id, digest, kind) DO UPDATE SET examined_run = 0",
            )
            .bind(from)
            .bind(cutoff)
            // Already old: the journal row, not this enqueueing, was the last use.
            .bind(0_i64)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query("UPDATE gc_state SET journal_cutoff = $1 WHERE id = 1")
                .bind(cutoff)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(enqueued)
        })
    }

    /// How many candidates are waiting (the work the next run has).
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`].
    pub async fn gc_pending(&self) -> Result<u64, MetaError> {
        let n: i64 = on_engine!(self, |db| sqlx::query_scalar(
            "SELECT COUNT(*) FROM gc_candidates"
        )
        .fetch_one(&db.readers)
        .await?);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Records the last run's report (JSON, served by `GET /api/v1/gc`).
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`].
    pub async fn gc_set_last_run(&self, report: &str) -> Result<(), MetaError> {
        on_engine!(self, |db| {
            sqlx::query("UPDATE gc_state SET last_run = $1 WHERE id = 1")
                .bind(report)
                .execute(&db.writer)
                .await?;
        });
        Ok(())
    }

    /// The last run's report as recorded by [`Meta::gc_set_last_run`].
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`].
    pub async fn gc_last_run(&self) -> Result<Option<String>, MetaError> {
        Ok(on_engine!(self, |db| sqlx::query_scalar(
            "SELECT last_run FROM gc_state WHERE id = 1"
        )
        .fetch_one(&db.readers)
        .await?))
    }

    /// Every tag of every repository with the digest it points at and when it was last moved
    /// there (push time), for retention rules.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn all_tags(
        &self,
    ) -> Result<Vec<(RepoName, pinfold_oci::Tag, Digest, OffsetDateTime)>, MetaError> {
        let rows: Vec<(String, String, String, i64)> = on_engine!(self, |db| sqlx::query_as(
            "SELECT r.name, t.name, t.digest, t.updated_at \
             FROM tags t JOIN repositories r ON r.id = t.repo_id ORDER BY r.name, t.name"
        )
        .fetch_all(&db.readers)
        .await?);
        rows.into_iter()
            .map(|(repo, tag, digest, at)| {
                Ok((
                    columns::repo_name(repo)?,
                    columns::tag(tag)?,
                    columns::digest(digest)?,
                    columns::time_from_micros(at)?,
                ))
            })
            .collect()
    }
}
