//! `GET /api/v1/repositories/<name>/tags/<tag>/history`: the tag journal of one tag.

use axum::extract::{Path, State};
use axum::Json;
use pinfold_meta::JournalEntry;
use pinfold_oci::{RepoName, Tag};

use super::error::ApiError;
use crate::registry::Registry;

/// Splits `<name>/tags/<tag>/history` (names contain `/`, so from the right).
fn parse(path: &str) -> Result<(RepoName, Tag), ApiError> {
    let not_found =
        || ApiError::not_found(format!("no such resource: /api/v1/repositories/{path}"));
    let rest = path.strip_suffix("/history").ok_or_else(not_found)?;
    let (name, tag) = rest.rsplit_once("/tags/").ok_or_else(not_found)?;
    let repo = name
        .parse::<RepoName>()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let tag = tag
        .parse::<Tag>()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok((repo, tag))
}

/// Every move of the tag, oldest first; 404 when the tag was never set.
pub async fn repository_path(
    State(registry): State<Registry>,
    Path(path): Path<String>,
) -> Result<Json<Vec<JournalEntry>>, ApiError> {
    let (repo, tag) = parse(&path)?;
    let history = registry.tag_history(&repo, &tag).await?;
    if history.is_empty() {
        return Err(ApiError::not_found(format!("{repo}:{tag} has no history")));
    }
    Ok(Json(history))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_from_the_right() {
        let (repo, tag) = parse("a/tags/b/tags/v1/history").unwrap();
        assert_eq!((repo.as_str(), tag.as_str()), ("a/tags/b", "v1"));
        assert!(parse("a/tags/v1").is_err());
        assert!(parse("A/tags/v1/history").is_err());
        assert!(parse("a/tags/v:1/history").is_err());
    }
}
