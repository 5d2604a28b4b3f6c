//! `pinfold serve`: the registry, until SIGTERM or Ctrl-C.

use std::io::Write;

use anyhow::Context;
use pinfold_server::Server;

use crate::config::Config;

/// Runs the server with `config` until a shutdown signal, then drains and exits.
pub async fn run(config: Config, insecure_open: bool) -> anyhow::Result<()> {
    let server = Server::bind(
        config.listen,
        &config.data_dir,
        &config.meta,
        &config.server_config(),
        &config.mirror_config(),
    )
    .await
    .context("starting pinfold serve")?
    .with_scheduled_backups(&config.backup)
    .with_auth(pinfold_server::AuthSettings {
        config: config.auth.clone(),
        users: config.user.clone(),
        permissions: config.permission.clone(),
        insecure_open,
    });
    let addr = server.local_addr()?;
    let scheme = if server.tls().is_some() {
        "https"
    } else {
        "http"
    };
    let data_dir = std::fs::canonicalize(&config.data_dir).unwrap_or(config.data_dir.clone());
    // These two lines are the start-up contract scripts and tests read (the bound port when
    // `--listen` asked for port 0).
    let mut out = std::io::stdout().lock();
    writeln!(out, "pinfold listening on {scheme}://{addr}")?;
    writeln!(out, "pinfold data in {}", data_dir.display())?;
    if config.meta.postgres_url.is_some() {
        writeln!(out, "pinfold metadata in postgresql")?;
    }
    for upstream in &config.upstream {
        writeln!(
            out,
            "pinfold mirrors {} as {addr}/{}/... (policy {})",
            upstream.url,
            upstream.name,
            upstream.policy.as_str()
        )?;
    }
    out.flush()?;
    drop(out);
    tracing::info!(%addr, data_dir = %data_dir.display(), "serving");
    server.run(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
