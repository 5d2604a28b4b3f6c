//! Garbage collection, retention and immutable tags: the order of the steps.
//!
//! A run ([`Registry::collect_garbage`]):
//!
//! 1. takes the store's sweep lock without waiting (`BlobStore::try_lock_sweep`): a running
//!    backup or another GC makes it fail with [`GcError::Busy`], deleting nothing;
//! 2. applies the retention rules (tags removed are journaled with source `retention`);
//! 3. enqueues the manifests named by journal rows that left their retention;
//! 4. decides the candidates in the metadata (`pinfold-meta` `gc.rs`), which removes the rows
//!    of unprotected pairs in transactions that re-check them;
//! 5. only then deletes the files no row names any more, each under its digest's write guard
//!    (pushes, uploads and mounts hold the read side while they write a file and record it)
//!    and only when the file is older than the grace period.
//!
//! A crash between 4 and 5 leaves files without rows; the orphan pass (`orphans`) removes
//! those. It lists every file, so it runs on request or every `orphan_scan_every` runs.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime};

use pinfold_meta::{GcItem, GcPolicy, TagMove, TagMoveSource};
use pinfold_oci::{Digest, RepoName, Tag};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Registry;
use crate::v2::error::OciError;

/// How long a GC run waits for the sweep lock before answering busy.
const SWEEP_LOCK_PATIENCE: Duration = Duration::from_secs(2);

/// `[gc]` in `pinfold.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcConfig {
    /// Seconds between two runs of the `gc` worker; 0 turns the worker off. Default 0 (off):
    /// scheduled collection is opt-in until the concurrent push/pull/GC stress test has run
    /// in CI; `POST /api/v1/gc` and `pinfold gc` run it on demand.
    pub interval_seconds: u64,
    /// Blobs and manifests created, linked or used (HEAD, GET, mount) less than this many
    /// seconds ago are never collected. Default 3600.
    pub grace_seconds: u64,
    /// Candidates decided per metadata transaction. Default 500.
    pub batch: usize,
    /// Every this many worker runs also looks for files without any row (left by a crash
    /// between removing rows and files). 0: only on request. Default 24.
    pub orphan_scan_every: u64,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            interval_seconds: 0,
            grace_seconds: 3600,
            batch: 500,
            orphan_scan_every: 24,
        }
    }
}

/// `[[retention]]`: which tags of the matching repositories to keep. A tag is kept when any
/// given limit keeps it; the first rule whose pattern matches a repository applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Repository pattern: `*` matches any characters (also `/`), `?` one.
    pub repositories: String,
    /// Keep the N most recently pushed tags.
    pub keep_last: Option<usize>,
    /// Keep tags pushed within this many days.
    pub keep_days: Option<u64>,
    /// The tag journal protects the digests it names for this many days (default: forever).
    /// Journal rows themselves are never deleted: the journal is append-only.
    pub journal_days: Option<u64>,
}

/// `[[immutable]]`: tags that never move to another digest once pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImmutableRule {
    /// Repository pattern (as in [`RetentionRule::repositories`]).
    pub repositories: String,
    /// Tag patterns.
    pub tags: Vec<String>,
}

/// The rules the registry applies beyond the distribution spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcRules {
    /// `[gc]`.
    pub gc: GcConfig,
    /// `[[retention]]`, in order.
    pub retention: Vec<RetentionRule>,
    /// `[[immutable]]`.
    pub immutable: Vec<ImmutableRule>,
}

/// Why a GC run did not happen.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The sweep lock is held.
    #[error("a garbage collection or a backup is running; nothing was deleted (try again later)")]
    Busy,
    /// Metadata or store failure (the cause is logged with the id the error carries).
    #[error("garbage collection failed (see the server log)")]
    Registry(OciError),
}

impl From<OciError> for GcError {
    fn from(e: OciError) -> Self {
        GcError::Registry(e)
    }
}

impl From<pinfold_meta::MetaError> for GcError {
    fn from(e: pinfold_meta::MetaError) -> Self {
        GcError::Registry(e.into())
    }
}

impl From<pinfold_store::StoreError> for GcError {
    fn from(e: pinfold_store::StoreError) -> Self {
        GcError::Registry(e.into())
    }
}

/// A tag retention removed (or would remove).
#[derive(Debug, Clone, Serialize)]
pub struct RetainedTag {
    /// Repository.
    pub repository: RepoName,
    /// Tag.
    pub tag: Tag,
    /// Where it pointed.
    pub digest: Digest,
}

/// What a run did (a dry run: would do), served as JSON by `/api/v1/gc`.
#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    /// True when nothing was changed.
    pub dry_run: bool,
    /// When the run started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// How long it took.
    pub duration_ms: u64,
    /// Candidates examined (the run's cost: it grows with the garbage, not the registry).
    pub examined: u64,
    /// Candidates kept for a later run (grace period, journal, pins, open uploads).
    pub kept: u64,
    /// Tags removed by retention rules.
    pub retention_removed: Vec<RetainedTag>,
    /// Manifests and blob links removed from repositories.
    pub deleted: Vec<GcItem>,
    /// Files removed from the store (dry run: that would be removed).
    pub files_deleted: Vec<Digest>,
    /// Bytes of those files.
    pub bytes_freed: u64,
    /// Whether the orphan-file pass ran, and what it removed.
    pub orphan_scan: Option<Vec<Digest>>,
}

/// `*` any run of characters, `?` one character; everything else literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative wildcard matching with one backtrack point: linear in practice.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

impl GcRules {
    /// The immutable rule protecting `tag` of `repo`, if any.
    pub fn immutable_rule(&self, repo: &str, tag: &str) -> Option<&ImmutableRule> {
        self.immutable.iter().find(|rule| {
            glob_match(&rule.repositories, repo) && rule.tags.iter().any(|t| glob_match(t, tag))
        })
    }

    fn retention_rule(&self, repo: &str) -> Option<&RetentionRule> {
        self.retention
            .iter()
            .find(|rule| glob_match(&rule.repositories, repo))
    }
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n.saturating_mul(86_400))
}

fn before(now: OffsetDateTime, d: Duration) -> OffsetDateTime {
    now.checked_sub(time::Duration::try_from(d).unwrap_or(time::Duration::MAX))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Stripes of the in-process guard between file writes and GC's file deletion.
pub(crate) const GUARD_STRIPES: usize = 64;

/// One lock per stripe of digests: pushes, uploads and mounts hold the read side of their
/// digest's stripe while they write its file and record it; GC holds the write side while it
/// re-checks that no row names a digest and deletes its file.
#[derive(Debug)]
pub(crate) struct FileGuard {
    stripes: Vec<tokio::sync::RwLock<()>>,
}

impl Default for FileGuard {
    fn default() -> Self {
        FileGuard {
            stripes: (0..GUARD_STRIPES)
                .map(|_| tokio::sync::RwLock::new(()))
                .collect(),
        }
    }
}

impl FileGuard {
    fn stripe(&self, digest: &Digest) -> &tokio::sync::RwLock<()> {
        // The hex digest is uniformly distributed: its last byte picks the stripe.
        let last = digest.as_str().as_bytes().last().copied().unwrap_or(0);
        &self.stripes[usize::from(last) % GUARD_STRIPES]
    }

    /// Held while a file of `digest` is written and its row recorded.
    pub(crate) async fn writing(&self, digest: &Digest) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.stripe(digest).read().await
    }

    async fn deleting(&self, digest: &Digest) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.stripe(digest).write().await
    }
}

impl Registry {
    /// The retention, immutability and GC settings.
    pub fn rules(&self) -> &GcRules {
        static DEFAULT: LazyLock<GcRules> = LazyLock::new(GcRules::default);
        self.inner.rules.get().unwrap_or(&DEFAULT)
    }

    /// Sets the rules once, right after [`Registry::new`] (later calls are ignored: rules do
    /// not change while serving).
    pub fn set_rules(&self, rules: GcRules) {
        let _ = self.inner.rules.set(rules);
    }

    /// Refuses moving an immutable tag of `repo` to another digest than the one it has.
    ///
    /// # Errors
    /// DENIED naming the tag and both digests.
    pub(crate) async fn check_immutable(
        &self,
        repo: &RepoName,
        tag: &Tag,
        to: &Digest,
    ) -> Result<(), OciError> {
        if self
            .rules()
            .immutable_rule(repo.as_str(), tag.as_str())
            .is_none()
        {
            return Ok(());
        }
        match self.meta().resolve_tag(repo, tag).await? {
            Some(current) if &current.digest != to => Err(Self::immutable_refusal(
                repo,
                Some(tag),
                current.digest.as_str(),
                to,
            )),
            _ => Ok(()),
        }
    }

    /// The DENIED answer to moving immutable `tag` from `current` to `to` (worded by
    /// [`pinfold_meta::MetaError::TagImmutable`], as the refusals inside a transaction are).
    pub(crate) fn immutable_refusal(
        repo: &RepoName,
        tag: Option<&Tag>,
        current: &str,
        to: &Digest,
    ) -> OciError {
        pinfold_meta::MetaError::TagImmutable {
            repo: repo.to_string(),
            tag: tag.map(Tag::to_string).unwrap_or_default(),
            current: current.to_owned(),
            refused: to.to_string(),
        }
        .into()
    }

    /// The last real run's report (JSON text as recorded), if any.
    ///
    /// # Errors
    /// A metadata failure.
    pub async fn last_gc_run(&self) -> Result<Option<serde_json::Value>, OciError> {
        Ok(self
            .meta()
            .gc_last_run()
            .await?
            .and_then(|text| serde_json::from_str(&text).ok()))
    }

    /// Takes the sweep lock exclusive, retrying for [`SWEEP_LOCK_PATIENCE`]: the APT index
    /// collector holds it for a moment now and then, which must not make a GC fail, while a
    /// backup or another GC holds it for far longer, which must.
    async fn lock_sweep(&self) -> Result<Option<pinfold_store::SweepGuard>, GcError> {
        let deadline = Instant::now() + SWEEP_LOCK_PATIENCE;
        loop {
            let store = self.store().clone();
            let guard = tokio::task::spawn_blocking(move || store.try_lock_sweep())
                .await
                .map_err(|e| OciError::internal(&e))?
                .map_err(OciError::from)?;
            if guard.is_some() || Instant::now() >= deadline {
                return Ok(guard);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs garbage collection once (see the module docs for the order). With `dry_run`
    /// nothing changes and the report lists what a run now would remove. `orphans` adds the
    /// pass over every file.
    ///
    /// # Errors
    /// [`GcError::Busy`] when a backup or another GC holds the sweep lock (nothing deleted);
    /// metadata or store failures.
    pub async fn collect_garbage(&self, dry_run: bool, orphans: bool) -> Result<GcReport, GcError> {
        let Some(_sweep) = self.lock_sweep().await? else {
            return Err(GcError::Busy);
        };
        let started = Instant::now();
        let started_at = OffsetDateTime::now_utc();
        let config = &self.rules().gc;
        let grace = Duration::from_secs(config.grace_seconds);

        let retention_removed = self.apply_retention(started_at, dry_run).await?;

        if !dry_run {
            let shortest = self
                .rules()
                .retention
                .iter()
                .filter_map(|r| r.journal_days)
                .min();
            if let Some(d) = shortest {
                self.meta()
                    .gc_enqueue_expired_journal(before(started_at, days(d)))
                    .await?;
            }
        }

        let rules = self.rules().clone();
        // Decided at each candidate, so journal rows written during the run (retention's own
        // removals above) leave a zero-day retention at once.
        let journal_cutoff = move |repo: &str| {
            rules
                .retention_rule(repo)
                .and_then(|r| r.journal_days)
                .map(|d| before(OffsetDateTime::now_utc(), days(d)))
        };
        let policy = GcPolicy {
            grace,
            journal_cutoff: &journal_cutoff,
            batch: config.batch,
        };
        let sweep = self.meta().gc_collect(&policy, dry_run).await?;

        let file_cutoff = SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut files_deleted = Vec::new();
        let mut bytes_freed = 0;
        for digest in &sweep.unreferenced {
            if dry_run {
                bytes_freed += self.store().blob_size(digest).await?.unwrap_or(0);
                files_deleted.push(digest.clone());
            } else if let Some(size) = self
                .delete_file_if_unreferenced(digest, file_cutoff)
                .await?
            {
                bytes_freed += size;
                files_deleted.push(digest.clone());
            }
        }
        if !dry_run
            && sweep
                .deleted
                .iter()
                .any(|item| item.kind == pinfold_meta::GcKind::Manifest)
        {
            // Resolved references are cached in process; a collected manifest must not be
            // served from memory.
            self.forget_all_references().await;
        }

        let orphan_scan = if orphans {
            Some(self.remove_orphan_files(file_cutoff, dry_run).await?)
        } else {
            None
        };
        if let Some(removed) = &orphan_scan {
            if !dry_run {
                files_deleted.extend(removed.iter().cloned());
            }
        }

        let report = GcReport {
            dry_run,
            started_at,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            examined: sweep.examined,
            kept: sweep.kept,
            retention_removed,
            deleted: sweep.deleted,
            files_deleted,
            bytes_freed,
            orphan_scan,
        };
        if !dry_run {
            if let Ok(text) = serde_json::to_string(&report) {
                self.meta().gc_set_last_run(&text).await?;
            }
        }
        Ok(report)
    }

    /// Deletes the file of `digest` if no row names it (re-checked under the digest's write
    /// guard) and it is older than `cutoff`. Its size when deleted.
    async fn delete_file_if_unreferenced(
        &self,
        digest: &Digest,
        cutoff: SystemTime,
    ) -> Result<Option<u64>, OciError> {
        let _guard = self.inner.file_guard.deleting(digest).await;
        if self.meta().gc_digest_referenced(digest).await? {
            return Ok(None);
        }
        let size = self.store().blob_size(digest).await?.unwrap_or(0);
        Ok(self
            .store()
            .delete_blob_older_than(digest, cutoff)
            .await?
            .then_some(size))
    }

    /// Files older than `cutoff` that no row names.
    async fn remove_orphan_files(
        &self,
        cutoff: SystemTime,
        dry_run: bool,
    ) -> Result<Vec<Digest>, OciError> {
        let mut removed = Vec::new();
        for digest in self.store().list_blobs().await? {
            if dry_run {
                if !self.meta().gc_digest_referenced(&digest).await?
                    && self.store().open_blob(&digest).await?.is_some()
                {
                    // Age is not checked in a dry run; a real run also skips fresh files.
                    removed.push(digest);
                }
            } else if self
                .delete_file_if_unreferenced(&digest, cutoff)
                .await?
                .is_some()
            {
                removed.push(digest);
            }
        }
        Ok(removed)
    }

    /// Applies `[[retention]]`: per repository, keeps the tags the first matching rule keeps
    /// (and every immutable tag), removes the others (journaled, source `retention`).
    async fn apply_retention(
        &self,
        now: OffsetDateTime,
        dry_run: bool,
    ) -> Result<Vec<RetainedTag>, OciError> {
        if self.rules().retention.is_empty() {
            return Ok(Vec::new());
        }
        let mut by_repo: BTreeMap<RepoName, Vec<(Tag, Digest, OffsetDateTime)>> = BTreeMap::new();
        for (repo, tag, digest, at) in self.meta().all_tags().await? {
            by_repo.entry(repo).or_default().push((tag, digest, at));
        }
        let mv = TagMove {
            actor: "gc".to_owned(),
            source: TagMoveSource::Retention,
        };
        let mut removed = Vec::new();
        for (repo, mut tags) in by_repo {
            let Some(rule) = self.rules().retention_rule(repo.as_str()) else {
                continue;
            };
            if rule.keep_last.is_none() && rule.keep_days.is_none() {
                continue;
            }
            // Newest first; ties by name so the choice is stable.
            tags.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
            let fresh_after = rule.keep_days.map(|d| before(now, days(d)));
            for (rank, (tag, digest, at)) in tags.into_iter().enumerate() {
                let keep = rule.keep_last.is_some_and(|n| rank < n)
                    || fresh_after.is_some_and(|cutoff| at >= cutoff)
                    || self
                        .rules()
                        .immutable_rule(repo.as_str(), tag.as_str())
                        .is_some();
                if keep {
                    continue;
                }
                if !dry_run {
                    self.meta().delete_tag(&repo, &tag, &mv).await?;
                    self.forget_reference(&repo, tag.as_str()).await;
                }
                removed.push(RetainedTag {
                    repository: repo.clone(),
                    tag,
                    digest,
                });
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_match_like_shell_patterns_across_slashes() {
        assert!(glob_match("team/*", "team/app"));
        assert!(glob_match("team/*", "team/a/b"));
        assert!(!glob_match("team/*", "other/app"));
        assert!(glob_match("v*", "v1.2"));
        assert!(!glob_match("v*", "latest"));
        assert!(glob_match("v?", "v1"));
        assert!(!glob_match("v?", "v10"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
    }
}
