//! The SQLite engine.

use std::path::Path;

use pinfold_oci::{Digest, RepoName, Tag};
use time::OffsetDateTime;

use crate::{
    JournalEntry, ManifestRecord, MetaError, NewManifest, ReferrerRecord, TagMove, UploadRecord,
};

/// Handle to the metadata store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Meta {}

#[allow(unused_variables)]
impl Meta {
    /// Opens (creating and migrating if needed) the SQLite database at `path`.
    pub async fn open_sqlite(path: &Path) -> Result<Meta, MetaError> {
        todo!()
    }

    /// Closes the pools, checkpointing the WAL.
    pub async fn close(&self) {
        todo!()
    }

    /// Repository names in lexical order, at most `limit`, strictly after `last`.
    pub async fn list_repositories(
        &self,
        limit: Option<u32>,
        last: Option<&str>,
    ) -> Result<Vec<RepoName>, MetaError> {
        todo!()
    }

    /// True if the repository exists (has ever had a blob, manifest or upload).
    pub async fn repository_exists(&self, repo: &RepoName) -> Result<bool, MetaError> {
        todo!()
    }

    /// Makes a stored blob part of `repo` (creating the repository if needed). Idempotent.
    pub async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<(), MetaError> {
        todo!()
    }

    /// The size of a blob if it is part of `repo`.
    pub async fn repo_blob_size(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetaError> {
        todo!()
    }

    /// The size of a blob if any repository has it.
    pub async fn any_blob_size(&self, digest: &Digest) -> Result<Option<u64>, MetaError> {
        todo!()
    }

    /// Removes a blob from `repo`. `false` if it was not part of it.
    pub async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, MetaError> {
        todo!()
    }

    /// Which of `digests` are not blobs of `repo`.
    pub async fn missing_blobs(
        &self,
        repo: &RepoName,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, MetaError> {
        todo!()
    }

    /// Which of `digests` are not manifests of `repo`.
    pub async fn missing_manifests(
        &self,
        repo: &RepoName,
        digests: &[Digest],
    ) -> Result<Vec<Digest>, MetaError> {
        todo!()
    }

    /// Records a manifest and, with `tag`, points the tag at it, in one transaction that also
    /// writes the journal row when the tag's digest changes.
    pub async fn put_manifest(
        &self,
        manifest: &NewManifest,
        tag: Option<&Tag>,
        mv: &TagMove,
    ) -> Result<(), MetaError> {
        todo!()
    }

    /// A manifest of `repo` by digest.
    pub async fn manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        todo!()
    }

    /// The manifest a tag points to.
    pub async fn resolve_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<ManifestRecord>, MetaError> {
        todo!()
    }

    /// Deletes a manifest of `repo` and every tag pointing to it (journaled). `false` if unknown.
    pub async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        mv: &TagMove,
    ) -> Result<bool, MetaError> {
        todo!()
    }

    /// Deletes a tag (journaled); the manifest stays. `false` if unknown.
    pub async fn delete_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        mv: &TagMove,
    ) -> Result<bool, MetaError> {
        todo!()
    }

    /// Tags of `repo` in lexical order, at most `limit`, strictly after `last`; `None` if the
    /// repository does not exist.
    pub async fn list_tags(
        &self,
        repo: &RepoName,
        limit: Option<u32>,
        last: Option<&str>,
    ) -> Result<Option<Vec<Tag>>, MetaError> {
        todo!()
    }

    /// Manifests of `repo` whose subject is `subject`, optionally only those of `artifact_type`.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ReferrerRecord>, MetaError> {
        todo!()
    }

    /// Every journal row of a tag, oldest first.
    pub async fn tag_history(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Vec<JournalEntry>, MetaError> {
        todo!()
    }

    /// Records a new upload session for `repo` (creating the repository if needed).
    pub async fn create_upload(&self, id: &str, repo: &RepoName) -> Result<(), MetaError> {
        todo!()
    }

    /// An upload session.
    pub async fn upload(&self, id: &str) -> Result<Option<UploadRecord>, MetaError> {
        todo!()
    }

    /// Forgets an upload session. `false` if unknown.
    pub async fn delete_upload(&self, id: &str) -> Result<bool, MetaError> {
        todo!()
    }

    /// Upload sessions started before `before` (for the janitor).
    pub async fn uploads_started_before(
        &self,
        before: OffsetDateTime,
    ) -> Result<Vec<UploadRecord>, MetaError> {
        todo!()
    }
}
