//! The one error type of the client. Variants name the condition so callers (the mirror, the
//! CLI tools) can decide without matching on text: a mirror answers 404 for `NotFound`, backs
//! off on `TooManyRequests`, and never stores anything that ended in `DigestMismatch`.

use std::time::Duration;

use pinfold_oci::{Digest, DigestError};
use serde::Deserialize;

/// What went wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The registry refused our credentials (or wanted some and we had none), after the one
    /// retry with a fresh token or Basic credentials.
    #[error("registry {registry} refused the request as unauthorized")]
    Unauthorized {
        /// The registry host.
        registry: String,
    },
    /// The repository, manifest or blob does not exist (HTTP 404).
    #[error("not found: {what}")]
    NotFound {
        /// What was asked for, as `repository:reference` or `repository@digest`.
        what: String,
        /// The OCI error code when the registry sent one (`MANIFEST_UNKNOWN`, `NAME_UNKNOWN`, ...).
        code: Option<String>,
    },
    /// The bytes received do not hash to the digest they were supposed to have.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest asked for or announced by `Docker-Content-Digest`.
        expected: Digest,
        /// The digest of the bytes actually received.
        actual: Digest,
    },
    /// The body is not as long as announced: cut short, or longer than `Content-Length`.
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// Bytes announced.
        expected: u64,
        /// Bytes received (when longer, the count at which reading stopped).
        actual: u64,
    },
    /// A manifest body is larger than the limit ([`pinfold_oci::MAX_MANIFEST_BYTES`]).
    #[error("manifest is larger than {limit} bytes")]
    ManifestTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The manifest's `Content-Type` is not one of the four manifest media types.
    #[error("registry answered a manifest with unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    /// A `Docker-Content-Digest` header is not a digest Pinfold can verify.
    #[error("registry sent an invalid Docker-Content-Digest header")]
    InvalidDigestHeader(#[source] DigestError),
    /// HTTP 429; `retry_after` from the `Retry-After` header (seconds or HTTP date) if sent.
    #[error("registry rate limit hit (retry after {retry_after:?})")]
    TooManyRequests {
        /// How long the registry asked us to wait.
        retry_after: Option<Duration>,
    },
    /// Any other unsuccessful status, with the first error of the OCI error envelope when the
    /// body had one.
    #[error("registry answered {status}: {code:?} {message:?}")]
    Upstream {
        /// The HTTP status code.
        status: u16,
        /// The OCI error code (`DENIED`, `UNSUPPORTED`, ...), if any.
        code: Option<String>,
        /// The error's message, if any.
        message: Option<String>,
    },
    /// A 401 carried a `WWW-Authenticate` header we cannot act on.
    #[error("cannot parse WWW-Authenticate challenge: {0}")]
    BadChallenge(String),
    /// The token endpoint failed or answered something that is not a token.
    #[error("token endpoint {realm} failed: {reason}")]
    TokenEndpoint {
        /// The realm URL (never contains credentials: they go in a header).
        realm: String,
        /// What was wrong.
        reason: String,
    },
    /// The `tags/list` pagination went on for more pages than the configured bound.
    #[error("tag listing did not end within {limit} pages")]
    TooManyPages {
        /// The page bound.
        limit: usize,
    },
    /// A registry answer could not be understood (bad JSON, bad `Link` header, ...).
    #[error("invalid registry response: {0}")]
    InvalidResponse(String),
    /// The registry host or URL cannot be used.
    #[error("invalid registry address {0:?}")]
    InvalidRegistry(String),
    /// `~/.docker/config.json` exists but cannot be read or parsed.
    #[error("cannot read docker config {path}: {reason}")]
    DockerConfig {
        /// The file.
        path: String,
        /// Why (I/O or JSON error text; never contains a secret).
        reason: String,
    },
    /// A `docker-credential-<name>` helper failed, timed out or answered garbage.
    #[error("credential helper docker-credential-{helper} failed: {reason}")]
    CredentialHelper {
        /// The helper's name (the part after `docker-credential-`).
        helper: String,
        /// Why (never the helper's output, which may hold a secret).
        reason: String,
    },
    /// Connecting, sending or reading failed (including timeouts and refused redirects).
    #[error("transport error: {}", with_causes(.0))]
    Transport(#[from] reqwest::Error),
}

/// `error` and its causes, `: `-separated: reqwest's own message is generic ("error following
/// redirect"), the reason (which host was refused, which connection failed) is in its sources.
fn with_causes(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    // Bounded: a cause chain is a handful of links.
    for _ in 0..8 {
        let Some(cause) = source else { break };
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The OCI error envelope: `{"errors":[{"code":..,"message":..,"detail":..}]}`.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    errors: Vec<EnvelopeError>,
}

#[derive(Deserialize)]
struct EnvelopeError {
    code: Option<String>,
    message: Option<String>,
}

/// The first error's code and message from an OCI error body, if it is one.
pub(crate) fn parse_envelope(body: &[u8]) -> (Option<String>, Option<String>) {
    match serde_json::from_slice::<Envelope>(body) {
        Ok(env) => match env.errors.into_iter().next() {
            Some(e) => (e.code, e.message),
            None => (None, None),
        },
        Err(_) => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_gives_first_code_and_message() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}},{"code":"X"}]}"#;
        assert_eq!(
            parse_envelope(body),
            (
                Some("MANIFEST_UNKNOWN".into()),
                Some("manifest unknown".into())
            )
        );
        assert_eq!(parse_envelope(b"<html>"), (None, None));
        assert_eq!(parse_envelope(br#"{"errors":[]}"#), (None, None));
    }
}
