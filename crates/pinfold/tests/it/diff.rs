//! `pinfold diff` end to end: the real binary on images crafted here (OCI layouts), pushed to a
//! real registry (Pinfold, reached as a registry reference through `pinfold-client`), and built
//! and saved by the Docker engine (`docker import`, `docker build`, `docker save`).
//!
//! Every run gets its own `HOME` (so the default cache is `$HOME/.cache/pinfold`), its own
//! working directory and an empty `DOCKER_CONFIG`; bad-input runs check that the exit code is
//! 2, that the message names the problem, and that nothing appeared outside the cache.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{
    gzip, require_tool, sha256_digest, tar_archive, to_json_bytes, write_oci_layout, Blob, Image,
    ImageIndex, RegistryClient, Rng, TarEntry, TestServer, Tool, OCI_CONFIG, OCI_LAYER_GZIP,
    OCI_MANIFEST,
};

/// A scratch world for one `pinfold diff` run.
struct World {
    root: tempfile::TempDir,
}

/// What a run printed and how it exited.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl World {
    fn new() -> World {
        let root = tempfile::Builder::new()
            .prefix("pinfold-it-diff-")
            .tempdir()
            .expect("tempdir");
        for dir in ["home", "work", "docker-config", "images"] {
            std::fs::create_dir(root.path().join(dir)).expect("mkdir");
        }
        World { root }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn cache(&self) -> PathBuf {
        self.path("home/.cache/pinfold")
    }

    /// Runs `pinfold diff ARGS` with a 120 s limit.
    fn diff(&self, args: &[&str]) -> Run {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pinfold"))
            .arg("diff")
            .args(args)
            .current_dir(self.path("work"))
            .env("HOME", self.path("home"))
            .env_remove("XDG_CACHE_HOME")
            .env("DOCKER_CONFIG", self.path("docker-config"))
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run pinfold");
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            panic!("pinfold diff {args:?} did not finish within 120 s");
        }
        let out = child.wait_with_output().expect("pinfold output");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Every path under the root, relative, except the cache's contents.
    fn files_outside_cache(&self) -> BTreeSet<PathBuf> {
        let mut out = BTreeSet::new();
        let mut stack = vec![self.root.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read_dir") {
                let path = entry.expect("entry").path();
                let rel = path
                    .strip_prefix(self.root.path())
                    .expect("rel")
                    .to_path_buf();
                // The cache directory and its parent, which creating it may create.
                if rel.starts_with("home/.cache/pinfold") || rel == Path::new("home/.cache") {
                    continue;
                }
                if path.is_dir() && !path.is_symlink() {
                    stack.push(path.clone());
                }
                out.insert(rel);
            }
        }
        out
    }
}

/// A dpkg status stanza.
fn stanza(name: &str, version: &str, arch: &str) -> String {
    format!(
        "Package: {name}\nStatus: install ok installed\nPriority: optional\nArchitecture: {arch}\nVersion: {version}\nDescription: {name}\n the {name} package\n\n"
    )
}

/// A Debian-like root filesystem with the story-1 packages at the given versions.
fn debian_rootfs(ca: &str, ssl: &str, tz: &str, bundle: &str) -> Vec<TarEntry> {
    let status = format!(
        "{}{}{}{}",
        stanza("ca-certificates", ca, "all"),
        stanza("libc6", "2.36-9+deb12u4", "amd64"),
        stanza("libssl3", ssl, "amd64"),
        stanza("tzdata", tz, "all"),
    );
    vec![
        TarEntry::Dir { path: "etc".into() },
        TarEntry::Dir {
            path: "etc/ssl".into(),
        },
        TarEntry::Dir {
            path: "etc/ssl/certs".into(),
        },
        TarEntry::File {
            path: "etc/ssl/certs/ca-certificates.crt".into(),
            mode: 0o644,
            bytes: bundle.as_bytes().to_vec(),
        },
        TarEntry::File {
            path: "etc/passwd".into(),
            mode: 0o644,
            bytes: b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
        },
        TarEntry::Dir { path: "usr".into() },
        TarEntry::Dir {
            path: "usr/lib".into(),
        },
        TarEntry::File {
            path: "usr/lib/libssl.so.3".into(),
            mode: 0o644,
            bytes: format!("ELF libssl {ssl}").into_bytes(),
        },
        TarEntry::Dir { path: "var".into() },
        TarEntry::Dir {
            path: "var/lib".into(),
        },
        TarEntry::Dir {
            path: "var/lib/dpkg".into(),
        },
        TarEntry::File {
            path: "var/lib/dpkg/status".into(),
            mode: 0o644,
            bytes: status.into_bytes(),
        },
    ]
}

fn old_base() -> Vec<TarEntry> {
    debian_rootfs(
        "20230311",
        "3.0.11-1~deb12u2",
        "2024a-0+deb12u1",
        "CERT 2023\n",
    )
}

fn new_base() -> Vec<TarEntry> {
    debian_rootfs(
        "20240203",
        "3.0.13-1~deb12u1",
        "2025b-0+deb12u1",
        "CERT 2024\nCERT new\n",
    )
}

/// A layer as (blob, media type, uncompressed tar).
type LayerParts = (Vec<u8>, &'static str, Vec<u8>);

/// An OCI image over raw layer blobs (already compressed or not) with the given history.
fn image_of(layers: Vec<LayerParts>, created_by: &[&str]) -> Image {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|(_, _, tar)| sha256_digest(tar))
        .collect();
    let blobs: Vec<Blob> = layers
        .into_iter()
        .map(|(blob, media_type, _)| Blob::new(media_type, blob))
        .collect();
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": created_by.iter().map(|c| json!({"created_by": c})).collect::<Vec<_>>(),
    });
    let config = Blob::new(OCI_CONFIG, to_json_bytes(&config));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": blobs.iter().map(Blob::descriptor).collect::<Vec<_>>(),
    });
    Image {
        manifest: Blob::new(OCI_MANIFEST, to_json_bytes(&manifest)),
        config,
        layers: blobs,
        architecture: "amd64".into(),
    }
}

fn gz_layer(tree: &[TarEntry]) -> LayerParts {
    let tar = tar_archive(tree);
    (gzip(&tar), OCI_LAYER_GZIP, tar)
}

fn write_layout(world: &World, name: &str, image: &Image) -> String {
    let dir = world.path(&format!("images/{name}"));
    write_oci_layout(&dir, "1", &image.manifest, image.blobs());
    format!("oci:{}", dir.display())
}

fn story_images() -> (Image, Image) {
    let app = vec![TarEntry::File {
        path: "app".into(),
        mode: 0o755,
        bytes: b"#!/bin/sh\n".to_vec(),
    }];
    let a = image_of(
        vec![gz_layer(&old_base()), gz_layer(&app)],
        &["ADD old-rootfs.tar /", "COPY app /app"],
    );
    let b = image_of(
        vec![gz_layer(&new_base()), gz_layer(&app)],
        &["ADD new-rootfs.tar /", "COPY app /app"],
    );
    (a, b)
}

#[test]
fn diff_story_1_exits_1_and_explains_in_json_text_and_markdown() {
    let world = World::new();
    let (a, b) = story_images();
    let (la, lb) = (write_layout(&world, "a", &a), write_layout(&world, "b", &b));

    let run = world.diff(&["--json", &la, &lb]);
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).expect("JSON report");
    assert_eq!(report["equal"], false);
    let items = report["explanation"]["items"].as_array().expect("items");
    assert_eq!(items[0]["category"], "trust_store");
    assert_eq!(items[0]["subject"], "ca-certificates");
    assert_eq!(items[0]["layer"]["index"], 0);
    assert_eq!(items[0]["layer"]["digest"], b.layers[0].digest.as_str());
    assert_eq!(items[0]["layer"]["created_by"], "ADD new-rootfs.tar /");
    let tls = items
        .iter()
        .find(|i| i["category"] == "tls_crypto")
        .expect("TLS item");
    assert_eq!(tls["subject"], "libssl3:amd64");
    assert_eq!(
        tls["change"],
        "3.0.11-1~deb12u2 → 3.0.13-1~deb12u1 (upgraded, dpkg)"
    );
    // The shared app layer is recognised as shared after the differing base.
    assert_eq!(report["layers"]["shared_prefix"], 0);
    // The cache is where the README says, one entry per layer digest.
    for layer in a.layers.iter().chain(&b.layers) {
        let hex = layer.digest.trim_start_matches("sha256:");
        let entry = world.cache().join(format!("layers/sha256/{hex}.json"));
        assert!(entry.is_file(), "missing cache entry {}", entry.display());
    }

    let run = world.diff(&[&la, &lb]);
    assert_eq!(run.code, Some(1), "stderr: {}", run.stderr);
    assert!(
        run.stdout.contains("\nSummary: ca-certificates"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("changed in the base layer"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains('\x1b'), "no colour off a terminal");

    let run = world.diff(&["--format", "markdown", &la, &lb]);
    assert_eq!(run.code, Some(1));
    assert!(run.stdout.starts_with("## Image diff\n"), "{}", run.stdout);
    assert!(run
        .stdout
        .contains("| 1 | trust store | `ca-certificates` |"));

    let run = world.diff(&[&la, &la]);
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(run.stdout.contains("The images are equal."));
}

/// The layer type byte of the first header made into a hard link (`1`), checksum redone.
fn make_first_entry_hardlink(tar: &mut [u8]) {
    tar[156] = b'1';
    tar[148..156].copy_from_slice(b"        ");
    let sum: u32 = tar[..512].iter().map(|&b| u32::from(b)).sum();
    tar[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

#[test]
fn diff_bad_inputs_exit_2_with_a_clear_message_and_write_nothing_outside_the_cache() {
    let good = gz_layer(&old_base());
    let file = |path: &str, bytes: Vec<u8>| TarEntry::File {
        path: path.into(),
        mode: 0o644,
        bytes,
    };
    // Each case: a bad second layer and what the message must say.
    let mut cases: Vec<(&str, LayerParts, Vec<String>)> = Vec::new();

    let (mut blob, mt, tar) = gz_layer(&[file("etc/x", vec![1u8; 1000])]);
    blob[12] ^= 0xff; // the stored block's LEN no longer matches NLEN
    cases.push((
        "corrupt gzip",
        (blob, mt, tar),
        vec!["corrupt gzip stream".into()],
    ));

    let tar = tar_archive(&[
        file("etc/ok", b"ok".to_vec()),
        file("usr/big", vec![2u8; 5000]),
    ]);
    let cut = tar[..512 * 3 + 3000].to_vec();
    cases.push((
        "truncated tar",
        (gzip(&cut), OCI_LAYER_GZIP, cut),
        vec!["malformed tar at entry \"usr/big\"".into()],
    ));

    cases.push((
        "../ entry",
        gz_layer(&[file("../../evil", b"pwned".to_vec())]),
        vec!["entry \"../../evil\": path with a `..` component is not allowed".into()],
    ));

    cases.push((
        "absolute path",
        gz_layer(&[file("/etc/evil", b"pwned".to_vec())]),
        vec!["entry \"/etc/evil\": absolute path is not allowed".into()],
    ));

    let mut tar = tar_archive(&[TarEntry::Symlink {
        path: "usr/leak".into(),
        target: "../../../etc/shadow".into(),
    }]);
    make_first_entry_hardlink(&mut tar);
    cases.push((
        "hardlink outside",
        (gzip(&tar), OCI_LAYER_GZIP, tar),
        vec!["hard link \"usr/leak\" points outside the layer (\"../../../etc/shadow\")".into()],
    ));

    let huge = 64 * 1024 * 1024 + 1;
    cases.push((
        "huge package db",
        gz_layer(&[file("var/lib/dpkg/status", vec![b'\n'; huge])]),
        vec![format!(
            "package database var/lib/dpkg/status is {huge} bytes, more than the {} accepted",
            huge - 1
        )],
    ));

    for (name, bad, expected) in cases {
        let world = World::new();
        let a = image_of(vec![good.clone()], &["ADD base /"]);
        let bad_digest = sha256_digest(&bad.0);
        let b = image_of(vec![good.clone(), bad], &["ADD base /", "ADD bad /"]);
        let (la, lb) = (write_layout(&world, "a", &a), write_layout(&world, "b", &b));
        let before = world.files_outside_cache();
        let run = world.diff(&[&la, &lb]);
        assert_eq!(run.code, Some(2), "{name}: stderr: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{name}: stdout: {}", run.stdout);
        assert!(
            run.stderr.contains("pinfold: error: comparing "),
            "{name}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!("layer {bad_digest}")),
            "{name}: the message names the layer: {}",
            run.stderr
        );
        for e in expected {
            assert!(
                run.stderr.contains(&e),
                "{name}: expected {e:?} in {}",
                run.stderr
            );
        }
        assert_eq!(
            world.files_outside_cache(),
            before,
            "{name}: files appeared outside the cache"
        );
        let hex = bad_digest.trim_start_matches("sha256:");
        assert!(
            !world
                .cache()
                .join(format!("layers/sha256/{hex}.json"))
                .exists(),
            "{name}: the bad layer was cached"
        );
    }

    let world = World::new();
    let before = world.files_outside_cache();
    for missing in [
        "oci:/nonexistent/pinfold-layout",
        "docker-archive:/nonexistent/x.tar",
    ] {
        let run = world.diff(&[missing, missing]);
        assert_eq!(run.code, Some(2), "{missing}: {}", run.stderr);
        assert!(
            run.stderr.contains("no such file or directory"),
            "{missing}: {}",
            run.stderr
        );
    }
    let run = world.diff(&["--platform", "linux", "oci:/x", "oci:/y"]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("invalid platform \"linux\""),
        "{}",
        run.stderr
    );
    assert_eq!(world.files_outside_cache(), before);
}

/// A registry reference goes through pinfold-client: the same image pushed to a real registry
/// equals its OCI layout, and the other story image differs from it.
#[tokio::test]
async fn diff_registry_reference_against_oci_layout() {
    let server = TestServer::start().await;
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    let token = Rng::new().token();
    let repo = format!("it/diff-{token}");
    let (a, b) = story_images();
    registry.push_image(&repo, "old", &a).await;
    let world = World::new();
    let (la, lb) = (write_layout(&world, "a", &a), write_layout(&world, "b", &b));
    let reference = format!("{}/{repo}:old", server.host_port());
    let (r1, r2) = tokio::task::spawn_blocking(move || {
        let same = world.diff(&[&reference, &la]);
        let different = world.diff(&["--json", &reference, &lb]);
        (same, different)
    })
    .await
    .expect("join");
    assert_eq!(r1.code, Some(0), "stderr: {}", r1.stderr);
    assert_eq!(r2.code, Some(1), "stderr: {}", r2.stderr);
    let report: Value = serde_json::from_str(&r2.stdout).expect("JSON");
    assert_eq!(report["a"]["manifest_digest"], a.manifest.digest.as_str());
    assert_eq!(
        report["explanation"]["items"][0]["subject"],
        "ca-certificates"
    );
}

/// A multi-platform index in a registry: `--platform` picks the manifest, and a platform the
/// index lacks is an error naming the ones it has.
#[tokio::test]
async fn diff_registry_index_selects_the_platform() {
    let server = TestServer::start().await;
    let registry = RegistryClient::new(server.client().clone(), &server.url());
    let mut rng = Rng::new();
    let repo = format!("it/diff-multi-{}", rng.token());
    let index = ImageIndex::random(&mut rng, &["amd64", "arm64"], 1);
    for image in &index.images {
        for blob in image.blobs() {
            registry
                .push_blob(&repo, blob)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        registry
            .put_manifest(&repo, &image.manifest.digest, &image.manifest)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    registry
        .put_manifest(&repo, "multi", &index.index)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let world = World::new();
    let arm = write_layout(&world, "arm", index.image("arm64"));
    let reference = format!("{}/{repo}:multi", server.host_port());
    let runs = tokio::task::spawn_blocking(move || {
        ["linux/arm64", "linux/amd64", "linux/s390x"]
            .map(|p| world.diff(&["--platform", p, &reference, &arm]))
    })
    .await
    .expect("join");
    assert_eq!(
        runs[0].code,
        Some(0),
        "arm64 equals its layout: {}",
        runs[0].stderr
    );
    assert_eq!(runs[1].code, Some(1), "amd64 differs: {}", runs[1].stderr);
    assert_eq!(runs[2].code, Some(2));
    assert!(
        runs[2]
            .stderr
            .contains("no image for platform linux/s390x (available: linux/amd64, linux/arm64)"),
        "{}",
        runs[2].stderr
    );
}

fn docker() -> Tool {
    Tool::new(require_tool("docker", "docker.io")).timeout(Duration::from_secs(90))
}

/// Removes the images a test made when dropped (bounded, best effort), so the engine is left
/// as found even when the test fails.
struct RemoveImages(Vec<String>);

impl Drop for RemoveImages {
    fn drop(&mut self) {
        let Ok(mut child) = Command::new("docker")
            .args(["rmi", "-f"])
            .args(&self.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Two images built by the Docker engine: each base made with `docker import` from a crafted
/// root filesystem, then the same Dockerfile built FROM it (classic builder), then
/// `docker save` of both, diffed through the CLI.
#[tokio::test]
async fn diff_docker_built_and_saved_images() {
    let world = World::new();
    let token = Rng::new().token();
    let scratch = world.path("images");
    let names: Vec<String> = ["base-old", "base-new", "app-old", "app-new"]
        .iter()
        .map(|n| format!("pinfold-it/diff-{n}-{token}:1"))
        .collect();
    let _cleanup = RemoveImages(names.clone());
    for (tree, name) in [(old_base(), &names[0]), (new_base(), &names[1])] {
        let rootfs = scratch.join(format!("{}.tar", name.replace(['/', ':'], "_")));
        std::fs::write(&rootfs, tar_archive(&tree)).expect("write rootfs");
        docker().arg("import").arg(&rootfs).arg(name).run_ok().await;
    }
    let context = scratch.join("context");
    std::fs::create_dir(&context).expect("context dir");
    std::fs::write(context.join("server"), b"#!/bin/sh\necho app\n").expect("app file");
    for (base, app) in [(&names[0], &names[2]), (&names[1], &names[3])] {
        std::fs::write(
            context.join("Dockerfile"),
            format!("FROM {base}\nCOPY server /app/server\nENV TZ=Europe/Berlin\nUSER 1000\n"),
        )
        .expect("Dockerfile");
        // The classic builder: BuildKit needs the buildx plugin, which is not installed.
        docker()
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "--force-rm", "-t", app])
            .arg(&context)
            .run_ok()
            .await;
    }
    let mut archives = Vec::new();
    for app in &names[2..] {
        let out = scratch.join(format!("{}.tar", app.replace(['/', ':'], "_")));
        docker()
            .args(["save", "-o"])
            .arg(&out)
            .arg(app)
            .run_ok()
            .await;
        archives.push(format!("docker-archive:{}", out.display()));
    }
    let base_new_id = docker()
        .args([
            "image",
            "inspect",
            "--format",
            "{{index .RootFS.Layers 0}}",
            &names[1],
        ])
        .run_ok()
        .await
        .trim()
        .to_owned();

    let (a, b) = (archives[0].clone(), archives[1].clone());
    let run = tokio::task::spawn_blocking(move || {
        let json = world.diff(&["--json", &a, &b]);
        let same = world.diff(&[&b, &b]);
        (json, same, world)
    })
    .await
    .expect("join");
    let (json, same, _world) = run;
    assert_eq!(json.code, Some(1), "stderr: {}", json.stderr);
    assert_eq!(same.code, Some(0), "stderr: {}", same.stderr);
    let report: Value = serde_json::from_str(&json.stdout).expect("JSON");
    let items = report["explanation"]["items"].as_array().expect("items");
    assert_eq!(items[0]["subject"], "ca-certificates", "{items:#?}");
    assert_eq!(items[0]["layer"]["index"], 0);
    // docker save (before Docker 25) stores layers uncompressed, named by their diff id.
    assert_eq!(items[0]["layer"]["digest"], base_new_id.as_str());
    assert!(items
        .iter()
        .any(|i| i["subject"] == "libssl3:amd64" && i["category"] == "tls_crypto"));
    // Nothing is shared: the base differs, and layers are compared as a sequence.
    assert_eq!(report["layers"]["shared_prefix"], 0);
    assert_eq!(report["layers"]["a_only"].as_array().map(Vec::len), Some(2));
    assert_eq!(report["config"], json!([]), "same ENV and USER in both");
    assert_eq!(report["b"]["layers"], 2);
}
