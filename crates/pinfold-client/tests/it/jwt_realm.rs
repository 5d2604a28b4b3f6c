//! The Docker token flow end to end: docker-registry configured with `auth: token` trusts a
//! self-signed certificate; an axum realm on 127.0.0.1:0 signs ES256 JWTs with that
//! certificate's key (in `x5c`) for the scopes asked, after checking Basic credentials.
//! distribution verifies issuer, audience, expiry, signature and the granted actions, so a
//! pass means the client asked for the right scope and sent the token the realm issued.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use pinfold_client::{ClientConfig, ClientError, Credentials, RegistryClient};
use pinfold_oci::{Reference, RepoName};
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

use crate::harness::DockerRegistry;
use crate::redirect::serve;

const SERVICE: &str = "pinfold-test-registry";
const ISSUER: &str = "pinfold-test-realm";
const USER: &str = "ci";
const PASSWORD: &str = "s3cret";

struct Realm {
    key: EcdsaKeyPair,
    cert_der_b64: String,
    issued: AtomicUsize,
}

impl Realm {
    /// Signs a token granting every action asked for in `scopes` (`repository:name:a,b`).
    fn sign(&self, scopes: &[String]) -> String {
        let access: Vec<_> = scopes
            .iter()
            .filter_map(|s| {
                let mut parts = s.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                Some(serde_json::json!({
                    "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()
                }))
            })
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let n = self.issued.fetch_add(1, Ordering::SeqCst);
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [self.cert_der_b64]});
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": USER, "aud": SERVICE,
            "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("jti-{n}"),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = ring::rand::SystemRandom::new();
        let sig = self.key.sign(&rng, signing_input.as_bytes()).unwrap();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

async fn token(State(realm): State<Arc<Realm>>, req: Request) -> Response {
    let want = format!("Basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}")));
    let auth = req.headers().get(header::AUTHORIZATION);
    if auth.and_then(|a| a.to_str().ok()) != Some(want.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let query = req.uri().query().unwrap_or_default();
    let mut scopes = Vec::new();
    for pair in query.split('&') {
        if let Some(v) = pair.strip_prefix("scope=") {
            // Scopes are "repository:name:actions": only ':' and ',' get percent-encoded here.
            scopes.push(
                v.replace("%3A", ":")
                    .replace("%2C", ",")
                    .replace("%2F", "/"),
            );
        }
    }
    assert!(
        query.contains(&format!("service={SERVICE}")),
        "service missing: {query}"
    );
    axum::Json(serde_json::json!({"token": realm.sign(&scopes), "expires_in": 300})).into_response()
}

/// Starts the realm and a docker-registry trusting it; returns both and the cert's tempdir.
async fn start() -> (Arc<Realm>, DockerRegistry, tempfile::TempDir) {
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec![ISSUER.to_owned()])
        .unwrap()
        .self_signed(&key_pair)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("root.pem");
    std::fs::write(&bundle, cert.pem()).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &key_pair.serialize_der(),
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    let realm = Arc::new(Realm {
        key,
        cert_der_b64: STANDARD.encode(cert.der()),
        issued: AtomicUsize::new(0),
    });
    let app = axum::Router::new()
        .route("/token", axum::routing::get(token))
        .with_state(realm.clone());
    let port = serve(app).await;
    let auth = format!(
        "auth:\n  token:\n    realm: http://127.0.0.1:{port}/token\n    service: {SERVICE}\n    \
         issuer: {ISSUER}\n    rootcertbundle: {}\n",
        bundle.display()
    );
    let registry = DockerRegistry::start_with_auth(&auth);
    (realm, registry, dir)
}

#[tokio::test]
async fn jwt_realm_in_front_of_docker_registry() {
    let (realm, registry, _dir) = start().await;
    let repo: RepoName = "team/app".parse().unwrap();
    let push_token = realm.sign(&["repository:team/app:pull,push".to_owned()]);
    let image = registry
        .pusher(None)
        .with_bearer(push_token)
        .image("team/app", "v1", 5000)
        .await;
    let before = realm.issued.load(Ordering::SeqCst);

    let c = RegistryClient::new(&registry.addr, ClientConfig::default())
        .unwrap()
        .with_credentials(Some(Credentials::new(USER, PASSWORD)));
    c.ping().await.unwrap();
    let m = c.get_manifest(&repo, &"v1".parse().unwrap()).await.unwrap();
    assert_eq!(m.bytes.as_ref(), image.manifest.as_slice());
    let by_digest = c
        .get_manifest(&repo, &Reference::Digest(image.manifest_digest.clone()))
        .await
        .unwrap();
    assert_eq!(by_digest, m);
    let layer = c
        .get_blob(&repo, &image.layer_digest)
        .await
        .unwrap()
        .collect_bytes()
        .await
        .unwrap();
    assert_eq!(layer.as_ref(), image.layer.as_slice());
    let tags = c.tags(&repo).await.unwrap();
    assert_eq!(tags.len(), 1);
    // One token for /v2/ and one for repository:team/app:pull, reused for the rest.
    assert_eq!(realm.issued.load(Ordering::SeqCst) - before, 2);

    // Another repository is another scope: a token of its own, then the registry's answer.
    let other: RepoName = "team/other".parse().unwrap();
    let e = c
        .get_manifest(&other, &"v1".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::NotFound { .. }), "{e:?}");
    assert_eq!(realm.issued.load(Ordering::SeqCst) - before, 3);

    let wrong = RegistryClient::new(&registry.addr, ClientConfig::default())
        .unwrap()
        .with_credentials(Some(Credentials::new(USER, "wrong")));
    assert!(matches!(
        wrong.get_manifest(&repo, &"v1".parse().unwrap()).await,
        Err(ClientError::Unauthorized { .. })
    ));
}
