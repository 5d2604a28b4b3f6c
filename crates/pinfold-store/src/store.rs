//! The blob store: durable, verified, content-addressed files.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::Stream;
use pinfold_oci::Digest;

use crate::{StoreError, UploadId};

/// An open blob, ready to be streamed whole or in part.
#[derive(Debug)]
pub struct BlobFile {
    /// Size of the blob in bytes.
    pub size: u64,
    file: std::fs::File,
}

impl BlobFile {
    /// Streams bytes `start..start + len` of the blob, in chunks of up to 1 MiB, read off the
    /// async runtime's worker threads.
    ///
    /// The caller has checked `start + len <= self.size`.
    pub fn into_stream(
        self,
        start: u64,
        len: u64,
    ) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let _ = (start, len, self.file);
        futures_util::stream::empty()
    }
}

/// The content-addressed blob store rooted at one directory. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Opens (creating if needed) the store at `root`.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the directories cannot be created.
    pub fn open(root: impl Into<PathBuf>) -> Result<BlobStore, StoreError> {
        todo!("{:?}", root.into())
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The size of a stored blob, or `None` if it is not stored.
    pub async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        todo!("{digest}")
    }

    /// Opens a stored blob for reading, or `None` if it is not stored.
    pub async fn open_blob(&self, digest: &Digest) -> Result<Option<BlobFile>, StoreError> {
        todo!("{digest}")
    }

    /// Reads a whole blob into memory, or `None` if it is not stored. For manifests and
    /// configs; refuses blobs larger than `max_len`.
    pub async fn read_blob(
        &self,
        digest: &Digest,
        max_len: usize,
    ) -> Result<Option<Bytes>, StoreError> {
        todo!("{digest} {max_len}")
    }

    /// Stores `bytes` as the blob `digest` after verifying that they hash to it. A blob that
    /// already exists is left untouched.
    pub async fn put_blob(&self, digest: &Digest, bytes: Bytes) -> Result<(), StoreError> {
        todo!("{digest} {}", bytes.len())
    }

    /// Starts an upload session.
    pub async fn create_upload(&self) -> Result<UploadId, StoreError> {
        todo!()
    }

    /// Bytes received so far by an upload, or `None` if the upload is unknown.
    pub async fn upload_offset(&self, id: &UploadId) -> Result<Option<u64>, StoreError> {
        todo!("{id}")
    }

    /// Appends a request body to an upload that currently holds `expected_offset` bytes and
    /// returns the new offset. On any failure the upload is left exactly as it was.
    pub async fn append_upload<S, E>(
        &self,
        id: &UploadId,
        expected_offset: Option<u64>,
        body: S,
        max_size: Option<u64>,
    ) -> Result<u64, StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let _ = (body, max_size, expected_offset);
        todo!("{id}")
    }

    /// Completes an upload: verifies the received bytes hash to `expected`, makes the blob
    /// durable and visible, ends the session and returns the blob's size.
    pub async fn complete_upload(
        &self,
        id: &UploadId,
        expected: &Digest,
    ) -> Result<u64, StoreError> {
        todo!("{id} {expected}")
    }

    /// Cancels an upload and deletes what it received. `false` if it was unknown.
    pub async fn cancel_upload(&self, id: &UploadId) -> Result<bool, StoreError> {
        todo!("{id}")
    }
}
