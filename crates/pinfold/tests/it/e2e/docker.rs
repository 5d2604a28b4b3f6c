//! The Docker engine against the registry: push, pull, `FROM` in a build, and run.
//!
//! The engine here has no images and no internet, so the base image is made in the test:
//! a root filesystem holding the host's `/bin/dash` (as `/bin/sh`) and the shared libraries
//! `ldd` lists for it, brought in with `docker import`. The engine treats 127.0.0.0/8 as an
//! insecure registry by default, so `127.0.0.1:<port>/...` works over plain HTTP.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{
    require_tool, sha256_digest, tar_archive, RegistryClient, Rng, TarEntry, Target, TestServer,
    Tool, DOCKER_MANIFEST,
};

fn docker() -> Tool {
    let program = require_tool("docker", "docker.io");
    Tool::new(program).timeout(Duration::from_secs(50))
}

/// Removes, when dropped, every image this test created (best effort, bounded), so the
/// engine's image store is left as it was found even when the test fails.
struct DockerCleanup {
    images: Vec<String>,
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        if self.images.is_empty() {
            return;
        }
        let Ok(mut child) = Command::new("docker")
            .args(["rmi", "-f"])
            .args(&self.images)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A tar of a minimal root filesystem: the host's dash as `/bin/sh` plus the libraries
/// it loads, at the paths `ldd` reports.
fn host_shell_rootfs() -> Vec<u8> {
    let dash = Path::new("/bin/dash");
    assert!(
        dash.is_file(),
        "/bin/dash is missing (Debian package `dash`)"
    );
    let ldd = Command::new("ldd")
        .arg(dash)
        .output()
        .expect("run ldd (Debian package libc-bin)");
    assert!(ldd.status.success(), "ldd /bin/dash failed");
    let mut files = vec![("bin/sh".to_owned(), dash.to_path_buf(), 0o755)];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // Lines look like `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or
        // `/lib64/ld-linux-x86-64.so.2 (0x...)`; vdso has no file.
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            files.push((path.trim_start_matches('/').to_owned(), path.into(), 0o755));
        }
    }
    assert!(
        files.len() >= 3,
        "ldd /bin/dash listed too little: {files:?}"
    );

    let mut dirs = BTreeSet::from(["tmp".to_owned(), "etc".to_owned()]);
    for (path, _, _) in &files {
        let mut parent = Path::new(path).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(dir.to_string_lossy().into_owned());
            parent = dir.parent();
        }
    }
    let mut entries: Vec<TarEntry> = dirs
        .into_iter()
        .map(|path| TarEntry::Dir { path })
        .collect();
    for (path, source, mode) in files {
        let bytes =
            std::fs::read(&source).unwrap_or_else(|e| panic!("read {}: {e}", source.display()));
        entries.push(TarEntry::File { path, mode, bytes });
    }
    tar_archive(&entries)
}

/// The manifest digest `docker push` reports (`<tag>: digest: sha256:... size: N`).
fn pushed_digest(push_output: &str) -> String {
    push_output
        .lines()
        .find_map(|line| {
            let rest = &line[line.find("digest: ")? + "digest: ".len()..];
            rest.split_whitespace().next().map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no digest in docker push output:\n{push_output}"))
}

/// Asserts the registry serves `repo:tag` as a Docker schema 2 manifest with
/// `digest` whose config is `image_id`, and returns the manifest.
async fn assert_served_as(
    registry: &RegistryClient,
    repo: &str,
    tag: &str,
    digest: &str,
    image_id: &str,
) -> Value {
    let request = format!("GET /v2/{repo}/manifests/{tag}");
    let got = registry
        .get_manifest(repo, tag)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got.status, 200,
        "{request}: expected 200, got {}",
        got.status
    );
    assert_eq!(
        got.header("docker-content-digest"),
        Some(digest),
        "{request}: Docker-Content-Digest vs `docker push`"
    );
    assert_eq!(
        sha256_digest(&got.body),
        digest,
        "{request}: sha256 of the body"
    );
    assert_eq!(
        got.header("content-type"),
        Some(DOCKER_MANIFEST),
        "{request}: Content-Type"
    );
    let manifest: Value = serde_json::from_slice(&got.body).expect("manifest JSON");
    assert_eq!(
        manifest["config"]["digest"], image_id,
        "{request}: the config digest is the engine's image id"
    );
    manifest
}

#[tokio::test]
async fn docker_push_pull_build_and_run() {
    let server = TestServer::start().await;
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    let scratch = tempfile::tempdir().expect("tempdir");
    let token = Rng::new().token();
    let base_repo = format!("it/base-{token}");
    let app_repo = format!("it/app-{token}");
    let base_ref = format!("{}/{base_repo}:1", server.host_port());
    let app_ref = format!("{}/{app_repo}:1", server.host_port());
    let local_base = format!("pinfold-it/base-{token}:1");
    let local_app = format!("pinfold-it/app-{token}:1");
    let mut cleanup = DockerCleanup {
        images: vec![
            local_base.clone(),
            base_ref.clone(),
            local_app.clone(),
            app_ref.clone(),
        ],
    };

    let rootfs = scratch.path().join("rootfs.tar");
    std::fs::write(&rootfs, host_shell_rootfs()).expect("write rootfs tar");
    let image_id = docker()
        .arg("import")
        .arg(&rootfs)
        .arg(&local_base)
        .run_ok()
        .await
        .trim()
        .to_owned();
    assert!(
        image_id.starts_with("sha256:"),
        "docker import printed {image_id:?}"
    );
    cleanup.images.push(image_id.clone());
    docker()
        .args(["tag", &local_base, &base_ref])
        .run_ok()
        .await;

    let push = docker().args(["push", &base_ref]).run_ok().await;
    let base_digest = pushed_digest(&push);
    assert_served_as(&registry, &base_repo, "1", &base_digest, &image_id).await;

    // Forget the image entirely, then pull it back from the registry.
    docker()
        .args(["rmi", &base_ref, &local_base])
        .run_ok()
        .await;
    let gone = docker()
        .args(["image", "inspect", &image_id])
        .output()
        .await;
    assert!(
        !gone.success(),
        "image {image_id} still present after docker rmi"
    );
    docker().args(["pull", &base_ref]).run_ok().await;
    let inspect = docker()
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{json .RepoDigests}}",
            &base_ref,
        ])
        .run_ok()
        .await;
    let (pulled_id, repo_digests) = inspect.trim().split_once(' ').expect("inspect output");
    assert_eq!(pulled_id, image_id, "image id after docker pull");
    let expected_repo_digest = format!("{}/{base_repo}@{base_digest}", server.host_port());
    let repo_digests: Vec<String> = serde_json::from_str(repo_digests).expect("RepoDigests JSON");
    assert!(
        repo_digests.contains(&expected_repo_digest),
        "RepoDigests after docker pull: expected {expected_repo_digest}, got {repo_digests:?}"
    );
    let run = docker()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            &base_ref,
            "/bin/sh",
            "-c",
            "echo pulled:ok",
        ])
        .run_ok()
        .await;
    assert_eq!(
        run.trim(),
        "pulled:ok",
        "docker run of the pulled base image"
    );

    // Remove it again so that the build's FROM has to pull from the registry.
    docker().args(["rmi", &base_ref]).run_ok().await;
    let context = scratch.path().join("context");
    std::fs::create_dir(&context).expect("create build context");
    std::fs::write(
        context.join("Dockerfile"),
        format!("FROM {base_ref}\nRUN echo ok > /built\nCMD [\"/bin/sh\", \"-c\", \"read line < /built; echo built:$line\"]\n"),
    )
    .expect("write Dockerfile");
    // The classic builder: this client's BuildKit path needs the buildx plugin, which is
    // not installed, and the classic builder pulls FROM images through the engine, which
    // already allows plain HTTP to 127.0.0.0/8.
    docker()
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "--force-rm", "-t", &local_app])
        .arg(&context)
        .timeout(Duration::from_secs(55))
        .run_ok()
        .await;
    let run = docker()
        .args(["run", "--rm", "--network", "none", &local_app])
        .run_ok()
        .await;
    assert_eq!(
        run.trim(),
        "built:ok",
        "docker run of the image built FROM the registry"
    );

    // Push the built image: its base layer is already in the registry under another
    // repository, so the engine may mount it rather than upload it again.
    docker().args(["tag", &local_app, &app_ref]).run_ok().await;
    let push = docker().args(["push", &app_ref]).run_ok().await;
    let app_digest = pushed_digest(&push);
    let app_id = docker()
        .args(["image", "inspect", "--format", "{{.Id}}", &app_ref])
        .run_ok()
        .await
        .trim()
        .to_owned();
    cleanup.images.push(app_id.clone());
    let manifest = assert_served_as(&registry, &app_repo, "1", &app_digest, &app_id).await;
    let layers = manifest["layers"].as_array().expect("manifest layers");
    assert_eq!(
        layers.len(),
        2,
        "the built image has the base layer and the RUN layer"
    );
    for layer in layers {
        let digest = layer["digest"].as_str().expect("layer digest");
        let got = registry
            .get_blob(&app_repo, digest)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            got.status, 200,
            "GET /v2/{app_repo}/blobs/{digest}: expected 200, got {}",
            got.status
        );
        assert_eq!(
            sha256_digest(&got.body),
            digest,
            "GET /v2/{app_repo}/blobs/{digest}: sha256"
        );
        assert_eq!(
            Some(got.body.len() as u64),
            layer["size"].as_u64(),
            "layer size of {digest}"
        );
    }
}

/// The Docker engine pulls through the mirror (path-prefix form; the `registry-mirrors` form
/// is tested on a private daemon below) from Debian's
/// docker-registry as the upstream, and gets the image the upstream has, by id and digest; a
/// second pull after the upstream is gone still works from the mirror's cache.
#[tokio::test]
async fn docker_pulls_through_the_mirror_from_distribution() {
    let mut upstream = TestServer::start_target(Target::Distribution).await;
    let token = Rng::new().token();
    let repo = format!("it/mirrored-{token}");
    let local = format!("pinfold-it/mirrored-{token}:1");
    let upstream_ref = format!("{}/{repo}:1", upstream.host_port());
    let scratch = tempfile::tempdir().expect("tempdir");
    let rootfs = scratch.path().join("rootfs.tar");
    std::fs::write(&rootfs, host_shell_rootfs()).expect("write rootfs tar");
    let image_id = docker()
        .arg("import")
        .arg(&rootfs)
        .arg(&local)
        .run_ok()
        .await
        .trim()
        .to_owned();
    let mut cleanup = DockerCleanup {
        images: vec![local.clone(), upstream_ref.clone(), image_id.clone()],
    };
    docker().args(["tag", &local, &upstream_ref]).run_ok().await;
    let digest = pushed_digest(&docker().args(["push", &upstream_ref]).run_ok().await);

    let upstreams = format!("[{{name = \"up\", url = \"{}\"}}]", upstream.url());
    let mirror = TestServer::start_with_env(&[("PINFOLD_UPSTREAM", upstreams.as_str())]).await;
    let mirrored_ref = format!("{}/up/{repo}:1", mirror.host_port());
    cleanup.images.push(mirrored_ref.clone());

    // The engine must not find the image locally: remove every name it has.
    docker().args(["rmi", &local, &upstream_ref]).run_ok().await;
    for round in 0..2 {
        docker().args(["pull", &mirrored_ref]).run_ok().await;
        let inspect = docker()
            .args([
                "image",
                "inspect",
                "--format",
                "{{.Id}} {{json .RepoDigests}}",
                &mirrored_ref,
            ])
            .run_ok()
            .await;
        let (pulled_id, repo_digests) = inspect.trim().split_once(' ').expect("inspect output");
        assert_eq!(
            pulled_id, image_id,
            "image id through the mirror (round {round})"
        );
        let expected = format!("{}/up/{repo}@{digest}", mirror.host_port());
        assert!(
            repo_digests.contains(&expected),
            "RepoDigests: expected {expected}, got {repo_digests}"
        );
        docker().args(["rmi", &mirrored_ref]).run_ok().await;
        if round == 0 {
            // The upstream goes away; the mirror serves what it cached.
            upstream.kill();
        }
    }
}

/// A Docker daemon of the test's own, started with `--registry-mirror` (the host's engine and
/// its configuration stay untouched): its own socket, data root (vfs storage) and a minimal
/// config file. Stopped (SIGTERM, then SIGKILL after 20 s) when dropped.
struct PrivateDaemon {
    child: std::process::Child,
    socket: String,
    // Holds the data root until the daemon is gone.
    _dir: tempfile::TempDir,
}

impl PrivateDaemon {
    async fn start(registry_mirror: &str) -> PrivateDaemon {
        let dockerd = require_tool("dockerd", "docker.io");
        let dir = tempfile::Builder::new()
            .prefix("pfd")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let root = dir.path();
        std::fs::write(root.join("daemon.json"), "{}").expect("daemon.json");
        let socket = format!("unix://{}", root.join("d.sock").display());
        let log = std::fs::File::create(root.join("dockerd.log")).expect("log");
        let child = Command::new(dockerd)
            .arg("--config-file")
            .arg(root.join("daemon.json"))
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("dockerd.pid"))
            .args(["-H", &socket])
            // Not `--bridge none`: dockerd then deletes the host's `docker0` (moby's
            // removeDefaultBridgeInterface), breaking the host engine's builds. Naming the
            // existing bridge leaves it as it is; with iptables and masquerading off, and no
            // container ever run, this daemon changes nothing on the host's network.
            .args(["--bridge", "docker0", "--ip-masq=false"])
            .args(["--iptables=false", "--ip6tables=false"])
            .args(["--storage-driver", "vfs"])
            .args(["--registry-mirror", registry_mirror])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let daemon = PrivateDaemon {
            child,
            socket,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let info = daemon
                .docker()
                .args(["info", "--format", "{{json .RegistryConfig.Mirrors}}"])
                .output()
                .await;
            if info.success()
                && info
                    .stdout()
                    .contains(registry_mirror.trim_end_matches('/'))
            {
                return daemon;
            }
            assert!(
                Instant::now() < deadline,
                "private dockerd did not come up within 60 s: {}",
                std::fs::read_to_string(daemon._dir.path().join("dockerd.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn docker(&self) -> Tool {
        docker().args(["-H", &self.socket])
    }
}

impl Drop for PrivateDaemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) with the pid of a child this struct owns and has not reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Docker's `registry-mirrors` form: a daemon configured with the mirror pulls an official
/// image by its short name (`library/<name>:1`, which it asks of the mirror as
/// `/v2/library/<name>/manifests/1`, no prefix); the mirror serves it from its default
/// upstream (Debian's docker-registry here, standing in for Docker Hub). The engine has no
/// internet: had the mirror failed, its fallback to Docker Hub would fail the pull.
#[tokio::test]
async fn docker_registry_mirrors_form_on_a_private_daemon() {
    let upstream = TestServer::start_target(Target::Distribution).await;
    let token = Rng::new().token();
    let name = format!("mirrorform-{token}");
    let local = format!("pinfold-it/{name}:1");
    let upstream_ref = format!("{}/library/{name}:1", upstream.host_port());
    let scratch = tempfile::tempdir().expect("tempdir");
    let rootfs = scratch.path().join("rootfs.tar");
    std::fs::write(&rootfs, host_shell_rootfs()).expect("write rootfs tar");
    let image_id = docker()
        .arg("import")
        .arg(&rootfs)
        .arg(&local)
        .run_ok()
        .await
        .trim()
        .to_owned();
    let _cleanup = DockerCleanup {
        images: vec![local.clone(), upstream_ref.clone(), image_id.clone()],
    };
    docker().args(["tag", &local, &upstream_ref]).run_ok().await;
    let digest = pushed_digest(&docker().args(["push", &upstream_ref]).run_ok().await);

    let upstreams = format!(
        "[{{name = \"docker.io\", url = \"{}\", default = true}}]",
        upstream.url()
    );
    let mirror = TestServer::start_with_env(&[("PINFOLD_UPSTREAM", upstreams.as_str())]).await;
    let daemon = PrivateDaemon::start(&format!("http://{}", mirror.host_port())).await;

    let short = format!("library/{name}:1");
    daemon.docker().args(["pull", &short]).run_ok().await;
    let inspect = daemon
        .docker()
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{json .RepoDigests}}",
            &short,
        ])
        .run_ok()
        .await;
    let (pulled_id, repo_digests) = inspect.trim().split_once(' ').expect("inspect output");
    assert_eq!(pulled_id, image_id, "image id through registry-mirrors");
    assert!(
        repo_digests.contains(&format!("{name}@{digest}")),
        "RepoDigests: expected {name}@{digest}, got {repo_digests}"
    );
    // The mirror recorded it under the default upstream's prefix.
    let tags = mirror
        .client()
        .get(format!(
            "{}/v2/docker.io/library/{name}/tags/list",
            mirror.url()
        ))
        .send()
        .await
        .expect("tags list");
    assert_eq!(tags.status(), 200);
    let tags: Value = tags.json().await.expect("tags JSON");
    assert_eq!(tags["tags"], serde_json::json!(["1"]));
}
