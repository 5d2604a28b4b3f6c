//! `/v2/token`: the Docker registry token endpoint (distribution's "token authentication
//! specification"). `GET`: clients send Basic credentials (or none, for anonymous pulls),
//! `service` and one `scope` per resource. `POST`: the OAuth2 form of the same
//! ("token authentication implementation: OAuth2"), which containerd tries first when it has
//! credentials: `grant_type=password` with `username`/`password`, or
//! `grant_type=refresh_token` with a Pinfold API token as `refresh_token` (what Docker's
//! `identitytoken` holds). Either way the answer is a short-lived ES256 JWT whose `access`
//! claim is what was asked **and** is allowed, never more (an unauthorized scope is simply left
//! out, as the specification says).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pinfold_auth::{AccessEntry, Action, Actions, Claims, Principal};
use serde_json::json;
use time::OffsetDateTime;

use super::{Auth, AuthFailure, Via, SERVICE};
use crate::api::error::ApiError;
use crate::AppState;

/// Longest scope list considered (a client asks for a handful).
const MAX_SCOPES: usize = 32;

fn query_params(uri: &Uri) -> Vec<(String, String)> {
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// What one requested scope yields.
fn grant(auth: &Auth, principal: &Principal, scope: &str) -> Option<AccessEntry> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    match kind {
        "registry" if name == "catalog" => auth
            .authorizer()
            .allowed_global(principal, Action::Pull)
            .then(|| AccessEntry {
                kind: "registry".into(),
                name: "catalog".into(),
                actions: vec!["*".into()],
            }),
        "repository" if !name.is_empty() && !name.contains('*') => {
            let wanted: Actions = actions
                .split(',')
                .flat_map(|a| {
                    if a == "*" {
                        Action::ALL.to_vec()
                    } else {
                        a.parse::<Action>().into_iter().collect()
                    }
                })
                .collect();
            let granted = auth.authorizer().granted(principal, name, wanted);
            let actions: Vec<String> = granted
                .iter()
                .filter(|a| *a != Action::Admin)
                .map(|a| a.as_str().to_owned())
                .collect();
            Some(AccessEntry {
                kind: "repository".into(),
                name: name.to_owned(),
                actions,
            })
        }
        _ => None,
    }
}

/// `GET /v2/token?service=pinfold&scope=repository:<name>:pull,push[&scope=...]`.
pub async fn issue(
    State(state): State<AppState>,
    axum::Extension(super::ClientAddr(client)): axum::Extension<super::ClientAddr>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let params = query_params(&uri);
    issue_for(&state, &client, &headers, &params, false).await
}

/// Largest OAuth2 form accepted (a few scopes and a password).
const MAX_FORM_BYTES: usize = 16 * 1024;

/// `POST /v2/token` with an `application/x-www-form-urlencoded` body: `grant_type`
/// (`password` or `refresh_token`), `service`, `client_id`, `scope` (space-separated),
/// `username`/`password` or `refresh_token`. The credentials are checked exactly as if they
/// came as a Basic header (password) or a Bearer API token (refresh token).
pub async fn issue_oauth(
    State(state): State<AppState>,
    axum::Extension(super::ClientAddr(client)): axum::Extension<super::ClientAddr>,
    body: axum::body::Bytes,
) -> Response {
    if body.len() > MAX_FORM_BYTES {
        return oauth_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "form too large",
        );
    }
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let authorization = match field("grant_type") {
        Some("password") => {
            let (Some(user), Some(password)) = (field("username"), field("password")) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "grant_type=password needs username and password",
                );
            };
            if user.contains(':') {
                return unauthorized(&state.auth, "unknown", &client).await;
            }
            let basic = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{user}:{password}"),
            );
            format!("Basic {basic}")
        }
        Some("refresh_token") => match field("refresh_token") {
            Some(token) if token.starts_with(pinfold_auth::secret::TOKEN_PREFIX) => {
                format!("Bearer {token}")
            }
            Some(_) => return unauthorized(&state.auth, "unknown", &client).await,
            None => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "grant_type=refresh_token needs refresh_token",
                )
            }
        },
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be password or refresh_token",
            )
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            )
        }
    };
    let mut headers = HeaderMap::new();
    match axum::http::HeaderValue::from_str(&authorization) {
        Ok(value) => headers.insert(axum::http::header::AUTHORIZATION, value),
        Err(_) => return unauthorized(&state.auth, "unknown", &client).await,
    };
    issue_for(&state, &client, &headers, &params, true).await
}

/// An OAuth2 error body (RFC 6749 section 5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// Checks the credentials in `headers` and signs a token for the scopes in `params`.
/// `anonymous_refused`: the OAuth2 form always carries credentials, so it never issues an
/// anonymous token.
async fn issue_for(
    state: &AppState,
    client: &str,
    headers: &HeaderMap,
    params: &[(String, String)],
    anonymous_refused: bool,
) -> Response {
    let auth = &state.auth;
    let caller = match auth.authenticate(headers).await {
        Ok(caller) if anonymous_refused && caller.via == Via::Anonymous => {
            return unauthorized(auth, "unknown", client).await;
        }
        Ok(caller) if caller.via != Via::Jwt && caller.via != Via::DeployKey => caller,
        Ok(_) | Err(AuthFailure::Malformed) => {
            return unauthorized(auth, "unknown", client).await;
        }
        Err(AuthFailure::Rejected { claimed }) => {
            return unauthorized(auth, claimed.as_deref().unwrap_or("unknown"), client).await;
        }
    };
    if let Some((_, service)) = params.iter().find(|(k, _)| k == "service") {
        if service != SERVICE {
            return ApiError::invalid(format!(
                "this token endpoint issues tokens for service {SERVICE:?} only"
            ))
            .into_response();
        }
    }
    let principal = if auth.enabled() {
        caller.principal.clone()
    } else {
        // Open mode: the token allows what was asked (everyone may do everything).
        Principal::anonymous()
    };
    let access: Vec<AccessEntry> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .take(MAX_SCOPES)
        .filter_map(|scope| {
            if auth.enabled() {
                grant(auth, &principal, &scope)
            } else {
                open_grant(&scope)
            }
        })
        .collect();
    let now = OffsetDateTime::now_utc();
    let lifetime = i64::try_from(auth.config().token_lifetime_seconds).unwrap_or(300);
    let jti = match auth.jwt().new_id() {
        Ok(id) => id,
        Err(e) => return internal(e),
    };
    // A registry token never outlives the credential it was made from (an expiring API
    // token, used as a password or OAuth refresh token).
    let exp = match caller.expires {
        Some(credential_exp) => (now.unix_timestamp() + lifetime).min(credential_exp),
        None => now.unix_timestamp() + lifetime,
    };
    let claims = Claims {
        iss: pinfold_auth::jwt::ISSUER.into(),
        sub: principal.user.clone().unwrap_or_default(),
        aud: SERVICE.into(),
        exp,
        nbf: now.unix_timestamp(),
        iat: now.unix_timestamp(),
        jti,
        access,
    };
    let token = match auth.jwt().sign(&claims) {
        Ok(token) => token,
        Err(e) => return internal(e),
    };
    let issued_at = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Json(json!({
        "token": token,
        "access_token": token,
        "expires_in": exp - now.unix_timestamp(),
        "issued_at": issued_at,
    }))
    .into_response()
}

fn open_grant(scope: &str) -> Option<AccessEntry> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some(AccessEntry {
        kind: kind.to_owned(),
        name: name.to_owned(),
        actions: actions.split(',').map(str::to_owned).collect(),
    })
}

fn internal(e: pinfold_auth::JwtError) -> Response {
    tracing::error!("cannot issue a registry token: {e}");
    ApiError::with_status(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL",
        "cannot issue a token",
    )
    .into_response()
}

async fn unauthorized(auth: &Auth, actor: &str, client: &str) -> Response {
    auth.audit(actor, client, "login", "/v2/token", "failed")
        .await;
    let mut response = ApiError::with_status(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "invalid credentials",
    )
    .into_response();
    response.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static(r#"Basic realm="pinfold""#),
    );
    response
}
