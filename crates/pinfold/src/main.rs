//! The `pinfold` binary: parses the command line, loads the configuration, starts logging and
//! hands each subcommand to its library entry point (`src/cmd/`).

mod cmd;
mod config;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use config::{Config, Overrides};

/// Pinfold: a registry that keeps container builds deterministic and recoverable.
///
/// Exit codes: 0 success; 1 findings, differences or a failed check; 2 error.
#[derive(Debug, Parser)]
#[command(name = "pinfold", version, about, long_about = None)]
struct Cli {
    /// Configuration file (default: ./pinfold.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the registry (OCI distribution API at /v2/, management API at /api/v1/).
    ///
    /// Zero-config: listens on 127.0.0.1:5000 and keeps data in ./pinfold-data.
    Serve {
        /// Address to listen on (port 0 picks a free port, printed at start).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Directory for blobs, uploads and metadata.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Serve a non-loopback address with no user configured (anyone reaching it may push
        /// and delete). Without it, such a start is refused.
        #[arg(long)]
        insecure_open: bool,
        /// PEM certificate chain to serve HTTPS (HTTP/2 by ALPN) with; `[server] tls_cert`.
        /// Reloaded, with the key, on SIGHUP.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert; `[server] tls_key`.
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Check Dockerfiles for non-deterministic builds (unpinned images and packages, curl | sh,
    /// bash-only syntax under /bin/sh, ...).
    ///
    /// Exit codes: 0 no finding at or above --fail-level; 1 findings; 2 unreadable file or
    /// syntax error.
    Lint(cmd::lint::LintArgs),
    /// Explain how two images differ: config, layers, packages, files, and a ranking of the
    /// changes most likely to break a build (trust store, TLS libraries, libc, time zone,
    /// /bin/sh, users) with the layer each came from.
    ///
    /// Each image is `oci:<dir>[:<ref>]`, `docker-archive:<file.tar>[:<ref>]` or a registry
    /// reference (credentials from ~/.docker/config.json). Exit codes: 0 equal; 1 different;
    /// 2 error.
    Diff(cmd::diff::DiffArgs),
    /// Pin the image references of Dockerfiles, compose files and Kubernetes manifests to
    /// digests in pinfold.lock (--check compares, --rewrite pins them in the files).
    ///
    /// Exit codes: 0 locked or up to date; 1 --check found references moved, added or
    /// removed; 2 unreadable or invalid input, or a reference that cannot be resolved
    /// (nothing is written then).
    Lock(cmd::lock::LockArgs),
    /// Debian repository management: repositories, mirrors, snapshots, publications, diff
    /// (talks to a running server's /api/v1/apt/).
    ///
    /// Exit codes: 0 success; 1 `diff` found differences; 2 error.
    Apt(cmd::apt::AptArgs),
    /// Edit the upstream registries mirrored (`[[upstream]]` in the configuration file, its
    /// comments kept); `pinfold serve` must be restarted to apply.
    ///
    /// Exit codes: 0 success; 2 invalid configuration or unknown name (nothing is written).
    Upstream(cmd::mirror::UpstreamArgs),
    /// API tokens: create (the secret is printed once), list, revoke (talks to a running
    /// server's /api/v1/tokens; --token or PINFOLD_TOKEN authenticates).
    ///
    /// Exit codes: 0 success; 2 error.
    Token(cmd::auth::TokenArgs),
    /// The audit log of writes and failed logins (admin; /api/v1/audit).
    ///
    /// Exit codes: 0 success; 2 error.
    Audit(cmd::auth::AuditArgs),
    /// List upstream moves of mirrored tags the mirror did not follow (open ones by default).
    ///
    /// Exit codes: 0 no open drift; 1 open drift events exist; 2 error.
    Drift(cmd::mirror::DriftArgs),
    /// Accept an upstream move: point a mirrored tag at the upstream's (or a given) digest.
    ///
    /// Exit codes: 0 promoted or already there; 2 error.
    Promote(cmd::mirror::PromoteArgs),
    /// The tag journal of one tag: every digest it pointed to, when, by whom and why.
    ///
    /// Exit codes: 0 success; 2 error (a tag never set is an error).
    History(cmd::mirror::HistoryArgs),
    /// Back up a data directory online (while `pinfold serve` runs): a consistent metadata
    /// snapshot (from SQLite or, with `[meta] postgres_url`, PostgreSQL), every blob it names (only blobs new since the last backup into the same
    /// directory are copied), the APT signing key, and a manifest of every file's digest.
    ///
    /// Exit codes: 0 complete; 1 complete but blobs the metadata requires were missing or
    /// corrupt in the data directory (listed); 2 error (nothing usable written).
    Backup(cmd::durability::BackupArgs),
    /// Restore a data directory from a backup, every file checked against the backup's
    /// manifest; or (--repair) copy back only the missing or corrupt blobs of an existing one.
    /// With `[meta] postgres_url` (or PINFOLD_META_POSTGRES_URL) the metadata is loaded into
    /// that database, which must be empty; either engine restores a backup of either.
    ///
    /// Exit codes: 0 restored or repaired; 1 --repair left blobs it could not fix; 2 error (a
    /// damaged, incomplete or foreign backup, a non-empty target or metadata database:
    /// nothing is written).
    Restore(cmd::durability::RestoreArgs),
    /// Recompute every blob's digest and check that every blob the metadata needs exists.
    /// Runs beside a running server; --rate throttles it.
    ///
    /// Exit codes: 0 no finding; 1 corrupt, missing or unreadable blobs (listed); 2 error.
    Verify(cmd::durability::VerifyArgs),
    /// Export images from a registry's /v2/ API into an OCI image layout (`oci:DIR`), for
    /// air-gapped transfer: bytes and digests unchanged, tags in index.json annotations.
    ///
    /// Exit codes: 0 exported; 2 error.
    Export(cmd::durability::ExportArgs),
    /// Import every image of an OCI image layout (`oci:DIR`) into a registry, under the
    /// repository and tag its index.json names.
    ///
    /// Exit codes: 0 imported; 2 error.
    Import(cmd::durability::ImportArgs),
    /// Garbage collection on a running server: removes what no tag, journal entry, pin,
    /// referrer, index or upload needs (`--dry-run` lists it instead).
    ///
    /// Exit codes: 0 done; 2 error (also when a GC or backup is already running).
    Gc(cmd::gc::GcArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // object_store logs each retry of a failed S3 request at info; its final error
                // is what Pinfold reports (503, or the refusal to start), once.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,object_store=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pinfold: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve {
            listen,
            data_dir,
            insecure_open,
            tls_cert,
            tls_key,
        } => {
            let config = Config::load(
                cli.config.as_deref(),
                std::env::vars(),
                Overrides {
                    listen,
                    data_dir,
                    tls_cert,
                    tls_key,
                },
            )?;
            runtime.block_on(cmd::serve::run(config, insecure_open))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Lint(args) => cmd::lint::run(args),
        Command::Diff(args) => runtime.block_on(cmd::diff::run(args)),
        Command::Lock(args) => runtime.block_on(cmd::lock::run(args)),
        Command::Apt(args) => runtime.block_on(cmd::apt::run(args)),
        Command::Upstream(args) => cmd::mirror::upstream(args, cli.config.as_deref()),
        Command::Token(args) => runtime.block_on(cmd::auth::token(args)),
        Command::Audit(args) => runtime.block_on(cmd::auth::audit(args)),
        Command::Drift(args) => runtime.block_on(cmd::mirror::drift(args)),
        Command::Promote(args) => runtime.block_on(cmd::mirror::promote(args)),
        Command::History(args) => runtime.block_on(cmd::mirror::history(args)),
        Command::Backup(args) => {
            runtime.block_on(cmd::durability::backup(args, cli.config.as_deref()))
        }
        Command::Restore(args) => {
            runtime.block_on(cmd::durability::restore(args, cli.config.as_deref()))
        }
        Command::Verify(args) => {
            runtime.block_on(cmd::durability::verify(args, cli.config.as_deref()))
        }
        Command::Export(args) => runtime.block_on(cmd::durability::export(args)),
        Command::Import(args) => runtime.block_on(cmd::durability::import(args)),
        Command::Gc(args) => runtime.block_on(cmd::gc::run(args)),
    }
}
