//! The records the metadata store reads and writes.

use std::collections::BTreeMap;

use pinfold_oci::{Digest, RepoName, Tag};
use serde::Serialize;
use time::OffsetDateTime;

/// Why a tag moved; recorded in every journal row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TagMoveSource {
    /// A client pushed a manifest with this tag.
    Push,
    /// A client deleted the tag, or the manifest it pointed to.
    Delete,
    /// The pull-through mirror resolved the tag upstream.
    Mirror,
    /// A person accepted an upstream move.
    Promote,
    /// A backup was restored.
    Restore,
    /// A retention rule removed the tag (garbage collection).
    Retention,
}

impl TagMoveSource {
    /// The text stored in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            TagMoveSource::Push => "push",
            TagMoveSource::Delete => "delete",
            TagMoveSource::Mirror => "mirror",
            TagMoveSource::Promote => "promote",
            TagMoveSource::Restore => "restore",
            TagMoveSource::Retention => "retention",
        }
    }
}

/// Who moved a tag and why.
#[derive(Debug, Clone)]
pub struct TagMove {
    /// The user or component that moved it (`anonymous` until authentication exists).
    pub actor: String,
    /// Why.
    pub source: TagMoveSource,
}

/// A manifest about to be recorded (its bytes are already in the blob store).
#[derive(Debug, Clone)]
pub struct NewManifest {
    /// Repository it is pushed to.
    pub repo: RepoName,
    /// Digest of its bytes.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Size of its bytes.
    pub size: u64,
    /// What the referrers API reports as its artifact type.
    pub artifact_type: Option<String>,
    /// The manifest it refers to, if any.
    pub subject: Option<Digest>,
    /// Its top-level annotations (reported by the referrers API).
    pub annotations: Option<BTreeMap<String, String>>,
    /// Blobs it references (config and layers).
    pub blobs: Vec<Digest>,
    /// Manifests it references (index children).
    pub children: Vec<Digest>,
}

impl NewManifest {
    /// The record of `manifest`, whose bytes (`size` of them) hash to `digest`, in `repo`:
    /// what it references, its subject and what the referrers API reports about it. One
    /// place for pushes and the mirror alike.
    pub fn describe(
        repo: &RepoName,
        digest: &Digest,
        manifest: &pinfold_oci::Manifest,
        size: u64,
    ) -> NewManifest {
        let mut blobs: Vec<Digest> = manifest
            .required_blobs()
            .map(|d| d.digest.clone())
            .collect();
        blobs.sort();
        blobs.dedup();
        let mut children: Vec<Digest> = manifest
            .manifests
            .iter()
            .map(|d| d.digest.clone())
            .collect();
        children.sort();
        children.dedup();
        NewManifest {
            repo: repo.clone(),
            digest: digest.clone(),
            media_type: manifest.kind.media_type().to_owned(),
            size,
            artifact_type: manifest.referrer_artifact_type().map(str::to_owned),
            subject: manifest.subject.as_ref().map(|s| s.digest.clone()),
            annotations: manifest.annotations.clone(),
            blobs,
            children,
        }
    }
}

/// A stored manifest, as needed to serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    /// Digest of its bytes.
    pub digest: Digest,
    /// Its media type (served as Content-Type).
    pub media_type: String,
    /// Size of its bytes.
    pub size: u64,
}

/// A manifest that names another as its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferrerRecord {
    /// Digest of the referrer.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size.
    pub size: u64,
    /// Its artifact type.
    pub artifact_type: Option<String>,
    /// Its top-level annotations.
    pub annotations: Option<BTreeMap<String, String>>,
}

/// One row of the tag journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalEntry {
    /// Monotonic id; the journal is ordered by it.
    pub id: i64,
    /// Repository.
    pub repository: RepoName,
    /// Tag.
    pub tag: Tag,
    /// Where the tag pointed before (`None`: it did not exist).
    pub previous_digest: Option<Digest>,
    /// Where it points now (`None`: it was deleted).
    pub new_digest: Option<Digest>,
    /// When, in UTC.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who.
    pub actor: String,
    /// Why.
    pub source: TagMoveSource,
}

/// An upload session's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    /// The session id (as issued by the blob store).
    pub id: String,
    /// The repository it uploads to.
    pub repo: RepoName,
    /// When it started.
    pub created_at: OffsetDateTime,
}
