//! Images in a registry, through `pinfold-client` (the one registry client): credentials as the
//! Docker CLI finds them, manifests verified against their digest, blobs streamed and verified.

use std::sync::Arc;

use futures_util::TryStreamExt;
use pinfold_client::RegistryClient;
use pinfold_oci::{Digest, ImageReference, Manifest, Reference, RepoName};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{
    config_descriptor, manifest_layers, parse_config, select_platform, Blobs, Image, ImageError,
    LayerStream, OpenOptions,
};

/// Indexes nested inside indexes are followed this deep.
const MAX_DEPTH: usize = 4;

pub(super) async fn open(
    name: String,
    reference: &ImageReference,
    options: &OpenOptions,
) -> Result<Image, ImageError> {
    let client = Arc::new(
        RegistryClient::from_docker_config(reference.registry(), options.client.clone()).await?,
    );
    let repository = reference.repository().clone();
    let mut want = reference.reference();
    for _ in 0..MAX_DEPTH {
        let fetched = client.get_manifest(&repository, &want).await?;
        let what = format!("{repository}@{}", fetched.digest);
        let manifest =
            Manifest::parse(Some(&fetched.media_type), &fetched.bytes).map_err(|source| {
                ImageError::Manifest {
                    what: what.clone(),
                    source,
                }
            })?;
        if manifest.kind.is_index() {
            let child = select_platform(&manifest.manifests, &options.platform)?;
            want = Reference::Digest(child.digest.clone());
            continue;
        }
        let config = config_descriptor(&manifest, &what)?;
        let bytes = client
            .get_blob(&repository, &config.digest)
            .await?
            .collect_bytes()
            .await?;
        let parsed = parse_config(&config.digest, &bytes)?;
        let layers = manifest_layers(&parsed, &manifest);
        return Ok(Image {
            name,
            manifest_digest: Some(fetched.digest),
            config_digest: config.digest.clone(),
            config: parsed,
            layers,
            blobs: Blobs::Registry { client, repository },
        });
    }
    Err(ImageError::TooDeep(MAX_DEPTH))
}

/// A blocking reader over a blob's verified stream (see [`LayerStream`]).
pub(super) async fn open_blob(
    client: &RegistryClient,
    repository: &RepoName,
    digest: &Digest,
) -> Result<LayerStream, ImageError> {
    let stream = client
        .get_blob(repository, digest)
        .await?
        .map_err(std::io::Error::other);
    Ok(Box::new(SyncIoBridge::new(StreamReader::new(stream))))
}
