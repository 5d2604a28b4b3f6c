//! Authentication and authorization of every request (issue 6).
//!
//! [`Auth`] holds the users, the permission rules, the registry-token key and a short-lived
//! cache of verified credentials; [`middleware::require`] runs before every handler: it works
//! out what the request needs (`need.rs`), checks the caller's credentials, answers 401/403 in
//! the surface's own error format, and writes the audit row of every write after the handler
//! answered. `token.rs` is `GET /v2/token`, the Docker registry token endpoint. The rules
//! themselves live in `pinfold-auth`; token records and the audit log in `pinfold-meta`.
//!
//! With no user configured, authentication is off: every request is allowed as `anonymous`
//! (and [`crate::Server::run`] refuses to listen on anything but loopback unless told
//! `insecure_open`).

mod audit_log;
pub mod middleware;
pub(crate) mod need;
pub mod token;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use base64::Engine as _;
use parking_lot::Mutex;
use pinfold_auth::{
    constant_time_eq, sha256_hex, AuthConfig, Authorizer, JwtSigner, PermissionRule, Principal,
    UserConfig, UserDb,
};
use pinfold_meta::{Meta, NewAuditEvent};
use time::OffsetDateTime;

/// Where the registry-token key lives unless `[auth] jwt_key` names a file.
pub fn default_jwt_key_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("auth").join("jwt-es256.pk8")
}

/// The service name registry tokens are issued for and checked against (`aud`).
pub const SERVICE: &str = "pinfold";

/// Largest credential header considered; anything longer is refused unread (a JWT is ~600
/// bytes, a Basic header well under 1 KiB).
const MAX_CREDENTIAL_LEN: usize = 8192;

/// Verified credentials remembered at most.
const CACHE_ENTRIES: usize = 10_000;

/// Everything the server needs to know about access control, as configured.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// `[auth]`.
    pub config: AuthConfig,
    /// `[[user]]`.
    pub users: Vec<UserConfig>,
    /// `[[permission]]`.
    pub permissions: Vec<PermissionRule>,
    /// Serve without users on a non-loopback address (`--insecure-open`).
    pub insecure_open: bool,
}

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// No credentials.
    Anonymous,
    /// `user:password` over Basic.
    Password,
    /// An API token (Basic password, Bearer, `X-JFrog-Art-Api`).
    ApiToken,
    /// A registry JWT from `/v2/token`.
    Jwt,
    /// One of `[server] apt_deploy_keys` (APT uploads only).
    DeployKey,
}

/// The authenticated caller of a request, in its extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who, with what limit.
    pub principal: Principal,
    /// How they proved it.
    pub via: Via,
    /// When the credential itself expires (unix seconds), so the cache never outlives it.
    pub expires: Option<i64>,
}

/// What the caller of a request may do, in every request's extensions (set by
/// [`middleware::require`]). The middleware checks what the request's path names; handlers
/// whose request names one resource and reads or writes another (a mount's source, a mirror
/// alias, a checksum deploy's stored file) ask this about the second one. Fails closed: a
/// deploy key may read nothing, and a request without it (never routed through the
/// middleware) may do nothing.
#[derive(Debug, Clone)]
pub struct Access {
    auth: Auth,
    caller: Caller,
    client: String,
}

impl Access {
    /// Whether the caller may do `action` on repository `repo`: the rules grant it **and**
    /// the credential's own limit (API token scope, registry token access) allows it.
    /// Everyone may do everything with authentication off.
    pub fn allows(&self, repo: &str, action: pinfold_auth::Action) -> bool {
        if !self.auth.enabled() {
            return true;
        }
        self.caller.via != Via::DeployKey
            && self
                .auth
                .authorizer()
                .allowed(&self.caller.principal, repo, action)
    }

    /// Whether the caller may do `action` on `resolved`, the repository a request for
    /// `asked` means (the mirror's `registry-mirrors` and `?ns=` aliases). The middleware
    /// checked `asked` against the rules and the credential's limit; here the rules must
    /// grant the repository actually read too. The credential's limit is not asked about
    /// `resolved`: a registry token names the repository the client asked for (it cannot
    /// know the alias), and the limit stays what it was.
    pub fn allows_alias(&self, asked: &str, resolved: &str, action: pinfold_auth::Action) -> bool {
        if !self.auth.enabled() || asked == resolved {
            return self.allows(asked, action);
        }
        let rules_only = Principal {
            limit: None,
            ..self.caller.principal.clone()
        };
        self.allows(asked, action)
            && self
                .auth
                .authorizer()
                .allowed(&rules_only, resolved, action)
    }

    /// The authenticated caller.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// Whom per-caller limits count against: the user, or the client's address for
    /// anonymous callers (and everyone with authentication off).
    pub fn quota_owner(&self) -> String {
        match &self.caller.principal.user {
            Some(user) if self.auth.enabled() => format!("user:{user}"),
            _ => format!("addr:{}", self.client),
        }
    }

    fn new(auth: Auth, caller: Caller, client: String) -> Access {
        Access {
            auth,
            caller,
            client,
        }
    }
}

/// The client's address (IP), in every request's extensions, for the audit log.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

/// Why credentials were refused. Never carries the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// The header is not a well-formed credential (or too long).
    Malformed,
    /// Well-formed, but wrong: unknown user, wrong password, unknown/revoked/expired token,
    /// forged or expired JWT, or one for another service. `claimed` is the user name given,
    /// for the audit log.
    Rejected {
        /// The user name the caller claimed, if any.
        claimed: Option<String>,
    },
}

/// Access control state, shared by every request. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    enabled: bool,
    users: UserDb,
    authorizer: Authorizer,
    jwt: JwtSigner,
    meta: Meta,
    /// Group-commits audit rows; `None` when built outside a Tokio runtime.
    audit_writer: Option<audit_log::AuditWriter>,
    config: AuthConfig,
    deploy_keys: Vec<String>,
    insecure_open: bool,
    cache: Mutex<lru::LruCache<String, (Caller, Instant)>>,
}

/// Why access control could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthSetupError {
    /// Users could not be loaded.
    #[error(transparent)]
    Users(#[from] pinfold_auth::UsersError),
    /// The JWT key could not be loaded or generated.
    #[error(transparent)]
    Jwt(#[from] pinfold_auth::JwtError),
}

impl Auth {
    /// Loads users and the JWT key (`<data_dir>/auth/jwt-es256.pk8` unless configured).
    /// `deploy_keys` are the APT deploy keys still accepted for APT uploads.
    ///
    /// # Errors
    /// [`AuthSetupError`].
    pub fn new(
        settings: &AuthSettings,
        data_dir: &std::path::Path,
        meta: Meta,
        deploy_keys: Vec<String>,
    ) -> Result<Auth, AuthSetupError> {
        let users = UserDb::load(&settings.users, settings.config.htpasswd.as_deref())?;
        let key_path = settings
            .config
            .jwt_key
            .clone()
            .unwrap_or_else(|| default_jwt_key_path(data_dir));
        let jwt = JwtSigner::load_or_generate(&key_path)?;
        let authorizer = Authorizer::new(settings.permissions.clone(), &settings.users);
        Ok(Auth {
            inner: Arc::new(Inner {
                enabled: !users.is_empty(),
                users,
                authorizer,
                jwt,
                audit_writer: audit_log::AuditWriter::start(meta.clone()),
                meta,
                config: settings.config.clone(),
                deploy_keys,
                insecure_open: settings.insecure_open,
                cache: Mutex::new(lru::LruCache::new(
                    NonZeroUsize::new(CACHE_ENTRIES).unwrap_or(NonZeroUsize::MIN),
                )),
            }),
        })
    }

    /// Whether any user is configured (otherwise every request is allowed).
    pub fn enabled(&self) -> bool {
        self.inner.enabled
    }

    /// Whether `--insecure-open` was given.
    pub fn insecure_open(&self) -> bool {
        self.inner.insecure_open
    }

    /// The permission rules.
    pub fn authorizer(&self) -> &Authorizer {
        &self.inner.authorizer
    }

    /// The JWT signer.
    pub fn jwt(&self) -> &JwtSigner {
        &self.inner.jwt
    }

    /// The configuration.
    pub fn config(&self) -> &AuthConfig {
        &self.inner.config
    }

    /// The metadata store (tokens, audit).
    pub fn meta(&self) -> &Meta {
        &self.inner.meta
    }

    /// Whether `name` is a configured user.
    pub fn user_exists(&self, name: &str) -> bool {
        self.inner.users.contains(name)
    }

    /// Queues an audit row for the group-committing writer (see `audit_log.rs`); a failure is
    /// logged (without secrets) and does not fail the request, whose effect has already
    /// happened.
    pub async fn audit(
        &self,
        actor: &str,
        client: &str,
        action: &str,
        target: &str,
        outcome: &str,
    ) {
        let event = NewAuditEvent {
            actor: actor.to_owned(),
            client: client.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            outcome: outcome.to_owned(),
        };
        let event = match &self.inner.audit_writer {
            Some(writer) => match writer.append(event).await {
                Ok(()) => return,
                Err(event) => event,
            },
            None => event,
        };
        if let Err(e) = self.inner.meta.append_audit(&event).await {
            tracing::error!(action, target, "cannot write audit event: {e}");
        }
    }

    /// Waits until every audit row queued so far is committed, so that a reader of the log
    /// sees the writes that happened before it asked.
    pub async fn flush_audit(&self) {
        if let Some(writer) = &self.inner.audit_writer {
            writer.flush().await;
        }
    }

    fn user_principal(&self, user: &str, limit: Option<pinfold_auth::Scope>) -> Principal {
        Principal {
            user: Some(user.to_owned()),
            groups: self.inner.users.groups(user),
            limit,
        }
    }

    /// Who sent `headers`: anonymous without credentials, else the checked credential.
    /// Successes are cached (keyed by a SHA-256 of the headers, never the secret itself) for
    /// `cache_seconds`, so bcrypt and the token lookup run once per credential and period.
    ///
    /// # Errors
    /// [`AuthFailure`] for a malformed or wrong credential.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, AuthFailure> {
        let authorization = headers.get(header::AUTHORIZATION);
        let art_api = headers.get("x-jfrog-art-api");
        if authorization.is_none() && art_api.is_none() {
            return Ok(Caller {
                principal: Principal::anonymous(),
                via: Via::Anonymous,
                expires: None,
            });
        }
        let text = |v: Option<&axum::http::HeaderValue>| -> Result<Option<String>, AuthFailure> {
            match v {
                None => Ok(None),
                Some(v) if v.len() > MAX_CREDENTIAL_LEN => Err(AuthFailure::Malformed),
                Some(v) => v
                    .to_str()
                    .map(|s| Some(s.trim().to_owned()))
                    .map_err(|_| AuthFailure::Malformed),
            }
        };
        let authorization = text(authorization)?;
        let art_api = text(art_api)?;
        let key = sha256_hex(
            format!(
                "{}\0{}",
                authorization.as_deref().unwrap_or(""),
                art_api.as_deref().unwrap_or("")
            )
            .as_bytes(),
        );
        let ttl = Duration::from_secs(self.inner.config.cache_seconds);
        if let Some((caller, at)) = self.inner.cache.lock().get(&key) {
            let now = OffsetDateTime::now_utc().unix_timestamp();
            if at.elapsed() < ttl && caller.expires.is_none_or(|exp| now < exp) {
                return Ok(caller.clone());
            }
        }
        let caller = self
            .check(authorization.as_deref(), art_api.as_deref())
            .await?;
        self.inner
            .cache
            .lock()
            .put(key, (caller.clone(), Instant::now()));
        Ok(caller)
    }

    async fn check(
        &self,
        authorization: Option<&str>,
        art_api: Option<&str>,
    ) -> Result<Caller, AuthFailure> {
        if let Some(key) = art_api {
            return self.check_secret(None, key).await;
        }
        let Some(authorization) = authorization else {
            return Err(AuthFailure::Malformed);
        };
        let (scheme, value) = authorization
            .split_once(' ')
            .ok_or(AuthFailure::Malformed)?;
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value)
                .map_err(|_| AuthFailure::Malformed)?;
            let decoded = String::from_utf8(decoded).map_err(|_| AuthFailure::Malformed)?;
            let (user, password) = decoded.split_once(':').ok_or(AuthFailure::Malformed)?;
            if password.starts_with(pinfold_auth::secret::TOKEN_PREFIX) {
                return self.check_secret(Some(user), password).await;
            }
            if self.inner.users.verify_password(user, password) {
                return Ok(Caller {
                    principal: self.user_principal(user, None),
                    via: Via::Password,
                    expires: None,
                });
            }
            // Artifactory clients send the deploy key as the Basic password, any user name.
            if self.deploy_key(password) {
                return Ok(deploy_caller());
            }
            return Err(AuthFailure::Rejected {
                claimed: Some(user.to_owned()),
            });
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            if value.starts_with(pinfold_auth::secret::TOKEN_PREFIX) {
                return self.check_secret(None, value).await;
            }
            if self.deploy_key(value) {
                return Ok(deploy_caller());
            }
            let now = OffsetDateTime::now_utc().unix_timestamp();
            let claims = self
                .inner
                .jwt
                .verify(value, SERVICE, now)
                .map_err(|_| AuthFailure::Rejected { claimed: None })?;
            let limit = Some(claims.scope());
            let principal = if claims.sub.is_empty() {
                Principal {
                    limit,
                    ..Principal::anonymous()
                }
            } else if self.inner.users.contains(&claims.sub) {
                self.user_principal(&claims.sub, limit)
            } else {
                return Err(AuthFailure::Rejected {
                    claimed: Some(claims.sub),
                });
            };
            return Ok(Caller {
                principal,
                via: Via::Jwt,
                expires: Some(claims.exp),
            });
        }
        Err(AuthFailure::Malformed)
    }

    /// An API token (or an APT deploy key), optionally required to belong to `user`.
    async fn check_secret(&self, user: Option<&str>, secret: &str) -> Result<Caller, AuthFailure> {
        let rejected = || AuthFailure::Rejected {
            claimed: user.map(str::to_owned),
        };
        if !secret.starts_with(pinfold_auth::secret::TOKEN_PREFIX) {
            return if self.deploy_key(secret) {
                Ok(deploy_caller())
            } else {
                Err(rejected())
            };
        }
        let hash = sha256_hex(secret.as_bytes());
        let token = match self.inner.meta.token_by_secret_hash(&hash).await {
            Ok(Some(token)) => token,
            Ok(None) => return Err(rejected()),
            Err(e) => {
                tracing::error!("token lookup failed: {e}");
                return Err(rejected());
            }
        };
        let now = OffsetDateTime::now_utc();
        let usable = constant_time_eq(token.secret_sha256.as_bytes(), hash.as_bytes())
            && token.revoked_at.is_none()
            && token.expires_at.is_none_or(|at| now < at)
            && user.is_none_or(|u| u == token.user)
            && self.inner.users.contains(&token.user);
        if !usable {
            return Err(rejected());
        }
        let limit = token.scope.parse().map_err(|_| rejected())?;
        Ok(Caller {
            principal: self.user_principal(&token.user, Some(limit)),
            via: Via::ApiToken,
            expires: token.expires_at.map(OffsetDateTime::unix_timestamp),
        })
    }

    fn deploy_key(&self, given: &str) -> bool {
        // Compare with every key in full so the time taken tells nothing about a guess.
        self.inner.deploy_keys.iter().fold(false, |found, k| {
            found | constant_time_eq(k.as_bytes(), given.as_bytes())
        })
    }

    /// Forgets cached credentials (after a token is revoked, so it stops working at once on
    /// this replica).
    pub fn clear_cache(&self) {
        self.inner.cache.lock().clear();
    }
}

fn deploy_caller() -> Caller {
    Caller {
        principal: Principal {
            user: Some("deploy-key".to_owned()),
            ..Principal::anonymous()
        },
        via: Via::DeployKey,
        expires: None,
    }
}

tokio::task_local! {
    /// The authenticated actor of the request being handled (set by the middleware when
    /// authentication is on), for the tag journal.
    static ACTOR: String;
}

/// The authenticated actor of the current request, when authentication is on.
pub fn current_actor() -> Option<String> {
    ACTOR.try_with(Clone::clone).ok()
}
