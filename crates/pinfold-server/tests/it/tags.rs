//! `GET /v2/<name>/tags/list` (end-8a, end-8b): order, `n`/`last` pagination and `Link`.

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{assert_error, header, TestServer, OCI_MANIFEST};

/// Pushes one image under every tag of `tags`, in the given order.
async fn tag_all(server: &TestServer, repo: &str, tags: &[&str]) {
    let image = server.push_image(repo, tags[0]).await;
    for tag in &tags[1..] {
        server
            .push_manifest(repo, tag, OCI_MANIFEST, &image.manifest)
            .await;
    }
}

/// GETs one page: (tags, Link header).
async fn page(server: &TestServer, path_and_query: &str) -> (Vec<String>, Option<String>) {
    let resp = server.get(path_and_query).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "GET {path_and_query}");
    let link = header(&resp, "link");
    let v: Value = resp.json().await.unwrap();
    let tags = v["tags"]
        .as_array()
        .map(|a| a.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    (tags, link)
}

/// Follows `Link: <...>; rel="next"` from `/v2/<repo>/tags/list?n=<n>` to the end, checking every
/// header's exact form, and returns every tag seen.
async fn walk(server: &TestServer, repo: &str, n: usize) -> Vec<String> {
    let mut all = Vec::new();
    let mut next = Some(format!("/v2/{repo}/tags/list?n={n}"));
    let mut pages = 0;
    while let Some(path) = next.take() {
        pages += 1;
        assert!(pages <= 100, "pagination does not end");
        let (tags, link) = page(server, &path).await;
        assert!(
            tags.len() <= n,
            "page {path} has {} tags, n={n}",
            tags.len()
        );
        if let Some(link) = link {
            let last = tags.last().expect("a page with a Link is not empty");
            assert_eq!(
                link,
                format!("</v2/{repo}/tags/list?n={n}&last={last}>; rel=\"next\""),
                "Link after {path}"
            );
            let target = link
                .strip_prefix('<')
                .and_then(|l| l.split_once('>'))
                .map(|(t, _)| t.to_owned())
                .unwrap();
            next = Some(target);
        } else {
            // Spec: fewer than n results only when the list is exhausted or a Link is given.
            // (Exhausted here, since there is no Link.)
        }
        all.extend(tags);
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_are_listed_in_lexical_order() {
    let server = TestServer::start().await;
    let tags = [
        "v10", "v2", "latest", "1.0", "v1", "alpha_1", "a-b", "z", "_x", "1.0.1",
    ];
    tag_all(&server, "lex/repo", &tags).await;
    let resp = server.get("/v2/lex/repo/tags/list").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("application/json")
    );
    assert!(header(&resp, "link").is_none(), "no Link without n");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["name"], "lex/repo");
    let got: Vec<&str> = v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let mut want = tags.to_vec();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn mixed_case_tags_are_in_case_insensitive_order() {
    // distribution-spec, "Listing Tags": "the tags MUST be in lexical order (i.e.
    // case-insensitive alphanumeric order)".
    let server = TestServer::start().await;
    tag_all(&server, "case", &["b", "C", "a", "B1"]).await;
    let (tags, _) = page(&server, "/v2/case/tags/list").await;
    assert_eq!(tags, ["a", "b", "B1", "C"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn pagination_walks_every_tag_once() {
    let server = TestServer::start().await;
    let tags = ["t1", "t2", "t3", "t4", "t5", "t6", "t7"];
    tag_all(&server, "pages", &tags).await;
    for n in [1, 2, 3, 6, 7, 8, 100] {
        assert_eq!(walk(&server, "pages", n).await, tags, "n={n}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_first_page_has_n_tags_and_a_link() {
    let server = TestServer::start().await;
    tag_all(&server, "first", &["a", "b", "c", "d", "e"]).await;
    let (tags, link) = page(&server, "/v2/first/tags/list?n=2").await;
    assert_eq!(tags, ["a", "b"]);
    assert_eq!(
        link.as_deref(),
        Some("</v2/first/tags/list?n=2&last=b>; rel=\"next\"")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn last_alone_starts_after_the_given_tag() {
    let server = TestServer::start().await;
    tag_all(&server, "after", &["a", "b", "c", "d"]).await;
    let (tags, _) = page(&server, "/v2/after/tags/list?last=b").await;
    assert_eq!(tags, ["c", "d"]);
    // `last` need not be an existing tag.
    let (tags, _) = page(&server, "/v2/after/tags/list?last=bb&n=1").await;
    assert_eq!(tags, ["c"]);
    let (tags, link) = page(&server, "/v2/after/tags/list?last=d").await;
    assert!(tags.is_empty());
    assert!(link.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn n_zero_is_an_empty_list_without_link() {
    // Spec: "When n is zero, this endpoint MUST return an empty list, and MUST NOT include a
    // Link header."
    let server = TestServer::start().await;
    tag_all(&server, "zero", &["a", "b"]).await;
    let (tags, link) = page(&server, "/v2/zero/tags/list?n=0").await;
    assert!(tags.is_empty());
    assert!(link.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn repository_without_tags_lists_none() {
    let server = TestServer::start().await;
    let image = crate::harness::Image::random();
    server.push_image_blobs("untagged", &image).await;
    server
        .push_manifest(
            "untagged",
            image.digest.as_str(),
            OCI_MANIFEST,
            &image.manifest,
        )
        .await;
    let resp = server.get("/v2/untagged/tags/list").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["name"], "untagged");
    assert!(v["tags"].as_array().is_none_or(|a| a.is_empty()));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_n_is_400() {
    let server = TestServer::start().await;
    tag_all(&server, "badn", &["a"]).await;
    for n in ["abc", "-1", "1.5", "99999999999999999999", "0x10"] {
        let resp = server
            .get(&format!("/v2/badn/tags/list?n={n}"))
            .send()
            .await
            .unwrap();
        // The spec names no code for this; distribution answers PAGINATION_NUMBER_INVALID.
        assert_error(resp, StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID").await;
    }
}
