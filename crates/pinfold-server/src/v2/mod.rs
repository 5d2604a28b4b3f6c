//! The OCI Distribution API (distribution-spec v1.1) at `/v2/`.
//!
//! Every request under `/v2/` enters [`dispatch`], which parses the path once into a
//! [`route::V2Route`] (answering NAME_INVALID before any handler runs) and hands it to one
//! handler per resource: `manifests.rs`, `blobs.rs`, `uploads.rs`, `tags.rs`, `catalog.rs`,
//! `referrers.rs`. Handlers translate HTTP to calls on [`crate::registry::Registry`] and back.

mod blobs;
mod catalog;
pub mod error;
mod manifests;
mod pagination;
mod referrers;
pub mod route;
mod tags;
mod uploads;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;

use crate::auth::Access;
use crate::registry::Registry;
use error::{ErrorCode, OciError};
use pinfold_auth::Action;
use route::V2Route;

/// Header every `/v2/` answer carries; Docker clients check it on `/v2/`.
const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");

/// The `/v2/` routes.
pub fn routes() -> Router<crate::AppState> {
    Router::new()
        .route("/v2", any(base))
        .route("/v2/", any(base))
        .route("/v2/{*path}", any(dispatch))
}

/// `GET /v2/`: the API version check.
async fn base(method: Method) -> Response {
    let response = match method {
        Method::GET | Method::HEAD => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            if method == Method::HEAD { "" } else { "{}" },
        )
            .into_response(),
        _ => unsupported(&method, "GET, HEAD"),
    };
    with_api_version(response)
}

/// 405 with the `Allow` header RFC 9110 §15.5.6 requires.
fn unsupported(method: &Method, allow: &'static str) -> Response {
    OciError::new(ErrorCode::Unsupported)
        .detail(format!(
            "method {method} is not supported here; allowed: {allow}"
        ))
        .with_header(header::ALLOW, HeaderValue::from_static(allow))
        .for_head(method == Method::HEAD)
        .into_response()
}

/// The methods each resource answers.
fn allowed_methods(route: &V2Route) -> &'static str {
    match route {
        V2Route::Manifest { .. } => "GET, HEAD, PUT, DELETE",
        V2Route::Blob { .. } => "GET, HEAD, DELETE",
        V2Route::UploadStart { .. } => "POST",
        V2Route::Upload { .. } => "GET, HEAD, PATCH, PUT, DELETE",
        V2Route::Tags { .. } | V2Route::Catalog | V2Route::Referrers { .. } => "GET, HEAD",
    }
}

/// Answers a HEAD on a listing with the headers its GET would have, and no body.
async fn head_of(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let len = axum::body::to_bytes(body, usize::MAX)
        .await
        .map(|b| b.len())
        .unwrap_or(0);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Response::from_parts(parts, Body::empty())
}

fn with_api_version(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    response
}

/// Routes every `/v2/<...>` request to its resource handler.
async fn dispatch(State(registry): State<Registry>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let head = parts.method == Method::HEAD;
    // The raw path: a percent-encoded '/' must not become a name separator.
    let path = parts.uri.path().strip_prefix("/v2/").unwrap_or_default();
    let response = match route::parse(path) {
        Err(e) => e.for_head(head).into_response(),
        Ok(None) => OciError::new(ErrorCode::NameUnknown)
            .with_status(axum::http::StatusCode::NOT_FOUND)
            .detail(format!("no such API route: {}", parts.uri.path()))
            .for_head(head)
            .into_response(),
        Ok(Some(route)) => match resolve_repository(&registry, route, &parts).await {
            Ok(route) => route_request(registry, route, parts, body).await,
            Err(e) => Err(e),
        }
        .unwrap_or_else(|e| e.for_head(head).into_response()),
    };
    with_api_version(response)
}

/// The `ns` query parameter containerd sends to a mirror (`?ns=docker.io`).
fn namespace_param(uri: &axum::http::Uri) -> Option<String> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "ns")
        .map(|(_, value)| value.to_owned())
}

/// Applies the mirror's addressing forms to the route's repository (see
/// [`Registry::pull_name`]) for reads, and refuses writes to mirrored repositories.
async fn resolve_repository(
    registry: &Registry,
    mut route: V2Route,
    parts: &axum::http::request::Parts,
) -> Result<V2Route, OciError> {
    let read = matches!(parts.method, Method::GET | Method::HEAD)
        && !matches!(route, V2Route::Upload { .. });
    let ns = namespace_param(&parts.uri);
    if let Some(repo) = route.repo_mut() {
        if read {
            let asked = repo.clone();
            *repo = registry.pull_name(asked.clone(), ns.as_deref()).await?;
            // The middleware checked the name asked; an alias reads another repository, whose
            // pull the rules must grant too (issue 16).
            let allowed = parts.extensions.get::<Access>().is_some_and(|access| {
                access.allows_alias(asked.as_str(), repo.as_str(), Action::Pull)
            });
            if !allowed {
                return Err(OciError::new(ErrorCode::Denied)
                    .detail(format!("{asked} means {repo} here, which you may not pull")));
            }
        } else {
            registry.check_writable(repo)?;
        }
    }
    Ok(route)
}

async fn route_request(
    registry: Registry,
    route: V2Route,
    parts: axum::http::request::Parts,
    body: Body,
) -> Result<Response, OciError> {
    let method = parts.method.clone();
    let allow = allowed_methods(&route);
    match (route, &method) {
        (V2Route::Manifest { repo, reference }, &Method::GET | &Method::HEAD) => {
            manifests::get(
                &registry,
                &repo,
                &reference,
                &parts.headers,
                method == Method::HEAD,
            )
            .await
        }
        (V2Route::Manifest { repo, reference }, &Method::PUT) => {
            manifests::put(&registry, &repo, &reference, &parts.headers, body).await
        }
        (V2Route::Manifest { repo, reference }, &Method::DELETE) => {
            manifests::delete(&registry, &repo, &reference).await
        }
        (V2Route::Blob { repo, digest }, &Method::GET | &Method::HEAD) => {
            blobs::get(
                &registry,
                &repo,
                &digest,
                &parts.headers,
                method == Method::HEAD,
            )
            .await
        }
        (V2Route::Blob { repo, digest }, &Method::DELETE) => {
            blobs::delete(&registry, &repo, &digest).await
        }
        (V2Route::UploadStart { repo }, &Method::POST) => {
            uploads::start(&registry, &repo, &parts, body).await
        }
        // 204 has no body, so HEAD answers exactly like GET.
        (V2Route::Upload { repo, id }, &Method::GET | &Method::HEAD) => {
            uploads::status(&registry, &repo, &id).await
        }
        (V2Route::Upload { repo, id }, &Method::PATCH) => {
            uploads::patch(&registry, &repo, &id, &parts.headers, body).await
        }
        (V2Route::Upload { repo, id }, &Method::PUT) => {
            uploads::put(&registry, &repo, &id, &parts, body).await
        }
        (V2Route::Upload { repo, id }, &Method::DELETE) => {
            uploads::delete(&registry, &repo, &id).await
        }
        (V2Route::Tags { repo }, &Method::GET) => tags::list(&registry, &repo, &parts.uri).await,
        (V2Route::Tags { repo }, &Method::HEAD) => {
            Ok(head_of(tags::list(&registry, &repo, &parts.uri).await?).await)
        }
        (V2Route::Catalog, &Method::GET) => catalog::list(&registry, &parts.uri).await,
        (V2Route::Catalog, &Method::HEAD) => {
            Ok(head_of(catalog::list(&registry, &parts.uri).await?).await)
        }
        (V2Route::Referrers { repo, digest }, &Method::GET) => {
            referrers::list(&registry, &repo, &digest, &parts.uri).await
        }
        (V2Route::Referrers { repo, digest }, &Method::HEAD) => {
            Ok(head_of(referrers::list(&registry, &repo, &digest, &parts.uri).await?).await)
        }
        (_, method) => Ok(unsupported(method, allow)),
    }
}
