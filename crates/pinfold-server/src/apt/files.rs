//! `GET /apt/<prefix>/dists/<distribution>/...` (indices, by-hash included), `GET
//! /apt/<prefix>/<path>` (packages, e.g. `pool/...`), the same files under
//! `GET /artifactory/<repo>/<path>`, and the public key at `GET /apt/pinfold.asc`
//! (armored, for `signed-by=`) and `GET /apt/pinfold.gpg` (binary keyring).
//!
//! Every file is a blob in the store, named by the metadata; nothing here builds a file path
//! from the URL.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::error::AptError;
use super::matrix::{check_index_name, check_repo_name};
use super::service::AptService;

/// The Content-Type of a served file, from its name.
fn content_type(path: &str) -> &'static str {
    if path.ends_with(".deb") {
        "application/vnd.debian.binary-package"
    } else if path.ends_with(".gz") {
        "application/gzip"
    } else if path.ends_with(".xz") {
        "application/x-xz"
    } else if path.ends_with(".gpg") {
        "application/pgp-signature"
    } else {
        "text/plain; charset=utf-8"
    }
}

async fn blob_response(apt: &AptService, sha256: &str, path: &str) -> Result<Response, AptError> {
    let file = apt.open_blob(sha256).await?;
    let size = file.size;
    let mut response = Body::from_stream(file.into_stream(0, size)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{sha256}\"")) {
        headers.insert(header::ETAG, etag);
    }
    Ok(response)
}

/// `GET /apt/...`.
pub async fn get_apt(State(apt): State<AptService>, uri: Uri) -> Result<Response, AptError> {
    let raw = uri.path().strip_prefix("/apt/").unwrap_or_default();
    let (prefix, rest) = raw.split_once('/').unwrap_or((raw, ""));
    check_repo_name(prefix).map_err(|_| AptError::not_found("no such repository"))?;
    if let Some(in_dists) = rest.strip_prefix("dists/") {
        let (distribution, path) = in_dists.split_once('/').unwrap_or((in_dists, ""));
        check_index_name("distribution", distribution)
            .map_err(|_| AptError::not_found("no such distribution"))?;
        return get_index(&apt, prefix, distribution, path).await;
    }
    let (sha256, _) = apt
        .meta()
        .apt_pool_file(prefix, rest)
        .await?
        .ok_or_else(|| AptError::not_found(format!("{prefix}/{rest} does not exist")))?;
    blob_response(&apt, &sha256, rest).await
}

async fn get_index(
    apt: &AptService,
    prefix: &str,
    distribution: &str,
    path: &str,
) -> Result<Response, AptError> {
    let missing = || {
        AptError::not_found(format!(
            "{prefix}/dists/{distribution}/{path} does not exist"
        ))
    };
    let publication = apt
        .meta()
        .apt_publication(prefix, distribution)
        .await?
        .ok_or_else(missing)?;
    // `<component>/binary-<arch>/by-hash/SHA256/<hex>`: any file of a kept generation.
    if let Some((_, hex)) = path.rsplit_once("/by-hash/SHA256/") {
        let well_formed = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if well_formed
            && apt
                .meta()
                .apt_index_by_hash(publication.id, hex)
                .await?
                .is_some()
        {
            return blob_response(apt, hex, path).await;
        }
        return Err(missing());
    }
    let files = apt.meta().apt_index_files(publication.id).await?;
    let file = files.iter().find(|f| f.path == path).ok_or_else(missing)?;
    blob_response(apt, &file.sha256, path).await
}

/// `GET /artifactory/<repo>/<path>`: a file uploaded there.
pub async fn get_artifactory(
    State(apt): State<AptService>,
    uri: Uri,
) -> Result<Response, AptError> {
    let raw = uri.path().strip_prefix("/artifactory/").unwrap_or_default();
    let (repo, path) = raw.split_once('/').unwrap_or((raw, ""));
    let (sha256, _) = apt
        .meta()
        .apt_repo_file(repo, path)
        .await?
        .ok_or_else(|| AptError::not_found(format!("{repo}/{path} does not exist")))?;
    blob_response(&apt, &sha256, path).await
}

/// `GET /apt/pinfold.asc`: the signing key, armored.
pub async fn public_key_armored(State(apt): State<AptService>) -> Result<Response, AptError> {
    let text = apt.key().public_key_armored().map_err(AptError::signing)?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/pgp-keys")],
        text,
    )
        .into_response())
}

/// `GET /apt/pinfold.gpg`: the signing key as a binary keyring.
pub async fn public_key_binary(State(apt): State<AptService>) -> Result<Response, AptError> {
    let bytes = apt.key().public_key_binary().map_err(AptError::signing)?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/pgp-keys")],
        bytes,
    )
        .into_response())
}
