//! Manifests, tags, the catalog and referrers.

use bytes::Bytes;
use pinfold_meta::{JournalEntry, ManifestRecord, NewManifest, ReferrerRecord, TagMoveSource};
use pinfold_oci::{Descriptor, Digest, Manifest, Reference, RepoName, Tag, MAX_MANIFEST_BYTES};

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
    /// MANIFEST_INVALID for bytes that are not a storable manifest or a descriptor whose size is
    /// not that of the stored blob or manifest, MANIFEST_BLOB_UNKNOWN when it references a blob
    /// or child manifest `repo` does not have (`check_references`). Nothing is stored then.
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
        self.check_references(repo, &manifest, &record).await?;

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
            self.forget_reference(repo, tag.as_str()).await;
        }
        self.cache().insert_bytes(&digest, bytes);
        Ok(PushedManifest {
            digest,
            subject: record.subject,
        })
    }

    /// Refuses a manifest whose references `repo` does not hold, or holds with another size
    /// than the manifest's descriptor declares: one size lookup for the blobs (config and
    /// layers, except foreign ones) and one for the manifests (index children and the subject).
    ///
    /// A subject need not be stored (referrers may be pushed before it), but when it is, its
    /// size must match too. The recording transaction re-checks only presence: a digest's size
    /// cannot change while it is stored.
    ///
    /// # Errors
    /// MANIFEST_BLOB_UNKNOWN for a missing blob or child manifest, MANIFEST_INVALID naming the
    /// first descriptor (`config`, `layers[i]`, `manifests[i]`, `subject`) whose size is wrong.
    async fn check_references(
        &self,
        repo: &RepoName,
        manifest: &Manifest,
        record: &NewManifest,
    ) -> Result<(), OciError> {
        let blob_sizes = self.meta().blob_sizes(repo, &record.blobs).await?;
        if let Some(missing) = record.blobs.iter().find(|d| !blob_sizes.contains_key(*d)) {
            return Err(OciError::new(ErrorCode::ManifestBlobUnknown)
                .detail(format!("blob {missing} is not in {repo}")));
        }
        let blobs = manifest
            .config
            .iter()
            .map(|d| ("config".to_owned(), d))
            .chain(
                manifest
                    .layers
                    .iter()
                    .enumerate()
                    .map(|(i, d)| (format!("layers[{i}]"), d)),
            );
        for (field, d) in blobs.filter(|(_, d)| !d.is_foreign()) {
            check_size(&field, d, "blob", blob_sizes.get(&d.digest))?;
        }

        let asked: Vec<Digest> = record
            .children
            .iter()
            .chain(&record.subject)
            .cloned()
            .collect();
        let manifest_sizes = self.meta().manifest_sizes(repo, &asked).await?;
        if let Some(missing) = record
            .children
            .iter()
            .find(|d| !manifest_sizes.contains_key(*d))
        {
            return Err(OciError::new(ErrorCode::ManifestBlobUnknown)
                .detail(format!("manifest {missing} is not in {repo}")));
        }
        for (i, d) in manifest.manifests.iter().enumerate() {
            check_size(
                &format!("manifests[{i}]"),
                d,
                "manifest",
                manifest_sizes.get(&d.digest),
            )?;
        }
        if let Some(subject) = &manifest.subject {
            check_size(
                "subject",
                subject,
                "manifest",
                manifest_sizes.get(&subject.digest),
            )?;
        }
        Ok(())
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
        self.forget_all_references().await;
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

/// MANIFEST_INVALID when the descriptor at `field` declares a size other than `stored`, the
/// size of the stored `kind` ("blob" or "manifest"); nothing to check when it is not stored.
fn check_size(
    field: &str,
    descriptor: &Descriptor,
    kind: &str,
    stored: Option<&u64>,
) -> Result<(), OciError> {
    match stored {
        Some(&stored) if stored != descriptor.size => {
            Err(OciError::new(ErrorCode::ManifestInvalid).detail(format!(
                "{field} {} declares size {}, the stored {kind} has {stored} bytes",
                descriptor.digest, descriptor.size
            )))
        }
        _ => Ok(()),
    }
}
