//! Manifests, what they reference, and the referrers API.

use pinfold_oci::{Digest, RepoName, Tag};

use crate::engine::{on_engine, Dialect};
use crate::repositories::RepoQueries;
use crate::tags::TagQueries;
use crate::{columns, ManifestRecord, Meta, MetaError, NewManifest, ReferrerRecord, TagMove};

/// Decodes `(digest, media_type, size)`.
pub(crate) fn manifest_record(row: (String, String, i64)) -> Result<ManifestRecord, MetaError> {
    let (digest, media_type, size) = row;
    Ok(ManifestRecord {
        digest: columns::digest(digest)?,
        media_type,
        size: columns::size_from_db(size)?,
    })
}

impl Meta {
    /// Records a manifest and, with `tag`, points the tag at it, in one transaction that also
    /// writes the journal row when the tag's digest changes.
    ///
    /// Creates the repository if needed. Recording a manifest the repository already holds is a
    /// no-op (same digest, same bytes, same row); its references are written only the first
    /// time. The tag is journaled only if it is new or pointed elsewhere: pushing the same
    /// manifest under the same tag again writes nothing. One fsync when anything changed.
    ///
    /// # Errors
    ///
    /// [`MetaError::SizeTooLarge`], [`MetaError::AnnotationsEncoding`], [`MetaError::Database`];
    /// nothing is recorded then.
    pub async fn put_manifest(
        &self,
        manifest: &NewManifest,
        tag: Option<&Tag>,
        mv: &TagMove,
    ) -> Result<(), MetaError> {
        self.record_manifest(manifest, tag, mv, false, false).await
    }

    /// [`Meta::put_manifest`] for a client's push: the same transaction also checks that the
    /// repository still holds every blob and child manifest the manifest references, so a
    /// garbage collection that removed one after the registry's own check makes the push fail
    /// instead of leaving a manifest with missing references. (The mirror records manifests
    /// whose blobs it fetches later, so it uses [`Meta::put_manifest`].)
    ///
    /// With `tag_immutable`, the same transaction also refuses to move an existing `tag` to
    /// another digest (checked under the tag's lock, so two concurrent pushes of different
    /// digests to a new immutable tag cannot both win).
    ///
    /// # Errors
    ///
    /// [`MetaError::ReferencesMissing`], [`MetaError::TagImmutable`] (nothing recorded), and
    /// those of [`Meta::put_manifest`].
    pub async fn put_manifest_checked(
        &self,
        manifest: &NewManifest,
        tag: Option<&Tag>,
        mv: &TagMove,
        tag_immutable: bool,
    ) -> Result<(), MetaError> {
        self.record_manifest(manifest, tag, mv, true, tag_immutable)
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(repo = %manifest.repo, digest = %manifest.digest))]
    async fn record_manifest(
        &self,
        manifest: &NewManifest,
        tag: Option<&Tag>,
        mv: &TagMove,
        check_references: bool,
        tag_immutable: bool,
    ) -> Result<(), MetaError> {
        let size = columns::size_to_db(manifest.size)?;
        let annotations = columns::annotations_to_db(manifest.annotations.as_ref())?;
        let now = columns::now_micros();

        on_engine!(self, |db| {
            let mut tx = db.write().await?;
            let id = tx.ensure_repo(&manifest.repo).await?;
            if check_references {
                // The manifest and its references, in digest order, so two pushes sharing
                // references cannot deadlock (GC only tries these locks: `gc.rs`).
                let mut locks: Vec<&str> = std::iter::once(&manifest.digest)
                    .chain(&manifest.blobs)
                    .chain(&manifest.children)
                    .map(Digest::as_str)
                    .collect();
                locks.sort_unstable();
                locks.dedup();
                for digest in locks {
                    tx.lock_reference(id, digest).await?;
                }
                for blob in &manifest.blobs {
                    let held: Option<i64> = sqlx::query_scalar(
                        "SELECT repo_id FROM repository_blobs WHERE repo_id = $1 AND digest = $2",
                    )
                    .bind(id)
                    .bind(blob.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                    let held = held.is_some()
                        // A manifest may reference another manifest's bytes as a blob only in
                        // odd artifacts; a manifest row holds those bytes as well.
                        || sqlx::query_scalar::<_, i64>(
                            "SELECT repo_id FROM manifests WHERE repo_id = $1 AND digest = $2",
                        )
                        .bind(id)
                        .bind(blob.as_str())
                        .fetch_optional(&mut *tx)
                        .await?
                        .is_some();
                    if !held {
                        return Err(MetaError::ReferencesMissing {
                            repo: manifest.repo.to_string(),
                            digest: manifest.digest.to_string(),
                            missing: blob.to_string(),
                        });
                    }
                }
                for child in &manifest.children {
                    let held: Option<i64> = sqlx::query_scalar(
                        "SELECT repo_id FROM manifests WHERE repo_id = $1 AND digest = $2",
                    )
                    .bind(id)
                    .bind(child.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                    if held.is_none() {
                        return Err(MetaError::ReferencesMissing {
                            repo: manifest.repo.to_string(),
                            digest: manifest.digest.to_string(),
                            missing: child.to_string(),
                        });
                    }
                }
            }
            let inserted = sqlx::query(
                "INSERT INTO manifests \
                   (repo_id, digest, media_type, size, artifact_type, subject_digest, annotations, \
                    created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (repo_id, digest) DO NOTHING",
            )
            .bind(id)
            .bind(manifest.digest.as_str())
            .bind(&manifest.media_type)
            .bind(size)
            .bind(manifest.artifact_type.as_deref())
            .bind(manifest.subject.as_ref().map(Digest::as_str))
            .bind(annotations)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;

            if inserted {
                // DO NOTHING tolerates a manifest listing the same layer twice.
                for blob in &manifest.blobs {
                    sqlx::query(
                        "INSERT INTO manifest_blobs (repo_id, manifest_digest, blob_digest) \
                         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    )
                    .bind(id)
                    .bind(manifest.digest.as_str())
                    .bind(blob.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
                for child in &manifest.children {
                    sqlx::query(
                        "INSERT INTO manifest_children (repo_id, manifest_digest, child_digest) \
                         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    )
                    .bind(id)
                    .bind(manifest.digest.as_str())
                    .bind(child.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
            }

            if let (Some(tag), true) = (tag, tag_immutable) {
                tx.keep_immutable_in(&manifest.repo, id, tag, &manifest.digest)
                    .await?;
            }

            let moved = match tag {
                Some(tag) => {
                    tx.move_tag_in(&manifest.repo, id, tag, Some(&manifest.digest), mv, now)
                        .await?
                }
                None => false,
            };

            if inserted || moved {
                tx.commit().await?;
            } else {
                // Nothing changed (except possibly a new repository row, which cannot happen when
                // the manifest already existed): skip the commit's fsync.
                tx.rollback().await?;
            }
            Ok(())
        })
    }

    /// A manifest of `repo` by digest.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        let row: Option<(String, String, i64)> = on_engine!(self, |db| sqlx::query_as(
            "SELECT m.digest, m.media_type, m.size \
             FROM manifests m JOIN repositories r ON r.id = m.repo_id \
             WHERE r.name = $1 AND m.digest = $2",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .fetch_optional(&db.readers)
        .await?);
        row.map(manifest_record).transpose()
    }

    /// Deletes a manifest of `repo` and every tag pointing to it (journaled). `false` if unknown.
    ///
    /// One transaction: each tag's removal is journaled with `mv`, then the manifest row goes
    /// with its blob and child references. Referrers naming it as subject stay (the spec lets
    /// them outlive their subject).
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], [`MetaError::CorruptValue`]; nothing is deleted then.
    #[tracing::instrument(level = "debug", skip_all, fields(%repo, %digest))]
    pub async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        mv: &TagMove,
    ) -> Result<bool, MetaError> {
        let now = columns::now_micros();
        on_engine!(self, |db| {
            let mut tx = db.write().await?;
            let Some(id) = tx.repo_id(repo).await? else {
                return Ok(false);
            };
            // In name order: on PostgreSQL each move takes its tag's lock, and a fixed order
            // keeps two deletes of the same manifest from deadlocking.
            let tags: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM tags WHERE repo_id = $1 AND digest = $2 ORDER BY name",
            )
            .bind(id)
            .bind(digest.as_str())
            .fetch_all(&mut *tx)
            .await?;
            for tag in tags {
                tx.move_tag_in(repo, id, &columns::tag(tag)?, None, mv, now)
                    .await?;
            }
            let deleted = sqlx::query("DELETE FROM manifests WHERE repo_id = $1 AND digest = $2")
                .bind(id)
                .bind(digest.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            if deleted {
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            Ok(deleted)
        })
    }

    /// Manifests of `repo` whose subject is `subject`, optionally only those of `artifact_type`.
    ///
    /// Ordered by digest, so pages and repeated answers are stable. The subject itself need not
    /// exist.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ReferrerRecord>, MetaError> {
        // Two plain statements rather than one with `($3 IS NULL OR m.artifact_type = $3)`:
        // each engine then plans each case on its own, without relying on it simplifying the OR.
        type Row = (String, String, i64, Option<String>, Option<String>);
        let rows: Vec<Row> = on_engine!(self, |db| match artifact_type {
            None => {
                sqlx::query_as(
                    "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations \
                     FROM manifests m JOIN repositories r ON r.id = m.repo_id \
                     WHERE r.name = $1 AND m.subject_digest = $2 \
                     ORDER BY m.digest",
                )
                .bind(repo.as_str())
                .bind(subject.as_str())
                .fetch_all(&db.readers)
                .await?
            }
            Some(artifact_type) => {
                sqlx::query_as(
                    "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations \
                     FROM manifests m JOIN repositories r ON r.id = m.repo_id \
                     WHERE r.name = $1 AND m.subject_digest = $2 AND m.artifact_type = $3 \
                     ORDER BY m.digest",
                )
                .bind(repo.as_str())
                .bind(subject.as_str())
                .bind(artifact_type)
                .fetch_all(&db.readers)
                .await?
            }
        });
        rows.into_iter()
            .map(|(digest, media_type, size, artifact_type, annotations)| {
                Ok(ReferrerRecord {
                    digest: columns::digest(digest)?,
                    media_type,
                    size: columns::size_from_db(size)?,
                    artifact_type,
                    annotations: columns::annotations_from_db(annotations)?,
                })
            })
            .collect()
    }
}
