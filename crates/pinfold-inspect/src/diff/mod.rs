//! Comparing two images and explaining the difference.
//!
//! [`diff_images`] is the entry point for the CLI (`pinfold diff`) and for the server (a drift
//! event's explanation): it takes two opened [`Image`]s, reads every layer not already in the
//! [`LayerCache`] (each distinct layer once, [`DiffOptions::parallelism`] at a time, streamed),
//! and returns a [`DiffReport`]: config, history and layers, packages, files, and an
//! [`Explanation`] that ranks the changes by how likely they are to break a build or a runtime
//! ([`Category`]: trust store, TLS/crypto libraries, libc, time zone, `/bin/sh`, users and
//! permissions, then everything else), each naming the layer it came from.
//!
//! The report is plain data (serde), so it can be stored with a drift event and rendered later
//! ([`render`]). [`compare`] is the same comparison over layer indexes already in hand.

mod compare;
mod explain;
pub mod render;

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use pinfold_oci::Digest;
use serde::{Deserialize, Serialize};

use crate::image::{Image, ImageError};
use crate::layer::cache::LayerCache;
use crate::layer::{index_layer, FileEntry, LayerError, LayerIndex};
use crate::packages::Ecosystem;

pub use compare::compare;
pub use explain::{Category, ItemKind};

/// Version of the [`DiffReport`] format.
pub const REPORT_FORMAT: u32 = 1;

/// Receives progress while layers are read (the CLI draws bars with it).
pub trait Progress: Send + Sync {
    /// A layer is about to be read; `size` is the blob size when known.
    fn layer_started(&self, layer: &Digest, size: Option<u64>);
    /// `bytes` more bytes of the layer's blob were read.
    fn layer_read(&self, layer: &Digest, bytes: u64);
    /// The layer is indexed; `cached` when it came from the cache without reading.
    fn layer_finished(&self, layer: &Digest, cached: bool);
}

/// How [`diff_images`] reads layers.
#[derive(Clone)]
pub struct DiffOptions {
    /// Where layer indexes are cached. Default [`LayerCache::user_default`].
    pub cache: LayerCache,
    /// Layers read at the same time. Default 2 (decompression and hashing take one core each).
    pub parallelism: usize,
    /// Progress receiver. Default none.
    pub progress: Option<Arc<dyn Progress>>,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            cache: LayerCache::user_default(),
            parallelism: 2,
            progress: None,
        }
    }
}

impl std::fmt::Debug for DiffOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiffOptions")
            .field("cache", &self.cache)
            .field("parallelism", &self.parallelism)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// Why two images could not be compared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    /// A layer blob could not be opened.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A layer could not be read.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// A worker thread failed (panicked or was cancelled).
    #[error("layer reader failed: {0}")]
    Worker(String),
}

/// Indexes every distinct layer of `images` (from the cache when possible) and returns them by
/// digest.
///
/// # Errors
/// The first [`DiffError`] of any layer; the others are abandoned.
pub async fn index_layers(
    images: &[&Image],
    options: &DiffOptions,
) -> Result<HashMap<Digest, Arc<LayerIndex>>, DiffError> {
    let mut jobs: Vec<(&Image, usize)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for image in images {
        for layer in &image.layers {
            if seen.insert(layer.digest.clone()) {
                jobs.push((image, layer.index));
            }
        }
    }
    let parallelism = options.parallelism.max(1);
    futures_util::stream::iter(jobs)
        .map(|(image, index)| index_one(image, index, options))
        .buffer_unordered(parallelism)
        .try_collect()
        .await
}

async fn index_one(
    image: &Image,
    index: usize,
    options: &DiffOptions,
) -> Result<(Digest, Arc<LayerIndex>), DiffError> {
    let layer = image
        .layers
        .get(index)
        .ok_or(ImageError::NoSuchLayer(index))?;
    let digest = layer.digest.clone();
    let cache = options.cache.clone();
    let cached = tokio::task::spawn_blocking({
        let digest = digest.clone();
        move || cache.load(&digest)
    })
    .await
    .map_err(|e| DiffError::Worker(e.to_string()))?;
    if let Some(found) = cached {
        if let Some(p) = &options.progress {
            p.layer_finished(&digest, true);
        }
        return Ok((digest, Arc::new(found)));
    }
    if let Some(p) = &options.progress {
        p.layer_started(&digest, layer.size);
    }
    let reader = image.open_layer(index).await?;
    let progress = options.progress.clone();
    let cache = options.cache.clone();
    let indexed = tokio::task::spawn_blocking({
        let digest = digest.clone();
        move || {
            let mut report = |n: u64| {
                if let Some(p) = &progress {
                    p.layer_read(&digest, n);
                }
            };
            let index = index_layer(reader, &digest, &mut report)?;
            cache.store(&index);
            Ok::<_, LayerError>(index)
        }
    })
    .await
    .map_err(|e| DiffError::Worker(e.to_string()))??;
    if let Some(p) = &options.progress {
        p.layer_finished(&digest, false);
    }
    Ok((digest, Arc::new(indexed)))
}

/// Compares two opened images; see the module documentation. This is the library entry point
/// the server uses to explain a drift event.
///
/// # Errors
/// [`DiffError`] when a layer cannot be opened or read (corrupt, unsafe, digest mismatch).
pub async fn diff_images(
    a: &Image,
    b: &Image,
    options: &DiffOptions,
) -> Result<DiffReport, DiffError> {
    let indexes = index_layers(&[a, b], options).await?;
    let pick = |image: &Image| -> Result<Vec<&LayerIndex>, DiffError> {
        image
            .layers
            .iter()
            .map(|l| {
                indexes
                    .get(&l.digest)
                    .map(|i| i.as_ref())
                    .ok_or_else(|| DiffError::Worker(format!("layer {} was not indexed", l.digest)))
            })
            .collect()
    };
    let (la, lb) = (pick(a)?, pick(b)?);
    Ok(compare(a, &la, b, &lb))
}

/// Everything `pinfold diff` reports about two images. Plain data: serialise it, store it,
/// render it with [`render`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffReport {
    /// [`REPORT_FORMAT`].
    pub format: u32,
    /// The first image ("before").
    pub a: ImageSummary,
    /// The second image ("after").
    pub b: ImageSummary,
    /// True when nothing differs: config, history, layers, packages and files.
    pub equal: bool,
    /// Config differences.
    pub config: Vec<ConfigChange>,
    /// Layer and history differences.
    pub layers: LayerDiff,
    /// Package differences, sorted by ecosystem and name.
    pub packages: Vec<PackageChange>,
    /// File differences.
    pub files: FileDiff,
    /// The changes ranked by breakage likelihood.
    pub explanation: Explanation,
}

/// What identifies one side of the diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSummary {
    /// The source as given.
    pub name: String,
    /// Manifest digest, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<Digest>,
    /// Config digest (image id).
    pub config_digest: Digest,
    /// `os/arch[/variant]` from the config.
    pub platform: String,
    /// Number of layers.
    pub layers: usize,
    /// Paths in the final filesystem.
    pub files: usize,
    /// Installed packages (all ecosystems).
    pub packages: usize,
}

/// A layer, named the way every report item names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// Position in its image, 0 = base.
    pub index: usize,
    /// Blob digest.
    pub digest: Digest,
    /// The history step that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// One config difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChange {
    /// `Env`, `User`, `Cmd`, `Entrypoint`, `Shell`, `WorkingDir`, `ExposedPorts`, `Volumes`,
    /// `Labels`, `StopSignal`, `os`, `architecture`, `variant`.
    pub field: String,
    /// The variable, label, port or volume for keyed fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Value in A (`None`: unset).
    pub a: Option<String>,
    /// Value in B.
    pub b: Option<String>,
    /// The last history step of B that names this setting, when one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

/// Layers and history compared in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerDiff {
    /// Number of leading layers the two images share (same uncompressed content).
    pub shared_prefix: usize,
    /// A's layers after the shared prefix.
    pub a_only: Vec<LayerSummary>,
    /// B's layers after the shared prefix.
    pub b_only: Vec<LayerSummary>,
    /// A's history steps (`created_by`) after the history both share.
    pub history_a_only: Vec<String>,
    /// B's history steps after the history both share.
    pub history_b_only: Vec<String>,
}

/// A layer in the layer comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSummary {
    /// Position, digest and history step.
    #[serde(flatten)]
    pub layer: LayerRef,
    /// Uncompressed digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<Digest>,
    /// Blob size.
    pub size: u64,
    /// Entries in the layer (whiteouts included).
    pub entries: usize,
}

/// How a package changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageChangeKind {
    /// Only in B.
    Added,
    /// Only in A.
    Removed,
    /// B's version is newer.
    Upgraded,
    /// B's version is older.
    Downgraded,
    /// Different, but neither newer nor older (or not comparable).
    Changed,
}

/// One package difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageChange {
    /// Package manager.
    pub ecosystem: Ecosystem,
    /// Name.
    pub name: String,
    /// Architecture (OS packages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// Directory (language packages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// What happened.
    pub change: PackageChangeKind,
    /// Version in A.
    pub a: Option<String>,
    /// Version in B.
    pub b: Option<String>,
    /// The layer of B that made the change (installed, upgraded or removed it), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<LayerRef>,
}

/// File differences of the final filesystems.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDiff {
    /// Paths only in B.
    pub added: usize,
    /// Paths only in A.
    pub removed: usize,
    /// Paths in both that differ.
    pub modified: usize,
    /// Every change, sorted by path.
    pub changes: Vec<FileChange>,
}

/// How a path changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileChangeKind {
    /// Only in B.
    Added,
    /// Only in A.
    Removed,
    /// In both, different.
    Modified,
}

/// One path difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    /// Absolute path (`/etc/ssl/certs/ca-certificates.crt`).
    pub path: String,
    /// What happened.
    pub change: FileChangeKind,
    /// For modifications: which of `type`, `size`, `mode`, `owner`, `content`, `target` differ.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// The entry in A (its `path` is relative, as in the layer index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a: Option<FileEntry>,
    /// The entry in B.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b: Option<FileEntry>,
    /// The layer of B that wrote (or removed) the path, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<LayerRef>,
}

/// The changes ranked by how likely they are to break something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// One sentence naming the most breaking changes and their layers; `None` when equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The items, most likely to break first.
    pub items: Vec<ExplanationItem>,
}

/// One ranked change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplanationItem {
    /// 1 = most likely to break.
    pub rank: usize,
    /// Why it ranks where it does.
    pub category: Category,
    /// Whether it is about a package, a setting or files.
    pub kind: ItemKind,
    /// What changed: a package name, a path or directory, a setting.
    pub subject: String,
    /// How it changed (`20230311 → 20240203 (upgraded)`, `3 added, 1 modified`).
    pub change: String,
    /// The layer of B the change came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<LayerRef>,
    /// For settings: the history step of B that names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}
