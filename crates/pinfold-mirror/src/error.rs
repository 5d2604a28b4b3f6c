//! The mirror's one error type. The server maps it to OCI error answers; variants name the
//! condition so that mapping never matches on text.

use pinfold_client::ClientError;

/// What went wrong serving from an upstream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorError {
    /// The mirror configuration is invalid (checked at start-up).
    #[error("mirror configuration: {0}")]
    Config(String),
    /// A `ns=` parameter or path prefix names no configured upstream.
    #[error("no upstream named {0:?} is configured")]
    UnknownUpstream(String),
    /// The upstream does not have it and nothing is cached.
    #[error("upstream {upstream} does not have {what}")]
    NotFound {
        /// The upstream's name.
        upstream: String,
        /// What was asked for.
        what: String,
    },
    /// The upstream failed (unreachable, rate limit, 5xx, refused credentials, a response
    /// that does not verify) and nothing usable is cached. Nothing was stored.
    #[error("upstream {upstream}: {source}")]
    Upstream {
        /// The upstream's name.
        upstream: String,
        /// The client's error.
        #[source]
        source: ClientError,
    },
    /// The upstream sent a manifest Pinfold cannot store (schema 1, malformed).
    #[error("upstream {upstream} sent an invalid manifest: {source}")]
    InvalidManifest {
        /// The upstream's name.
        upstream: String,
        /// Why it is invalid.
        #[source]
        source: pinfold_oci::ManifestError,
    },
    /// The upstream fetch of a blob failed while clients were streaming it.
    #[error("upstream fetch of {digest} failed: {reason}")]
    FetchFailed {
        /// The blob.
        digest: pinfold_oci::Digest,
        /// Why.
        reason: String,
    },
    /// Every request slot to the upstream (`max_connections`) stayed taken for as long as a
    /// client may wait.
    #[error(
        "upstream {upstream} is busy: {limit} requests in flight, none finished within {waited:?}"
    )]
    Busy {
        /// The upstream's name.
        upstream: String,
        /// Its `max_connections`.
        limit: usize,
        /// How long this request waited.
        waited: std::time::Duration,
    },
    /// The metadata store failed.
    #[error(transparent)]
    Meta(#[from] pinfold_meta::MetaError),
    /// The blob store failed.
    #[error(transparent)]
    Store(#[from] pinfold_store::StoreError),
}

impl MirrorError {
    /// The error for a failed upstream call: [`MirrorError::NotFound`] when the upstream
    /// answered 404, [`MirrorError::Upstream`] otherwise.
    pub fn upstream(upstream: &str, source: ClientError) -> MirrorError {
        match source {
            ClientError::NotFound { what, .. } => MirrorError::NotFound {
                upstream: upstream.to_owned(),
                what,
            },
            source => MirrorError::Upstream {
                upstream: upstream.to_owned(),
                source,
            },
        }
    }
}
