//! Reads that may go through the pull-through mirror: a repository named after a configured
//! upstream (`docker.io/library/ruby`) is served by `pinfold-mirror`, any other from the local
//! store. Handlers call these instead of the local-only reads, so both kinds of repository
//! answer the same way.

use bytes::Bytes;
use futures_util::stream::BoxStream;
use pinfold_meta::{TagMove, TagMoveSource};
use pinfold_mirror::{Mirror, MirrorError, Promoted, PulledBlob, Route};
use pinfold_oci::{Digest, Reference, RepoName, Tag};
use pinfold_store::BlobFile;

use super::{ManifestBody, Registry};
use crate::v2::error::{ErrorCode, OciError};

/// A blob to send.
pub enum BlobBody {
    /// A stored blob.
    File(BlobFile),
    /// A blob the mirror is fetching, streamed as it arrives.
    Streaming {
        /// Its size.
        size: u64,
        /// Its bytes.
        stream: BoxStream<'static, Result<Bytes, std::io::Error>>,
    },
}

impl Registry {
    /// The pull-through mirror, when upstreams are configured.
    pub fn mirror(&self) -> Option<&Mirror> {
        self.inner.mirror.as_ref()
    }

    /// The upstream `repo` mirrors, or `None` for a local repository.
    pub fn mirror_route(&self, repo: &RepoName) -> Option<Route> {
        self.mirror()?.route(repo)
    }

    /// The repository a pull request means.
    ///
    /// * `ns` (containerd's mirror form, `?ns=docker.io`) names the upstream: the request's
    ///   name is the upstream's path, so the repository is `<ns>/<name>`.
    /// * Without `ns`, a name that is neither mirrored nor a local repository means the
    ///   default upstream's (Docker's `registry-mirrors` form: `library/ruby` is
    ///   `docker.io/library/ruby`), when a default upstream is configured.
    ///
    /// # Errors
    /// NAME_UNKNOWN when `ns` names no configured upstream; NAME_INVALID when the prefixed
    /// name is too long.
    pub async fn pull_name(&self, repo: RepoName, ns: Option<&str>) -> Result<RepoName, OciError> {
        let Some(mirror) = self.mirror() else {
            return Ok(repo);
        };
        if let Some(ns) = ns {
            if mirror.upstreams().by_name(ns).is_none() {
                return Err(OciError::new(ErrorCode::NameUnknown).detail(format!(
                    "ns={ns:?} names no configured upstream; configured: {}",
                    upstream_names(mirror)
                )));
            }
            return Ok(format!("{ns}/{repo}").parse()?);
        }
        if mirror.route(&repo).is_some() {
            return Ok(repo);
        }
        let Some(default) = mirror.upstreams().default_upstream() else {
            return Ok(repo);
        };
        if self.meta().repository_exists(&repo).await? {
            return Ok(repo);
        }
        Ok(format!("{}/{repo}", default.name()).parse()?)
    }

    /// Refuses writes to a mirrored repository: its content is the upstream's.
    ///
    /// # Errors
    /// DENIED for a mirrored `repo`.
    pub fn check_writable(&self, repo: &RepoName) -> Result<(), OciError> {
        match self.mirror_route(repo) {
            Some(route) => Err(OciError::new(ErrorCode::Denied).detail(format!(
                "{repo} mirrors upstream {}; it is read-only (push to a name without an upstream \
                 prefix)",
                route.upstream.name()
            ))),
            None => Ok(()),
        }
    }

    /// A manifest to serve, through the mirror for a mirrored repository. The second value is
    /// set when a cached manifest is served because the upstream could not be asked.
    ///
    /// # Errors
    /// MANIFEST_UNKNOWN when neither the cache nor the upstream has it; the mirror's upstream
    /// errors (UNAVAILABLE, TOOMANYREQUESTS) when nothing is cached.
    pub async fn pull_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<(ManifestBody, Option<String>), OciError> {
        let (Some(mirror), Some(route)) = (self.mirror(), self.mirror_route(repo)) else {
            return Ok((self.manifest(repo, reference).await?, None));
        };
        let pulled = mirror
            .manifest(&route, repo, reference)
            .await
            .map_err(|e| OciError::from_mirror(e, ErrorCode::ManifestUnknown))?;
        let body = self
            .manifest(repo, &Reference::Digest(pulled.record.digest))
            .await?;
        Ok((body, pulled.stale))
    }

    /// A blob to send, through the mirror for a mirrored repository.
    ///
    /// # Errors
    /// BLOB_UNKNOWN when neither the store nor the upstream has it; the mirror's upstream
    /// errors.
    pub async fn pull_blob(&self, repo: &RepoName, digest: &Digest) -> Result<BlobBody, OciError> {
        let (Some(mirror), Some(route)) = (self.mirror(), self.mirror_route(repo)) else {
            return Ok(BlobBody::File(self.open_blob(repo, digest).await?));
        };
        match mirror
            .blob(&route, repo, digest)
            .await
            .map_err(|e| OciError::from_mirror(e, ErrorCode::BlobUnknown))?
        {
            PulledBlob::Stored => Ok(BlobBody::File(self.open_blob(repo, digest).await?)),
            PulledBlob::Streaming { size, stream } => Ok(BlobBody::Streaming { size, stream }),
        }
    }

    /// A blob's size, asking the upstream (without fetching the blob) when a mirrored
    /// repository does not hold it yet.
    ///
    /// # Errors
    /// BLOB_UNKNOWN when neither has it.
    pub async fn pull_blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<u64, OciError> {
        let Some(route) = self.mirror_route(repo) else {
            return self.blob_size(repo, digest).await;
        };
        if let Some(size) = self.meta().repo_blob_size(repo, digest).await? {
            return Ok(size);
        }
        route
            .upstream
            .client
            .blob_size(&route.remote, digest)
            .await
            .map_err(|e| {
                OciError::from_mirror(
                    MirrorError::upstream(route.upstream.name(), e),
                    ErrorCode::BlobUnknown,
                )
            })
    }

    /// Points `tag` at `to` (or, for a mirrored repository, at what the upstream says now),
    /// journaled as a promotion by `actor`.
    ///
    /// # Errors
    /// MANIFEST_UNKNOWN when the target is unknown (locally and upstream); NAME_UNKNOWN for a
    /// local repository without `to`.
    pub async fn promote(
        &self,
        repo: &RepoName,
        tag: &Tag,
        to: Option<&Digest>,
        actor: &str,
    ) -> Result<Promoted, OciError> {
        let promoted = match (self.mirror(), self.mirror_route(repo)) {
            (Some(mirror), Some(route)) => mirror
                .promote(&route, repo, tag, to, actor)
                .await
                .map_err(|e| OciError::from_mirror(e, ErrorCode::ManifestUnknown))?,
            _ => {
                let Some(to) = to else {
                    return Err(OciError::new(ErrorCode::NameUnknown).detail(format!(
                        "{repo} is not mirrored: name the digest to promote"
                    )));
                };
                let previous = self.meta().resolve_tag(repo, tag).await?.map(|r| r.digest);
                let mv = TagMove {
                    actor: actor.to_owned(),
                    source: TagMoveSource::Promote,
                };
                // Checked under the tag's lock, in the transaction that moves it.
                let immutable = self
                    .rules()
                    .immutable_rule(repo.as_str(), tag.as_str())
                    .is_some();
                let moved = match self.meta().move_tag(repo, tag, to, &mv, immutable).await {
                    Ok(moved) => moved,
                    Err(pinfold_meta::MetaError::ManifestUnknown { .. }) => {
                        return Err(OciError::new(ErrorCode::ManifestUnknown)
                            .detail(format!("{repo}@{to} is not stored")))
                    }
                    Err(e) => return Err(e.into()),
                };
                Promoted {
                    previous,
                    digest: to.clone(),
                    moved,
                }
            }
        };
        self.forget_reference(repo, tag.as_str()).await;
        Ok(promoted)
    }
}

fn upstream_names(mirror: &Mirror) -> String {
    let names: Vec<&str> = mirror.upstreams().iter().map(|u| u.name()).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}
