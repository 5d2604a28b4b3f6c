//! `pinfold export` / `pinfold import`: images to and from an OCI image layout directory
//! (image-spec `image-layout.md`) through a registry's `/v2/` API, for air-gapped transfer.
//!
//! Export writes `oci-layout`, `blobs/sha256/<hex>` (every manifest, child manifest, config and
//! layer, bytes exactly as served, each verified against its digest by `pinfold-client`) and
//! `index.json`, whose descriptors carry `org.opencontainers.image.ref.name` (the tag, as skopeo
//! and other tools read it) and [`REPOSITORY_ANNOTATION`] (the repository, so import puts
//! `name:tag` back). Import pushes blobs first, child manifests by digest, then each top
//! manifest under its tag: digests are unchanged because no byte is rewritten.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::StreamExt;
use pinfold_client::RegistryClient;
use pinfold_oci::{Descriptor, Digest, Manifest, Reference, RepoName, Tag};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::files::{stat, write_atomic};
use crate::BackupError;

/// The annotation holding the tag (image-spec's; what `skopeo ... oci:dir:tag` reads).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// The annotation holding the repository name, so import restores `name:tag`.
pub const REPOSITORY_ANNOTATION: &str = "io.pinfold.repository";

/// What an export or import moved.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TransferSummary {
    /// `name:tag` or `name@digest` of each image, with its top digest.
    pub images: Vec<(String, Digest)>,
    /// Manifests (top and children) moved.
    pub manifests: u64,
    /// Blobs moved (an import skips blobs the registry already has; counted in `skipped`).
    pub blobs: u64,
    /// Blobs not moved because the destination had them.
    pub skipped: u64,
    /// Bytes moved.
    pub bytes: u64,
}

fn layout_error(path: &Path, reason: impl Into<String>) -> BackupError {
    BackupError::Layout {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs")
        .join(digest.algorithm().as_str())
        .join(digest.encoded())
}

/// Exports `images` (repository and tag or digest) from `client`'s registry into the OCI
/// layout at `dir` (created if missing; an existing layout's index gains the new entries,
/// replacing one with the same repository and tag).
///
/// # Errors
/// [`BackupError::Client`] when the registry refuses or a digest does not verify;
/// [`BackupError::Layout`] when `dir` holds something that is not an OCI layout;
/// [`BackupError::Io`] when writing fails.
pub async fn export(
    client: &RegistryClient,
    images: &[(RepoName, Reference)],
    dir: &Path,
) -> Result<TransferSummary, BackupError> {
    let blobs_dir = dir.join("blobs").join("sha256");
    tokio::fs::create_dir_all(&blobs_dir)
        .await
        .map_err(|e| BackupError::io("create directory", &blobs_dir, e))?;
    let mut index = read_index(dir).await?.unwrap_or_else(
        || json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [] }),
    );
    let mut summary = TransferSummary::default();
    let mut entries = Vec::new();
    for (repo, reference) in images {
        let top = client.get_manifest(repo, reference).await?;
        let size = top.bytes.len() as u64;
        let digest = top.digest.clone();
        let media_type = top.media_type.clone();
        export_manifest(client, repo, top, dir, &mut summary).await?;
        let mut annotations = BTreeMap::new();
        annotations.insert(REPOSITORY_ANNOTATION.to_owned(), repo.to_string());
        if let Reference::Tag(tag) = reference {
            annotations.insert(REF_NAME_ANNOTATION.to_owned(), tag.to_string());
        }
        entries.push(json!({
            "mediaType": media_type,
            "digest": digest,
            "size": size,
            "annotations": annotations,
        }));
        summary
            .images
            .push((format!("{repo}{}", reference_suffix(reference)), digest));
    }
    let list = index
        .get_mut("manifests")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| layout_error(&dir.join("index.json"), "no manifests array"))?;
    for entry in entries {
        let same = |e: &Value| {
            e["annotations"][REPOSITORY_ANNOTATION] == entry["annotations"][REPOSITORY_ANNOTATION]
                && e["annotations"].get(REF_NAME_ANNOTATION).is_some()
                && e["annotations"][REF_NAME_ANNOTATION]
                    == entry["annotations"][REF_NAME_ANNOTATION]
        };
        list.retain(|e| !same(e));
        list.push(entry);
    }
    let index_bytes = serde_json::to_vec_pretty(&index)
        .map_err(|e| layout_error(&dir.join("index.json"), e.to_string()))?;
    let layout_path = dir.join("oci-layout");
    let dir_owned = dir.to_owned();
    tokio::task::spawn_blocking(move || -> Result<(), BackupError> {
        write_atomic(&layout_path, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        write_atomic(&dir_owned.join("index.json"), &index_bytes)
    })
    .await??;
    Ok(summary)
}

fn reference_suffix(reference: &Reference) -> String {
    match reference {
        Reference::Tag(t) => format!(":{t}"),
        Reference::Digest(d) => format!("@{d}"),
    }
}

/// Writes a fetched manifest and (recursively) everything it references.
async fn export_manifest(
    client: &RegistryClient,
    repo: &RepoName,
    fetched: pinfold_client::FetchedManifest,
    dir: &Path,
    summary: &mut TransferSummary,
) -> Result<(), BackupError> {
    let manifest = Manifest::parse(Some(&fetched.media_type), &fetched.bytes)
        .map_err(|e| layout_error(dir, format!("{repo}@{}: {e}", fetched.digest)))?;
    for child in &manifest.manifests {
        let child_manifest = client
            .get_manifest(repo, &Reference::Digest(child.digest.clone()))
            .await?;
        Box::pin(export_manifest(client, repo, child_manifest, dir, summary)).await?;
    }
    for blob in manifest.required_blobs() {
        let path = blob_path(dir, &blob.digest);
        if stat(&path)?.is_some_and(|m| m.len() == blob.size) {
            summary.skipped += 1;
            continue;
        }
        let mut stream = client.get_blob(repo, &blob.digest).await?;
        let temp = path.with_extension("partial");
        let mut file = tokio::fs::File::create(&temp)
            .await
            .map_err(|e| BackupError::io("create", &temp, e))?;
        let mut written = 0u64;
        let mut failed = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    written += chunk.len() as u64;
                    file.write_all(&chunk)
                        .await
                        .map_err(|e| BackupError::io("write", &temp, e))?;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e.into());
        }
        file.sync_all()
            .await
            .map_err(|e| BackupError::io("fsync", &temp, e))?;
        drop(file);
        tokio::fs::rename(&temp, &path)
            .await
            .map_err(|e| BackupError::io("rename", &temp, e))?;
        summary.blobs += 1;
        summary.bytes += written;
    }
    let path = blob_path(dir, &fetched.digest);
    summary.manifests += 1;
    summary.bytes += fetched.bytes.len() as u64;
    tokio::task::spawn_blocking(move || write_atomic(&path, &fetched.bytes)).await??;
    Ok(())
}

async fn read_index(dir: &Path) -> Result<Option<Value>, BackupError> {
    let path = dir.join("index.json");
    match tokio::fs::read(&path).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| layout_error(&path, e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BackupError::io("read", &path, e)),
    }
}

/// Imports every image of the OCI layout at `dir` into `client`'s registry: under the
/// repository its [`REPOSITORY_ANNOTATION`] names (or `repository` when given, for layouts
/// written by other tools) and the tag of its [`REF_NAME_ANNOTATION`] (by digest without one).
///
/// Every blob is read from the layout and checked against its digest before it is pushed.
///
/// # Errors
/// [`BackupError::Layout`] for a directory that is not an OCI layout, an entry without a
/// repository (and no `repository` given), a missing or corrupt blob (nothing of that image is
/// tagged); [`BackupError::Client`] when the registry refuses a push.
pub async fn import(
    client: &RegistryClient,
    dir: &Path,
    repository: Option<&RepoName>,
) -> Result<TransferSummary, BackupError> {
    if !dir.join("oci-layout").is_file() {
        return Err(layout_error(
            dir,
            "not an OCI image layout (no oci-layout file)",
        ));
    }
    let index_path = dir.join("index.json");
    let index = read_index(dir)
        .await?
        .ok_or_else(|| layout_error(&index_path, "missing"))?;
    let entries: Vec<Descriptor> = serde_json::from_value(index["manifests"].clone())
        .map_err(|e| layout_error(&index_path, e.to_string()))?;
    // Check every entry names a repository (and a valid tag) before pushing anything.
    let mut plan = Vec::new();
    for entry in entries {
        let annotations = entry.annotations.clone().unwrap_or_default();
        let repo = match (repository, annotations.get(REPOSITORY_ANNOTATION)) {
            (Some(r), _) => r.clone(),
            (None, Some(name)) => name.parse::<RepoName>().map_err(|e| {
                layout_error(&index_path, format!("repository annotation {name:?}: {e}"))
            })?,
            (None, None) => {
                return Err(layout_error(
                    &index_path,
                    format!(
                        "entry {} names no repository ({REPOSITORY_ANNOTATION}); pass --repository",
                        entry.digest
                    ),
                ))
            }
        };
        let reference = match annotations.get(REF_NAME_ANNOTATION) {
            Some(tag) => Reference::Tag(tag.parse::<Tag>().map_err(|e| {
                layout_error(&index_path, format!("tag {tag:?} of {}: {e}", entry.digest))
            })?),
            None => Reference::Digest(entry.digest.clone()),
        };
        plan.push((repo, reference, entry));
    }
    let mut summary = TransferSummary::default();
    for (repo, reference, entry) in plan {
        import_manifest(client, dir, &repo, &entry, &reference, &mut summary).await?;
        summary.images.push((
            format!("{repo}{}", reference_suffix(&reference)),
            entry.digest,
        ));
    }
    Ok(summary)
}

/// Bytes per `PATCH` when import pushes a blob: large enough that a layer takes few requests,
/// small enough to hold in memory.
const PUSH_CHUNK_BYTES: usize = 16 * 1024 * 1024;

/// Checks that the layout's blob file at `path` hashes to `digest` (reading it in chunks) and
/// returns its size.
async fn verify_blob_file(path: &Path, digest: &Digest) -> Result<u64, BackupError> {
    let owned_path = path.to_owned();
    let algorithm = digest.algorithm();
    let hashed = tokio::task::spawn_blocking(move || {
        crate::files::hash_file(&owned_path, algorithm, |_| {})
    })
    .await
    .map_err(|e| layout_error(path, format!("hashing task: {e}")))?;
    let (actual, size) = match hashed {
        Ok(found) => found,
        Err(BackupError::Io { source, .. }) => {
            return Err(layout_error(path, format!("blob {digest}: {source}")))
        }
        Err(e) => return Err(e),
    };
    if &actual != digest {
        return Err(layout_error(
            path,
            format!("blob {digest} is corrupt: its bytes hash to {actual}"),
        ));
    }
    Ok(size)
}

/// Reads a blob of the layout and checks its digest (manifests, which are small).
async fn read_blob(dir: &Path, digest: &Digest) -> Result<Bytes, BackupError> {
    let path = blob_path(dir, digest);
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| layout_error(&path, format!("blob {digest}: {e}")))?;
    let mut digester = pinfold_oci::Digester::new(digest.algorithm());
    digester.update(&bytes);
    let actual = digester.finalize();
    if &actual != digest {
        return Err(layout_error(
            &path,
            format!("blob {digest} is corrupt: its bytes hash to {actual}"),
        ));
    }
    Ok(Bytes::from(bytes))
}

async fn import_manifest(
    client: &RegistryClient,
    dir: &Path,
    repo: &RepoName,
    descriptor: &Descriptor,
    reference: &Reference,
    summary: &mut TransferSummary,
) -> Result<(), BackupError> {
    let bytes = read_blob(dir, &descriptor.digest).await?;
    let manifest = Manifest::parse(Some(&descriptor.media_type), &bytes)
        .map_err(|e| layout_error(dir, format!("{}: {e}", descriptor.digest)))?;
    for child in &manifest.manifests {
        Box::pin(import_manifest(
            client,
            dir,
            repo,
            child,
            &Reference::Digest(child.digest.clone()),
            summary,
        ))
        .await?;
    }
    for blob in manifest.required_blobs() {
        if client.has_blob(repo, &blob.digest).await? {
            summary.skipped += 1;
            continue;
        }
        // Layers can be gigabytes: verified by streaming over the file, then pushed in chunks,
        // so memory stays bounded by one chunk.
        let path = blob_path(dir, &blob.digest);
        let size = verify_blob_file(&path, &blob.digest).await?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| BackupError::io("open", &path, e))?;
        client
            .push_blob_chunked(repo, &blob.digest, file, PUSH_CHUNK_BYTES)
            .await?;
        summary.bytes += size;
        summary.blobs += 1;
    }
    summary.bytes += bytes.len() as u64;
    client
        .push_manifest(repo, reference, &descriptor.media_type, bytes)
        .await?;
    summary.manifests += 1;
    Ok(())
}
