//! Resolving image references to digests through `pinfold-client`: the top digest (index or
//! manifest), its media type and, per platform, the digest of the image for that platform.
//!
//! One client per registry host (credentials from `~/.docker/config.json`, the token flow),
//! shared by every reference on that host; at most [`ResolveOptions::concurrency`] requests are
//! in flight, and each is bounded by the client's connect and request timeouts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use pinfold_client::{ClientConfig, ClientError, RegistryClient};
use pinfold_oci::{media_type, Digest, ImageReference, Manifest, ManifestError, Reference};
use serde::Deserialize;

/// An image config larger than this is not read for its platform (real ones are a few KiB).
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// What a reference resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The digest of the manifest or index the reference names.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// `os/architecture[/variant]` → digest of that platform's image manifest. For an index,
    /// its entries (attestation entries, platform `unknown/unknown`, left out); for a single
    /// image, its config's platform mapped to `digest`.
    pub platforms: BTreeMap<String, Digest>,
    /// For a reference that carries both a tag and a digest: what the tag points to now
    /// (`None` when the tag could not be read). Not recorded in the lockfile.
    pub tag_digest: Option<Digest>,
}

impl Resolved {
    /// For a pinned `name:tag@digest`: the digest its tag points to now, when that is not the
    /// pinned one (the pin is behind its tag; a person decides whether to move it).
    pub fn pin_behind_tag(&self) -> Option<&Digest> {
        self.tag_digest.as_ref().filter(|now| **now != self.digest)
    }
}

/// How to resolve.
#[derive(Debug, Clone)]
pub struct ResolveOptions {
    /// Connection settings of every registry client.
    pub client: ClientConfig,
    /// Keep only these platforms (`linux/amd64`; `linux/arm64` also matches
    /// `linux/arm64/v8`); each must be present. Empty keeps every platform.
    pub platforms: Vec<String>,
    /// References resolved at the same time.
    pub concurrency: usize,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        ResolveOptions {
            client: ClientConfig::default(),
            platforms: Vec::new(),
            concurrency: 8,
        }
    }
}

/// Why a reference could not be resolved.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The registry could not be reached or answered an error (not found, unauthorized...).
    #[error("cannot resolve {reference}: {source}")]
    Client {
        /// The reference, canonical form.
        reference: String,
        /// The client's error (shared by every reference of a registry whose client failed).
        source: Arc<ClientError>,
    },
    /// The registry served something that is not a valid manifest.
    #[error("cannot resolve {reference}: invalid manifest: {source}")]
    Manifest {
        /// The reference.
        reference: String,
        /// Why the manifest was refused.
        source: ManifestError,
    },
    /// The image config could not be read as JSON.
    #[error("cannot resolve {reference}: invalid image config {digest}: {reason}")]
    Config {
        /// The reference.
        reference: String,
        /// The config's digest.
        digest: Digest,
        /// The JSON error.
        reason: String,
    },
    /// A platform asked for with `--platform` is not in the image.
    #[error("{reference} has no image for platform {platform} (it has: {})", available.join(", "))]
    MissingPlatform {
        /// The reference.
        reference: String,
        /// The platform asked for.
        platform: String,
        /// The platforms it has.
        available: Vec<String>,
    },
}

/// Resolves every reference (duplicates are resolved once) and returns the outcome per
/// reference, keyed by its canonical form. `on_done` is called after each one (for progress).
pub async fn resolve_all(
    references: &[ImageReference],
    options: &ResolveOptions,
    on_done: &(dyn Fn(&ImageReference) + Sync),
) -> BTreeMap<String, Result<Resolved, ResolveError>> {
    let mut unique: BTreeMap<String, &ImageReference> = BTreeMap::new();
    for r in references {
        unique.entry(r.to_string()).or_insert(r);
    }
    let mut clients: HashMap<&str, Result<Arc<RegistryClient>, Arc<ClientError>>> = HashMap::new();
    for r in unique.values() {
        if !clients.contains_key(r.registry()) {
            let client = RegistryClient::from_docker_config(r.registry(), options.client.clone())
                .await
                .map(Arc::new)
                .map_err(Arc::new);
            clients.insert(r.registry(), client);
        }
    }
    let clients = &clients;
    stream::iter(unique)
        .map(|(key, reference)| async move {
            let result = match &clients[reference.registry()] {
                Ok(client) => resolve_one(client, reference, &options.platforms).await,
                Err(e) => Err(ResolveError::Client {
                    reference: key.clone(),
                    source: e.clone(),
                }),
            };
            on_done(reference);
            (key, result)
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await
}

/// `os/architecture[/variant]`, the way `docker --platform` spells it.
fn platform_key(os: &str, architecture: &str, variant: Option<&str>) -> String {
    match variant.filter(|v| !v.is_empty()) {
        Some(v) => format!("{os}/{architecture}/{v}"),
        None => format!("{os}/{architecture}"),
    }
}

async fn resolve_one(
    client: &RegistryClient,
    image: &ImageReference,
    wanted: &[String],
) -> Result<Resolved, ResolveError> {
    let reference = image.to_string();
    let client_error = |e: ClientError| ResolveError::Client {
        reference: reference.clone(),
        source: Arc::new(e),
    };
    let repo = image.repository();
    let fetched = client
        .get_manifest(repo, &image.reference())
        .await
        .map_err(client_error)?;
    let manifest =
        Manifest::parse(Some(&fetched.media_type), &fetched.bytes).map_err(|source| {
            ResolveError::Manifest {
                reference: reference.clone(),
                source,
            }
        })?;
    let mut platforms = BTreeMap::new();
    if manifest.kind.is_index() {
        for child in &manifest.manifests {
            let Some(p) = &child.platform else { continue };
            if p.os == "unknown" || p.architecture == "unknown" {
                continue; // BuildKit's attestation manifests, not runnable images
            }
            platforms
                .entry(platform_key(&p.os, &p.architecture, p.variant.as_deref()))
                .or_insert_with(|| child.digest.clone());
        }
    } else if let Some(config) = manifest.config.as_ref().filter(|c| {
        (c.media_type == media_type::OCI_CONFIG || c.media_type == media_type::DOCKER_CONFIG)
            && c.size <= MAX_CONFIG_BYTES
    }) {
        #[derive(Deserialize)]
        struct ConfigPlatform {
            os: Option<String>,
            architecture: Option<String>,
            variant: Option<String>,
        }
        let bytes = client
            .get_blob(repo, &config.digest)
            .await
            .map_err(client_error)?
            .collect_bytes()
            .await
            .map_err(client_error)?;
        let parsed: ConfigPlatform =
            serde_json::from_slice(&bytes).map_err(|e| ResolveError::Config {
                reference: reference.clone(),
                digest: config.digest.clone(),
                reason: e.to_string(),
            })?;
        if let (Some(os), Some(arch)) = (parsed.os, parsed.architecture) {
            platforms.insert(
                platform_key(&os, &arch, parsed.variant.as_deref()),
                fetched.digest.clone(),
            );
        }
    }
    if !wanted.is_empty() {
        let available: Vec<String> = platforms.keys().cloned().collect();
        let matches = |want: &str, have: &str| {
            have == want
                || (want.matches('/').count() == 1
                    && have.starts_with(want)
                    && have[want.len()..].starts_with('/'))
        };
        for want in wanted {
            if !available.iter().any(|have| matches(want, have)) {
                return Err(ResolveError::MissingPlatform {
                    reference,
                    platform: want.clone(),
                    available,
                });
            }
        }
        platforms.retain(|have, _| wanted.iter().any(|want| matches(want, have)));
    }
    // A pinned `name:tag@digest` is resolved by its digest (what Docker pulls); the tag's
    // current digest only tells `--rewrite` and `--check` whether the pin is behind.
    let tag_digest = match (image.tag(), image.digest()) {
        (Some(tag), Some(_)) => client
            .head_manifest(
                repo,
                &Reference::Tag(tag.clone()),
                &media_type::MANIFEST_TYPES,
            )
            .await
            .ok()
            .map(|head| head.digest),
        _ => None,
    };
    Ok(Resolved {
        digest: fetched.digest,
        media_type: fetched.media_type,
        platforms,
        tag_digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both cases in one test because they set `DOCKER_CONFIG` for the process.
    #[tokio::test]
    async fn client_failures_are_typed_per_reference() {
        let dir = std::env::temp_dir().join(format!("pinfold-resolve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Keeps the host's ~/.docker/config.json out; only this test sets the variable.
        std::env::set_var("DOCKER_CONFIG", &dir);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let refs: Vec<ImageReference> = ["a:1", "b:1", "a:1"]
            .iter()
            .map(|r| format!("127.0.0.1:{port}/{r}").parse().unwrap())
            .collect();
        let done = std::sync::atomic::AtomicUsize::new(0);
        let count = |_: &ImageReference| {
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };

        // Nothing listens: every distinct reference fails with the transport error.
        let out = resolve_all(&refs, &ResolveOptions::default(), &count).await;
        assert_eq!(out.len(), 2, "duplicates are resolved once");
        assert_eq!(done.load(std::sync::atomic::Ordering::Relaxed), 2);
        for (name, result) in &out {
            match result {
                Err(ResolveError::Client { reference, source }) => {
                    assert_eq!(reference, name);
                    assert!(matches!(**source, ClientError::Transport(_)), "{source}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }

        // A broken docker config fails the registry's client once, for each reference on it.
        std::fs::write(dir.join("config.json"), "{not json").unwrap();
        let out = resolve_all(&refs, &ResolveOptions::default(), &count).await;
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(out.len(), 2);
        for result in out.values() {
            match result {
                Err(ResolveError::Client { source, .. }) => {
                    assert!(
                        matches!(**source, ClientError::DockerConfig { .. }),
                        "{source}"
                    )
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn platform_keys_follow_docker_spelling() {
        assert_eq!(platform_key("linux", "amd64", None), "linux/amd64");
        assert_eq!(platform_key("linux", "arm64", Some("v8")), "linux/arm64/v8");
        assert_eq!(platform_key("linux", "arm64", Some("")), "linux/arm64");
    }
}
