//! `pinfold lint` end to end: the real binary on Dockerfiles in a temp dir, checking exit codes
//! 0/1/2 and the JSON and SARIF output.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const PINNED: &str =
    "FROM debian:12@sha256:0000000000000000000000000000000000000000000000000000000000000000\n";

fn pinfold(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pinfold"))
        .arg("lint")
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .output()
        .expect("run pinfold")
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write Dockerfile");
}

#[test]
fn clean_file_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "Dockerfile",
        &format!("{PINNED}CMD [\"/app\"]\n"),
    );
    let out = pinfold(&["Dockerfile"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty());
}

#[test]
fn findings_exit_1_with_compiler_style_text() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Dockerfile", "# app\n\nFROM ruby:3.3\n");
    let out = pinfold(&["Dockerfile"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("Dockerfile:3:6: warning[PF002]: base image ruby:3.3 is not pinned by digest\n  = hint: "),
        "{text}"
    );
}

#[test]
fn fail_level_and_disable_decide_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Dockerfile", "FROM ruby:3.3\n");
    let code = |args: &[&str]| pinfold(args, dir.path()).status.code();
    assert_eq!(code(&["--fail-level", "error", "Dockerfile"]), Some(0));
    assert_eq!(code(&["--fail-level", "info", "Dockerfile"]), Some(1));
    assert_eq!(code(&["--fail-level", "none", "Dockerfile"]), Some(0));
    assert_eq!(code(&["--disable", "PF002", "Dockerfile"]), Some(0));
    assert_eq!(
        code(&[
            "--allow-registry",
            "ghcr.io",
            "--fail-level",
            "error",
            "Dockerfile"
        ]),
        Some(1)
    );
    assert_eq!(code(&["--disable", "PF999", "Dockerfile"]), Some(2));
}

#[test]
fn syntax_error_and_missing_file_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Dockerfile", "FROM a\nRUN <<EOF\necho\n");
    let out = pinfold(&["Dockerfile"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("Dockerfile:2:5: error: unterminated heredoc"),
        "{err}"
    );
    let out = pinfold(&["nope/Dockerfile"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn json_lists_findings() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "Dockerfile",
        &format!("{PINNED}RUN curl -fsSL https://get.example.com | sh\n"),
    );
    let out = pinfold(&["--json", "Dockerfile"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 1, "{v}");
    assert_eq!(arr[0]["id"], "PF010");
    assert_eq!(arr[0]["severity"], "warning");
    assert_eq!(arr[0]["file"], "Dockerfile");
    assert_eq!(arr[0]["line"], 2);
    for key in ["column", "message", "hint"] {
        assert!(!arr[0][key].is_null(), "{key}");
    }
}

#[test]
fn sarif_output_has_the_required_fields() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "Dockerfile",
        "FROM ruby\nRUN apt-get install -y curl\n",
    );
    let out = pinfold(&["--format", "sarif", "Dockerfile"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["$schema"].as_str().unwrap().contains("sarif-2.1.0"));
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert!(rules.iter().any(|r| r["id"] == "PF004"));
    let results = run["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for r in results {
        assert!(r["ruleId"].as_str().unwrap().starts_with("PF"));
        assert!(["error", "warning", "note"].contains(&r["level"].as_str().unwrap()));
        assert!(!r["message"]["text"].as_str().unwrap().is_empty());
        let loc = &r["locations"][0]["physicalLocation"];
        assert_eq!(loc["artifactLocation"]["uri"], "Dockerfile");
        assert!(loc["region"]["startLine"].as_u64().unwrap() >= 1);
    }
}

#[test]
fn stdin_is_read_with_dash() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pinfold"))
        .args(["lint", "-"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"FROM ruby:latest\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("<stdin>:1:6: warning[PF001]"), "{text}");
}

/// Story 3 (shared/seeds/docker-runtime-and-dockerfile-quirks.txt): the `\n`-escaped `for`
/// loop in a shell-form CMD is an error.
#[test]
fn story_3_cmd_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "Dockerfile",
        "FROM debian:stretch\nWORKDIR /packages\nCMD for package in *.deb; do\\n\\\n  echo $package\\n\\\n  done\n",
    );
    let out = pinfold(&["--fail-level", "error", "Dockerfile"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Dockerfile:3:29: error[PF012]"), "{text}");
}
