//! `pinfold export` / `pinfold import` (issue 5, item 3): images through an OCI image layout
//! from one registry to another, digests unchanged; skopeo reads the layout Pinfold writes and
//! Pinfold imports a layout skopeo wrote. Bad input: exit 2, nothing tagged.

use std::time::Duration;

use crate::harness::{
    require_tool, sha256_digest, Image, ImageFormat, ImageIndex, RegistryClient, Rng, TestServer,
    Tool,
};

fn skopeo() -> Tool {
    Tool::new(require_tool("skopeo", "skopeo"))
        .arg("--insecure-policy")
        .timeout(Duration::from_secs(45))
}

/// Pulls `repo:reference` from `registry` and checks it and its blobs have `digest`.
async fn assert_pulls(registry: &RegistryClient, repo: &str, reference: &str, digest: &str) {
    let m = registry.get_manifest(repo, reference).await.unwrap();
    assert_eq!(m.status, 200, "{repo}:{reference}");
    assert_eq!(sha256_digest(&m.body), digest, "{repo}:{reference}");
    let doc: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
    for child in doc["manifests"].as_array().into_iter().flatten() {
        let d = child["digest"].as_str().unwrap();
        Box::pin(assert_pulls(registry, repo, d, d)).await;
    }
    for blob in doc["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(doc.get("config"))
    {
        let d = blob["digest"].as_str().unwrap();
        let b = registry.get_blob(repo, d).await.unwrap();
        assert_eq!(b.status, 200, "{repo} blob {d}");
        assert_eq!(sha256_digest(&b.body), d);
    }
}

#[tokio::test]
async fn export_import_through_an_oci_layout_keeps_digests_and_tags() {
    let source = TestServer::start().await;
    let dest = TestServer::start().await;
    let src = RegistryClient::new(source.client().clone(), &source.url());
    let dst = RegistryClient::new(dest.client().clone(), &dest.url());
    let mut rng = Rng::with_seed(11);
    let image = Image::random(&mut rng, ImageFormat::Oci, "amd64", 2, 8 * 1024);
    src.push_image("exp/app", "v1", &image).await;
    let index = ImageIndex::random(&mut rng, &["amd64", "arm64"], 2);
    for i in &index.images {
        src.push_image("exp/multi", &i.manifest.digest, i).await;
    }
    src.put_manifest("exp/multi", "latest", &index.index)
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let oci = format!("oci:{}", layout.display());

    let out = Tool::pinfold()
        .args([
            "export",
            "exp/app:v1",
            "exp/multi:latest",
            "--to",
            &oci,
            "--url",
        ])
        .arg(source.url())
        .output()
        .await;
    assert_eq!(out.code(), Some(0), "export: {}", out.stderr());

    // skopeo reads what Pinfold wrote, by tag.
    let raw = skopeo()
        .args(["inspect", "--raw"])
        .arg(format!("{oci}:v1"))
        .run_ok()
        .await;
    assert_eq!(sha256_digest(raw.as_bytes()), image.manifest.digest);
    let raw = skopeo()
        .args(["inspect", "--raw"])
        .arg(format!("{oci}:latest"))
        .run_ok()
        .await;
    assert_eq!(sha256_digest(raw.as_bytes()), index.index.digest);

    let out = Tool::pinfold()
        .args(["import", &oci, "--json", "--url"])
        .arg(dest.url())
        .output()
        .await;
    assert_eq!(out.code(), Some(0), "import: {}", out.stderr());
    assert_pulls(&dst, "exp/app", "v1", &image.manifest.digest).await;
    assert_pulls(&dst, "exp/multi", "latest", &index.index.digest).await;
    // A second import pushes no blob again.
    let again = Tool::pinfold()
        .args(["import", &oci, "--json", "--url"])
        .arg(dest.url())
        .output()
        .await;
    assert_eq!(again.code(), Some(0), "{}", again.stderr());
    let again: serde_json::Value = serde_json::from_str(&again.stdout()).unwrap();
    assert_eq!(again["blobs"], 0);

    // A layout skopeo wrote (no repository annotation): --repository names it.
    let by_skopeo = format!("oci:{}", tmp.path().join("by-skopeo").display());
    skopeo()
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{}/exp/app:v1", source.host_port()))
        .arg(format!("{by_skopeo}:v9"))
        .run_ok()
        .await;
    let out = Tool::pinfold()
        .args(["import", &by_skopeo, "--url"])
        .arg(dest.url())
        .output()
        .await;
    assert_eq!(out.code(), Some(2), "no repository named");
    assert!(out.stderr().contains("--repository"), "{}", out.stderr());
    let out = Tool::pinfold()
        .args(["import", &by_skopeo, "--repository", "from/skopeo", "--url"])
        .arg(dest.url())
        .output()
        .await;
    assert_eq!(out.code(), Some(0), "{}", out.stderr());
    assert_pulls(&dst, "from/skopeo", "v9", &image.manifest.digest).await;
}

#[tokio::test]
async fn export_and_import_refuse_bad_input_with_exit_2() {
    let server = TestServer::start().await;
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    let mut rng = Rng::with_seed(12);
    let image = Image::random(&mut rng, ImageFormat::Oci, "amd64", 1, 1024);
    registry.push_image("bad/app", "v1", &image).await;
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let oci = format!("oci:{}", layout.display());

    let out = Tool::pinfold()
        .args(["export", "bad/app:nope", "--to", &oci, "--url"])
        .arg(server.url())
        .output()
        .await;
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr().contains("not found"), "{}", out.stderr());
    let out = Tool::pinfold()
        .args(["export", "bad/app:v1", "--to", "/no-scheme", "--url"])
        .arg(server.url())
        .output()
        .await;
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr().contains("oci:"), "{}", out.stderr());

    let out = Tool::pinfold()
        .args(["import", &format!("oci:{}", tmp.path().display()), "--url"])
        .arg(server.url())
        .output()
        .await;
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr().contains("not an OCI image layout"),
        "{}",
        out.stderr()
    );

    // A corrupt blob in the layout: named, and the tag is not created.
    Tool::pinfold()
        .args(["export", "bad/app:v1", "--to", &oci, "--url"])
        .arg(server.url())
        .run_ok()
        .await;
    let layer = &image.layers[0].digest;
    let path = layout
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let other = TestServer::start().await;
    let out = Tool::pinfold()
        .args(["import", &oci, "--url"])
        .arg(other.url())
        .output()
        .await;
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr().contains("corrupt"), "{}", out.stderr());
    assert!(out.stderr().contains(layer.as_str()), "{}", out.stderr());
    let fresh = RegistryClient::new(other.client().clone(), &other.url());
    let m = fresh.get_manifest("bad/app", "v1").await.unwrap();
    assert_eq!(m.status, 404, "nothing tagged");
}
