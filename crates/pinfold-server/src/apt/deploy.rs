//! `PUT /artifactory/<repo>/<path>;deb.distribution=D;deb.component=C;deb.architecture=A` (the
//! Artifactory deploy call CI jobs already make, DESIGN.md story 4) and the same under
//! `PUT /apt/<repo>/<path>;...`.
//!
//! Checked before the body is read: the path and matrix, the credentials and the declared
//! length, so a refused upload with `Expect: 100-continue` sends no body at all (hyper sends
//! `100 Continue` only once the body is polled). The body is then streamed into a store
//! upload session (on disk, bounded, hashed with MD5, SHA-1 and SHA-256 as it arrives),
//! compared with `X-Checksum-*`, and handed to [`AptService::deploy`], which completes the
//! session into a blob only if the package is accepted. A body cut off midway, or any
//! refusal, cancels the session: nothing is left behind.
//!
//! A deploy by checksum (`X-Checksum-Deploy: true`, no body) reuses a stored file only when
//! the caller may pull a repository that holds it (issue 16): a package of an APT repository
//! `apt/<name>`, or a blob linked into an OCI repository. Any other checksum gets the answer
//! of a checksum nobody has, so the answer confirms nothing about what is stored.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use futures_util::StreamExt;
use pinfold_apt::{FileDigests, MultiHasher};
use pinfold_auth::Action;
use pinfold_oci::Digest;
use serde_json::json;

use super::error::AptError;
use super::matrix::{parse_deploy_path, DeployTarget};
use pinfold_store::{StoreError, UploadId};

use super::service::{AptService, DebSource, Deployed};
use crate::auth::Access;

/// Holders of one kind (APT repositories, OCI repositories) looked at when deciding whether a
/// checksum deploy may reuse a stored file, first by name. A caller who may pull only holders
/// beyond these gets the 404 and uploads the bytes, as a client must be ready to anyway.
const HOLDERS_CHECKED: u32 = 256;

/// `PUT /artifactory/...`.
pub async fn put_artifactory(
    State(apt): State<AptService>,
    Extension(access): Extension<Access>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AptError> {
    deploy(&apt, &access, "/artifactory/", &uri, &headers, body).await
}

/// `PUT /apt/...` (native, same semantics).
pub async fn put_native(
    State(apt): State<AptService>,
    Extension(access): Extension<Access>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AptError> {
    deploy(&apt, &access, "/apt/", &uri, &headers, body).await
}

/// The API key a request carries: `X-JFrog-Art-Api`, `Authorization: Bearer <key>`, or
/// `Authorization: Basic` with the key as password (any user name), as Artifactory accepts.
pub(crate) fn request_key(headers: &HeaderMap) -> Option<String> {
    use base64::Engine as _;
    if let Some(key) = headers.get("x-jfrog-art-api").and_then(|v| v.to_str().ok()) {
        return Some(key.trim().to_owned());
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, value) = auth.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(value.trim().to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text
            .split_once(':')
            .map(|(_, password)| password.to_owned());
    }
    None
}

/// Fails with 401 unless the request carries an accepted key.
pub(crate) fn authorize(apt: &AptService, headers: &HeaderMap) -> Result<(), AptError> {
    if apt.key_allowed(request_key(headers).as_deref()) {
        Ok(())
    } else {
        Err(AptError::unauthorized())
    }
}

/// A checksum header's value, lower-cased, if present; 400 if it is not `len` hex digits.
fn checksum_header(
    headers: &HeaderMap,
    name: &str,
    len: usize,
) -> Result<Option<String>, AptError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AptError::bad_request(format!("{name} is not text")))?
        .trim()
        .to_ascii_lowercase();
    if value.len() != len || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AptError::bad_request(format!(
            "{name} must be {len} hex digits, got {value:?}"
        )));
    }
    Ok(Some(value))
}

/// The checksums a client declared.
struct Declared {
    sha256: Option<String>,
    sha1: Option<String>,
    md5: Option<String>,
}

impl Declared {
    fn read(headers: &HeaderMap) -> Result<Declared, AptError> {
        Ok(Declared {
            sha256: checksum_header(headers, "x-checksum-sha256", 64)?,
            sha1: checksum_header(headers, "x-checksum-sha1", 40)?,
            md5: checksum_header(headers, "x-checksum-md5", 32)?,
        })
    }

    /// 400 naming the first declared checksum that the received bytes do not have.
    fn verify(&self, actual: &FileDigests) -> Result<(), AptError> {
        let pairs = [
            ("SHA-256", &self.sha256, &actual.sha256),
            ("SHA-1", &self.sha1, &actual.sha1),
            ("MD5", &self.md5, &actual.md5),
        ];
        for (name, declared, actual) in pairs {
            if let Some(declared) = declared {
                if declared != actual {
                    return Err(AptError::bad_request(format!(
                        "Checksum mismatch: the client declared {name} {declared}, the received file has {actual}; nothing was stored"
                    )));
                }
            }
        }
        Ok(())
    }
}

async fn deploy(
    apt: &AptService,
    access: &Access,
    prefix: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, AptError> {
    let raw = uri.path().strip_prefix(prefix).unwrap_or_default();
    let target = parse_deploy_path(raw)?;
    authorize(apt, headers)?;
    let declared = Declared::read(headers)?;
    let max = apt.settings().max_deb_bytes;
    let by_checksum = headers
        .get("x-checksum-deploy")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let (source, digests) = if by_checksum {
        // Deploy by checksum: no body; the file must already be stored (Artifactory answers
        // 404 otherwise, and the client then uploads the bytes) and readable by the caller.
        let Some(sha256) = &declared.sha256 else {
            return Err(AptError::bad_request(
                "X-Checksum-Deploy needs X-Checksum-Sha256",
            ));
        };
        let not_found = || {
            AptError::not_found(format!(
                "Checksum deploy failed: no stored file has SHA-256 {sha256}"
            ))
        };
        // Asked before the store, and answered alike: a file the caller may not read is one
        // nobody has.
        if !may_reuse(apt, access, sha256).await? {
            return Err(not_found());
        }
        let (digest, digests) = apt.stored_digests(sha256).await?.ok_or_else(not_found)?;
        (DebSource::Stored(digest), digests)
    } else {
        let declared_len = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared_len.is_some_and(|len| len > max) {
            return Err(AptError::too_large(max));
        }
        let (id, digests) = receive_body(apt, body, max).await?;
        (DebSource::Upload(id), digests)
    };
    if let Err(e) = declared.verify(&digests) {
        if let DebSource::Upload(id) = &source {
            let _ = apt.store().cancel_upload(id).await;
        }
        return Err(e);
    }
    let deployed = apt.deploy(&target, source, digests).await?;
    Ok(created(headers, prefix, &target, &deployed))
}

/// Whether a checksum deploy may reuse the stored file with SHA-256 `sha256` (lower-case hex):
/// an APT repository `apt/<name>` lists it, or an OCI repository links it, that the caller
/// may pull. Both lookups run for every checksum, stored or not, so the answer takes alike
/// for a file held only where the caller may not read and for one nobody has.
async fn may_reuse(apt: &AptService, access: &Access, sha256: &str) -> Result<bool, AptError> {
    let meta = apt.meta();
    let apt_holders = meta.apt_repos_with_file(sha256, HOLDERS_CHECKED).await?;
    let oci_holders = match format!("sha256:{sha256}").parse::<Digest>() {
        Ok(digest) => {
            meta.repositories_with_blob(&digest, HOLDERS_CHECKED)
                .await?
        }
        Err(_) => Vec::new(),
    };
    Ok(apt_holders
        .iter()
        .any(|name| access.allows(&format!("apt/{name}"), Action::Pull))
        || oci_holders
            .iter()
            .any(|(repo, _)| access.allows(repo.as_str(), Action::Pull)))
}

/// Streams the body into a new store upload session (durably appended, never whole in
/// memory), at most `max` bytes, computing MD5, SHA-1 and SHA-256 as it arrives. On any
/// failure the session is cancelled.
async fn receive_body(
    apt: &AptService,
    body: Body,
    max: u64,
) -> Result<(UploadId, FileDigests), AptError> {
    let store = apt.store();
    let id = store.create_upload().await?;
    let mut hasher = MultiHasher::new();
    let stream = body.into_data_stream().map(|chunk| {
        if let Ok(bytes) = &chunk {
            hasher.update(bytes);
        }
        chunk
    });
    let appended = store.append_upload(&id, Some(0), stream, Some(max)).await;
    if let Err(e) = appended {
        let _ = store.cancel_upload(&id).await;
        return Err(match e {
            StoreError::TooLarge { max } => AptError::too_large(max),
            StoreError::BodyInterrupted(why) => AptError::bad_request(format!(
                "the upload ended before the whole body arrived ({why}); nothing was stored"
            )),
            other => other.into(),
        });
    }
    Ok((id, hasher.finish()))
}

/// The 201 answer, shaped like Artifactory's deploy answer.
fn created(
    headers: &HeaderMap,
    prefix: &str,
    target: &DeployTarget,
    deployed: &Deployed,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    let uri = format!(
        "{scheme}://{host}{prefix}{}/{}",
        deployed.repo, deployed.path
    );
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let d = &deployed.digests;
    let body = json!({
        "repo": deployed.repo,
        "path": format!("/{}", deployed.path),
        "created": now,
        "createdBy": "pinfold",
        "downloadUri": uri,
        "mimeType": "application/vnd.debian.binary-package",
        "size": d.size.to_string(),
        "checksums": { "sha1": d.sha1, "md5": d.md5, "sha256": d.sha256 },
        "originalChecksums": { "sha1": d.sha1, "md5": d.md5, "sha256": d.sha256 },
        "uri": uri,
        "properties": {
            "deb.distribution": target.matrix.distributions,
            "deb.component": target.matrix.components,
            "deb.architecture": target.matrix.architectures,
        },
    });
    (StatusCode::CREATED, Json(body)).into_response()
}
