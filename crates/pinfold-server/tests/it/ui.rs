//! The web UI (`/`, `/ui/...`): what a person browsing would check — the repositories, a
//! repository's tags and what they point to, a tag's journal newest first, pages of 100, HTML
//! error pages, and headers that keep the browser from running anything. Drift events on the
//! page are checked in mirror.rs's drift story, the APT pages in apt_mirror.rs's story 2;
//! access control in auth.rs.

use reqwest::StatusCode;

use crate::harness::*;

/// GETs `path` and returns its status and HTML, after checking it is an HTML page with the
/// headers every UI page carries.
async fn page(server: &TestServer, path: &str) -> (StatusCode, String) {
    let resp = server.get(path).send().await.unwrap();
    let status = resp.status();
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("text/html; charset=utf-8"),
        "{path}"
    );
    let csp = header(&resp, "content-security-policy").unwrap_or_default();
    assert!(csp.starts_with("default-src 'none'"), "{path}: {csp}");
    assert_eq!(
        header(&resp, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    let html = resp.text().await.unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"), "{path}: {html}");
    assert!(!html.contains("<script"), "{path}: {html}");
    (status, html)
}

/// The position of `needle` in `html`, which must contain it.
fn at(html: &str, needle: &str) -> usize {
    html.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not on the page:\n{html}"))
}

#[tokio::test]
async fn repositories_tags_and_a_tags_journal_newest_first() {
    let server = TestServer::start().await;
    let (status, html) = page(&server, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("No repositories yet"), "{html}");
    assert!(html.contains("No open drift events"), "{html}");

    let first = server.push_image("team/app", "v1").await;
    let second = server.push_image("team/app", "v1").await;
    let base = server.push_image("team/base", "3.3").await;
    let (status, html) = page(&server, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        at(&html, r#"href="/ui/repositories/team/app""#)
            < at(&html, r#"href="/ui/repositories/team/base""#)
    );

    // The tag points at the second push; the page links its journal.
    let (status, html) = page(&server, "/ui/repositories/team/app").await;
    assert_eq!(status, StatusCode::OK);
    at(&html, r#"href="/ui/history/team/app/tags/v1""#);
    at(&html, second.digest.as_str());
    assert!(!html.contains(first.digest.as_str()), "{html}");
    at(&html, "application/vnd.oci.image.manifest.v1+json");
    at(&html, &format!(">{}<", second.manifest.len()));

    // The journal: both digests, the newest first, each move by a push.
    let (status, html) = page(&server, "/ui/history/team/app/tags/v1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<h1>team/app:v1</h1>"), "{html}");
    let newest = at(&html, &format!("<td><code>{}</code></td>", second.digest));
    let oldest = at(&html, &format!("<td><code>{}</code></td>", first.digest));
    assert!(newest < oldest, "newest first:\n{html}");
    assert_eq!(html.matches("<td>push</td>").count(), 2, "{html}");

    // A tag deleted is shown as such, with its journal kept.
    let resp = server
        .delete(&format!("/v2/team/base/manifests/{}", base.digest))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let (status, html) = page(&server, "/ui/history/team/base/tags/3.3").await;
    assert_eq!(status, StatusCode::OK);
    at(&html, "(deleted)");
    at(&html, "<td>delete</td>");
}

#[tokio::test]
async fn lists_come_in_pages_of_100_with_a_next_link() {
    let server = TestServer::start().await;
    let image = server.push_image("many/tags", "t000").await;
    for i in 1..=100 {
        server
            .push_manifest(
                "many/tags",
                &format!("t{i:03}"),
                OCI_MANIFEST,
                &image.manifest,
            )
            .await;
    }
    let (_, html) = page(&server, "/ui/repositories/many/tags").await;
    assert_eq!(
        html.matches(r#"href="/ui/history/many/tags/tags/"#).count(),
        100
    );
    at(&html, r#"href="/ui/history/many/tags/tags/t099""#);
    assert!(!html.contains("tags/t100\""), "{html}");
    at(&html, r#"href="/ui/repositories/many/tags?last=t099""#);
    let (status, html) = page(&server, "/ui/repositories/many/tags?last=t099").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        html.matches(r#"href="/ui/history/many/tags/tags/"#).count(),
        1
    );
    at(&html, r#"href="/ui/history/many/tags/tags/t100""#);
    assert!(!html.contains("Next page"), "{html}");
}

#[tokio::test]
async fn bad_and_unknown_pages_are_html_errors_and_change_nothing() {
    let server = TestServer::start().await;
    server.push_image("team/app", "v1").await;
    for (path, status, says) in [
        (
            "/ui/repositories/nobody/here",
            StatusCode::NOT_FOUND,
            "no repository nobody/here",
        ),
        (
            "/ui/repositories/Bad..Name",
            StatusCode::BAD_REQUEST,
            "is not a repository name",
        ),
        (
            "/ui/history/team/app/tags/never",
            StatusCode::NOT_FOUND,
            "team/app:never has no history",
        ),
        (
            "/ui/history/team/app/tags/bad:tag",
            StatusCode::BAD_REQUEST,
            "is not a tag",
        ),
        (
            "/ui/history/team/app",
            StatusCode::NOT_FOUND,
            "no such page",
        ),
        (
            "/ui/drift?before=yesterday",
            StatusCode::BAD_REQUEST,
            "before: invalid digit",
        ),
        (
            "/ui/drift?all=maybe",
            StatusCode::BAD_REQUEST,
            "all: provided string was not",
        ),
    ] {
        let (got, html) = page(&server, path).await;
        assert_eq!(got, status, "{path}");
        assert!(html.contains(says), "{path}: {html}");
    }
    // Nothing changed: the one repository and its tag.
    let (_, html) = page(&server, "/").await;
    assert_eq!(
        html.matches(r#"href="/ui/repositories/"#).count(),
        1,
        "{html}"
    );
    assert_eq!(
        server.get_json("/v2/team/app/tags/list").await["tags"],
        serde_json::json!(["v1"])
    );
}

#[tokio::test]
async fn the_apt_page_says_how_to_begin_when_there_is_nothing() {
    let server = TestServer::start().await;
    let (status, html) = page(&server, "/ui/apt").await;
    assert_eq!(status, StatusCode::OK);
    for says in [
        "None yet: publish a snapshot",
        "None yet: freeze a repository distribution",
        "None yet: create one",
    ] {
        assert!(html.contains(says), "{says:?}:\n{html}");
    }
}
