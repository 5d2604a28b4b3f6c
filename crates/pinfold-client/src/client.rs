//! [`RegistryClient`]: requests, authentication retries and the checks on what comes back.
//!
//! Every request goes through [`RegistryClient::send`]: it attaches what it already knows
//! (a cached bearer token for the scope, or Basic credentials once the registry asked for
//! Basic), and on a 401 reads the challenge, gets what it asks for and retries exactly once.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pinfold_oci::{media_type, Digest, Digester, Reference, RepoName, Tag, MAX_MANIFEST_BYTES};
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LINK, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use crate::blob::BlobStream;
use crate::challenge::{parse_www_authenticate, Challenge};
use crate::credentials::{Credentials, DockerConfig};
use crate::error::{parse_envelope, ClientError};
use crate::token::{Token, TokenCache, TokenResponse};

/// The header registries use to name the digest of what they serve.
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// Error bodies are read only this far: enough for any OCI error envelope.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A token answer larger than this is not a token.
const MAX_TOKEN_BODY: usize = 1024 * 1024;

/// One page of `tags/list`; a page of 10k 128-character tags fits.
const MAX_TAGS_PAGE_BODY: usize = 8 * 1024 * 1024;

/// Redirects followed on one request (blob GETs are redirected to storage once, normally).
const MAX_REDIRECTS: usize = 5;

/// How a [`RegistryClient`] connects. `Default` is what the mirror and CLI use.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Use plain `http://` even for a non-loopback host. Default `false` (loopback hosts,
    /// `localhost` and `127.0.0.0/8`, always use plain HTTP, like Docker's default insecure
    /// registry range).
    pub insecure: bool,
    /// Time allowed to establish a connection. Default 10 s.
    pub connect_timeout: Duration,
    /// Longest silence while reading a response body or waiting for headers. Default 30 s.
    pub read_timeout: Duration,
    /// Time allowed for a whole non-streaming request (manifest, token, tag page). Default 60 s.
    pub request_timeout: Duration,
    /// Page size asked for in `tags/list` (`n`); `None` leaves it to the registry. Default `None`.
    pub tag_page_size: Option<usize>,
    /// Most `tags/list` pages followed before giving up. Default 1000.
    pub max_tag_pages: usize,
    /// Hosts a redirect may lead to besides the registry's own (blob storage such as
    /// `production.cloudflare.docker.com`; a leading `*.` admits subdomains). `None` (the
    /// default, for the client tools) follows redirects anywhere; the mirror sets a list so an
    /// upstream cannot send it to an arbitrary host.
    pub redirect_hosts: Option<Vec<String>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            insecure: false,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            tag_page_size: None,
            max_tag_pages: 1000,
            redirect_hosts: None,
        }
    }
}

/// What a `HEAD` on a manifest tells: enough to decide whether to fetch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// The manifest's digest (`Docker-Content-Digest`, or the digest asked for).
    pub digest: Digest,
    /// The media type the registry would serve (`Content-Type`, parameters stripped).
    pub media_type: String,
    /// The manifest's size in bytes.
    pub size: u64,
}

/// A manifest exactly as the registry served it, its digest verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedManifest {
    /// The bytes, unchanged: their digest is `digest`.
    pub bytes: Bytes,
    /// One of the four manifest media types (parameters stripped).
    pub media_type: String,
    /// The digest of `bytes`, which equals `Docker-Content-Digest` when the registry sent one
    /// and the requested digest when fetched by digest.
    pub digest: Digest,
}

/// What to put in the `Authorization` header.
enum Auth {
    Bearer(Token),
    Basic,
}

/// A client for one registry host. All methods take `&self`: share one client (in an `Arc`)
/// between tasks so they share its connection pool and token cache.
pub struct RegistryClient {
    http: reqwest::Client,
    registry: String,
    base: Url,
    credentials: Option<Credentials>,
    tokens: TokenCache,
    /// Set once the registry answered a Basic challenge: from then on credentials are sent
    /// up front instead of paying a 401 round trip per request.
    basic: AtomicBool,
    /// Held while a token is fetched (see `send`); async because it is held across the fetch.
    token_fetch: tokio::sync::Mutex<()>,
    config: ClientConfig,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("registry", &self.registry)
            .field("base", &self.base.as_str())
            .field("credentials", &self.credentials)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

/// `localhost` and `127.0.0.0/8` (and `::1`): where plain HTTP is the norm, as in Docker's
/// default insecure-registry range.
fn is_loopback_host(url: &Url) -> bool {
    match url.host_str() {
        Some(h) => {
            h.eq_ignore_ascii_case("localhost")
                || h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// True when `host` is `allowed` or, for `*.suffix`, a subdomain of `suffix`.
fn host_allowed(host: &str, allowed: &str) -> bool {
    match allowed.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|rest| rest.ends_with('.')),
        None => host.eq_ignore_ascii_case(allowed),
    }
}

/// At most [`MAX_REDIRECTS`] hops, and with an allow-list only to the registry's own host
/// (`api_host`, port ignored) or a listed one.
fn redirect_policy(api_host: &str, allowed: Option<Vec<String>>) -> reqwest::redirect::Policy {
    let Some(allowed) = allowed else {
        return reqwest::redirect::Policy::limited(MAX_REDIRECTS);
    };
    let own = api_host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(api_host, |(host, _)| host)
        .to_ascii_lowercase();
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        let host = attempt
            .url()
            .host_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if host == own || allowed.iter().any(|a| host_allowed(&host, a)) {
            attempt.follow()
        } else {
            attempt.error(format!(
                "redirect to {host} refused: not the registry's host nor a configured redirect host"
            ))
        }
    })
}

impl RegistryClient {
    /// A client for `registry` (`host` or `host:port`, as in an image reference; `docker.io`
    /// means Docker Hub's API host), anonymous until [`with_credentials`](Self::with_credentials).
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidRegistry`] when `registry` is not a bare host and port;
    /// [`ClientError::Transport`] when the HTTP client cannot be built (TLS roots).
    pub fn new(registry: &str, config: ClientConfig) -> Result<RegistryClient, ClientError> {
        let invalid = || ClientError::InvalidRegistry(registry.to_owned());
        if registry.is_empty() || registry.contains(['/', '@', '?', '#', ' ']) {
            return Err(invalid());
        }
        let api_host = if registry == pinfold_oci::DEFAULT_REGISTRY {
            "registry-1.docker.io"
        } else {
            registry
        };
        let mut base = Url::parse(&format!("https://{api_host}/")).map_err(|_| invalid())?;
        if config.insecure || is_loopback_host(&base) {
            base = Url::parse(&format!("http://{api_host}/")).map_err(|_| invalid())?;
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            // reqwest drops Authorization (and cookies) when a redirect leaves the host, so
            // blob-storage redirects never see registry credentials; tested in tests/it.
            .redirect(redirect_policy(api_host, config.redirect_hosts.clone()))
            .user_agent(concat!("pinfold/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(RegistryClient {
            http,
            registry: registry.to_owned(),
            base,
            credentials: None,
            tokens: TokenCache::default(),
            basic: AtomicBool::new(false),
            token_fetch: tokio::sync::Mutex::new(()),
            config,
        })
    }

    /// Uses `credentials` for Basic authentication and for the token endpoint.
    pub fn with_credentials(mut self, credentials: Option<Credentials>) -> RegistryClient {
        self.credentials = credentials;
        self
    }

    /// A client for `registry` with the credentials the Docker CLI would use for it
    /// ([`DockerConfig::from_env`]); anonymous when there are none.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new) and [`DockerConfig::credentials_for`].
    pub async fn from_docker_config(
        registry: &str,
        config: ClientConfig,
    ) -> Result<RegistryClient, ClientError> {
        let client = RegistryClient::new(registry, config)?;
        let credentials = match DockerConfig::from_env() {
            Some(docker) => docker.credentials_for(registry).await?,
            None => None,
        };
        Ok(client.with_credentials(credentials))
    }

    /// The registry as named to [`new`](Self::new).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The base URL requests go to (`https://ghcr.io/`, `http://127.0.0.1:5000/`).
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// Checks that the registry speaks the distribution API and accepts our credentials:
    /// `GET /v2/`, authenticating if challenged.
    ///
    /// # Errors
    ///
    /// [`ClientError::Unauthorized`] when credentials are refused, the status errors of
    /// [`ClientError`] otherwise.
    pub async fn ping(&self) -> Result<(), ClientError> {
        let url = self.url("v2/")?;
        let resp = self
            .send(Method::GET, url, "", HeaderMap::new(), true)
            .await?;
        self.check(resp, "/v2/").await.map(drop)
    }

    /// `HEAD` of a manifest with the given `Accept` media types.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotFound`] for an unknown repository or manifest;
    /// [`ClientError::DigestMismatch`] when asked by digest and the registry names another;
    /// [`ClientError::InvalidResponse`] when the answer lacks a digest (by tag) or a size.
    pub async fn head_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        accept: &[&str],
    ) -> Result<ManifestHead, ClientError> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, accept_header(accept)?);
        let resp = self
            .send(Method::HEAD, url, &pull_scope(repo), headers, true)
            .await?;
        let resp = self.check(resp, &format!("{repo}:{reference}")).await?;
        let media_type = header_str(&resp, CONTENT_TYPE.as_str())
            .map(media_type::essence)
            .unwrap_or_default();
        let size = content_length(&resp).ok_or_else(|| {
            ClientError::InvalidResponse("manifest HEAD without Content-Length".into())
        })?;
        let announced = announced_digest(&resp)?;
        let digest = match (reference, announced) {
            (Reference::Digest(asked), Some(got)) if *asked != got => {
                return Err(ClientError::DigestMismatch {
                    expected: asked.clone(),
                    actual: got,
                })
            }
            (_, Some(got)) => got,
            (Reference::Digest(asked), None) => asked.clone(),
            (Reference::Tag(_), None) => {
                return Err(ClientError::InvalidResponse(
                    "manifest HEAD without Docker-Content-Digest".into(),
                ))
            }
        };
        Ok(ManifestHead {
            digest,
            media_type,
            size,
        })
    }

    /// `GET` of a manifest, accepting the four manifest media types. The bytes are returned
    /// only once their digest matches `Docker-Content-Digest` (when sent) and the requested
    /// digest (when fetched by digest).
    ///
    /// # Errors
    ///
    /// [`ClientError::NotFound`]; [`ClientError::DigestMismatch`] (nothing is returned);
    /// [`ClientError::ManifestTooLarge`] past 4 MiB; [`ClientError::UnsupportedMediaType`] when
    /// the `Content-Type` is not a manifest type Pinfold stores.
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<FetchedManifest, ClientError> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, accept_header(&media_type::MANIFEST_TYPES)?);
        let resp = self
            .send(Method::GET, url, &pull_scope(repo), headers, true)
            .await?;
        let resp = self.check(resp, &format!("{repo}:{reference}")).await?;
        let media_type = header_str(&resp, CONTENT_TYPE.as_str())
            .map(media_type::essence)
            .unwrap_or_default();
        if !media_type::MANIFEST_TYPES.contains(&media_type.as_str()) {
            return Err(ClientError::UnsupportedMediaType(media_type));
        }
        let announced = announced_digest(&resp)?;
        let bytes =
            read_limited(resp, MAX_MANIFEST_BYTES)
                .await?
                .ok_or(ClientError::ManifestTooLarge {
                    limit: MAX_MANIFEST_BYTES,
                })?;
        // Hash with the algorithm of the digest we will compare against.
        let mut expected = Vec::new();
        if let Some(d) = announced {
            expected.push(d);
        }
        if let Reference::Digest(d) = reference {
            expected.push(d.clone());
        }
        let mut digest = None;
        for want in expected {
            let mut digester = Digester::new(want.algorithm());
            digester.update(&bytes);
            let actual = digester.finalize();
            if actual != want {
                return Err(ClientError::DigestMismatch {
                    expected: want,
                    actual,
                });
            }
            digest = Some(actual);
        }
        let digest = digest.unwrap_or_else(|| Digest::sha256(&bytes));
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// `GET` of a blob as a stream that verifies `digest` and the announced size as it goes
    /// and yields an error as its last item on mismatch (see [`BlobStream`]). Redirects to
    /// blob storage are followed without the registry's `Authorization` header.
    ///
    /// # Errors
    ///
    /// Before streaming: [`ClientError::NotFound`] and the other status errors. While
    /// streaming: [`ClientError::DigestMismatch`], [`ClientError::SizeMismatch`],
    /// [`ClientError::Transport`] (including the idle-read timeout).
    pub async fn get_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<BlobStream, ClientError> {
        let (resp, size) = self.blob_response(repo, digest).await?;
        Ok(BlobStream::verify(
            resp.bytes_stream(),
            digest.clone(),
            size,
        ))
    }

    /// `GET` of a blob without hashing it: the stream still ends with an error when the body
    /// is shorter or longer than `Content-Length`, but the digest is the caller's to check.
    /// For the mirror, whose blob store hashes every byte it writes and refuses a mismatch:
    /// hashing twice would cost a core for nothing.
    ///
    /// # Errors
    ///
    /// As [`get_blob`](Self::get_blob), without [`ClientError::DigestMismatch`].
    pub async fn get_blob_unverified(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<BlobStream, ClientError> {
        let (resp, size) = self.blob_response(repo, digest).await?;
        Ok(BlobStream::sized(resp.bytes_stream(), size))
    }

    /// The successful answer to a blob `GET` and its `Content-Length`, before any body.
    async fn blob_response(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(reqwest::Response, Option<u64>), ClientError> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"))?;
        // No whole-request timeout: a large layer may take long; the idle-read timeout bounds it.
        let resp = self
            .send(Method::GET, url, &pull_scope(repo), HeaderMap::new(), false)
            .await?;
        let resp = self.check(resp, &format!("{repo}@{digest}")).await?;
        let size = content_length(&resp);
        Ok((resp, size))
    }

    /// The referrers of `digest` in `repo` (distribution-spec 1.1 referrers API) as the
    /// descriptors of its image index; `None` when the registry does not offer the API (404
    /// on the endpoint, as registries before 1.1 answer).
    ///
    /// # Errors
    ///
    /// Status errors other than 404; [`ClientError::InvalidResponse`] for a body that is not an
    /// image index.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<Vec<pinfold_oci::Descriptor>>, ClientError> {
        let url = self.url(&format!("v2/{repo}/referrers/{digest}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, accept_header(&[media_type::OCI_INDEX])?);
        let resp = self
            .send(Method::GET, url, &pull_scope(repo), headers, true)
            .await?;
        let resp = match self
            .check(resp, &format!("{repo} referrers of {digest}"))
            .await
        {
            Ok(resp) => resp,
            Err(ClientError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let body =
            read_limited(resp, MAX_MANIFEST_BYTES)
                .await?
                .ok_or(ClientError::ManifestTooLarge {
                    limit: MAX_MANIFEST_BYTES,
                })?;
        let index = pinfold_oci::Manifest::parse(Some(media_type::OCI_INDEX), &body)
            .map_err(|e| ClientError::InvalidResponse(format!("referrers index: {e}")))?;
        Ok(Some(index.manifests))
    }

    /// The size of a blob, from a `HEAD` request.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotFound`]; [`ClientError::InvalidResponse`] without `Content-Length`.
    pub async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<u64, ClientError> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"))?;
        let resp = self
            .send(Method::HEAD, url, &pull_scope(repo), HeaderMap::new(), true)
            .await?;
        let resp = self.check(resp, &format!("{repo}@{digest}")).await?;
        content_length(&resp)
            .ok_or_else(|| ClientError::InvalidResponse("blob HEAD without Content-Length".into()))
    }

    /// All tags of `repo`, following `Link: <…>; rel="next"` pagination for at most
    /// [`ClientConfig::max_tag_pages`] pages.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotFound`] for an unknown repository; [`ClientError::TooManyPages`];
    /// [`ClientError::InvalidResponse`] for a body that is not a tag list or holds an invalid tag.
    pub async fn tags(&self, repo: &RepoName) -> Result<Vec<Tag>, ClientError> {
        #[derive(Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let mut url = self.url(&format!("v2/{repo}/tags/list"))?;
        if let Some(n) = self.config.tag_page_size {
            url.query_pairs_mut().append_pair("n", &n.to_string());
        }
        let mut out = Vec::new();
        for _ in 0..self.config.max_tag_pages {
            let resp = self
                .send(
                    Method::GET,
                    url.clone(),
                    &pull_scope(repo),
                    HeaderMap::new(),
                    true,
                )
                .await?;
            let resp = self.check(resp, repo.as_str()).await?;
            let next = next_link(&resp, &url)?;
            let body = read_limited(resp, MAX_TAGS_PAGE_BODY)
                .await?
                .ok_or_else(|| ClientError::InvalidResponse("tags page too large".into()))?;
            let page: TagList = serde_json::from_slice(&body)
                .map_err(|e| ClientError::InvalidResponse(format!("tag list: {e}")))?;
            for tag in page.tags.unwrap_or_default() {
                out.push(
                    tag.parse().map_err(|_| {
                        ClientError::InvalidResponse(format!("invalid tag {tag:?}"))
                    })?,
                );
            }
            match next {
                Some(n) => url = n,
                None => return Ok(out),
            }
        }
        Err(ClientError::TooManyPages {
            limit: self.config.max_tag_pages,
        })
    }

    fn url(&self, path: &str) -> Result<Url, ClientError> {
        self.base
            .join(path)
            .map_err(|_| ClientError::InvalidRegistry(self.registry.clone()))
    }

    fn request(
        &self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        auth: Option<&Auth>,
        bounded: bool,
        body: Option<&Bytes>,
    ) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .headers(headers.clone());
        if let Some(body) = body {
            // `Bytes` clones share the buffer: the retry after a 401 resends it for free.
            req = req.body(body.clone());
        }
        if bounded {
            req = req.timeout(self.config.request_timeout);
        }
        match (auth, &self.credentials) {
            (Some(Auth::Bearer(t)), _) => req.bearer_auth(t.as_str()),
            (Some(Auth::Basic), Some(c)) => req.basic_auth(c.username(), Some(c.password())),
            _ => req,
        }
    }

    /// Sends one request, authenticating and retrying once on a 401 (see the module doc).
    /// `scope` is the token scope the request needs and the token cache key.
    async fn send(
        &self,
        method: Method,
        url: Url,
        scope: &str,
        headers: HeaderMap,
        bounded: bool,
    ) -> Result<reqwest::Response, ClientError> {
        self.send_body(method, url, scope, headers, bounded, None)
            .await
    }

    /// [`send`](Self::send) with a request body (pushes).
    async fn send_body(
        &self,
        method: Method,
        url: Url,
        scope: &str,
        headers: HeaderMap,
        bounded: bool,
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, ClientError> {
        let known = match self.tokens.get(scope, Instant::now()) {
            Some(t) => Some(Auth::Bearer(t)),
            None if self.basic.load(Ordering::Relaxed) && self.credentials.is_some() => {
                Some(Auth::Basic)
            }
            None => None,
        };
        tracing::debug!(%method, %url, "registry request");
        let resp = self
            .request(
                &method,
                &url,
                &headers,
                known.as_ref(),
                bounded,
                body.as_ref(),
            )
            .send()
            .await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let refused = match &known {
            Some(Auth::Bearer(t)) => {
                self.tokens.remove_if_same(scope, t);
                Some(t.clone())
            }
            _ => None,
        };
        let challenges = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(parse_www_authenticate)
            .collect::<Result<Vec<_>, _>>()
            .map_err(ClientError::BadChallenge)?
            .into_iter()
            .flatten()
            .collect::<Vec<_>>();
        let auth = if let Some(bearer) = challenges.iter().find(|c| c.is("bearer")) {
            // Single flight: requests that hit the same 401 together wait here, and all but
            // the first find the token the first one fetched instead of asking the realm again.
            let _fetching = self.token_fetch.lock().await;
            match self.tokens.get(scope, Instant::now()) {
                Some(fresh) if refused.as_ref().is_none_or(|r| !r.same(&fresh)) => {
                    Auth::Bearer(fresh)
                }
                _ => {
                    let (token, ttl) = self.fetch_token(bearer, scope).await?;
                    self.tokens.put(scope, token.clone(), ttl, Instant::now());
                    Auth::Bearer(token)
                }
            }
        } else if challenges.iter().any(|c| c.is("basic"))
            && self.credentials.is_some()
            && !matches!(known, Some(Auth::Basic))
        {
            self.basic.store(true, Ordering::Relaxed);
            Auth::Basic
        } else {
            return Err(self.unauthorized());
        };
        let retry = self
            .request(&method, &url, &headers, Some(&auth), bounded, body.as_ref())
            .send()
            .await?;
        if retry.status() == StatusCode::UNAUTHORIZED {
            if let Auth::Bearer(t) = &auth {
                self.tokens.remove_if_same(scope, t);
            }
            return Err(self.unauthorized());
        }
        Ok(retry)
    }

    fn unauthorized(&self) -> ClientError {
        ClientError::Unauthorized {
            registry: self.registry.clone(),
        }
    }

    /// Asks the challenge's realm for a token: `GET realm?service=..&scope=..`, with Basic
    /// credentials when we have them and the realm is safe to send them to.
    async fn fetch_token(
        &self,
        challenge: &Challenge,
        scope: &str,
    ) -> Result<(Token, std::time::Duration), ClientError> {
        let realm_text = challenge
            .param("realm")
            .ok_or_else(|| ClientError::BadChallenge("Bearer challenge without realm".into()))?;
        let fail = |reason: String| ClientError::TokenEndpoint {
            realm: realm_text.to_owned(),
            reason,
        };
        let mut realm =
            Url::parse(realm_text).map_err(|e| fail(format!("invalid realm URL: {e}")))?;
        let https = realm.scheme() == "https";
        if !https && realm.scheme() != "http" {
            return Err(fail("realm is neither http nor https".into()));
        }
        {
            let mut query = realm.query_pairs_mut();
            if let Some(service) = challenge.param("service") {
                query.append_pair("service", service);
            }
            // The challenge names the scope the registry wants; ours is the fallback.
            match challenge.param("scope") {
                Some(s) => {
                    // Several scopes are space-separated; each is its own parameter.
                    for one in s.split(' ').filter(|x| !x.is_empty()) {
                        query.append_pair("scope", one);
                    }
                }
                None if !scope.is_empty() => {
                    query.append_pair("scope", scope);
                }
                None => {}
            }
        }
        let mut req = self
            .http
            .get(realm.clone())
            .timeout(self.config.request_timeout);
        // Credentials go to an https realm, or a plain-http one only where the registry itself
        // is plain HTTP (loopback or configured insecure): never downgraded by a challenge.
        if let Some(c) = &self.credentials {
            if https || self.base.scheme() == "http" {
                req = req.basic_auth(c.username(), Some(c.password()));
            }
        }
        let resp = req.send().await?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.unauthorized());
        }
        if !status.is_success() {
            return Err(fail(format!("status {status}")));
        }
        let body = read_limited(resp, MAX_TOKEN_BODY)
            .await?
            .ok_or_else(|| fail("answer too large".into()))?;
        let answer: TokenResponse =
            serde_json::from_slice(&body).map_err(|_| fail("answer is not token JSON".into()))?;
        answer
            .into_token()
            .ok_or_else(|| fail("answer holds no token".into()))
    }

    /// Passes a successful response through; turns any other into the matching error.
    async fn check(
        &self,
        resp: reqwest::Response,
        what: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = header_str(&resp, RETRY_AFTER.as_str()).and_then(parse_retry_after);
        let body = read_limited(resp, MAX_ERROR_BODY)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let (code, message) = parse_envelope(&body);
        Err(match status {
            StatusCode::UNAUTHORIZED => self.unauthorized(),
            StatusCode::NOT_FOUND => ClientError::NotFound {
                what: what.to_owned(),
                code,
            },
            StatusCode::TOO_MANY_REQUESTS => ClientError::TooManyRequests { retry_after },
            _ => ClientError::Upstream {
                status: status.as_u16(),
                code,
                message,
            },
        })
    }
}

/// `Retry-After` is delay-seconds or an HTTP date (RFC 9110 §10.2.3); a date in the past
/// means "now".
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

fn pull_scope(repo: &RepoName) -> String {
    format!("repository:{repo}:pull")
}

fn push_scope(repo: &RepoName) -> String {
    format!("repository:{repo}:pull,push")
}

/// Pushes: uploading blobs and putting manifests (distribution-spec "push" section), for
/// `pinfold import`. Bodies are sent from memory.
impl RegistryClient {
    /// Whether `repo` holds the blob `digest` (`HEAD`), so a push can skip it.
    ///
    /// # Errors
    /// Status errors other than 404; [`ClientError::Transport`].
    pub async fn has_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, ClientError> {
        match self.blob_size(repo, digest).await {
            Ok(_) => Ok(true),
            Err(ClientError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Uploads `bytes` as the blob `digest` of `repo`, monolithically: `POST` to open an
    /// upload session, then one `PUT <location>?digest=` with the whole body. The registry
    /// verifies the digest; `Ok` means it answered 201 Created.
    ///
    /// # Errors
    /// Status errors ([`ClientError::Upstream`] with the OCI code, e.g. `DIGEST_INVALID`);
    /// [`ClientError::InvalidResponse`] when the session has no usable `Location`.
    pub async fn push_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        bytes: Bytes,
    ) -> Result<(), ClientError> {
        let scope = push_scope(repo);
        let mut url = self.open_upload(repo, &scope).await?;
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        // No whole-request timeout: a large layer may take long; the idle timeout bounds it.
        let resp = self
            .send_body(Method::PUT, url, &scope, headers, false, Some(bytes))
            .await?;
        self.check(resp, &format!("{repo}@{digest}")).await?;
        Ok(())
    }

    /// Uploads the blob `digest` of `repo` from `reader` in chunks of at most `chunk_size`
    /// bytes: `POST` to open a session, one `PATCH` with `Content-Range` per chunk (following
    /// the `Location` each answer gives), then `PUT <location>?digest=`. Memory stays bounded
    /// by one chunk whatever the blob's size, and each request is small enough to be resent
    /// after a 401 (a token that expired during a long upload). The registry verifies the
    /// digest at the `PUT`.
    ///
    /// # Errors
    /// As [`push_blob`](Self::push_blob); [`ClientError::Io`]-like reading errors are reported
    /// as [`ClientError::InvalidResponse`] naming the blob, and the session is abandoned (the
    /// registry expires it).
    pub async fn push_blob_chunked<R>(
        &self,
        repo: &RepoName,
        digest: &Digest,
        mut reader: R,
        chunk_size: usize,
    ) -> Result<(), ClientError>
    where
        R: tokio::io::AsyncRead + Unpin,
    {
        use tokio::io::AsyncReadExt as _;
        let chunk_size = chunk_size.max(1);
        let scope = push_scope(repo);
        let mut location = self.open_upload(repo, &scope).await?;
        let mut offset = 0u64;
        loop {
            let mut chunk = bytes::BytesMut::with_capacity(chunk_size);
            while chunk.len() < chunk_size {
                let read = (&mut reader)
                    .take((chunk_size - chunk.len()) as u64)
                    .read_buf(&mut chunk)
                    .await
                    .map_err(|e| {
                        ClientError::InvalidResponse(format!("reading blob {digest}: {e}"))
                    })?;
                if read == 0 {
                    break;
                }
            }
            if chunk.is_empty() {
                break;
            }
            let len = chunk.len() as u64;
            let mut headers = HeaderMap::new();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            let range = format!("{offset}-{}", offset + len - 1);
            let value = HeaderValue::from_str(&range)
                .map_err(|_| ClientError::InvalidResponse(format!("bad range {range}")))?;
            headers.insert("content-range", value);
            let resp = self
                .send_body(
                    Method::PATCH,
                    location,
                    &scope,
                    headers,
                    false,
                    Some(chunk.freeze()),
                )
                .await?;
            let resp = self
                .check(resp, &format!("{repo}@{digest} chunk {range}"))
                .await?;
            location = self.upload_location(&resp)?;
            offset += len;
            if len < chunk_size as u64 {
                break;
            }
        }
        location
            .query_pairs_mut()
            .append_pair("digest", digest.as_str());
        let resp = self
            .send_body(Method::PUT, location, &scope, HeaderMap::new(), true, None)
            .await?;
        self.check(resp, &format!("{repo}@{digest}")).await?;
        Ok(())
    }

    /// The upload session URL an upload answer points to.
    /// Opens an upload session in `repo` (`POST .../blobs/uploads/`) and returns where it
    /// continues.
    async fn open_upload(&self, repo: &RepoName, scope: &str) -> Result<Url, ClientError> {
        let start = self.url(&format!("v2/{repo}/blobs/uploads/"))?;
        let resp = self
            .send(Method::POST, start, scope, HeaderMap::new(), true)
            .await?;
        let resp = self.check(resp, &format!("{repo} upload")).await?;
        self.upload_location(&resp)
    }

    fn upload_location(&self, resp: &reqwest::Response) -> Result<Url, ClientError> {
        let location = header_str(resp, reqwest::header::LOCATION.as_str())
            .ok_or_else(|| ClientError::InvalidResponse("upload without Location".into()))?;
        self.base
            .join(location)
            .map_err(|_| ClientError::InvalidResponse(format!("bad upload Location {location:?}")))
    }

    /// Puts `bytes` (a manifest or index of `media_type`, sent exactly as given) at
    /// `repo:reference` and returns the digest the registry announced (checked against the
    /// bytes' own).
    ///
    /// # Errors
    /// Status errors (`MANIFEST_BLOB_UNKNOWN`, `MANIFEST_INVALID`, `DENIED`, ...);
    /// [`ClientError::DigestMismatch`] when the registry names another digest.
    pub async fn push_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest, ClientError> {
        let own = Digest::sha256(&bytes);
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(media_type)
                .map_err(|_| ClientError::UnsupportedMediaType(media_type.to_owned()))?,
        );
        let resp = self
            .send_body(
                Method::PUT,
                url,
                &push_scope(repo),
                headers,
                true,
                Some(bytes),
            )
            .await?;
        let resp = self.check(resp, &format!("{repo}:{reference}")).await?;
        match announced_digest(&resp)? {
            Some(d) if d.algorithm() == own.algorithm() && d != own => {
                Err(ClientError::DigestMismatch {
                    expected: own,
                    actual: d,
                })
            }
            _ => Ok(own),
        }
    }
}

fn accept_header(types: &[&str]) -> Result<HeaderValue, ClientError> {
    HeaderValue::from_str(&types.join(", "))
        .map_err(|_| ClientError::InvalidResponse("Accept value is not a valid header".into()))
}

fn header_str<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `Content-Length` from the headers (reqwest's `content_length()` is the body hint, which is
/// `0` for HEAD answers).
fn content_length(resp: &reqwest::Response) -> Option<u64> {
    header_str(resp, CONTENT_LENGTH.as_str()).and_then(|v| v.trim().parse().ok())
}

fn announced_digest(resp: &reqwest::Response) -> Result<Option<Digest>, ClientError> {
    match header_str(resp, DOCKER_CONTENT_DIGEST) {
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(ClientError::InvalidDigestHeader),
        None => Ok(None),
    }
}

/// Reads the body, or `None` as soon as it passes `limit` bytes (the rest is not read).
async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Option<Bytes>, ClientError> {
    if content_length(&resp).is_some_and(|n| n > limit as u64) {
        return Ok(None);
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if out.len() + chunk.len() > limit {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(Bytes::from(out)))
}

/// The `rel="next"` target of a `Link` header, resolved against the page's URL
/// (distribution sends a path-only `</v2/…?last=..&n=..>`).
fn next_link(resp: &reqwest::Response, current: &Url) -> Result<Option<Url>, ClientError> {
    let Some(link) = header_str(resp, LINK.as_str()) else {
        return Ok(None);
    };
    parse_next_link(link, current)
}

fn parse_next_link(link: &str, current: &Url) -> Result<Option<Url>, ClientError> {
    let bad = || ClientError::InvalidResponse(format!("bad Link header {link:?}"));
    for part in link.split(',') {
        let part = part.trim();
        let Some(rest) = part.strip_prefix('<') else {
            return Err(bad());
        };
        let (target, params) = rest.split_once('>').ok_or_else(bad)?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
        });
        if is_next {
            let next = current.join(target).map_err(|_| bad())?;
            // Pagination must stay on the registry: a Link elsewhere would leak our token.
            if next.origin() != current.origin() {
                return Err(bad());
            }
            return Ok(Some(next));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_and_schemes() {
        let cases = [
            ("ghcr.io", false, "https://ghcr.io/"),
            ("docker.io", false, "https://registry-1.docker.io/"),
            ("127.0.0.1:5000", false, "http://127.0.0.1:5000/"),
            ("127.1.2.3:5000", false, "http://127.1.2.3:5000/"),
            ("localhost:5000", false, "http://localhost:5000/"),
            ("[::1]:5000", false, "http://[::1]:5000/"),
            ("registry.lan:5000", true, "http://registry.lan:5000/"),
            ("10.0.0.1:5000", false, "https://10.0.0.1:5000/"),
        ];
        for (registry, insecure, want) in cases {
            let config = ClientConfig {
                insecure,
                ..ClientConfig::default()
            };
            let c = RegistryClient::new(registry, config).unwrap();
            assert_eq!(c.base_url().as_str(), want, "{registry}");
        }
        for bad in ["", "ghcr.io/x", "user@ghcr.io", "a b"] {
            assert!(
                matches!(
                    RegistryClient::new(bad, ClientConfig::default()),
                    Err(ClientError::InvalidRegistry(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn retry_after_seconds_or_date() {
        assert_eq!(parse_retry_after(" 17 "), Some(Duration::from_secs(17)));
        let soon = std::time::SystemTime::now() + Duration::from_secs(120);
        let d = parse_retry_after(&httpdate::fmt_http_date(soon)).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn link_headers() {
        let cur = Url::parse("http://127.0.0.1:5000/v2/a/tags/list?n=2").unwrap();
        let next = parse_next_link(r#"</v2/a/tags/list?last=b&n=2>; rel="next""#, &cur)
            .unwrap()
            .unwrap();
        assert_eq!(
            next.as_str(),
            "http://127.0.0.1:5000/v2/a/tags/list?last=b&n=2"
        );
        let abs = parse_next_link(
            r#"<http://127.0.0.1:5000/v2/a/tags/list?last=c>; rel=next"#,
            &cur,
        )
        .unwrap()
        .unwrap();
        assert_eq!(abs.query(), Some("last=c"));
        assert!(parse_next_link(r#"</x>; rel="prev""#, &cur)
            .unwrap()
            .is_none());
        assert!(
            parse_next_link(r#"<http://evil.example/v2/a/tags/list>; rel="next""#, &cur).is_err()
        );
        assert!(parse_next_link("garbage", &cur).is_err());
    }

    #[test]
    fn debug_redacts_credentials() {
        let c = RegistryClient::new("ghcr.io", ClientConfig::default())
            .unwrap()
            .with_credentials(Some(Credentials::new("u", "hunter2")));
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
