//! HTTP Basic against docker-registry's htpasswd backend.

use base64::Engine as _;
use pinfold_client::{ClientConfig, ClientError, Credentials, RegistryClient};
use pinfold_oci::RepoName;

use crate::harness::{DockerRegistry, PASSWORD, USER};

fn client(registry: &DockerRegistry, credentials: Option<Credentials>) -> RegistryClient {
    RegistryClient::new(&registry.addr, ClientConfig::default())
        .unwrap()
        .with_credentials(credentials)
}

#[tokio::test]
async fn basic_credentials_are_sent_after_the_challenge() {
    let registry = DockerRegistry::start_with_htpasswd();
    let image = registry
        .pusher(Some((USER, PASSWORD)))
        .image("private/app", "v1", 2000)
        .await;
    let c = client(&registry, Some(Credentials::new(USER, PASSWORD)));
    c.ping().await.unwrap();
    let repo: RepoName = "private/app".parse().unwrap();
    let m = c.get_manifest(&repo, &"v1".parse().unwrap()).await.unwrap();
    assert_eq!(m.bytes.as_ref(), image.manifest.as_slice());
    let blob = c.get_blob(&repo, &image.layer_digest).await.unwrap();
    assert_eq!(
        blob.collect_bytes().await.unwrap().as_ref(),
        image.layer.as_slice()
    );
}

#[tokio::test]
async fn missing_or_wrong_credentials_are_unauthorized() {
    let registry = DockerRegistry::start_with_htpasswd();
    let repo: RepoName = "private/app".parse().unwrap();
    let anonymous = client(&registry, None);
    assert!(matches!(
        anonymous.ping().await,
        Err(ClientError::Unauthorized { .. })
    ));
    let wrong = client(&registry, Some(Credentials::new(USER, "wrong")));
    assert!(matches!(
        wrong.ping().await,
        Err(ClientError::Unauthorized { .. })
    ));
    match wrong.tags(&repo).await {
        Err(ClientError::Unauthorized { registry: r }) => assert_eq!(r, registry.addr),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    let unknown_user = client(&registry, Some(Credentials::new("nobody", PASSWORD)));
    assert!(matches!(
        unknown_user.ping().await,
        Err(ClientError::Unauthorized { .. })
    ));
}

#[tokio::test]
async fn credentials_come_from_docker_config_json() {
    let registry = DockerRegistry::start_with_htpasswd();
    let image = registry
        .pusher(Some((USER, PASSWORD)))
        .image("private/app", "v1", 100)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::write(
        dir.path().join("config.json"),
        format!(
            r#"{{"auths":{{"http://{}":{{"auth":"{auth}"}}}}}}"#,
            registry.addr
        ),
    )
    .unwrap();
    // Only this test reads DOCKER_CONFIG, so setting it does not race the others.
    std::env::set_var("DOCKER_CONFIG", dir.path());
    let c = RegistryClient::from_docker_config(&registry.addr, ClientConfig::default())
        .await
        .unwrap();
    std::env::remove_var("DOCKER_CONFIG");
    let repo: RepoName = "private/app".parse().unwrap();
    let m = c.get_manifest(&repo, &"v1".parse().unwrap()).await.unwrap();
    assert_eq!(m.digest, image.manifest_digest);
}
