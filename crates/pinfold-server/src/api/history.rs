//! `/api/v1/repositories/<name>/tags/<tag>/...`: the tag journal of one tag
//! (`GET .../history[?at=<RFC3339>]`) and accepting an upstream move (`POST .../promote`).

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pinfold_meta::JournalEntry;
use pinfold_oci::{Digest, RepoName, Tag};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::ApiError;
use crate::registry::Registry;

/// Splits `<name>/tags/<tag>/<action>` (names contain `/`, so from the right).
fn parse(path: &str, action: &str) -> Result<(RepoName, Tag), ApiError> {
    let not_found =
        || ApiError::not_found(format!("no such resource: /api/v1/repositories/{path}"));
    let rest = path
        .strip_suffix(action)
        .and_then(|r| r.strip_suffix('/'))
        .ok_or_else(not_found)?;
    let (name, tag) = rest.rsplit_once("/tags/").ok_or_else(not_found)?;
    let repo = name
        .parse::<RepoName>()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let tag = tag
        .parse::<Tag>()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok((repo, tag))
}

/// Query of `GET .../history`.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    /// A moment (RFC 3339): answer what the tag resolved to then.
    at: Option<String>,
}

/// What a tag resolved to at a moment (`?at=`).
#[derive(Debug, Serialize)]
pub struct AtMoment {
    repository: RepoName,
    tag: Tag,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    /// The digest then; `null` when the tag did not exist (yet, or any more).
    digest: Option<Digest>,
    /// The journal row that set it (`null` before the first).
    since: Option<JournalEntry>,
}

/// `GET`: every move of the tag, oldest first, or with `?at=` what it pointed to at that
/// moment; 404 when the tag was never set.
pub async fn get(
    State(registry): State<Registry>,
    Path(path): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    let (repo, tag) = parse(&path, "history")?;
    let history = registry.tag_history(&repo, &tag).await?;
    if history.is_empty() {
        return Err(ApiError::not_found(format!("{repo}:{tag} has no history")));
    }
    let Some(at) = query.at else {
        return Ok(Json(history).into_response());
    };
    let at = OffsetDateTime::parse(&at, &time::format_description::well_known::Rfc3339)
        .map_err(|e| ApiError::invalid(format!("at={at:?} is not an RFC 3339 time: {e}")))?;
    let since = history.into_iter().rev().find(|entry| entry.at <= at);
    Ok(Json(AtMoment {
        repository: repo,
        tag,
        at,
        digest: since.as_ref().and_then(|e| e.new_digest.clone()),
        since,
    })
    .into_response())
}

/// Body of `POST .../promote`; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// The digest to point the tag at; default: what the upstream says now.
    digest: Option<String>,
    /// Who promotes (recorded in the journal) on a server without users; default `anonymous`.
    /// With users, the authenticated user is recorded and this is ignored.
    actor: Option<String>,
}

/// Answer of `POST .../promote`.
#[derive(Debug, Serialize)]
pub struct PromoteAnswer {
    repository: RepoName,
    tag: Tag,
    previous: Option<Digest>,
    digest: Digest,
    /// False when the tag already pointed there (nothing journaled).
    moved: bool,
}

/// Longest actor name recorded.
const MAX_ACTOR_LEN: usize = 256;

/// `POST`: points the tag at the requested (or the upstream's current) digest, journaled as
/// a promotion, and closes the drift events it settles.
pub async fn promote(
    State(registry): State<Registry>,
    Path(path): Path<String>,
    body: Option<Json<PromoteRequest>>,
) -> Result<Json<PromoteAnswer>, ApiError> {
    let (repo, tag) = parse(&path, "promote")?;
    let request = body.map(|Json(b)| b).unwrap_or_default();
    let digest = request
        .digest
        .as_deref()
        .map(str::parse::<Digest>)
        .transpose()
        .map_err(|e| ApiError::invalid(format!("digest: {e}")))?;
    // With authentication on, the journal names who authenticated, not who they claim to be.
    let actor = crate::auth::current_actor()
        .or(request.actor)
        .unwrap_or_else(|| "anonymous".to_owned());
    if actor.is_empty() || actor.len() > MAX_ACTOR_LEN || actor.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "actor must be 1 to {MAX_ACTOR_LEN} printable characters"
        )));
    }
    let promoted = registry
        .promote(&repo, &tag, digest.as_ref(), &actor)
        .await?;
    Ok(Json(PromoteAnswer {
        repository: repo,
        tag,
        previous: promoted.previous,
        digest: promoted.digest,
        moved: promoted.moved,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_from_the_right() {
        let (repo, tag) = parse("a/tags/b/tags/v1/history", "history").unwrap();
        assert_eq!((repo.as_str(), tag.as_str()), ("a/tags/b", "v1"));
        let (repo, tag) = parse("docker.io/library/ruby/tags/2.7/promote", "promote").unwrap();
        assert_eq!(
            (repo.as_str(), tag.as_str()),
            ("docker.io/library/ruby", "2.7")
        );
        assert!(parse("a/tags/v1", "history").is_err());
        assert!(parse("a/tags/v1/history", "promote").is_err());
        assert!(parse("A/tags/v1/history", "history").is_err());
        assert!(parse("a/tags/v:1/history", "history").is_err());
    }
}
