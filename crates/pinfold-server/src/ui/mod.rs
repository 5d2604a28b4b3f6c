//! The web UI at `/` and `/ui/`: read-only HTML pages over what the JSON API serves, for a
//! person with a browser — the repositories, a repository's tags, a tag's journal, the
//! drift events, and the APT repositories, snapshots, publications and snapshot diffs. No JavaScript; every value is escaped by `maud`. Access is checked by the auth
//! middleware like the API's reads (`auth/need.rs`), with a Basic challenge a browser answers.

mod apt;
mod page;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use pinfold_meta::{DriftEvent, DriftResolution, JournalEntry};
use pinfold_oci::{RepoName, Tag};
use serde::Deserialize;

use crate::registry::Registry;
use crate::AppState;
use page::{page, time_cell, UiError, UiQuery};

/// Rows on one page of a list.
const PAGE: u32 = 100;

/// The UI's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(repositories))
        .route("/ui/repositories/{*name}", get(repository))
        .route("/ui/history/{*path}", get(history))
        .route("/ui/drift", get(drift))
        .route("/ui/apt", get(apt::overview))
        .route("/ui/apt/diff", get(apt::diff))
}

/// `?last=` of a name-ordered list: the page after that name.
#[derive(Debug, Deserialize)]
pub struct AfterName {
    last: Option<String>,
}

/// `GET /`: the repositories, by name, a page at a time, and how many drift events are open.
async fn repositories(
    State(registry): State<Registry>,
    UiQuery(query): UiQuery<AfterName>,
) -> Result<Response, UiError> {
    let names = registry
        .meta()
        .list_repositories(Some(PAGE), query.last.as_deref())
        .await
        .map_err(UiError::internal)?;
    let open_drift = registry
        .meta()
        .drift_events(true, None, PAGE)
        .await
        .map_err(UiError::internal)?
        .len();
    Ok(page(
        "Repositories",
        html! {
            p {
                @if open_drift == 0 {
                    "No open drift events. "
                } @else {
                    a href="/ui/drift" {
                        (open_drift) @if open_drift == PAGE as usize { "+" }
                        " open drift event" @if open_drift != 1 { "s" }
                    }
                    " — upstream tags that moved away from what is pinned here. "
                }
                a href="/ui/drift?all=true" { "All drift events" }
            }
            @if names.is_empty() {
                p { "No repositories yet. Push an image, or pull one through a mirrored upstream." }
            } @else {
                table {
                    thead { tr { th { "Repository" } } }
                    tbody {
                        @for name in &names {
                            tr { td { a href={ "/ui/repositories/" (name) } { (name) } } }
                        }
                    }
                }
            }
            (next_link(&names, |n| format!("/?last={n}")))
        },
    ))
}

/// `GET /ui/repositories/<name>`: the repository's tags with the digest each points to.
async fn repository(
    State(registry): State<Registry>,
    headers: HeaderMap,
    Path(name): Path<String>,
    UiQuery(query): UiQuery<AfterName>,
) -> Result<Response, UiError> {
    let repo: RepoName = name
        .parse()
        .map_err(|e| UiError::bad_request(format!("{name:?} is not a repository name: {e}")))?;
    let tags = registry
        .meta()
        .list_tags(&repo, Some(PAGE), query.last.as_deref())
        .await
        .map_err(UiError::internal)?
        .ok_or_else(|| UiError::not_found(format!("no repository {repo}")))?;
    // The name clients reach this server by, as the browser did.
    let registry_host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("<registry>");
    let mut rows = Vec::with_capacity(tags.len());
    for tag in &tags {
        let manifest = registry
            .meta()
            .resolve_tag(&repo, tag)
            .await
            .map_err(UiError::internal)?;
        rows.push((tag, manifest));
    }
    Ok(page(
        repo.as_str(),
        html! {
            p {
                "Pull: " code { (registry_host) "/" (repo) ":<tag>" }
                " or " code { (registry_host) "/" (repo) "@<digest>" }
            }
            @if rows.is_empty() {
                p { "No tags: this repository holds only untagged manifests." }
            } @else {
                table {
                    thead { tr { th { "Tag" } th { "Digest" } th { "Media type" } th { "Size" } } }
                    tbody {
                        @for (tag, manifest) in &rows {
                            tr {
                                td { a href={ "/ui/history/" (repo) "/tags/" (tag) } { (tag) } }
                                @if let Some(m) = manifest {
                                    td { code { (m.digest) } }
                                    td { (m.media_type) }
                                    td.num { (m.size) }
                                } @else {
                                    td colspan="3" { "(deleted)" }
                                }
                            }
                        }
                    }
                }
            }
            (next_link(&tags, |t| format!("/ui/repositories/{repo}?last={t}")))
        },
    ))
}

/// `GET /ui/history/<name>/tags/<tag>`: every move of the tag, newest first.
async fn history(
    State(registry): State<Registry>,
    Path(path): Path<String>,
) -> Result<Response, UiError> {
    // Names contain `/`, tags do not: split at the last `/tags/`.
    let (name, tag) = path
        .rsplit_once("/tags/")
        .ok_or_else(|| UiError::not_found(format!("no such page: /ui/history/{path}")))?;
    let repo: RepoName = name
        .parse()
        .map_err(|e| UiError::bad_request(format!("{name:?} is not a repository name: {e}")))?;
    let tag: Tag = tag
        .parse()
        .map_err(|e| UiError::bad_request(format!("{tag:?} is not a tag: {e}")))?;
    let journal = registry
        .meta()
        .tag_history(&repo, &tag)
        .await
        .map_err(UiError::internal)?;
    if journal.is_empty() {
        return Err(UiError::not_found(format!("{repo}:{tag} has no history")));
    }
    Ok(page(
        &format!("{repo}:{tag}"),
        html! {
            p {
                "Every digest this tag has pointed to, newest first. Each stays pullable by "
                "digest while the journal names it. "
                a href={ "/ui/repositories/" (repo) } { "All tags of " (repo) }
            }
            (journal_table(&journal))
        },
    ))
}

/// The journal rows, newest first.
fn journal_table(journal: &[JournalEntry]) -> Markup {
    html! {
        table {
            thead { tr { th { "When" } th { "Digest" } th { "Before" } th { "Source" } th { "By" } } }
            tbody {
                @for entry in journal.iter().rev() {
                    tr {
                        (time_cell(entry.at))
                        td { @if let Some(d) = &entry.new_digest { code { (d) } } @else { "(deleted)" } }
                        td { @if let Some(d) = &entry.previous_digest { code { (d) } } @else { "—" } }
                        td { (entry.source.as_str()) }
                        td { (entry.actor) }
                    }
                }
            }
        }
    }
}

/// Query of the drift page.
#[derive(Debug, Deserialize)]
pub struct DriftQuery {
    /// Include resolved events.
    #[serde(default)]
    all: bool,
    /// Events with a smaller id: the next page.
    before: Option<i64>,
}

/// `GET /ui/drift[?all=true]`: upstream moves the mirror did not follow, newest first, with
/// what changed when the inspect library explained it.
async fn drift(
    State(registry): State<Registry>,
    UiQuery(query): UiQuery<DriftQuery>,
) -> Result<Response, UiError> {
    let events = registry
        .meta()
        .drift_events(!query.all, query.before, PAGE)
        .await
        .map_err(UiError::internal)?;
    Ok(page(
        if query.all {
            "Drift events"
        } else {
            "Open drift events"
        },
        html! {
            p {
                "Accept a move with " code { "pinfold promote <ref>" } ". "
                @if query.all { a href="/ui/drift" { "Open events only" } }
                @else { a href="/ui/drift?all=true" { "Include resolved events" } }
            }
            @if events.is_empty() {
                p { "None." }
            } @else {
                table {
                    thead { tr {
                        th { "Tag" } th { "Pinned" } th { "Upstream now" } th { "First seen" }
                        th { "Last seen" } th { "Resolution" } th { "What changed" }
                    } }
                    tbody { @for event in &events { (drift_row(event)) } }
                }
            }
            (next_link(&events, |e| format!("/ui/drift?all={}&before={}", query.all, e.id)))
        },
    ))
}

fn drift_row(event: &DriftEvent) -> Markup {
    let explained = event.explanation.as_ref().map(|value| {
        value["summary"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| {
                value["error"]
                    .as_str()
                    .map(|e| format!("not explained: {e}"))
            })
            .unwrap_or_else(|| "no difference found".to_owned())
    });
    html! {
        tr {
            td {
                a href={ "/ui/history/" (event.repository) "/tags/" (event.tag) } {
                    (event.repository) ":" (event.tag)
                }
            }
            td { code { (event.pinned_digest) } }
            td { code { (event.upstream_digest) } }
            (time_cell(event.first_seen))
            (time_cell(event.last_seen))
            td {
                (event.resolution.map_or("open", DriftResolution::as_str))
            }
            td { (explained.as_deref().unwrap_or("not explained yet")) }
        }
    }
}

/// A "Next page" link to `href(last row)` when `rows` filled a whole page.
fn next_link<T>(rows: &[T], href: impl FnOnce(&T) -> String) -> Markup {
    let next = rows
        .last()
        .filter(|_| rows.len() == PAGE as usize)
        .map(href);
    html! {
        @if let Some(href) = next { p { a href=(href) { "Next page →" } } }
    }
}

#[cfg(test)]
mod tests {
    use pinfold_meta::TagMoveSource;
    use time::OffsetDateTime;

    use super::*;

    #[test]
    fn journal_values_are_escaped() {
        let entry = JournalEntry {
            id: 1,
            repository: "team/app".parse().unwrap(),
            tag: "v1".parse().unwrap(),
            previous_digest: None,
            new_digest: None,
            at: OffsetDateTime::UNIX_EPOCH,
            actor: "<script>alert(1)</script>".into(),
            source: TagMoveSource::Push,
        };
        let html = journal_table(&[entry]).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
    }
}
