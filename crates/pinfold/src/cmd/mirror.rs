//! The mirror's client commands: `pinfold upstream add|list|remove` (edit `[[upstream]]` in
//! `pinfold.toml`, keeping its comments and layout), and `pinfold drift`, `pinfold promote`
//! and `pinfold history` (the management API of a running server, `/api/v1/`).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use pinfold_mirror::{TagPolicy, UpstreamConfig, Upstreams};
use pinfold_oci::{RepoName, Tag};
use serde::Deserialize;
use serde_json::Value;

use crate::config::{Config, Overrides};

/// Longest any one API call may take.
const API_TIMEOUT: Duration = Duration::from_secs(30);

/// The file edited when no `--config` is given.
const DEFAULT_CONFIG: &str = "pinfold.toml";

/// `pinfold upstream ...`
#[derive(Debug, Args)]
pub struct UpstreamArgs {
    #[command(subcommand)]
    command: UpstreamCommand,
}

#[derive(Debug, Subcommand)]
enum UpstreamCommand {
    /// Add an `[[upstream]]` to the configuration file (created if missing).
    Add(AddArgs),
    /// List the configured upstreams (never their passwords).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove an upstream from the configuration file.
    Remove {
        /// The upstream's name.
        name: String,
    },
}

/// Tag policy on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum PolicyArg {
    Pin,
    Follow,
    Cooldown,
}

impl From<PolicyArg> for TagPolicy {
    fn from(p: PolicyArg) -> TagPolicy {
        match p {
            PolicyArg::Pin => TagPolicy::Pin,
            PolicyArg::Follow => TagPolicy::Follow,
            PolicyArg::Cooldown => TagPolicy::Cooldown,
        }
    }
}

#[derive(Debug, Args)]
struct AddArgs {
    /// The path prefix clients use (`docker.io` in `127.0.0.1:5000/docker.io/library/ruby`).
    name: String,
    /// The registry's base URL, `https://registry-1.docker.io`.
    url: String,
    /// What a mirrored tag serves when the upstream moves it (default pin).
    #[arg(long, value_enum)]
    policy: Option<PolicyArg>,
    /// Seconds between two upstream checks of one tag (default 3600).
    #[arg(long, value_name = "N")]
    refresh_seconds: Option<u64>,
    /// For `cooldown`: seconds a new upstream digest must stay before it is followed.
    #[arg(long, value_name = "N")]
    cooldown_seconds: Option<u64>,
    /// User name at the upstream.
    #[arg(long, value_name = "U")]
    username: Option<String>,
    /// Read the password (or token) from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
    /// Serve Docker's `registry-mirrors` form (no prefix) for this upstream.
    #[arg(long)]
    default: bool,
    /// A host the upstream may redirect blob downloads to (repeatable).
    #[arg(long = "redirect-host", value_name = "H")]
    redirect_hosts: Vec<String>,
    /// Requests in flight to the upstream at most (default 32).
    #[arg(long, value_name = "N")]
    max_connections: Option<u64>,
}

/// Where the management API is.
#[derive(Debug, Args)]
pub struct ServerArg {
    /// The Pinfold server.
    #[arg(
        long,
        env = "PINFOLD_URL",
        default_value = "http://127.0.0.1:5000",
        value_name = "URL"
    )]
    pub(crate) server: String,
    /// API token (or `user:password`) sent to the server; needed when it has users.
    #[arg(
        long,
        env = "PINFOLD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,
}

/// The `Authorization` header value for `--token`: a `pft_` API token as Bearer,
/// `user:password` as Basic.
pub(crate) fn authorization(token: &str) -> String {
    use base64::Engine as _;
    if token.contains(':') {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(token)
        )
    } else {
        format!("Bearer {token}")
    }
}

/// `host:port` of `http://host:port/...`.
fn authority_of(base: &str) -> &str {
    let rest = base.split_once("://").map_or(base, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// `pinfold drift`
#[derive(Debug, Args)]
pub struct DriftArgs {
    #[command(flatten)]
    server: ServerArg,
    /// Include resolved events.
    #[arg(long)]
    all: bool,
    /// Print the events as JSON.
    #[arg(long)]
    json: bool,
}

/// `pinfold promote`
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// `repository:tag`, optionally prefixed with the server's `host:port/`.
    reference: String,
    /// The digest to point the tag at (default: what the upstream says now).
    #[arg(long, value_name = "DIGEST")]
    to: Option<String>,
    /// Who promotes, recorded in the tag journal (default $USER, else `anonymous`).
    #[arg(long, value_name = "NAME")]
    actor: Option<String>,
    #[command(flatten)]
    server: ServerArg,
    /// Print the server's answer as JSON.
    #[arg(long)]
    json: bool,
}

/// `pinfold history`
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// `repository:tag`, optionally prefixed with the server's `host:port/`.
    reference: String,
    /// Answer what the tag pointed to at this moment (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    #[command(flatten)]
    server: ServerArg,
    /// Print the server's answer as JSON.
    #[arg(long)]
    json: bool,
}

// ---------------------------------------------------------------------------------------------
// pinfold upstream

/// Runs `pinfold upstream ...` on `config` (or `./pinfold.toml`).
pub fn upstream(args: UpstreamArgs, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let path = config
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    match args.command {
        UpstreamCommand::Add(add) => {
            let password = if add.password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("reading the password from standard input")?;
                Some(line.trim_end_matches(['\n', '\r']).to_owned())
            } else {
                None
            };
            let name = add.name.clone();
            edit(&path, |doc| add_upstream(doc, &add, password.as_deref()))?;
            println!(
                "added upstream {name} to {}; restart `pinfold serve` to apply",
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        UpstreamCommand::Remove { name } => {
            edit(&path, |doc| remove_upstream(doc, &name))?;
            println!(
                "removed upstream {name} from {}; restart `pinfold serve` to apply",
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        UpstreamCommand::List { json } => {
            let upstreams = if path.exists() {
                load(&path)?.upstream
            } else if config.is_some() {
                bail!("{} does not exist", path.display());
            } else {
                Vec::new()
            };
            list_upstreams(&upstreams, json)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Loads the file alone (no `PINFOLD_*` variables: they are not what is edited).
fn load(path: &Path) -> anyhow::Result<Config> {
    Config::load(Some(path), std::iter::empty(), Overrides::default())
}

/// Reads `path` (empty when missing), applies `change`, validates the result the way
/// `pinfold serve` would and replaces the file atomically. Nothing is written on error.
fn edit(
    path: &Path,
    change: impl FnOnce(&mut toml_edit::DocumentMut) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (text, permissions) = match std::fs::read_to_string(path) {
        Ok(text) => (text, Some(std::fs::metadata(path)?.permissions())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("parsing {}", path.display()))?;
    change(&mut doc)?;
    let new_text = doc.to_string();

    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file name", path.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| -> anyhow::Result<()> {
        {
            let mut file = std::fs::File::create(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            // A new file may hold a password: readable by its owner only.
            let permissions = permissions.clone().unwrap_or_else(|| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::Permissions::from_mode(0o600)
            });
            file.set_permissions(permissions)?;
            file.write_all(new_text.as_bytes())?;
            file.sync_all()?;
        }
        let config = load(&tmp).map_err(|e| anyhow!("invalid configuration: {e:#}"))?;
        Upstreams::new(
            &config.upstream,
            Duration::from_secs(config.mirror.upstream_timeout_seconds),
        )
        .map_err(|e| anyhow!("invalid configuration: {e}"))?;
        std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The `[[upstream]]` array of `doc`, created when absent.
fn upstream_array(
    doc: &mut toml_edit::DocumentMut,
) -> anyhow::Result<&mut toml_edit::ArrayOfTables> {
    let item = doc
        .entry("upstream")
        .or_insert_with(|| toml_edit::Item::ArrayOfTables(toml_edit::ArrayOfTables::new()));
    item.as_array_of_tables_mut()
        .ok_or_else(|| anyhow!("`upstream` in the configuration is not a [[upstream]] array"))
}

fn add_upstream(
    doc: &mut toml_edit::DocumentMut,
    add: &AddArgs,
    password: Option<&str>,
) -> anyhow::Result<()> {
    let array = upstream_array(doc)?;
    if array
        .iter()
        .any(|t| t.get("name").and_then(|n| n.as_str()) == Some(add.name.as_str()))
    {
        bail!("upstream {:?} already exists", add.name);
    }
    let mut table = toml_edit::Table::new();
    table.insert("name", toml_edit::value(add.name.as_str()));
    table.insert("url", toml_edit::value(add.url.as_str()));
    if let Some(username) = &add.username {
        table.insert("username", toml_edit::value(username.as_str()));
    }
    if let Some(password) = password {
        table.insert("password", toml_edit::value(password));
    }
    if let Some(policy) = add.policy {
        table.insert("policy", toml_edit::value(TagPolicy::from(policy).as_str()));
    }
    for (key, value) in [
        ("refresh_seconds", add.refresh_seconds),
        ("cooldown_seconds", add.cooldown_seconds),
        ("max_connections", add.max_connections),
    ] {
        if let Some(value) = value {
            let value = i64::try_from(value).map_err(|_| anyhow!("{key} is too large"))?;
            table.insert(key, toml_edit::value(value));
        }
    }
    if add.default {
        table.insert("default", toml_edit::value(true));
    }
    if !add.redirect_hosts.is_empty() {
        let hosts: toml_edit::Array = add.redirect_hosts.iter().map(String::as_str).collect();
        table.insert("redirect_hosts", toml_edit::value(hosts));
    }
    array.push(table);
    Ok(())
}

fn remove_upstream(doc: &mut toml_edit::DocumentMut, name: &str) -> anyhow::Result<()> {
    let array = doc
        .get_mut("upstream")
        .and_then(toml_edit::Item::as_array_of_tables_mut)
        .ok_or_else(|| anyhow!("no upstream named {name:?}"))?;
    let index = array
        .iter()
        .position(|t| t.get("name").and_then(|n| n.as_str()) == Some(name))
        .ok_or_else(|| anyhow!("no upstream named {name:?}"))?;
    array.remove(index);
    if array.is_empty() {
        doc.remove("upstream");
    }
    Ok(())
}

fn list_upstreams(upstreams: &[UpstreamConfig], json: bool) -> anyhow::Result<()> {
    if json {
        let views: Vec<Value> = upstreams
            .iter()
            .map(|u| {
                serde_json::json!({
                    "name": u.name,
                    "url": u.url,
                    "username": u.username,
                    "policy": u.policy,
                    "refresh_seconds": u.refresh_seconds,
                    "cooldown_seconds": u.cooldown_seconds,
                    "default": u.default,
                    "redirect_hosts": u.redirect_hosts,
                    "max_connections": u.max_connections,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = upstreams
        .iter()
        .map(|u| {
            vec![
                u.name.clone(),
                u.url.clone(),
                u.policy.as_str().to_owned(),
                format!("{}s", u.refresh_seconds),
                if u.default { "yes" } else { "" }.to_owned(),
            ]
        })
        .collect();
    print_table(&["NAME", "URL", "POLICY", "REFRESH", "DEFAULT"], &rows);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The management API

/// A client of one server's `/api/v1/`.
pub(crate) struct Api {
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
}

impl Api {
    /// A client of `server`, authenticated with `--token`/`PINFOLD_TOKEN`, else with the
    /// credentials `docker login <host:port>` stored (`~/.docker/config.json` and its
    /// credential helpers), else anonymous.
    pub(crate) async fn new(server: &ServerArg) -> anyhow::Result<Api> {
        let base = server.server.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--server {base:?}: expected http://host:port or https://host:port");
        }
        let authority = authority_of(&base).to_owned();
        let credential = match &server.token {
            Some(token) => Some(authorization(token)),
            None => match pinfold_client::DockerConfig::from_env() {
                Some(docker) => docker
                    .credentials_for(&authority)
                    .await
                    .with_context(|| format!("reading the Docker credentials for {authority}"))?
                    .map(|c| c.basic_authorization()),
                None => None,
            },
        };
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(credential) = credential {
            let mut value = reqwest::header::HeaderValue::from_str(&credential)
                .context("the credential is not a valid header value")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(API_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Api { base, client })
    }

    /// The server's `host:port`, as image references name it.
    fn authority(&self) -> &str {
        authority_of(&self.base)
    }

    pub(crate) async fn call(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<Value> {
        let response = request
            .send()
            .await
            .with_context(|| format!("{what}: cannot reach {}", self.base))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .with_context(|| format!("{what}: reading the answer"))?;
        let value: Option<Value> = serde_json::from_slice(&body).ok();
        if !status.is_success() {
            let message = value
                .as_ref()
                .and_then(|v| v.pointer("/error/message"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
            bail!("{what}: {message} (HTTP {status})");
        }
        value.ok_or_else(|| anyhow!("{what}: the server's answer is not JSON"))
    }

    pub(crate) async fn get(&self, path: &str, what: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        self.call(self.client.get(url), what).await
    }
}

/// A `repository:tag` named on the command line.
#[derive(Debug, PartialEq)]
struct TagRef {
    repository: RepoName,
    tag: Tag,
}

impl std::fmt::Display for TagRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

/// Parses `[host:port/]repository:tag`; `authority` is the server's own `host:port`, which
/// may prefix the reference even without a port.
fn parse_ref(text: &str, authority: &str) -> anyhow::Result<TagRef> {
    if text.contains('@') {
        bail!("{text:?}: name a tag (repository:tag), not a digest");
    }
    let mut rest = text;
    if let Some((first, after)) = text.split_once('/') {
        if first.contains(':') || first == authority || first == "localhost" {
            rest = after;
        }
    }
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], &rest[slash + i + 1..]),
        None => bail!("{text:?}: expected repository:tag"),
    };
    let repository = repository
        .parse::<RepoName>()
        .map_err(|e| anyhow!("{text:?}: {e}"))?;
    let tag = tag.parse::<Tag>().map_err(|e| anyhow!("{text:?}: {e}"))?;
    Ok(TagRef { repository, tag })
}

/// `sha256:0123456789ab…`
fn short(digest: Option<&str>) -> String {
    match digest {
        None => "(none)".to_owned(),
        Some(d) => match d.split_once(':') {
            Some((alg, hex)) if hex.len() > 12 => format!("{alg}:{}…", &hex[..12]),
            _ => d.to_owned(),
        },
    }
}

/// An RFC 3339 time shown to the second, in UTC as the server sends it.
fn time(text: &str) -> String {
    match text.find('.') {
        Some(dot) if text.ends_with('Z') => format!("{}Z", &text[..dot]),
        _ => text.to_owned(),
    }
}

fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            if i + 1 < widths.len() {
                out.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
            }
        }
        println!("{}", out.trim_end());
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
}

#[derive(Debug, Deserialize)]
struct DriftEvent {
    repository: String,
    tag: String,
    pinned_digest: String,
    upstream_digest: String,
    first_seen: String,
    last_seen: String,
    resolved_at: Option<String>,
    resolution: Option<Value>,
}

/// Drift events asked for per request (the API's largest page).
const DRIFT_PAGE: usize = 1000;

/// Pages `pinfold drift` reads at most: a million events, far beyond any real registry.
const MAX_DRIFT_PAGES: usize = 1000;

/// `pinfold drift`: exit 0 when no drift is open, 1 when some is.
pub async fn drift(args: DriftArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.server).await?;
    // Every page, newest first: the server answers at most DRIFT_PAGE events, each next page
    // starts below the last id of the one before.
    let mut raw: Vec<Value> = Vec::new();
    let mut before: Option<i64> = None;
    for _ in 0..MAX_DRIFT_PAGES {
        let mut path = format!("/api/v1/drift?limit={DRIFT_PAGE}");
        if args.all {
            path.push_str("&all=true");
        }
        if let Some(id) = before {
            path.push_str(&format!("&before={id}"));
        }
        let answer = api.get(&path, "listing drift").await?;
        let page = answer
            .get("events")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| anyhow!("listing drift: no `events` in the answer"))?;
        let full = page.len() == DRIFT_PAGE;
        before = page
            .last()
            .and_then(|e| e.get("id"))
            .and_then(Value::as_i64);
        raw.extend(page);
        if !full || before.is_none() {
            break;
        }
    }
    let events: Vec<DriftEvent> = serde_json::from_value(Value::Array(raw.clone()))
        .context("listing drift: unexpected answer")?;
    let raw = Value::Array(raw);
    let open = events.iter().filter(|e| e.resolved_at.is_none()).count();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
    } else if events.is_empty() {
        println!("no drift");
    } else {
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|e| {
                let state = match (&e.resolved_at, &e.resolution) {
                    (None, _) => "open".to_owned(),
                    (Some(_), Some(Value::String(r))) => r.clone(),
                    (Some(_), Some(r)) => r.to_string(),
                    (Some(_), None) => "resolved".to_owned(),
                };
                vec![
                    format!("{}:{}", e.repository, e.tag),
                    short(Some(&e.pinned_digest)),
                    short(Some(&e.upstream_digest)),
                    time(&e.first_seen),
                    time(&e.last_seen),
                    state,
                ]
            })
            .collect();
        print_table(
            &[
                "TAG REF",
                "PINNED",
                "UPSTREAM",
                "FIRST SEEN",
                "LAST SEEN",
                "STATE",
            ],
            &rows,
        );
    }
    Ok(if open > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `pinfold promote`.
pub async fn promote(args: PromoteArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.server).await?;
    let reference = parse_ref(&args.reference, api.authority())?;
    let actor = args
        .actor
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "anonymous".to_owned());
    let mut body = serde_json::json!({ "actor": actor });
    if let Some(to) = &args.to {
        body["digest"] = Value::String(to.clone());
    }
    let url = format!(
        "{}/api/v1/repositories/{}/tags/{}/promote",
        api.base, reference.repository, reference.tag
    );
    let answer = api
        .call(
            api.client.post(url).json(&body),
            &format!("promoting {reference}"),
        )
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    let digest = answer.get("digest").and_then(Value::as_str);
    let previous = answer.get("previous").and_then(Value::as_str);
    if answer.get("moved").and_then(Value::as_bool) == Some(true) {
        println!(
            "promoted {reference} {} → {}",
            short(previous),
            short(digest)
        );
    } else {
        println!("{reference} already at {}", short(digest));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Deserialize)]
struct JournalEntry {
    previous_digest: Option<String>,
    new_digest: Option<String>,
    at: String,
    actor: String,
    source: String,
}

/// `pinfold history`.
pub async fn history(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.server).await?;
    let reference = parse_ref(&args.reference, api.authority())?;
    let mut request = api.client.get(format!(
        "{}/api/v1/repositories/{}/tags/{}/history",
        api.base, reference.repository, reference.tag
    ));
    if let Some(at) = &args.at {
        request = request.query(&[("at", at)]);
    }
    let answer = api
        .call(request, &format!("history of {reference}"))
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    if args.at.is_some() {
        let at = answer.get("at").and_then(Value::as_str).unwrap_or_default();
        match answer.get("digest").and_then(Value::as_str) {
            Some(digest) => {
                let since: Option<JournalEntry> = answer
                    .get("since")
                    .cloned()
                    .and_then(|s| serde_json::from_value(s).ok());
                let since = since
                    .map(|s| format!(" (since {}, {} by {})", time(&s.at), s.source, s.actor))
                    .unwrap_or_default();
                println!("{reference} at {}: {digest}{since}", time(at));
            }
            None => println!("{reference} at {}: did not exist", time(at)),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let entries: Vec<JournalEntry> =
        serde_json::from_value(answer).context("history: unexpected answer")?;
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                time(&e.at),
                short(e.previous_digest.as_deref()),
                short(e.new_digest.as_deref()),
                e.source.clone(),
                e.actor.clone(),
            ]
        })
        .collect();
    print_table(&["TIME", "FROM", "TO", "SOURCE", "ACTOR"], &rows);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag_ref(text: &str) -> (String, String) {
        let r = parse_ref(text, "127.0.0.1:5000").unwrap();
        (r.repository.to_string(), r.tag.to_string())
    }

    #[test]
    fn references_parse() {
        let ruby = ("docker.io/library/ruby".to_owned(), "2.7".to_owned());
        assert_eq!(tag_ref("docker.io/library/ruby:2.7"), ruby);
        assert_eq!(tag_ref("127.0.0.1:5000/docker.io/library/ruby:2.7"), ruby);
        assert_eq!(tag_ref("localhost:5001/docker.io/library/ruby:2.7"), ruby);
        assert_eq!(tag_ref("up/ruby:2.7"), ("up/ruby".into(), "2.7".into()));
        assert!(parse_ref("up/ruby", "x").is_err());
        assert!(parse_ref("up/ruby@sha256:00", "x").is_err());
        assert!(parse_ref("Up/ruby:1", "x").is_err());
    }

    #[test]
    fn edits_keep_comments_and_refuse_duplicates() {
        let mut doc: toml_edit::DocumentMut =
            "# mine\nlisten = \"127.0.0.1:5000\"\n".parse().unwrap();
        let add = AddArgs {
            name: "up".into(),
            url: "http://127.0.0.1:1".into(),
            policy: Some(PolicyArg::Follow),
            refresh_seconds: Some(5),
            cooldown_seconds: None,
            username: None,
            password_stdin: false,
            default: false,
            redirect_hosts: vec!["*.example.com".into()],
            max_connections: Some(4),
        };
        add_upstream(&mut doc, &add, None).unwrap();
        assert!(add_upstream(&mut doc, &add, None).is_err());
        let text = doc.to_string();
        assert!(text.starts_with("# mine\n"), "{text}");
        assert!(text.contains("[[upstream]]"), "{text}");
        assert!(text.contains("policy = \"follow\""), "{text}");
        assert!(text.contains("max_connections = 4"), "{text}");
        remove_upstream(&mut doc, "up").unwrap();
        assert!(remove_upstream(&mut doc, "up").is_err());
        assert_eq!(doc.to_string(), "# mine\nlisten = \"127.0.0.1:5000\"\n");
    }

    #[test]
    fn digests_shorten() {
        assert_eq!(
            short(Some("sha256:0123456789abcdef0123")),
            "sha256:0123456789ab…"
        );
        assert_eq!(short(None), "(none)");
        assert_eq!(time("2026-01-02T03:04:05.123456Z"), "2026-01-02T03:04:05Z");
    }
}
