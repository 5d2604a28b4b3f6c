//! The registry's rules, between the `/v2/` handlers and the store and metadata crates.
//!
//! Handlers parse requests and shape responses; everything that decides (which blobs a
//! manifest needs, in what order bytes and metadata become durable, what the caches may keep)
//! happens here, in one place per operation.

mod cache;
pub mod gc;
mod manifests;
mod pull;
mod uploads;

use std::sync::Arc;

use pinfold_meta::{Meta, TagMove, TagMoveSource};
use pinfold_mirror::Mirror;
use pinfold_oci::{Digest, RepoName};
use pinfold_store::{BlobFile, BlobStore};

pub use cache::ManifestCache;
pub use manifests::{ManifestBody, PushedManifest};
pub use pull::BlobBody;

use crate::v2::error::{ErrorCode, OciError};

/// Shared registry state. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: BlobStore,
    meta: Meta,
    cache: ManifestCache,
    max_blob_bytes: Option<u64>,
    max_upload_sessions_per_user: u32,
    mirror: Option<Mirror>,
    /// Retention, immutability and GC settings (`gc.rs`).
    rules: std::sync::OnceLock<gc::GcRules>,
    /// Orders file writes against GC's file deletion (`gc.rs`).
    file_guard: gc::FileGuard,
}

impl Registry {
    /// A registry over `store` and `meta`, pulling through `mirror` for mirrored names, with
    /// the cache size and upload limits of `config`.
    pub fn new(
        store: BlobStore,
        meta: Meta,
        config: &crate::ServerConfig,
        mirror: Option<Mirror>,
    ) -> Registry {
        Registry {
            inner: Arc::new(Inner {
                store,
                meta,
                cache: ManifestCache::new(config.manifest_cache_bytes),
                max_blob_bytes: config.max_blob_bytes,
                max_upload_sessions_per_user: config.max_upload_sessions_per_user,
                mirror,
                rules: std::sync::OnceLock::new(),
                file_guard: gc::FileGuard::default(),
            }),
        }
    }

    /// The metadata store.
    pub fn meta(&self) -> &Meta {
        &self.inner.meta
    }

    /// The blob store.
    pub fn store(&self) -> &BlobStore {
        &self.inner.store
    }

    fn cache(&self) -> &ManifestCache {
        &self.inner.cache
    }

    /// Forgets what `tag` of `repo` resolves to, in this process and, through the metadata's
    /// change notices, in every other replica (called after the move committed).
    async fn forget_reference(&self, repo: &RepoName, tag: &str) {
        self.cache().invalidate_reference(repo, tag);
        self.announce(&format!("{repo}\n{tag}")).await;
    }

    /// Forgets every resolved reference, here and in every other replica.
    async fn forget_all_references(&self) {
        self.cache().invalidate_all_references();
        self.announce("*").await;
    }

    async fn announce(&self, what: &str) {
        // The move itself committed; a replica that misses this notice serves the old digest
        // until its listener reconnects (which forgets everything), so it is logged loudly.
        if let Err(e) = self.meta().notify_change(what).await {
            tracing::warn!("cannot tell the other replicas about a tag move: {e}");
        }
    }

    /// Applies what another replica announced (`change-listener` worker).
    pub fn apply_change(&self, change: &pinfold_meta::Change) {
        let one = match change {
            pinfold_meta::Change::Changed(payload) => payload
                .split_once('\n')
                .and_then(|(repo, tag)| Some((repo.parse::<RepoName>().ok()?, tag))),
            pinfold_meta::Change::Lost => None,
        };
        match one {
            Some((repo, tag)) => self.cache().invalidate_reference(&repo, tag),
            None => self.cache().invalidate_all_references(),
        }
    }

    /// Who acts: the authenticated user of the current request, else `anonymous`.
    fn actor(source: TagMoveSource) -> TagMove {
        TagMove {
            actor: crate::auth::current_actor().unwrap_or_else(|| "anonymous".to_owned()),
            source,
        }
    }

    /// The size of a blob of `repo`.
    ///
    /// # Errors
    /// BLOB_UNKNOWN when `repo` does not have it.
    pub async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<u64, OciError> {
        let size = self
            .meta()
            .repo_blob_size(repo, digest)
            .await?
            .ok_or_else(|| OciError::new(ErrorCode::BlobUnknown).detail(digest.to_string()))?;
        // A client told "it exists" may reference it in a manifest next: keep it out of the
        // next GC's reach for the grace period (`gc.rs`).
        self.meta().gc_touch(repo, digest).await?;
        Ok(size)
    }

    /// Opens a blob of `repo` for streaming.
    ///
    /// # Errors
    /// BLOB_UNKNOWN when `repo` does not have it (or its file is gone: `pinfold verify` reports
    /// that as corruption).
    pub async fn open_blob(&self, repo: &RepoName, digest: &Digest) -> Result<BlobFile, OciError> {
        self.blob_size(repo, digest).await?;
        match self.store().open_blob(digest).await? {
            Some(file) => Ok(file),
            None => {
                tracing::error!(%repo, %digest, "blob linked in metadata but missing from the store");
                Err(OciError::new(ErrorCode::BlobUnknown).detail(digest.to_string()))
            }
        }
    }

    /// Removes a blob from `repo` (its bytes stay until garbage collection).
    ///
    /// # Errors
    /// BLOB_UNKNOWN when `repo` does not have it.
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<(), OciError> {
        if self.meta().unlink_blob(repo, digest).await? {
            Ok(())
        } else {
            Err(OciError::new(ErrorCode::BlobUnknown).detail(digest.to_string()))
        }
    }
}
