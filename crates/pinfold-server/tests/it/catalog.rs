//! `GET /v2/_catalog` with `n`/`last` pagination (distribution's extension; the spec no longer
//! defines it, so this follows distribution and the tag list's conventions).

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{assert_error, header, TestServer};

async fn page(server: &TestServer, path_and_query: &str) -> (Vec<String>, Option<String>) {
    let resp = server.get(path_and_query).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "GET {path_and_query}");
    let link = header(&resp, "link");
    let v: Value = resp.json().await.unwrap();
    let repos = v["repositories"]
        .as_array()
        .expect("repositories array")
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    (repos, link)
}

const REPOS: [&str; 6] = ["zeta/x/y", "alpha", "beta/two", "beta/one", "gamma", "beta"];

async fn populate(server: &TestServer) -> Vec<String> {
    for repo in REPOS {
        server.push_blob(repo, repo.as_bytes()).await;
    }
    let mut want: Vec<String> = REPOS.iter().map(|s| s.to_string()).collect();
    want.sort();
    want
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_lists_every_repository_in_order() {
    let server = TestServer::start().await;
    let (repos, link) = page(&server, "/v2/_catalog").await;
    assert!(repos.is_empty());
    assert!(link.is_none());
    let want = populate(&server).await;
    let (repos, link) = page(&server, "/v2/_catalog").await;
    assert_eq!(repos, want);
    assert!(link.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_pagination_walks_every_repository_once() {
    let server = TestServer::start().await;
    let want = populate(&server).await;
    for n in [1, 2, 4, 6, 50] {
        let mut all = Vec::new();
        let mut next = Some(format!("/v2/_catalog?n={n}"));
        let mut pages = 0;
        while let Some(path) = next.take() {
            pages += 1;
            assert!(pages <= 50, "pagination does not end");
            let (repos, link) = page(&server, &path).await;
            assert!(repos.len() <= n);
            if let Some(link) = link {
                let last = repos.last().expect("a page with a Link is not empty");
                assert_eq!(
                    link,
                    format!("</v2/_catalog?n={n}&last={last}>; rel=\"next\"")
                );
                next = link
                    .strip_prefix('<')
                    .and_then(|l| l.split_once('>'))
                    .map(|(t, _)| t.to_owned());
            }
            all.extend(repos);
        }
        assert_eq!(all, want, "n={n}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_n_zero_and_last() {
    let server = TestServer::start().await;
    populate(&server).await;
    let (repos, link) = page(&server, "/v2/_catalog?n=0").await;
    assert!(repos.is_empty());
    assert!(link.is_none());
    let (repos, _) = page(&server, "/v2/_catalog?last=beta/one").await;
    assert_eq!(repos, ["beta/two", "gamma", "zeta/x/y"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_bad_n_is_400() {
    let server = TestServer::start().await;
    let resp = server.get("/v2/_catalog?n=many").send().await.unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID").await;
}
