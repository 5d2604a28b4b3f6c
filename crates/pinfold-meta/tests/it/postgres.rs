//! The suite on PostgreSQL, in a fresh database per test, and PostgreSQL-specific checks.
//!
//! `TEST_PINFOLD_POSTGRES_URL` names a database the tests connect to first
//! (`postgres://pinfold:pinfold@127.0.0.1:5432/pinfold_test`); its role must be allowed to
//! create databases. Each test creates `pinfold_t_<pid>_<n>` beside it, runs on it and drops it
//! (also when it fails), so tests are independent and run in parallel. `scripts/test` starts a
//! local PostgreSQL and sets the variable. Without it the tests pass with a "skipped" line,
//! except under `CI`, where they fail: CI must run both engines. (Not a `PINFOLD_*` name: the
//! `pinfold` binary, which other tests of the workspace run, takes every `PINFOLD_*` variable
//! as configuration and refuses unknown keys.)

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use pinfold_meta::{Meta, MetaError};
use sqlx::{Connection, PgConnection};

use crate::suite::{image, push, repo, tag};

const URL_VAR: &str = "TEST_PINFOLD_POSTGRES_URL";

/// The administrative URL, or `None` (after saying so) when the tests are to be skipped.
fn admin_url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{URL_VAR} is not set, and CI is: the PostgreSQL engine must be tested in CI")
        }
        _ => {
            // Straight to stderr, past libtest's capture of `eprintln!`, so the skip is seen.
            let _ = writeln!(
                std::io::stderr(),
                "postgres::{test}: skipped: {URL_VAR} not set"
            );
            None
        }
    }
}

/// A database created for one test, dropped by [`TestDb::drop_db`].
struct TestDb {
    admin: String,
    name: String,
    url: String,
}

impl TestDb {
    async fn create(admin: String) -> TestDb {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "pinfold_t_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        // `postgres://user:pw@host:port/db?params` with `db` replaced.
        let (base, params) = match admin.split_once('?') {
            Some((b, p)) => (b, format!("?{p}")),
            None => (admin.as_str(), String::new()),
        };
        let (server, _db) = base
            .rsplit_once('/')
            .filter(|(server, _)| server.contains("//"))
            .unwrap_or_else(|| panic!("{URL_VAR} must end in /<database>: {admin}"));
        let url = format!("{server}/{name}{params}");
        let mut conn = PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("connecting to {URL_VAR}={admin}: {e}"));
        // A leftover from a killed run with the same pid and counter.
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        TestDb { admin, name, url }
    }

    async fn drop_db(self) {
        let mut conn = PgConnection::connect(&self.admin).await.unwrap();
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
}

/// Runs `body` on a freshly migrated database, or skips; drops the database afterwards, also
/// when `body` panics (it runs in its own task, and the panic is re-raised after the drop).
async fn with_meta<F, Fut>(test: &str, body: F)
where
    F: FnOnce(Meta, String) -> Fut,
    Fut: std::future::Future<Output = Meta> + Send + 'static,
{
    let Some(admin) = admin_url(test) else {
        return;
    };
    let db = TestDb::create(admin).await;
    let meta = Meta::open_postgres(&db.url).await.unwrap();
    let outcome = tokio::spawn(body(meta, db.url.clone())).await;
    if let Ok(meta) = &outcome {
        meta.close().await;
    }
    db.drop_db().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Every row of every table of the database at `url`, as PostgreSQL renders it
/// (`row_to_json`), per table and sorted: what two databases holding the same metadata share.
async fn dump(url: &str) -> BTreeMap<String, Vec<String>> {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
         AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut dump = BTreeMap::new();
    for table in tables {
        let mut rows: Vec<String> =
            sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM {table} t"))
                .fetch_all(&mut conn)
                .await
                .unwrap();
        rows.sort();
        dump.insert(table, rows);
    }
    conn.close().await.unwrap();
    dump
}

/// What a backup and a restore of a PostgreSQL instance do to its metadata: a SQLite snapshot
/// (`snapshot_to`) loaded into a fresh database (`load_snapshot`). Every table must come back
/// row for row, and the snapshot itself must answer like the source.
async fn round_trip(test: &str, meta: &Meta, url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("meta.db");
    meta.snapshot_to(&snapshot).await.unwrap();

    let copy = Meta::open_sqlite_read_only(&snapshot).await.unwrap();
    assert_eq!(
        copy.journal(None, 10_000).await.unwrap(),
        meta.journal(None, 10_000).await.unwrap(),
        "{test}: the snapshot's journal"
    );
    // In no particular order (the query has none).
    let named = |mut refs: Vec<pinfold_meta::BlobReference>| {
        refs.sort_by(|a, b| (&a.digest, &a.referrer).cmp(&(&b.digest, &b.referrer)));
        refs
    };
    assert_eq!(
        named(copy.blob_references().await.unwrap()),
        named(meta.blob_references().await.unwrap()),
        "{test}: the blobs the snapshot names"
    );
    copy.close().await;

    let Some(admin) = admin_url(test) else {
        return;
    };
    let target = TestDb::create(admin).await;
    let restored = Meta::open_postgres(&target.url).await.unwrap();
    restored.load_snapshot(&snapshot).await.unwrap();
    restored.close().await;
    let (before, after) = (dump(url).await, dump(&target.url).await);
    target.drop_db().await;
    for (table, rows) in &before {
        assert_eq!(
            after.get(table),
            Some(rows),
            "{test}: table {table} after a snapshot and a load"
        );
    }
    assert_eq!(before.len(), after.len(), "{test}: the same tables");
}

macro_rules! engine_suite {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                with_meta(stringify!($name), |meta, url| async move {
                    crate::suite::$name(&meta).await;
                    // Whatever the suite left behind survives a backup and a restore.
                    round_trip(stringify!($name), &meta, &url).await;
                    meta
                })
                .await;
            }
        )*
    };
}

crate::for_each_suite_test!(engine_suite);

#[tokio::test]
async fn reopen_applies_no_migration_twice_and_keeps_everything() {
    with_meta(
        "reopen_applies_no_migration_twice_and_keeps_everything",
        |meta, url| async move {
            meta.put_manifest(&image("keep/me", "k1"), Some(&tag("v1")), &push())
                .await
                .unwrap();
            meta.close().await;
            let meta = Meta::open_postgres(&url).await.unwrap();
            assert!(meta
                .resolve_tag(&repo("keep/me"), &tag("v1"))
                .await
                .unwrap()
                .is_some());
            assert_eq!(meta.journal(None, 10).await.unwrap().len(), 1);
            meta
        },
    )
    .await;
}

#[tokio::test]
async fn the_journal_is_append_only() {
    with_meta("the_journal_is_append_only", |meta, url| async move {
        meta.put_manifest(&image("j", "j1"), Some(&tag("t")), &push())
            .await
            .unwrap();
        let mut conn = PgConnection::connect(&url).await.unwrap();
        for sql in [
            "UPDATE tag_journal SET actor = 'mallory'",
            "DELETE FROM tag_journal",
            "TRUNCATE tag_journal",
        ] {
            let err = sqlx::query(sql).execute(&mut conn).await.unwrap_err();
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
        conn.close().await.unwrap();
        assert_eq!(meta.journal(None, 10).await.unwrap()[0].actor, "alice");
        meta
    })
    .await;
}

#[tokio::test]
async fn identifiers_are_compared_by_bytes() {
    // COLLATE "C" on every identifier column: the catalog is in byte order whatever the
    // database's default collation.
    with_meta(
        "identifiers_are_compared_by_bytes",
        |meta, url| async move {
            let mut conn = PgConnection::connect(&url).await.unwrap();
            let non_c: Vec<(String, String)> = sqlx::query_as(
                "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND data_type = 'text' \
               AND column_name IN ('name', 'digest', 'manifest_digest', 'blob_digest', \
                   'child_digest', 'subject_digest', 'repository', 'tag', 'previous_digest', \
                   'new_digest', 'id') \
               AND collation_name IS DISTINCT FROM 'C'",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            assert!(non_c.is_empty(), "{non_c:?}");
            conn.close().await.unwrap();
            meta
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_journal_every_move_once() {
    // Unlike SQLite, PostgreSQL runs these transactions at the same time: new repositories are
    // created concurrently, and every task moves the same tag, so each journal row's previous
    // digest must be the one the row before it set.
    with_meta(
        "concurrent_writers_journal_every_move_once",
        |meta, _| async move {
            let meta = Arc::new(meta);
            let mut tasks = Vec::new();
            for w in 0..8 {
                let meta = Arc::clone(&meta);
                tasks.push(tokio::spawn(async move {
                    let name = format!("conc{}", w % 2);
                    let m = image(&name, &format!("m{w}"));
                    for i in 0..25 {
                        meta.put_manifest(&m, Some(&tag(&format!("w{w}-{i}"))), &push())
                            .await
                            .unwrap();
                        meta.put_manifest(&m, Some(&tag("shared")), &push())
                            .await
                            .unwrap();
                        meta.list_tags(&repo(&name), Some(10), None).await.unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            for name in ["conc0", "conc1"] {
                let history = meta.tag_history(&repo(name), &tag("shared")).await.unwrap();
                assert!(!history.is_empty());
                assert_eq!(history[0].previous_digest, None);
                for pair in history.windows(2) {
                    assert_eq!(pair[1].previous_digest, pair[0].new_digest, "{name}");
                }
            }
            Arc::into_inner(meta).unwrap()
        },
    )
    .await;
}

#[tokio::test]
async fn a_loaded_snapshot_continues_its_ids_and_a_second_load_is_refused() {
    with_meta(
        "a_loaded_snapshot_continues_its_ids_and_a_second_load_is_refused",
        |meta, _url| async move {
            for (seed, version) in [("a", "1"), ("b", "1"), ("c", "2")] {
                meta.put_manifest(&image("team/app", seed), Some(&tag(version)), &push())
                    .await
                    .unwrap();
            }
            let dir = tempfile::tempdir().unwrap();
            let snapshot = dir.path().join("meta.db");
            meta.snapshot_to(&snapshot).await.unwrap();
            // A snapshot is a new file: an existing one is refused, not overwritten.
            let again = meta.snapshot_to(&snapshot).await.unwrap_err();
            assert!(again.to_string().contains("exists"), "{again}");

            let admin = admin_url("a_loaded_snapshot_continues_its_ids").unwrap();
            let target = TestDb::create(admin).await;
            let restored = Meta::open_postgres(&target.url).await.unwrap();
            assert_eq!(restored.first_nonempty_table().await.unwrap(), None);
            restored.load_snapshot(&snapshot).await.unwrap();
            let last = restored.journal(None, 100).await.unwrap();
            assert_eq!(last.len(), 3);
            // The identity sequence continues after the loaded rows.
            restored
                .put_manifest(&image("team/app", "d"), Some(&tag("1")), &push())
                .await
                .unwrap();
            let journal = restored.journal(None, 100).await.unwrap();
            assert_eq!(journal.len(), 4);
            assert!(
                journal.iter().map(|e| e.id).max() > last.iter().map(|e| e.id).max(),
                "{journal:?}"
            );

            // Loading into a database that holds metadata is refused and changes nothing.
            let before = dump(&target.url).await;
            assert!(restored.first_nonempty_table().await.unwrap().is_some());
            let err = restored.load_snapshot(&snapshot).await.unwrap_err();
            assert!(matches!(err, MetaError::NotEmpty { .. }), "{err}");
            assert_eq!(dump(&target.url).await, before);
            restored.close().await;
            target.drop_db().await;
            meta
        },
    )
    .await;
}

#[tokio::test]
async fn change_notices_reach_every_listener() {
    with_meta(
        "change_notices_reach_every_listener",
        |meta, _url| async move {
            let mut first = meta.listen_changes().await.unwrap().expect("a listener");
            let mut second = meta.listen_changes().await.unwrap().expect("a listener");
            meta.notify_change("team/app:v1").await.unwrap();
            for listener in [&mut first, &mut second] {
                let change =
                    tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv())
                        .await
                        .expect("a notice within 10 s")
                        .unwrap();
                assert_eq!(change, pinfold_meta::Change::Changed("team/app:v1".into()));
            }
            meta
        },
    )
    .await;
}
