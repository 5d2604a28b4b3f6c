//! `pinfold serve` with its metadata in PostgreSQL (`PINFOLD_META_POSTGRES_URL`): pushes,
//! tag moves and the journal survive a restart, exactly as on SQLite.
//!
//! Needs `TEST_PINFOLD_POSTGRES_URL` (scripts/test starts a local cluster and sets it). Without
//! it the test says it is skipped, except under CI, where it fails.

use std::time::Duration;

use crate::harness::{Image, ImageFormat, RegistryClient, Rng, TestServer, Tool};

/// A fresh database on the cluster behind `base_url`, dropped on drop.
struct ScratchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    async fn create(base_url: &str) -> ScratchDatabase {
        let name = format!(
            "pinfold_it_{}_{}",
            std::process::id(),
            Rng::new().next_u64() % 1_000_000
        );
        let (prefix, _) = base_url
            .rsplit_once('/')
            .expect("database URL has a /database part");
        psql(base_url, &format!("CREATE DATABASE {name}")).await;
        ScratchDatabase {
            admin_url: base_url.to_owned(),
            url: format!("{prefix}/{name}"),
            name,
        }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        // Best effort, synchronous (drop cannot await); the connect timeout bounds it.
        let _ = std::process::Command::new("psql")
            .env("PGCONNECT_TIMEOUT", "10")
            .args([self.admin_url.as_str(), "-q", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

async fn psql(url: &str, sql: &str) {
    Tool::new("psql")
        .args([url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .timeout(Duration::from_secs(30))
        .run_ok()
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_in_postgresql_survives_a_restart() {
    let Ok(base_url) = std::env::var("TEST_PINFOLD_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide TEST_PINFOLD_POSTGRES_URL"
        );
        eprintln!("e2e::postgres: skipped: TEST_PINFOLD_POSTGRES_URL not set");
        return;
    };
    let database = ScratchDatabase::create(&base_url).await;
    let mut server =
        TestServer::start_with_env(&[("PINFOLD_META_POSTGRES_URL", &database.url)]).await;
    assert!(
        !server.data_dir().join("meta.db").exists(),
        "with a PostgreSQL URL no SQLite database may be created"
    );
    let mut rng = Rng::new();
    let first = Image::random(&mut rng, ImageFormat::Oci, "amd64", 2, 8 * 1024);
    let second = Image::random(&mut rng, ImageFormat::Oci, "amd64", 2, 8 * 1024);
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    registry.push_image("team/pg", "1", &first).await;
    registry.push_image("team/pg", "1", &second).await;

    server.restart().await;
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    let fetched = registry
        .get_manifest("team/pg", "1")
        .await
        .expect("tag resolves after restart");
    assert_eq!(
        fetched.body, second.manifest.bytes,
        "the tag points at the second push"
    );
    let by_digest = registry
        .get_manifest("team/pg", &first.manifest.digest)
        .await
        .expect("first by digest");
    assert_eq!(by_digest.body, first.manifest.bytes);
    let history = registry
        .get("/api/v1/repositories/team/pg/tags/1/history", None)
        .await
        .expect("history");
    let entries: serde_json::Value =
        serde_json::from_slice(&history.body).expect("history is JSON");
    let moves: Vec<(serde_json::Value, serde_json::Value)> = entries
        .as_array()
        .expect("history is an array")
        .iter()
        .map(|e| (e["previous_digest"].clone(), e["new_digest"].clone()))
        .collect();
    assert_eq!(
        moves,
        vec![
            (
                serde_json::Value::Null,
                first.manifest.digest.clone().into()
            ),
            (
                first.manifest.digest.clone().into(),
                second.manifest.digest.clone().into()
            ),
        ]
    );
}
