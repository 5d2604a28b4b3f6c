//! Online garbage collection (`POST /api/v1/gc`), retention rules and immutable tags, against
//! the real server. Each mark source gets a test that shows it protects what it names and that
//! the same things are swept (rows, files on disk, 404 over HTTP) once it stops naming them.
//! The load test runs GC in a loop while the real client pushes and pulls.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pinfold_client::{ClientConfig, ClientError, RegistryClient};
use pinfold_oci::{Digest, Reference, RepoName};
use pinfold_server::registry::gc::{GcConfig, GcRules, ImmutableRule, RetentionRule};
use pinfold_server::ServerConfig;
use pinfold_store::BlobStore;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{
    assert_error, descriptor, oci_manifest, random_bytes, sha256, Image, TestServer, OCI_CONFIG,
    OCI_EMPTY, OCI_INDEX, OCI_LAYER, OCI_MANIFEST,
};

/// No grace period, and tags moved or deleted stop protecting their old digests at once
/// (`journal_days = 0`): what a test drops becomes garbage immediately.
fn eager_rules() -> GcRules {
    GcRules {
        gc: GcConfig {
            grace_seconds: 0,
            ..GcConfig::default()
        },
        retention: vec![RetentionRule {
            repositories: "*".into(),
            keep_last: None,
            keep_days: None,
            journal_days: Some(0),
        }],
        immutable: Vec::new(),
    }
}

async fn start(rules: GcRules) -> TestServer {
    TestServer::start_with(|c: &mut ServerConfig| c.rules = rules).await
}

/// `POST /api/v1/gc` with `query`; asserts 200 and returns the report.
async fn gc(server: &TestServer, query: &str) -> Value {
    let resp = server
        .post(&format!("/api/v1/gc{query}"))
        .send()
        .await
        .expect("POST /api/v1/gc");
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, StatusCode::OK, "GC answered {status}: {body}");
    serde_json::from_str(&body).expect("GC report is JSON")
}

/// The digests of a report's `deleted` items of `kind` ("blob" or "manifest").
fn deleted(report: &Value, kind: &str) -> BTreeSet<String> {
    report["deleted"]
        .as_array()
        .expect("deleted is an array")
        .iter()
        .filter(|item| item["kind"] == kind)
        .map(|item| item["digest"].as_str().expect("digest").to_owned())
        .collect()
}

fn files_deleted(report: &Value) -> BTreeSet<String> {
    report["files_deleted"]
        .as_array()
        .expect("files_deleted is an array")
        .iter()
        .map(|d| d.as_str().expect("digest").to_owned())
        .collect()
}

fn on_disk(server: &TestServer, digest: &Digest) -> bool {
    BlobStore::open(server.data_dir())
        .expect("open the store")
        .blob_path(digest)
        .exists()
}

async fn blob_status(server: &TestServer, repo: &str, digest: &Digest) -> StatusCode {
    server
        .get(&format!("/v2/{repo}/blobs/{digest}"))
        .send()
        .await
        .expect("GET blob")
        .status()
}

async fn manifest_status(server: &TestServer, repo: &str, reference: &str) -> StatusCode {
    server
        .get(&format!("/v2/{repo}/manifests/{reference}"))
        .header("accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"))
        .send()
        .await
        .expect("GET manifest")
        .status()
}

/// Every blob of `image` and its manifest are served in `repo` and stored on disk.
async fn assert_present(server: &TestServer, repo: &str, image: &Image) {
    assert_eq!(
        manifest_status(server, repo, image.digest.as_str()).await,
        StatusCode::OK,
        "manifest {} of {repo}",
        image.digest
    );
    for bytes in std::iter::once(&image.config).chain(&image.layers) {
        let digest = sha256(bytes);
        assert_eq!(
            blob_status(server, repo, &digest).await,
            StatusCode::OK,
            "blob {digest} of {repo}"
        );
        assert!(on_disk(server, &digest), "file of {digest}");
    }
}

/// The manifest and every blob of `image` are gone: 404 over HTTP, no file on disk.
async fn assert_swept(server: &TestServer, repo: &str, image: &Image) {
    assert_eq!(
        manifest_status(server, repo, image.digest.as_str()).await,
        StatusCode::NOT_FOUND,
        "manifest {} of {repo}",
        image.digest
    );
    assert!(!on_disk(server, &image.digest), "file of {}", image.digest);
    for bytes in std::iter::once(&image.config).chain(&image.layers) {
        let digest = sha256(bytes);
        assert_eq!(
            blob_status(server, repo, &digest).await,
            StatusCode::NOT_FOUND,
            "blob {digest} of {repo}"
        );
        assert!(!on_disk(server, &digest), "file of {digest}");
    }
}

/// Pushes `image` by digest only (no tag: nothing protects it).
async fn push_untagged(server: &TestServer, repo: &str, image: &Image) {
    server.push_image_blobs(repo, image).await;
    server
        .push_manifest(repo, image.digest.as_str(), OCI_MANIFEST, &image.manifest)
        .await;
}

async fn delete_tag(server: &TestServer, repo: &str, tag: &str) {
    let resp = server
        .delete(&format!("/v2/{repo}/manifests/{tag}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED, "DELETE {repo}:{tag}");
}

async fn tags(server: &TestServer, repo: &str) -> Vec<String> {
    let v: Value = server.get_json(&format!("/v2/{repo}/tags/list")).await;
    v["tags"]
        .as_array()
        .map(|a| a.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

fn digests_of(image: &Image) -> BTreeSet<String> {
    std::iter::once(&image.config)
        .chain(&image.layers)
        .map(|b| sha256(b).to_string())
        .collect()
}

#[tokio::test]
async fn unreferenced_blobs_and_manifests_are_swept_from_disk_and_http() {
    let server = start(eager_rules()).await;
    let kept = server.push_image("sweep/app", "v1").await;
    let untagged = Image::random();
    push_untagged(&server, "sweep/app", &untagged).await;
    let lone = random_bytes(500);
    let lone_digest = server.push_blob("sweep/app", &lone).await;

    let report = gc(&server, "").await;

    assert_eq!(report["dry_run"], false);
    assert_eq!(
        deleted(&report, "manifest"),
        BTreeSet::from([untagged.digest.to_string()])
    );
    let mut blobs = digests_of(&untagged);
    blobs.insert(lone_digest.to_string());
    assert_eq!(deleted(&report, "blob"), blobs);
    blobs.insert(untagged.digest.to_string());
    assert_eq!(files_deleted(&report), blobs);
    assert_swept(&server, "sweep/app", &untagged).await;
    assert_eq!(
        blob_status(&server, "sweep/app", &lone_digest).await,
        StatusCode::NOT_FOUND
    );
    assert!(!on_disk(&server, &lone_digest));
    assert_present(&server, "sweep/app", &kept).await;
    assert_eq!(
        manifest_status(&server, "sweep/app", "v1").await,
        StatusCode::OK
    );

    // The last run is recorded; nothing waits any more.
    let status: Value = server.get_json("/api/v1/gc").await;
    assert_eq!(status["pending_candidates"], 0);
    assert_eq!(status["last_run"]["examined"], report["examined"]);
    // A second run has nothing to do.
    let again = gc(&server, "").await;
    assert_eq!(again["examined"], 0);
    assert!(again["deleted"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn dry_run_lists_what_a_run_removes_and_deletes_nothing() {
    let server = start(eager_rules()).await;
    server.push_image("dry/app", "v1").await;
    let untagged = Image::random();
    push_untagged(&server, "dry/app", &untagged).await;
    let lone_digest = server.push_blob("dry/app", &random_bytes(300)).await;

    let dry = gc(&server, "?dry_run=true").await;
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        deleted(&dry, "manifest"),
        BTreeSet::from([untagged.digest.to_string()])
    );
    assert!(deleted(&dry, "blob").contains(lone_digest.as_str()));
    assert!(files_deleted(&dry).contains(lone_digest.as_str()));
    // Nothing changed: everything is still served and stored, the work is still pending.
    assert_present(&server, "dry/app", &untagged).await;
    assert_eq!(
        blob_status(&server, "dry/app", &lone_digest).await,
        StatusCode::OK
    );
    assert!(on_disk(&server, &lone_digest));
    let status: Value = server.get_json("/api/v1/gc").await;
    assert_eq!(status["last_run"], Value::Null, "a dry run is not recorded");
    assert!(status["pending_candidates"].as_u64().unwrap() > 0);

    let real = gc(&server, "").await;
    assert_eq!(deleted(&real, "manifest"), deleted(&dry, "manifest"));
    assert_eq!(deleted(&real, "blob"), deleted(&dry, "blob"));
    assert_eq!(files_deleted(&real), files_deleted(&dry));
    assert_eq!(real["bytes_freed"], dry["bytes_freed"]);
    assert_swept(&server, "dry/app", &untagged).await;
}

#[tokio::test]
async fn tags_protect_and_the_journal_protects_within_its_retention() {
    // No retention rule: the journal protects every digest it names, for ever.
    let server = TestServer::start_with(|c| {
        c.rules = GcRules {
            gc: GcConfig {
                grace_seconds: 0,
                ..GcConfig::default()
            },
            ..GcRules::default()
        }
    })
    .await;
    let old = server.push_image("journal/app", "v1").await;
    let new = server.push_image("journal/app", "v1").await;

    let report = gc(&server, "").await;
    assert!(report["deleted"].as_array().unwrap().is_empty(), "{report}");
    assert!(report["kept"].as_u64().unwrap() >= 1, "{report}");
    assert_present(&server, "journal/app", &old).await;
    assert_present(&server, "journal/app", &new).await;

    // Journal kept one day: the move just now is within it.
    let journal_days = |days| {
        move |c: &mut ServerConfig| {
            c.rules.retention = vec![RetentionRule {
                repositories: "journal/*".into(),
                keep_last: None,
                keep_days: None,
                journal_days: Some(days),
            }]
        }
    };
    let server = server.restart_with(journal_days(1)).await;
    let report = gc(&server, "").await;
    assert!(report["deleted"].as_array().unwrap().is_empty(), "{report}");
    assert_present(&server, "journal/app", &old).await;

    // Journal kept zero days: the move left it, the old image goes; the tagged one stays.
    let server = server.restart_with(journal_days(0)).await;
    let report = gc(&server, "").await;
    assert_eq!(
        deleted(&report, "manifest"),
        BTreeSet::from([old.digest.to_string()])
    );
    assert_eq!(deleted(&report, "blob"), digests_of(&old));
    assert_swept(&server, "journal/app", &old).await;
    assert_present(&server, "journal/app", &new).await;
    // The journal itself is append-only and keeps the history.
    let history: Value = server
        .get_json("/api/v1/repositories/journal/app/tags/v1/history")
        .await;
    assert_eq!(history.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn index_children_live_as_long_as_their_index() {
    let server = start(eager_rules()).await;
    let repo = "index/app";
    let children = [Image::random(), Image::random()];
    for child in &children {
        push_untagged(&server, repo, child).await;
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children.iter().map(Image::descriptor).collect::<Vec<_>>(),
    }))
    .unwrap();
    let index_digest = server.push_manifest(repo, "multi", OCI_INDEX, &index).await;

    let report = gc(&server, "").await;
    assert!(report["deleted"].as_array().unwrap().is_empty(), "{report}");
    for child in &children {
        assert_present(&server, repo, child).await;
    }

    delete_tag(&server, repo, "multi").await;
    let report = gc(&server, "").await;
    let mut manifests: BTreeSet<String> = children.iter().map(|c| c.digest.to_string()).collect();
    manifests.insert(index_digest.to_string());
    assert_eq!(deleted(&report, "manifest"), manifests);
    assert_eq!(
        manifest_status(&server, repo, index_digest.as_str()).await,
        StatusCode::NOT_FOUND
    );
    assert!(!on_disk(&server, &index_digest));
    for child in &children {
        assert_swept(&server, repo, child).await;
    }
}

#[tokio::test]
async fn referrers_live_as_long_as_their_subject() {
    let server = start(eager_rules()).await;
    let repo = "refs/app";
    let subject = server.push_image(repo, "v1").await;
    let empty = b"{}".to_vec();
    let signature = random_bytes(200);
    server.push_blob(repo, &empty).await;
    server.push_blob(repo, &signature).await;
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": descriptor(OCI_EMPTY, &empty),
        "layers": [descriptor("application/vnd.example.signature.v1", &signature)],
        "subject": subject.descriptor(),
    }))
    .unwrap();
    let referrer_digest = sha256(&referrer);
    server
        .push_manifest(repo, referrer_digest.as_str(), OCI_MANIFEST, &referrer)
        .await;

    let report = gc(&server, "").await;
    assert!(report["deleted"].as_array().unwrap().is_empty(), "{report}");
    assert_eq!(
        manifest_status(&server, repo, referrer_digest.as_str()).await,
        StatusCode::OK
    );

    delete_tag(&server, repo, "v1").await;
    let report = gc(&server, "").await;
    assert_eq!(
        deleted(&report, "manifest"),
        BTreeSet::from([subject.digest.to_string(), referrer_digest.to_string()])
    );
    assert_swept(&server, repo, &subject).await;
    assert_eq!(
        manifest_status(&server, repo, referrer_digest.as_str()).await,
        StatusCode::NOT_FOUND
    );
    for digest in [sha256(&empty), sha256(&signature), referrer_digest] {
        assert!(!on_disk(&server, &digest), "file of {digest}");
    }
}

#[tokio::test]
async fn open_upload_sessions_protect_their_repository_blobs() {
    let server = start(eager_rules()).await;
    let blob = server.push_blob("upload/app", &random_bytes(400)).await;
    // A client that uploaded `blob` and is still uploading the next layer.
    let session = server.start_upload("upload/app").await;

    let report = gc(&server, "").await;
    assert!(report["deleted"].as_array().unwrap().is_empty(), "{report}");
    assert_eq!(report["kept"], 1);
    assert_eq!(
        blob_status(&server, "upload/app", &blob).await,
        StatusCode::OK
    );

    let resp = server.client.delete(&session).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let report = gc(&server, "").await;
    assert_eq!(deleted(&report, "blob"), BTreeSet::from([blob.to_string()]));
    assert_eq!(
        blob_status(&server, "upload/app", &blob).await,
        StatusCode::NOT_FOUND
    );
    assert!(!on_disk(&server, &blob));
}

#[tokio::test]
async fn fresh_blobs_are_kept_for_the_grace_period() {
    let mut rules = eager_rules();
    // Long enough that a loaded machine still runs the first GC within it.
    rules.gc.grace_seconds = 4;
    let server = start(rules).await;
    let started = Instant::now();
    let blob = server.push_blob("grace/app", &random_bytes(400)).await;

    let report = gc(&server, "").await;
    assert!(started.elapsed() < Duration::from_secs(4), "test too slow");
    assert!(report["deleted"].as_array().unwrap().is_empty(), "{report}");
    assert_eq!(report["kept"], 1);
    assert!(on_disk(&server, &blob));

    tokio::time::sleep(Duration::from_millis(4300)).await;
    let report = gc(&server, "").await;
    assert_eq!(deleted(&report, "blob"), BTreeSet::from([blob.to_string()]));
    assert_eq!(files_deleted(&report), BTreeSet::from([blob.to_string()]));
    assert!(!on_disk(&server, &blob));
}

#[tokio::test]
async fn a_run_examines_only_the_garbage_not_the_registry() {
    let server = start(eager_rules()).await;
    for i in 0..15 {
        server.push_image("cost/app", &format!("t{i}")).await;
    }
    // The first run clears what the pushes enqueued (all referenced: nothing deleted).
    let first = gc(&server, "").await;
    assert!(first["deleted"].as_array().unwrap().is_empty(), "{first}");

    let garbage: Vec<Digest> = {
        let mut out = Vec::new();
        for _ in 0..3 {
            out.push(server.push_blob("cost/app", &random_bytes(100)).await);
        }
        out
    };
    let report = gc(&server, "").await;
    // 15 images hold 45 blobs and 15 manifests; the run looked at the 3 new blobs only.
    assert_eq!(report["examined"], 3, "{report}");
    assert_eq!(
        deleted(&report, "blob"),
        garbage.iter().map(ToString::to_string).collect()
    );
}

#[tokio::test]
async fn gc_while_a_backup_or_another_gc_holds_the_store_is_busy_and_deletes_nothing() {
    let server = start(eager_rules()).await;
    let blob = server.push_blob("busy/app", &random_bytes(300)).await;
    let store = BlobStore::open(server.data_dir()).unwrap();

    // A backup holds the sweep lock shared; another GC (here: another process) exclusive.
    for holder in ["backup", "gc"] {
        let guard = if holder == "backup" {
            store.lock_blob_set().unwrap()
        } else {
            store.try_lock_sweep().unwrap().expect("the lock is free")
        };
        let resp = server.post("/api/v1/gc").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::CONFLICT, "while a {holder} runs");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "GC_BUSY");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("nothing was deleted"), "{message}");
        assert_eq!(
            blob_status(&server, "busy/app", &blob).await,
            StatusCode::OK
        );
        assert!(on_disk(&server, &blob));
        drop(guard);
    }

    // Two runs started at once: each either ran or was refused, and what was deleted was
    // deleted once.
    for i in 0..40 {
        server
            .push_blob("busy/app", format!("garbage {i}").as_bytes())
            .await;
    }
    let (a, b) = tokio::join!(
        server.post("/api/v1/gc").send(),
        server.post("/api/v1/gc").send()
    );
    let mut all = Vec::new();
    let mut ran = 0;
    for resp in [a.unwrap(), b.unwrap()] {
        match resp.status() {
            StatusCode::OK => {
                ran += 1;
                let report: Value = resp.json().await.unwrap();
                all.extend(deleted(&report, "blob"));
            }
            StatusCode::CONFLICT => {
                let body: Value = resp.json().await.unwrap();
                assert_eq!(body["error"]["code"], "GC_BUSY");
            }
            other => panic!("GC answered {other}"),
        }
    }
    assert!(ran >= 1);
    let unique: BTreeSet<_> = all.iter().cloned().collect();
    assert_eq!(unique.len(), all.len(), "a digest deleted twice");
    assert_eq!(unique.len(), 41);
}

#[tokio::test]
async fn retention_keeps_the_last_tags_and_journals_removals() {
    let rules = GcRules {
        gc: GcConfig {
            grace_seconds: 0,
            ..GcConfig::default()
        },
        retention: vec![
            RetentionRule {
                repositories: "ret/*".into(),
                keep_last: Some(2),
                keep_days: None,
                journal_days: Some(0),
            },
            // keep_days 0 keeps nothing by age: only the immutable tag survives.
            RetentionRule {
                repositories: "days0/*".into(),
                keep_last: None,
                keep_days: Some(0),
                journal_days: Some(0),
            },
            RetentionRule {
                repositories: "days1/*".into(),
                keep_last: None,
                keep_days: Some(1),
                journal_days: Some(0),
            },
        ],
        immutable: vec![ImmutableRule {
            repositories: "days0/*".into(),
            tags: vec!["release-*".into()],
        }],
    };
    let server = start(rules).await;
    let mut ret = Vec::new();
    for i in 1..=4 {
        ret.push(server.push_image("ret/app", &format!("t{i}")).await);
    }
    let other = server.push_image("other/app", "t1").await;
    server.push_image("other/app", "t2").await;
    server.push_image("days0/app", "latest").await;
    let release = server.push_image("days0/app", "release-1").await;
    server.push_image("days1/app", "a").await;
    server.push_image("days1/app", "b").await;

    let dry = gc(&server, "?dry_run=true").await;
    assert_eq!(dry["retention_removed"].as_array().unwrap().len(), 3);
    assert_eq!(tags(&server, "ret/app").await, ["t1", "t2", "t3", "t4"]);

    let report = gc(&server, "").await;
    let removed: BTreeSet<(String, String)> = report["retention_removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["repository"].as_str().unwrap().to_owned(),
                t["tag"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        removed,
        BTreeSet::from([
            ("ret/app".to_owned(), "t1".to_owned()),
            ("ret/app".to_owned(), "t2".to_owned()),
            ("days0/app".to_owned(), "latest".to_owned()),
        ])
    );
    assert_eq!(tags(&server, "ret/app").await, ["t3", "t4"]);
    assert_eq!(tags(&server, "other/app").await, ["t1", "t2"]);
    assert_eq!(tags(&server, "days0/app").await, ["release-1"]);
    assert_eq!(tags(&server, "days1/app").await, ["a", "b"]);
    // The removal is in the journal, with its own source; the images went with it.
    let history: Value = server
        .get_json("/api/v1/repositories/ret/app/tags/t1/history")
        .await;
    let last = history.as_array().unwrap().last().unwrap();
    assert_eq!(last["source"], "retention");
    assert_eq!(last["previous_digest"], ret[0].digest.to_string());
    assert_eq!(last["new_digest"], Value::Null);
    assert_swept(&server, "ret/app", &ret[0]).await;
    assert_swept(&server, "ret/app", &ret[1]).await;
    assert_present(&server, "ret/app", &ret[3]).await;
    assert_present(&server, "other/app", &other).await;
    assert_present(&server, "days0/app", &release).await;
}

#[tokio::test]
async fn immutable_tags_refuse_another_digest_with_denied() {
    let rules = GcRules {
        immutable: vec![ImmutableRule {
            repositories: "imm/*".into(),
            tags: vec!["v*".into()],
        }],
        ..GcRules::default()
    };
    let server = start(rules).await;
    let client = RegistryClient::new(&server.addr.to_string(), ClientConfig::default()).unwrap();
    let repo: RepoName = "imm/app".parse().unwrap();
    let v1: Reference = "v1.0".parse().unwrap();
    let first = Image::random();
    let second = Image::random();
    for image in [&first, &second] {
        for bytes in std::iter::once(&image.config).chain(&image.layers) {
            client
                .push_blob(&repo, &sha256(bytes), Bytes::from(bytes.clone()))
                .await
                .unwrap();
        }
    }
    let pushed = client
        .push_manifest(
            &repo,
            &v1,
            OCI_MANIFEST,
            Bytes::from(first.manifest.clone()),
        )
        .await
        .unwrap();
    assert_eq!(pushed, first.digest);

    // Moving it is refused with DENIED, and says why.
    match client
        .push_manifest(
            &repo,
            &v1,
            OCI_MANIFEST,
            Bytes::from(second.manifest.clone()),
        )
        .await
    {
        Err(ClientError::Upstream {
            status,
            code,
            message,
        }) => {
            assert_eq!(status, 403);
            assert_eq!(code.as_deref(), Some("DENIED"));
            let message = message.unwrap_or_default();
            assert!(message.contains("immutable"), "{message}");
            assert!(message.contains(first.digest.as_str()), "{message}");
        }
        other => panic!("moving an immutable tag answered {other:?}"),
    }
    let resp = server
        .put_manifest("imm/app", "v1.0", OCI_MANIFEST, &second.manifest)
        .await;
    assert_error(resp, StatusCode::FORBIDDEN, "DENIED").await;
    // Nothing changed: the tag, and its journal (one push).
    let fetched = client.get_manifest(&repo, &v1).await.unwrap();
    assert_eq!(fetched.digest, first.digest);
    let history: Value = server
        .get_json("/api/v1/repositories/imm/app/tags/v1.0/history")
        .await;
    assert_eq!(history.as_array().unwrap().len(), 1);

    // Re-pushing the same digest is fine; a tag outside the rule moves freely.
    let again = client
        .push_manifest(
            &repo,
            &v1,
            OCI_MANIFEST,
            Bytes::from(first.manifest.clone()),
        )
        .await
        .unwrap();
    assert_eq!(again, first.digest);
    let latest: Reference = "latest".parse().unwrap();
    for image in [&first, &second] {
        client
            .push_manifest(
                &repo,
                &latest,
                OCI_MANIFEST,
                Bytes::from(image.manifest.clone()),
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn skopeo_copy_onto_an_immutable_tag_is_denied() {
    let rules = GcRules {
        immutable: vec![ImmutableRule {
            repositories: "frozen/*".into(),
            tags: vec!["stable".into()],
        }],
        ..GcRules::default()
    };
    let server = start(rules).await;
    server.push_image("src/app", "a").await;
    server.push_image("src/app", "b").await;
    let addr = server.addr;
    let copy = |from: &'static str| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("skopeo")
                .args([
                    "copy",
                    "--src-tls-verify=false",
                    "--dest-tls-verify=false",
                    "--retry-times=0",
                    "--preserve-digests",
                    &format!("docker://{addr}/src/app:{from}"),
                    &format!("docker://{addr}/frozen/app:stable"),
                ])
                .output()
                .expect("run skopeo")
        })
    };
    let first = copy("a").await.unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = copy("b").await.unwrap();
    assert!(
        !second.status.success(),
        "moving an immutable tag succeeded"
    );
    let stderr = String::from_utf8_lossy(&second.stderr).to_lowercase();
    assert!(
        stderr.contains("denied") && stderr.contains("immutable"),
        "{stderr}"
    );
    let again = copy("a").await.unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

/// One image whose first layer is `base` (shared by all of a pusher's images, so GC has to
/// keep a layer that collected images also referenced).
fn image_on(base: &[u8]) -> Image {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"Env": [format!("NONCE={}", crate::harness::hex(&random_bytes(8)))]},
    }))
    .unwrap();
    let layers = vec![base.to_vec(), random_bytes(2000)];
    let manifest = oci_manifest(
        descriptor(OCI_CONFIG, &config),
        layers.iter().map(|l| descriptor(OCI_LAYER, l)).collect(),
    );
    let digest = sha256(&manifest);
    Image {
        config,
        layers,
        manifest,
        digest,
    }
}

/// Pushes `image` with the real client; a push that GC raced (a blob collected between its
/// upload and the manifest, which the registry refuses with MANIFEST_BLOB_UNKNOWN) is retried
/// from the blobs, as a client would. Returns how many attempts failed that way.
async fn client_push(
    client: &RegistryClient,
    repo: &RepoName,
    reference: &Reference,
    image: &Image,
) -> usize {
    for attempt in 0..5 {
        for bytes in std::iter::once(&image.config).chain(&image.layers) {
            client
                .push_blob(repo, &sha256(bytes), Bytes::from(bytes.clone()))
                .await
                .expect("blob push");
        }
        match client
            .push_manifest(
                repo,
                reference,
                OCI_MANIFEST,
                Bytes::from(image.manifest.clone()),
            )
            .await
        {
            Ok(digest) => {
                assert_eq!(digest, image.digest);
                return attempt;
            }
            Err(ClientError::Upstream {
                code: Some(code), ..
            }) if code == "MANIFEST_BLOB_UNKNOWN" => continue,
            Err(e) => panic!("push of {repo}:{reference} failed: {e}"),
        }
    }
    panic!("push of {repo}:{reference} raced GC five times");
}

/// Pulls `repo:reference` completely (manifest and every blob, digests verified by the
/// client) and returns the manifest digest.
async fn client_pull(client: &RegistryClient, repo: &RepoName, reference: &Reference) -> Digest {
    let manifest = client
        .get_manifest(repo, reference)
        .await
        .unwrap_or_else(|e| panic!("pull of {repo}:{reference}: {e}"));
    let parsed: Value = serde_json::from_slice(&manifest.bytes).unwrap();
    let blobs = std::iter::once(&parsed["config"])
        .chain(parsed["layers"].as_array().unwrap())
        .map(|d| d["digest"].as_str().unwrap().parse::<Digest>().unwrap());
    for digest in blobs {
        client
            .get_blob(repo, &digest)
            .await
            .unwrap_or_else(|e| panic!("blob {digest} of {repo}:{reference}: {e}"))
            .collect_bytes()
            .await
            .unwrap_or_else(|e| panic!("blob {digest} of {repo}:{reference}: {e}"));
    }
    manifest.digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_in_a_loop_while_clients_push_and_pull_loses_nothing_referenced() {
    const PUSHERS: usize = 3;
    const ROUNDS: usize = 6;
    const GC_RUNS: usize = 20;
    const DEADLINE: Duration = Duration::from_secs(60);

    let server = start(eager_rules()).await;
    let client =
        Arc::new(RegistryClient::new(&server.addr.to_string(), ClientConfig::default()).unwrap());
    // Tags that never move, with their digests, as soon as their push succeeded: pulls of
    // these must always succeed completely.
    let stable: Arc<Mutex<Vec<(RepoName, Reference, Digest)>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Instant::now();

    let mut pushers = Vec::new();
    for p in 0..PUSHERS {
        let client = client.clone();
        let stable = stable.clone();
        pushers.push(tokio::spawn(async move {
            let repo: RepoName = format!("load/p{p}").parse().unwrap();
            let base = random_bytes(4000);
            let mut retries = 0;
            let mut garbage = Vec::new();
            let mut latest = None;
            for round in 0..ROUNDS {
                let image = image_on(&base);
                let tag: Reference = format!("s{round}").parse().unwrap();
                retries += client_push(&client, &repo, &tag, &image).await;
                stable
                    .lock()
                    .unwrap()
                    .push((repo.clone(), tag, image.digest));
                // A tag that moves every round: its previous image becomes garbage.
                let image = image_on(&base);
                let moving: Reference = "latest".parse().unwrap();
                retries += client_push(&client, &repo, &moving, &image).await;
                if let Some(old) = latest.replace(image.digest.clone()) {
                    garbage.push(old);
                }
                // An image pushed by digest and never tagged: garbage.
                let image = image_on(&base);
                let by_digest = Reference::Digest(image.digest.clone());
                retries += client_push(&client, &repo, &by_digest, &image).await;
                garbage.push(image.digest);
            }
            (repo, latest.unwrap(), garbage, retries)
        }));
    }

    let mut pullers = Vec::new();
    for _ in 0..2 {
        let client = client.clone();
        let stable = stable.clone();
        let done = done.clone();
        pullers.push(tokio::spawn(async move {
            let mut pulls = 0;
            let mut i = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) && started.elapsed() < DEADLINE {
                let entry = {
                    let stable = stable.lock().unwrap();
                    (!stable.is_empty()).then(|| stable[i % stable.len()].clone())
                };
                i += 1;
                match entry {
                    Some((repo, tag, digest)) => {
                        assert_eq!(client_pull(&client, &repo, &tag).await, digest);
                        pulls += 1;
                    }
                    None => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            pulls
        }));
    }

    let collector = {
        let base = server.base.clone();
        let http = server.client.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut runs = 0;
            let mut deleted = 0;
            while runs < GC_RUNS
                && started.elapsed() < DEADLINE
                && !done.load(std::sync::atomic::Ordering::SeqCst)
            {
                let resp = http.post(format!("{base}/api/v1/gc")).send().await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                let report: Value = resp.json().await.unwrap();
                deleted += report["deleted"].as_array().unwrap().len();
                runs += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (runs, deleted)
        })
    };

    let mut outcomes = Vec::new();
    for pusher in pushers {
        outcomes.push(pusher.await.expect("pusher"));
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut pulls = 0;
    for puller in pullers {
        pulls += puller.await.expect("puller");
    }
    let (runs, deleted_during_load) = collector.await.expect("collector");
    assert!(runs >= 2, "GC ran {runs} times during the load");
    assert!(pulls > 0);

    // A last run with nothing else going on collects what is left.
    let last = gc(&server, "").await;
    let total_deleted = deleted_during_load + last["deleted"].as_array().unwrap().len();
    assert!(total_deleted > 0);

    // Every tag still pulls complete with the digest it was pushed with; the garbage is gone.
    let stable = stable.lock().unwrap().clone();
    assert_eq!(stable.len(), PUSHERS * ROUNDS);
    for (repo, tag, digest) in &stable {
        assert_eq!(&client_pull(&client, repo, tag).await, digest);
    }
    let retries: usize = outcomes.iter().map(|o| o.3).sum();
    for (repo, latest, garbage, _) in outcomes {
        let tag: Reference = "latest".parse().unwrap();
        assert_eq!(client_pull(&client, &repo, &tag).await, latest);
        let mut expected_tags: Vec<String> = (0..ROUNDS).map(|r| format!("s{r}")).collect();
        expected_tags.push("latest".into());
        expected_tags.sort();
        assert_eq!(tags(&server, repo.as_str()).await, expected_tags);
        for digest in garbage {
            assert_eq!(
                manifest_status(&server, repo.as_str(), digest.as_str()).await,
                StatusCode::NOT_FOUND,
                "garbage {digest} of {repo}"
            );
        }
    }
    eprintln!(
        "load: {runs} GC runs, {total_deleted} items collected, {pulls} complete pulls, \
         {retries} pushes retried after racing GC"
    );
}

/// Links are per repository, files are shared: a file stays while any repository links it.
#[tokio::test]
async fn a_file_shared_by_two_repositories_stays_while_either_links_it() {
    let server = start(eager_rules()).await;
    let shared = random_bytes(700);
    let digest = server.push_blob("share/a", &shared).await;
    let image = {
        let config = b"{\"architecture\":\"amd64\",\"os\":\"linux\"}".to_vec();
        server.push_blob("share/b", &config).await;
        server.push_blob("share/b", &shared).await;
        let manifest = oci_manifest(
            descriptor(OCI_CONFIG, &config),
            vec![descriptor(OCI_LAYER, &shared)],
        );
        server
            .push_manifest("share/b", "v1", OCI_MANIFEST, &manifest)
            .await
    };
    let report = gc(&server, "").await;
    // share/a's link goes; the file stays for share/b.
    assert_eq!(
        deleted(&report, "blob"),
        BTreeSet::from([digest.to_string()])
    );
    assert!(files_deleted(&report).is_empty(), "{report}");
    assert_eq!(
        blob_status(&server, "share/a", &digest).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        blob_status(&server, "share/b", &digest).await,
        StatusCode::OK
    );
    assert!(on_disk(&server, &digest));
    assert_eq!(
        manifest_status(&server, "share/b", image.as_str()).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_scheduled_worker_collects_without_being_asked() {
    let mut rules = eager_rules();
    rules.gc.interval_seconds = 1;
    let server = start(rules).await;
    let blob = server.push_blob("worker/app", &random_bytes(300)).await;
    let started = Instant::now();
    // Bounded wait: the worker runs at start and then every second.
    while on_disk(&server, &blob) && started.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!on_disk(&server, &blob), "the gc worker did not collect");
    assert_eq!(
        blob_status(&server, "worker/app", &blob).await,
        StatusCode::NOT_FOUND
    );
    let workers: Value = server.get_json("/api/v1/workers").await;
    let gc = workers
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "gc")
        .expect("the gc worker is listed");
    assert!(gc["runs"].as_u64().unwrap() >= 1, "{gc}");
    assert_eq!(gc["errors"], 0, "{gc}");
}
