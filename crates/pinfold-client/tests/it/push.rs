//! Pushing to a real docker-registry (distribution 2.8, the reference): monolithic blob
//! uploads and manifest PUTs come back byte for byte, a wrong digest is refused with the
//! registry's code, and the body is resent after the 401 of a Basic-protected registry.

use bytes::Bytes;
use pinfold_client::{ClientConfig, ClientError, Credentials, RegistryClient};
use pinfold_oci::{media_type, Digest, Reference, RepoName};

use crate::harness::{DockerRegistry, PASSWORD, USER};

async fn push_image(c: &RegistryClient, repo: &RepoName) -> (Bytes, Digest, Bytes, Digest) {
    let layer = Bytes::from(vec![7u8; 200_000]);
    let layer_digest = Digest::sha256(&layer);
    let config = Bytes::from_static(
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let config_digest = Digest::sha256(&config);
    assert!(!c.has_blob(repo, &layer_digest).await.unwrap());
    c.push_blob(repo, &layer_digest, layer.clone())
        .await
        .unwrap();
    c.push_blob(repo, &config_digest, config.clone())
        .await
        .unwrap();
    assert!(c.has_blob(repo, &layer_digest).await.unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": media_type::OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    });
    let mut bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    bytes.push(b'\n');
    let bytes = Bytes::from(bytes);
    let digest = c
        .push_manifest(
            repo,
            &Reference::Tag("v1".parse().unwrap()),
            media_type::OCI_MANIFEST,
            bytes.clone(),
        )
        .await
        .unwrap();
    assert_eq!(digest, Digest::sha256(&bytes));
    (bytes, digest, layer, layer_digest)
}

#[tokio::test]
async fn pushed_blobs_and_manifests_read_back_byte_for_byte() {
    let registry = DockerRegistry::start();
    let c = RegistryClient::new(&registry.addr, ClientConfig::default()).unwrap();
    let repo: RepoName = "push/app".parse().unwrap();
    let (manifest, digest, layer, layer_digest) = push_image(&c, &repo).await;
    let got = c
        .get_manifest(&repo, &Reference::Tag("v1".parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(got.bytes, manifest);
    assert_eq!(got.digest, digest);
    let blob = c
        .get_blob(&repo, &layer_digest)
        .await
        .unwrap()
        .collect_bytes()
        .await
        .unwrap();
    assert_eq!(blob, layer);

    // Bytes that do not hash to the announced digest are refused by the registry.
    let wrong = Digest::sha256(b"something else");
    let err = c
        .push_blob(&repo, &wrong, Bytes::from_static(b"these bytes"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Upstream { status: 400, code: Some(code), .. } if code == "DIGEST_INVALID"),
        "{err:?}"
    );
    assert!(!c.has_blob(&repo, &wrong).await.unwrap());
}

#[tokio::test]
async fn pushes_resend_their_body_after_a_basic_challenge() {
    let registry = DockerRegistry::start_with_htpasswd();
    let c = RegistryClient::new(&registry.addr, ClientConfig::default())
        .unwrap()
        .with_credentials(Some(Credentials::new(USER, PASSWORD)));
    let repo: RepoName = "private/app".parse().unwrap();
    let (manifest, _, _, _) = push_image(&c, &repo).await;
    let got = c
        .get_manifest(&repo, &Reference::Tag("v1".parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(got.bytes, manifest);
    // A fresh client's first request is the manifest PUT: answered 401, then resent with
    // credentials and the same body.
    let fresh = RegistryClient::new(&registry.addr, ClientConfig::default())
        .unwrap()
        .with_credentials(Some(Credentials::new(USER, PASSWORD)));
    fresh
        .push_manifest(
            &repo,
            &Reference::Tag("v2".parse().unwrap()),
            media_type::OCI_MANIFEST,
            manifest.clone(),
        )
        .await
        .unwrap();
    let got = c
        .get_manifest(&repo, &Reference::Tag("v2".parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(got.bytes, manifest);
    let anonymous = RegistryClient::new(&registry.addr, ClientConfig::default()).unwrap();
    let err = anonymous
        .push_blob(&repo, &Digest::sha256(b"x"), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unauthorized { .. }), "{err:?}");
}

/// A chunked push (`PATCH` with `Content-Range`, then `PUT ?digest=`) of a blob larger than
/// one chunk, of one exactly a chunk long, and of an empty blob reads back byte for byte from
/// distribution; a wrong digest is refused at the `PUT` and leaves no blob; with Basic auth the
/// chunks are resent after the registry's 401.
#[tokio::test]
async fn chunked_pushes_read_back_byte_for_byte() {
    let registry = DockerRegistry::start_with_htpasswd();
    let c = RegistryClient::new(&registry.addr, ClientConfig::default())
        .unwrap()
        .with_credentials(Some(Credentials::new(USER, PASSWORD)));
    let repo: RepoName = "push/chunked".parse().unwrap();
    let chunk = 64 * 1024;
    let big: Vec<u8> = (0..(3 * chunk + 1234)).map(|i| (i % 251) as u8).collect();
    let exact: Vec<u8> = (0..chunk).map(|i| (i % 13) as u8).collect();
    for content in [big, exact, Vec::new()] {
        let digest = Digest::sha256(&content);
        c.push_blob_chunked(&repo, &digest, std::io::Cursor::new(content.clone()), chunk)
            .await
            .unwrap();
        let got = c
            .get_blob(&repo, &digest)
            .await
            .unwrap()
            .collect_bytes()
            .await
            .unwrap();
        assert_eq!(got.len(), content.len());
        assert!(got == content, "blob of {} bytes differs", content.len());
    }
    let wrong = Digest::sha256(b"not these bytes");
    let err = c
        .push_blob_chunked(
            &repo,
            &wrong,
            std::io::Cursor::new(vec![1u8; 100_000]),
            chunk,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Upstream { status: 400, code: Some(code), .. } if code == "DIGEST_INVALID"),
        "{err:?}"
    );
    assert!(!c.has_blob(&repo, &wrong).await.unwrap());
}
