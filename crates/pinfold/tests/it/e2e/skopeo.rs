//! skopeo (containers/image) against the registry: images go in and come back out with
//! every digest unchanged, multi-arch indexes included, and Docker schema 2 conversions
//! report the digest the registry serves.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{
    read_oci_layout_blob, read_oci_layout_ref, require_tool, sha256_digest, write_oci_layout, Blob,
    Image, ImageFormat, ImageIndex, RegistryClient, Rng, Target, TestServer, Tool, DOCKER_MANIFEST,
    OCI_INDEX, OCI_MANIFEST,
};

/// `skopeo` with the options every call here shares: no dependence on the host's
/// `policy.json`, and a time limit.
fn skopeo() -> Tool {
    let program = require_tool("skopeo", "skopeo");
    Tool::new(program)
        .arg("--insecure-policy")
        .timeout(Duration::from_secs(45))
}

/// `skopeo copy` from `src` to `dest`, plain HTTP on both sides; returns the digest skopeo
/// wrote with `--digestfile`.
async fn skopeo_copy(extra: &[&str], src: &str, dest: &str, scratch: &Path) -> String {
    let digest_file = scratch.join(format!("digest-{}", Rng::new().token()));
    skopeo()
        .arg("copy")
        .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg("--digestfile")
        .arg(&digest_file)
        .args(extra)
        .args([src, dest])
        .run_ok()
        .await;
    std::fs::read_to_string(&digest_file)
        .expect("read skopeo --digestfile")
        .trim()
        .to_owned()
}

/// `skopeo inspect --raw`: the manifest bytes exactly as served.
async fn skopeo_inspect_raw(image: &str) -> Vec<u8> {
    skopeo()
        .args(["inspect", "--raw", "--tls-verify=false", image])
        .run_ok()
        .await
        .into_bytes()
}

/// Asserts `layout_dir` holds `blob` with identical bytes.
fn assert_layout_has(layout_dir: &Path, blob: &Blob, what: &str) {
    let got = read_oci_layout_blob(layout_dir, &blob.digest);
    assert!(
        got == blob.bytes,
        "{what} {} came back with different bytes ({} bytes, sha256 {}, expected {} bytes)",
        blob.digest,
        got.len(),
        sha256_digest(&got),
        blob.bytes.len()
    );
}

/// Asserts the registry serves `manifest` at `repo:reference` byte for byte, with its
/// media type and digest, and every blob of `image` with its exact bytes.
async fn assert_registry_serves(
    registry: &RegistryClient,
    repo: &str,
    reference: &str,
    manifest: &Blob,
) {
    let got = registry
        .get_manifest(repo, reference)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let request = format!("GET /v2/{repo}/manifests/{reference}");
    assert_eq!(
        got.status, 200,
        "{request}: expected 200, got {}",
        got.status
    );
    assert_eq!(
        got.header("docker-content-digest"),
        Some(manifest.digest.as_str()),
        "{request}: Docker-Content-Digest"
    );
    assert_eq!(
        got.header("content-type"),
        Some(manifest.media_type.as_str()),
        "{request}: Content-Type"
    );
    assert!(
        got.body == manifest.bytes,
        "{request}: expected the pushed {} bytes, got {} bytes:\n{}",
        manifest.bytes.len(),
        got.body.len(),
        String::from_utf8_lossy(&got.body)
    );
}

async fn assert_registry_has_blobs<'a>(
    registry: &RegistryClient,
    repo: &str,
    blobs: impl IntoIterator<Item = &'a Blob>,
) {
    for blob in blobs {
        let got = registry
            .get_blob(repo, &blob.digest)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            got.status, 200,
            "GET /v2/{repo}/blobs/{}: expected 200, got {}",
            blob.digest, got.status
        );
        assert!(
            got.body == blob.bytes,
            "GET /v2/{repo}/blobs/{}: expected the pushed {} bytes, got {} bytes (sha256 {})",
            blob.digest,
            blob.bytes.len(),
            got.body.len(),
            sha256_digest(&got.body)
        );
    }
}

#[tokio::test]
async fn oci_image_round_trips_with_identical_digests() {
    let server = TestServer::start().await;
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng::new();
    let image = Image::random(&mut rng, ImageFormat::Oci, "amd64", 3, 96 * 1024);
    let src = scratch.path().join("src");
    write_oci_layout(&src, "v1", &image.manifest, image.blobs());
    let remote = format!("docker://{}/team/app:1", server.host_port());

    let pushed = skopeo_copy(
        &["--preserve-digests", "--format", "oci"],
        &format!("oci:{}:v1", src.display()),
        &remote,
        scratch.path(),
    )
    .await;
    assert_eq!(pushed, image.manifest.digest, "digest skopeo pushed");
    assert!(
        skopeo_inspect_raw(&remote).await == image.manifest.bytes,
        "skopeo inspect --raw {remote} differs from the pushed manifest bytes"
    );
    assert_registry_serves(&registry, "team/app", "1", &image.manifest).await;
    assert_registry_serves(
        &registry,
        "team/app",
        &image.manifest.digest,
        &image.manifest,
    )
    .await;
    assert_registry_has_blobs(&registry, "team/app", image.blobs()).await;

    let back = scratch.path().join("back");
    let pulled = skopeo_copy(
        &["--preserve-digests"],
        &remote,
        &format!("oci:{}:v1", back.display()),
        scratch.path(),
    )
    .await;
    assert_eq!(pulled, image.manifest.digest, "digest skopeo pulled");
    assert_eq!(
        read_oci_layout_ref(&back, "v1"),
        (OCI_MANIFEST.to_owned(), image.manifest.digest.clone()),
        "manifest descriptor pulled back"
    );
    assert_layout_has(&back, &image.manifest, "manifest");
    assert_layout_has(&back, &image.config, "config");
    for layer in &image.layers {
        assert_layout_has(&back, layer, "layer");
    }

    // Move the tag: push different content to the same tag.
    let second = Image::random(&mut rng, ImageFormat::Oci, "amd64", 3, 32 * 1024);
    let src2 = scratch.path().join("src2");
    write_oci_layout(&src2, "v2", &second.manifest, second.blobs());
    let pushed2 = skopeo_copy(
        &["--preserve-digests", "--format", "oci"],
        &format!("oci:{}:v2", src2.display()),
        &remote,
        scratch.path(),
    )
    .await;
    assert_eq!(
        pushed2, second.manifest.digest,
        "digest skopeo pushed second"
    );
    assert_registry_serves(&registry, "team/app", "1", &second.manifest).await;
    // The first manifest is still there by digest.
    assert_registry_serves(
        &registry,
        "team/app",
        &image.manifest.digest,
        &image.manifest,
    )
    .await;

    if server.target() == Target::Pinfold {
        assert_tag_history_is_two_pushes(
            &registry,
            &image.manifest.digest,
            &second.manifest.digest,
        )
        .await;
    }
}

/// The tag journal of `team/app:1` holds the first push (from nothing) and the move.
async fn assert_tag_history_is_two_pushes(registry: &RegistryClient, first: &str, second: &str) {
    let path = "/api/v1/repositories/team/app/tags/1/history";
    let got = registry
        .get(path, Some("application/json"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let body = String::from_utf8_lossy(&got.body);
    assert_eq!(
        got.status, 200,
        "GET {path}: expected 200, got {}: {body}",
        got.status
    );
    let entries: Value = serde_json::from_slice(&got.body)
        .unwrap_or_else(|e| panic!("GET {path}: expected a JSON array, got {e}: {body}"));
    let entries = entries
        .as_array()
        .unwrap_or_else(|| panic!("GET {path}: expected a JSON array, got {body}"));
    assert_eq!(
        entries.len(),
        2,
        "GET {path}: expected 2 entries, got {body}"
    );
    for entry in entries {
        for field in [
            "id",
            "repository",
            "tag",
            "previous_digest",
            "new_digest",
            "at",
            "actor",
            "source",
        ] {
            assert!(
                entry.get(field).is_some(),
                "GET {path}: entry lacks `{field}`: {entry}"
            );
        }
        assert_eq!(entry["source"], "push", "GET {path}: source of {entry}");
        assert_eq!(
            entry["repository"], "team/app",
            "GET {path}: repository of {entry}"
        );
        assert_eq!(entry["tag"], "1", "GET {path}: tag of {entry}");
    }
    let by_new = |digest: &str| {
        entries
            .iter()
            .find(|e| e["new_digest"] == digest)
            .unwrap_or_else(|| panic!("GET {path}: no entry with new_digest {digest}: {body}"))
    };
    assert!(
        by_new(first)["previous_digest"].is_null(),
        "GET {path}: the first push should have previous_digest null: {body}"
    );
    assert_eq!(
        by_new(second)["previous_digest"],
        first,
        "GET {path}: the move should record the previous digest: {body}"
    );
}

#[tokio::test]
async fn multi_arch_index_round_trips_and_one_platform_pulls() {
    let server = TestServer::start().await;
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng::new();
    let index = ImageIndex::random(&mut rng, &["amd64", "arm64"], 2);
    let src = scratch.path().join("src");
    let manifests: Vec<Blob> = index.images.iter().map(|i| i.manifest.clone()).collect();
    write_oci_layout(
        &src,
        "v1",
        &index.index,
        index.images.iter().flat_map(Image::blobs).chain(&manifests),
    );
    let remote = format!("docker://{}/team/multi:1", server.host_port());

    let pushed = skopeo_copy(
        &["--all", "--preserve-digests"],
        &format!("oci:{}:v1", src.display()),
        &remote,
        scratch.path(),
    )
    .await;
    assert_eq!(pushed, index.index.digest, "index digest skopeo pushed");
    assert!(
        skopeo_inspect_raw(&remote).await == index.index.bytes,
        "skopeo inspect --raw {remote} differs from the pushed index bytes"
    );
    assert_registry_serves(&registry, "team/multi", "1", &index.index).await;
    for image in &index.images {
        assert_registry_serves(
            &registry,
            "team/multi",
            &image.manifest.digest,
            &image.manifest,
        )
        .await;
        assert_registry_has_blobs(&registry, "team/multi", image.blobs()).await;
    }

    let back = scratch.path().join("back");
    skopeo_copy(
        &["--all", "--preserve-digests"],
        &remote,
        &format!("oci:{}:v1", back.display()),
        scratch.path(),
    )
    .await;
    assert_eq!(
        read_oci_layout_ref(&back, "v1"),
        (OCI_INDEX.to_owned(), index.index.digest.clone()),
        "index descriptor pulled back"
    );
    assert_layout_has(&back, &index.index, "index");
    for image in &index.images {
        assert_layout_has(&back, &image.manifest, "manifest");
        for blob in image.blobs() {
            assert_layout_has(&back, blob, "blob");
        }
    }

    let arm = scratch.path().join("arm");
    let arm64 = index.image("arm64");
    skopeo()
        .args(["--override-arch", "arm64", "--override-os", "linux", "copy"])
        .args(["--src-tls-verify=false", "--preserve-digests"])
        .arg(&remote)
        .arg(format!("oci:{}:arm", arm.display()))
        .run_ok()
        .await;
    assert_eq!(
        read_oci_layout_ref(&arm, "arm"),
        (OCI_MANIFEST.to_owned(), arm64.manifest.digest.clone()),
        "single platform pulled with --override-arch arm64"
    );
    assert_layout_has(&arm, &arm64.manifest, "arm64 manifest");
    assert_layout_has(&arm, &arm64.config, "arm64 config");
}

#[tokio::test]
async fn docker_schema2_copy_reports_the_served_digest() {
    let server = TestServer::start().await;
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng::new();
    let image = Image::random(&mut rng, ImageFormat::Oci, "amd64", 2, 48 * 1024);
    let src = scratch.path().join("src");
    write_oci_layout(&src, "v1", &image.manifest, image.blobs());
    let remote = format!("docker://{}/team/schema2:1", server.host_port());

    // skopeo converts the OCI manifest to Docker schema 2; the digest it reports is of the
    // bytes it sent, which the registry must serve unchanged.
    let pushed = skopeo_copy(
        &["--format", "v2s2"],
        &format!("oci:{}:v1", src.display()),
        &remote,
        scratch.path(),
    )
    .await;
    let got = registry
        .get_manifest("team/schema2", "1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let request = "GET /v2/team/schema2/manifests/1";
    assert_eq!(
        got.status, 200,
        "{request}: expected 200, got {}",
        got.status
    );
    assert_eq!(
        got.header("docker-content-digest"),
        Some(pushed.as_str()),
        "{request}: Docker-Content-Digest vs skopeo --digestfile"
    );
    assert_eq!(
        sha256_digest(&got.body),
        pushed,
        "{request}: sha256 of the body"
    );
    assert_eq!(
        got.header("content-type"),
        Some(DOCKER_MANIFEST),
        "{request}: Content-Type"
    );
    assert!(
        skopeo_inspect_raw(&remote).await == got.body,
        "skopeo inspect --raw {remote} differs from GET {request}"
    );
    let inspected: Value = serde_json::from_str(
        &skopeo()
            .args(["inspect", "--tls-verify=false", &remote])
            .run_ok()
            .await,
    )
    .expect("skopeo inspect JSON");
    assert_eq!(inspected["Digest"], pushed, "skopeo inspect Digest");
    let manifest = Blob::new(DOCKER_MANIFEST, got.body.clone());
    // The config and layers keep their bytes through the conversion.
    assert_registry_has_blobs(&registry, "team/schema2", image.blobs()).await;

    // Registry to registry, another repository: the schema 2 manifest is kept byte for byte.
    let copy = format!("docker://{}/team/schema2-copy:1", server.host_port());
    let copied = skopeo_copy(&["--preserve-digests"], &remote, &copy, scratch.path()).await;
    assert_eq!(copied, pushed, "digest of the registry-to-registry copy");
    assert_registry_serves(&registry, "team/schema2-copy", "1", &manifest).await;
    assert_registry_has_blobs(&registry, "team/schema2-copy", image.blobs()).await;

    // A schema 2 manifest crafted by hand and pushed over plain HTTP: skopeo's `dir:`
    // transport keeps it byte for byte, and pushing that back keeps its digest.
    let crafted = Image::random(&mut rng, ImageFormat::DockerSchema2, "amd64", 2, 24 * 1024);
    registry.push_image("team/crafted", "1", &crafted).await;
    let crafted_remote = format!("docker://{}/team/crafted:1", server.host_port());
    assert!(
        skopeo_inspect_raw(&crafted_remote).await == crafted.manifest.bytes,
        "skopeo inspect --raw {crafted_remote} differs from the pushed manifest bytes"
    );
    let dir = scratch.path().join("crafted");
    let pulled = skopeo_copy(
        &["--preserve-digests"],
        &crafted_remote,
        &format!("dir:{}", dir.display()),
        scratch.path(),
    )
    .await;
    assert_eq!(
        pulled, crafted.manifest.digest,
        "digest skopeo pulled to dir:"
    );
    assert!(
        std::fs::read(dir.join("manifest.json")).expect("read dir:/manifest.json")
            == crafted.manifest.bytes,
        "skopeo dir: manifest.json differs from the pushed manifest bytes"
    );
    for blob in crafted.blobs() {
        let path = dir.join(blob.digest.trim_start_matches("sha256:"));
        assert!(
            std::fs::read(&path).ok().as_ref() == Some(&blob.bytes),
            "{} differs from the pushed blob {}",
            path.display(),
            blob.digest
        );
    }
    let copy = format!("docker://{}/team/crafted-copy:1", server.host_port());
    let pushed = skopeo_copy(
        &["--preserve-digests"],
        &format!("dir:{}", dir.display()),
        &copy,
        scratch.path(),
    )
    .await;
    assert_eq!(
        pushed, crafted.manifest.digest,
        "digest skopeo pushed from dir:"
    );
    assert_registry_serves(&registry, "team/crafted-copy", "1", &crafted.manifest).await;
    assert_registry_has_blobs(&registry, "team/crafted-copy", crafted.blobs()).await;
}
