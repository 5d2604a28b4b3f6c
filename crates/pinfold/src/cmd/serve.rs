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
    // Installed before the readiness lines below: until a handler exists, SIGTERM's default
    // action kills the process, so a supervisor (or test) that stops the server right after
    // it announced itself would get a crash instead of a drain.
    let shutdown = shutdown_signal()?;
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
    server.run(shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Installs the SIGTERM and SIGINT handlers now; the returned future resolves on the first
/// of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = interrupt.recv() => {},
        }
        tracing::info!("shutdown requested; finishing in-flight requests");
    })
}
