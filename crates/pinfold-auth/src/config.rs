//! The configuration this crate reads: `[auth]`, `[[user]]` and `[[permission]]` of
//! `pinfold.toml`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::permissions::Action;

/// The `[auth]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// An htpasswd file of `name:$2y$...` bcrypt lines (as `htpasswd -B` writes), read at
    /// start beside the `[[user]]` entries. Default none.
    pub htpasswd: Option<PathBuf>,
    /// Lifetime of the registry tokens `/v2/token` issues, in seconds. Default 300.
    pub token_lifetime_seconds: u64,
    /// Seconds a verified credential (Basic, API token, JWT) is remembered, so bcrypt and the
    /// token lookup stay off the hot path. Default 30; revocation takes effect within it.
    pub cache_seconds: u64,
    /// The PKCS#8 ES256 key signing registry tokens. Default `<data_dir>/auth/jwt-es256.pk8`,
    /// generated on first start.
    pub jwt_key: Option<PathBuf>,
    /// The token endpoint URL put in `/v2/` challenges (`realm`), e.g.
    /// `https://registry.example.com/v2/token`. Default `http://<Host header>/v2/token`;
    /// set it when Pinfold is behind TLS or a proxy.
    pub realm: Option<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            htpasswd: None,
            token_lifetime_seconds: 300,
            cache_seconds: 30,
            jwt_key: None,
            realm: None,
        }
    }
}

/// One `[[user]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Login name.
    pub name: String,
    /// bcrypt hash of the password (`$2y$`, `$2b$` or `$2a$`), e.g. from `htpasswd -nB name`.
    pub password_bcrypt: String,
    /// Groups named by `[[permission]]` rules. Default none.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// One `[[permission]]` rule: grants `actions` on the repositories matching `repositories`
/// to `users` and members of `groups`, and pull to everyone when `anonymous_pull` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionRule {
    /// Glob over repository names: `*` matches any run of characters, `/` included
    /// (`team/*`, `*`). A rule on `"*"` also grants the global management actions.
    pub repositories: String,
    /// Users granted `actions`. Default none.
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups granted `actions`. Default none.
    #[serde(default)]
    pub groups: Vec<String>,
    /// What is granted: `pull`, `push`, `delete`, `promote`, `admin` (admin implies all).
    #[serde(default)]
    pub actions: Vec<Action>,
    /// Anyone, without credentials, may pull from the matching repositories. Default false.
    #[serde(default)]
    pub anonymous_pull: bool,
}
