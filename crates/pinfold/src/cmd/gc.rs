//! `pinfold gc`: runs garbage collection on a running server (`POST /api/v1/gc`) and prints
//! what was removed, or with `--dry-run` what would be. The work happens in the server
//! (`pinfold-server` `registry/gc.rs`), which is online and safe with concurrent pushes.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::Value;

use super::mirror::{Api, ServerArg};

/// A GC over a large backlog may take a while; the API's usual 30 s would cut it off.
const GC_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// `pinfold gc`
#[derive(Debug, Args)]
pub struct GcArgs {
    /// List what would be removed; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also look for blob files no record names (reads the whole blob tree).
    #[arg(long)]
    orphans: bool,
    /// Print the server's report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArg,
}

/// Runs `pinfold gc`. Exit codes: 0 done (or dry run listed); 2 error, including a GC or
/// backup already running (nothing deleted then).
pub async fn run(args: GcArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.server).await?;
    let mut url = format!("{}/api/v1/gc", api.base);
    let mut params = Vec::new();
    if args.dry_run {
        params.push("dry_run=true");
    }
    if args.orphans {
        params.push("orphans=true");
    }
    if !params.is_empty() {
        url = format!("{url}?{}", params.join("&"));
    }
    let spinner = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(if args.dry_run {
            "garbage collection (dry run)..."
        } else {
            "garbage collection..."
        });
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let report = api
        .call(
            api.client.post(url).timeout(GC_TIMEOUT),
            "garbage collection",
        )
        .await;
    spinner.finish_and_clear();
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_report(&report).context("unexpected answer from the server")?;
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &Value) -> anyhow::Result<()> {
    let dry = report["dry_run"].as_bool().unwrap_or(false);
    let verb = if dry { "would remove" } else { "removed" };
    let list = |key: &str| report[key].as_array().cloned().unwrap_or_default();
    for tag in list("retention_removed") {
        println!(
            "{verb} tag {}:{} ({}) by retention",
            tag["repository"].as_str().unwrap_or("?"),
            tag["tag"].as_str().unwrap_or("?"),
            tag["digest"].as_str().unwrap_or("?"),
        );
    }
    for item in list("deleted") {
        println!(
            "{verb} {} {}@{}",
            item["kind"].as_str().unwrap_or("?"),
            item["repository"].as_str().unwrap_or("?"),
            item["digest"].as_str().unwrap_or("?"),
        );
    }
    for digest in list("files_deleted") {
        println!("{verb} file {}", digest.as_str().unwrap_or("?"));
    }
    println!(
        "{}: examined {} candidates ({} kept for later), {verb} {} tags, {} manifests and blob links, {} files, {} bytes in {} ms",
        if dry { "dry run" } else { "gc" },
        report["examined"].as_u64().unwrap_or(0),
        report["kept"].as_u64().unwrap_or(0),
        list("retention_removed").len(),
        list("deleted").len(),
        list("files_deleted").len(),
        report["bytes_freed"].as_u64().unwrap_or(0),
        report["duration_ms"].as_u64().unwrap_or(0),
    );
    Ok(())
}
