//! The suite on SQLite, in a temporary directory per test, and SQLite-specific checks.

use std::sync::Arc;
use std::time::Instant;

use pinfold_meta::{Meta, NewManifest, TagMove, TagMoveSource};
use tempfile::TempDir;

use crate::suite::{digest, image, push, repo, tag};

async fn open() -> (TempDir, Meta) {
    let dir = tempfile::tempdir().unwrap();
    let meta = Meta::open_sqlite(&dir.path().join("meta/pinfold.db"))
        .await
        .unwrap();
    (dir, meta)
}

macro_rules! engine_suite {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (_dir, meta) = open().await;
                crate::suite::$name(&meta).await;
                meta.close().await;
            }
        )*
    };
}

crate::for_each_suite_test!(engine_suite);

#[tokio::test]
async fn reopen_after_close_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pinfold.db");
    let m1 = image("keep/me", "k1");
    let referrer = NewManifest {
        artifact_type: Some("application/x-sig".into()),
        subject: Some(m1.digest.clone()),
        ..image("keep/me", "k2")
    };
    {
        let meta = Meta::open_sqlite(&path).await.unwrap();
        meta.link_blob(&repo("keep/me"), &digest("blob"), 77)
            .await
            .unwrap();
        meta.put_manifest(&m1, Some(&tag("v1")), &push())
            .await
            .unwrap();
        meta.put_manifest(&referrer, None, &push()).await.unwrap();
        meta.create_upload("up-1", &repo("keep/me"), "user:t", 100)
            .await
            .unwrap();
        meta.close().await;
    }
    // Only the main file needs to exist after a clean close (the WAL was checkpointed).
    let meta = Meta::open_sqlite(&path).await.unwrap();
    let r = repo("keep/me");
    assert_eq!(
        meta.list_repositories(None, None).await.unwrap(),
        vec![r.clone()]
    );
    assert_eq!(
        meta.repo_blob_size(&r, &digest("blob")).await.unwrap(),
        Some(77)
    );
    assert_eq!(
        meta.resolve_tag(&r, &tag("v1"))
            .await
            .unwrap()
            .unwrap()
            .digest,
        m1.digest
    );
    assert_eq!(meta.tag_history(&r, &tag("v1")).await.unwrap().len(), 1);
    assert_eq!(
        meta.referrers(&r, &m1.digest, None).await.unwrap()[0].digest,
        referrer.digest
    );
    assert_eq!(meta.upload("up-1").await.unwrap().unwrap().repo, r);
    // Migrations already applied: a third open is a no-op too.
    meta.close().await;
    let meta = Meta::open_sqlite(&path).await.unwrap();
    assert_eq!(meta.journal(None, 10).await.unwrap().len(), 1);
    meta.close().await;
}

#[tokio::test]
async fn committed_writes_survive_without_close() {
    // What kill -9 leaves: the process never closes the pools. Dropping every handle without
    // close() and reopening must still find each acknowledged write (it is in the WAL).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pinfold.db");
    {
        let meta = Meta::open_sqlite(&path).await.unwrap();
        meta.put_manifest(&image("crash", "c1"), Some(&tag("t")), &push())
            .await
            .unwrap();
        std::mem::forget(meta);
    }
    let meta = Meta::open_sqlite(&path).await.unwrap();
    assert!(meta
        .resolve_tag(&repo("crash"), &tag("t"))
        .await
        .unwrap()
        .is_some());
    meta.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushes_and_reads_do_not_fail() {
    let (_dir, meta) = open().await;
    let meta = Arc::new(meta);
    let mut tasks = Vec::new();
    for w in 0..8 {
        let meta = Arc::clone(&meta);
        tasks.push(tokio::spawn(async move {
            let name = format!("conc{}", w % 2);
            let m = image(&name, &format!("m{w}"));
            for i in 0..50 {
                meta.put_manifest(&m, Some(&tag(&format!("w{w}-{i}"))), &push())
                    .await
                    .unwrap();
                let got = meta
                    .resolve_tag(&repo(&name), &tag(&format!("w{w}-{i}")))
                    .await
                    .unwrap();
                assert_eq!(got.unwrap().digest, m.digest);
                meta.list_tags(&repo(&name), Some(10), None).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(meta.journal(None, 1000).await.unwrap().len(), 400);
    meta.close().await;
}

/// Not an assertion: prints what one `put_manifest` of an existing manifest under a new tag
/// costs, the server's hot path in the "push 2000 tags" benchmark (target ≥ 1000 tags/s end to
/// end). Run with `--nocapture` to see it.
#[tokio::test]
async fn put_manifest_rate() {
    let (_dir, meta) = open().await;
    let m = image("bench", "same");
    meta.put_manifest(&m, None, &push()).await.unwrap();
    let mv = TagMove {
        actor: "bench".into(),
        source: TagMoveSource::Push,
    };
    let tags: Vec<_> = (0..2000).map(|i| tag(&format!("t{i}"))).collect();
    let start = Instant::now();
    for t in &tags {
        meta.put_manifest(&m, Some(t), &mv).await.unwrap();
    }
    let elapsed = start.elapsed();
    println!(
        "put_manifest, existing manifest + new tag: 2000 in {:.3} s = {:.0}/s ({:.0} µs each)",
        elapsed.as_secs_f64(),
        2000.0 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / 2000.0
    );
    let start = Instant::now();
    for t in &tags {
        meta.put_manifest(&m, Some(t), &mv).await.unwrap();
    }
    let elapsed = start.elapsed();
    println!(
        "put_manifest, same manifest + same tag (no change, no fsync): 2000 in {:.3} s = {:.0}/s",
        elapsed.as_secs_f64(),
        2000.0 / elapsed.as_secs_f64()
    );
    let start = Instant::now();
    for t in &tags {
        meta.resolve_tag(&repo("bench"), t).await.unwrap().unwrap();
    }
    let elapsed = start.elapsed();
    println!(
        "resolve_tag: 2000 in {:.3} s = {:.0}/s",
        elapsed.as_secs_f64(),
        2000.0 / elapsed.as_secs_f64()
    );
    assert_eq!(meta.journal(None, 5000).await.unwrap().len(), 2000);
    meta.close().await;
}
