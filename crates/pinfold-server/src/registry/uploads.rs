//! Blob upload sessions and cross-repository mounts.

use bytes::Bytes;
use futures_util::Stream;
use pinfold_oci::{Digest, RepoName};
use pinfold_store::{StoreError, UploadId};

use super::Registry;
use crate::v2::error::{ErrorCode, OciError};

/// Repositories holding a blob that content discovery considers at most: the first one the
/// caller may pull is the source. A blob in more repositories than this, none of the first
/// ones readable by the caller, is uploaded again, which is always correct.
const MAX_MOUNT_SOURCES: u32 = 1000;

impl Registry {
    fn upload_unknown(id: &str) -> OciError {
        OciError::new(ErrorCode::BlobUploadUnknown).detail(format!("upload {id} is unknown"))
    }

    /// Checks that `id` is a session of `repo` and returns its parsed id.
    async fn own_upload(&self, repo: &RepoName, id: &str) -> Result<UploadId, OciError> {
        let upload_id: UploadId = id.parse().map_err(|_| Self::upload_unknown(id))?;
        match self.meta().upload(upload_id.as_str()).await? {
            Some(record) if &record.repo == repo => Ok(upload_id),
            _ => Err(Self::upload_unknown(id)),
        }
    }

    /// Opens an upload session for `repo` on behalf of `owner` (see
    /// [`crate::auth::Access::quota_owner`]).
    ///
    /// # Errors
    /// TOOMANYREQUESTS when `owner` already holds `[server] max_upload_sessions_per_user`
    /// open sessions (nothing is created).
    pub async fn start_upload(&self, repo: &RepoName, owner: &str) -> Result<UploadId, OciError> {
        let id = self.store().create_upload().await?;
        let recorded = self
            .meta()
            .create_upload(
                id.as_str(),
                repo,
                owner,
                self.inner.max_upload_sessions_per_user,
            )
            .await;
        if let Err(e) = recorded {
            let _ = self.store().cancel_upload(&id).await;
            return Err(e.into());
        }
        Ok(id)
    }

    /// Links an existing blob into `repo` without sending it again: from `from` when given,
    /// otherwise from any repository (the spec's automatic content discovery), in both cases
    /// only from a repository `may_pull` accepts. `false` when the blob is not available to
    /// the caller, and the client must upload it; the caller cannot tell "stored elsewhere"
    /// from "stored nowhere".
    pub async fn mount_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
        may_pull: impl Fn(&RepoName) -> bool,
    ) -> Result<bool, OciError> {
        let size = match from {
            Some(from) if may_pull(from) => self.meta().repo_blob_size(from, digest).await?,
            Some(_) => None,
            None => {
                let holders = self
                    .meta()
                    .repositories_with_blob(digest, MAX_MOUNT_SOURCES)
                    .await?;
                holders
                    .iter()
                    .find(|(holder, _)| may_pull(holder))
                    .map(|(_, size)| *size)
            }
        };
        let Some(size) = size else { return Ok(false) };
        // GC must not delete the file between the check and the link (`gc.rs`).
        let _writing = self.inner.file_guard.writing(digest).await;
        // The metadata may outlive a blob file only through corruption; do not mount a ghost.
        if self.store().blob_size(digest).await?.is_none() {
            return Ok(false);
        }
        self.meta().link_blob(repo, digest, size).await?;
        self.meta().gc_touch(repo, digest).await?;
        Ok(true)
    }

    /// Bytes received so far by an upload of `repo`.
    pub async fn upload_offset(
        &self,
        repo: &RepoName,
        id: &str,
    ) -> Result<(UploadId, u64), OciError> {
        let upload_id = self.own_upload(repo, id).await?;
        let offset = self
            .store()
            .upload_offset(&upload_id)
            .await?
            .ok_or_else(|| Self::upload_unknown(id))?;
        Ok((upload_id, offset))
    }

    /// Appends a chunk that starts at `start` (when the client said so) and returns the new
    /// offset.
    pub async fn append_upload<S, E>(
        &self,
        repo: &RepoName,
        id: &str,
        start: Option<u64>,
        body: S,
    ) -> Result<(UploadId, u64), OciError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let upload_id = self.own_upload(repo, id).await?;
        let offset = self
            .store()
            .append_upload(&upload_id, start, body, self.inner.max_blob_bytes)
            .await?;
        Ok((upload_id, offset))
    }

    /// Ends an upload: appends the final chunk if any, verifies the digest, makes the blob
    /// durable and part of `repo`.
    pub async fn complete_upload<S, E>(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        start: Option<u64>,
        final_chunk: Option<S>,
    ) -> Result<(), OciError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let upload_id = self.own_upload(repo, id).await?;
        let appended = final_chunk.is_some();
        if let Some(body) = final_chunk {
            self.store()
                .append_upload(&upload_id, start, body, self.inner.max_blob_bytes)
                .await?;
        }
        // GC must not delete the file between its rename into place and the link (`gc.rs`).
        let _writing = self.inner.file_guard.writing(digest).await;
        let size = match self.store().complete_upload(&upload_id, digest).await {
            Ok(size) => size,
            Err(e @ StoreError::DigestMismatch { .. }) if appended => {
                // The refused request's chunk is in the session now and the store cannot take
                // it back: end the session, as distribution does, rather than keep bytes from a
                // request that failed ("bad input changes nothing").
                let _ = self.store().cancel_upload(&upload_id).await;
                let _ = self.meta().delete_upload(upload_id.as_str()).await;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        self.meta().link_blob(repo, digest, size).await?;
        // A re-upload of a blob the repository already links refreshes it for GC.
        self.meta().gc_touch(repo, digest).await?;
        self.meta().delete_upload(upload_id.as_str()).await?;
        Ok(())
    }

    /// Uploads a whole blob in one request (`POST ?digest=`).
    pub async fn upload_monolithic<S, E>(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: S,
    ) -> Result<(), OciError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        // A store-only session: nothing is recorded in the metadata (not even the repository)
        // unless the blob is accepted. A crash leaves an upload file the janitor removes.
        let id = self.store().create_upload().await?;
        let mut writing = None;
        let stored = async {
            self.store()
                .append_upload(&id, Some(0), body, self.inner.max_blob_bytes)
                .await?;
            // Held from the rename into place to the link, not while the body streams.
            writing = Some(self.inner.file_guard.writing(digest).await);
            self.store().complete_upload(&id, digest).await
        }
        .await;
        match stored {
            Ok(size) => {
                self.meta().link_blob(repo, digest, size).await?;
                self.meta().gc_touch(repo, digest).await?;
                drop(writing);
                Ok(())
            }
            Err(e) => {
                // Nothing of a failed single-request upload may linger.
                let _ = self.store().cancel_upload(&id).await;
                Err(e.into())
            }
        }
    }

    /// Cancels an upload of `repo`.
    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<(), OciError> {
        let upload_id = self.own_upload(repo, id).await?;
        self.store().cancel_upload(&upload_id).await?;
        self.meta().delete_upload(upload_id.as_str()).await?;
        Ok(())
    }
}
