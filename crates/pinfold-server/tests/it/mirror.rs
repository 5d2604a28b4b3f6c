//! The pull-through mirror against a real upstream: a second Pinfold on loopback, reached
//! through a small forwarding proxy that counts (and, when told to, corrupts) what the
//! mirror asks for, so the tests can check "one upstream GET" where the upstream sees it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures_util::StreamExt;
use pinfold_mirror::{MirrorConfig, MirrorSettings, TagPolicy, UpstreamConfig};
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::*;

/// What the proxy saw and how it behaves.
#[derive(Default)]
struct ProxyState {
    blob_gets: AtomicUsize,
    manifest_requests: AtomicUsize,
    /// Requests for a token at the proxy's realm (`/token`).
    token_requests: AtomicUsize,
    /// Flip the last byte of every blob body.
    corrupt: AtomicBool,
    /// Answer every request with 503.
    down: AtomicBool,
    /// Answer every request with 429 and `Retry-After: 3600`.
    rate_limited: AtomicBool,
    /// Answer manifest GETs with a body over the 4 MiB manifest limit.
    oversized_manifests: AtomicBool,
    /// Send blob bodies in 8 pieces, 400 ms apart.
    slow_blobs: AtomicBool,
    /// Announce the full size of blob bodies, send half, then drop the connection.
    truncate_blobs: AtomicBool,
    /// Answer manifest GETs with this `Content-Type` instead of the upstream's.
    manifest_content_type: parking_lot::Mutex<Option<String>>,
    /// Answer blob GETs with a redirect to this base URL (the same path).
    redirect_blobs_to: parking_lot::Mutex<Option<String>>,
    /// Credentials the proxy demands, and how.
    auth: parking_lot::Mutex<Option<ProxyAuth>>,
    /// The proxy's own address (for the token realm).
    addr: std::sync::OnceLock<SocketAddr>,
}

/// How the proxy authenticates the mirror.
#[derive(Clone)]
enum ProxyAuth {
    /// HTTP Basic with this `user:password`.
    Basic(String),
    /// Docker's token flow: a 401 names the realm `/token`, which hands out [`TOKEN`] for
    /// Basic `user:password`; requests must then carry `Bearer` [`TOKEN`].
    Token(String),
}

/// The only token the proxy's realm issues.
const TOKEN: &str = "proxy-issued-token";

fn basic(user_password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_password)
    )
}

fn status(code: u16) -> Response {
    Response::builder()
        .status(code)
        .body(Body::empty())
        .unwrap()
}

struct Proxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
}

async fn forward(
    State((upstream, state, client)): State<(String, Arc<ProxyState>, reqwest::Client)>,
    request: Request,
) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let is_blob = path.contains("/blobs/sha256:");
    if is_blob && request.method() == axum::http::Method::GET {
        state.blob_gets.fetch_add(1, Ordering::SeqCst);
    }
    if path.contains("/manifests/") {
        state.manifest_requests.fetch_add(1, Ordering::SeqCst);
    }
    if state.down.load(Ordering::SeqCst) {
        return status(503);
    }
    if state.rate_limited.load(Ordering::SeqCst) {
        return Response::builder()
            .status(429)
            .header("retry-after", "3600")
            .body(Body::empty())
            .unwrap();
    }
    let given = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let auth = state.auth.lock().clone();
    match auth {
        Some(ProxyAuth::Basic(creds)) if given != basic(&creds) => {
            return Response::builder()
                .status(401)
                .header("www-authenticate", "Basic realm=\"proxy\"")
                .body(Body::empty())
                .unwrap();
        }
        Some(ProxyAuth::Token(creds)) if path.starts_with("/token") => {
            state.token_requests.fetch_add(1, Ordering::SeqCst);
            if given != basic(&creds) {
                return status(401);
            }
            let body = serde_json::json!({"token": TOKEN, "expires_in": 300}).to_string();
            return Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap();
        }
        Some(ProxyAuth::Token(_)) if given != format!("Bearer {TOKEN}") => {
            let addr = state.addr.get().unwrap();
            let challenge = format!(
                "Bearer realm=\"http://{addr}/token\",service=\"proxy\",scope=\"repository:org/app:pull\""
            );
            return Response::builder()
                .status(401)
                .header("www-authenticate", challenge)
                .body(Body::empty())
                .unwrap();
        }
        // The upstream itself is open: the proxy stands in for a registry that is not.
        _ => {}
    }
    if is_blob && request.method() == axum::http::Method::GET {
        if let Some(base) = state.redirect_blobs_to.lock().clone() {
            return Response::builder()
                .status(307)
                .header("location", format!("{base}{path}"))
                .body(Body::empty())
                .unwrap();
        }
    }
    if path.contains("/manifests/")
        && request.method() == axum::http::Method::GET
        && state.oversized_manifests.load(Ordering::SeqCst)
    {
        return Response::builder()
            .status(200)
            .header("content-type", OCI_MANIFEST)
            .body(Body::from(vec![b' '; 5 * 1024 * 1024]))
            .unwrap();
    }
    let mut forwarded = client.request(request.method().clone(), format!("{upstream}{path}"));
    for (name, value) in request.headers() {
        if name != "host" {
            forwarded = forwarded.header(name, value);
        }
    }
    let body = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap();
    let answer = forwarded.body(body).send().await.unwrap();
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        response = response.header(name, value);
    }
    let mut bytes = answer.bytes().await.unwrap().to_vec();
    if is_blob && state.corrupt.load(Ordering::SeqCst) {
        if let Some(last) = bytes.last_mut() {
            *last ^= 0xff;
        }
    }
    if is_blob && state.truncate_blobs.load(Ordering::SeqCst) {
        let half = bytes[..bytes.len() / 2].to_vec();
        let cut = futures_util::stream::iter([
            Ok(half),
            Err(std::io::Error::other("connection dropped")),
        ]);
        return response.body(Body::from_stream(cut)).unwrap();
    }
    let content_type = state.manifest_content_type.lock().clone();
    if let Some(content_type) = content_type.filter(|_| path.contains("/manifests/")) {
        let mut built = response.body(Body::from(bytes)).unwrap();
        let value = axum::http::HeaderValue::from_str(&content_type).unwrap();
        built.headers_mut().insert("content-type", value);
        return built;
    }
    if is_blob && state.slow_blobs.load(Ordering::SeqCst) {
        let piece = bytes.len().div_ceil(8).max(1);
        let pieces: Vec<Vec<u8>> = bytes.chunks(piece).map(<[u8]>::to_vec).collect();
        let slow = futures_util::stream::iter(pieces).then(|piece| async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok::<_, std::io::Error>(piece)
        });
        return response.body(Body::from_stream(slow)).unwrap();
    }
    response.body(Body::from(bytes)).unwrap()
}

impl Proxy {
    async fn start(upstream: &TestServer) -> Proxy {
        let state = Arc::new(ProxyState::default());
        let app = axum::Router::new().fallback(forward).with_state((
            upstream.url(""),
            Arc::clone(&state),
            reqwest::Client::new(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        state.addr.set(addr).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Proxy { addr, state }
    }
}

fn upstream_config(name: &str, addr: SocketAddr, policy: TagPolicy) -> UpstreamConfig {
    let mut config = UpstreamConfig::new(name, format!("http://{addr}"));
    config.policy = policy;
    config
}

fn mirror_of(upstreams: Vec<UpstreamConfig>) -> MirrorConfig {
    MirrorConfig {
        upstreams,
        settings: MirrorSettings {
            upstream_timeout_seconds: 10,
            ..MirrorSettings::default()
        },
    }
}

async fn manifest_digest(server: &TestServer, path: &str) -> (StatusCode, Option<String>) {
    let resp = server
        .get(path)
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    (resp.status(), header(&resp, "docker-content-digest"))
}

/// The tag journal of `repo:tag` as the history API gives it.
async fn tag_history(server: &TestServer, repo: &str, tag: &str) -> Value {
    json(
        server
            .get(&format!("/api/v1/repositories/{repo}/tags/{tag}/history"))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn json(resp: reqwest::Response) -> Value {
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.json().await.unwrap()
}

/// A tar layer holding a dpkg status database with these package versions and a CA bundle.
fn dpkg_layer(packages: &[(&str, &str)]) -> Vec<u8> {
    let mut status = String::new();
    for (name, version) in packages {
        status.push_str(&format!(
            "Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {version}\n\n"
        ));
    }
    let bundle = format!("bundle for {}\n", packages[0].1);
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes) in [
        ("var/lib/dpkg/status", status.as_bytes()),
        ("etc/ssl/certs/ca-certificates.crt", bundle.as_bytes()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, bytes).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Pushes a one-layer image built from `layer` under `reference`.
async fn push_layer_image(
    server: &TestServer,
    repo: &str,
    reference: &str,
    layer: Vec<u8>,
) -> Image {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer).to_string()]},
        "history": [{"created_by": "ADD rootfs.tar /"}],
        "config": {"Env": ["PATH=/usr/bin"]},
    }))
    .unwrap();
    let manifest = oci_manifest(
        descriptor(OCI_CONFIG, &config),
        vec![descriptor("application/vnd.oci.image.layer.v1.tar", &layer)],
    );
    let image = Image {
        digest: sha256(&manifest),
        config,
        layers: vec![layer],
        manifest,
    };
    server.push_image_blobs(repo, &image).await;
    server
        .push_manifest(repo, reference, OCI_MANIFEST, &image.manifest)
        .await;
    image
}

/// Story 1 on the mirror: A is cached and pinned; the upstream moves the tag to B, whose base
/// layer has newer ca-certificates and libssl3; the mirror keeps serving A and reports drift
/// A→B with an explanation naming them; the history lists A; promoting makes B current; A
/// still pulls by digest.
#[tokio::test]
async fn pinned_tag_drifts_and_is_promoted() {
    let upstream = TestServer::start().await;
    let old = [
        ("ca-certificates", "20230311"),
        ("libssl3", "3.0.11-1~deb12u2"),
        ("tzdata", "2024a-0+deb12u1"),
    ];
    let new = [
        ("ca-certificates", "20240203"),
        ("libssl3", "3.0.13-1~deb12u1"),
        ("tzdata", "2024a-0+deb12u1"),
    ];
    let a = push_layer_image(&upstream, "library/ruby", "2.7", dpkg_layer(&old)).await;
    let mut up = upstream_config("docker.io", upstream.addr, TagPolicy::Pin);
    up.refresh_seconds = 0;
    let mut config = mirror_of(vec![up]);
    config.settings.drift_interval_seconds = 1;
    let mirror = TestServer::start_mirror(config).await;

    // The first pull caches A, byte for byte.
    let resp = mirror
        .get("/v2/docker.io/library/ruby/manifests/2.7")
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "docker-content-digest").unwrap(),
        a.digest.to_string()
    );
    assert_eq!(resp.bytes().await.unwrap(), a.manifest);
    for layer in &a.layers {
        let path = format!("/v2/docker.io/library/ruby/blobs/{}", sha256(layer));
        let body = mirror
            .get(&path)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&body[..], &layer[..]);
    }

    // The upstream moves the tag; the mirror keeps A.
    let b = push_layer_image(&upstream, "library/ruby", "2.7", dpkg_layer(&new)).await;
    let (status, digest) =
        manifest_digest(&mirror, "/v2/docker.io/library/ruby/manifests/2.7").await;
    assert_eq!(
        (status, digest.unwrap()),
        (StatusCode::OK, a.digest.to_string())
    );

    // The drift poller notices within a few passes.
    let deadline = Instant::now() + Duration::from_secs(20);
    let event = loop {
        let list = json(mirror.get("/api/v1/drift").send().await.unwrap()).await;
        if let Some(event) = list["events"].as_array().and_then(|e| e.first()).cloned() {
            break event;
        }
        assert!(Instant::now() < deadline, "no drift event within 20 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(event["repository"], "docker.io/library/ruby");
    assert_eq!(event["tag"], "2.7");
    assert_eq!(event["pinned_digest"], a.digest.to_string());
    assert_eq!(event["upstream_digest"], b.digest.to_string());
    assert_eq!(event["resolution"], Value::Null);
    let (_, digest) = manifest_digest(&mirror, "/v2/docker.io/library/ruby/manifests/2.7").await;
    assert_eq!(
        digest.unwrap(),
        a.digest.to_string(),
        "drift does not move a pinned tag"
    );

    // The explanation arrives in the background; the web UI lists the event with it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let summary = loop {
        let list = json(mirror.get("/api/v1/drift").send().await.unwrap()).await;
        let explanation = &list["events"][0]["explanation"];
        if !explanation.is_null() {
            break explanation["summary"]
                .as_str()
                .unwrap_or_else(|| panic!("no summary: {explanation}"))
                .to_owned();
        }
        assert!(Instant::now() < deadline, "no explanation within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        summary.contains("ca-certificates") && summary.contains("libssl3"),
        "{summary}"
    );
    let page = mirror.get_text("/ui/drift").await;
    let escaped = summary
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    for shown in [
        "docker.io/library/ruby:2.7",
        a.digest.as_str(),
        b.digest.as_str(),
        "<td>open</td>",
        escaped.as_str(),
    ] {
        assert!(page.contains(shown), "{shown:?} not on /ui/drift:\n{page}");
    }
    let overview = mirror.get_text("/").await;
    assert!(overview.contains("1 open drift event<"), "{overview}");

    // Promote: B becomes current, journaled with who did it; the event closes.
    let answer = json(
        mirror
            .post("/api/v1/repositories/docker.io/library/ruby/tags/2.7/promote")
            .json(&serde_json::json!({"actor": "alice"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer["previous"], a.digest.to_string());
    assert_eq!(answer["digest"], b.digest.to_string());
    assert_eq!(answer["moved"], true);
    let (_, digest) = manifest_digest(&mirror, "/v2/docker.io/library/ruby/manifests/2.7").await;
    assert_eq!(digest.unwrap(), b.digest.to_string());
    let (status, _) = manifest_digest(
        &mirror,
        &format!("/v2/docker.io/library/ruby/manifests/{}", a.digest),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "A still pulls by digest");

    let history = tag_history(&mirror, "docker.io/library/ruby", "2.7").await;
    let rows = history.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["new_digest"], a.digest.to_string());
    assert_eq!(rows[0]["source"], "mirror");
    assert_eq!(rows[0]["actor"], "mirror:docker.io");
    assert_eq!(rows[1]["new_digest"], b.digest.to_string());
    assert_eq!(rows[1]["source"], "promote");
    assert_eq!(rows[1]["actor"], "alice");
    // What it resolved to at the time of the first row.
    let at = rows[0]["at"].as_str().unwrap();
    let moment = json(
        mirror
            .get(&format!(
                "/api/v1/repositories/docker.io/library/ruby/tags/2.7/history?at={}",
                at.replace('+', "%2B")
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(moment["digest"], a.digest.to_string());

    let open = json(mirror.get("/api/v1/drift").send().await.unwrap()).await;
    assert_eq!(open["events"].as_array().unwrap().len(), 0);
    let all = json(mirror.get("/api/v1/drift?all=true").send().await.unwrap()).await;
    assert_eq!(all["events"][0]["resolution"], "accepted");
    let page = mirror.get_text("/ui/drift").await;
    assert!(page.contains("<p>None.</p>"), "{page}");
    let page = mirror.get_text("/ui/drift?all=true").await;
    assert!(page.contains("<td>accepted</td>"), "{page}");
}

/// The upstream goes away: everything cached still pulls; what is not cached is a clear
/// OCI error, and pushes to a mirrored name are refused.
#[tokio::test]
async fn cached_content_survives_the_upstream_and_errors_are_oci() {
    let upstream = TestServer::start().await;
    let a = upstream.push_image("org/app", "1").await;
    upstream.push_image("org/app", "2").await;
    let mut up = upstream_config("ghcr.io", upstream.addr, TagPolicy::Follow);
    up.refresh_seconds = 0;
    let mirror = TestServer::start_mirror(mirror_of(vec![up])).await;
    let (status, digest) = manifest_digest(&mirror, "/v2/ghcr.io/org/app/manifests/1").await;
    assert_eq!(
        (status, digest.unwrap()),
        (StatusCode::OK, a.digest.to_string())
    );
    for layer in &a.layers {
        let path = format!("/v2/ghcr.io/org/app/blobs/{}", sha256(layer));
        assert_eq!(
            mirror
                .get(&path)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
            layer[..]
        );
    }
    upstream.shutdown().await;

    // `follow` with refresh 0 asks the upstream on every pull; it cannot, so the cached tag is
    // served with a Warning saying so; by digest too; and the blobs.
    let resp = mirror
        .get("/v2/ghcr.io/org/app/manifests/1")
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "docker-content-digest").unwrap(),
        a.digest.to_string()
    );
    let warning = header(&resp, "warning").expect("a Warning header on a stale answer");
    assert!(warning.starts_with("110 pinfold"), "{warning}");
    let (status, _) = manifest_digest(
        &mirror,
        &format!("/v2/ghcr.io/org/app/manifests/{}", a.digest),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for layer in &a.layers {
        let path = format!("/v2/ghcr.io/org/app/blobs/{}", sha256(layer));
        assert_eq!(
            mirror
                .get(&path)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
            layer[..]
        );
    }

    // Not cached: the upstream is unreachable.
    let resp = mirror
        .get("/v2/ghcr.io/org/app/manifests/2")
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_GATEWAY, "UNAVAILABLE").await;
    // Writes to a mirrored name are refused, and nothing is left behind.
    let resp = mirror
        .post("/v2/ghcr.io/org/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::FORBIDDEN, "DENIED").await;
    let resp = mirror
        .put("/v2/ghcr.io/org/app/manifests/3")
        .header("content-type", OCI_MANIFEST)
        .body(a.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::FORBIDDEN, "DENIED").await;
    eventually("no upload file is left behind", || {
        mirror.leftovers().is_empty()
    })
    .await;
}

/// A tag whose upstream moved is followed at once under `follow` (refresh 0), and the journal
/// records the mirror's move.
#[tokio::test]
async fn follow_policy_moves_with_the_upstream() {
    let upstream = TestServer::start().await;
    let a = upstream.push_image("team/tool", "stable").await;
    let mut up = upstream_config("quay.io", upstream.addr, TagPolicy::Follow);
    up.refresh_seconds = 0;
    let mirror = TestServer::start_mirror(mirror_of(vec![up])).await;
    let (_, digest) = manifest_digest(&mirror, "/v2/quay.io/team/tool/manifests/stable").await;
    assert_eq!(digest.unwrap(), a.digest.to_string());
    let b = upstream.push_image("team/tool", "stable").await;
    let (_, digest) = manifest_digest(&mirror, "/v2/quay.io/team/tool/manifests/stable").await;
    assert_eq!(digest.unwrap(), b.digest.to_string());
    let history = tag_history(&mirror, "quay.io/team/tool", "stable").await;
    let moves: Vec<(&Value, &Value)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (&r["previous_digest"], &r["new_digest"]))
        .collect();
    assert_eq!(moves.len(), 2);
    assert_eq!(moves[1].0, &Value::String(a.digest.to_string()));
    assert_eq!(moves[1].1, &Value::String(b.digest.to_string()));
    // The move the mirror made by itself is in the audit log, with the upstream as its actor.
    let audit = json(mirror.get("/api/v1/audit").send().await.unwrap()).await;
    let target = format!("quay.io/team/tool:stable@{}", b.digest);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "tag-move"
                && e["actor"] == "mirror:quay.io"
                && e["target"] == target.as_str()),
        "{audit}"
    );
    // A stays pullable by digest.
    let (status, _) = manifest_digest(
        &mirror,
        &format!("/v2/quay.io/team/tool/manifests/{}", a.digest),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// An `[[immutable]]` rule outranks the `follow` policy: the mirror keeps serving what the tag
/// first resolved to, and the upstream's move stays an open drift event that no promotion
/// can accept.
#[tokio::test]
async fn follow_policy_never_moves_an_immutable_tag_nor_does_a_promotion() {
    let upstream = TestServer::start().await;
    let a = upstream.push_image("team/tool", "stable").await;
    let mut up = upstream_config("quay.io", upstream.addr, TagPolicy::Follow);
    up.refresh_seconds = 0;
    let mirror = TestServer::start_mirror_with(mirror_of(vec![up]), |c| {
        c.rules.immutable = vec![pinfold_server::registry::gc::ImmutableRule {
            repositories: "quay.io/team/*".into(),
            tags: vec!["stable".into()],
        }];
    })
    .await;
    let path = "/v2/quay.io/team/tool/manifests/stable";
    let (_, digest) = manifest_digest(&mirror, path).await;
    assert_eq!(digest.unwrap(), a.digest.to_string());
    let b = upstream.push_image("team/tool", "stable").await;
    let (_, digest) = manifest_digest(&mirror, path).await;
    assert_eq!(
        digest.unwrap(),
        a.digest.to_string(),
        "the immutable tag moved"
    );
    let drift = json(mirror.get("/api/v1/drift").send().await.unwrap()).await;
    let event = &drift["events"][0];
    assert_eq!(event["pinned_digest"], a.digest.to_string(), "{drift}");
    assert_eq!(event["upstream_digest"], b.digest.to_string(), "{drift}");
    let history = tag_history(&mirror, "quay.io/team/tool", "stable").await;
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");

    // A person cannot move it either: promoting the upstream's digest (named or not) is
    // DENIED, naming the tag and both digests, and changes nothing.
    for body in [
        serde_json::json!({"actor": "alice"}),
        serde_json::json!({"actor": "alice", "digest": b.digest.to_string()}),
    ] {
        let resp = mirror
            .post("/api/v1/repositories/quay.io/team/tool/tags/stable/promote")
            .json(&body)
            .send()
            .await
            .unwrap();
        // The management API's own error format.
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["error"]["code"], "DENIED", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        for part in ["stable", &a.digest.to_string(), &b.digest.to_string()] {
            assert!(message.contains(part), "{message} names {part}");
        }
    }
    let (_, digest) = manifest_digest(&mirror, path).await;
    assert_eq!(digest.unwrap(), a.digest.to_string());
    let history = tag_history(&mirror, "quay.io/team/tool", "stable").await;
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
    let drift = json(mirror.get("/api/v1/drift").send().await.unwrap()).await;
    assert_eq!(drift["events"].as_array().unwrap().len(), 1, "{drift}");
}

/// containerd's `?ns=` form and Docker's `registry-mirrors` form reach the same mirrored
/// repository; local pushes to other names keep working; an unknown `ns` is NAME_UNKNOWN.
#[tokio::test]
async fn addressing_forms_and_local_pushes() {
    let upstream = TestServer::start().await;
    let a = upstream.push_image("library/ruby", "3.3").await;
    let mut up = upstream_config("docker.io", upstream.addr, TagPolicy::Pin);
    up.default = true;
    let mirror = TestServer::start_mirror(mirror_of(vec![up])).await;

    for path in [
        "/v2/library/ruby/manifests/3.3?ns=docker.io",
        "/v2/library/ruby/manifests/3.3",
        "/v2/docker.io/library/ruby/manifests/3.3",
    ] {
        let (status, digest) = manifest_digest(&mirror, path).await;
        assert_eq!(
            (status, digest),
            (StatusCode::OK, Some(a.digest.to_string())),
            "{path}"
        );
    }
    let layer = format!(
        "/v2/library/ruby/blobs/{}?ns=docker.io",
        sha256(&a.layers[0])
    );
    assert_eq!(
        mirror
            .get(&layer)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
        a.layers[0][..]
    );
    // One repository, one journal row.
    let history = tag_history(&mirror, "docker.io/library/ruby", "3.3").await;
    assert_eq!(history.as_array().unwrap().len(), 1);

    let resp = mirror
        .get("/v2/library/ruby/manifests/3.3?ns=quay.io")
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;

    // A local push to a name with no upstream prefix; then its pulls stay local.
    let local = mirror.push_image("myteam/app", "1").await;
    let (status, digest) = manifest_digest(&mirror, "/v2/myteam/app/manifests/1").await;
    assert_eq!(
        (status, digest),
        (StatusCode::OK, Some(local.digest.to_string()))
    );
}

/// 50 clients pull the same cold blob at once: the upstream sees exactly one GET, and every
/// client gets the exact bytes.
#[tokio::test]
async fn concurrent_cold_pulls_fetch_the_blob_once() {
    let upstream = TestServer::start().await;
    let big = random_bytes(8 * 1024 * 1024);
    let config = random_bytes(200);
    upstream.push_blob("org/big", &big).await;
    upstream.push_blob("org/big", &config).await;
    let manifest = oci_manifest(
        descriptor(OCI_CONFIG, &config),
        vec![descriptor(OCI_LAYER, &big)],
    );
    upstream
        .push_manifest("org/big", "1", OCI_MANIFEST, &manifest)
        .await;
    let proxy = Proxy::start(&upstream).await;
    let mirror = TestServer::start_mirror(mirror_of(vec![upstream_config(
        "up",
        proxy.addr,
        TagPolicy::Pin,
    )]))
    .await;
    let (status, _) = manifest_digest(&mirror, "/v2/up/org/big/manifests/1").await;
    assert_eq!(status, StatusCode::OK);

    let path = format!("/v2/up/org/big/blobs/{}", sha256(&big));
    let pulls = (0..50).map(|_| {
        let request = mirror.get(&path).send();
        async move {
            let resp = request.await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            sha256(&resp.bytes().await.unwrap())
        }
    });
    let digests = futures_util::future::join_all(pulls).await;
    assert!(digests.iter().all(|d| *d == sha256(&big)));
    assert_eq!(proxy.state.blob_gets.load(Ordering::SeqCst), 1);
    // Warm now: served locally, no further upstream GET.
    let again = mirror
        .get(&path)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256(&again), sha256(&big));
    assert_eq!(proxy.state.blob_gets.load(Ordering::SeqCst), 1);
    eventually("the fetch's upload file is stored", || {
        mirror.leftovers().is_empty()
    })
    .await;
}

/// An upstream that sends bytes which do not match the digest: the client never gets a
/// complete body, nothing is stored, and the next request retries and succeeds once the
/// upstream behaves. An upstream answering 503 gives a clear OCI error.
#[tokio::test]
async fn digest_mismatch_from_upstream_is_refused_and_retried() {
    let upstream = TestServer::start().await;
    let a = upstream.push_image("org/app", "1").await;
    let proxy = Proxy::start(&upstream).await;
    let mirror = TestServer::start_mirror(mirror_of(vec![upstream_config(
        "up",
        proxy.addr,
        TagPolicy::Pin,
    )]))
    .await;
    let (status, _) = manifest_digest(&mirror, "/v2/up/org/app/manifests/1").await;
    assert_eq!(status, StatusCode::OK);

    let layer = &a.layers[1];
    let digest = sha256(layer);
    let path = format!("/v2/up/org/app/blobs/{digest}");
    proxy.state.corrupt.store(true, Ordering::SeqCst);
    // Either the body is cut short (the client was streaming when the digest failed) or, when
    // the fetch failed before this client started following it, an OCI error.
    let complete = match mirror.get(&path).send().await {
        Ok(resp) if resp.status() == StatusCode::OK => resp.bytes().await.is_ok(),
        Ok(resp) => {
            assert_error(resp, StatusCode::BAD_GATEWAY, "UNAVAILABLE").await;
            false
        }
        Err(_) => false,
    };
    assert!(!complete, "a corrupted blob must not arrive complete");
    let stored = mirror
        .data_dir()
        .join("blobs/sha256")
        .join(&digest.encoded()[..2])
        .join(digest.encoded());
    assert!(!stored.exists(), "nothing stored");
    // The failed fetch removes its upload file once it has ended.
    eventually("the failed fetch's upload file is removed", || {
        mirror.leftovers().is_empty()
    })
    .await;

    proxy.state.corrupt.store(false, Ordering::SeqCst);
    let body = mirror
        .get(&path)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..], &layer[..]);
    // The client gets the last byte once the digest matched; the blob is stored when the
    // fetch's fsync and rename are done, a moment later.
    eventually("the verified blob is stored", || stored.exists()).await;
    assert_eq!(proxy.state.blob_gets.load(Ordering::SeqCst), 2);

    proxy.state.down.store(true, Ordering::SeqCst);
    let resp = mirror
        .get("/v2/up/org/app/manifests/2")
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_GATEWAY, "UNAVAILABLE").await;
    let resp = mirror
        .get(&format!("/v2/up/org/app/blobs/{}", sha256(&a.layers[0])))
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_GATEWAY, "UNAVAILABLE").await;
    assert!(proxy.state.manifest_requests.load(Ordering::SeqCst) >= 2);
}

/// Referrers (signatures, SBOMs) of a mirrored manifest arrive with it; a tag the upstream
/// deletes keeps being served (follow re-checks on every pull here and finds it gone).
#[tokio::test]
async fn referrers_come_with_their_subject_and_deleted_tags_stay_served() {
    let upstream = TestServer::start().await;
    let a = upstream.push_image("org/signed", "1").await;
    let signature = "application/vnd.example.signature";
    let (artifact, resp) = crate::referrers::push_artifact(
        &upstream,
        "org/signed",
        &a.descriptor(),
        Some(signature),
        serde_json::json!({"k": "sig"}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let mut up = upstream_config("up", upstream.addr, TagPolicy::Follow);
    up.refresh_seconds = 0;
    let mirror = TestServer::start_mirror(mirror_of(vec![up])).await;
    let (status, _) = manifest_digest(&mirror, "/v2/up/org/signed/manifests/1").await;
    assert_eq!(status, StatusCode::OK);

    let path = format!("/v2/up/org/signed/referrers/{}", a.digest);
    let deadline = Instant::now() + Duration::from_secs(10);
    let listed = loop {
        let index: Value = mirror.get_json(&path).await;
        if let Some(first) = index["manifests"]
            .as_array()
            .and_then(|m| m.first())
            .cloned()
        {
            break first;
        }
        assert!(
            Instant::now() < deadline,
            "referrer not mirrored within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(listed["digest"], sha256(&artifact).to_string());
    assert_eq!(listed["artifactType"], signature);
    let resp = mirror
        .get(&format!(
            "/v2/up/org/signed/manifests/{}",
            sha256(&artifact)
        ))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.bytes().await.unwrap(),
        artifact,
        "the referrer's exact bytes"
    );

    let resp = upstream
        .delete("/v2/org/signed/manifests/1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let (status, digest) = manifest_digest(&mirror, "/v2/up/org/signed/manifests/1").await;
    assert_eq!(
        (status, digest),
        (StatusCode::OK, Some(a.digest.to_string()))
    );
}

/// `cooldown`: a new upstream digest is a drift event until it has been stable for
/// `cooldown_seconds`, then the tag follows it.
#[tokio::test]
async fn cooldown_follows_only_a_stable_upstream_digest() {
    let upstream = TestServer::start().await;
    let a = upstream.push_image("org/app", "1").await;
    let mut up = upstream_config("up", upstream.addr, TagPolicy::Cooldown);
    up.refresh_seconds = 0;
    up.cooldown_seconds = 2;
    let mirror = TestServer::start_mirror(mirror_of(vec![up])).await;
    let path = "/v2/up/org/app/manifests/1";
    assert_eq!(
        manifest_digest(&mirror, path).await.1,
        Some(a.digest.to_string())
    );
    let b = upstream.push_image("org/app", "1").await;
    // Seen now: not followed yet, and a drift event says why.
    assert_eq!(
        manifest_digest(&mirror, path).await.1,
        Some(a.digest.to_string())
    );
    let open = json(mirror.get("/api/v1/drift").send().await.unwrap()).await;
    assert_eq!(open["events"][0]["upstream_digest"], b.digest.to_string());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        manifest_digest(&mirror, path).await.1,
        Some(b.digest.to_string())
    );
    let all = json(mirror.get("/api/v1/drift?all=true").send().await.unwrap()).await;
    assert_eq!(all["events"][0]["resolution"], "accepted");
}

/// An upstream answering 429: the drift poller leaves it alone for its `Retry-After` instead of
/// asking again every pass, cached tags keep pulling, and a pull that needs the upstream gets
/// the spec's TOOMANYREQUESTS with the upstream's `Retry-After`.
#[tokio::test]
async fn rate_limited_upstream_is_left_alone_for_its_retry_after() {
    let upstream = TestServer::start().await;
    let a = upstream.push_image("org/app", "1").await;
    let proxy = Proxy::start(&upstream).await;
    let mut up = upstream_config("up", proxy.addr, TagPolicy::Pin);
    up.refresh_seconds = 0;
    let mut config = mirror_of(vec![up]);
    config.settings.drift_interval_seconds = 1;
    let mirror = TestServer::start_mirror(config).await;
    let (status, digest) = manifest_digest(&mirror, "/v2/up/org/app/manifests/1").await;
    assert_eq!(
        (status, digest),
        (StatusCode::OK, Some(a.digest.to_string()))
    );

    proxy.state.rate_limited.store(true, Ordering::SeqCst);
    let before = proxy.state.manifest_requests.load(Ordering::SeqCst);
    // The poller runs every second and every tag is due at once (refresh 0): without the
    // back-off it would ask again every pass.
    eventually("the poller meets the rate limit", || {
        proxy.state.manifest_requests.load(Ordering::SeqCst) > before
    })
    .await;
    let first = proxy.state.manifest_requests.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        proxy.state.manifest_requests.load(Ordering::SeqCst),
        first,
        "no upstream check during the back-off"
    );

    // Cached: served. Not cached: the upstream's answer, in the spec's terms.
    let (status, digest) = manifest_digest(&mirror, "/v2/up/org/app/manifests/1").await;
    assert_eq!(
        (status, digest),
        (StatusCode::OK, Some(a.digest.to_string()))
    );
    let resp = mirror
        .get("/v2/up/org/app/manifests/2")
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "retry-after").as_deref(), Some("3600"));
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
}

/// Credentials configured for an upstream reach it, by HTTP Basic and by Docker's token flow;
/// wrong ones are a clear gateway error that names the upstream and never echoes the secret.
#[tokio::test]
async fn upstream_credentials_basic_and_token_flow() {
    for token_flow in [false, true] {
        let upstream = TestServer::start().await;
        let a = upstream.push_image("org/app", "1").await;
        let proxy = Proxy::start(&upstream).await;
        let creds = "mirror-bot:s3cret-Pa55";
        *proxy.state.auth.lock() = Some(if token_flow {
            ProxyAuth::Token(creds.into())
        } else {
            ProxyAuth::Basic(creds.into())
        });
        let mut good = upstream_config("up", proxy.addr, TagPolicy::Pin);
        good.username = Some("mirror-bot".into());
        good.password = Some("s3cret-Pa55".into());
        let mut wrong = upstream_config("bad", proxy.addr, TagPolicy::Pin);
        wrong.username = Some("mirror-bot".into());
        wrong.password = Some("not-the-password".into());
        let anonymous = upstream_config("anon", proxy.addr, TagPolicy::Pin);
        let mirror = TestServer::start_mirror(mirror_of(vec![good, wrong, anonymous])).await;

        let (status, digest) = manifest_digest(&mirror, "/v2/up/org/app/manifests/1").await;
        assert_eq!(
            (status, digest),
            (StatusCode::OK, Some(a.digest.to_string())),
            "token flow: {token_flow}"
        );
        let layer = &a.layers[0];
        let body = mirror
            .get(&format!("/v2/up/org/app/blobs/{}", sha256(layer)))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&body[..], &layer[..]);
        if token_flow {
            assert!(proxy.state.token_requests.load(Ordering::SeqCst) >= 1);
        }

        for name in ["bad", "anon"] {
            let resp = mirror
                .get(&format!("/v2/{name}/org/app/manifests/1"))
                .header("accept", OCI_MANIFEST)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::BAD_GATEWAY, "{name}");
            let body = resp.text().await.unwrap();
            let error: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(error["errors"][0]["code"], "UNAVAILABLE", "{body}");
            assert!(body.contains(name), "names the upstream: {body}");
            assert!(
                !body.contains("not-the-password") && !body.contains("s3cret"),
                "{body}"
            );
        }
        // Nothing of the refused pulls was stored.
        let (status, _) = manifest_digest(&mirror, "/v2/bad/org/app/manifests/1").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
    }
}

/// A blob download redirected to the upstream's own host or a configured blob-storage host is
/// followed; a redirect anywhere else is refused (the bytes never come from a host the
/// operator did not name), and nothing is stored.
#[tokio::test]
async fn blob_redirects_only_to_allowed_hosts() {
    let upstream = TestServer::start().await;
    let a = upstream.push_image("org/app", "1").await;
    let proxy = Proxy::start(&upstream).await;
    // `localhost` is another host than `127.0.0.1` as far as the allow-list goes, yet still
    // this machine's loopback.
    let storage = format!("http://localhost:{}", upstream.addr.port());
    *proxy.state.redirect_blobs_to.lock() = Some(storage);
    let strict = upstream_config("strict", proxy.addr, TagPolicy::Pin);
    let mut trusting = upstream_config("trusting", proxy.addr, TagPolicy::Pin);
    trusting.redirect_hosts = vec!["localhost".into()];
    let mirror = TestServer::start_mirror(mirror_of(vec![strict, trusting])).await;
    let layer = &a.layers[0];

    let resp = mirror
        .get(&format!("/v2/strict/org/app/blobs/{}", sha256(layer)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("UNAVAILABLE") && body.contains("localhost"),
        "{body}"
    );
    let stored = mirror
        .data_dir()
        .join("blobs/sha256")
        .join(&sha256(layer).encoded()[..2])
        .join(sha256(layer).encoded());
    assert!(!stored.exists());

    let body = mirror
        .get(&format!("/v2/trusting/org/app/blobs/{}", sha256(layer)))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..], &layer[..]);
    eventually("the redirected blob is stored", || stored.exists()).await;
}

/// An upstream manifest over the 4 MiB limit is refused without being read whole or stored.
#[tokio::test]
async fn oversized_upstream_manifest_is_refused() {
    let upstream = TestServer::start().await;
    upstream.push_image("org/app", "1").await;
    let proxy = Proxy::start(&upstream).await;
    proxy
        .state
        .oversized_manifests
        .store(true, Ordering::SeqCst);
    let mirror = TestServer::start_mirror(mirror_of(vec![upstream_config(
        "up",
        proxy.addr,
        TagPolicy::Pin,
    )]))
    .await;
    let resp = mirror
        .get("/v2/up/org/app/manifests/1")
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("UNAVAILABLE") && body.contains("4194304"),
        "{body}"
    );
    let tags = mirror.get("/v2/up/org/app/tags/list").send().await.unwrap();
    assert_ne!(tags.status(), StatusCode::OK, "no tag was recorded");
}

/// Requests to an upstream are bounded (`max_connections`): with one slot taken by a slow
/// download, a second cold pull waits for it as long as the upstream timeout allows, then gets
/// 429 TOOMANYREQUESTS with `Retry-After`; once the slot is free it succeeds.
#[tokio::test]
async fn upstream_connections_are_bounded() {
    let upstream = TestServer::start().await;
    let a = upstream.push_image("org/app", "1").await;
    let proxy = Proxy::start(&upstream).await;
    let mut up = upstream_config("up", proxy.addr, TagPolicy::Pin);
    up.max_connections = 1;
    let mut config = mirror_of(vec![up]);
    config.settings.upstream_timeout_seconds = 2;
    let mirror = TestServer::start_mirror(config).await;
    proxy.state.slow_blobs.store(true, Ordering::SeqCst);

    // The first download takes about 3.2 s (8 pieces, 400 ms apart) and holds the only slot.
    let first_path = format!("/v2/up/org/app/blobs/{}", sha256(&a.layers[0]));
    let first = mirror.get(&first_path).send();
    let first = tokio::spawn(async move { first.await.unwrap().bytes().await.unwrap() });
    eventually("the first download started", || {
        proxy.state.blob_gets.load(Ordering::SeqCst) == 1
    })
    .await;
    let second_path = format!("/v2/up/org/app/blobs/{}", sha256(&a.layers[1]));
    let resp = mirror.get(&second_path).send().await.unwrap();
    assert_eq!(header(&resp, "retry-after").as_deref(), Some("1"));
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
    assert_eq!(
        proxy.state.blob_gets.load(Ordering::SeqCst),
        1,
        "the refused pull never reached the upstream"
    );

    assert_eq!(&first.await.unwrap()[..], &a.layers[0][..]);
    proxy.state.slow_blobs.store(false, Ordering::SeqCst);
    let body = mirror
        .get(&second_path)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..], &a.layers[1][..]);
}

/// An upstream whose answers do not add up: a blob body shorter than its announced size (the
/// connection dropped mid-way), a manifest sent as a non-manifest media type, or as another
/// manifest type than its content. Each is a 502 UNAVAILABLE in the OCI format, and nothing
/// is stored: no blob, no manifest, no tag.
#[tokio::test]
async fn wrong_sizes_and_media_types_from_upstream_are_refused() {
    let upstream = TestServer::start().await;
    let a = upstream.push_image("org/app", "1").await;
    let proxy = Proxy::start(&upstream).await;
    let mirror = TestServer::start_mirror(mirror_of(vec![upstream_config(
        "up",
        proxy.addr,
        TagPolicy::Pin,
    )]))
    .await;

    proxy.state.truncate_blobs.store(true, Ordering::SeqCst);
    let layer = &a.layers[0];
    let path = format!("/v2/up/org/app/blobs/{}", sha256(layer));
    let complete = match mirror.get(&path).send().await {
        Ok(resp) if resp.status() == StatusCode::OK => resp.bytes().await.is_ok(),
        Ok(resp) => {
            assert_error(resp, StatusCode::BAD_GATEWAY, "UNAVAILABLE").await;
            false
        }
        Err(_) => false,
    };
    assert!(!complete, "a cut-off blob must not arrive complete");
    eventually("the cut-off fetch leaves nothing", || {
        mirror.leftovers().is_empty()
    })
    .await;
    let stored = mirror
        .data_dir()
        .join("blobs/sha256")
        .join(&sha256(layer).encoded()[..2])
        .join(sha256(layer).encoded());
    assert!(!stored.exists());
    proxy.state.truncate_blobs.store(false, Ordering::SeqCst);

    for (content_type, why) in [
        ("text/html", "not a manifest type"),
        (
            "application/vnd.oci.image.index.v1+json",
            "an image manifest sent as an index",
        ),
    ] {
        *proxy.state.manifest_content_type.lock() = Some(content_type.into());
        let resp = mirror
            .get("/v2/up/org/app/manifests/1")
            .header("accept", OCI_MANIFEST)
            .header("accept", "application/vnd.oci.image.index.v1+json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY, "{why}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "UNAVAILABLE", "{why}: {body}");
    }
    let resp = mirror
        .head(&format!("/v2/up/org/app/manifests/{}", a.digest))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY, "still not stored");

    // With honest answers the same pulls work.
    *proxy.state.manifest_content_type.lock() = None;
    let (status, digest) = manifest_digest(&mirror, "/v2/up/org/app/manifests/1").await;
    assert_eq!(
        (status, digest),
        (StatusCode::OK, Some(a.digest.to_string()))
    );
    let body = mirror
        .get(&path)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..], &layer[..]);
}

/// A client that stalls during a cold pull falls out of the fetch's in-memory window (32 MiB)
/// and must get the rest from the fetched file, while a client that keeps up is served from
/// memory; both get the whole blob, and the upstream is asked once.
#[tokio::test]
async fn a_stalled_cold_pull_resumes_from_the_fetched_file() {
    let upstream = TestServer::start().await;
    // Far beyond the window plus what loopback socket buffers absorb for the stalled client.
    let big = random_bytes(64 * 1024 * 1024);
    upstream.push_blob("org/huge", &big).await;
    let proxy = Proxy::start(&upstream).await;
    let mirror = TestServer::start_mirror(mirror_of(vec![upstream_config(
        "up",
        proxy.addr,
        TagPolicy::Pin,
    )]))
    .await;
    let path = format!("/v2/up/org/huge/blobs/{}", sha256(&big));

    let mut stalled = mirror.get(&path).send().await.unwrap();
    assert_eq!(stalled.status(), StatusCode::OK);
    let mut received = stalled
        .chunk()
        .await
        .unwrap()
        .expect("a first chunk")
        .to_vec();
    // While it stalls, another client pulls the whole blob: the fetch runs to the end.
    let fast = mirror.get(&path).send().await.unwrap();
    assert_eq!(fast.status(), StatusCode::OK);
    assert_eq!(sha256(&fast.bytes().await.unwrap()), sha256(&big));
    eventually("the fetched blob is stored", || {
        mirror.leftovers().is_empty()
    })
    .await;

    // Bounded: the body is finite and each chunk is at least one byte.
    while let Some(chunk) = stalled.chunk().await.unwrap() {
        received.extend_from_slice(&chunk);
        assert!(received.len() <= big.len(), "more bytes than the blob");
    }
    assert_eq!(received.len(), big.len());
    assert_eq!(sha256(&received), sha256(&big));
    assert_eq!(proxy.state.blob_gets.load(Ordering::SeqCst), 1);
}

/// Pulls `path` and returns the error envelope with `digest` blanked out, after checking the
/// status and code: what a client learns from the answer, beyond the digest it asked for.
async fn blob_unknown_answer(mirror: &TestServer, path: &str, digest: &str) -> String {
    let resp = mirror.get(path).send().await.unwrap();
    let envelope = assert_error(resp, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    envelope.to_string().replace(digest, "<digest>")
}

/// Issue 16: a blob the store holds for a private local repository is not served through a
/// mirrored name whose upstream does not have it. GET and HEAD answer 404 BLOB_UNKNOWN with the
/// body of a digest stored nowhere, and nothing is linked; a blob the upstream has is still
/// served (once fetched, then locally), from the stored bytes when the store has them.
#[tokio::test]
async fn issue_16_mirror_serves_a_stored_blob_only_if_its_upstream_has_it() {
    let upstream = TestServer::start().await;
    let public = random_bytes(5000);
    let public_digest = upstream.push_blob("org/app", &public).await;
    let shared = random_bytes(6000);
    let shared_digest = upstream.push_blob("org/app", &shared).await;
    let proxy = Proxy::start(&upstream).await;
    let mirror = TestServer::start_mirror(mirror_of(vec![upstream_config(
        "up",
        proxy.addr,
        TagPolicy::Pin,
    )]))
    .await;
    // Pushed into local repositories of the mirroring server; the upstream never saw `private`.
    let private = random_bytes(4000);
    let private_digest = mirror.push_blob("team/secret", &private).await;
    mirror.push_blob("team/secret", &shared).await;
    let nowhere = sha256(&random_bytes(4000));

    for repo in ["org/anything", "org/app"] {
        let stored = blob_unknown_answer(
            &mirror,
            &format!("/v2/up/{repo}/blobs/{private_digest}"),
            private_digest.as_str(),
        )
        .await;
        let unknown = blob_unknown_answer(
            &mirror,
            &format!("/v2/up/{repo}/blobs/{nowhere}"),
            nowhere.as_str(),
        )
        .await;
        assert_eq!(stored, unknown, "through up/{repo}");
        for digest in [&private_digest, &nowhere] {
            let resp = mirror
                .head(&format!("/v2/up/{repo}/blobs/{digest}"))
                .send()
                .await
                .unwrap();
            assert_head_error(resp, StatusCode::NOT_FOUND).await;
        }
    }
    // Nothing was linked: asked again, the same answer; the owner still reads it.
    let again = mirror
        .get(&format!("/v2/up/org/app/blobs/{private_digest}"))
        .send()
        .await
        .unwrap();
    assert_error(again, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    let own = mirror
        .get(&format!("/v2/team/secret/blobs/{private_digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(own.bytes().await.unwrap(), private);

    // What the upstream has is served: fetched once, then from the store.
    let gets = proxy.state.blob_gets.load(Ordering::SeqCst);
    for _ in 0..2 {
        let resp = mirror
            .get(&format!("/v2/up/org/app/blobs/{public_digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.bytes().await.unwrap(), public);
        eventually("the fetched blob is stored", || {
            mirror.leftovers().is_empty()
        })
        .await;
    }
    assert_eq!(proxy.state.blob_gets.load(Ordering::SeqCst), gets + 1);
    // Stored already and confirmed by the upstream: served from the store, no GET upstream.
    let resp = mirror
        .get(&format!("/v2/up/org/app/blobs/{shared_digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), shared);
    assert_eq!(proxy.state.blob_gets.load(Ordering::SeqCst), gets + 1);
}

/// Issue 16: a request for one mirrored repository does not follow a fetch in flight for
/// another unless its own upstream repository has the blob; when it does, it follows that
/// fetch (still one upstream GET).
#[tokio::test]
async fn issue_16_mirror_follows_another_repositorys_fetch_only_if_its_upstream_has_it() {
    let upstream = TestServer::start().await;
    let blob = random_bytes(64 * 1024);
    let digest = upstream.push_blob("org/app", &blob).await;
    upstream.push_blob("org/copy", &blob).await;
    let proxy = Proxy::start(&upstream).await;
    let mirror = TestServer::start_mirror(mirror_of(vec![upstream_config(
        "up",
        proxy.addr,
        TagPolicy::Pin,
    )]))
    .await;
    // What a digest stored nowhere gets (its fetch asks the upstream once).
    let unknown = sha256(&random_bytes(100));
    let nowhere = blob_unknown_answer(
        &mirror,
        &format!("/v2/up/org/other/blobs/{unknown}"),
        unknown.as_str(),
    )
    .await;
    // The first fetch takes about 3.2 s (8 pieces, 400 ms apart).
    proxy.state.slow_blobs.store(true, Ordering::SeqCst);
    let first = mirror.get(&format!("/v2/up/org/app/blobs/{digest}")).send();
    let first = tokio::spawn(async move {
        let resp = first.await.unwrap();
        (resp.status(), resp.bytes().await.unwrap())
    });
    eventually("the first fetch started", || {
        proxy.state.blob_gets.load(Ordering::SeqCst) == 2
    })
    .await;

    let refused = blob_unknown_answer(
        &mirror,
        &format!("/v2/up/org/other/blobs/{digest}"),
        digest.as_str(),
    )
    .await;
    assert_eq!(refused, nowhere);
    let joined = mirror
        .get(&format!("/v2/up/org/copy/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(joined.status(), StatusCode::OK);
    assert_eq!(joined.bytes().await.unwrap(), blob);
    let (status, body) = first.await.unwrap();
    assert_eq!((status, body), (StatusCode::OK, blob.into()));
    // One GET of the blob (the unknown digest's fetch is the other).
    assert_eq!(proxy.state.blob_gets.load(Ordering::SeqCst), 2);
}
