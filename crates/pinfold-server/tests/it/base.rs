//! `GET /v2/`: the API version check (distribution-spec, "Determining Support", end-1).

use reqwest::StatusCode;

use crate::harness::{header, TestServer};

#[tokio::test(flavor = "multi_thread")]
async fn version_check_is_200_with_api_version_header() {
    let server = TestServer::start().await;
    let resp = server.get("/v2/").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn version_check_answers_head_without_body() {
    let server = TestServer::start().await;
    let resp = server.head("/v2/").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );
    assert!(resp.bytes().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_v2_answer_carries_the_api_version_header() {
    let server = TestServer::start().await;
    // An error answer too: clients probe with any request.
    let resp = server.get("/v2/nothing/tags/list").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        header(&resp, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );
}
