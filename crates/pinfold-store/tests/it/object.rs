//! The suite on S3-compatible object storage: Garage on loopback, started by `scripts/garage`
//! (which `scripts/test` runs), named by `TEST_PINFOLD_S3_*`. Each test works under a prefix of
//! its own in the shared bucket, so tests are independent and run in parallel. Without the
//! variables the tests pass with a "skipped" line, except under `CI`, where they fail: CI must
//! test both backends. Also: what `open_configured` says about a store it cannot use.

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};

use pinfold_store::{BlobStore, StorageBackend, StorageConfig, StoreError};

/// The store's configuration from `TEST_PINFOLD_S3_*`, or `None` (after saying so).
pub fn s3_config(test: &str) -> Option<StorageConfig> {
    let var = |name: &str| std::env::var(format!("TEST_PINFOLD_S3_{name}")).ok();
    match var("ENDPOINT") {
        Some(endpoint) if !endpoint.is_empty() => {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            Some(StorageConfig {
                backend: StorageBackend::S3,
                endpoint: Some(endpoint),
                bucket: var("BUCKET").expect("TEST_PINFOLD_S3_BUCKET"),
                region: var("REGION").unwrap_or_else(|| "garage".to_owned()),
                prefix: format!(
                    "t/{test}-{}-{}-{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_nanos()
                ),
                access_key_id: var("ACCESS_KEY_ID").expect("TEST_PINFOLD_S3_ACCESS_KEY_ID"),
                secret_access_key: var("SECRET_ACCESS_KEY")
                    .expect("TEST_PINFOLD_S3_SECRET_ACCESS_KEY"),
                ..StorageConfig::default()
            })
        }
        _ if std::env::var_os("CI").is_some() => {
            panic!("TEST_PINFOLD_S3_ENDPOINT is not set, and CI is: object storage must be tested in CI (scripts/garage)")
        }
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "object::{test}: skipped: TEST_PINFOLD_S3_ENDPOINT not set (eval \"$(scripts/garage env)\")"
            );
            None
        }
    }
}

/// Every "replica" is a store of its own (its own process state, its own scratch directory)
/// over the same bucket and prefix.
pub struct Fixture {
    config: StorageConfig,
    scratch: tempfile::TempDir,
}

impl crate::suite::Backend for Fixture {
    async fn open(&self) -> BlobStore {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let scratch = self
            .scratch
            .path()
            .join(format!("replica-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        BlobStore::open_configured(scratch, &self.config)
            .await
            .unwrap()
    }
}

macro_rules! object_suite {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some(config) = s3_config(stringify!($name)) else { return };
                let fixture = Fixture { config, scratch: tempfile::tempdir().unwrap() };
                crate::suite::$name(&fixture).await;
            }
        )*
    };
}

crate::for_each_suite_test!(object_suite);

async fn refused(config: &StorageConfig) -> String {
    let dir = tempfile::tempdir().unwrap();
    match BlobStore::open_configured(dir.path(), config).await {
        Ok(_) => panic!("{config:?} was accepted"),
        Err(e @ StoreError::Unavailable { .. }) => e.to_string(),
        Err(e) => panic!("{config:?}: not an Unavailable error: {e:?}"),
    }
}

#[tokio::test]
async fn a_store_that_cannot_be_used_is_refused_in_one_line_without_the_secret() {
    let Some(good) = s3_config("refusals") else {
        return;
    };
    let missing_bucket = StorageConfig {
        bucket: "no-such-bucket-here".to_owned(),
        ..good.clone()
    };
    let mut messages = Vec::new();
    let message = refused(&missing_bucket).await;
    assert!(message.contains("no-such-bucket-here"), "{message}");
    messages.push(message);
    let wrong_secret = StorageConfig {
        secret_access_key: "0".repeat(64),
        ..good.clone()
    };
    let message = refused(&wrong_secret).await;
    assert!(!message.contains(&"0".repeat(64)), "{message}");
    assert!(!message.contains(&good.secret_access_key), "{message}");
    messages.push(message);
    let unreachable = StorageConfig {
        endpoint: Some("http://127.0.0.1:9".to_owned()),
        ..good.clone()
    };
    let started = std::time::Instant::now();
    let message = refused(&unreachable).await;
    assert!(message.contains("127.0.0.1:9"), "{message}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "an unreachable endpoint is reported within the retry budget"
    );
    messages.push(message);
    for message in &messages {
        assert_eq!(message.lines().count(), 1, "one line: {message}");
    }
    let no_bucket = StorageConfig {
        bucket: String::new(),
        ..good
    };
    assert!(refused(&no_bucket).await.contains("bucket"));
}
