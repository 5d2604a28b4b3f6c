//! The tag journal: `GET /api/v1/repositories/<name>/tags/<tag>/history`. Every move of a tag
//! is recorded, in order, with the previous and new digests and why it moved.

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{TestServer, OCI_MANIFEST};

async fn history(server: &TestServer, repo: &str, tag: &str) -> Vec<Value> {
    let resp = server
        .get(&format!("/api/v1/repositories/{repo}/tags/{tag}/history"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "history of {repo}:{tag}");
    let v: Value = resp.json().await.unwrap();
    v.as_array().expect("a JSON array").clone()
}

/// `(previous_digest, new_digest, source)` of each entry, after checking the common fields.
fn moves(
    entries: &[Value],
    repo: &str,
    tag: &str,
) -> Vec<(Option<String>, Option<String>, String)> {
    let mut last_id = i64::MIN;
    entries
        .iter()
        .map(|e| {
            let id = e["id"].as_i64().expect("numeric id");
            assert!(id > last_id, "entries are in journal order: {entries:?}");
            last_id = id;
            assert_eq!(e["repository"], repo);
            assert_eq!(e["tag"], tag);
            assert!(
                e["at"]
                    .as_str()
                    .is_some_and(|t| t.len() >= 20 && t.contains('T')),
                "RFC 3339 time: {e}"
            );
            assert!(e["actor"].is_string());
            (
                e["previous_digest"].as_str().map(str::to_owned),
                e["new_digest"].as_str().map(str::to_owned),
                e["source"].as_str().expect("source").to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_move_of_a_tag_is_journaled_in_order() {
    let server = TestServer::start().await;
    let a = server.push_image("journal/app", "v1").await;
    let b = server.push_image("journal/app", "v1").await;
    // The same manifest again under the same tag: not a move.
    server
        .push_manifest("journal/app", "v1", OCI_MANIFEST, &b.manifest)
        .await;
    let resp = server
        .delete("/v2/journal/app/manifests/v1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    let entries = history(&server, "journal/app", "v1").await;
    let a = a.digest.to_string();
    let b = b.digest.to_string();
    assert_eq!(
        moves(&entries, "journal/app", "v1"),
        [
            (None, Some(a.clone()), "push".to_owned()),
            (Some(a), Some(b.clone()), "push".to_owned()),
            (Some(b), None, "delete".to_owned()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_manifest_journals_each_of_its_tags() {
    let server = TestServer::start().await;
    let image = server.push_image("jd", "x").await;
    server
        .push_manifest("jd", "y", OCI_MANIFEST, &image.manifest)
        .await;
    let resp = server
        .delete(&format!("/v2/jd/manifests/{}", image.digest))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let d = image.digest.to_string();
    for tag in ["x", "y"] {
        let entries = history(&server, "jd", tag).await;
        assert_eq!(
            moves(&entries, "jd", tag),
            [
                (None, Some(d.clone()), "push".to_owned()),
                (Some(d.clone()), None, "delete".to_owned()),
            ],
            "{tag}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_pushes_are_not_journaled() {
    let server = TestServer::start().await;
    let image = server.push_image("jr", "v1").await;
    let resp = server.put_manifest("jr", "v1", OCI_MANIFEST, b"{").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let entries = history(&server, "jr", "v1").await;
    assert_eq!(
        moves(&entries, "jr", "v1"),
        [(None, Some(image.digest.to_string()), "push".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn journal_survives_a_restart() {
    let server = TestServer::start().await;
    let image = server.push_image("jp", "v1").await;
    let server = server.restart().await;
    let entries = history(&server, "jp", "v1").await;
    assert_eq!(
        moves(&entries, "jp", "v1"),
        [(None, Some(image.digest.to_string()), "push".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn names_containing_tags_are_split_from_the_right() {
    let server = TestServer::start().await;
    let image = server.push_image("a/tags/b", "v1").await;
    let entries = history(&server, "a/tags/b", "v1").await;
    assert_eq!(
        moves(&entries, "a/tags/b", "v1"),
        [(None, Some(image.digest.to_string()), "push".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn history_of_a_tag_never_set_is_404() {
    let server = TestServer::start().await;
    server.push_image("jn", "v1").await;
    let resp = server
        .get("/api/v1/repositories/jn/tags/v2/history")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["code"].is_string(), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_moves_of_one_tag_form_an_unbroken_chain() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let images: Vec<_> = {
        let mut v = Vec::new();
        for _ in 0..8 {
            let image = crate::harness::Image::random();
            server.push_image_blobs("jc", &image).await;
            v.push(image);
        }
        v
    };
    let mut tasks = Vec::new();
    for image in &images {
        let server = server.clone();
        let manifest = image.manifest.clone();
        tasks.push(tokio::spawn(async move {
            server
                .push_manifest("jc", "race", OCI_MANIFEST, &manifest)
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let entries = history(&server, "jc", "race").await;
    let moves = moves(&entries, "jc", "race");
    assert_eq!(moves.len(), images.len(), "one entry per move: {moves:?}");
    let mut previous: Option<String> = None;
    for (prev, new, source) in &moves {
        assert_eq!(
            prev, &previous,
            "each entry starts where the last ended: {moves:?}"
        );
        assert_eq!(source, "push");
        previous = new.clone();
    }
    // The tag points where the last entry says.
    let resp = server.get("/v2/jc/manifests/race").send().await.unwrap();
    assert_eq!(
        crate::harness::header(&resp, "docker-content-digest"),
        previous
    );
}
