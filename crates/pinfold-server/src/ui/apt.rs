//! The APT pages: repositories, frozen snapshots (each with a link to what changed since the
//! one before it from the same source), publications (what hosts install from), and a
//! snapshot diff — story 2: a package reaches hosts only when someone switches a publication,
//! and the diff shows what that switch brings.

use axum::extract::State;
use axum::response::Response;
use maud::{html, Markup};
use pinfold_apt::diff::{PackageRef, VersionChange};
use pinfold_meta::{AptPublishSource, AptSnapshot};
use serde::Deserialize;

use super::page::{page, time_cell, UiError, UiQuery};
use crate::apt::AptService;

/// `GET /ui/apt`: repositories, snapshots and publications.
pub(super) async fn overview(State(apt): State<AptService>) -> Result<Response, UiError> {
    let meta = apt.meta();
    let repos = meta.apt_repos().await.map_err(UiError::internal)?;
    let mut snapshots = meta.apt_snapshots().await.map_err(UiError::internal)?;
    snapshots.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
    let publications = meta.apt_publications().await.map_err(UiError::internal)?;
    Ok(page(
        "APT",
        html! {
            h2 { "Publications" }
            p { "What hosts install from: " code { "deb <this server>/apt/<prefix> <distribution> <component>" } "." }
            @if publications.is_empty() {
                p { "None yet: publish a snapshot with " code { "pinfold apt publish" } "." }
            } @else {
                table {
                    thead { tr { th { "Published at" } th { "Shows" } th { "Generation" } th { "Changed" } th { "Indices" } } }
                    tbody {
                        @for p in &publications {
                            tr {
                                td {
                                    a href={ "/apt/" (p.prefix) "/dists/" (p.distribution) "/InRelease" } {
                                        "/apt/" (p.prefix) " " (p.distribution)
                                    }
                                }
                                td {
                                    @match &p.source {
                                        AptPublishSource::Snapshot { name } => { "snapshot " b { (name) } " (frozen)" }
                                        AptPublishSource::Repo { name, distribution } => { "repository " b { (name) } " " (distribution) " (live)" }
                                    }
                                }
                                td.num { (p.generation) }
                                (time_cell(p.updated_at))
                                td { @if p.needs_index() { "being regenerated" } @else { "current" } }
                            }
                        }
                    }
                }
            }
            h2 { "Snapshots" }
            @if snapshots.is_empty() {
                p { "None yet: freeze a repository distribution with " code { "pinfold apt snapshot" } "." }
            } @else {
                table {
                    thead { tr { th { "Snapshot" } th { "Of" } th { "Packages" } th { "Taken" } th { "Changes" } } }
                    tbody {
                        @for (i, s) in snapshots.iter().enumerate() {
                            tr {
                                td { b { (s.name) } }
                                td { (s.source_repo) " " (s.source_distribution) }
                                td.num { (s.packages) }
                                (time_cell(s.created_at))
                                td {
                                    @if let Some(before) = previous_of_same_source(&snapshots[..i], s) {
                                        a href=(diff_href(&before.name, &s.name)) {
                                            "since " (before.name)
                                        }
                                    } @else { "—" }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Repositories" }
            @if repos.is_empty() {
                p { "None yet: create one with " code { "pinfold apt repo create" } ", or upload a .deb." }
            } @else {
                table {
                    thead { tr { th { "Repository" } th { "Kind" } th { "Upstream" } th { "Components" } th { "Architectures" } th { "Created" } } }
                    tbody {
                        @for r in &repos {
                            tr {
                                td { b { (r.name) } }
                                td { (r.kind.as_str()) }
                                td {
                                    @if let Some(url) = &r.upstream_url {
                                        (url) " " (r.upstream_suite.as_deref().unwrap_or(""))
                                    } @else { "—" }
                                }
                                td { (list_or_all(&r.components)) }
                                td { (list_or_all(&r.architectures)) }
                                (time_cell(r.created_at))
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// The newest of `earlier` taken from the same repository distribution as `snapshot`.
fn previous_of_same_source<'a>(
    earlier: &'a [AptSnapshot],
    snapshot: &AptSnapshot,
) -> Option<&'a AptSnapshot> {
    earlier.iter().rev().find(|s| {
        s.source_repo == snapshot.source_repo
            && s.source_distribution == snapshot.source_distribution
    })
}

/// The diff page's address; names may hold `+`, which a query string must encode.
fn diff_href(from: &str, to: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("from", from)
        .append_pair("to", to)
        .finish();
    format!("/ui/apt/diff?{query}")
}

fn list_or_all(items: &[String]) -> String {
    if items.is_empty() {
        "all".to_owned()
    } else {
        items.join(", ")
    }
}

/// Query of the diff page.
#[derive(Debug, Deserialize)]
pub(super) struct DiffQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /ui/apt/diff?from=<snapshot>&to=<snapshot>`: what switching a publication from one
/// snapshot to the other changes for apt.
pub(super) async fn diff(
    State(apt): State<AptService>,
    UiQuery(query): UiQuery<DiffQuery>,
) -> Result<Response, UiError> {
    let (Some(from), Some(to)) = (query.from, query.to) else {
        return Err(UiError::bad_request(
            "name two snapshots: /ui/apt/diff?from=<snapshot>&to=<snapshot>".to_owned(),
        ));
    };
    for name in [&from, &to] {
        if apt
            .meta()
            .apt_snapshot(name)
            .await
            .map_err(UiError::internal)?
            .is_none()
        {
            return Err(UiError::not_found(format!("no snapshot {name}")));
        }
    }
    let changes = apt
        .snapshot_diff(&from, &to)
        .await
        .map_err(UiError::internal)?;
    Ok(page(
        &format!("{from} → {to}"),
        html! {
            p { a href="/ui/apt" { "All snapshots" } }
            @if changes.is_empty() {
                p { "No difference: apt would install the same versions from both." }
            }
            (version_changes("Upgraded", &changes.upgraded))
            (version_changes("Downgraded", &changes.downgraded))
            (packages("Added", &changes.added))
            (packages("Removed", &changes.removed))
        },
    ))
}

fn version_changes(title: &str, changes: &[VersionChange]) -> Markup {
    html! {
        @if !changes.is_empty() {
            h2 { (title) " (" (changes.len()) ")" }
            table {
                thead { tr { th { "Package" } th { "Architecture" } th { "From" } th { "To" } } }
                tbody {
                    @for c in changes {
                        tr { td { b { (c.name) } } td { (c.architecture) } td { (c.from) } td { (c.to) } }
                    }
                }
            }
        }
    }
}

fn packages(title: &str, packages: &[PackageRef]) -> Markup {
    html! {
        @if !packages.is_empty() {
            h2 { (title) " (" (packages.len()) ")" }
            table {
                thead { tr { th { "Package" } th { "Architecture" } th { "Version" } } }
                tbody {
                    @for p in packages {
                        tr { td { b { (p.name) } } td { (p.architecture) } td { (p.version) } }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plus_in_a_snapshot_name_survives_the_link() {
        assert_eq!(
            diff_href("docker+1", "docker-2"),
            "/ui/apt/diff?from=docker%2B1&to=docker-2"
        );
    }
}
