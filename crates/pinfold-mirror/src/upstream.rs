//! The configured upstreams, each with its one registry client, and how a local repository
//! name maps to an upstream repository.

use std::sync::Arc;
use std::time::Duration;

use pinfold_client::{ClientConfig, Credentials, RegistryClient};
use pinfold_oci::RepoName;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{MirrorError, TagPolicy, UpstreamConfig};

/// One upstream registry and the client that talks to it.
#[derive(Debug)]
pub struct Upstream {
    /// Its configuration.
    pub config: UpstreamConfig,
    /// The client (connection pool and token cache shared by every request to it).
    pub client: RegistryClient,
    /// One permit per request in flight (`max_connections`): a burst of cold pulls or a
    /// drift pass never opens more connections to an upstream than it was allowed.
    permits: Arc<Semaphore>,
    /// How long a request waits for a permit.
    permit_wait: Duration,
}

impl Upstream {
    /// The upstream's name (the path prefix).
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Its tag policy.
    pub fn policy(&self) -> TagPolicy {
        self.config.policy
    }

    /// Waits for a request slot to this upstream; hold the permit while the request runs
    /// (for a blob, until its body has been read).
    ///
    /// # Errors
    ///
    /// [`MirrorError::Busy`] when no slot frees up within the upstream timeout.
    pub async fn permit(&self) -> Result<OwnedSemaphorePermit, MirrorError> {
        let busy = || MirrorError::Busy {
            upstream: self.config.name.clone(),
            limit: self.config.max_connections,
            waited: self.permit_wait,
        };
        match tokio::time::timeout(self.permit_wait, Arc::clone(&self.permits).acquire_owned())
            .await
        {
            Ok(Ok(permit)) => Ok(permit),
            // Timed out, or the semaphore was closed (never done): both mean no slot.
            Ok(Err(_)) | Err(_) => Err(busy()),
        }
    }

    /// Requests to this upstream in flight now.
    pub fn in_flight(&self) -> usize {
        self.config.max_connections.max(1) - self.permits.available_permits()
    }

    /// The actor recorded in the tag journal when the mirror moves a tag for this upstream.
    pub fn actor(&self) -> String {
        format!("mirror:{}", self.config.name)
    }
}

/// A local repository name resolved to its upstream.
#[derive(Debug, Clone)]
pub struct Route {
    /// The upstream.
    pub upstream: Arc<Upstream>,
    /// The repository's name upstream (`library/ruby` for `docker.io/library/ruby`).
    pub remote: RepoName,
}

/// Every configured upstream.
#[derive(Debug, Default)]
pub struct Upstreams {
    list: Vec<Arc<Upstream>>,
}

/// Checks an upstream's name: one repository path component, so that `<name>/<repo>` is a
/// valid repository name.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && format!("{name}/x").parse::<RepoName>().is_ok()
}

impl Upstreams {
    /// Builds the clients for `configs`.
    ///
    /// # Errors
    ///
    /// [`MirrorError::Config`] for a name that is not one repository path component, a
    /// duplicate name, more than one default, or a URL that is not `http(s)://host[:port]`.
    pub fn new(configs: &[UpstreamConfig], timeout: Duration) -> Result<Upstreams, MirrorError> {
        let mut list = Vec::with_capacity(configs.len());
        for (i, config) in configs.iter().enumerate() {
            let bad =
                |why: String| MirrorError::Config(format!("upstream {:?}: {why}", config.name));
            if !valid_name(&config.name) {
                return Err(bad(
                    "the name must be one repository path component (lowercase letters, digits, \
                     '.', '_', '-'), e.g. docker.io or ghcr.io"
                        .into(),
                ));
            }
            if configs[..i].iter().any(|c| c.name == config.name) {
                return Err(bad("defined twice".into()));
            }
            if config.default && configs[..i].iter().any(|c| c.default) {
                return Err(bad("only one upstream may be the default".into()));
            }
            let url = url::Url::parse(&config.url).map_err(|e| bad(format!("url: {e}")))?;
            let host = url
                .host_str()
                .ok_or_else(|| bad("url has no host".into()))?;
            if !matches!(url.scheme(), "http" | "https")
                || !url.path().trim_matches('/').is_empty()
                || url.query().is_some()
                || !url.username().is_empty()
            {
                return Err(bad(
                    "url must be http(s)://host[:port] without a path or credentials (put \
                     credentials in username/password)"
                        .into(),
                ));
            }
            let host = match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            };
            let client_config = ClientConfig {
                insecure: url.scheme() == "http",
                request_timeout: timeout,
                read_timeout: timeout,
                connect_timeout: timeout.min(Duration::from_secs(10)),
                redirect_hosts: Some(config.redirect_hosts.clone()),
                ..ClientConfig::default()
            };
            let credentials = config
                .username
                .as_ref()
                .map(|u| Credentials::new(u.clone(), config.password.clone().unwrap_or_default()));
            let client = RegistryClient::new(&host, client_config)
                .map_err(|e| bad(e.to_string()))?
                .with_credentials(credentials);
            if config.max_connections == 0 {
                return Err(bad("max_connections must be at least 1".into()));
            }
            list.push(Arc::new(Upstream {
                config: config.clone(),
                client,
                permits: Arc::new(Semaphore::new(config.max_connections)),
                permit_wait: timeout,
            }));
        }
        Ok(Upstreams { list })
    }

    /// True when no upstream is configured.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Every upstream, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.list.iter()
    }

    /// The upstream named `name`.
    pub fn by_name(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.list.iter().find(|u| u.config.name == name)
    }

    /// The default upstream (Docker's `registry-mirrors` form), if one is configured.
    pub fn default_upstream(&self) -> Option<&Arc<Upstream>> {
        self.list.iter().find(|u| u.config.default)
    }

    /// The upstream a local repository belongs to: its first path component names an
    /// upstream and the rest is the upstream repository. `None` for local repositories.
    pub fn route(&self, repo: &RepoName) -> Option<Route> {
        let (prefix, rest) = repo.as_str().split_once('/')?;
        let upstream = self.by_name(prefix)?;
        Some(Route {
            upstream: Arc::clone(upstream),
            remote: rest.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstreams(configs: &[UpstreamConfig]) -> Result<Upstreams, MirrorError> {
        Upstreams::new(configs, Duration::from_secs(5))
    }

    #[test]
    fn routes_by_first_component() {
        let u = upstreams(&[
            UpstreamConfig::new("docker.io", "https://registry-1.docker.io"),
            UpstreamConfig::new("ghcr.io", "https://ghcr.io"),
        ])
        .unwrap();
        let r = u.route(&"docker.io/library/ruby".parse().unwrap()).unwrap();
        assert_eq!(r.upstream.name(), "docker.io");
        assert_eq!(r.remote.as_str(), "library/ruby");
        let r = u.route(&"ghcr.io/org/app".parse().unwrap()).unwrap();
        assert_eq!(
            (r.upstream.name(), r.remote.as_str()),
            ("ghcr.io", "org/app")
        );
        assert!(u.route(&"library/ruby".parse().unwrap()).is_none());
        assert!(u.route(&"docker.io".parse().unwrap()).is_none());
        assert!(u.route(&"quay.io/x/y".parse().unwrap()).is_none());
        assert!(u.default_upstream().is_none());
    }

    #[test]
    fn bad_configs_are_refused() {
        let mut twice = UpstreamConfig::new("a", "http://127.0.0.1:1");
        twice.default = true;
        let cases = [
            vec![UpstreamConfig::new("Docker.io", "https://x")],
            vec![UpstreamConfig::new("a/b", "https://x")],
            vec![UpstreamConfig::new("", "https://x")],
            vec![UpstreamConfig::new("a", "ftp://x")],
            vec![UpstreamConfig::new("a", "https://x/v2/")],
            vec![UpstreamConfig::new("a", "https://user:pw@x")],
            vec![UpstreamConfig::new("a", "not a url")],
            vec![
                UpstreamConfig::new("a", "https://x"),
                UpstreamConfig::new("a", "https://y"),
            ],
            vec![twice.clone(), {
                let mut b = twice.clone();
                b.name = "b".into();
                b
            }],
        ];
        for configs in cases {
            let err = upstreams(&configs).unwrap_err();
            assert!(matches!(err, MirrorError::Config(_)), "{configs:?}: {err}");
        }
        let ok = upstreams(&[twice]).unwrap();
        assert_eq!(ok.default_upstream().unwrap().name(), "a");
    }
}
