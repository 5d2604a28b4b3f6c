//! Manifests, tags, the catalog and referrers.

use bytes::Bytes;
use pinfold_meta::{JournalEntry, ManifestRecord, NewManifest, ReferrerRecord, TagMoveSource};
use pinfold_oci::{Digest, Manifest, Reference, RepoName, Tag, MAX_MANIFEST_BYTES};

use super::Registry;
use crate::v2::error::{ErrorCode, OciError};

/// A manifest as served: its record and its exact bytes.
#[derive(Debug, Clone)]
pub struct ManifestBody {
    /// Digest, media type, size.
    pub record: ManifestRecord,
    /// The bytes exactly as pushed.
    pub bytes: Bytes,
}

/// What a manifest push produced.
#[derive(Debug, Clone)]
pub struct PushedManifest {
    /// The digest of the stored bytes.
    pub digest: Digest,
    /// The manifest's subject, answered as `OCI-Subject`.
    pub subject: Option<Digest>,
}

impl Registry {
    /// Resolves a reference of `repo` to its record, through the cache.
    ///
    /// # Errors
    /// MANIFEST_UNKNOWN when the reference does not resolve in `repo`.
    pub async fn resolve(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<ManifestRecord, OciError> {
        let key = reference.to_string();
        if let Some(record) = self.cache().reference(repo, &key) {
            return Ok(record);
        }
        let seen = self.cache().generation();
        let found = match reference {
            Reference::Tag(tag) => self.meta().resolve_tag(repo, tag).await?,
            Reference::Digest(digest) => self.meta().manifest(repo, digest).await?,
        };
        let record = found.ok_or_else(|| {
            OciError::new(ErrorCode::ManifestUnknown).detail(format!("{repo}:{key}"))
        })?;
        self.cache()
            .insert_reference(seen, repo, &key, record.clone());
        Ok(record)
    }

    /// A manifest of `repo` with its bytes.
    ///
    /// # Errors
    /// MANIFEST_UNKNOWN when the reference does not resolve in `repo`.
    pub async fn manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<ManifestBody, OciError> {
        let record = self.resolve(repo, reference).await?;
        if let Some(bytes) = self.cache().bytes(&record.digest) {
            return Ok(ManifestBody { record, bytes });
        }
        let bytes = self
            .store()
            .read_blob(&record.digest, MAX_MANIFEST_BYTES)
            .await?
            .ok_or_else(|| {
                OciError::internal(&format!(
                    "manifest {} is recorded but its bytes are missing",
                    record.digest
                ))
            })?;
        self.cache().insert_bytes(&record.digest, bytes.clone());
        Ok(ManifestBody { record, bytes })
    }

    /// Stores a manifest pushed to `repo` under `reference` (a tag or its digest).
    ///
    /// The bytes are verified and made durable in the blob store first; then one metadata
    /// transaction records the manifest, its references, the tag and the journal row. A crash
    /// between the two leaves an unreferenced blob, never a tag pointing at missing bytes.
    ///
    /// # Errors
    /// TAG_INVALID/DIGEST_INVALID for a bad reference or a digest that does not match,
    /// MANIFEST_INVALID for bytes that are not a storable manifest, MANIFEST_BLOB_UNKNOWN when it
    /// references a blob or child manifest `repo` does not have.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &str,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<PushedManifest, OciError> {
        let reference: Reference = reference.parse()?;
        let manifest = Manifest::parse(content_type, &bytes)?;
        let (digest, tag) = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::compute(expected.algorithm(), &bytes);
                if actual != expected {
                    return Err(OciError::new(ErrorCode::DigestInvalid)
                        .detail(format!("manifest digest is {actual}, not {expected}")));
                }
                (expected, None)
            }
            Reference::Tag(tag) => (Digest::sha256(&bytes), Some(tag)),
        };

        let record = NewManifest::describe(repo, &digest, &manifest, bytes.len() as u64);
        if let Some(missing) = self
            .meta()
            .missing_blobs(repo, &record.blobs)
            .await?
            .first()
        {
            return Err(OciError::new(ErrorCode::ManifestBlobUnknown)
                .detail(format!("blob {missing} is not in {repo}")));
        }
        if let Some(missing) = self
            .meta()
            .missing_manifests(repo, &record.children)
            .await?
            .first()
        {
            return Err(OciError::new(ErrorCode::ManifestBlobUnknown)
                .detail(format!("manifest {missing} is not in {repo}")));
        }

        // Refused here before the bytes are written, and again in the recording transaction
        // (a concurrent push may set the tag in between).
        let immutable = match &tag {
            Some(tag) => {
                self.check_immutable(repo, tag, &digest).await?;
                self.rules()
                    .immutable_rule(repo.as_str(), tag.as_str())
                    .is_some()
            }
            None => false,
        };

        // GC must not delete the bytes between their write and the record (`gc.rs`); the
        // record re-checks the references in its transaction, so a blob collected since the
        // checks above fails the push instead of leaving a manifest with a missing blob.
        let _writing = self.inner.file_guard.writing(&digest).await;
        self.store().put_blob(&digest, bytes.clone()).await?;
        match self
            .meta()
            .put_manifest_checked(
                &record,
                tag.as_ref(),
                &Self::actor(TagMoveSource::Push),
                immutable,
            )
            .await
        {
            Ok(()) => {}
            Err(pinfold_meta::MetaError::ReferencesMissing { missing, .. }) => {
                return Err(OciError::new(ErrorCode::ManifestBlobUnknown)
                    .detail(format!("{missing} is not in {repo}")))
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(tag) = &tag {
            self.cache().invalidate_reference(repo, tag.as_str());
        }
        self.cache().insert_bytes(&digest, bytes);
        Ok(PushedManifest {
            digest,
            subject: record.subject,
        })
    }

    /// Deletes a manifest by digest (and every tag on it), or only a tag.
    ///
    /// # Errors
    /// MANIFEST_UNKNOWN when there is nothing to delete; TAG_INVALID/DIGEST_INVALID for a bad
    /// reference.
    pub async fn delete_manifest(&self, repo: &RepoName, reference: &str) -> Result<(), OciError> {
        let reference: Reference = reference.parse()?;
        let mv = Self::actor(TagMoveSource::Delete);
        let deleted = match &reference {
            Reference::Digest(digest) => self.meta().delete_manifest(repo, digest, &mv).await?,
            Reference::Tag(tag) => self.meta().delete_tag(repo, tag, &mv).await?,
        };
        // Deleting by digest may remove many tags; forget every cached reference.
        self.cache().invalidate_all_references();
        if deleted {
            Ok(())
        } else {
            Err(OciError::new(ErrorCode::ManifestUnknown).detail(format!("{repo}:{reference}")))
        }
    }

    /// A page of `repo`'s tags.
    ///
    /// # Errors
    /// NAME_UNKNOWN when the repository does not exist.
    pub async fn tags(
        &self,
        repo: &RepoName,
        limit: Option<u32>,
        last: Option<&str>,
    ) -> Result<Vec<Tag>, OciError> {
        self.meta()
            .list_tags(repo, limit, last)
            .await?
            .ok_or_else(|| OciError::new(ErrorCode::NameUnknown).detail(repo.to_string()))
    }

    /// A page of repository names.
    pub async fn catalog(
        &self,
        limit: Option<u32>,
        last: Option<&str>,
    ) -> Result<Vec<RepoName>, OciError> {
        Ok(self.meta().list_repositories(limit, last).await?)
    }

    /// Manifests of `repo` whose subject is `subject`.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ReferrerRecord>, OciError> {
        Ok(self.meta().referrers(repo, subject, artifact_type).await?)
    }

    /// Every move of a tag, oldest first.
    pub async fn tag_history(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Vec<JournalEntry>, OciError> {
        Ok(self.meta().tag_history(repo, tag).await?)
    }
}
