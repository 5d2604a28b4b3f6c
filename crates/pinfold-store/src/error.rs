use std::path::Path;

use pinfold_oci::Digest;

/// What went wrong in the blob store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The content received does not hash to the digest the client announced.
    #[error("content digest {actual} does not match the expected {expected}")]
    DigestMismatch {
        /// Digest the client announced.
        expected: Digest,
        /// Digest of what was received.
        actual: Digest,
    },
    /// No upload session with this id (never existed, completed, or cancelled).
    #[error("upload {0} is unknown")]
    UploadUnknown(String),
    /// A chunk was sent for an offset other than the upload's current end.
    #[error("chunk starts at {requested} but the upload has {current} bytes")]
    UploadOffsetMismatch {
        /// Bytes the upload holds.
        current: u64,
        /// Where the client said its chunk starts.
        requested: u64,
    },
    /// The upload would grow past the configured maximum blob size.
    #[error("upload exceeds the maximum blob size of {max} bytes")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// The request body failed before it ended (client disconnect, timeout); nothing was kept.
    #[error("request body ended early: {0}")]
    BodyInterrupted(String),
    /// A stored blob is larger than the caller is willing to read into memory
    /// ([`BlobStore::read_blob`](crate::BlobStore::read_blob)). The blob is intact; a server
    /// answers 500 because it wrote the blob itself.
    #[error("blob {digest} has {size} bytes, more than the {max} allowed here")]
    BlobTooLarge {
        /// The blob.
        digest: Digest,
        /// Its size on disk.
        size: u64,
        /// The caller's limit.
        max: u64,
    },
    /// An object-storage request failed (after the client's retries).
    #[error("{op} {key}: {source}")]
    Object {
        /// What was being done.
        op: &'static str,
        /// On which object (`s3://bucket/prefix at endpoint/key`).
        key: String,
        /// The store's error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// The object store cannot be used: a missing bucket, refused credentials, an unreachable
    /// endpoint (checked when the store is opened). One line, never the secret.
    #[error("object storage {place}: {reason}")]
    Unavailable {
        /// Where the store is.
        place: String,
        /// What is wrong.
        reason: String,
    },
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// An [`StoreError::Io`] naming what was done to which path.
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            op,
            path: path.display().to_string(),
            source,
        }
    }
}
