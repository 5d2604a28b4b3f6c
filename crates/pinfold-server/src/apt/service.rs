//! The APT rules: what an upload must satisfy, in which order bytes and records are written,
//! and how a publication's indices are built. Handlers call one method each; `pinfold-apt`
//! knows the file formats, `pinfold-store` keeps the bytes, `pinfold-meta` the records.
//!
//! Write order of an upload: check the request (auth, matrix, checksums), parse the `.deb`,
//! refuse a conflicting path, write the `.deb` durably as a blob, then one metadata
//! transaction lists it. A crash between the last two leaves an unreferenced blob, never a
//! listing without bytes. Indices are written the same way: every file as a blob first, then
//! one transaction makes the new generation current, so a client never sees a `Release` whose
//! files are missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pinfold_apt::diff::{diff, PackageDiff, PackageRef};
use pinfold_apt::index::{self, PackageEntry, Release, ReleaseEntry};
use pinfold_apt::{read_deb, FileDigests, Paragraph, SigningKey};
use pinfold_meta::{
    AptAddOutcome, AptIndexFile, AptPackage, AptPublication, AptRepoKind, Meta, MetaError,
    NewAptRepo,
};
use pinfold_oci::Digest;
use pinfold_store::{BlobFile, BlobStore, UploadId};
use tokio::sync::Notify;

use super::error::AptError;
use super::matrix::{DeployTarget, Matrix};

/// The server's APT settings (from `[server]` in `pinfold.toml`).
#[derive(Debug, Clone)]
pub struct AptSettings {
    /// Keys accepted for uploads; empty: uploads need no key.
    pub deploy_keys: Vec<String>,
    /// Largest `.deb` accepted, in bytes.
    pub max_deb_bytes: u64,
    /// Where the signing key is (generated there on first start when missing).
    pub signing_key_path: PathBuf,
    /// Time between an upload and the start of reindexing, so a burst of uploads is indexed
    /// once.
    pub reindex_delay: Duration,
    /// How long index files of pruned generations stay stored after they were pruned (a
    /// client may still be downloading them) before their blobs are deleted.
    pub index_gc_grace: Duration,
}

/// Where the bytes of a `.deb` being deployed are.
#[derive(Debug)]
pub enum DebSource {
    /// A store upload session holding the request body.
    Upload(UploadId),
    /// A blob already stored (deploy by checksum).
    Stored(Digest),
}

/// What an accepted upload answers with.
#[derive(Debug, Clone)]
pub struct Deployed {
    /// Repository.
    pub repo: String,
    /// Path in the repository.
    pub path: String,
    /// Digests and size.
    pub digests: FileDigests,
    /// Whether this exact file was already there (an idempotent re-upload).
    pub unchanged: bool,
}

/// The APT service. Cheap to clone.
#[derive(Clone)]
pub struct AptService {
    inner: Arc<Inner>,
}

struct Inner {
    store: BlobStore,
    meta: Meta,
    key: SigningKey,
    settings: AptSettings,
    /// Woken after each change of a publication's content; the reindex worker waits on it.
    changed: Notify,
}

impl std::fmt::Debug for AptService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AptService")
            .field("key", &self.inner.key)
            .finish_non_exhaustive()
    }
}

/// Reading a blob that the metadata names but the store lacks: the store was damaged.
fn missing_blob(sha256: &str) -> AptError {
    AptError::internal(format!("blob sha256:{sha256} is listed but not stored"))
}

fn digest_of(sha256: &str) -> Result<Digest, AptError> {
    format!("sha256:{sha256}")
        .parse()
        .map_err(|_| AptError::internal(format!("invalid stored sha256 {sha256:?}")))
}

impl AptService {
    /// Loads (or generates) the signing key and builds the service.
    ///
    /// # Errors
    /// When the key file cannot be read, written or used.
    pub fn open(
        store: BlobStore,
        meta: Meta,
        settings: AptSettings,
    ) -> Result<AptService, pinfold_apt::SignError> {
        let (key, generated) =
            SigningKey::load_or_generate(&settings.signing_key_path, "Pinfold APT repository")?;
        if generated {
            tracing::info!(fingerprint = %key.fingerprint(), path = %settings.signing_key_path.display(), "generated APT signing key");
        }
        Ok(AptService {
            inner: Arc::new(Inner {
                store,
                meta,
                key,
                settings,
                changed: Notify::new(),
            }),
        })
    }

    /// The metadata handle.
    pub fn meta(&self) -> &Meta {
        &self.inner.meta
    }

    /// The blob store.
    pub fn store(&self) -> &BlobStore {
        &self.inner.store
    }

    /// The settings.
    pub fn settings(&self) -> &AptSettings {
        &self.inner.settings
    }

    /// The signing key.
    pub fn key(&self) -> &SigningKey {
        &self.inner.key
    }

    /// Wakes the reindex worker.
    pub fn notify_changed(&self) {
        self.inner.changed.notify_one();
    }

    /// Waits until [`Self::notify_changed`] is called (or was called since the last wait).
    pub async fn changed(&self) {
        self.inner.changed.notified().await;
    }

    /// Whether `key` may upload. With no configured keys everyone may.
    pub fn key_allowed(&self, key: Option<&str>) -> bool {
        let keys = &self.inner.settings.deploy_keys;
        if keys.is_empty() {
            return true;
        }
        // Compare every key in full so the time taken does not tell how much of a guess
        // matched.
        key.is_some_and(|given| {
            keys.iter().fold(false, |found, k| {
                found | constant_time_eq(k.as_bytes(), given.as_bytes())
            })
        })
    }

    /// Accepts one `.deb` into `repo` at `path`, listed as `matrix` says. `source` is a
    /// finished upload session (the request body, on disk) or an already stored blob
    /// (`X-Checksum-Deploy`); `digests` are its size and hashes, computed as it arrived.
    ///
    /// An upload session is completed into a blob only once everything is checked; on any
    /// refusal it is cancelled, so a refused upload leaves nothing behind.
    ///
    /// # Errors
    /// [`AptError`] with the Artifactory status: 400 for content that is not a usable `.deb`
    /// or a matrix that does not fit it; 400 for uploads into a mirror; 409 for a different
    /// file at the path or in the index.
    #[tracing::instrument(skip_all, fields(repo = %target.repo, path = %target.path))]
    pub async fn deploy(
        &self,
        target: &DeployTarget,
        source: DebSource,
        digests: FileDigests,
    ) -> Result<Deployed, AptError> {
        let checked = self.check_deb(target, &source, &digests).await;
        let listings = match checked {
            Ok(listings) => listings,
            Err(e) => {
                if let DebSource::Upload(id) = &source {
                    if let Err(cancel) = self.inner.store.cancel_upload(id).await {
                        tracing::warn!(upload = %id, error = %cancel, "could not remove a refused upload");
                    }
                }
                return Err(e);
            }
        };
        let digest = digest_of(&digests.sha256)?;
        if let DebSource::Upload(id) = &source {
            self.inner.store.complete_upload(id, &digest).await?;
        }
        let outcome = self
            .inner
            .meta
            .apt_add_packages(&target.repo, &listings)
            .await?;
        if outcome == AptAddOutcome::Added {
            self.notify_changed();
        }
        Ok(Deployed {
            repo: target.repo.clone(),
            path: target.path.clone(),
            digests,
            unchanged: outcome == AptAddOutcome::Unchanged,
        })
    }

    /// Everything [`Self::deploy`] checks before it writes: the package, the matrix against
    /// it, the repository's kind (creating a local repository on first use) and the path.
    async fn check_deb(
        &self,
        target: &DeployTarget,
        source: &DebSource,
        digests: &FileDigests,
    ) -> Result<Vec<AptPackage>, AptError> {
        let file = match source {
            DebSource::Upload(id) => self.inner.store.open_upload(id).await?,
            DebSource::Stored(digest) => self
                .inner
                .store
                .open_blob(digest)
                .await?
                .map(pinfold_store::BlobFile::into_reader),
        }
        .ok_or_else(|| AptError::internal("the received package vanished before it was read"))?;
        let info = tokio::task::spawn_blocking(move || {
            read_deb(std::io::BufReader::with_capacity(256 * 1024, file))
        })
        .await
        .map_err(|e| AptError::internal(format!("deb reader task: {e}")))?
        .map_err(AptError::bad_deb)?;
        let listings = listings_for(&target.matrix, &info.control, &target.path, digests)?;

        let meta = &self.inner.meta;
        match meta.apt_repo(&target.repo).await? {
            Some(repo) if repo.kind == AptRepoKind::Mirror => {
                return Err(AptError::bad_request(format!(
                    "repository {} is a mirror; uploads go to local repositories",
                    target.repo
                )))
            }
            Some(_) => {}
            None => {
                // Zero-config: the first upload creates the local repository (as a CI job
                // expects of a fresh server); mirrors are created explicitly.
                match meta
                    .apt_create_repo(&NewAptRepo {
                        name: target.repo.clone(),
                        kind: AptRepoKind::Local,
                        upstream_url: None,
                        upstream_suite: None,
                        upstream_key: None,
                        components: vec![],
                        architectures: vec![],
                    })
                    .await
                {
                    Ok(_) | Err(MetaError::AptRepoExists(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        // Refuse a conflicting path before writing anything (the transaction checks again).
        if let Some((existing, _)) = meta.apt_repo_file(&target.repo, &target.path).await? {
            if existing != digests.sha256 {
                return Err(MetaError::AptPathConflict {
                    path: target.path.clone(),
                    existing_sha256: existing,
                }
                .into());
            }
        }
        Ok(listings)
    }

    /// What changed from snapshot `from` to snapshot `to`, as apt sees it (one version per
    /// name and architecture).
    ///
    /// # Errors
    /// An unknown snapshot (404); the metadata's errors.
    pub async fn snapshot_diff(&self, from: &str, to: &str) -> Result<PackageDiff, AptError> {
        let from = package_refs(self.meta().apt_snapshot_packages(from).await?)?;
        let to = package_refs(self.meta().apt_snapshot_packages(to).await?)?;
        Ok(diff(&from, &to))
    }

    /// Size and hashes of a stored blob (for `X-Checksum-Deploy`), or `None` when no blob
    /// has this SHA-256. Read from disk in 1 MiB pieces, never whole into memory.
    ///
    /// # Errors
    /// 500 when the store fails.
    pub async fn stored_digests(
        &self,
        sha256: &str,
    ) -> Result<Option<(Digest, FileDigests)>, AptError> {
        let Ok(digest) = format!("sha256:{sha256}").parse::<Digest>() else {
            return Ok(None);
        };
        let Some(blob) = self.inner.store.open_blob(&digest).await? else {
            return Ok(None);
        };
        let file = blob.into_reader();
        let digests = tokio::task::spawn_blocking(move || {
            let mut hasher = pinfold_apt::MultiHasher::new();
            std::io::copy(
                &mut std::io::BufReader::with_capacity(1 << 20, file),
                &mut hasher,
            )
            .map(|_| hasher.finish())
        })
        .await
        .map_err(|e| AptError::internal(format!("hash task: {e}")))?
        .map_err(|e| AptError::internal(format!("reading blob {digest}: {e}")))?;
        Ok(Some((digest, digests)))
    }

    /// Opens a blob the metadata names.
    ///
    /// # Errors
    /// 500 when the blob is missing or cannot be opened.
    pub async fn open_blob(&self, sha256: &str) -> Result<BlobFile, AptError> {
        self.inner
            .store
            .open_blob(&digest_of(sha256)?)
            .await?
            .ok_or_else(|| missing_blob(sha256))
    }

    /// Regenerates the indices of every publication whose content changed since its last
    /// indexing, and returns how many were rebuilt. Bounded: one pass over the publications.
    /// A publication that fails does not hold up the others.
    ///
    /// # Errors
    /// After the pass, the first failure (failed publications stay marked and are retried
    /// next time).
    pub async fn reindex_pending(&self) -> Result<usize, AptError> {
        let mut rebuilt = 0;
        let mut first_error = None;
        for publication in self.inner.meta.apt_publications().await? {
            if !publication.needs_index() {
                continue;
            }
            match self.reindex(&publication).await {
                Ok(_) => rebuilt += 1,
                Err(e) => {
                    first_error.get_or_insert(AptError::internal(format!(
                        "indexing {}/{}: {e}",
                        publication.prefix, publication.distribution
                    )));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(rebuilt),
        }
    }

    /// Deletes the blobs of index files pruned longer than the grace period ago that nothing
    /// references any more, at most 1000 per call, and returns how many were deleted.
    ///
    /// Safe within one process: the `apt-reindex` worker runs this and the reindexing one
    /// after the other. With several replicas sharing storage, a replica that is writing
    /// byte-identical index files at the same moment could lose one of them; the grace period
    /// makes that unlikely, and a lost file is written again by the next reindex of its
    /// publication.
    ///
    /// Deleting is a sweep: it takes the store's sweep lock exclusive without waiting, like
    /// garbage collection, so a running backup (which holds it shared) never loses a file its
    /// snapshot names. While one runs, nothing is deleted and the next pass retries.
    ///
    /// # Errors
    /// When the metadata or the store fails.
    pub async fn collect_index_garbage(&self) -> Result<usize, AptError> {
        let cutoff = time::OffsetDateTime::now_utc()
            - time::Duration::try_from(self.inner.settings.index_gc_grace)
                .unwrap_or(time::Duration::HOUR);
        // Most passes find nothing: the lock is taken only when there is something to delete,
        // so the collector rarely makes a GC run started at the same moment wait.
        if self
            .inner
            .meta
            .apt_index_garbage(cutoff, 1)
            .await?
            .is_empty()
        {
            return Ok(0);
        }
        let Some(_sweep) = self.inner.store.try_lock_sweep()? else {
            tracing::debug!(
                "index garbage kept for now: a backup or collection holds the sweep lock"
            );
            return Ok(0);
        };
        // Listed again under the lock: only what is garbage now is deleted.
        let garbage = self.inner.meta.apt_index_garbage(cutoff, 1000).await?;
        let mut deleted = Vec::with_capacity(garbage.len());
        for sha256 in garbage {
            let digest = digest_of(&sha256)?;
            self.inner.store.delete_blob(&digest).await?;
            deleted.push(sha256);
        }
        self.inner.meta.apt_forget_garbage(&deleted, cutoff).await?;
        Ok(deleted.len())
    }

    /// Builds and records a new generation of indices for `publication`.
    ///
    /// # Errors
    /// When reading the listings, writing a blob or signing fails.
    #[tracing::instrument(skip_all, fields(prefix = %publication.prefix, distribution = %publication.distribution))]
    pub async fn reindex(&self, publication: &AptPublication) -> Result<i64, AptError> {
        let packages = self
            .inner
            .meta
            .apt_publication_packages(publication)
            .await?;
        let frozen = matches!(
            publication.source,
            pinfold_meta::AptPublishSource::Snapshot { .. }
        );
        let key = self.inner.key.clone();
        let suite = publication.distribution.clone();
        let files =
            tokio::task::spawn_blocking(move || build_indices(&suite, frozen, packages, &key))
                .await
                .map_err(|e| AptError::internal(format!("index task: {e}")))??;
        let mut records = Vec::with_capacity(files.len());
        for (path, bytes) in files {
            let digest = Digest::sha256(&bytes);
            let size = bytes.len() as u64;
            self.inner.store.put_blob(&digest, bytes).await?;
            records.push(AptIndexFile {
                path,
                sha256: digest.encoded().to_owned(),
                size,
            });
        }
        let generation = self
            .inner
            .meta
            .apt_record_indices(publication.id, publication.change_seq, &records)
            .await?;
        tracing::debug!(generation, files = records.len(), "APT indices written");
        Ok(generation)
    }
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The listings an upload makes: one per distribution × component × architecture.
///
/// The matrix architecture defaults to the control file's. A package for one architecture
/// may only be listed under that architecture (listing an amd64 binary for arm64 would make
/// apt install a binary that cannot run); an `all` package may be listed under any.
fn listings_for(
    matrix: &Matrix,
    control: &pinfold_apt::BinaryControl,
    path: &str,
    digests: &FileDigests,
) -> Result<Vec<AptPackage>, AptError> {
    let control_arch = control.architecture.as_str();
    let architectures = if matrix.architectures.is_empty() {
        vec![control_arch.to_owned()]
    } else {
        matrix.architectures.clone()
    };
    for arch in &architectures {
        if !control.architecture.is_all() && arch != control_arch {
            return Err(AptError::bad_request(format!(
                "deb.architecture={arch} does not match the package's Architecture: {control_arch}"
            )));
        }
    }
    let mut listings = Vec::new();
    for distribution in &matrix.distributions {
        for component in &matrix.components {
            for architecture in &architectures {
                listings.push(AptPackage {
                    distribution: distribution.clone(),
                    component: component.clone(),
                    architecture: architecture.clone(),
                    name: control.package.to_string(),
                    version: control.version.to_string(),
                    path: path.to_owned(),
                    size: digests.size,
                    md5: digests.md5.clone(),
                    sha1: digests.sha1.clone(),
                    sha256: digests.sha256.clone(),
                    control: control.paragraph.to_string(),
                });
            }
        }
    }
    Ok(listings)
}

/// Every index file of one publication: per component and architecture `Packages`,
/// `Packages.gz`, `Packages.xz`; then `Release`, `InRelease` and `Release.gpg`. Paths are
/// relative to `dists/<suite>/`.
///
/// Packages listed under `all` appear in every architecture's index (as in Debian's archive);
/// a distribution holding only `all` packages gets `binary-all` and `Architectures: all`.
pub(crate) fn build_indices(
    suite: &str,
    frozen: bool,
    packages: Vec<AptPackage>,
    key: &SigningKey,
) -> Result<Vec<(String, Bytes)>, AptError> {
    let mut architectures: BTreeSet<String> = packages
        .iter()
        .filter(|p| p.architecture != "all")
        .map(|p| p.architecture.clone())
        .collect();
    if architectures.is_empty() {
        architectures.insert("all".to_owned());
    }
    let mut components: BTreeSet<String> = packages.iter().map(|p| p.component.clone()).collect();
    if components.is_empty() {
        // An empty publication (a snapshot of nothing) still gets a valid Release.
        components.insert("main".to_owned());
    }
    let mut groups: BTreeMap<(String, String), Vec<PackageEntry>> = BTreeMap::new();
    for component in &components {
        for arch in &architectures {
            groups.insert((component.clone(), arch.clone()), Vec::new());
        }
    }
    for p in packages {
        let targets: Vec<String> = if p.architecture == "all" {
            architectures.iter().cloned().collect()
        } else {
            vec![p.architecture.clone()]
        };
        let control = Paragraph::parse_one(&p.control)
            .map_err(|e| AptError::internal(format!("stored control of {}: {e}", p.name)))?;
        let version = p
            .version
            .parse()
            .map_err(|e| AptError::internal(format!("stored version of {}: {e}", p.name)))?;
        let entry = PackageEntry {
            control,
            name: p.name,
            version,
            architecture: p.architecture,
            filename: p.path,
            digests: FileDigests {
                size: p.size,
                md5: p.md5,
                sha1: p.sha1,
                sha256: p.sha256,
            },
        };
        for arch in targets {
            if let Some(group) = groups.get_mut(&(p.component.clone(), arch)) {
                group.push(entry.clone());
            }
        }
    }
    let mut files: Vec<(String, Bytes)> = Vec::new();
    let mut release_entries = Vec::new();
    for ((component, arch), mut entries) in groups {
        let text = index::packages_file(&mut entries);
        let dir = format!("{component}/binary-{arch}");
        // gzip and xz in parallel: xz dominates the time of a large index.
        let (gz, xz) = std::thread::scope(|s| {
            let xz = s.spawn(|| index::xz(text.as_bytes()));
            let gz = index::gzip(text.as_bytes());
            (gz, xz.join().unwrap_or_default())
        });
        for (name, bytes) in [
            ("Packages", text.into_bytes()),
            ("Packages.gz", gz),
            ("Packages.xz", xz),
        ] {
            let path = format!("{dir}/{name}");
            release_entries.push(ReleaseEntry {
                path: path.clone(),
                digests: FileDigests::of(&bytes),
            });
            files.push((path, Bytes::from(bytes)));
        }
    }
    let release = Release {
        origin: "Pinfold".into(),
        label: "Pinfold".into(),
        suite: suite.to_owned(),
        codename: suite.to_owned(),
        date: time::OffsetDateTime::now_utc(),
        // Frozen snapshots never expire; live repositories do not either (they are refreshed
        // within a second of a change, and an expiring Release would break offline hosts).
        valid_until: None,
        architectures: architectures.into_iter().collect(),
        components: components.into_iter().collect(),
        description: Some(if frozen {
            "Pinfold frozen snapshot".to_owned()
        } else {
            "Pinfold repository".to_owned()
        }),
        files: release_entries,
    }
    .render();
    let inrelease = key.clearsign(&release).map_err(AptError::signing)?;
    let release_gpg = key
        .detached_sign(release.as_bytes())
        .map_err(AptError::signing)?;
    files.push(("InRelease".into(), Bytes::from(inrelease)));
    files.push(("Release.gpg".into(), Bytes::from(release_gpg)));
    files.push(("Release".into(), Bytes::from(release)));
    Ok(files)
}

fn package_refs(packages: Vec<AptPackage>) -> Result<Vec<PackageRef>, AptError> {
    packages
        .into_iter()
        .map(|p| {
            Ok(PackageRef {
                version: p.version.parse().map_err(|e| {
                    AptError::internal(format!("stored version of {}: {e}", p.name))
                })?,
                name: p.name,
                architecture: p.architecture,
            })
        })
        .collect()
}
