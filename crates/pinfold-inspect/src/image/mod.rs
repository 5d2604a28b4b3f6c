//! Opening an image from wherever it is: an OCI image-layout directory (`oci:<dir>`), a
//! `docker save` archive (`docker-archive:<file.tar>`, the legacy layout and the OCI layout that
//! Docker 25+ writes), or a registry (any reference, through `pinfold-client` with the user's
//! Docker credentials).
//!
//! [`open`] resolves an index to one platform's manifest ([`Platform`], default the host's),
//! verifies every manifest and config against its digest, and returns an [`Image`]: the parsed
//! config and the ordered layer list. Layers are not read here; [`Image::open_layer`] gives a
//! stream of one layer's blob for [`crate::layer::index_layer`].

mod config;
mod layout;
mod registry;
mod store;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use pinfold_client::{ClientConfig, ClientError, RegistryClient};
use pinfold_oci::{Digest, ImageRefError, ImageReference, ManifestError, RepoName};
use serde::{Deserialize, Serialize};

pub use config::{ContainerConfig, History, ImageConfig, RootFs, MAX_CONFIG_BYTES};
pub use store::ArchiveIndex;

use store::Store;

/// A readable stream of one layer blob. For registry images it must be read from a blocking
/// context (`tokio::task::spawn_blocking`), since it bridges the async HTTP body.
pub type LayerStream = Box<dyn Read + Send>;

/// Where an image comes from, as written on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// `oci:<dir>[:<ref>]`: an OCI image layout; `<ref>` selects by
    /// `org.opencontainers.image.ref.name`.
    OciLayout(String),
    /// `docker-archive:<file>[:<ref>]`: `docker save` output; `<ref>` selects by `RepoTags`.
    DockerArchive(String),
    /// A registry reference (`ruby:3.3`, `ghcr.io/org/app@sha256:...`, optionally prefixed by
    /// `docker://`).
    Registry(ImageReference),
}

impl FromStr for ImageSource {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("oci:") {
            if rest.is_empty() {
                return Err(ImageError::InvalidSource(s.to_owned()));
            }
            return Ok(ImageSource::OciLayout(rest.to_owned()));
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            if rest.is_empty() {
                return Err(ImageError::InvalidSource(s.to_owned()));
            }
            return Ok(ImageSource::DockerArchive(rest.to_owned()));
        }
        let reference = s.strip_prefix("docker://").unwrap_or(s);
        reference
            .parse()
            .map(ImageSource::Registry)
            .map_err(|source| ImageError::InvalidReference {
                text: s.to_owned(),
                source,
            })
    }
}

impl fmt::Display for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageSource::OciLayout(p) => write!(f, "oci:{p}"),
            ImageSource::DockerArchive(p) => write!(f, "docker-archive:{p}"),
            ImageSource::Registry(r) => write!(f, "{r}"),
        }
    }
}

/// `<path>[:<ref>]`: the whole text when it exists as a path, else split at the first `:` after
/// which the part before exists (skopeo's syntax), else the whole text (which then fails as
/// missing).
fn split_path_ref(text: &str) -> (PathBuf, Option<String>) {
    if Path::new(text).exists() {
        return (PathBuf::from(text), None);
    }
    // A docker-archive reference has its own colon (`app:1`): try every split point.
    for (at, _) in text.match_indices(':') {
        let (path, reference) = (&text[..at], &text[at + 1..]);
        if !reference.is_empty() && Path::new(path).exists() {
            return (PathBuf::from(path), Some(reference.to_owned()));
        }
    }
    (PathBuf::from(text), None)
}

/// An `os/architecture[/variant]` platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `v7`, `v8`, ... ; `None` matches any variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform images are run with on this machine: Linux (container images are Linux
    /// images everywhere Docker runs them by default) on the host's CPU, in Go's names.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform {
            os: "linux".to_owned(),
            architecture: architecture.to_owned(),
            variant: None,
        }
    }

    /// Whether an index entry's platform is this one (`variant: None` accepts any variant).
    pub fn matches(&self, p: &pinfold_oci::Platform) -> bool {
        p.os == self.os
            && p.architecture == self.architecture
            && self
                .variant
                .as_ref()
                .is_none_or(|v| p.variant.as_deref() == Some(v.as_str()))
    }
}

impl FromStr for Platform {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        };
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: None,
            }),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Platform {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: Some((*variant).to_owned()),
            }),
            _ => Err(ImageError::InvalidPlatform(s.to_owned())),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// How to open images.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Which manifest of an index to use. Default [`Platform::host`].
    pub platform: Platform,
    /// How registries are contacted.
    pub client: ClientConfig,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            platform: Platform::host(),
            client: ClientConfig::default(),
        }
    }
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// Position, 0 = base.
    pub index: usize,
    /// Digest of the blob (what the manifest names; for a legacy `docker save`, the diff id).
    pub digest: Digest,
    /// Media type from the manifest, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Blob size, if known before reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Uncompressed digest from the config's `rootfs.diff_ids`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<Digest>,
    /// The history step that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// Where the layer blobs are read from.
#[derive(Debug, Clone)]
enum Blobs {
    /// Files of a local store, one name per layer.
    Local { store: Store, names: Vec<String> },
    /// A registry repository.
    Registry {
        client: Arc<RegistryClient>,
        repository: RepoName,
    },
}

/// An opened image: its config and layers, and a way to read each layer.
#[derive(Debug, Clone)]
pub struct Image {
    /// The source as given (`oci:./a`, `ruby:3.3`).
    pub name: String,
    /// Digest of the manifest used (for an index: of the selected platform's manifest).
    pub manifest_digest: Option<Digest>,
    /// Digest of the config blob (the image id).
    pub config_digest: Digest,
    /// The parsed config.
    pub config: ImageConfig,
    /// The layers, base first.
    pub layers: Vec<Layer>,
    blobs: Blobs,
}

impl Image {
    /// Opens a stream of layer `index`'s blob.
    ///
    /// # Errors
    /// [`ImageError::NoSuchLayer`], the local store's errors, or the registry's.
    pub async fn open_layer(&self, index: usize) -> Result<LayerStream, ImageError> {
        let layer = self
            .layers
            .get(index)
            .ok_or(ImageError::NoSuchLayer(index))?;
        match &self.blobs {
            Blobs::Local { store, names } => {
                let name = names.get(index).ok_or(ImageError::NoSuchLayer(index))?;
                Ok(store.open(name)?.0)
            }
            Blobs::Registry { client, repository } => {
                registry::open_blob(client, repository, &layer.digest).await
            }
        }
    }
}

/// Why an image could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// `oci:` or `docker-archive:` without a path.
    #[error(
        "invalid image source {0:?}: expected oci:<dir>, docker-archive:<file> or a reference"
    )]
    InvalidSource(String),
    /// Not a registry reference.
    #[error("invalid image reference {text:?}: {source}")]
    InvalidReference {
        /// The text.
        text: String,
        /// Why.
        source: ImageRefError,
    },
    /// `--platform` is not `os/arch[/variant]`.
    #[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/arm64/v8")]
    InvalidPlatform(String),
    /// The directory or archive does not exist.
    #[error("{0}: no such file or directory")]
    NotFound(PathBuf),
    /// Reading a local file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file the image needs is missing from the layout or archive.
    #[error("{store}: missing {name}")]
    MissingFile {
        /// The directory or archive.
        store: String,
        /// The file within it.
        name: String,
    },
    /// The archive is compressed; members cannot be read in place.
    #[error("{0}: archive is compressed; decompress it first (docker save writes plain tar)")]
    CompressedArchive(PathBuf),
    /// The archive is not a readable tar.
    #[error("{path}: not a readable tar archive: {reason}")]
    MalformedArchive {
        /// The archive.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Neither a Docker `manifest.json` nor an OCI `index.json` was found.
    #[error(
        "{0}: neither an OCI image layout (index.json) nor a docker save archive (manifest.json)"
    )]
    NotAnImage(String),
    /// A JSON document of the layout or archive has the wrong shape.
    #[error("{what}: {reason}")]
    Malformed {
        /// Which document.
        what: String,
        /// Why.
        reason: String,
    },
    /// A manifest or index failed `pinfold-oci`'s checks.
    #[error("{what}: {source}")]
    Manifest {
        /// Which document.
        what: String,
        /// Why.
        source: ManifestError,
    },
    /// The config blob is not an image config.
    #[error("config {digest}: {reason}")]
    Config {
        /// The config digest.
        digest: Digest,
        /// The JSON error.
        reason: String,
    },
    /// A document is larger than its limit.
    #[error("{what} is {size} bytes, more than the {limit} accepted")]
    TooLarge {
        /// Which document.
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A manifest or config does not hash to the digest that names it.
    #[error("{what}: content hashes to {actual}, not {expected}")]
    DigestMismatch {
        /// Which document.
        what: String,
        /// The digest it is known by.
        expected: Digest,
        /// The digest of its bytes.
        actual: Digest,
    },
    /// No index entry matches the platform.
    #[error("no image for platform {wanted} (available: {})", available.join(", "))]
    NoMatchingPlatform {
        /// The platform asked for.
        wanted: Platform,
        /// The platforms the index has.
        available: Vec<String>,
    },
    /// Several images and no reference to choose one.
    #[error("{store} holds several images; name one with :<ref> (available: {})", available.join(", "))]
    Ambiguous {
        /// The layout or archive.
        store: String,
        /// Their names.
        available: Vec<String>,
    },
    /// The reference after `:` names no image of the layout or archive.
    #[error("{store} has no image {reference:?} (available: {})", available.join(", "))]
    ReferenceNotFound {
        /// The layout or archive.
        store: String,
        /// The reference asked for.
        reference: String,
        /// The names it has.
        available: Vec<String>,
    },
    /// Indexes nested deeper than Pinfold follows.
    #[error("indexes nested more than {0} deep")]
    TooDeep(usize),
    /// Layer index out of range.
    #[error("no layer {0}")]
    NoSuchLayer(usize),
    /// The registry failed.
    #[error("registry: {0}")]
    Registry(#[from] ClientError),
}

/// Opens the image `source` names; see the module documentation.
///
/// # Errors
/// [`ImageError`]: missing or malformed files, digest mismatches, no matching platform,
/// registry errors.
pub async fn open(source: &ImageSource, options: &OpenOptions) -> Result<Image, ImageError> {
    let name = source.to_string();
    match source {
        ImageSource::OciLayout(text) => {
            let (dir, reference) = split_path_ref(text);
            if !dir.is_dir() {
                return Err(ImageError::NotFound(dir));
            }
            let store = Store::Dir(dir);
            tokio::task::spawn_blocking({
                let platform = options.platform.clone();
                move || layout::open_oci(name, store, reference.as_deref(), &platform)
            })
            .await
            .map_err(|e| ImageError::Malformed {
                what: "image".to_owned(),
                reason: e.to_string(),
            })?
        }
        ImageSource::DockerArchive(text) => {
            let (file, reference) = split_path_ref(text);
            let platform = options.platform.clone();
            tokio::task::spawn_blocking(move || {
                if !file.is_file() {
                    return Err(ImageError::NotFound(file));
                }
                let store = Store::Archive(Arc::new(ArchiveIndex::scan(&file)?));
                layout::open_archive(name, store, reference.as_deref(), &platform)
            })
            .await
            .map_err(|e| ImageError::Malformed {
                what: "image".to_owned(),
                reason: e.to_string(),
            })?
        }
        ImageSource::Registry(reference) => registry::open(name, reference, options).await,
    }
}

/// Builds the layer list from manifest descriptors and the config.
fn layers_from(
    config: &ImageConfig,
    descriptors: Vec<(Digest, Option<String>, Option<u64>)>,
) -> Vec<Layer> {
    let created_by = config.layer_created_by(descriptors.len());
    let diff_ids = config
        .rootfs
        .as_ref()
        .map(|r| r.diff_ids.clone())
        .unwrap_or_default();
    descriptors
        .into_iter()
        .enumerate()
        .map(|(index, (digest, media_type, size))| Layer {
            index,
            digest,
            media_type,
            size,
            diff_id: diff_ids.get(index).cloned(),
            created_by: created_by.get(index).cloned().flatten(),
        })
        .collect()
}

/// The config descriptor of the image manifest `what`, its announced size within
/// [`MAX_CONFIG_BYTES`].
fn config_descriptor<'m>(
    manifest: &'m pinfold_oci::Manifest,
    what: &str,
) -> Result<&'m pinfold_oci::Descriptor, ImageError> {
    let config = manifest
        .config
        .as_ref()
        .ok_or_else(|| ImageError::Malformed {
            what: what.to_owned(),
            reason: "image manifest without config".to_owned(),
        })?;
    if config.size > MAX_CONFIG_BYTES {
        return Err(ImageError::TooLarge {
            what: format!("config {}", config.digest),
            size: config.size,
            limit: MAX_CONFIG_BYTES,
        });
    }
    Ok(config)
}

/// The layers an image manifest lists, with the config's diff ids and history.
fn manifest_layers(config: &ImageConfig, manifest: &pinfold_oci::Manifest) -> Vec<Layer> {
    let descriptors = manifest
        .layers
        .iter()
        .map(|l| (l.digest.clone(), Some(l.media_type.clone()), Some(l.size)))
        .collect();
    layers_from(config, descriptors)
}

/// Checks `bytes` against `expected` (hashing with its algorithm).
fn verify(what: &str, expected: &Digest, bytes: &[u8]) -> Result<(), ImageError> {
    let actual = Digest::compute(expected.algorithm(), bytes);
    if actual != *expected {
        return Err(ImageError::DigestMismatch {
            what: what.to_owned(),
            expected: expected.clone(),
            actual,
        });
    }
    Ok(())
}

/// Parses and checks a config blob.
fn parse_config(digest: &Digest, bytes: &[u8]) -> Result<ImageConfig, ImageError> {
    verify(&format!("config {digest}"), digest, bytes)?;
    ImageConfig::parse(bytes).map_err(|e| ImageError::Config {
        digest: digest.clone(),
        reason: e.to_string(),
    })
}

/// The entry of `manifests` for `platform`: an exact variant match first, then (when no
/// variant was asked for) the first entry of the right os and architecture.
fn select_platform<'m>(
    manifests: &'m [pinfold_oci::Descriptor],
    platform: &Platform,
) -> Result<&'m pinfold_oci::Descriptor, ImageError> {
    let matching: Vec<&pinfold_oci::Descriptor> = manifests
        .iter()
        .filter(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
        .collect();
    let best = matching
        .iter()
        .find(|d| {
            d.platform.as_ref().and_then(|p| p.variant.as_deref()) == platform.variant.as_deref()
        })
        .or(matching.first());
    best.copied().ok_or_else(|| ImageError::NoMatchingPlatform {
        wanted: platform.clone(),
        available: manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .map(|p| match &p.variant {
                Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                None => format!("{}/{}", p.os, p.architecture),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!(
            "oci:./x".parse::<ImageSource>().unwrap(),
            ImageSource::OciLayout("./x".into())
        );
        assert_eq!(
            "docker-archive:/tmp/a.tar".parse::<ImageSource>().unwrap(),
            ImageSource::DockerArchive("/tmp/a.tar".into())
        );
        assert!(matches!(
            "docker://ruby:3.3".parse::<ImageSource>().unwrap(),
            ImageSource::Registry(r) if r.to_string() == "docker.io/library/ruby:3.3"
        ));
        assert!("oci:".parse::<ImageSource>().is_err());
        assert!("Not A Ref".parse::<ImageSource>().is_err());
    }

    #[test]
    fn platforms_parse_and_match() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//x".parse::<Platform>().is_err());
        let any: Platform = "linux/arm64".parse().unwrap();
        let entry = pinfold_oci::Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            os_version: None,
            os_features: None,
            variant: Some("v8".into()),
        };
        assert!(any.matches(&entry));
        assert!(p.matches(&entry));
        assert!(!"linux/arm64/v9"
            .parse::<Platform>()
            .unwrap()
            .matches(&entry));
        assert_eq!(Platform::host().os, "linux");
    }
}
