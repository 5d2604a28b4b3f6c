//! Local images: the OCI image layout (image-spec `image-layout.md`: `index.json`, blobs under
//! `blobs/<alg>/<hex>`) and `docker save` archives, whose `manifest.json` lists each image's
//! config and layer files. Docker before 25 writes `<id>/layer.tar` and `<hex>.json`
//! (uncompressed layers, known by their diff ids); Docker 25+ writes an OCI layout and a
//! `manifest.json` pointing into `blobs/sha256/`. Both are read through `manifest.json`; an
//! archive with only `index.json` is read as an OCI layout.

use pinfold_oci::{media_type, Digest, Manifest, ManifestKind, MAX_MANIFEST_BYTES};
use serde::Deserialize;

use super::store::Store;
use super::{
    config_descriptor, layers_from, manifest_layers, parse_config, select_platform, verify, Blobs,
    Image, ImageError, Platform, MAX_CONFIG_BYTES,
};

/// Indexes nested inside indexes are followed this deep.
const MAX_DEPTH: usize = 4;
/// The annotation that names an image in an OCI layout.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd and Docker 25+ add with the full image name.
const CONTAINERD_NAME: &str = "io.containerd.image.name";

fn blob_name(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().as_str(), digest.encoded())
}

/// The digest a `blobs/<alg>/<hex>` name stands for.
fn digest_of_blob_name(name: &str) -> Option<Digest> {
    let rest = name.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    format!("{alg}:{hex}").parse().ok()
}

fn read_blob(
    store: &Store,
    digest: &Digest,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, ImageError> {
    let bytes = store.read_small(&blob_name(digest), limit)?;
    verify(what, digest, &bytes)?;
    Ok(bytes)
}

fn parse_manifest(
    what: &str,
    media_type: Option<&str>,
    bytes: &[u8],
) -> Result<Manifest, ImageError> {
    Manifest::parse(media_type, bytes).map_err(|source| ImageError::Manifest {
        what: what.to_owned(),
        source,
    })
}

/// Opens an image of the OCI layout in `store`.
pub(super) fn open_oci(
    name: String,
    store: Store,
    reference: Option<&str>,
    platform: &Platform,
) -> Result<Image, ImageError> {
    if !store.exists("index.json") {
        return Err(ImageError::NotAnImage(store.display()));
    }
    let bytes = store.read_small("index.json", MAX_MANIFEST_BYTES as u64)?;
    let index = parse_manifest("index.json", None, &bytes)?;
    if !index.kind.is_index() {
        return Err(ImageError::Malformed {
            what: "index.json".to_owned(),
            reason: "not an image index".to_owned(),
        });
    }
    let names = |d: &pinfold_oci::Descriptor| {
        d.annotations
            .as_ref()
            .and_then(|a| a.get(REF_NAME).or_else(|| a.get(CONTAINERD_NAME)))
            .cloned()
    };
    let available: Vec<String> = index.manifests.iter().filter_map(names).collect();
    let candidates: Vec<&pinfold_oci::Descriptor> = match reference {
        Some(r) => {
            let found: Vec<_> = index
                .manifests
                .iter()
                .filter(|d| {
                    d.annotations.as_ref().is_some_and(|a| {
                        a.get(REF_NAME).is_some_and(|n| n == r)
                            || a.get(CONTAINERD_NAME)
                                .is_some_and(|n| n == r || n.ends_with(&format!(":{r}")))
                    })
                })
                .collect();
            if found.is_empty() {
                return Err(ImageError::ReferenceNotFound {
                    store: store.display(),
                    reference: r.to_owned(),
                    available,
                });
            }
            found
        }
        None => index.manifests.iter().collect(),
    };
    let chosen = match candidates.as_slice() {
        [] => {
            return Err(ImageError::Malformed {
                what: "index.json".to_owned(),
                reason: "lists no manifests".to_owned(),
            })
        }
        [one] => (*one).clone(),
        many => {
            // Several entries: one multi-platform image written flat (each with a platform),
            // or several images that need a name.
            let mut distinct: Vec<String> = many.iter().filter_map(|d| names(d)).collect();
            distinct.sort();
            distinct.dedup();
            if distinct.len() > 1 {
                return Err(ImageError::Ambiguous {
                    store: store.display(),
                    available: distinct,
                });
            }
            let owned: Vec<pinfold_oci::Descriptor> = many.iter().map(|d| (*d).clone()).collect();
            select_platform(&owned, platform)?.clone()
        }
    };
    let mut descriptor = chosen;
    for _ in 0..MAX_DEPTH {
        let what = format!("manifest {}", descriptor.digest);
        let bytes = read_blob(&store, &descriptor.digest, MAX_MANIFEST_BYTES as u64, &what)?;
        let manifest = parse_manifest(&what, Some(&descriptor.media_type), &bytes)?;
        if manifest.kind.is_index() {
            descriptor = select_platform(&manifest.manifests, platform)?.clone();
            continue;
        }
        let config_digest = config_descriptor(&manifest, &what)?.digest.clone();
        let config_bytes = store.read_small(&blob_name(&config_digest), MAX_CONFIG_BYTES)?;
        let config = parse_config(&config_digest, &config_bytes)?;
        let names = manifest
            .layers
            .iter()
            .map(|l| blob_name(&l.digest))
            .collect();
        let layers = manifest_layers(&config, &manifest);
        return Ok(Image {
            name,
            manifest_digest: Some(descriptor.digest.clone()),
            config_digest,
            config,
            layers,
            blobs: Blobs::Local { store, names },
        });
    }
    Err(ImageError::TooDeep(MAX_DEPTH))
}

/// One entry of a `docker save` `manifest.json`.
#[derive(Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// Opens an image of a `docker save` archive (or of an OCI layout packed as a tar).
pub(super) fn open_archive(
    name: String,
    store: Store,
    reference: Option<&str>,
    platform: &Platform,
) -> Result<Image, ImageError> {
    if !store.exists("manifest.json") {
        return open_oci(name, store, reference, platform);
    }
    let bytes = store.read_small("manifest.json", MAX_MANIFEST_BYTES as u64)?;
    let entries: Vec<DockerManifestEntry> =
        serde_json::from_slice(&bytes).map_err(|e| ImageError::Malformed {
            what: "manifest.json".to_owned(),
            reason: e.to_string(),
        })?;
    let tags = |e: &DockerManifestEntry| e.repo_tags.clone().unwrap_or_default();
    let available: Vec<String> = entries.iter().flat_map(tags).collect();
    let entry = match reference {
        Some(r) => entries
            .iter()
            .find(|e| {
                tags(e).iter().any(|t| {
                    t == r || t.ends_with(&format!("/{r}")) || t.ends_with(&format!(":{r}"))
                })
            })
            .ok_or_else(|| ImageError::ReferenceNotFound {
                store: store.display(),
                reference: r.to_owned(),
                available: available.clone(),
            })?,
        None => match entries.as_slice() {
            [] => {
                return Err(ImageError::Malformed {
                    what: "manifest.json".to_owned(),
                    reason: "lists no images".to_owned(),
                })
            }
            [one] => one,
            _ => {
                return Err(ImageError::Ambiguous {
                    store: store.display(),
                    available,
                })
            }
        },
    };
    // `<hex>.json` (legacy) or `blobs/sha256/<hex>` (Docker 25+).
    let config_digest = digest_of_blob_name(&entry.config)
        .or_else(|| {
            entry
                .config
                .strip_suffix(".json")
                .and_then(|hex| format!("sha256:{hex}").parse().ok())
        })
        .ok_or_else(|| ImageError::Malformed {
            what: "manifest.json".to_owned(),
            reason: format!("config {:?} is not named by its digest", entry.config),
        })?;
    let config_bytes = store.read_small(&entry.config, MAX_CONFIG_BYTES)?;
    let config = parse_config(&config_digest, &config_bytes)?;
    let diff_ids = config
        .rootfs
        .as_ref()
        .map(|r| r.diff_ids.clone())
        .unwrap_or_default();
    let mut descriptors = Vec::new();
    for (i, layer) in entry.layers.iter().enumerate() {
        // Legacy layers are uncompressed tars known by their diff id; the blob names of the
        // newer layout carry the digest.
        let digest = match digest_of_blob_name(layer) {
            Some(d) => d,
            None => diff_ids
                .get(i)
                .cloned()
                .ok_or_else(|| ImageError::Malformed {
                    what: "manifest.json".to_owned(),
                    reason: format!(
                        "{} layers but the config lists {} diff ids",
                        entry.layers.len(),
                        diff_ids.len()
                    ),
                })?,
        };
        let media_type = digest_of_blob_name(layer)
            .is_none()
            .then(|| media_type_for_legacy().to_owned());
        descriptors.push((digest, media_type, None));
    }
    let layers = layers_from(&config, descriptors);
    // Docker 25+ archives are also OCI layouts: report the manifest digest when it is there.
    let manifest_digest = manifest_digest_of_archive(&store, &config_digest);
    Ok(Image {
        name,
        manifest_digest,
        config_digest,
        config,
        layers,
        blobs: Blobs::Local {
            store,
            names: entry.layers.clone(),
        },
    })
}

fn media_type_for_legacy() -> &'static str {
    "application/vnd.docker.image.rootfs.diff.tar"
}

/// In a Docker 25+ archive, the digest of the manifest whose config is `config`.
fn manifest_digest_of_archive(store: &Store, config: &Digest) -> Option<Digest> {
    let bytes = store
        .read_small("index.json", MAX_MANIFEST_BYTES as u64)
        .ok()?;
    let index = Manifest::parse(None, &bytes).ok()?;
    index.manifests.iter().find_map(|d| {
        if ManifestKind::from_media_type(&d.media_type)? != ManifestKind::OciManifest
            && d.media_type != media_type::DOCKER_MANIFEST
        {
            return None;
        }
        let bytes = store
            .read_small(&blob_name(&d.digest), MAX_MANIFEST_BYTES as u64)
            .ok()?;
        let m = Manifest::parse(Some(&d.media_type), &bytes).ok()?;
        (m.config.as_ref()?.digest == *config).then(|| d.digest.clone())
    })
}
