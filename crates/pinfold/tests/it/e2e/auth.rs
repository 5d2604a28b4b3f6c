//! Issue 6 with real clients: `docker login`, push and pull through the token flow, skopeo
//! with `--creds`, and `pinfold token` / `pinfold audit` against a server with users.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{require_tool, tar_archive, TestServer, Tool};

/// bcrypt (cost 5) of "benchpw".
const ALICE_HASH: &str = "$2b$05$021bV4BQImEEeSxl/Wk/HOse9zTeArg2FJnTXJksxUyonuCJDR5fy";

async fn server() -> TestServer {
    let users = format!(
        r#"[{{name = "alice", password_bcrypt = "{ALICE_HASH}"}}, {{name = "root", password_bcrypt = "{ALICE_HASH}", groups = ["ops"]}}]"#
    );
    let rules = r#"[{repositories = "team/*", users = ["alice"], actions = ["pull", "push"]}, {repositories = "*", groups = ["ops"], actions = ["admin"]}, {repositories = "public/*", anonymous_pull = true}]"#;
    TestServer::start_with_env(&[
        ("PINFOLD_USER", users.as_str()),
        ("PINFOLD_PERMISSION", rules),
    ])
    .await
}

#[tokio::test]
async fn docker_logs_in_pushes_and_pulls_through_the_token_flow() {
    let docker = require_tool("docker", "docker.io");
    let server = server().await;
    let host = server.host_port().to_owned();
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("docker-config");
    std::fs::create_dir_all(&config).unwrap();
    let tar = scratch.path().join("empty.tar");
    std::fs::write(&tar, tar_archive(&[])).unwrap();
    let name = format!("{host}/team/auth-e2e:v1");
    let other = format!("{host}/other/auth-e2e:v1");
    let d = |args: &[&str]| {
        Tool::new(docker.clone())
            .arg("--config")
            .arg(&config)
            .args(args)
            .timeout(Duration::from_secs(50))
    };
    d(&["import", tar.to_str().unwrap(), &name]).run_ok().await;
    d(&["tag", &name, &other]).run_ok().await;
    // Without login the push is refused.
    let out = d(&["push", &name]).output().await;
    assert_ne!(out.code(), Some(0), "push without login succeeded");
    d(&["login", "-u", "alice", "-p", "benchpw", &host])
        .run_ok()
        .await;
    d(&["push", &name]).run_ok().await;
    // The pinfold CLI falls back to what `docker login` stored: management API and registry
    // reads work without --token.
    let pinfold = || {
        Tool::new(env!("CARGO_BIN_EXE_pinfold"))
            .env("PINFOLD_URL", server.url())
            .env("DOCKER_CONFIG", &config)
            .timeout(Duration::from_secs(30))
    };
    let tokens = pinfold().args(["token", "list", "--json"]).run_ok().await;
    assert_eq!(
        serde_json::from_str::<Value>(&tokens).unwrap(),
        Value::Array(vec![])
    );
    let layout = scratch.path().join("layout");
    pinfold()
        .args(["export", "team/auth-e2e:v1", "--to"])
        .arg(format!("oci:{}", layout.display()))
        .run_ok()
        .await;
    assert!(layout.join("index.json").is_file());
    // alice may not push outside team/*.
    let out = d(&["push", &other]).output().await;
    assert_ne!(out.code(), Some(0), "push to other/ succeeded");
    d(&["rmi", &name, &other]).run_ok().await;
    d(&["pull", &name]).run_ok().await;
    d(&["logout", &host]).run_ok().await;
    d(&["rmi", &name]).run_ok().await;
    let out = d(&["pull", &name]).output().await;
    assert_ne!(out.code(), Some(0), "pull without login succeeded");
    let out = pinfold().args(["token", "list", "--json"]).output().await;
    assert_ne!(out.code(), Some(0), "token list without login succeeded");
    // The journal names alice; the audit log has her push.
    let history: Value = server
        .client()
        .get(format!(
            "{}/api/v1/repositories/team/auth-e2e/tags/v1/history",
            server.url()
        ))
        .basic_auth("alice", Some("benchpw"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history[0]["actor"], "alice", "{history}");
}

#[tokio::test]
async fn skopeo_and_the_token_cli_work_with_credentials() {
    let skopeo = require_tool("skopeo", "skopeo");
    let server = server().await;
    let host = server.host_port().to_owned();
    let scratch = tempfile::tempdir().unwrap();
    let tar = scratch.path().join("empty.tar");
    std::fs::write(&tar, tar_archive(&[])).unwrap();
    let sk = || {
        Tool::new(skopeo.clone())
            .arg("--insecure-policy")
            .timeout(Duration::from_secs(45))
    };
    // skopeo's `tarball:` transport makes a one-layer image from a tar.
    let dest = format!("docker://{host}/team/sk:v1");
    let out = sk()
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("tarball:{}", tar.display()))
        .arg(&dest)
        .output()
        .await;
    assert_ne!(out.code(), Some(0), "anonymous push succeeded");
    sk().args([
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:benchpw",
    ])
    .arg(format!("tarball:{}", tar.display()))
    .arg(&dest)
    .run_ok()
    .await;
    let inspect = sk()
        .args(["inspect", "--tls-verify=false", "--creds", "alice:benchpw"])
        .arg(&dest)
        .run_ok()
        .await;
    assert!(inspect.contains("\"Digest\""), "{inspect}");
    let out = sk()
        .args(["inspect", "--tls-verify=false", "--creds", "alice:wrong"])
        .arg(&dest)
        .output()
        .await;
    assert_ne!(out.code(), Some(0));
    // pinfold token create / list / revoke and pinfold audit, authenticated by PINFOLD_TOKEN.
    let pinfold = || {
        Tool::new(env!("CARGO_BIN_EXE_pinfold"))
            .env("PINFOLD_URL", server.url())
            .env("PINFOLD_TOKEN", "alice:benchpw")
            .timeout(Duration::from_secs(30))
    };
    let secret = pinfold()
        .args([
            "token",
            "create",
            "--scope",
            "repository:team/*:pull",
            "--expires",
            "1d",
        ])
        .run_ok()
        .await;
    let secret = secret.trim().to_owned();
    assert!(secret.starts_with("pft_"), "{secret}");
    let out = sk()
        .args(["inspect", "--tls-verify=false", "--creds"])
        .arg(format!("alice:{secret}"))
        .arg(&dest)
        .run_ok()
        .await;
    assert!(out.contains("\"Digest\""));
    let list = pinfold().args(["token", "list", "--json"]).run_ok().await;
    let list: Value = serde_json::from_str(&list).unwrap();
    let id = list[0]["id"].as_str().unwrap().to_owned();
    assert!(!list.to_string().contains(&secret));
    pinfold().args(["token", "revoke", &id]).run_ok().await;
    // alice is no admin; root (group ops) reads the audit log.
    let out = pinfold().args(["audit", "--json"]).output().await;
    assert_eq!(out.code(), Some(2));
    let audit = pinfold()
        .env("PINFOLD_TOKEN", "root:benchpw")
        .args(["audit", "--json"])
        .run_ok()
        .await;
    let audit: Value = serde_json::from_str(&audit).unwrap();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for want in ["push", "token-create", "token-revoke", "login"] {
        assert!(actions.contains(&want), "{want} not in {actions:?}");
    }
}

/// No credential reaches the log, even at debug level: passwords (right and wrong), API
/// tokens in every header form, registry JWTs, deploy keys and the OAuth2 form.
#[tokio::test]
async fn no_credential_reaches_the_log() {
    let users = format!(r#"[{{name = "alice", password_bcrypt = "{ALICE_HASH}"}}]"#);
    let rules = r#"[{repositories = "team/*", users = ["alice"], actions = ["pull", "push"]}]"#;
    let server = TestServer::start_with_env(&[
        ("PINFOLD_USER", users.as_str()),
        ("PINFOLD_PERMISSION", rules),
        ("PINFOLD_SERVER_APT_DEPLOY_KEYS", r#"["deploy-key-4711"]"#),
        (
            "RUST_LOG",
            "debug,hyper=info,h2=info,reqwest=info,sqlx=info",
        ),
    ])
    .await;
    let client = server.client();
    let url = |path: &str| format!("{}{path}", server.url());
    let created: Value = client
        .post(url("/api/v1/tokens"))
        .basic_auth("alice", Some("benchpw"))
        .json(&serde_json::json!({"scope": "repository:team/*:pull"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let jwt: Value = client
        .get(url(
            "/v2/token?service=pinfold&scope=repository:team/app:pull",
        ))
        .basic_auth("alice", Some("benchpw"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwt = jwt["token"].as_str().unwrap().to_owned();
    let manifest = url("/v2/team/app/manifests/v1");
    let attempts = [
        client
            .get(&manifest)
            .basic_auth("alice", Some("wrong-password-1")),
        client.get(&manifest).basic_auth("alice", Some(&secret)),
        client.get(&manifest).bearer_auth(&secret),
        client.get(&manifest).header("X-JFrog-Art-Api", &secret),
        client.get(&manifest).bearer_auth(&jwt),
        client.get(&manifest).bearer_auth(format!("{jwt}x")),
        client
            .get(&manifest)
            .header("X-JFrog-Art-Api", "deploy-key-4711"),
        client
            .get(&manifest)
            .header("X-JFrog-Art-Api", "pft_forged-token-9"),
        client.post(url("/v2/token")).form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "wrong-password-2"),
        ]),
        client
            .post(url("/v2/token"))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", &secret)]),
        client
            .put(url("/artifactory/ci/pool/x.deb"))
            .header("X-JFrog-Art-Api", "deploy-key-wrong")
            .body("not a deb"),
    ];
    for request in attempts {
        request.send().await.unwrap();
    }
    // The server logs each request at debug level: wait until the last one is in.
    let started = std::time::Instant::now();
    while !server.log_tail().contains("/artifactory/ci/pool/x.deb")
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = server.log_tail();
    assert!(
        log.contains("/v2/team/app/manifests/v1"),
        "debug log missing:\n{log}"
    );
    for needle in [
        "benchpw",
        "wrong-password-1",
        "wrong-password-2",
        &secret,
        &secret[4..],
        &jwt,
        jwt.split('.').nth(2).unwrap(),
        "deploy-key-4711",
        "deploy-key-wrong",
        "forged-token-9",
        "YWxpY2U6", // base64 of "alice:", the start of every Basic header of alice
    ] {
        assert!(!log.contains(needle), "{needle:?} is in the log:\n{log}");
    }
}
