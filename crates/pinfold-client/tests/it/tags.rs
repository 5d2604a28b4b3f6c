//! `Link` pagination of `tags/list`. distribution 2.8 does not paginate tags, so an axum app
//! serves pages the way distribution 3 and the OCI spec do (`?n=&last=`, relative `Link`).

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use pinfold_client::{ClientConfig, ClientError, RegistryClient};
use serde::Deserialize;

use crate::redirect::serve;

const TAGS: [&str; 5] = ["a", "b", "c", "d", "e"];

#[derive(Deserialize)]
struct Page {
    n: Option<usize>,
    last: Option<String>,
}

/// Pages through `TAGS`; when `endless`, every page links to the next one.
async fn tags_list(State(endless): State<bool>, Query(page): Query<Page>) -> impl IntoResponse {
    let n = page.n.unwrap_or(TAGS.len());
    let rest: Vec<&str> = TAGS
        .iter()
        .copied()
        .filter(|t| page.last.as_deref().is_none_or(|l| *t > l))
        .collect();
    let (this, more) = rest.split_at(n.min(rest.len()));
    let mut headers = Vec::new();
    if endless || !more.is_empty() {
        let last = this.last().copied().unwrap_or("a");
        headers.push((
            header::LINK,
            format!("</v2/app/tags/list?n={n}&last={last}>; rel=\"next\""),
        ));
    }
    let body = serde_json::json!({"name": "app", "tags": this});
    (axum::response::AppendHeaders(headers), axum::Json(body))
}

async fn start(endless: bool) -> String {
    let app = axum::Router::new()
        .route("/v2/app/tags/list", axum::routing::get(tags_list))
        .with_state(endless);
    format!("127.0.0.1:{}", serve(app).await)
}

fn client(addr: &str, page: usize, max_pages: usize) -> RegistryClient {
    RegistryClient::new(
        addr,
        ClientConfig {
            tag_page_size: Some(page),
            max_tag_pages: max_pages,
            ..ClientConfig::default()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn pages_are_followed_to_the_end() {
    let addr = start(false).await;
    let repo = "app".parse().unwrap();
    for page in [1, 2, 5, 100] {
        let got = client(&addr, page, 10).tags(&repo).await.unwrap();
        let got: Vec<_> = got.iter().map(|t| t.as_str()).collect();
        assert_eq!(got, TAGS, "page size {page}");
    }
}

#[tokio::test]
async fn pagination_is_bounded() {
    let repo = "app".parse().unwrap();
    // Five tags at two per page need three pages.
    let finite = start(false).await;
    assert!(matches!(
        client(&finite, 2, 2).tags(&repo).await,
        Err(ClientError::TooManyPages { limit: 2 })
    ));
    let endless = start(true).await;
    assert!(matches!(
        client(&endless, 2, 50).tags(&repo).await,
        Err(ClientError::TooManyPages { limit: 50 })
    ));
}
