//! [`Mirror`]: pulls through to the upstreams and decides what a mirrored tag serves.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use parking_lot::Mutex;
use pinfold_client::ClientError;
use pinfold_meta::{
    ManifestRecord, Meta, MirrorTagState, NewManifest, TagMove, TagMoveSource, UpstreamObservation,
};
use pinfold_oci::{media_type, Digest, Manifest, Reference, RepoName, Tag};
use pinfold_store::{AppendOptions, BlobStore};
use time::OffsetDateTime;

use crate::fetch::{FetchFailure, Fetches, Joined, Progress, Reporter};
use crate::upstream::{Route, Upstream, Upstreams};
use crate::{MirrorConfig, MirrorError, MirrorSettings, TagPolicy};

/// Referrers fetched with one subject at most; more are left to a later pull.
const MAX_REFERRERS: usize = 64;

/// Dirty pages one blob fetch may leave to the kernel before waiting for the disk: enough
/// that a fetch of a 1 GiB layer streams at network speed; the rest is written by the
/// completing fsync, after the clients got their bytes.
const FETCH_MAX_DIRTY_BYTES: u64 = 1024 * 1024 * 1024;

/// A manifest as the mirror serves it.
#[derive(Debug, Clone)]
pub struct PulledManifest {
    /// The manifest to serve (its bytes are in the blob store).
    pub record: ManifestRecord,
    /// Set when the upstream could not be asked and the cached manifest is served instead:
    /// the reason, for a `Warning` header and the log.
    pub stale: Option<String>,
}

/// A blob as the mirror serves it.
pub enum PulledBlob {
    /// In the store and linked to the repository: serve it like any local blob.
    Stored,
    /// Being fetched from the upstream: these bytes follow the fetch.
    Streaming {
        /// The blob's size.
        size: u64,
        /// The bytes, from the first; ends with an error if the fetch fails.
        stream: BoxStream<'static, Result<Bytes, std::io::Error>>,
    },
}

impl std::fmt::Debug for PulledBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PulledBlob::Stored => f.write_str("Stored"),
            PulledBlob::Streaming { size, .. } => write!(f, "Streaming({size} bytes)"),
        }
    }
}

/// What a promotion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promoted {
    /// Where the tag pointed before.
    pub previous: Option<Digest>,
    /// Where it points now.
    pub digest: Digest,
    /// False when it already pointed there (nothing journaled).
    pub moved: bool,
}

/// What one upstream check of a tag found.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckOutcome {
    /// The upstream answered; the observation was recorded.
    Observed(Box<UpstreamObservation>),
    /// The upstream does not have the tag any more (the cached one is still served).
    Gone,
    /// The upstream could not be asked; the reason was recorded.
    Failed(String),
    /// Skipped: the upstream asked us to back off (429) until then.
    BackingOff,
}

/// One pass of the drift poller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriftPass {
    /// Tags checked upstream.
    pub checked: usize,
    /// New drift events opened.
    pub new_drift: usize,
    /// Checks that failed.
    pub failed: usize,
    /// Checks skipped because their upstream is backing off.
    pub skipped: usize,
}

/// The pull-through mirror over the local metadata and blob store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Mirror {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    upstreams: Upstreams,
    settings: MirrorSettings,
    meta: Meta,
    store: BlobStore,
    fetches: Arc<Fetches>,
    max_blob_bytes: Option<u64>,
    /// Upstreams that answered 429, and until when they are left alone.
    backoff: Mutex<HashMap<String, Instant>>,
    /// Held while a drift event is explained (one at a time).
    explaining: tokio::sync::Mutex<()>,
    /// Tags the registry's rules make immutable: the mirror never moves them by itself.
    immutable: std::sync::OnceLock<ImmutableTags>,
}

/// Says whether a tag of a repository is immutable (the server's `[[immutable]]` rules). Under
/// `follow` and `cooldown` such a tag stays where it is and its upstream move stays an open
/// drift event, as under `pin`.
#[derive(Clone)]
pub struct ImmutableTags(pub Arc<IsImmutable>);

/// The predicate inside [`ImmutableTags`].
pub type IsImmutable = dyn Fn(&RepoName, &Tag) -> bool + Send + Sync;

impl std::fmt::Debug for ImmutableTags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImmutableTags(..)")
    }
}

fn tag_move(actor: String, source: TagMoveSource) -> TagMove {
    TagMove { actor, source }
}

impl Mirror {
    /// Tells the mirror which tags are immutable (once, right after [`Mirror::new`]; later
    /// calls are ignored).
    pub fn set_immutable_tags(&self, immutable: ImmutableTags) {
        let _ = self.inner.immutable.set(immutable);
    }

    /// Whether the registry's rules make `tag` of `repo` immutable.
    fn is_immutable(&self, repo: &RepoName, tag: &Tag) -> bool {
        self.inner
            .immutable
            .get()
            .is_some_and(|rule| (rule.0)(repo, tag))
    }

    /// A mirror of `config`'s upstreams writing to `meta` and `store`.
    ///
    /// # Errors
    ///
    /// [`MirrorError::Config`] for an invalid upstream.
    pub fn new(
        config: &MirrorConfig,
        meta: Meta,
        store: BlobStore,
        max_blob_bytes: Option<u64>,
    ) -> Result<Mirror, MirrorError> {
        let timeout = Duration::from_secs(config.settings.upstream_timeout_seconds.max(1));
        Ok(Mirror {
            inner: Arc::new(Inner {
                upstreams: Upstreams::new(&config.upstreams, timeout)?,
                settings: config.settings.clone(),
                meta,
                store,
                fetches: Arc::new(Fetches::default()),
                max_blob_bytes,
                backoff: Mutex::new(HashMap::new()),
                explaining: tokio::sync::Mutex::new(()),
                immutable: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The configured upstreams.
    pub fn upstreams(&self) -> &Upstreams {
        &self.inner.upstreams
    }

    /// The poller's settings.
    pub fn settings(&self) -> &MirrorSettings {
        &self.inner.settings
    }

    /// The upstream `repo` is mirrored from, or `None` for a local repository.
    pub fn route(&self, repo: &RepoName) -> Option<Route> {
        self.inner.upstreams.route(repo)
    }

    /// Blob fetches in flight (for status pages and tests).
    pub fn fetches_in_flight(&self) -> usize {
        self.inner.fetches.len()
    }

    fn meta(&self) -> &Meta {
        &self.inner.meta
    }

    fn store(&self) -> &BlobStore {
        &self.inner.store
    }

    /// Resolves `reference` of the mirrored `repo`: from the cache when the tag policy says
    /// so, else from the upstream, storing what it sends exactly as sent.
    ///
    /// By digest: served from the cache, or fetched once and kept. By tag: a tag never seen is
    /// fetched and pinned; then `pin` serves the pinned digest without asking the upstream
    /// (the drift poller watches it), `follow` and `cooldown` re-check the upstream once per
    /// `refresh_seconds` and move the tag as their rule says. When the upstream cannot be
    /// asked, the cached manifest is served with [`PulledManifest::stale`] set.
    ///
    /// # Errors
    ///
    /// [`MirrorError::NotFound`] when neither the cache nor the upstream has it;
    /// [`MirrorError::Upstream`] / [`MirrorError::InvalidManifest`] when the upstream fails and
    /// nothing is cached; metadata and store errors.
    pub async fn manifest(
        &self,
        route: &Route,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<PulledManifest, MirrorError> {
        match reference {
            Reference::Digest(digest) => {
                if let Some(record) = self.meta().manifest(repo, digest).await? {
                    return Ok(PulledManifest {
                        record,
                        stale: None,
                    });
                }
                let record = self.fetch_manifest(route, repo, reference, None).await?;
                Ok(PulledManifest {
                    record,
                    stale: None,
                })
            }
            Reference::Tag(tag) => {
                let Some(pinned) = self.meta().resolve_tag(repo, tag).await? else {
                    let record = self
                        .fetch_manifest(route, repo, reference, Some(tag))
                        .await?;
                    self.meta()
                        .observe_upstream(repo, tag, route.upstream.name(), Some(&record.digest))
                        .await?;
                    return Ok(PulledManifest {
                        record,
                        stale: None,
                    });
                };
                if route.upstream.policy() == TagPolicy::Pin || !self.due(route, repo, tag).await? {
                    return Ok(PulledManifest {
                        record: pinned,
                        stale: None,
                    });
                }
                match self.check(route, repo, tag).await? {
                    CheckOutcome::Failed(reason) => Ok(PulledManifest {
                        record: pinned,
                        stale: Some(reason),
                    }),
                    CheckOutcome::BackingOff => Ok(PulledManifest {
                        record: pinned,
                        stale: Some(format!(
                            "upstream {} is rate limiting; serving the cached tag",
                            route.upstream.name()
                        )),
                    }),
                    CheckOutcome::Observed(_) | CheckOutcome::Gone => {
                        let record = self.meta().resolve_tag(repo, tag).await?.unwrap_or(pinned);
                        Ok(PulledManifest {
                            record,
                            stale: None,
                        })
                    }
                }
            }
        }
    }

    /// True when `tag` was last checked upstream longer ago than its upstream's refresh.
    async fn due(&self, route: &Route, repo: &RepoName, tag: &Tag) -> Result<bool, MirrorError> {
        let refresh = route.upstream.config.refresh_seconds;
        Ok(match self.meta().mirror_tag(repo, tag).await? {
            None => true,
            Some(state) => passed(state.checked_at, refresh, OffsetDateTime::now_utc()),
        })
    }

    /// Fetches a manifest upstream, stores its exact bytes and records it (and `tag`, journaled
    /// as a mirror move). Referrers of the new manifest are fetched in the background.
    async fn fetch_manifest(
        &self,
        route: &Route,
        repo: &RepoName,
        reference: &Reference,
        tag: Option<&Tag>,
    ) -> Result<ManifestRecord, MirrorError> {
        let upstream = &route.upstream;
        let permit = upstream.permit().await?;
        let fetched = upstream
            .client
            .get_manifest(&route.remote, reference)
            .await
            .map_err(|e| MirrorError::upstream(upstream.name(), e))?;
        drop(permit);
        let record = self
            .store_manifest(
                repo,
                upstream,
                &fetched.digest,
                &fetched.media_type,
                fetched.bytes,
                tag,
            )
            .await?;
        let this = self.clone();
        let (route, repo, subject) = (route.clone(), repo.clone(), record.digest.clone());
        tokio::spawn(async move { this.fetch_referrers(&route, &repo, &subject).await });
        Ok(record)
    }

    /// Stores verified manifest bytes and records them; the tag move (if any) is journaled
    /// with the upstream as actor.
    async fn store_manifest(
        &self,
        repo: &RepoName,
        upstream: &Upstream,
        digest: &Digest,
        content_type: &str,
        bytes: Bytes,
        tag: Option<&Tag>,
    ) -> Result<ManifestRecord, MirrorError> {
        let manifest = Manifest::parse(Some(content_type), &bytes).map_err(|source| {
            MirrorError::InvalidManifest {
                upstream: upstream.name().to_owned(),
                source,
            }
        })?;
        let size = bytes.len() as u64;
        let record = NewManifest::describe(repo, digest, &manifest, size);
        self.store().put_blob(digest, bytes).await?;
        self.meta()
            .put_manifest(
                &record,
                tag,
                &tag_move(upstream.actor(), TagMoveSource::Mirror),
            )
            .await?;
        Ok(ManifestRecord {
            digest: digest.clone(),
            media_type: record.media_type,
            size,
        })
    }

    /// Fetches the referrers (signatures, SBOMs) of `subject` that the upstream has and the
    /// mirror does not. Best effort: failures are logged, the pull that triggered it is
    /// already answered.
    async fn fetch_referrers(&self, route: &Route, repo: &RepoName, subject: &Digest) {
        let upstream = &route.upstream;
        let Ok(permit) = upstream.permit().await else {
            tracing::debug!(upstream = upstream.name(), %subject, "referrers not fetched: upstream busy");
            return;
        };
        let referrers = upstream.client.referrers(&route.remote, subject).await;
        drop(permit);
        let referrers = match referrers {
            Ok(Some(list)) => list,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(upstream = upstream.name(), %subject, error = %e, "referrers not fetched");
                return;
            }
        };
        for descriptor in referrers.iter().take(MAX_REFERRERS) {
            if !media_type::MANIFEST_TYPES.contains(&descriptor.media_type.as_str()) {
                continue;
            }
            match self.meta().manifest(repo, &descriptor.digest).await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "looking up a referrer");
                    return;
                }
            }
            let reference = Reference::Digest(descriptor.digest.clone());
            let Ok(permit) = upstream.permit().await else {
                tracing::debug!(upstream = upstream.name(), %subject, "referrers not fetched: upstream busy");
                return;
            };
            let fetched = upstream
                .client
                .get_manifest(&route.remote, &reference)
                .await;
            drop(permit);
            let fetched = match fetched {
                Ok(fetched) => fetched,
                Err(e) => {
                    tracing::warn!(upstream = upstream.name(), digest = %descriptor.digest, error = %e, "referrer not fetched");
                    continue;
                }
            };
            if let Err(e) = self
                .store_manifest(
                    repo,
                    upstream,
                    &fetched.digest,
                    &fetched.media_type,
                    fetched.bytes,
                    None,
                )
                .await
            {
                tracing::warn!(digest = %descriptor.digest, error = %e, "referrer not stored");
            }
        }
    }

    /// Asks the upstream where `tag` points now, records the observation (opening or closing
    /// drift events) and, under `follow` and `cooldown`, moves the tag when the rule allows.
    ///
    /// # Errors
    ///
    /// Metadata and store errors; upstream failures are outcomes, not errors.
    pub async fn check(
        &self,
        route: &Route,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<CheckOutcome, MirrorError> {
        let upstream = &route.upstream;
        if self.backing_off(upstream.name()) {
            return Ok(CheckOutcome::BackingOff);
        }
        // A busy upstream is checked at the next pass; its clients come first.
        let Ok(permit) = upstream.permit().await else {
            return Ok(CheckOutcome::BackingOff);
        };
        let head = upstream
            .client
            .head_manifest(
                &route.remote,
                &Reference::Tag(tag.clone()),
                &media_type::MANIFEST_TYPES,
            )
            .await;
        drop(permit);
        let head = match head {
            Ok(head) => head,
            Err(ClientError::NotFound { .. }) => {
                self.meta()
                    .observe_upstream(repo, tag, upstream.name(), None)
                    .await?;
                tracing::info!(%repo, %tag, upstream = upstream.name(), "tag is gone upstream; still serving the cached one");
                return Ok(CheckOutcome::Gone);
            }
            Err(e) => {
                if let ClientError::TooManyRequests { retry_after } = &e {
                    let wait = retry_after.unwrap_or(Duration::from_secs(60));
                    self.inner
                        .backoff
                        .lock()
                        .insert(upstream.name().to_owned(), Instant::now() + wait);
                }
                let reason = format!("upstream {}: {e}", upstream.name());
                tracing::warn!(%repo, %tag, %reason, "upstream check failed; serving the cache");
                self.meta()
                    .record_upstream_failure(repo, tag, upstream.name(), &reason)
                    .await?;
                return Ok(CheckOutcome::Failed(reason));
            }
        };
        let observation = self
            .meta()
            .observe_upstream(repo, tag, upstream.name(), Some(&head.digest))
            .await?;
        if let (true, Some(event)) = (observation.new_drift, &observation.drift) {
            let this = self.clone();
            let (route, event) = (route.clone(), event.clone());
            // On a blocking thread: the inspect futures are not `Send` for every lifetime
            // (rustc's higher-ranked Send limitation), and the work is long and CPU-bound.
            let handle = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || handle.block_on(this.explain(route, event)));
        }
        let immutable = self.is_immutable(repo, tag);
        let follow = match (upstream.policy(), &observation.pinned) {
            (_, None) => false,
            (_, Some(pinned)) if *pinned == head.digest => false,
            _ if immutable => false,
            (TagPolicy::Pin, _) => false,
            (TagPolicy::Follow, _) => true,
            (TagPolicy::Cooldown, _) => observation.state.upstream_since.is_some_and(|since| {
                passed(
                    since,
                    upstream.config.cooldown_seconds,
                    OffsetDateTime::now_utc(),
                )
            }),
        };
        if !follow {
            return Ok(CheckOutcome::Observed(Box::new(observation)));
        }
        match self
            .move_to(
                route,
                repo,
                tag,
                &head.digest,
                upstream.actor(),
                TagMoveSource::Mirror,
            )
            .await
        {
            Ok(_) => {
                let settled = self
                    .meta()
                    .observe_upstream(repo, tag, upstream.name(), Some(&head.digest))
                    .await?;
                Ok(CheckOutcome::Observed(Box::new(settled)))
            }
            Err(
                e @ (MirrorError::Upstream { .. }
                | MirrorError::NotFound { .. }
                | MirrorError::InvalidManifest { .. }),
            ) => {
                let reason = e.to_string();
                self.meta()
                    .record_upstream_failure(repo, tag, upstream.name(), &reason)
                    .await?;
                Ok(CheckOutcome::Failed(reason))
            }
            Err(e) => Err(e),
        }
    }

    /// Points `tag` at `digest`, fetching the manifest first if the mirror does not hold it.
    async fn move_to(
        &self,
        route: &Route,
        repo: &RepoName,
        tag: &Tag,
        digest: &Digest,
        actor: String,
        source: TagMoveSource,
    ) -> Result<Promoted, MirrorError> {
        let previous = self.meta().resolve_tag(repo, tag).await?.map(|r| r.digest);
        // A promotion of an immutable tag is refused before anything is fetched, and again
        // under the tag's lock when it moves (the policies never try one, see `Mirror::check`).
        let immutable = self.is_immutable(repo, tag);
        if let Some(current) = previous.as_ref().filter(|c| immutable && *c != digest) {
            return Err(MirrorError::Meta(pinfold_meta::MetaError::TagImmutable {
                repo: repo.to_string(),
                tag: tag.to_string(),
                current: current.to_string(),
                refused: digest.to_string(),
            }));
        }
        if self.meta().manifest(repo, digest).await?.is_none() {
            self.fetch_manifest(route, repo, &Reference::Digest(digest.clone()), None)
                .await?;
        }
        let moved = self
            .meta()
            .move_tag(
                repo,
                tag,
                digest,
                &tag_move(actor.clone(), source),
                immutable,
            )
            .await?;
        // A move the mirror made on its own (follow and cooldown policies) has no request
        // behind it for the server's audit middleware to record, so it is audited here.
        // Promotions come through the API and are audited there.
        if moved && source == TagMoveSource::Mirror {
            let event = pinfold_meta::NewAuditEvent {
                actor,
                client: "mirror".to_owned(),
                action: "tag-move".to_owned(),
                target: format!("{repo}:{tag}@{digest}"),
                outcome: "ok".to_owned(),
            };
            if let Err(e) = self.meta().append_audit(&event).await {
                tracing::warn!(%repo, %tag, "audit row for a mirror tag move not written: {e}");
            }
        }
        Ok(Promoted {
            previous,
            digest: digest.clone(),
            moved,
        })
    }

    /// Accepts an upstream move: points `tag` of the mirrored `repo` at `to`, or at what the
    /// upstream says now when `to` is `None`, journaled as a promotion by `actor`. Open drift
    /// events for that digest close as accepted.
    ///
    /// # Errors
    ///
    /// [`MirrorError::NotFound`] when the upstream has no such tag or digest; upstream,
    /// metadata and store errors. Nothing moves then.
    pub async fn promote(
        &self,
        route: &Route,
        repo: &RepoName,
        tag: &Tag,
        to: Option<&Digest>,
        actor: &str,
    ) -> Result<Promoted, MirrorError> {
        let upstream = &route.upstream;
        let target = match to {
            Some(digest) => digest.clone(),
            None => {
                let _permit = upstream.permit().await?;
                upstream
                    .client
                    .head_manifest(
                        &route.remote,
                        &Reference::Tag(tag.clone()),
                        &media_type::MANIFEST_TYPES,
                    )
                    .await
                    .map_err(|e| MirrorError::upstream(upstream.name(), e))?
                    .digest
            }
        };
        let promoted = self
            .move_to(
                route,
                repo,
                tag,
                &target,
                actor.to_owned(),
                TagMoveSource::Promote,
            )
            .await?;
        // Close the events this settles, against the last known upstream digest.
        let known = self
            .meta()
            .mirror_tag(repo, tag)
            .await?
            .and_then(|s| s.upstream_digest);
        let observed = if to.is_none() { Some(target) } else { known };
        self.meta()
            .observe_upstream(repo, tag, upstream.name(), observed.as_ref())
            .await?;
        Ok(promoted)
    }

    /// Attaches `pinfold-inspect`'s explanation of what changed between the pinned and the
    /// upstream image to a new drift event. Both images are read from the upstream (the pinned
    /// digest is still there by digest unless it was deleted); layer indexes are cached by
    /// digest under `<data-dir>/cache/layers`, so a base shared with earlier images is read
    /// once. One explanation at a time: it reads whole layers and is never urgent. A failure is
    /// recorded in place of the explanation.
    async fn explain(self, route: Route, event: pinfold_meta::DriftEvent) {
        let _turn = self.inner.explaining.lock().await;
        let explained = async {
            let before = open_upstream_image(&route, &event.pinned_digest).await?;
            let after = open_upstream_image(&route, &event.upstream_digest).await?;
            let options = pinfold_inspect::diff::DiffOptions {
                cache: pinfold_inspect::layer::cache::LayerCache::at(
                    self.store().root().join("cache").join("layers"),
                ),
                parallelism: 1,
                progress: None,
            };
            let report = pinfold_inspect::diff::diff_images(&before, &after, &options)
                .await
                .map_err(|e| e.to_string())?;
            serde_json::to_value(&report.explanation).map_err(|e| e.to_string())
        }
        .await;
        let value = match explained {
            Ok(value) => value,
            Err(error) => {
                tracing::warn!(repository = %event.repository, tag = %event.tag, %error, "drift not explained");
                serde_json::json!({ "error": error })
            }
        };
        if let Err(e) = self.meta().set_drift_explanation(event.id, &value).await {
            tracing::warn!(error = %e, "recording a drift explanation");
        }
    }

    fn backing_off(&self, upstream: &str) -> bool {
        let mut backoff = self.inner.backoff.lock();
        match backoff.get(upstream) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                backoff.remove(upstream);
                false
            }
            None => false,
        }
    }

    /// One pass of the drift poller: checks, at most `drift_concurrency` at a time, the
    /// mirrored tags whose upstream's `refresh_seconds` have passed since their last check,
    /// at most `drift_batch` of them, oldest check first.
    ///
    /// # Errors
    ///
    /// Metadata errors; upstream failures are counted in [`DriftPass::failed`].
    pub async fn poll_drift(&self) -> Result<DriftPass, MirrorError> {
        let upstreams = &self.inner.upstreams;
        let Some(shortest) = upstreams.iter().map(|u| u.config.refresh_seconds).min() else {
            return Ok(DriftPass::default());
        };
        let now = OffsetDateTime::now_utc();
        // No tag checked after this can be due; far past when the refresh is huge.
        let cutoff = now
            .checked_sub(seconds(shortest))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let due: Vec<(Route, MirrorTagState)> = self
            .meta()
            .mirror_tags_due(cutoff, self.inner.settings.drift_batch)
            .await?
            .into_iter()
            .filter_map(|state| {
                let route = self.route(&state.repository)?;
                let refresh = route.upstream.config.refresh_seconds;
                passed(state.checked_at, refresh, now).then_some((route, state))
            })
            .collect();
        let concurrency = self.inner.settings.drift_concurrency.max(1);
        let outcomes: Vec<Result<CheckOutcome, MirrorError>> =
            futures_util::stream::iter(due.into_iter().map(|(route, state)| async move {
                self.check(&route, &state.repository, &state.tag).await
            }))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut pass = DriftPass::default();
        for outcome in outcomes {
            match outcome? {
                CheckOutcome::Observed(obs) => {
                    pass.checked += 1;
                    if obs.new_drift {
                        pass.new_drift += 1;
                    }
                }
                CheckOutcome::Gone => pass.checked += 1,
                CheckOutcome::Failed(_) => pass.failed += 1,
                CheckOutcome::BackingOff => pass.skipped += 1,
            }
        }
        Ok(pass)
    }

    /// Makes `digest` of the mirrored `repo` servable: already linked into `repo`, stored and
    /// confirmed by the upstream (linked now), or being fetched from the upstream by exactly
    /// one request however many clients ask at once, each of them streaming the bytes as they
    /// arrive.
    ///
    /// A blob not yet linked into `repo` is served on the word of `repo`'s own upstream only
    /// (issue 16): bytes the store already holds (pushed into any repository, private ones
    /// too, or fetched for another upstream) are linked and served once a HEAD of
    /// `<remote>@<digest>` upstream, holding one of its request slots, answers with the
    /// stored size; and a request follows a fetch started for another repository only after
    /// the same HEAD. Otherwise anyone who may pull a mirrored name could read any stored
    /// blob by its digest, or tell which digests are stored. When that upstream says 404 the
    /// answer is [`MirrorError::NotFound`], exactly as for a digest stored nowhere; when it
    /// cannot be asked, its error: never local bytes instead. Requests for the same
    /// repository follow one fetch without asking (one upstream GET however many clients),
    /// and a blob already linked into `repo` is served without any upstream request.
    ///
    /// # Errors
    ///
    /// [`MirrorError::NotFound`] when the upstream does not have it; [`MirrorError::Upstream`]
    /// or [`MirrorError::Busy`] when the upstream cannot be asked; [`MirrorError::FetchFailed`]
    /// when the upstream fetch fails before streaming starts, or the upstream's size is not
    /// the blob's; metadata and store errors.
    pub async fn blob(
        &self,
        route: &Route,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<PulledBlob, MirrorError> {
        if self.meta().repo_blob_size(repo, digest).await?.is_some() {
            return Ok(PulledBlob::Stored);
        }
        if let Some(size) = self.store().blob_size(digest).await? {
            let upstream_size = self.upstream_blob_size(route, digest).await?;
            check_upstream_size(digest, upstream_size, size)?;
            // Content addressing: the upstream's blob is these bytes.
            self.meta().link_blob(repo, digest, size).await?;
            return Ok(PulledBlob::Stored);
        }
        // The upstream's size, once asked: a fetch for another repository is followed only
        // on this repository's upstream's word.
        let mut confirmed = None;
        let fetch = match self.inner.fetches.join(digest, repo) {
            Joined::Existing(fetch) => {
                if fetch.repo() != repo {
                    confirmed = Some(self.upstream_blob_size(route, digest).await?);
                }
                fetch
            }
            Joined::Started(fetch, reporter) => {
                // Its own task: a client hanging up must not cancel the others' fetch.
                let this = self.clone();
                let (route, repo, digest) = (route.clone(), repo.clone(), digest.clone());
                tokio::spawn(async move { this.fetch_blob(route, repo, digest, reporter).await });
                fetch
            }
        };
        // The fetch may first wait for a request slot, then for the upstream's answer.
        let wait = Duration::from_secs(self.inner.settings.upstream_timeout_seconds.max(1)) * 2;
        match fetch.tail(wait).await {
            Ok((size, tail)) => {
                if let Some(upstream_size) = confirmed {
                    check_upstream_size(digest, upstream_size, size)?;
                }
                Ok(PulledBlob::Streaming {
                    size,
                    stream: tail.into_stream().boxed(),
                })
            }
            Err(FetchFailure { missing: true, .. }) => Err(not_upstream(route, digest)),
            Err(FetchFailure { busy: true, .. }) => Err(MirrorError::Busy {
                upstream: route.upstream.name().to_owned(),
                limit: route.upstream.config.max_connections,
                waited: Duration::from_secs(self.inner.settings.upstream_timeout_seconds),
            }),
            Err(FetchFailure { reason, .. }) => {
                // Joined as the fetch completed: its upload file was already renamed into the
                // store, so there is nothing to follow but the blob to serve once the fetch
                // is done. A fetch for this repository has linked it by then; one for another
                // repository's upstream is served here only on this upstream's word, asked
                // above. Bytes stored by anything else are not this upstream's word.
                if fetch.stored(wait).await {
                    if self.meta().repo_blob_size(repo, digest).await?.is_some() {
                        return Ok(PulledBlob::Stored);
                    }
                    if let Some(upstream_size) = confirmed {
                        if let Some(size) = self.store().blob_size(digest).await? {
                            check_upstream_size(digest, upstream_size, size)?;
                            self.meta().link_blob(repo, digest, size).await?;
                            return Ok(PulledBlob::Stored);
                        }
                    }
                }
                Err(MirrorError::FetchFailed {
                    digest: digest.clone(),
                    reason,
                })
            }
        }
    }

    /// The size of `digest` in `route`'s upstream repository, asked with a HEAD that holds
    /// one of the upstream's request slots.
    ///
    /// # Errors
    ///
    /// [`MirrorError::NotFound`] (the same as a failed fetch's) when the upstream answers 404;
    /// [`MirrorError::Busy`] when no slot frees up; [`MirrorError::Upstream`] otherwise.
    async fn upstream_blob_size(&self, route: &Route, digest: &Digest) -> Result<u64, MirrorError> {
        let upstream = &route.upstream;
        let _permit = upstream.permit().await?;
        match upstream.client.blob_size(&route.remote, digest).await {
            Ok(size) => Ok(size),
            Err(e) => Err(match MirrorError::upstream(upstream.name(), e) {
                MirrorError::NotFound { .. } => not_upstream(route, digest),
                other => other,
            }),
        }
    }

    /// The one upstream GET of a blob, written through an upload session and completed
    /// (verified, fsynced, renamed) only when every byte arrived and the digest matches.
    async fn fetch_blob(&self, route: Route, repo: RepoName, digest: Digest, reporter: Reporter) {
        let upstream = &route.upstream;
        let result = self
            .fetch_blob_into_store(&route, &repo, &digest, &reporter)
            .await;
        match result {
            Ok(()) => {}
            Err(e @ MirrorError::NotFound { .. }) => {
                reporter.report(Progress::Failed(FetchFailure {
                    missing: true,
                    busy: false,
                    reason: e.to_string(),
                }));
            }
            Err(e @ MirrorError::Busy { .. }) => {
                reporter.report(Progress::Failed(FetchFailure {
                    missing: false,
                    busy: true,
                    reason: e.to_string(),
                }));
            }
            Err(e) => {
                tracing::warn!(upstream = upstream.name(), %digest, error = %e, "blob fetch failed; nothing stored");
                reporter.report(Progress::Failed(FetchFailure::new(e.to_string())));
            }
        }
    }

    async fn fetch_blob_into_store(
        &self,
        route: &Route,
        repo: &RepoName,
        digest: &Digest,
        reporter: &Reporter,
    ) -> Result<(), MirrorError> {
        let upstream = &route.upstream;
        // Held until the body has been read: a download is a connection for its whole length.
        let _permit = upstream.permit().await?;
        let stream = upstream
            .client
            .get_blob_unverified(&route.remote, digest)
            .await
            .map_err(|e| MirrorError::upstream(upstream.name(), e))?;
        let Some(size) = stream.size() else {
            return Err(MirrorError::FetchFailed {
                digest: digest.clone(),
                reason: "the upstream sent no Content-Length".into(),
            });
        };
        if let Some(max) = self.inner.max_blob_bytes.filter(|max| size > *max) {
            return Err(MirrorError::FetchFailed {
                digest: digest.clone(),
                reason: format!("blob is {size} bytes, over server.max_blob_bytes ({max})"),
            });
        }
        let store = self.store();
        let id = store.create_upload().await?;
        let path = store.upload_file_path(&id);
        reporter.report(Progress::Streaming {
            path: path.clone(),
            size,
        });
        // Every chunk goes to the followers from memory as it arrives, beside the file.
        let stream = stream.inspect_ok(|chunk| reporter.feed(chunk));
        let options = AppendOptions {
            // The clients are served before the completing fsync (the last byte once the
            // digest matched), so the disk must not pace the fetch; the kernel's own
            // dirty-page limits still apply.
            max_dirty_bytes: FETCH_MAX_DIRTY_BYTES,
            on_written: Some(reporter.written_callback()),
        };
        let written = async {
            store
                .append_upload_with(&id, Some(0), stream, Some(size), options)
                .await?;
            match store.upload_digest(&id).await? {
                Some(actual) if actual == *digest => {
                    reporter.report(Progress::Verified {
                        path: path.clone(),
                        size,
                    });
                }
                Some(actual) => {
                    return Err(pinfold_store::StoreError::DigestMismatch {
                        expected: digest.clone(),
                        actual,
                    })
                }
                // No running hash: `complete_upload` hashes the file and decides.
                None => {}
            }
            store.complete_upload(&id, digest).await
        }
        .await;
        if let Err(e) = written {
            // A digest mismatch or a cut-off body: nothing becomes visible.
            if let Err(cancel) = store.cancel_upload(&id).await {
                tracing::warn!(error = %cancel, "removing a failed fetch's upload file");
            }
            return Err(MirrorError::FetchFailed {
                digest: digest.clone(),
                reason: e.to_string(),
            });
        }
        self.meta().link_blob(repo, digest, size).await?;
        reporter.report(Progress::Done {
            path: store.upload_file_path(&id),
            size,
        });
        Ok(())
    }
}

/// The answer for a blob `route`'s upstream does not have, the same whichever request found
/// out (a fetch's GET or a HEAD), so that it tells nothing about what the store holds.
fn not_upstream(route: &Route, digest: &Digest) -> MirrorError {
    MirrorError::NotFound {
        upstream: route.upstream.name().to_owned(),
        what: format!("{}@{digest}", route.remote),
    }
}

/// Fails unless the upstream's size of `digest` is `size`, the size of the bytes about to be
/// served: same digest, same bytes, so a different size is an upstream that cannot be trusted
/// about this blob.
fn check_upstream_size(digest: &Digest, upstream: u64, size: u64) -> Result<(), MirrorError> {
    if upstream == size {
        return Ok(());
    }
    Err(MirrorError::FetchFailed {
        digest: digest.clone(),
        reason: format!("the upstream says the blob is {upstream} bytes, it is {size}"),
    })
}

/// A configured number of seconds as a duration (saturating: configuration is `u64`).
fn seconds(n: u64) -> time::Duration {
    time::Duration::seconds(i64::try_from(n).unwrap_or(i64::MAX))
}

/// True when `n` seconds have passed from `since` to `now`. Never, when `since + n` lies
/// beyond what a time can hold (a refresh or cooldown of "forever").
fn passed(since: OffsetDateTime, n: u64, now: OffsetDateTime) -> bool {
    since.checked_add(seconds(n)).is_some_and(|at| at <= now)
}

/// Opens `<upstream>/<remote>@<digest>` with `pinfold-inspect` for a drift explanation.
async fn open_upstream_image(
    route: &Route,
    digest: &Digest,
) -> Result<pinfold_inspect::image::Image, String> {
    let client = &route.upstream.client;
    let text = format!("{}/{}@{digest}", client.registry(), route.remote);
    let options = pinfold_inspect::image::OpenOptions {
        client: pinfold_client::ClientConfig {
            insecure: client.base_url().scheme() == "http",
            ..pinfold_client::ClientConfig::default()
        },
        ..pinfold_inspect::image::OpenOptions::default()
    };
    let source: pinfold_inspect::image::ImageSource =
        text.parse().map_err(|e| format!("{text}: {e}"))?;
    pinfold_inspect::image::open(&source, &options)
        .await
        .map_err(|e| format!("opening {text}: {e}"))
}
