//! `[[upstream]]` entries and the `[mirror]` section of `pinfold.toml`.

use serde::{Deserialize, Serialize};

/// What a mirrored tag serves when the upstream moves it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagPolicy {
    /// The first digest a tag resolves to is served until a person promotes another
    /// (`pinfold promote`). Upstream moves become drift events. The default.
    #[default]
    Pin,
    /// Re-resolve the tag upstream at most once per `refresh_seconds` and follow it.
    Follow,
    /// Follow a new upstream digest only once the upstream has pointed at it for
    /// `cooldown_seconds` (as observed by this mirror); until then it is a drift event.
    Cooldown,
}

impl TagPolicy {
    /// The name used in `pinfold.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            TagPolicy::Pin => "pin",
            TagPolicy::Follow => "follow",
            TagPolicy::Cooldown => "cooldown",
        }
    }
}

/// One upstream registry (`[[upstream]]` in `pinfold.toml`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The path prefix clients use (`docker.io` in `127.0.0.1:5000/docker.io/library/ruby`)
    /// and the `ns=` value containerd sends. One path component of a repository name:
    /// lowercase letters, digits and `.`, `_`, `-` separators.
    pub name: String,
    /// The registry's base URL: `https://registry-1.docker.io`, `http://127.0.0.1:5001`.
    pub url: String,
    /// User name for Basic or the token flow; anonymous when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password or access token for `username`. Never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Tag policy. Default `pin`.
    #[serde(default)]
    pub policy: TagPolicy,
    /// Seconds between two upstream checks of one tag: the drift poller's period per tag and
    /// the `follow` policy's refresh interval. Default 3600.
    #[serde(default = "default_refresh_seconds")]
    pub refresh_seconds: u64,
    /// For `cooldown`: seconds an upstream digest must stay before it is followed. Default
    /// 604800 (a week).
    #[serde(default = "default_cooldown_seconds")]
    pub cooldown_seconds: u64,
    /// Serve Docker's `registry-mirrors` form for this upstream: `/v2/library/ruby/...` with
    /// no prefix means `<name>/library/ruby` when no local repository has that name. At most
    /// one upstream may be the default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    /// Hosts the upstream may redirect blob downloads to (its blob storage), besides its own
    /// host. `*.example.com` admits subdomains. Redirects elsewhere are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_hosts: Vec<String>,
    /// Requests in flight to this upstream at most (manifest requests, tag checks, and blob
    /// downloads for their whole length). More wait for a free slot, up to
    /// `[mirror] upstream_timeout_seconds`, then get 429 TOOMANYREQUESTS. Default 32.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_max_connections() -> usize {
    32
}

fn default_refresh_seconds() -> u64 {
    3600
}

fn default_cooldown_seconds() -> u64 {
    7 * 24 * 3600
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("policy", &self.policy)
            .field("refresh_seconds", &self.refresh_seconds)
            .field("cooldown_seconds", &self.cooldown_seconds)
            .field("default", &self.default)
            .field("redirect_hosts", &self.redirect_hosts)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl UpstreamConfig {
    /// An upstream with the defaults for everything but its name and URL.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> UpstreamConfig {
        UpstreamConfig {
            name: name.into(),
            url: url.into(),
            username: None,
            password: None,
            policy: TagPolicy::default(),
            refresh_seconds: default_refresh_seconds(),
            cooldown_seconds: default_cooldown_seconds(),
            default: false,
            redirect_hosts: Vec::new(),
            max_connections: default_max_connections(),
        }
    }
}

/// The `[mirror]` section: how the drift poller runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MirrorSettings {
    /// Seconds between two passes of the drift poller (each pass checks the tags whose
    /// `refresh_seconds` have elapsed). Default 60.
    pub drift_interval_seconds: u64,
    /// Upstream checks in flight at once during a pass. Default 4.
    pub drift_concurrency: usize,
    /// Most tags checked in one pass. Default 500.
    pub drift_batch: u32,
    /// Seconds a client waiting for an upstream response (manifest, blob headers) waits
    /// before the mirror gives up. Default 30.
    pub upstream_timeout_seconds: u64,
}

impl Default for MirrorSettings {
    fn default() -> Self {
        MirrorSettings {
            drift_interval_seconds: 60,
            drift_concurrency: 4,
            drift_batch: 500,
            upstream_timeout_seconds: 30,
        }
    }
}

/// Everything the mirror is configured with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorConfig {
    /// The upstreams, any number; empty disables the mirror.
    pub upstreams: Vec<UpstreamConfig>,
    /// Poller settings.
    pub settings: MirrorSettings,
}
