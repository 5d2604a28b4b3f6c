//! Wiring: opens storage and metadata, builds the router, serves until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::extract::FromRef;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use pinfold_meta::MetaConfig;
use pinfold_mirror::{Mirror, MirrorConfig};
use pinfold_store::BlobStore;
use tokio::net::TcpListener;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::limits::Limits;
use crate::listen::ConnectionLimits;
use crate::registry::Registry;
use crate::tls::TlsCertificate;
use crate::workers::{DriftPoller, UploadJanitor, Workers};
use crate::{api, apt, v2, ServerConfig, ServerError};

/// What every handler may reach.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The registry rules over store and metadata.
    pub registry: Registry,
    /// The background workers and their statuses.
    pub workers: Workers,
    /// The Debian repository.
    pub apt: apt::AptService,
    /// Users, permissions, registry tokens, audit.
    pub auth: crate::auth::Auth,
}

impl FromRef<AppState> for Registry {
    fn from_ref(state: &AppState) -> Registry {
        state.registry.clone()
    }
}

impl FromRef<AppState> for Workers {
    fn from_ref(state: &AppState) -> Workers {
        state.workers.clone()
    }
}

/// The whole HTTP surface over `state`, behind the request `limits`.
pub fn router(state: AppState, limits: Limits) -> Router {
    Router::new()
        .merge(v2::routes())
        .merge(api::routes())
        .merge(apt::routes())
        .merge(crate::ui::routes())
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route(
            "/v2/token",
            get(crate::auth::token::issue).post(crate::auth::token::issue_oauth),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::middleware::require,
        ))
        .with_state(state)
        // Outermost first: the head size, then the client's rate, then the body's pace, all
        // before authentication so that a flood or a stalled body costs no credential check.
        .layer(axum::middleware::from_fn_with_state(
            limits.clone(),
            crate::limits::body_idle_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            limits.clone(),
            crate::limits::rate_limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            crate::limits::header_size,
        ))
        .layer(
            // One span per request and one event per response, at DEBUG so that the hot path
            // pays nothing unless asked (`RUST_LOG=tower_http=debug`).
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::DEBUG))
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
}

/// Opens the blob store under `data_dir` and the metadata engine `meta_config` names (SQLite
/// in `data_dir/meta.db` by default).
///
/// # Errors
/// When the directory, the store or the database cannot be opened.
pub async fn open_registry(
    data_dir: &Path,
    meta_config: &MetaConfig,
    config: &ServerConfig,
    mirror_config: &MirrorConfig,
) -> Result<Registry, ServerError> {
    std::fs::create_dir_all(data_dir).map_err(|source| ServerError::DataDir {
        path: data_dir.to_owned(),
        source,
    })?;
    let store = BlobStore::open_configured(data_dir, &config.storage).await?;
    let meta = meta_config.open(data_dir).await?;
    let mirror = if mirror_config.upstreams.is_empty() {
        None
    } else {
        if store.is_object_storage() {
            // The mirror streams a blob to waiting clients from its upload file while the
            // upstream fetch writes it; over object storage that needs its own design.
            return Err(ServerError::Unsupported(
                "[[upstream]] mirrors with [storage] backend = \"s3\" (not yet: use the filesystem backend on a mirroring instance)",
            ));
        }
        let mirror = Mirror::new(
            mirror_config,
            meta.clone(),
            store.clone(),
            config.max_blob_bytes,
        )?;
        let rules = config.rules.clone();
        mirror.set_immutable_tags(pinfold_mirror::ImmutableTags(std::sync::Arc::new(
            move |repo, tag| rules.immutable_rule(repo.as_str(), tag.as_str()).is_some(),
        )));
        Some(mirror)
    };
    let registry = Registry::new(store, meta, config, mirror);
    registry.set_rules(config.rules.clone());
    Ok(registry)
}

/// Replicas over one bucket must sign with the same keys: the APT indices' OpenPGP key and the
/// registry tokens' ES256 key (a token issued by one replica is checked by another). For each,
/// unless configured as a file, the first replica to start puts its key (the one its data
/// directory already had, or a new one) in the store under `state/<name>`, holding the lease
/// `key:<name>` so two starting at once do not both; every replica then writes the store's key
/// to its `local` file, which the usual loaders read.
async fn share_key_file(
    registry: &Registry,
    name: &str,
    local: &Path,
    make: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), ServerError> {
    let failed = |reason: String| ServerError::SharedKey {
        name: name.to_owned(),
        reason,
    };
    let store = registry.store();
    let holder = default_replica_name();
    let lease = format!("key:{name}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(key) = store.read_state(name).await? {
            return write_private_file(local, &key).map_err(failed);
        }
        if registry
            .meta()
            .acquire_lease(&lease, &holder, Duration::from_secs(60))
            .await?
        {
            // Checked again under the lease: another replica may have just finished.
            let shared = match store.read_state(name).await? {
                Some(key) => write_private_file(local, &key).map_err(failed),
                None => match make(local).and_then(|()| {
                    std::fs::read(local).map_err(|e| format!("{}: {e}", local.display()))
                }) {
                    Ok(key) => store
                        .write_state(name, bytes::Bytes::from(key))
                        .await
                        .map_err(ServerError::from),
                    Err(reason) => Err(failed(reason)),
                },
            };
            registry.meta().release_lease(&lease, &holder).await?;
            return shared;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(failed(
                "another replica holds the lease to create it and has not stored it within 60 s"
                    .to_owned(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Writes `bytes` to `path` readable by the owner only, replacing it whole.
fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let write = || -> std::io::Result<()> {
        if std::fs::read(path).is_ok_and(|current| current == bytes) {
            return Ok(());
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let temp = path.with_extension("shared-tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    };
    write().map_err(|e| format!("{}: {e}", path.display()))
}

/// `<hostname>-<process id>`: unique among the replicas of a deployment.
fn default_replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "pinfold".to_owned());
    format!("{host}-{}", std::process::id())
}

/// A bound, ready-to-run server.
pub struct Server {
    listener: TcpListener,
    registry: Registry,
    config: ServerConfig,
    /// Scheduled backups (`[backup]`), when configured.
    backup: Option<pinfold_backup::BackupConfig>,
    auth: crate::AuthSettings,
    tls: Option<TlsCertificate>,
}

impl Server {
    /// Opens the data directory and binds the listen address (port 0 picks a free port).
    ///
    /// # Errors
    /// When storage cannot be opened or the address cannot be bound.
    pub async fn bind(
        listen: SocketAddr,
        data_dir: &Path,
        meta_config: &MetaConfig,
        config: &ServerConfig,
        mirror_config: &MirrorConfig,
    ) -> Result<Server, ServerError> {
        // Before anything is opened: a bad certificate is a configuration error to fix first.
        let tls =
            TlsCertificate::from_config(config.tls_cert.as_deref(), config.tls_key.as_deref())?;
        let registry = open_registry(data_dir, meta_config, config, mirror_config).await?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: listen,
                source,
            })?;
        Ok(Server {
            listener,
            registry,
            config: config.clone(),
            backup: None,
            auth: crate::AuthSettings::default(),
            tls,
        })
    }

    /// The certificate served, when `[server] tls_cert` / `tls_key` are set. [`Server::run`]
    /// reloads it on SIGHUP; [`TlsCertificate::reload`] does it on demand.
    pub fn tls(&self) -> Option<&TlsCertificate> {
        self.tls.as_ref()
    }

    /// Runs scheduled backups (`[backup]` of `pinfold.toml`) as the `backup` worker while
    /// serving; does nothing when `config.to` is unset.
    pub fn with_scheduled_backups(mut self, config: &pinfold_backup::BackupConfig) -> Server {
        self.backup = config.to.is_some().then(|| config.clone());
        self
    }

    /// Sets users, permissions and the `[auth]` section (default: no users, open on
    /// loopback only).
    pub fn with_auth(mut self, settings: crate::AuthSettings) -> Server {
        self.auth = settings;
        self
    }

    /// The address actually bound.
    ///
    /// # Errors
    /// When the socket cannot report it.
    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        self.listener
            .local_addr()
            .map_err(|source| ServerError::Bind {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish (up to the grace
    /// period) and closes the metadata store, so nothing is left half-written.
    ///
    /// # Errors
    /// When the accept loop fails.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Server {
            listener,
            registry,
            config,
            backup,
            auth: auth_settings,
            tls,
        } = self;
        if registry.store().is_object_storage() && auth_settings.config.jwt_key.is_none() {
            let local = crate::auth::default_jwt_key_path(registry.store().root());
            share_key_file(&registry, pinfold_store::SHARED_JWT_KEY, &local, |path| {
                pinfold_auth::JwtSigner::load_or_generate(path)
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
            .await?;
        }
        let auth = crate::auth::Auth::new(
            &auth_settings,
            registry.store().root(),
            registry.meta().clone(),
            config.apt_deploy_keys.clone(),
        )?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Serve { source })?;
        if !auth.enabled() && !addr.ip().is_loopback() && !auth.insecure_open() {
            return Err(ServerError::InsecureOpen { addr });
        }
        let grace = Duration::from_secs(config.shutdown_grace_seconds);
        // Replicas share PostgreSQL: each worker runs on the one holding its lease, and every
        // replica listens for the others' tag moves. SQLite has one process: no leases.
        let workers = if registry.meta().is_shared() {
            let replica = config
                .replica_name
                .clone()
                .unwrap_or_else(default_replica_name);
            let workers = Workers::with_leases(registry.meta().clone(), replica);
            workers.spawn(crate::workers::ChangeListenerWorker::new(registry.clone()));
            workers
        } else {
            Workers::default()
        };
        workers.spawn(UploadJanitor::new(
            registry.clone(),
            Duration::from_secs(config.upload_idle_expiry_seconds),
            Duration::from_secs(config.upload_janitor_interval_seconds),
        ));
        if config.rules.gc.interval_seconds > 0 {
            workers.spawn(crate::workers::GarbageCollector::new(
                registry.clone(),
                Duration::from_secs(config.rules.gc.interval_seconds),
                config.rules.gc.orphan_scan_every,
            ));
        }
        if let Some(mirror) = registry.mirror() {
            workers.spawn(DriftPoller::new(mirror.clone()));
        }
        if let Some(backup) = backup {
            workers.spawn(crate::workers::ScheduledBackup::new(
                registry.clone(),
                backup,
            ));
        }
        let mut apt_settings = config.apt_settings(registry.store().root());
        if auth.enabled() {
            // The auth middleware checks uploads (users, tokens, and these keys as a fallback).
            apt_settings.deploy_keys.clear();
        }
        if registry.store().is_object_storage() && config.apt_signing_key.is_none() {
            share_key_file(
                &registry,
                pinfold_store::SHARED_APT_SIGNING_KEY,
                &apt_settings.signing_key_path,
                |path| {
                    pinfold_apt::SigningKey::load_or_generate(path, "Pinfold APT repository")
                        .map(drop)
                        .map_err(|e| e.to_string())
                },
            )
            .await?;
        }
        let apt = apt::AptService::open(
            registry.store().clone(),
            registry.meta().clone(),
            apt_settings,
        )
        .map_err(ServerError::AptKey)?;
        workers.spawn(crate::workers::AptReindexer::new(
            apt.clone(),
            Duration::from_secs(config.apt_reindex_poll_seconds),
        ));
        let limits = Limits::new(&config);
        limits.spawn_sweeper();
        let app = router(
            AppState {
                registry: registry.clone(),
                workers: workers.clone(),
                apt,
                auth,
            },
            limits,
        );
        if let Some(tls) = &tls {
            spawn_reload_on_sighup(tls.clone());
        }
        let connection_limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(config.header_read_timeout_seconds.max(1)),
            max_header_bytes: config.max_header_bytes,
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let serve = crate::listen::serve(listener, app, tls, connection_limits, async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let mut stop = stop_rx.clone();
        let deadline = async move {
            let _ = stop.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            () = serve => {},
            () = deadline => tracing::warn!("requests still running after {grace:?}; closing anyway"),
        }
        workers.stop(Duration::from_secs(5)).await;
        registry.meta().close().await;
        Ok(())
    }
}

/// Reloads `tls` from its files on every SIGHUP, for as long as the process runs; a failed
/// reload keeps the certificate in force and says why.
fn spawn_reload_on_sighup(tls: TlsCertificate) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(e) => {
            tracing::warn!("cannot watch SIGHUP, the certificate will not be reloaded: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => {
                    tracing::info!(cert = %tls.cert_path().display(), "TLS certificate reloaded")
                }
                Err(e) => {
                    tracing::error!("TLS certificate not reloaded, keeping the previous one: {e}")
                }
            }
        }
    });
}
