//! Drift listings longer than one page: `GET /api/v1/drift` answers at most 1000 events, so
//! a client pages with `before=<last id>`, and `pinfold drift` does so itself. With more
//! than a page of events, every event must come back exactly once, newest first.
//!
//! The events are recorded through the metadata API on the server's own database while the
//! server is stopped (an upstream that moves 1,300 tags would take minutes); the listing is
//! then read from the restarted server, over HTTP and with the real CLI.

use std::collections::BTreeSet;
use std::time::Duration;

use pinfold_meta::{Meta, NewManifest, TagMove, TagMoveSource};
use pinfold_oci::{Digest, RepoName, Tag};
use serde_json::Value;

use crate::harness::{TestServer, Tool, ToolOutput};

/// Tags that drift at once: more than one page of open events.
const DRIFTING_TAGS: usize = 1210;

/// Further upstream moves of one tag: each supersedes the open event before it, so the
/// listing of all events is longer than the open one by this many.
const EXTRA_MOVES: usize = 300;

/// The API's largest page.
const PAGE: usize = 1000;

async fn pinfold(args: &[&str]) -> ToolOutput {
    Tool::new(env!("CARGO_BIN_EXE_pinfold"))
        .args(args)
        .env("RUST_LOG", "warn")
        .timeout(Duration::from_secs(120))
        .output()
        .await
}

fn manifest(repo: &RepoName, seed: &str) -> NewManifest {
    NewManifest {
        repo: repo.clone(),
        digest: Digest::sha256(seed.as_bytes()),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: 500,
        artifact_type: None,
        subject: None,
        annotations: None,
        blobs: vec![],
        children: vec![],
    }
}

/// Records the drift: `DRIFTING_TAGS` tags pinned to A whose upstream moved to B, and one of
/// them moving on `EXTRA_MOVES` more times. Returns the ids of (open, all) events.
async fn record_drift(meta: &Meta) -> (BTreeSet<i64>, BTreeSet<i64>) {
    let repo: RepoName = "docker.io/library/ruby".parse().expect("repository name");
    let pinned = manifest(&repo, "pinned");
    let mirror = TagMove {
        actor: "docker.io".into(),
        source: TagMoveSource::Mirror,
    };
    meta.put_manifest(&pinned, None, &mirror)
        .await
        .expect("record the pinned manifest");
    let moved = Digest::sha256(b"moved upstream");
    let mut open = BTreeSet::new();
    let mut all = BTreeSet::new();
    let mut last_tag = None;
    for i in 0..DRIFTING_TAGS {
        let tag: Tag = format!("t{i}").parse().expect("tag");
        meta.put_manifest(&pinned, Some(&tag), &mirror)
            .await
            .expect("pin the tag");
        let seen = meta
            .observe_upstream(&repo, &tag, "docker.io", Some(&moved))
            .await
            .expect("observe the upstream");
        assert!(seen.new_drift, "tag {tag} drifted");
        let id = seen.drift.expect("drift event").id;
        open.insert(id);
        all.insert(id);
        last_tag = Some((tag, id));
    }
    let (tag, mut open_id) = last_tag.expect("at least one tag");
    for n in 0..EXTRA_MOVES {
        let elsewhere = Digest::sha256(format!("moved again {n}").as_bytes());
        let seen = meta
            .observe_upstream(&repo, &tag, "docker.io", Some(&elsewhere))
            .await
            .expect("observe the upstream");
        let id = seen.drift.expect("drift event").id;
        assert!(
            seen.new_drift && id != open_id,
            "move {n} opened a new event"
        );
        open.remove(&open_id);
        open.insert(id);
        all.insert(id);
        open_id = id;
    }
    (open, all)
}

/// Pages through `GET /api/v1/drift` with `limit=1000` and `before`, as the API documents.
/// Returns the ids in the order received and the number of requests.
async fn page_api(server: &TestServer, all: bool) -> (Vec<i64>, usize) {
    let mut ids = Vec::new();
    let mut before: Option<i64> = None;
    // Bounded: two more pages than the events need.
    for request in 1..=(DRIFTING_TAGS + EXTRA_MOVES) / PAGE + 3 {
        let mut url = format!("{}/api/v1/drift?limit={PAGE}", server.url());
        if all {
            url.push_str("&all=true");
        }
        if let Some(id) = before {
            url.push_str(&format!("&before={id}"));
        }
        let resp = server.client().get(&url).send().await.expect("GET drift");
        assert_eq!(resp.status(), 200, "{url}");
        let body: Value = resp.json().await.expect("drift JSON");
        let page = body["events"].as_array().expect("events array");
        assert!(page.len() <= PAGE, "a page holds at most {PAGE} events");
        ids.extend(page.iter().map(|e| e["id"].as_i64().expect("event id")));
        if page.len() < PAGE {
            return (ids, request);
        }
        before = ids.last().copied();
    }
    panic!("the drift listing did not end");
}

/// The ids of `pinfold drift --json` output; exit status 1 (open drift).
async fn cli_ids(server: &TestServer, all: bool) -> Vec<i64> {
    let url = server.url();
    let mut args = vec!["drift", "--json", "--server", url.as_str()];
    if all {
        args.push("--all");
    }
    let out = pinfold(&args).await;
    assert_eq!(
        out.code(),
        Some(1),
        "open drift exits 1\n--- stderr ---\n{}",
        out.stderr()
    );
    let events: Value = serde_json::from_str(&out.stdout()).expect("drift --json output");
    events
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|e| e["id"].as_i64().expect("event id"))
        .collect()
}

/// Every id once, newest (largest) first, and exactly the expected set.
fn assert_each_once_newest_first(got: &[i64], expected: &BTreeSet<i64>, what: &str) {
    assert!(
        got.windows(2).all(|w| w[0] > w[1]),
        "{what}: ids strictly decreasing (no repeats)"
    );
    let set: BTreeSet<i64> = got.iter().copied().collect();
    assert_eq!(set.len(), got.len(), "{what}: no event twice");
    assert_eq!(&set, expected, "{what}: every event exactly once");
}

#[tokio::test]
async fn drift_listing_pages_beyond_1000_events() {
    let mut server = TestServer::start_with_env(&[]).await;
    assert!(server.terminate(), "server stopped cleanly");
    let meta = Meta::open_sqlite(&server.data_dir().join("meta.db"))
        .await
        .expect("open the server's metadata");
    let (open, all) = record_drift(&meta).await;
    meta.close().await;
    assert_eq!(open.len(), DRIFTING_TAGS);
    assert_eq!(all.len(), DRIFTING_TAGS + EXTRA_MOVES);
    server.restart().await;

    let (ids, requests) = page_api(&server, false).await;
    assert_each_once_newest_first(&ids, &open, "open events over the API");
    assert_eq!(requests, 2, "1210 open events take two pages");
    let (ids, requests) = page_api(&server, true).await;
    assert_each_once_newest_first(&ids, &all, "all events over the API");
    assert_eq!(requests, 2, "1510 events take two pages");

    // The default page is 100 events; the largest 1000; beyond is refused in the API's format.
    let resp = server
        .client()
        .get(format!("{}/api/v1/drift", server.url()))
        .send()
        .await
        .expect("GET drift");
    let body: Value = resp.json().await.expect("drift JSON");
    assert_eq!(body["events"].as_array().expect("events").len(), 100);
    let resp = server
        .client()
        .get(format!("{}/api/v1/drift?limit=1001", server.url()))
        .send()
        .await
        .expect("GET drift");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("error JSON");
    assert_eq!(body["error"]["code"], "INVALID", "{body}");

    assert_each_once_newest_first(
        &cli_ids(&server, false).await,
        &open,
        "pinfold drift --json",
    );
    assert_each_once_newest_first(
        &cli_ids(&server, true).await,
        &all,
        "pinfold drift --all --json",
    );
}
