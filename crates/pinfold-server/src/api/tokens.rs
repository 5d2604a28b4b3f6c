//! `/api/v1/tokens`: API tokens. A user manages their own; an admin (global `admin`) anyone's.
//!
//! | request | answer |
//! |---|---|
//! | `POST /api/v1/tokens` `{"user","scope","expires_in_seconds"}` | 201, the token with its secret (shown once) |
//! | `GET /api/v1/tokens[?user=U]` | the tokens (never secrets) |
//! | `DELETE /api/v1/tokens/{id}` | 200, the revoked token |

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use pinfold_auth::{new_token_secret, sha256_hex, Action, Scope};
use pinfold_meta::ApiToken;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::ApiError;
use crate::auth::{Access, Auth, Caller, ClientAddr};
use crate::AppState;

/// Longest lifetime a token may be given: ten years.
const MAX_LIFETIME_SECONDS: u64 = 10 * 366 * 86_400;

/// Body of `POST /api/v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Whose token; default the caller.
    user: Option<String>,
    /// `repository:<glob>:<actions> ...`; what the token may do at most (the user's
    /// permissions still apply).
    scope: String,
    /// Lifetime; default none (until revoked).
    expires_in_seconds: Option<u64>,
}

/// A token as listed (no secret).
#[derive(Debug, Serialize)]
pub struct TokenView {
    id: String,
    user: String,
    scope: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    revoked_at: Option<OffsetDateTime>,
    /// Only in the answer to `POST`, once.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl From<ApiToken> for TokenView {
    fn from(t: ApiToken) -> TokenView {
        TokenView {
            id: t.id,
            user: t.user,
            scope: t.scope,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
            secret: None,
        }
    }
}

/// The caller's name and whether they are an admin (everyone is, with authentication off).
fn who(auth: &Auth, caller: &Caller) -> (String, bool) {
    match caller {
        caller if auth.enabled() => (
            caller.principal.actor().to_owned(),
            auth.authorizer()
                .allowed_global(&caller.principal, Action::Admin),
        ),
        _ => ("anonymous".to_owned(), true),
    }
}

/// Refuses a token wider than the credential asking for it (issue 16): every entry of
/// `scope` must be allowed by the caller's permission rules **and** by the caller's own
/// credential's scope (an API token's, a registry token's access), and the new token must
/// expire no later than that credential. Asking for more is a 403 naming what was refused;
/// nothing is narrowed silently.
fn within_credential(
    auth: &Auth,
    caller: &Caller,
    scope: &Scope,
    expires_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let refused = auth.authorizer().refused_in(&caller.principal, scope);
    if !refused.is_empty() {
        return Err(ApiError::with_status(
            StatusCode::FORBIDDEN,
            "DENIED",
            format!(
                "a token may not do more than the credential that creates it; refused: {}",
                refused.join(" ")
            ),
        ));
    }
    let Some(limit) = caller.expires else {
        return Ok(());
    };
    let latest = OffsetDateTime::from_unix_timestamp(limit).unwrap_or(now);
    if expires_at.is_none_or(|at| at > latest) {
        let left = (latest - now).whole_seconds().max(0);
        return Err(ApiError::with_status(
            StatusCode::FORBIDDEN,
            "DENIED",
            format!(
                "the credential used expires in {left} s; a token it creates must expire no \
                 later: ask for expires_in_seconds of at most {left}"
            ),
        ));
    }
    Ok(())
}

fn forbidden() -> ApiError {
    ApiError::with_status(
        StatusCode::FORBIDDEN,
        "DENIED",
        "only an admin may manage another user's tokens",
    )
}

/// `POST /api/v1/tokens`.
pub async fn create(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    Json(body): Json<CreateToken>,
) -> Result<Response, ApiError> {
    let auth = &state.auth;
    let caller = access.caller();
    let (actor, admin) = who(auth, caller);
    let user = body.user.unwrap_or_else(|| actor.clone());
    if user != actor && !admin {
        return Err(forbidden());
    }
    if !auth.user_exists(&user) {
        return Err(ApiError::invalid(format!("no such user: {user:?}")));
    }
    let scope: Scope = body
        .scope
        .parse()
        .map_err(|e| ApiError::invalid(format!("scope: {e}")))?;
    let now = OffsetDateTime::now_utc();
    let expires_at = match body.expires_in_seconds {
        Some(0) => return Err(ApiError::invalid("expires_in_seconds must be positive")),
        Some(s) if s > MAX_LIFETIME_SECONDS => {
            return Err(ApiError::invalid(
                "expires_in_seconds is more than ten years",
            ))
        }
        Some(s) => Some(now + time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX))),
        None => None,
    };
    if auth.enabled() {
        within_credential(auth, caller, &scope, expires_at, now)?;
    }
    let (id, secret) = new_token_secret().map_err(|_| {
        ApiError::with_status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "random source failed",
        )
    })?;
    let token = ApiToken {
        id,
        user,
        secret_sha256: sha256_hex(secret.as_bytes()),
        scope: scope.to_string(),
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    auth.meta()
        .create_token(&token)
        .await
        .map_err(ApiError::from)?;
    auth.audit(
        &actor,
        &client,
        "token-create",
        &format!("{} ({})", token.id, token.user),
        "ok",
    )
    .await;
    let mut view = TokenView::from(token);
    view.secret = Some(secret);
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Query of `GET /api/v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    user: Option<String>,
}

/// `GET /api/v1/tokens`: the caller's tokens, or (admin) everyone's or `?user=`'s.
pub async fn list(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let auth = &state.auth;
    let caller = access.caller();
    let (actor, admin) = who(auth, caller);
    let user = match (query.user, admin) {
        (Some(user), true) => Some(user),
        (None, true) => None,
        (Some(user), false) if user == actor => Some(user),
        (Some(_), false) => return Err(forbidden()),
        (None, false) => Some(actor),
    };
    let tokens = auth
        .meta()
        .list_tokens(user.as_deref())
        .await
        .map_err(ApiError::from)?;
    Ok(Json(tokens.into_iter().map(TokenView::from).collect()))
}

/// `DELETE /api/v1/tokens/{id}`: revokes (the record stays, for the audit trail).
pub async fn revoke(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    let auth = &state.auth;
    let caller = access.caller();
    let (actor, admin) = who(auth, caller);
    let owner = auth
        .meta()
        .list_tokens(None)
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no token {id:?}")))?;
    if owner.user != actor && !admin {
        // Same answer as for a missing token: ids of others' tokens are not disclosed.
        return Err(ApiError::not_found(format!("no token {id:?}")));
    }
    let now = OffsetDateTime::now_utc();
    auth.meta()
        .revoke_token(&id, now)
        .await
        .map_err(ApiError::from)?;
    auth.clear_cache();
    auth.audit(
        &actor,
        &client,
        "token-revoke",
        &format!("{id} ({})", owner.user),
        "ok",
    )
    .await;
    let revoked = TokenView {
        revoked_at: owner.revoked_at.or(Some(now)),
        ..TokenView::from(owner)
    };
    Ok(Json(revoked))
}
