//! The Debian (APT) repository's records (migration 0003): repositories (local and mirror),
//! their package listings, immutable snapshots, publications and the index files generated for
//! each publication. The `.deb` and index bytes are blobs in the store, named here by SHA-256.
//!
//! Versions, names and architectures are stored as the text `pinfold-apt` accepted (this crate
//! does not depend on it); the server checks them before they get here and orders versions
//! with `DebVersion` after reading them back.
//!
//! Every change to what a publication shows (an upload into its source distribution, a switch
//! to another snapshot) increments its `change_seq` in the same transaction, which is how the
//! reindex worker finds work that survives a restart. On PostgreSQL, writes to one APT
//! repository are serialised by a transaction-scoped advisory lock, so two replicas cannot
//! both accept different files for one path.

use time::OffsetDateTime;

use crate::engine::{impl_for_connections, on_engine};
use crate::{columns, Meta, MetaError};

/// Index generations kept per publication: the current one and two before it, so a client
/// that read an `InRelease` just before a regeneration still finds its indices by hash.
pub const APT_INDEX_GENERATIONS_KEPT: i64 = 3;

/// What an APT repository is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AptRepoKind {
    /// Receives uploads.
    Local,
    /// Follows an upstream archive.
    Mirror,
}

impl AptRepoKind {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            AptRepoKind::Local => "local",
            AptRepoKind::Mirror => "mirror",
        }
    }
}

/// An APT repository.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AptRepo {
    /// Name (also the default publication prefix).
    pub name: String,
    /// Local or mirror.
    pub kind: AptRepoKind,
    /// Mirror: upstream archive root, e.g. `http://deb.debian.org/debian`.
    pub upstream_url: Option<String>,
    /// Mirror: the upstream suite (distribution) followed.
    pub upstream_suite: Option<String>,
    /// Mirror: armored public key(s) the upstream `InRelease` must be signed with; `None`
    /// syncs the unsigned `Release`.
    pub upstream_key: Option<String>,
    /// Mirror: components to follow (empty: all the upstream Release lists).
    pub components: Vec<String>,
    /// Mirror: architectures to follow (empty: all the upstream Release lists).
    pub architectures: Vec<String>,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A repository to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAptRepo {
    /// Name.
    pub name: String,
    /// Local or mirror.
    pub kind: AptRepoKind,
    /// Mirror: upstream root URL (required for mirrors, absent for local).
    pub upstream_url: Option<String>,
    /// Mirror: upstream suite (required for mirrors, absent for local).
    pub upstream_suite: Option<String>,
    /// Mirror: armored public key(s) the upstream `InRelease` must verify with.
    pub upstream_key: Option<String>,
    /// Mirror: component filter.
    pub components: Vec<String>,
    /// Mirror: architecture filter.
    pub architectures: Vec<String>,
}

/// One package listing: a file listed in one distribution, component and architecture.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AptPackage {
    /// Distribution (in a snapshot: the snapshot's source distribution).
    pub distribution: String,
    /// Component (`main`, `non-free`).
    pub component: String,
    /// The `binary-<arch>` index it is listed in (`all` packages are listed per architecture).
    pub architecture: String,
    /// Package name.
    pub name: String,
    /// Version, as written in the control file.
    pub version: String,
    /// Pool path relative to the repository root (the stanza's `Filename`).
    pub path: String,
    /// Size of the `.deb`.
    pub size: u64,
    /// MD5 of the `.deb`, hex.
    pub md5: String,
    /// SHA-1 of the `.deb`, hex.
    pub sha1: String,
    /// SHA-256 of the `.deb`, hex: the blob's name in the store.
    pub sha256: String,
    /// The control paragraph, verbatim.
    pub control: String,
}

/// What [`Meta::apt_add_packages`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AptAddOutcome {
    /// At least one listing is new.
    Added,
    /// Every listing was already there with the same file (an idempotent re-upload).
    Unchanged,
}

/// An immutable snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AptSnapshot {
    /// Name.
    pub name: String,
    /// The repository it was taken of.
    pub source_repo: String,
    /// The distribution of that repository it was taken of.
    pub source_distribution: String,
    /// When it was taken.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Listings it holds.
    pub packages: u64,
}

/// What a publication shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum AptPublishSource {
    /// A snapshot, frozen.
    Snapshot {
        /// Snapshot name.
        name: String,
    },
    /// The live state of a repository distribution.
    Repo {
        /// Repository name.
        name: String,
        /// Its distribution.
        distribution: String,
    },
}

/// A published distribution: `/apt/<prefix>/dists/<distribution>/`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AptPublication {
    /// Row id (for index lookups).
    pub id: i64,
    /// URL prefix.
    pub prefix: String,
    /// Distribution name clients use.
    pub distribution: String,
    /// What it shows.
    pub source: AptPublishSource,
    /// Incremented on every change of what it shows.
    pub change_seq: i64,
    /// The `change_seq` its current indices were built from.
    pub indexed_seq: i64,
    /// Current index generation (0: never indexed).
    pub generation: i64,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl AptPublication {
    /// Whether the indices are behind what the publication shows.
    pub fn needs_index(&self) -> bool {
        self.indexed_seq < self.change_seq
    }
}

/// One generated index file of a publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptIndexFile {
    /// Path relative to `dists/<distribution>/` (`Release`, `main/binary-amd64/Packages.gz`).
    pub path: String,
    /// SHA-256 of the bytes, hex: the blob's name in the store.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

type PackageRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    String,
    String,
    String,
);

fn package(row: PackageRow) -> Result<AptPackage, MetaError> {
    let (
        distribution,
        component,
        architecture,
        name,
        version,
        path,
        size,
        md5,
        sha1,
        sha256,
        control,
    ) = row;
    Ok(AptPackage {
        distribution,
        component,
        architecture,
        name,
        version,
        path,
        size: columns::size_from_db(size)?,
        md5,
        sha1,
        sha256,
        control,
    })
}

type RepoRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
    i64,
);

fn words(text: String) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

fn repo(row: RepoRow) -> Result<AptRepo, MetaError> {
    let (
        name,
        kind,
        upstream_url,
        upstream_suite,
        upstream_key,
        components,
        architectures,
        created_at,
    ) = row;
    let kind = match kind.as_str() {
        "local" => AptRepoKind::Local,
        "mirror" => AptRepoKind::Mirror,
        _ => {
            return Err(MetaError::CorruptValue {
                what: "apt repository kind",
                value: kind,
            })
        }
    };
    Ok(AptRepo {
        name,
        kind,
        upstream_url,
        upstream_suite,
        upstream_key,
        components: words(components),
        architectures: words(architectures),
        created_at: columns::time_from_micros(created_at)?,
    })
}

type PublicationRow = (
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
    i64,
    i64,
);

const PUBLICATION_COLUMNS: &str = "p.id, p.prefix, p.distribution, s.name, r.name, \
     p.source_distribution, p.change_seq, p.indexed_seq, p.generation, p.updated_at \
     FROM apt_publications p \
     LEFT JOIN apt_snapshots s ON s.id = p.snapshot_id \
     LEFT JOIN apt_repos r ON r.id = p.source_repo_id";

fn publication(row: PublicationRow) -> Result<AptPublication, MetaError> {
    let (
        id,
        prefix,
        distribution,
        snapshot,
        repo,
        source_distribution,
        change_seq,
        indexed_seq,
        generation,
        updated_at,
    ) = row;
    let source = match (snapshot, repo, source_distribution) {
        (Some(name), None, None) => AptPublishSource::Snapshot { name },
        (None, Some(name), Some(distribution)) => AptPublishSource::Repo { name, distribution },
        _ => {
            return Err(MetaError::CorruptValue {
                what: "apt publication source",
                value: id.to_string(),
            })
        }
    };
    Ok(AptPublication {
        id,
        prefix,
        distribution,
        source,
        change_seq,
        indexed_seq,
        generation,
        updated_at: columns::time_from_micros(updated_at)?,
    })
}

/// Statements run inside an APT write transaction, on either engine.
pub(crate) trait AptQueries {
    /// The id and kind of a repository.
    async fn apt_repo_row(&mut self, name: &str) -> Result<Option<(i64, String)>, MetaError>;

    /// Marks every publication showing `(repo_id, distribution)` as changed.
    async fn apt_bump_sources(&mut self, repo_id: i64, distribution: &str)
        -> Result<(), MetaError>;
}

impl_for_connections!(AptQueries {
    async fn apt_repo_row(&mut self, name: &str) -> Result<Option<(i64, String)>, MetaError> {
        Ok(
            sqlx::query_as("SELECT id, kind FROM apt_repos WHERE name = $1")
                .bind(name)
                .fetch_optional(self)
                .await?,
        )
    }

    async fn apt_bump_sources(
        &mut self,
        repo_id: i64,
        distribution: &str,
    ) -> Result<(), MetaError> {
        sqlx::query(
            "UPDATE apt_publications SET change_seq = change_seq + 1, updated_at = $3 \
             WHERE source_repo_id = $1 AND source_distribution = $2",
        )
        .bind(repo_id)
        .bind(distribution)
        .bind(columns::now_micros())
        .execute(self)
        .await?;
        Ok(())
    }
});

/// Serialises writes to one APT repository until the transaction ends.
pub(crate) trait AptLock {
    async fn lock_apt_repo(&mut self, name: &str) -> Result<(), MetaError>;
}

impl AptLock for sqlx::SqliteConnection {
    async fn lock_apt_repo(&mut self, _name: &str) -> Result<(), MetaError> {
        // `BEGIN IMMEDIATE` on the single writer already holds the only write lock.
        Ok(())
    }
}

impl AptLock for sqlx::PgConnection {
    async fn lock_apt_repo(&mut self, name: &str) -> Result<(), MetaError> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('apt:' || $1, 0))")
            .bind(name)
            .execute(self)
            .await?;
        Ok(())
    }
}

impl Meta {
    /// Creates an APT repository.
    ///
    /// # Errors
    /// [`MetaError::AptRepoExists`] when the name is taken; [`MetaError::Database`] (also when
    /// a mirror lacks its upstream, which the schema's CHECK refuses).
    pub async fn apt_create_repo(&self, new: &NewAptRepo) -> Result<AptRepo, MetaError> {
        on_engine!(self, |db| {
            let mut tx = db.write().await?;
            let inserted = sqlx::query(
                "INSERT INTO apt_repos (name, kind, upstream_url, upstream_suite, upstream_key, \
                 components, architectures, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(&new.name)
            .bind(new.kind.as_str())
            .bind(&new.upstream_url)
            .bind(&new.upstream_suite)
            .bind(&new.upstream_key)
            .bind(new.components.join(" "))
            .bind(new.architectures.join(" "))
            .bind(columns::now_micros())
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(MetaError::AptRepoExists(new.name.clone()));
            }
            tx.commit().await?;
        });
        self.apt_repo(&new.name)
            .await?
            .ok_or_else(|| MetaError::AptRepoUnknown(new.name.clone()))
    }

    /// An APT repository by name.
    ///
    /// # Errors
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn apt_repo(&self, name: &str) -> Result<Option<AptRepo>, MetaError> {
        let row: Option<RepoRow> = on_engine!(self, |db| {
            sqlx::query_as(
            "SELECT name, kind, upstream_url, upstream_suite, upstream_key, components, architectures, \
             created_at FROM apt_repos WHERE name = $1"
        )
        .bind(name)
        .fetch_optional(&db.readers)
        .await?
        });
        row.map(repo).transpose()
    }

    /// Every APT repository, by name.
    ///
    /// # Errors
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn apt_repos(&self) -> Result<Vec<AptRepo>, MetaError> {
        let rows: Vec<RepoRow> = on_engine!(self, |db| {
            sqlx::query_as(
            "SELECT name, kind, upstream_url, upstream_suite, upstream_key, components, architectures, \
             created_at FROM apt_repos ORDER BY name"
        )
        .fetch_all(&db.readers)
        .await?
        });
        rows.into_iter().map(repo).collect()
    }

    /// Adds listings of one file to a repository, in one transaction: all or none.
    ///
    /// Every listing must name the same `path` and file (the same `sha256`). A listing that
    /// is already there with the same file is kept as is. The first upload into a
    /// distribution that no publication shows yet publishes it as `<repo>/<distribution>`
    /// (live), so an upload is installable without a separate publish step (story 4).
    ///
    /// # Errors
    /// [`MetaError::AptRepoUnknown`]; [`MetaError::AptPathConflict`] when another file is
    /// stored at `path`; [`MetaError::AptPackageConflict`] when the distribution, component
    /// and architecture already list this name and version with another file or path;
    /// [`MetaError::Database`].
    pub async fn apt_add_packages(
        &self,
        repo_name: &str,
        listings: &[AptPackage],
    ) -> Result<AptAddOutcome, MetaError> {
        on_engine!(self, |db| {
            let mut tx = db.write().await?;
            tx.lock_apt_repo(repo_name).await?;
            let (repo_id, _) = tx
                .apt_repo_row(repo_name)
                .await?
                .ok_or_else(|| MetaError::AptRepoUnknown(repo_name.to_owned()))?;
            let mut added = false;
            let now = columns::now_micros();
            for p in listings {
                let at_path: Option<String> = sqlx::query_scalar(
                    "SELECT sha256 FROM apt_packages WHERE repo_id = $1 AND path = $2 \
                     AND sha256 <> $3 LIMIT 1",
                )
                .bind(repo_id)
                .bind(&p.path)
                .bind(&p.sha256)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(existing) = at_path {
                    return Err(MetaError::AptPathConflict {
                        path: p.path.clone(),
                        existing_sha256: existing,
                    });
                }
                let listed: Option<(String, String)> = sqlx::query_as(
                    "SELECT sha256, path FROM apt_packages WHERE repo_id = $1 \
                     AND distribution = $2 AND component = $3 AND architecture = $4 \
                     AND name = $5 AND version = $6",
                )
                .bind(repo_id)
                .bind(&p.distribution)
                .bind(&p.component)
                .bind(&p.architecture)
                .bind(&p.name)
                .bind(&p.version)
                .fetch_optional(&mut *tx)
                .await?;
                match listed {
                    Some((sha, path)) if sha == p.sha256 && path == p.path => continue,
                    // The same package under another path, or other content: an index lists
                    // one file per name, version and architecture.
                    Some(_) => {
                        return Err(MetaError::AptPackageConflict {
                            name: p.name.clone(),
                            version: p.version.clone(),
                            architecture: p.architecture.clone(),
                            distribution: p.distribution.clone(),
                            component: p.component.clone(),
                        })
                    }
                    None => {}
                }
                sqlx::query(
                    "INSERT INTO apt_packages (repo_id, distribution, component, architecture, \
                     name, version, path, size, md5, sha1, sha256, control, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(repo_id)
                .bind(&p.distribution)
                .bind(&p.component)
                .bind(&p.architecture)
                .bind(&p.name)
                .bind(&p.version)
                .bind(&p.path)
                .bind(columns::size_to_db(p.size)?)
                .bind(&p.md5)
                .bind(&p.sha1)
                .bind(&p.sha256)
                .bind(&p.control)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                added = true;
            }
            if !added {
                return Ok(AptAddOutcome::Unchanged);
            }
            let mut distributions: Vec<&str> =
                listings.iter().map(|p| p.distribution.as_str()).collect();
            distributions.sort_unstable();
            distributions.dedup();
            for distribution in distributions {
                sqlx::query(
                    "INSERT INTO apt_publications (prefix, distribution, source_repo_id, \
                     source_distribution, updated_at) VALUES ($1, $2, $3, $2, $4) \
                     ON CONFLICT (prefix, distribution) DO NOTHING",
                )
                .bind(repo_name)
                .bind(distribution)
                .bind(repo_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.apt_bump_sources(repo_id, distribution).await?;
            }
            tx.commit().await?;
            Ok(AptAddOutcome::Added)
        })
    }

    /// Replaces the listings of one distribution of a (mirror) repository with `listings`, in
    /// one transaction, and returns whether anything changed. Snapshots taken before keep
    /// their copies.
    ///
    /// # Errors
    /// [`MetaError::AptRepoUnknown`], [`MetaError::Database`].
    pub async fn apt_replace_packages(
        &self,
        repo_name: &str,
        distribution: &str,
        listings: &[AptPackage],
    ) -> Result<bool, MetaError> {
        if self.apt_repo(repo_name).await?.is_none() {
            return Err(MetaError::AptRepoUnknown(repo_name.to_owned()));
        }
        let current = self.apt_packages(repo_name, distribution).await?;
        let key = |p: &AptPackage| {
            (
                p.component.clone(),
                p.architecture.clone(),
                p.name.clone(),
                p.version.clone(),
                p.sha256.clone(),
            )
        };
        let mut old: Vec<_> = current.iter().map(key).collect();
        let mut new: Vec<_> = listings.iter().map(key).collect();
        old.sort_unstable();
        new.sort_unstable();
        if old == new {
            return Ok(false);
        }
        on_engine!(self, |db| {
            let mut tx = db.write().await?;
            tx.lock_apt_repo(repo_name).await?;
            let (repo_id, _) = tx
                .apt_repo_row(repo_name)
                .await?
                .ok_or_else(|| MetaError::AptRepoUnknown(repo_name.to_owned()))?;
            sqlx::query("DELETE FROM apt_packages WHERE repo_id = $1 AND distribution = $2")
                .bind(repo_id)
                .bind(distribution)
                .execute(&mut *tx)
                .await?;
            let now = columns::now_micros();
            for p in listings {
                sqlx::query(
                    "INSERT INTO apt_packages (repo_id, distribution, component, architecture, \
                     name, version, path, size, md5, sha1, sha256, control, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(repo_id)
                .bind(distribution)
                .bind(&p.component)
                .bind(&p.architecture)
                .bind(&p.name)
                .bind(&p.version)
                .bind(&p.path)
                .bind(columns::size_to_db(p.size)?)
                .bind(&p.md5)
                .bind(&p.sha1)
                .bind(&p.sha256)
                .bind(&p.control)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.apt_bump_sources(repo_id, distribution).await?;
            tx.commit().await?;
        });
        Ok(true)
    }

    /// The listings of one distribution of a repository, by name, version, architecture.
    ///
    /// # Errors
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn apt_packages(
        &self,
        repo_name: &str,
        distribution: &str,
    ) -> Result<Vec<AptPackage>, MetaError> {
        let rows: Vec<PackageRow> = on_engine!(self, |db| sqlx::query_as(
            "SELECT p.distribution, p.component, p.architecture, p.name, p.version, p.path, \
             p.size, p.md5, p.sha1, p.sha256, p.control \
             FROM apt_packages p JOIN apt_repos r ON r.id = p.repo_id \
             WHERE r.name = $1 AND p.distribution = $2 \
             ORDER BY p.name, p.version, p.architecture, p.component"
        )
        .bind(repo_name)
        .bind(distribution)
        .fetch_all(&db.readers)
        .await?);
        rows.into_iter().map(package).collect()
    }

    /// Takes an immutable snapshot of one distribution of a repository.
    ///
    /// # Errors
    /// [`MetaError::AptRepoUnknown`], [`MetaError::AptSnapshotExists`],
    /// [`MetaError::Database`].
    pub async fn apt_create_snapshot(
        &self,
        name: &str,
        repo_name: &str,
        distribution: &str,
    ) -> Result<AptSnapshot, MetaError> {
        on_engine!(self, |db| {
            let mut tx = db.write().await?;
            tx.lock_apt_repo(repo_name).await?;
            let (repo_id, _) = tx
                .apt_repo_row(repo_name)
                .await?
                .ok_or_else(|| MetaError::AptRepoUnknown(repo_name.to_owned()))?;
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO apt_snapshots (name, source_repo_id, source_distribution, \
                 created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING RETURNING id",
            )
            .bind(name)
            .bind(repo_id)
            .bind(distribution)
            .bind(columns::now_micros())
            .fetch_optional(&mut *tx)
            .await?;
            let id = id.ok_or_else(|| MetaError::AptSnapshotExists(name.to_owned()))?;
            sqlx::query(
                "INSERT INTO apt_snapshot_packages (snapshot_id, component, architecture, name, \
                 version, path, size, md5, sha1, sha256, control) \
                 SELECT $1, component, architecture, name, version, path, size, md5, sha1, \
                 sha256, control FROM apt_packages WHERE repo_id = $2 AND distribution = $3",
            )
            .bind(id)
            .bind(repo_id)
            .bind(distribution)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        self.apt_snapshot(name)
            .await?
            .ok_or_else(|| MetaError::AptSnapshotUnknown(name.to_owned()))
    }

    /// A snapshot by name.
    ///
    /// # Errors
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn apt_snapshot(&self, name: &str) -> Result<Option<AptSnapshot>, MetaError> {
        Ok(self.snapshots_where(Some(name)).await?.pop())
    }

    /// Every snapshot, by name.
    ///
    /// # Errors
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn apt_snapshots(&self) -> Result<Vec<AptSnapshot>, MetaError> {
        self.snapshots_where(None).await
    }

    /// Snapshots, all or the one named `name`.
    async fn snapshots_where(&self, name: Option<&str>) -> Result<Vec<AptSnapshot>, MetaError> {
        let rows: Vec<(String, String, String, i64, i64)> = on_engine!(self, |db| {
            sqlx::query_as(
                "SELECT s.name, r.name, s.source_distribution, s.created_at, \
                 (SELECT COUNT(*) FROM apt_snapshot_packages sp WHERE sp.snapshot_id = s.id) \
                 FROM apt_snapshots s JOIN apt_repos r ON r.id = s.source_repo_id \
                 WHERE $1 IS NULL OR s.name = $1 \
                 ORDER BY s.name",
            )
            .bind(name)
            .fetch_all(&db.readers)
            .await?
        });
        rows.into_iter()
            .map(
                |(name, source_repo, source_distribution, created_at, packages)| {
                    Ok(AptSnapshot {
                        name,
                        source_repo,
                        source_distribution,
                        created_at: columns::time_from_micros(created_at)?,
                        packages: columns::size_from_db(packages)?,
                    })
                },
            )
            .collect()
    }

    /// The listings of a snapshot (their `distribution` is the snapshot's source
    /// distribution).
    ///
    /// # Errors
    /// [`MetaError::AptSnapshotUnknown`], [`MetaError::Database`].
    pub async fn apt_snapshot_packages(&self, name: &str) -> Result<Vec<AptPackage>, MetaError> {
        // An empty snapshot and an unknown name both have no rows; only the latter is an error.
        if self.apt_snapshot(name).await?.is_none() {
            return Err(MetaError::AptSnapshotUnknown(name.to_owned()));
        }
        let rows: Vec<PackageRow> = on_engine!(self, |db| sqlx::query_as(
            "SELECT s.source_distribution, p.component, p.architecture, p.name, p.version, \
             p.path, p.size, p.md5, p.sha1, p.sha256, p.control \
             FROM apt_snapshot_packages p JOIN apt_snapshots s ON s.id = p.snapshot_id \
             WHERE s.name = $1 ORDER BY p.name, p.version, p.architecture, p.component"
        )
        .bind(name)
        .fetch_all(&db.readers)
        .await?);
        rows.into_iter().map(package).collect()
    }

    /// Publishes (or switches) `/apt/<prefix>/dists/<distribution>/` to show `source`, and
    /// marks it for reindexing. Returns the publication.
    ///
    /// # Errors
    /// [`MetaError::AptSnapshotUnknown`] / [`MetaError::AptRepoUnknown`] for a missing source;
    /// [`MetaError::Database`].
    pub async fn apt_publish(
        &self,
        prefix: &str,
        distribution: &str,
        source: &AptPublishSource,
    ) -> Result<AptPublication, MetaError> {
        on_engine!(self, |db| {
            let mut tx = db.write().await?;
            tx.lock_apt_repo(prefix).await?;
            let (snapshot_id, repo_id, source_distribution): (
                Option<i64>,
                Option<i64>,
                Option<&str>,
            ) = match source {
                AptPublishSource::Snapshot { name } => {
                    let id: Option<i64> =
                        sqlx::query_scalar("SELECT id FROM apt_snapshots WHERE name = $1")
                            .bind(name)
                            .fetch_optional(&mut *tx)
                            .await?;
                    let id = id.ok_or_else(|| MetaError::AptSnapshotUnknown(name.clone()))?;
                    (Some(id), None, None)
                }
                AptPublishSource::Repo { name, distribution } => {
                    let (id, _) = tx
                        .apt_repo_row(name)
                        .await?
                        .ok_or_else(|| MetaError::AptRepoUnknown(name.clone()))?;
                    (None, Some(id), Some(distribution.as_str()))
                }
            };
            sqlx::query(
                "INSERT INTO apt_publications (prefix, distribution, snapshot_id, source_repo_id, \
                 source_distribution, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (prefix, distribution) DO UPDATE SET \
                 snapshot_id = excluded.snapshot_id, source_repo_id = excluded.source_repo_id, \
                 source_distribution = excluded.source_distribution, \
                 change_seq = apt_publications.change_seq + 1, updated_at = excluded.updated_at",
            )
            .bind(prefix)
            .bind(distribution)
            .bind(snapshot_id)
            .bind(repo_id)
            .bind(source_distribution)
            .bind(columns::now_micros())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        self.apt_publication(prefix, distribution)
            .await?
            .ok_or_else(|| MetaError::AptPublicationUnknown {
                prefix: prefix.to_owned(),
                distribution: distribution.to_owned(),
            })
    }

    /// A publication.
    ///
    /// # Errors
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn apt_publication(
        &self,
        prefix: &str,
        distribution: &str,
    ) -> Result<Option<AptPublication>, MetaError> {
        let row: Option<PublicationRow> = on_engine!(self, |db| sqlx::query_as(&format!(
            "SELECT {PUBLICATION_COLUMNS} WHERE p.prefix = $1 AND p.distribution = $2"
        ))
        .bind(prefix)
        .bind(distribution)
        .fetch_optional(&db.readers)
        .await?);
        row.map(publication).transpose()
    }

    /// Every publication, by prefix and distribution.
    ///
    /// # Errors
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn apt_publications(&self) -> Result<Vec<AptPublication>, MetaError> {
        let rows: Vec<PublicationRow> = on_engine!(self, |db| sqlx::query_as(&format!(
            "SELECT {PUBLICATION_COLUMNS} ORDER BY p.prefix, p.distribution"
        ))
        .fetch_all(&db.readers)
        .await?);
        rows.into_iter().map(publication).collect()
    }

    /// What a publication shows now.
    ///
    /// # Errors
    /// As [`Meta::apt_packages`] and [`Meta::apt_snapshot_packages`].
    pub async fn apt_publication_packages(
        &self,
        publication: &AptPublication,
    ) -> Result<Vec<AptPackage>, MetaError> {
        match &publication.source {
            AptPublishSource::Snapshot { name } => self.apt_snapshot_packages(name).await,
            AptPublishSource::Repo { name, distribution } => {
                self.apt_packages(name, distribution).await
            }
        }
    }

    /// Records a new generation of index files for a publication, built from its state at
    /// `built_from_seq`, and drops generations older than [`APT_INDEX_GENERATIONS_KEPT`].
    /// Returns the new generation. If the publication changed meanwhile, the files are still
    /// recorded (they are consistent with themselves) and it stays marked for reindexing.
    ///
    /// # Errors
    /// [`MetaError::Database`].
    pub async fn apt_record_indices(
        &self,
        publication_id: i64,
        built_from_seq: i64,
        files: &[AptIndexFile],
    ) -> Result<i64, MetaError> {
        on_engine!(self, |db| {
            let mut tx = db.write().await?;
            let generation: i64 = sqlx::query_scalar(
                "UPDATE apt_publications SET generation = generation + 1, \
                 indexed_seq = CASE WHEN indexed_seq > $2 THEN indexed_seq ELSE $2 END \
                 WHERE id = $1 RETURNING generation",
            )
            .bind(publication_id)
            .bind(built_from_seq)
            .fetch_one(&mut *tx)
            .await?;
            for file in files {
                sqlx::query(
                    "INSERT INTO apt_index_files (publication_id, generation, path, sha256, size) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(publication_id)
                .bind(generation)
                .bind(&file.path)
                .bind(&file.sha256)
                .bind(columns::size_to_db(file.size)?)
                .execute(&mut *tx)
                .await?;
            }
            // Files of the generations about to be dropped become garbage candidates; the
            // collector deletes their blobs once nothing references them for a while.
            sqlx::query(
                "INSERT INTO apt_index_garbage (sha256, pruned_at) \
                 SELECT DISTINCT sha256, $3 FROM apt_index_files \
                 WHERE publication_id = $1 AND generation <= $2 \
                 ON CONFLICT (sha256) DO NOTHING",
            )
            .bind(publication_id)
            .bind(generation - APT_INDEX_GENERATIONS_KEPT)
            .bind(columns::now_micros())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "DELETE FROM apt_index_files WHERE publication_id = $1 AND generation <= $2",
            )
            .bind(publication_id)
            .bind(generation - APT_INDEX_GENERATIONS_KEPT)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(generation)
        })
    }

    /// SHA-256 digests of index files pruned before `pruned_before` that nothing references
    /// now (no index generation, no package, no snapshot, no OCI blob or manifest): their
    /// blobs may be deleted. At most `limit`.
    ///
    /// # Errors
    /// [`MetaError::Database`].
    pub async fn apt_index_garbage(
        &self,
        pruned_before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<String>, MetaError> {
        Ok(on_engine!(self, |db| {
            sqlx::query_scalar(
            "SELECT g.sha256 FROM apt_index_garbage g WHERE g.pruned_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM apt_index_files f WHERE f.sha256 = g.sha256) \
             AND NOT EXISTS (SELECT 1 FROM apt_packages p WHERE p.sha256 = g.sha256) \
             AND NOT EXISTS (SELECT 1 FROM apt_snapshot_packages sp WHERE sp.sha256 = g.sha256) \
             AND NOT EXISTS (SELECT 1 FROM repository_blobs b WHERE b.digest = 'sha256:' || g.sha256) \
             AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = 'sha256:' || g.sha256) \
             ORDER BY g.pruned_at, g.sha256 LIMIT $2"
        )
        .bind(columns::micros(pruned_before))
        .bind(i64::from(limit))
        .fetch_all(&db.readers)
        .await?
        }))
    }

    /// Forgets garbage candidates: those whose blobs were deleted, and (so the table does not
    /// grow) every candidate pruned before `pruned_before` that is referenced again.
    ///
    /// # Errors
    /// [`MetaError::Database`].
    pub async fn apt_forget_garbage(
        &self,
        deleted: &[String],
        pruned_before: OffsetDateTime,
    ) -> Result<(), MetaError> {
        on_engine!(self, |db| {
            let mut tx = db.write().await?;
            for sha256 in deleted {
                sqlx::query("DELETE FROM apt_index_garbage WHERE sha256 = $1")
                    .bind(sha256)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "DELETE FROM apt_index_garbage WHERE pruned_at < $1 \
                 AND EXISTS (SELECT 1 FROM apt_index_files f WHERE f.sha256 = apt_index_garbage.sha256)",
            )
            .bind(columns::micros(pruned_before))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The current index files of a publication.
    ///
    /// # Errors
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn apt_index_files(
        &self,
        publication_id: i64,
    ) -> Result<Vec<AptIndexFile>, MetaError> {
        let rows: Vec<(String, String, i64)> = on_engine!(self, |db| sqlx::query_as(
            "SELECT f.path, f.sha256, f.size FROM apt_index_files f \
             JOIN apt_publications p ON p.id = f.publication_id AND f.generation = p.generation \
             WHERE p.id = $1 ORDER BY f.path"
        )
        .bind(publication_id)
        .fetch_all(&db.readers)
        .await?);
        rows.into_iter()
            .map(|(path, sha256, size)| {
                Ok(AptIndexFile {
                    path,
                    sha256,
                    size: columns::size_from_db(size)?,
                })
            })
            .collect()
    }

    /// Whether a kept generation of a publication's indices has a file with this SHA-256
    /// (serving `by-hash/SHA256/<hex>`), and its size.
    ///
    /// # Errors
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn apt_index_by_hash(
        &self,
        publication_id: i64,
        sha256: &str,
    ) -> Result<Option<u64>, MetaError> {
        let size: Option<i64> = on_engine!(self, |db| {
            sqlx::query_scalar(
            "SELECT size FROM apt_index_files WHERE publication_id = $1 AND sha256 = $2 LIMIT 1"
        )
        .bind(publication_id)
        .bind(sha256)
        .fetch_optional(&db.readers)
        .await?
        });
        size.map(columns::size_from_db).transpose()
    }

    /// The file at pool path `path` under `/apt/<prefix>/`: looked up in the repository named
    /// `prefix` and in every snapshot a publication under `prefix` shows. Returns its SHA-256
    /// and size.
    ///
    /// # Errors
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn apt_pool_file(
        &self,
        prefix: &str,
        path: &str,
    ) -> Result<Option<(String, u64)>, MetaError> {
        let row: Option<(String, i64)> = on_engine!(self, |db| sqlx::query_as(
            "SELECT p.sha256, p.size FROM apt_packages p JOIN apt_repos r ON r.id = p.repo_id \
             WHERE r.name = $1 AND p.path = $2 \
             UNION ALL \
             SELECT sp.sha256, sp.size FROM apt_snapshot_packages sp \
             JOIN apt_publications pub ON pub.snapshot_id = sp.snapshot_id \
             WHERE pub.prefix = $1 AND sp.path = $2 \
             UNION ALL \
             SELECT p.sha256, p.size FROM apt_packages p \
             JOIN apt_publications pub ON pub.source_repo_id = p.repo_id \
             AND pub.source_distribution = p.distribution \
             WHERE pub.prefix = $1 AND p.path = $2 \
             LIMIT 1"
        )
        .bind(prefix)
        .bind(path)
        .fetch_optional(&db.readers)
        .await?);
        row.map(|(sha, size)| Ok((sha, columns::size_from_db(size)?)))
            .transpose()
    }

    /// The file stored at `path` in repository `repo_name` (the Artifactory "what is at this
    /// path" question), its SHA-256 and size.
    ///
    /// # Errors
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn apt_repo_file(
        &self,
        repo_name: &str,
        path: &str,
    ) -> Result<Option<(String, u64)>, MetaError> {
        let row: Option<(String, i64)> = on_engine!(self, |db| sqlx::query_as(
            "SELECT p.sha256, p.size FROM apt_packages p JOIN apt_repos r ON r.id = p.repo_id \
             WHERE r.name = $1 AND p.path = $2 LIMIT 1"
        )
        .bind(repo_name)
        .bind(path)
        .fetch_optional(&db.readers)
        .await?);
        row.map(|(sha, size)| Ok((sha, columns::size_from_db(size)?)))
            .transpose()
    }

    /// The names of the APT repositories that list a package file with SHA-256 `sha256`
    /// (lower-case hex), in name order, at most `limit`: who holds the bytes an
    /// `X-Checksum-Deploy` would reuse, so the server can check the caller may read one.
    ///
    /// # Errors
    /// [`MetaError::Database`].
    pub async fn apt_repos_with_file(
        &self,
        sha256: &str,
        limit: u32,
    ) -> Result<Vec<String>, MetaError> {
        let names: Vec<String> = on_engine!(self, |db| sqlx::query_scalar(
            "SELECT DISTINCT r.name FROM apt_packages p JOIN apt_repos r ON r.id = p.repo_id \
             WHERE p.sha256 = $1 ORDER BY r.name LIMIT $2"
        )
        .bind(sha256)
        .bind(i64::from(limit))
        .fetch_all(&db.readers)
        .await?);
        Ok(names)
    }
}
