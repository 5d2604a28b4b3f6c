//! `pinfold apt ...`: the Debian repository's management commands. They talk to a running
//! server's `/api/v1/apt/` over HTTP (`--server`, default `http://127.0.0.1:5000`), so they
//! work the same against a local or a remote Pinfold and never open a data directory that a
//! server is using. Writes send `--key` as `X-JFrog-Art-Api` when given.
//!
//! Exit codes: 0 success; 1 `diff` found differences; 2 error (the server's message shown).

use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// `pinfold apt` arguments.
#[derive(Debug, Args)]
pub struct AptArgs {
    /// Base URL of the Pinfold server.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:5000",
        value_name = "URL"
    )]
    server: String,
    /// Deploy key or API token for writes (sent as X-JFrog-Art-Api), when the server
    /// requires one.
    #[arg(
        long,
        global = true,
        value_name = "KEY",
        env = "PINFOLD_TOKEN",
        hide_env_values = true
    )]
    key: Option<String>,
    #[command(subcommand)]
    command: AptCommand,
}

#[derive(Debug, Subcommand)]
enum AptCommand {
    /// Local repositories (they receive uploads).
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Mirrors of upstream archives.
    #[command(subcommand)]
    Mirror(MirrorCommand),
    /// Immutable snapshots of a repository distribution.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Point /apt/<PREFIX>/dists/<DISTRIBUTION>/ at a snapshot (or a live repository), or
    /// switch it: the promotion step.
    Publish {
        /// URL prefix (/apt/<PREFIX>/...).
        prefix: String,
        /// Distribution name clients use.
        distribution: String,
        /// Snapshot to publish.
        #[arg(long, conflicts_with = "repo", required_unless_present = "repo")]
        snapshot: Option<String>,
        /// Repository to publish live (with --source-distribution).
        #[arg(long, requires = "source_distribution")]
        repo: Option<String>,
        /// The repository's distribution to publish.
        #[arg(long)]
        source_distribution: Option<String>,
    },
    /// List publications.
    Publications,
    /// Packages added, removed, upgraded and downgraded from snapshot FROM to snapshot TO.
    /// Exit code 1 when they differ.
    Diff {
        /// The snapshot hosts have now.
        from: String,
        /// The candidate snapshot.
        to: String,
        /// Print the JSON answer instead of lines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum RepoCommand {
    /// Create a local repository.
    Create {
        /// Name.
        name: String,
    },
    /// List repositories (local and mirrors).
    List,
}

#[derive(Debug, Subcommand)]
enum MirrorCommand {
    /// Create a mirror of an upstream archive.
    Create {
        /// Name.
        name: String,
        /// Upstream archive root, e.g. https://download.docker.com/linux/debian.
        #[arg(long)]
        url: String,
        /// Upstream suite (distribution), e.g. bookworm.
        #[arg(long)]
        suite: String,
        /// Armored public key file the upstream InRelease must be signed with (without it the
        /// unsigned Release is read; hashes are checked either way).
        #[arg(long, value_name = "FILE")]
        upstream_key: Option<std::path::PathBuf>,
        /// Components to follow (default: all the upstream lists).
        #[arg(long = "component")]
        components: Vec<String>,
        /// Architectures to follow (default: all the upstream lists).
        #[arg(long = "arch")]
        architectures: Vec<String>,
    },
    /// Fetch the upstream's current state into the mirror.
    Sync {
        /// Name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// Freeze a repository distribution as a snapshot.
    Create {
        /// Snapshot name.
        name: String,
        /// Repository.
        #[arg(long)]
        repo: String,
        /// Distribution of that repository.
        #[arg(long)]
        distribution: String,
    },
    /// List snapshots.
    List,
}

struct Api {
    client: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}/api/v1/apt/{path}", self.base.trim_end_matches('/'));
        let mut request = self.client.request(method.clone(), &url);
        if let Some(key) = &self.key {
            request = request.header("X-JFrog-Art-Api", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let resp = request
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        if !status.is_success() {
            // The management API answers {"error":{code,message}}.
            let message = value["error"]["message"].as_str().unwrap_or(&text);
            bail!("{method} {url}: {status}: {message}");
        }
        Ok(value)
    }
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Runs one `pinfold apt` command.
pub async fn run(args: AptArgs) -> anyhow::Result<ExitCode> {
    use reqwest::Method;
    let api = Api {
        client: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(600))
            .build()?,
        base: args.server,
        key: args.key,
    };
    match args.command {
        AptCommand::Repo(RepoCommand::Create { name }) => {
            print_json(
                &api.send(
                    Method::POST,
                    "repos",
                    Some(json!({"name": name, "kind": "local"})),
                )
                .await?,
            )?;
        }
        AptCommand::Repo(RepoCommand::List) => {
            print_json(&api.send(Method::GET, "repos", None).await?)?
        }
        AptCommand::Mirror(MirrorCommand::Create {
            name,
            url,
            suite,
            upstream_key,
            components,
            architectures,
        }) => {
            let key = match upstream_key {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?,
                ),
                None => None,
            };
            let body = json!({"name": name, "kind": "mirror", "upstream_url": url, "upstream_suite": suite,
                              "upstream_key": key, "components": components, "architectures": architectures});
            print_json(&api.send(Method::POST, "repos", Some(body)).await?)?;
        }
        AptCommand::Mirror(MirrorCommand::Sync { name }) => {
            print_json(
                &api.send(Method::POST, &format!("repos/{name}/sync"), None)
                    .await?,
            )?;
        }
        AptCommand::Snapshot(SnapshotCommand::Create {
            name,
            repo,
            distribution,
        }) => {
            let body = json!({"name": name, "repo": repo, "distribution": distribution});
            print_json(&api.send(Method::POST, "snapshots", Some(body)).await?)?;
        }
        AptCommand::Snapshot(SnapshotCommand::List) => {
            print_json(&api.send(Method::GET, "snapshots", None).await?)?
        }
        AptCommand::Publish {
            prefix,
            distribution,
            snapshot,
            repo,
            source_distribution,
        } => {
            let body = match (snapshot, repo, source_distribution) {
                (Some(name), _, _) => json!({"type": "snapshot", "name": name}),
                (None, Some(name), Some(d)) => {
                    json!({"type": "repo", "name": name, "distribution": d})
                }
                _ => bail!("give --snapshot, or --repo with --source-distribution"),
            };
            print_json(
                &api.send(
                    Method::PUT,
                    &format!("publications/{prefix}/{distribution}"),
                    Some(body),
                )
                .await?,
            )?;
        }
        AptCommand::Publications => {
            print_json(&api.send(Method::GET, "publications", None).await?)?
        }
        AptCommand::Diff { from, to, json } => {
            let d = api
                .send(
                    Method::GET,
                    &format!("diff?from={}&to={}", query(&from), query(&to)),
                    None,
                )
                .await?;
            if json {
                print_json(&d)?;
            } else {
                print_diff(&d);
            }
            let differs = ["added", "removed", "upgraded", "downgraded"]
                .iter()
                .any(|k| d[k].as_array().is_some_and(|a| !a.is_empty()));
            return Ok(if differs {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Percent-encodes a query value (snapshot names are `[A-Za-z0-9._-]`; anything else is
/// escaped so the server sees exactly what was typed).
fn query(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One line per change: `+ name arch version`, `- ...`, `↑ name arch from -> to`, `↓ ...`.
fn print_diff(d: &Value) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    for (key, mark) in [("added", "+"), ("removed", "-")] {
        for p in d[key].as_array().into_iter().flatten() {
            println!(
                "{mark} {} {} {}",
                s(&p["name"]),
                s(&p["architecture"]),
                s(&p["version"])
            );
        }
    }
    for (key, mark) in [("upgraded", "↑"), ("downgraded", "↓")] {
        for p in d[key].as_array().into_iter().flatten() {
            println!(
                "{mark} {} {} {} -> {}",
                s(&p["name"]),
                s(&p["architecture"]),
                s(&p["from"]),
                s(&p["to"])
            );
        }
    }
}
