//! `pinfold backup`, `restore` and `verify`: thin wrappers over `pinfold-backup` that find the
//! data directory and metadata from the configuration, draw a progress bar on a terminal, and
//! print a summary (text, or JSON with `--json`).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use pinfold_backup::{NoProgress, Progress, VerifyOptions};
use pinfold_meta::Meta;
use pinfold_store::BlobStore;

use crate::config::{Config, Overrides};

/// `pinfold backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Backup directory (created if missing). Backups in one directory share their blobs, so
    /// a second backup copies only new ones.
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    /// The data directory to back up (default: from the configuration, ./pinfold-data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// After the backup, keep only the newest N backups in the directory and remove blobs no
    /// kept backup needs.
    #[arg(long, value_name = "N")]
    keep: Option<usize>,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    json: bool,
}

/// `pinfold restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Backup directory written by `pinfold backup`.
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    /// Which backup (a directory name under <from>/backups/; default: the newest complete one).
    #[arg(long, value_name = "NAME")]
    backup: Option<String>,
    /// Data directory to create. Must not exist or be empty, unless --repair.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Repair an existing data directory instead: copy back only the blobs that are missing
    /// or corrupt (metadata untouched; the server may keep running).
    #[arg(long)]
    repair: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    json: bool,
}

/// `pinfold verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The data directory to check (default: from the configuration, ./pinfold-data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Hash at most this many MB (10^6 bytes) per second, to leave disk bandwidth to a
    /// running server.
    #[arg(long, value_name = "MB/s")]
    rate: Option<f64>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// A progress bar on stderr when it is a terminal.
struct Bar {
    /// The current phase's bar and whether it counts bytes (else items).
    bar: Mutex<Option<(ProgressBar, bool)>>,
}

impl Bar {
    fn for_terminal(enabled: bool) -> Arc<dyn Progress> {
        if enabled && std::io::stderr().is_terminal() {
            Arc::new(Bar {
                bar: Mutex::new(None),
            })
        } else {
            Arc::new(NoProgress)
        }
    }
}

impl Progress for Bar {
    fn start(&self, phase: &str, items: u64, bytes: u64) {
        let (bar, template) = if bytes > 0 {
            (
                ProgressBar::new(bytes),
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
        } else {
            (
                ProgressBar::new(items),
                "{prefix} [{bar:30}] {pos}/{len} {per_sec} {eta}",
            )
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(phase.to_owned());
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some((bar, bytes > 0));
        }
    }

    fn advance(&self, items: u64, bytes: u64) {
        if let Ok(slot) = self.bar.lock() {
            if let Some((bar, counts_bytes)) = slot.as_ref() {
                bar.inc(if *counts_bytes { bytes } else { items });
            }
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some((bar, _)) = slot.take() {
                bar.finish_and_clear();
            }
        }
    }
}

/// The data directory, metadata handle and blob store (`[storage]`: the data directory's
/// `blobs/` or object storage) the configuration names, refusing a directory that
/// is not a Pinfold data directory (no meta.db: nothing to back up or check, and opening would
/// create one).
async fn open_data_dir(
    config_file: Option<&Path>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<(PathBuf, Meta, BlobStore)> {
    let config = Config::load(
        config_file,
        std::env::vars(),
        Overrides {
            data_dir,
            ..Overrides::default()
        },
    )?;
    let data_dir = config.data_dir.clone();
    let meta = if config.meta.postgres_url.is_some() {
        config.meta.open(&data_dir).await?
    } else {
        let db = data_dir.join("meta.db");
        if !db.is_file() {
            bail!(pinfold_backup::BackupError::NotADataDir(data_dir));
        }
        // Read-only: no migration, no write, and it runs beside `pinfold serve`.
        Meta::open_sqlite_read_only(&db)
            .await
            .with_context(|| format!("opening {}", db.display()))?
    };
    let store = match open_store(&data_dir, &config).await {
        Ok(store) => store,
        Err(e) => {
            meta.close().await;
            return Err(e);
        }
    };
    Ok((data_dir, meta, store))
}

/// The blob store `[storage]` names: the data directory's `blobs/`, or object storage (with
/// the data directory for local files: keys, the sweep lock).
async fn open_store(data_dir: &Path, config: &Config) -> anyhow::Result<BlobStore> {
    let place = if config.storage.backend == pinfold_store::StorageBackend::S3 {
        config.storage.describe()
    } else {
        data_dir.display().to_string()
    };
    BlobStore::open_configured(data_dir, &config.storage)
        .await
        .with_context(|| format!("opening the blob store in {place}"))
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// Runs `pinfold backup`. Exit 0 on a complete backup; 1 when the data directory lacked or
/// held corrupt blobs the metadata requires (the backup is complete otherwise); 2 on error.
pub async fn backup(args: BackupArgs, config_file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (_, meta, store) = open_data_dir(config_file, args.data_dir).await?;
    let result =
        pinfold_backup::backup(&meta, &store, &args.to, Bar::for_terminal(!args.json)).await;
    meta.close().await;
    let summary = result.with_context(|| format!("backing up into {}", args.to.display()))?;
    let pruned = match args.keep {
        Some(keep) => Some(
            pinfold_backup::prune(&args.to, keep)
                .await
                .with_context(|| format!("pruning {}", args.to.display()))?,
        ),
        None => None,
    };
    if args.json {
        print_json(&serde_json::json!({ "backup": summary, "pruned": pruned }))?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "backup {} in {}: {} blobs copied, {} already there, {} bytes copied, {:.1} s",
            summary.name,
            summary.path.display(),
            summary.blobs_copied,
            summary.blobs_skipped,
            summary.bytes_copied,
            summary.seconds
        )?;
        for m in &summary.missing {
            writeln!(
                out,
                "not backed up: {} ({}), needed by {}",
                m.digest, m.reason, m.referrer
            )?;
        }
        if let Some(p) = &pruned {
            writeln!(
                out,
                "pruned {} backups and {} blobs ({} bytes)",
                p.removed_backups.len(),
                p.removed_blobs,
                p.removed_bytes
            )?;
        }
    }
    Ok(if summary.missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Runs `pinfold restore` (or `--repair`). Exit 0 restored; 1 a repair left blobs it could
/// not fix; 2 error (a damaged backup, a non-empty target or metadata database: nothing
/// written).
///
/// The metadata goes where the configuration keeps it: the new data directory's `meta.db`, or
/// with `[meta] postgres_url` (`PINFOLD_META_POSTGRES_URL`) an empty PostgreSQL database. The
/// blobs go where `[storage]` keeps them: the new data directory, or object storage (with the
/// keys replicas share also put in the bucket). A backup of either backend restores onto either.
pub async fn restore(args: RestoreArgs, config_file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let progress = Bar::for_terminal(!args.json);
    let config = Config::load(
        config_file,
        std::env::vars(),
        Overrides {
            data_dir: Some(args.data_dir.clone()),
            ..Overrides::default()
        },
    )?;
    if args.repair {
        // A PostgreSQL instance's data directory has no meta.db; its blobs are what is repaired.
        if config.meta.postgres_url.is_none() && !args.data_dir.join("meta.db").is_file() {
            bail!(pinfold_backup::BackupError::NotADataDir(args.data_dir));
        }
        let store = open_store(&args.data_dir, &config).await?;
        let summary = pinfold_backup::repair(&args.from, args.backup.as_deref(), &store, progress)
            .await
            .with_context(|| format!("repairing {}", args.data_dir.display()))?;
        if args.json {
            print_json(&summary)?;
        } else {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "repair from backup {}: {} blobs checked, {} missing restored, {} corrupt replaced",
                summary.backup,
                summary.checked,
                summary.restored_missing.len(),
                summary.replaced_corrupt.len()
            )?;
            for d in &summary.restored_missing {
                writeln!(out, "restored missing {d}")?;
            }
            for d in &summary.replaced_corrupt {
                writeln!(out, "replaced corrupt {d}")?;
            }
            for d in &summary.unrepairable {
                writeln!(out, "cannot repair {d}")?;
            }
        }
        return Ok(if summary.unrepairable.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let metadata = match config.meta.postgres_url {
        Some(_) => Some(
            config
                .meta
                .open(&args.data_dir)
                .await
                .context("opening the PostgreSQL metadata database to restore into")?,
        ),
        None => None,
    };
    let result = pinfold_backup::restore_to(
        &args.from,
        args.backup.as_deref(),
        &args.data_dir,
        metadata.as_ref(),
        &config.storage,
        progress,
    )
    .await;
    if let Some(meta) = &metadata {
        meta.close().await;
    }
    let summary = result.with_context(|| format!("restoring into {}", args.data_dir.display()))?;
    if args.json {
        print_json(&summary)?;
    } else {
        let mut elsewhere = Vec::new();
        if config.storage.backend == pinfold_store::StorageBackend::S3 {
            elsewhere.push(format!("blobs into {}", config.storage.describe()));
        }
        if summary.metadata_in_postgres {
            elsewhere.push("metadata into PostgreSQL".to_owned());
        }
        writeln!(
            std::io::stdout().lock(),
            "restored backup {} into {}{}: {} blobs ({} bytes) and {} files verified, {:.1} s",
            summary.backup,
            summary.data_dir.display(),
            if elsewhere.is_empty() {
                String::new()
            } else {
                format!(" ({})", elsewhere.join(", "))
            },
            summary.blobs,
            summary.bytes,
            summary.files,
            summary.seconds
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `pinfold verify`. Exit 0 clean; 1 findings; 2 error.
pub async fn verify(args: VerifyArgs, config_file: Option<&Path>) -> anyhow::Result<ExitCode> {
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a positive number of MB/s, not {rate}");
        }
    }
    let (data_dir, meta, store) = open_data_dir(config_file, args.data_dir).await?;
    let options = VerifyOptions {
        rate_bytes_per_second: args.rate.map(|mb| (mb * 1e6) as u64),
        threads: 0,
    };
    let result =
        pinfold_backup::verify(&store, Some(&meta), options, Bar::for_terminal(!args.json)).await;
    meta.close().await;
    let report = result.with_context(|| format!("verifying {}", data_dir.display()))?;
    if args.json {
        print_json(&report)?;
    } else {
        let mut out = std::io::stdout().lock();
        for f in &report.findings {
            writeln!(out, "{f}")?;
        }
        writeln!(
            out,
            "{} blobs ({} bytes) hashed at {:.0} MB/s, {} references checked: {} findings",
            report.blobs_checked,
            report.bytes_checked,
            report.bytes_per_second / 1e6,
            report.references_checked,
            report.findings.len()
        )?;
    }
    Ok(if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `pinfold export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Images to export: `name[:tag]` (default tag `latest`) or `name@digest`.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
    /// Destination OCI image layout, `oci:<dir>` (created if missing; an existing layout
    /// gains the new images).
    #[arg(long, value_name = "oci:DIR")]
    to: String,
    /// The Pinfold (or any) registry to read from.
    #[arg(
        long,
        env = "PINFOLD_URL",
        default_value = "http://127.0.0.1:5000",
        value_name = "URL"
    )]
    url: String,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    json: bool,
}

/// `pinfold import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Source OCI image layout, `oci:<dir>`.
    #[arg(value_name = "oci:DIR")]
    from: String,
    /// The registry to push to.
    #[arg(
        long,
        env = "PINFOLD_URL",
        default_value = "http://127.0.0.1:5000",
        value_name = "URL"
    )]
    url: String,
    /// Repository for entries whose index.json names none (layouts written by other tools,
    /// e.g. `skopeo copy ... oci:DIR:TAG`).
    #[arg(long, value_name = "NAME")]
    repository: Option<String>,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    json: bool,
}

/// A registry client for `url` (`http://host:port` or `https://host`), with the credentials
/// `docker login` stored for that host (`~/.docker/config.json`, helpers included), if any.
async fn registry_client(url: &str) -> anyhow::Result<pinfold_client::RegistryClient> {
    let (insecure, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (false, rest)
    } else {
        bail!("--url {url:?}: expected http://HOST[:PORT] or https://HOST[:PORT]");
    };
    let host = rest.trim_end_matches('/');
    let config = pinfold_client::ClientConfig {
        insecure,
        ..pinfold_client::ClientConfig::default()
    };
    pinfold_client::RegistryClient::from_docker_config(host, config)
        .await
        .with_context(|| format!("--url {url:?}"))
}

/// `oci:<dir>` → `<dir>`.
fn layout_dir(arg: &str) -> anyhow::Result<PathBuf> {
    match arg.strip_prefix("oci:") {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir)),
        _ => bail!("{arg:?}: expected oci:<directory>"),
    }
}

/// `name[:tag]` or `name@digest`.
fn parse_image(text: &str) -> anyhow::Result<(pinfold_oci::RepoName, pinfold_oci::Reference)> {
    use pinfold_oci::{Reference, RepoName};
    let (name, reference) = if let Some((name, digest)) = text.split_once('@') {
        (
            name,
            Reference::Digest(
                digest
                    .parse()
                    .with_context(|| format!("{text:?}: digest"))?,
            ),
        )
    } else {
        match text.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (
                name,
                Reference::Tag(tag.parse().with_context(|| format!("{text:?}: tag"))?),
            ),
            _ => (text, Reference::Tag("latest".parse()?)),
        }
    };
    let repo: RepoName = name
        .parse()
        .with_context(|| format!("{text:?}: repository name"))?;
    Ok((repo, reference))
}

/// Runs `pinfold export`. Exit 0 exported; 2 error (an unknown image, a digest that does not
/// verify: the layout's index.json is not updated).
pub async fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let dir = layout_dir(&args.to)?;
    let images = args
        .images
        .iter()
        .map(|i| parse_image(i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let client = registry_client(&args.url).await?;
    let summary = pinfold_backup::export(&client, &images, &dir)
        .await
        .with_context(|| format!("exporting to {}", args.to))?;
    if args.json {
        print_json(&summary)?;
    } else {
        let mut out = std::io::stdout().lock();
        for (image, digest) in &summary.images {
            writeln!(out, "exported {image} {digest}")?;
        }
        writeln!(
            out,
            "{} manifests, {} blobs ({} already there), {} bytes written to {}",
            summary.manifests,
            summary.blobs,
            summary.skipped,
            summary.bytes,
            dir.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `pinfold import`. Exit 0 imported; 2 error (not a layout, a corrupt blob, a refused
/// push).
pub async fn import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let dir = layout_dir(&args.from)?;
    let repository = args
        .repository
        .as_deref()
        .map(str::parse::<pinfold_oci::RepoName>)
        .transpose()
        .context("--repository")?;
    let client = registry_client(&args.url).await?;
    let summary = pinfold_backup::import(&client, &dir, repository.as_ref())
        .await
        .with_context(|| format!("importing {}", args.from))?;
    if args.json {
        print_json(&summary)?;
    } else {
        let mut out = std::io::stdout().lock();
        for (image, digest) in &summary.images {
            writeln!(out, "imported {image} {digest}")?;
        }
        writeln!(
            out,
            "{} manifests, {} blobs pushed ({} already there), {} bytes",
            summary.manifests, summary.blobs, summary.skipped, summary.bytes
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
