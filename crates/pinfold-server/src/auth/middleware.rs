//! The layer in front of every handler: authenticate, authorize, audit.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::need::{need, Need, Requirement, Surface};
use super::{Access, Auth, AuthFailure, Caller, ClientAddr, Via, ACTOR, SERVICE};
use crate::api::error::ApiError;
use crate::apt::error::AptError;
use crate::v2::error::{ErrorCode, OciError};
use crate::AppState;

/// Why a request is refused.
enum Refusal {
    /// No credentials where some are needed (401).
    NoCredentials,
    /// Credentials malformed or wrong (401).
    BadCredentials,
    /// A registry token without the needed access (401 `insufficient_scope`, so the client
    /// fetches a token for the scope in the challenge).
    InsufficientScope,
    /// Valid credentials without the permission (403).
    Denied,
}

/// The client's address, for the audit log.
fn client(request: &Request) -> String {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
}

/// Runs before every handler (see the module docs of [`crate::auth`]).
pub async fn require(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let auth = &state.auth;
    let need = need(request.method(), request.uri());
    let client = client(&request);
    let head = request.method() == Method::HEAD;
    let mut request = request;
    request.extensions_mut().insert(ClientAddr(client.clone()));
    if !auth.enabled() {
        // Open mode (loopback only, or --insecure-open): everyone is `anonymous`, but writes
        // are still audited.
        let caller = Caller {
            principal: pinfold_auth::Principal::anonymous(),
            via: Via::Anonymous,
            expires: None,
        };
        request
            .extensions_mut()
            .insert(Access::new(auth.clone(), caller, client.clone()));
        let response = next.run(request).await;
        audit_write(auth, &need, "anonymous", &client, response.status()).await;
        return response;
    }
    let caller = match auth.authenticate(request.headers()).await {
        Ok(caller) => caller,
        Err(failure) => {
            let claimed = match &failure {
                AuthFailure::Rejected { claimed } => claimed.clone(),
                AuthFailure::Malformed => None,
            };
            // Never the secret: only the name the caller claimed.
            let actor = claimed.as_deref().unwrap_or("unknown");
            tracing::info!(actor, client, "login failed");
            auth.audit(actor, &client, "login", request.uri().path(), "failed")
                .await;
            return refuse(auth, &need, &request, Refusal::BadCredentials, head);
        }
    };
    if let Err(refusal) = authorize(auth, &need, &caller) {
        if need.audit.is_some() {
            audit_write(
                auth,
                &need,
                caller.principal.actor(),
                &client,
                StatusCode::FORBIDDEN,
            )
            .await;
        }
        return refuse(auth, &need, &request, refusal, head);
    }
    let actor = caller.principal.actor().to_owned();
    request
        .extensions_mut()
        .insert(Access::new(auth.clone(), caller, client.clone()));
    let response = ACTOR.scope(actor.clone(), next.run(request)).await;
    audit_write(auth, &need, &actor, &client, response.status()).await;
    response
}

fn authorize(auth: &Auth, need: &Need, caller: &Caller) -> Result<(), Refusal> {
    let principal = &caller.principal;
    let anonymous = caller.via == Via::Anonymous;
    let allowed = match &need.requirement {
        Requirement::Open => true,
        Requirement::Authenticated => !anonymous && caller.via != Via::DeployKey,
        _ if caller.via == Via::DeployKey => need.deploy_key_ok,
        Requirement::Repo(repo, action) => auth.authorizer().allowed(principal, repo, *action),
        Requirement::Global(action) => auth.authorizer().allowed_global(principal, *action),
    };
    if allowed {
        Ok(())
    } else if anonymous {
        Err(Refusal::NoCredentials)
    } else if caller.via == Via::Jwt {
        Err(Refusal::InsufficientScope)
    } else {
        Err(Refusal::Denied)
    }
}

async fn audit_write(auth: &Auth, need: &Need, actor: &str, client: &str, status: StatusCode) {
    let Some((action, target)) = &need.audit else {
        return;
    };
    let outcome = if status == StatusCode::ACCEPTED {
        // A mount that could not be done: an upload session was opened instead.
        "accepted".to_owned()
    } else if status.is_success() {
        "ok".to_owned()
    } else if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED {
        "denied".to_owned()
    } else {
        format!("failed {}", status.as_u16())
    };
    auth.audit(actor, client, action, target, &outcome).await;
}

/// The Bearer challenge of the Docker token specification.
fn bearer_challenge(auth: &Auth, request: &Request, need: &Need, error: Option<&str>) -> String {
    let realm = match &auth.config().realm {
        Some(realm) => realm.clone(),
        None => {
            let host = request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| h.chars().all(|c| c.is_ascii_graphic()) && !h.contains('"'))
                .unwrap_or("127.0.0.1");
            format!("http://{host}/v2/token")
        }
    };
    let mut challenge = format!(r#"Bearer realm="{realm}",service="{SERVICE}""#);
    if let Some(scope) = &need.challenge_scope {
        challenge.push_str(&format!(r#",scope="{scope}""#));
    }
    if let Some(error) = error {
        challenge.push_str(&format!(r#",error="{error}""#));
    }
    challenge
}

fn refuse(auth: &Auth, need: &Need, request: &Request, refusal: Refusal, head: bool) -> Response {
    let unauthorized = !matches!(refusal, Refusal::Denied);
    match need.surface {
        Surface::V2 => {
            if unauthorized {
                let (error, message) = match refusal {
                    Refusal::BadCredentials => (Some("invalid_token"), "invalid credentials"),
                    Refusal::InsufficientScope => (
                        Some("insufficient_scope"),
                        "token does not grant this access",
                    ),
                    _ => (None, "authentication required"),
                };
                let challenge = bearer_challenge(auth, request, need, error);
                let value = HeaderValue::from_str(&challenge)
                    .unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
                OciError::new(ErrorCode::Unauthorized)
                    .detail(message)
                    .with_header(header::WWW_AUTHENTICATE, value)
                    .for_head(head)
                    .into_response()
            } else {
                OciError::new(ErrorCode::Denied)
                    .for_head(head)
                    .into_response()
            }
        }
        Surface::Api => {
            let mut response = if unauthorized {
                ApiError::with_status(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHORIZED",
                    "authentication required: send Basic user:password or user:token, or a Bearer API token",
                )
                .into_response()
            } else {
                ApiError::with_status(
                    StatusCode::FORBIDDEN,
                    "DENIED",
                    "the credentials do not allow this",
                )
                .into_response()
            };
            if unauthorized {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="pinfold""#),
                );
            }
            response
        }
        Surface::Apt => {
            if unauthorized {
                AptError::unauthorized().into_response()
            } else {
                AptError::forbidden("Forbidden: the credentials do not allow this").into_response()
            }
        }
    }
}
