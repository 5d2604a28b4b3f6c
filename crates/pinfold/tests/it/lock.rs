//! `pinfold lock` end to end: the real binary against a real registry (a Pinfold server, or
//! distribution with `PINFOLD_IT_TARGET=distribution`) holding images pushed over raw HTTP by
//! the harness: a single-platform image and a two-platform OCI index.
//!
//! Each test writes its own project directory (a multi-stage Dockerfile with `ARG` before
//! `FROM` and `COPY --from=<image>`, a compose file and a multi-document Kubernetes manifest)
//! and runs `pinfold lock` in it with an empty `DOCKER_CONFIG`, so the host's credentials
//! never take part.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use pinfold_inspect::lock::Lockfile;
use serde_json::Value;

use crate::harness::{
    Image, ImageFormat, ImageIndex, RegistryClient, Rng, TestServer, OCI_INDEX, OCI_MANIFEST,
};

/// The project files every test writes.
const FILES: [&str; 3] = ["Dockerfile", "compose.yaml", "k8s.yaml"];

/// Longest a `pinfold lock` run may take; every registry call in it has its own timeouts too.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// How a `pinfold lock` run ended.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn assert_code(&self, code: i32) {
        assert_eq!(self.code, Some(code), "{self:?}");
    }

    fn assert_stdout_has(&self, text: &str) {
        assert!(
            self.stdout.contains(text),
            "expected {text:?} on stdout: {self:?}"
        );
    }

    fn assert_stderr_has(&self, text: &str) {
        assert!(
            self.stderr.contains(text),
            "expected {text:?} on stderr: {self:?}"
        );
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A project directory and the registry its files name.
struct Project {
    dir: tempfile::TempDir,
    docker_config: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        Project {
            dir: tempfile::Builder::new()
                .prefix("pinfold-lock-")
                .tempdir()
                .expect("project dir"),
            docker_config: tempfile::tempdir().expect("docker config dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).expect("write project file");
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).expect("read project file")
    }

    /// The contents of the three [`FILES`].
    fn read_files(&self) -> [String; 3] {
        FILES.map(|f| self.read(f))
    }

    /// `pinfold lock ARGS` in the project directory, bounded by [`RUN_TIMEOUT`].
    async fn lock(&self, args: &[&str]) -> Run {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pinfold"));
        command
            .arg("lock")
            .args(args)
            .current_dir(self.dir.path())
            .env("DOCKER_CONFIG", self.docker_config.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = command.spawn().expect("start pinfold lock");
        let output = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("pinfold lock {args:?} ran longer than {RUN_TIMEOUT:?}"))
            .expect("wait for pinfold lock");
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// What the registry holds for a test.
struct Upstream {
    server: TestServer,
    registry: RegistryClient,
    single: Image,
    multi: ImageIndex,
    tool: Image,
}

impl Upstream {
    /// `base/single:1` (one linux/amd64 image), `base/multi:1` (an amd64 + arm64 index) and
    /// `tools/copy:1` (one image), pushed over raw HTTP.
    async fn start() -> Upstream {
        let server = TestServer::start().await;
        let registry = RegistryClient::new(server.client().clone(), &server.url());
        let mut rng = Rng::new();
        let single = Image::random(&mut rng, ImageFormat::DockerSchema2, "amd64", 1, 512);
        let tool = Image::random(&mut rng, ImageFormat::Oci, "amd64", 1, 512);
        let multi = ImageIndex::random(&mut rng, &["amd64", "arm64"], 1);
        registry.push_image("base/single", "1", &single).await;
        registry.push_image("tools/copy", "1", &tool).await;
        push_index(&registry, "base/multi", "1", &multi).await;
        Upstream {
            server,
            registry,
            single,
            multi,
            tool,
        }
    }

    fn host(&self) -> &str {
        self.server.host_port()
    }

    /// Moves `base/single:1` to a new image and returns it.
    async fn move_single(&self) -> Image {
        let mut rng = Rng::new();
        let moved = Image::random(&mut rng, ImageFormat::DockerSchema2, "amd64", 1, 512);
        self.registry.push_image("base/single", "1", &moved).await;
        moved
    }
}

async fn push_index(registry: &RegistryClient, repo: &str, tag: &str, index: &ImageIndex) {
    for image in &index.images {
        registry
            .push_image(repo, &image.manifest.digest, image)
            .await;
    }
    registry
        .put_manifest(repo, tag, &index.index)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The Dockerfile: `ARG` before `FROM`, a named stage, `COPY --from=<image>`,
/// `RUN --mount=from=<image>`, a stage used by name, a second base image.
fn dockerfile(host: &str) -> String {
    format!(
        "# syntax=docker/dockerfile:1\n\
         ARG BASE={host}/base/multi:1\n\
         FROM ${{BASE}} AS build\n\
         COPY --from={host}/tools/copy:1 /bin/tool /bin/tool\n\
         RUN --mount=type=bind,from={host}/tools/copy:1,source=/etc,target=/t tool build\n\
         \n\
         FROM {host}/base/single:1\n\
         COPY --from=build /out /app\n\
         CMD [\"/app\"]\n"
    )
}

fn compose(host: &str) -> String {
    format!(
        "services:\n  \
           web:\n    \
             image: \"{host}/base/single:1\"   # the front\n  \
           app:\n    \
             build: .\n    \
             image: example/app:dev\n"
    )
}

/// Three documents: a Deployment (init container and container), a Service, a CronJob.
fn kubernetes(host: &str) -> String {
    format!(
        "apiVersion: apps/v1\n\
         kind: Deployment\n\
         metadata:\n  name: web\n\
         spec:\n  template:\n    spec:\n      \
               initContainers:\n      - name: setup\n        image: {host}/tools/copy:1\n      \
               containers:\n      - name: web\n        image: '{host}/base/multi:1'\n\
         ---\n\
         apiVersion: v1\n\
         kind: Service\n\
         metadata: {{name: web}}\n\
         spec: {{ports: [{{port: 80}}]}}\n\
         ---\n\
         apiVersion: batch/v1\n\
         kind: CronJob\n\
         metadata: {{name: nightly}}\n\
         spec:\n  schedule: '@daily'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          \
               containers:\n          - name: job\n            image: {host}/base/single:1\n"
    )
}

fn write_project(project: &Project, host: &str) {
    project.write("Dockerfile", &dockerfile(host));
    project.write("compose.yaml", &compose(host));
    project.write("k8s.yaml", &kubernetes(host));
}

fn lockfile(project: &Project) -> Lockfile {
    Lockfile::parse(&project.read("pinfold.lock")).expect("pinfold.lock parses")
}

/// `(file, line, kind, written)` of every place an image is found.
fn locations(lock: &Lockfile, name: &str) -> Vec<(String, usize, String, String)> {
    lock.image(name)
        .unwrap_or_else(|| panic!("{name} not in the lockfile: {lock:#?}"))
        .found
        .iter()
        .map(|f| (f.file.clone(), f.line, f.kind.clone(), f.written.clone()))
        .collect()
}

fn loc(file: &str, line: usize, kind: &str, written: &str) -> (String, usize, String, String) {
    (file.into(), line, kind.into(), written.into())
}

#[tokio::test]
async fn lock_finds_every_reference_and_writes_a_stable_lockfile() {
    let up = Upstream::start().await;
    let host = up.host().to_string();
    let project = Project::new();
    write_project(&project, &host);

    let run = project.lock(&[]).await;
    run.assert_code(0);
    run.assert_stdout_has("wrote pinfold.lock (3 images)");
    run.assert_stderr_has("compose.yaml:6: warning: service app builds its image");
    let lock = lockfile(&project);
    assert_eq!(lock.images.len(), 3, "{lock:#?}");

    let multi = lock.image(&format!("{host}/base/multi:1")).unwrap();
    assert_eq!(multi.digest.to_string(), up.multi.index.digest);
    assert_eq!(multi.media_type, OCI_INDEX);
    let platforms: Vec<(String, String)> = multi
        .platforms
        .iter()
        .map(|(p, d)| (p.clone(), d.to_string()))
        .collect();
    assert_eq!(
        platforms,
        vec![
            (
                "linux/amd64".to_string(),
                up.multi.image("amd64").manifest.digest.clone()
            ),
            (
                "linux/arm64".to_string(),
                up.multi.image("arm64").manifest.digest.clone()
            ),
        ]
    );
    assert_eq!(
        locations(&lock, &format!("{host}/base/multi:1")),
        vec![
            loc("Dockerfile", 3, "from-arg", &format!("{host}/base/multi:1")),
            loc(
                "k8s.yaml",
                13,
                "kubernetes",
                &format!("{host}/base/multi:1")
            ),
        ]
    );

    let single = lock.image(&format!("{host}/base/single:1")).unwrap();
    assert_eq!(single.digest.to_string(), up.single.manifest.digest);
    assert_eq!(single.media_type, up.single.manifest.media_type);
    assert_eq!(
        single.platforms.get("linux/amd64").map(ToString::to_string),
        Some(up.single.manifest.digest.clone()),
        "a single image maps its config's platform to itself"
    );
    assert_eq!(
        locations(&lock, &format!("{host}/base/single:1")),
        vec![
            loc("Dockerfile", 7, "from", &format!("{host}/base/single:1")),
            loc(
                "compose.yaml",
                3,
                "compose",
                &format!("{host}/base/single:1")
            ),
            loc(
                "k8s.yaml",
                31,
                "kubernetes",
                &format!("{host}/base/single:1")
            ),
        ]
    );

    let tool = lock.image(&format!("{host}/tools/copy:1")).unwrap();
    assert_eq!(tool.digest.to_string(), up.tool.manifest.digest);
    assert_eq!(tool.media_type, OCI_MANIFEST);
    assert_eq!(
        locations(&lock, &format!("{host}/tools/copy:1")),
        vec![
            loc(
                "Dockerfile",
                4,
                "copy-from",
                &format!("{host}/tools/copy:1")
            ),
            loc(
                "Dockerfile",
                5,
                "mount-from",
                &format!("{host}/tools/copy:1")
            ),
            loc(
                "k8s.yaml",
                10,
                "kubernetes",
                &format!("{host}/tools/copy:1")
            ),
        ]
    );

    // Stable: a second run writes the same bytes (and says so), whatever the file order.
    let first = project.read("pinfold.lock");
    let run = project
        .lock(&["k8s.yaml", "compose.yaml", "Dockerfile"])
        .await;
    run.assert_code(0);
    run.assert_stdout_has("unchanged: pinfold.lock");
    assert_eq!(project.read("pinfold.lock"), first);

    // --json tells the same story.
    let run = project.lock(&["--json"]).await;
    run.assert_code(0);
    let json: Value = serde_json::from_str(&run.stdout).expect("--json output is JSON");
    assert_eq!(json["changed"], false);
    assert_eq!(json["images"].as_array().map(Vec::len), Some(3));

    // --platform keeps only what was asked for, and insists every image has it.
    let run = project
        .lock(&["--platform", "linux/amd64", "--lockfile", "amd64.lock"])
        .await;
    run.assert_code(0);
    let amd64 = Lockfile::parse(&project.read("amd64.lock")).unwrap();
    let multi = amd64.image(&format!("{host}/base/multi:1")).unwrap();
    assert_eq!(
        multi.platforms.keys().collect::<Vec<_>>(),
        vec!["linux/amd64"]
    );
    let run = project
        .lock(&["--platform", "linux/arm64", "--lockfile", "arm64.lock"])
        .await;
    run.assert_code(2);
    run.assert_stderr_has("has no image for platform linux/arm64");
    assert!(!project.path("arm64.lock").exists());
}

#[tokio::test]
async fn lock_check_names_a_moved_tag_and_added_and_removed_references() {
    let up = Upstream::start().await;
    let host = up.host().to_string();
    let project = Project::new();
    write_project(&project, &host);
    let run = project.lock(&[]).await;
    run.assert_code(0);
    let locked = project.read("pinfold.lock");

    let run = project.lock(&["--check"]).await;
    run.assert_code(0);
    run.assert_stdout_has("pinfold.lock is up to date (3 images)");

    // Upstream moves the tag: --check exits 1 and names old → new, and writes nothing.
    let moved = up.move_single().await;
    let run = project.lock(&["--check"]).await;
    run.assert_code(1);
    run.assert_stdout_has(&format!(
        "moved: {host}/base/single:1 (Dockerfile:7, compose.yaml:3, k8s.yaml:31)\n  {} -> {}\n",
        up.single.manifest.digest, moved.manifest.digest
    ));
    run.assert_stdout_has("1 moved, 0 added, 0 removed");
    assert_eq!(
        project.read("pinfold.lock"),
        locked,
        "--check wrote the lockfile"
    );

    // --explain reads both images and ranks what changed (here: the layers' files).
    let run = project.lock(&["--check", "--explain"]).await;
    run.assert_code(1);
    run.assert_stdout_has("\n  1. ");
    let run = project.lock(&["--check", "--explain", "--json"]).await;
    run.assert_code(1);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON report");
    let explanation = &report["explanations"][format!("{host}/base/single:1")];
    assert!(
        explanation["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty()),
        "{explanation}"
    );
    assert_eq!(
        project.read("pinfold.lock"),
        locked,
        "--explain wrote the lockfile"
    );

    // A reference added to the files and one removed from them.
    project.write(
        "Dockerfile",
        &dockerfile(&host).replace(
            &format!("{host}/tools/copy:1"),
            &format!("{host}/base/multi:1"),
        ),
    );
    project.write(
        "k8s.yaml",
        &kubernetes(&host).replace(
            &format!("{host}/tools/copy:1"),
            &format!("{host}/library/busybox:1.36"),
        ),
    );
    up.registry
        .push_image("library/busybox", "1.36", &up.tool)
        .await;
    let run = project.lock(&["--check", "--json"]).await;
    run.assert_code(1);
    let json: Value = serde_json::from_str(&run.stdout).expect("--json output is JSON");
    assert_eq!(json["clean"], false);
    assert_eq!(json["moved"][0]["name"], format!("{host}/base/single:1"));
    assert_eq!(json["moved"][0]["old"], up.single.manifest.digest);
    assert_eq!(json["moved"][0]["new"], moved.manifest.digest);
    assert_eq!(
        json["added"][0]["name"],
        format!("{host}/library/busybox:1.36")
    );
    assert_eq!(json["added"][0]["digest"], up.tool.manifest.digest);
    assert_eq!(json["removed"][0]["name"], format!("{host}/tools/copy:1"));
    assert_eq!(json["moved"].as_array().map(Vec::len), Some(1));
    assert_eq!(project.read("pinfold.lock"), locked);

    // Locking again accepts the new state.
    let run = project.lock(&[]).await;
    run.assert_code(0);
    let run = project.lock(&["--check"]).await;
    run.assert_code(0);
}

#[tokio::test]
async fn lock_rewrite_pins_in_place_and_a_second_run_changes_nothing() {
    let up = Upstream::start().await;
    let host = up.host().to_string();
    let project = Project::new();
    write_project(&project, &host);
    // A symlinked file is rewritten where it lives; the link stays a link.
    std::fs::create_dir(project.path("shared")).unwrap();
    std::fs::rename(
        project.path("compose.yaml"),
        project.path("shared/compose.yaml"),
    )
    .unwrap();
    std::os::unix::fs::symlink("shared/compose.yaml", project.path("compose.yaml")).unwrap();

    let run = project.lock(&["--rewrite"]).await;
    run.assert_code(0);
    assert!(std::fs::symlink_metadata(project.path("compose.yaml"))
        .unwrap()
        .file_type()
        .is_symlink());
    let multi = format!("{host}/base/multi:1@{}", up.multi.index.digest);
    let single = format!("{host}/base/single:1@{}", up.single.manifest.digest);
    let tool = format!("{host}/tools/copy:1@{}", up.tool.manifest.digest);
    // Only the references changed: comments, quotes, blank lines and the rest are as written.
    assert_eq!(
        project.read("Dockerfile"),
        dockerfile(&host)
            .replace(&format!("{host}/base/multi:1"), &multi)
            .replace(&format!("{host}/base/single:1"), &single)
            .replace(&format!("{host}/tools/copy:1"), &tool)
    );
    assert_eq!(
        project.read("shared/compose.yaml"),
        compose(&host).replace(&format!("{host}/base/single:1"), &single)
    );
    assert_eq!(
        project.read("k8s.yaml"),
        kubernetes(&host)
            .replace(&format!("{host}/base/multi:1"), &multi)
            .replace(&format!("{host}/base/single:1"), &single)
            .replace(&format!("{host}/tools/copy:1"), &tool)
    );
    run.assert_stdout_has(&format!(
        "Dockerfile:2: pinned {host}/base/multi:1 -> {multi}"
    ));
    // The lockfile describes the pinned files.
    let lock = lockfile(&project);
    assert_eq!(
        lock.image(&single).map(|i| i.digest.to_string()),
        Some(up.single.manifest.digest.clone())
    );
    assert_eq!(lock.images.len(), 3, "{lock:#?}");

    let (files, locked) = (project.read_files(), project.read("pinfold.lock"));
    let run = project.lock(&["--rewrite"]).await;
    run.assert_code(0);
    assert!(!run.stdout.contains("pinned"), "{run:?}");
    assert_eq!(project.read_files(), files);
    assert_eq!(project.read("pinfold.lock"), locked);

    // A pin whose tag moved upstream is reported, not re-pinned.
    let moved = up.move_single().await;
    let run = project.lock(&["--rewrite"]).await;
    run.assert_code(0);
    run.assert_stderr_has(&format!(
        "Dockerfile:7: warning: {single} is pinned to {} but tag 1 now points to {}",
        up.single.manifest.digest, moved.manifest.digest
    ));
    assert_eq!(project.read_files(), files);
    // Pinned references do not move, so --check stays clean, but it notes the tag.
    let run = project.lock(&["--check"]).await;
    run.assert_code(0);
    run.assert_stderr_has(&format!(
        "compose.yaml:3: note: {single} is pinned to {} but tag 1 now points to {}",
        up.single.manifest.digest, moved.manifest.digest
    ));
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr").port()
}

#[tokio::test]
async fn lock_bad_input_exits_2_with_file_and_line_and_writes_nothing() {
    let up = Upstream::start().await;
    let host = up.host().to_string();
    let project = Project::new();
    write_project(&project, &host);
    let run = project.lock(&[]).await;
    run.assert_code(0);
    let locked = project.read("pinfold.lock");
    let pristine = project.read_files();

    let port = closed_port();
    let cases: Vec<(&str, &str, String, String)> = vec![
        (
            "YAML syntax error",
            "k8s.yaml",
            kubernetes(&host).replace("metadata: {name: web}", "metadata: {name: web"),
            "k8s.yaml:18:5: error: YAML syntax error: while parsing a flow mapping".to_string(),
        ),
        (
            "Dockerfile syntax error",
            "Dockerfile",
            dockerfile(&host).replace("tool build", "<<EOF\ntool build"),
            "Dockerfile:5:".to_string(),
        ),
        (
            "invalid reference",
            "compose.yaml",
            compose(&host).replace("base/single:1", "Base/Single:1"),
            format!("compose.yaml:3:12: error: invalid image reference \"{host}/Base/Single:1\""),
        ),
        (
            "connection refused",
            "Dockerfile",
            dockerfile(&host).replace(
                &format!("FROM {host}/base/single:1"),
                &format!("FROM 127.0.0.1:{port}/base/single:1"),
            ),
            format!("Dockerfile:7:6: error: cannot resolve 127.0.0.1:{port}/base/single:1"),
        ),
        (
            "unknown image",
            "compose.yaml",
            compose(&host).replace("base/single:1", "base/missing:1"),
            format!("compose.yaml:3:12: error: cannot resolve {host}/base/missing:1: not found"),
        ),
    ];
    for (what, file, text, expected) in cases {
        project.write(file, &text);
        for args in [&[][..], &["--rewrite"][..], &["--check"][..]] {
            let run = project.lock(args).await;
            assert_eq!(run.code, Some(2), "{what} {args:?}: {run:?}");
            assert!(
                run.stderr.contains(&expected),
                "{what} {args:?}: expected {expected:?} in {run:?}"
            );
            assert_eq!(project.read("pinfold.lock"), locked, "{what} {args:?}");
            assert_eq!(
                project.read(file),
                text,
                "{what} {args:?}: the file changed"
            );
        }
        if what == "connection refused" {
            let run = project.lock(&[]).await;
            run.assert_stderr_has("refused");
        }
        let index = FILES
            .iter()
            .position(|f| *f == file)
            .expect("a project file");
        project.write(file, &pristine[index]);
    }

    // A damaged lockfile fails --check (exit 2) and is replaced by a plain run.
    project.write("pinfold.lock", "version = 1\n[[image]\n");
    let run = project.lock(&["--check"]).await;
    run.assert_code(2);
    run.assert_stderr_has("pinfold.lock: error: invalid lockfile");
    let run = project.lock(&[]).await;
    run.assert_code(0);
    assert_eq!(project.read("pinfold.lock"), locked);

    // No lockfile at all: --check says to lock first.
    let run = project.lock(&["--check", "--lockfile", "none.lock"]).await;
    run.assert_code(2);
    run.assert_stderr_has("run `pinfold lock` first");
}
