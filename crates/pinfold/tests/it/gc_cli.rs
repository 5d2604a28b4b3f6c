//! `pinfold gc` against the real `pinfold serve`: `--dry-run` lists and deletes nothing,
//! `--json` is the server's report, a run removes the garbage, and a GC while the sweep lock is
//! held (a backup) exits 2 saying nothing was deleted. `[gc]` comes from `PINFOLD_GC_*`.

use std::fs::OpenOptions;

use serde_json::Value;

use crate::harness::{Blob, Image, ImageFormat, RegistryClient, Rng, TestServer, Tool};

async fn blob_status(registry: &RegistryClient, digest: &str) -> u16 {
    registry
        .get_blob("cli/app", digest)
        .await
        .unwrap()
        .status
        .as_u16()
}

fn pinfold_gc(server: &TestServer, args: &[&str]) -> Tool {
    Tool::new(env!("CARGO_BIN_EXE_pinfold"))
        .args(["gc", "--server", &server.url()])
        .args(args)
}

#[tokio::test]
async fn gc_cli_dry_run_lists_a_run_removes_and_a_held_lock_refuses() {
    let server = TestServer::start_with_env(&[("PINFOLD_GC_GRACE_SECONDS", "0")]).await;
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    let mut rng = Rng::new();
    let image = Image::random(&mut rng, ImageFormat::Oci, "amd64", 1, 100);
    registry.push_image("cli/app", "v1", &image).await;
    let garbage = Blob::new("application/octet-stream", rng.bytes(300));
    registry.push_blob("cli/app", &garbage).await.unwrap();

    let dry = pinfold_gc(&server, &["--dry-run", "--json"]).run_ok().await;
    let report: Value = serde_json::from_str(&dry).expect("--json prints JSON");
    assert_eq!(report["dry_run"], true);
    let listed: Vec<&str> = report["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["digest"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [garbage.digest.as_str()]);
    let text = pinfold_gc(&server, &["--dry-run"]).run_ok().await;
    assert!(
        text.contains(&format!("would remove blob cli/app@{}", garbage.digest)),
        "{text}"
    );
    assert_eq!(
        blob_status(&registry, &garbage.digest).await,
        200,
        "dry run"
    );

    // A backup holds the sweep lock shared: GC refuses, exit 2, nothing deleted.
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(server.data_dir().join("sweep.lock"))
        .unwrap();
    lock.lock_shared().unwrap();
    let busy = pinfold_gc(&server, &[]).output().await;
    assert_eq!(busy.code(), Some(2), "{}", busy.stderr());
    assert!(
        busy.stderr().contains("nothing was deleted"),
        "{}",
        busy.stderr()
    );
    assert_eq!(
        blob_status(&registry, &garbage.digest).await,
        200,
        "refused"
    );
    drop(lock);

    let text = pinfold_gc(&server, &[]).run_ok().await;
    assert!(
        text.contains(&format!("removed blob cli/app@{}", garbage.digest)),
        "{text}"
    );
    assert!(
        text.contains(&format!("removed file {}", garbage.digest)),
        "{text}"
    );
    assert_eq!(
        blob_status(&registry, &garbage.digest).await,
        404,
        "collected"
    );
    let pulled = registry.get_manifest("cli/app", "v1").await.unwrap();
    assert_eq!(pulled.status, 200);
    assert_eq!(pulled.body, image.manifest.bytes);
    for blob in image.blobs() {
        let fetched = registry.get_blob("cli/app", &blob.digest).await.unwrap();
        assert_eq!(fetched.status, 200);
        assert_eq!(fetched.body, blob.bytes);
    }
}
