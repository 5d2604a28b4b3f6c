//! What a request needs, worked out from its method and path before any handler runs, and
//! what its audit row says.
//!
//! | request | needs |
//! |---|---|
//! | `GET /healthz`, `/metrics`, `/v2/token`, `/apt/pinfold.asc|gpg` | nothing |
//! | `GET /v2/` | any valid credential (anonymous registry tokens count) |
//! | `GET/HEAD /v2/<name>/{manifests,blobs,tags,referrers}/...` | pull on `<name>` |
//! | `PUT /v2/<name>/manifests/..`, `/v2/<name>/blobs/uploads/...` | push on `<name>` |
//! | `POST /v2/<name>/blobs/uploads/?mount=<d>[&from=<src>]` | push on `<name>`; the handler mounts only from a repository the caller may pull (`auth::Access`) |
//! | `GET /v2/<alias>/...` read through a mirror alias | pull on `<alias>`; the dispatcher checks the rules' pull on the repository it means |
//! | `DELETE /v2/<name>/{manifests,blobs}/...` | delete on `<name>` |
//! | `GET /v2/_catalog`, `GET /api/v1/drift*` | global pull |
//! | `GET /api/v1/repositories/<name>/tags/<tag>/history` | pull on `<name>` |
//! | `POST /api/v1/repositories/<name>/tags/<tag>/promote` | promote on `<name>` |
//! | `/api/v1/tokens*` | any user (the handler allows own tokens, or admin) |
//! | `GET /api/v1/apt/*` | global pull |
//! | `GET /`, `GET /ui/drift`, `GET /ui/apt*` (web UI) | global pull |
//! | `GET /ui/repositories/<name>`, `GET /ui/history/<name>/tags/<tag>` | pull on `<name>` |
//! | other `/api/v1/*` (upstreams, workers, audit, gc, APT management, ...) | global admin |
//! | `GET /apt/<prefix>/...`, `GET /artifactory/<repo>/...` | pull on `apt/<prefix>` |
//! | `PUT /apt/<repo>/...`, `PUT /artifactory/<repo>/...` | push on `apt/<repo>` (or a deploy key) |

use axum::http::{Method, Uri};
use pinfold_auth::Action;

use crate::v2::route::{self, V2Route};

/// Which error format a refusal uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Surface {
    /// OCI error JSON and a Bearer challenge.
    V2,
    /// The management API's error JSON and a Basic challenge.
    Api,
    /// Artifactory-shaped errors and a Basic challenge.
    Apt,
}

/// What the caller must be allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Requirement {
    /// Nothing.
    Open,
    /// Any valid credential, or an anonymous registry token.
    Authenticated,
    /// An action on one repository.
    Repo(String, Action),
    /// A global action (catalog, management API).
    Global(Action),
}

/// A request's requirement, surface and audit description.
#[derive(Debug, Clone)]
pub(crate) struct Need {
    pub(crate) requirement: Requirement,
    pub(crate) surface: Surface,
    /// An APT deploy key also satisfies it (APT uploads and APT management writes).
    pub(crate) deploy_key_ok: bool,
    /// `(action, target)` of the audit row a write leaves; `None` for reads.
    pub(crate) audit: Option<(&'static str, String)>,
    /// The scope named in a `/v2/` Bearer challenge.
    pub(crate) challenge_scope: Option<String>,
}

impl Need {
    fn open(surface: Surface) -> Need {
        Need {
            requirement: Requirement::Open,
            surface,
            deploy_key_ok: false,
            audit: None,
            challenge_scope: None,
        }
    }

    fn new(requirement: Requirement, surface: Surface) -> Need {
        Need {
            requirement,
            ..Need::open(surface)
        }
    }

    fn audited(mut self, action: &'static str, target: String) -> Need {
        self.audit = Some((action, target));
        self
    }
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// What `method` on `uri` needs.
pub(crate) fn need(method: &Method, uri: &Uri) -> Need {
    let path = uri.path();
    if path == "/healthz" || path == "/metrics" || path == "/v2/token" {
        return Need::open(Surface::Api);
    }
    if path == "/v2" || path == "/v2/" {
        return Need::new(Requirement::Authenticated, Surface::V2);
    }
    if let Some(rest) = path.strip_prefix("/v2/") {
        return v2_need(method, uri, rest);
    }
    if let Some(rest) = path.strip_prefix("/api/v1/") {
        return api_need(method, rest);
    }
    for prefix in ["/apt/", "/artifactory/"] {
        if let Some(rest) = path.strip_prefix(prefix) {
            return apt_need(method, path, rest);
        }
    }
    if path.starts_with("/api/") {
        return Need::new(Requirement::Global(Action::Admin), Surface::Api);
    }
    if let Some(need) = ui_need(path) {
        return need;
    }
    // Anything else answers 404 (or a later surface's own page): it reads nothing protected.
    Need::open(Surface::Api)
}

fn v2_need(method: &Method, uri: &Uri, rest: &str) -> Need {
    let Ok(Some(route)) = route::parse(rest) else {
        // The dispatcher answers NAME_INVALID / 404 without touching data; asking for a
        // credential first would only hide that answer.
        return Need::new(Requirement::Authenticated, Surface::V2);
    };
    let read = is_read(method);
    let (requirement, audit) = match &route {
        V2Route::Catalog => (Requirement::Global(Action::Pull), None),
        V2Route::Tags { repo } | V2Route::Referrers { repo, .. } => {
            (Requirement::Repo(repo.to_string(), Action::Pull), None)
        }
        V2Route::Manifest { repo, reference } => match *method {
            Method::PUT => (
                Requirement::Repo(repo.to_string(), Action::Push),
                Some(("push", format!("{repo}:{reference}"))),
            ),
            Method::DELETE => (
                Requirement::Repo(repo.to_string(), Action::Delete),
                Some(("delete", format!("{repo}:{reference}"))),
            ),
            _ => (Requirement::Repo(repo.to_string(), Action::Pull), None),
        },
        V2Route::Blob { repo, digest } => {
            if *method == Method::DELETE {
                (
                    Requirement::Repo(repo.to_string(), Action::Delete),
                    Some(("delete", format!("{repo}@{digest}"))),
                )
            } else {
                (Requirement::Repo(repo.to_string(), Action::Pull), None)
            }
        }
        V2Route::UploadStart { repo } => {
            // A mount and a one-request upload write a blob; opening a session writes nothing
            // (its completing PUT is audited).
            let param = |name: &str| {
                url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value.into_owned())
            };
            let audit = match (param("mount"), param("digest")) {
                (Some(digest), _) => {
                    let from = param("from").unwrap_or_else(|| "any repository".to_owned());
                    Some(("blob-mount", format!("{repo}@{digest} from {from}")))
                }
                (None, Some(digest)) => Some(("blob-upload", format!("{repo}@{digest}"))),
                (None, None) => None,
            };
            (Requirement::Repo(repo.to_string(), Action::Push), audit)
        }
        V2Route::Upload { repo, .. } => {
            let audit = (*method == Method::PUT).then(|| {
                let digest = uri
                    .query()
                    .unwrap_or_default()
                    .split('&')
                    .find_map(|p| p.strip_prefix("digest="))
                    .unwrap_or("?");
                ("blob-upload", format!("{repo}@{digest}"))
            });
            (Requirement::Repo(repo.to_string(), Action::Push), audit)
        }
    };
    let challenge_scope = match &requirement {
        Requirement::Repo(name, action) => Some(format!(
            "repository:{name}:{}",
            match action {
                Action::Pull => "pull",
                Action::Push => "pull,push",
                Action::Delete => "delete",
                _ => "*",
            }
        )),
        Requirement::Global(_) => Some("registry:catalog:*".to_owned()),
        _ => None,
    };
    let _ = read;
    let mut need = Need::new(requirement, Surface::V2);
    need.audit = audit;
    need.challenge_scope = challenge_scope;
    need
}

/// The web UI's pages read what the API's reads do, and need what they need.
fn ui_need(path: &str) -> Option<Need> {
    let pull_on = |repo: &str| {
        Need::new(
            Requirement::Repo(repo.to_owned(), Action::Pull),
            Surface::Api,
        )
    };
    if path == "/" || path == "/ui/drift" || path == "/ui/apt" || path.starts_with("/ui/apt/") {
        return Some(Need::new(Requirement::Global(Action::Pull), Surface::Api));
    }
    if let Some(repo) = path.strip_prefix("/ui/repositories/") {
        return Some(pull_on(repo));
    }
    let rest = path.strip_prefix("/ui/history/")?;
    // `<name>/tags/<tag>`; without `/tags/` the page is a 404, still behind the name's pull.
    Some(pull_on(
        rest.rsplit_once("/tags/").map_or(rest, |(repo, _)| repo),
    ))
}

fn api_need(method: &Method, rest: &str) -> Need {
    let read = is_read(method);
    if let Some(path) = rest.strip_prefix("repositories/") {
        let repo = path.rfind("/tags/").map(|at| &path[..at]);
        return match (repo, read) {
            (Some(repo), true) => Need::new(
                Requirement::Repo(repo.to_owned(), Action::Pull),
                Surface::Api,
            ),
            (Some(repo), false) => Need::new(
                Requirement::Repo(repo.to_owned(), Action::Promote),
                Surface::Api,
            )
            .audited("promote", path.to_owned()),
            (None, true) => Need::new(Requirement::Global(Action::Pull), Surface::Api),
            (None, false) => Need::new(Requirement::Global(Action::Admin), Surface::Api)
                .audited("admin", format!("/api/v1/{rest}")),
        };
    }
    if rest == "tokens" || rest.starts_with("tokens/") {
        // Token handlers write their own audit rows (they know the token id).
        return Need::new(Requirement::Authenticated, Surface::Api);
    }
    if (rest == "drift" || rest.starts_with("drift/")) && read {
        return Need::new(Requirement::Global(Action::Pull), Surface::Api);
    }
    if rest.starts_with("apt/") {
        if read {
            return Need::new(Requirement::Global(Action::Pull), Surface::Api);
        }
        let mut need = Need::new(Requirement::Global(Action::Admin), Surface::Api)
            .audited("apt-admin", format!("/api/v1/{rest}"));
        need.deploy_key_ok = true;
        return need;
    }
    let need = Need::new(Requirement::Global(Action::Admin), Surface::Api);
    if read {
        need
    } else {
        need.audited("admin", format!("/api/v1/{rest}"))
    }
}

fn apt_need(method: &Method, path: &str, rest: &str) -> Need {
    if path == "/apt/pinfold.asc" || path == "/apt/pinfold.gpg" {
        return Need::open(Surface::Apt);
    }
    let repo = rest.split(['/', ';']).next().unwrap_or_default();
    let name = format!("apt/{repo}");
    if is_read(method) {
        return Need::new(Requirement::Repo(name, Action::Pull), Surface::Apt);
    }
    // The matrix parameters are not secret, but the target is the path the file lands at.
    let target = path.split(';').next().unwrap_or(path).to_owned();
    let mut need = Need::new(Requirement::Repo(name, Action::Push), Surface::Apt)
        .audited("apt-upload", target);
    need.deploy_key_ok = true;
    need
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, uri: &str) -> Need {
        need(&method, &uri.parse().unwrap())
    }

    #[test]
    fn requirements_per_route() {
        use Requirement::*;
        let cases = [
            (Method::GET, "/healthz", Open),
            (Method::GET, "/v2/token?scope=x", Open),
            (Method::POST, "/v2/token", Open),
            (Method::GET, "/v2/", Authenticated),
            (Method::GET, "/", Global(Action::Pull)),
            (Method::GET, "/ui/drift?all=true", Global(Action::Pull)),
            (
                Method::GET,
                "/ui/repositories/docker.io/library/ruby",
                Repo("docker.io/library/ruby".into(), Action::Pull),
            ),
            (
                Method::GET,
                "/ui/history/a/tags/b/tags/v1",
                Repo("a/tags/b".into(), Action::Pull),
            ),
            (
                Method::GET,
                "/ui/apt/diff?from=a&to=b",
                Global(Action::Pull),
            ),
            (Method::GET, "/ui/nothing-here", Open),
            (
                Method::GET,
                "/v2/a/b/manifests/v1",
                Repo("a/b".into(), Action::Pull),
            ),
            (
                Method::HEAD,
                "/v2/a/blobs/sha256:00",
                Repo("a".into(), Action::Pull),
            ),
            (
                Method::PUT,
                "/v2/a/manifests/v1",
                Repo("a".into(), Action::Push),
            ),
            (
                Method::POST,
                "/v2/a/blobs/uploads/",
                Repo("a".into(), Action::Push),
            ),
            (
                Method::PATCH,
                "/v2/a/blobs/uploads/x",
                Repo("a".into(), Action::Push),
            ),
            (
                Method::DELETE,
                "/v2/a/manifests/v1",
                Repo("a".into(), Action::Delete),
            ),
            (
                Method::DELETE,
                "/v2/a/blobs/sha256:00",
                Repo("a".into(), Action::Delete),
            ),
            (
                Method::GET,
                "/v2/a/tags/list",
                Repo("a".into(), Action::Pull),
            ),
            (Method::GET, "/v2/_catalog", Global(Action::Pull)),
            (
                Method::GET,
                "/api/v1/repositories/t/x/tags/v1/history",
                Repo("t/x".into(), Action::Pull),
            ),
            (
                Method::POST,
                "/api/v1/repositories/t/x/tags/v1/promote",
                Repo("t/x".into(), Action::Promote),
            ),
            (Method::GET, "/api/v1/drift", Global(Action::Pull)),
            (Method::GET, "/api/v1/upstreams", Global(Action::Admin)),
            (Method::GET, "/api/v1/workers", Global(Action::Admin)),
            (Method::GET, "/api/v1/audit", Global(Action::Admin)),
            (Method::POST, "/api/v1/apt/repos", Global(Action::Admin)),
            (Method::GET, "/api/v1/tokens", Authenticated),
            (Method::GET, "/apt/pinfold.asc", Open),
            (
                Method::GET,
                "/apt/main/dists/stable/InRelease",
                Repo("apt/main".into(), Action::Pull),
            ),
            (
                Method::PUT,
                "/artifactory/debs/pool/x.deb;deb.distribution=s",
                Repo("apt/debs".into(), Action::Push),
            ),
            (Method::POST, "/api/v2/anything", Global(Action::Admin)),
        ];
        for (method, uri, expect) in cases {
            assert_eq!(
                req(method.clone(), uri).requirement,
                expect,
                "{method} {uri}"
            );
        }
    }

    #[test]
    fn writes_are_audited_with_their_target() {
        let n = req(Method::PUT, "/v2/a/manifests/v1");
        assert_eq!(n.audit, Some(("push", "a:v1".to_owned())));
        let n = req(Method::PUT, "/v2/a/blobs/uploads/u1?digest=sha256:ab");
        assert_eq!(n.audit, Some(("blob-upload", "a@sha256:ab".to_owned())));
        let n = req(Method::POST, "/v2/a/blobs/uploads/?digest=sha256:ab");
        assert_eq!(n.audit, Some(("blob-upload", "a@sha256:ab".to_owned())));
        let n = req(
            Method::POST,
            "/v2/a/blobs/uploads/?mount=sha256:ab&from=b/c",
        );
        assert_eq!(
            n.audit,
            Some(("blob-mount", "a@sha256:ab from b/c".to_owned()))
        );
        let n = req(Method::POST, "/v2/a/blobs/uploads/?mount=sha256:ab");
        assert_eq!(
            n.audit,
            Some(("blob-mount", "a@sha256:ab from any repository".to_owned()))
        );
        assert_eq!(req(Method::POST, "/v2/a/blobs/uploads/").audit, None);
        assert_eq!(req(Method::PATCH, "/v2/a/blobs/uploads/u1").audit, None);
        assert_eq!(req(Method::GET, "/v2/a/manifests/v1").audit, None);
        let n = req(
            Method::PUT,
            "/artifactory/debs/pool/x.deb;deb.distribution=s",
        );
        assert_eq!(
            n.audit,
            Some(("apt-upload", "/artifactory/debs/pool/x.deb".to_owned()))
        );
        assert!(n.deploy_key_ok);
        assert_eq!(
            req(Method::PUT, "/v2/a/manifests/v1")
                .challenge_scope
                .as_deref(),
            Some("repository:a:pull,push")
        );
    }
}
