use std::path::Path;
use std::process::Command;

use pinfold_apt::index::{Release, ReleaseEntry};
use pinfold_apt::{FileDigests, SigningKey};

use crate::require_tool;

fn release_text() -> String {
    Release {
        origin: "Pinfold".into(),
        label: "Pinfold".into(),
        suite: "stable".into(),
        codename: "stable".into(),
        date: time::OffsetDateTime::now_utc(),
        valid_until: None,
        architectures: vec!["amd64".into()],
        components: vec!["main".into()],
        description: Some("a line that - has dashes".into()),
        files: vec![ReleaseEntry {
            path: "main/binary-amd64/Packages".into(),
            digests: FileDigests::of(b"Package: x\n"),
        }],
    }
    .render()
}

struct Signed {
    dir: tempfile::TempDir,
    key: SigningKey,
    release: String,
}

impl Signed {
    fn new() -> Signed {
        let dir = tempfile::tempdir().unwrap();
        let (key, generated) =
            SigningKey::load_or_generate(&dir.path().join("keys/apt.asc"), "Pinfold test <t@t>")
                .unwrap();
        assert!(generated);
        let release = release_text();
        std::fs::write(dir.path().join("Release"), &release).unwrap();
        std::fs::write(
            dir.path().join("InRelease"),
            key.clearsign(&release).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("Release.gpg"),
            key.detached_sign(release.as_bytes()).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("key.asc"),
            key.public_key_armored().unwrap(),
        )
        .unwrap();
        std::fs::write(dir.path().join("key.gpg"), key.public_key_binary().unwrap()).unwrap();
        Signed { dir, key, release }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn gpgv(keyring: &Path, args: &[&Path]) -> (bool, String) {
    let home = tempfile::tempdir().unwrap();
    run(Command::new("gpgv")
        .env("GNUPGHOME", home.path())
        .arg("--keyring")
        .arg(keyring)
        .args(args))
}

#[test]
fn gpgv_verifies_inrelease_and_release_gpg() {
    if !require_tool("gpgv") {
        return;
    }
    let s = Signed::new();
    // gpgv reads binary keyrings (apt hands it .gpg files, or .asc after dearmoring).
    let keyring = s.path("key.gpg");
    let (ok, out) = gpgv(&keyring, &[&s.path("InRelease")]);
    assert!(ok, "{out}");
    assert!(
        out.contains("EDDSA") || out.contains("Good signature"),
        "{out}"
    );
    assert!(
        out.contains(&s.key.fingerprint()) || out.contains("Good signature"),
        "{out}"
    );
    let (ok, out) = gpgv(&keyring, &[&s.path("Release.gpg"), &s.path("Release")]);
    assert!(ok, "{out}");
    // A changed Release fails: the test can fail.
    std::fs::write(s.path("Release"), s.release.replace("stable", "unstable")).unwrap();
    let (ok, out) = gpgv(&keyring, &[&s.path("Release.gpg"), &s.path("Release")]);
    assert!(!ok, "tampered Release verified: {out}");
}

#[test]
fn sqv_verifies_with_armored_key_and_sha256() {
    if !require_tool("sqv") {
        return;
    }
    let s = Signed::new();
    let (ok, out) = run(Command::new("sqv")
        .arg("--keyring")
        .arg(s.path("key.asc"))
        .arg(s.path("Release.gpg"))
        .arg(s.path("Release")));
    assert!(ok, "{out}");
    assert!(out.contains(&s.key.fingerprint()), "{out}");
    // InRelease is checked by gpgv above (apt 2.6 splits and verifies it with gpgv).
    // A different key does not verify.
    let other = SigningKey::generate("other <o@o>").unwrap();
    std::fs::write(s.path("other.asc"), other.public_key_armored().unwrap()).unwrap();
    let (ok, out) = run(Command::new("sqv")
        .arg("--keyring")
        .arg(s.path("other.asc"))
        .arg(s.path("Release.gpg"))
        .arg(s.path("Release")));
    assert!(!ok, "wrong key verified: {out}");
}

#[test]
fn signatures_use_sha256_and_the_clearsigned_text_is_the_release() {
    let s = Signed::new();
    let inrelease = std::fs::read_to_string(s.path("InRelease")).unwrap();
    assert!(
        inrelease.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n"),
        "{inrelease}"
    );
    assert!(inrelease.contains(&s.release), "{inrelease}");
    let (message, _) = pgp::composed::CleartextSignedMessage::from_string(&inrelease).unwrap();
    for sig in message.signatures() {
        assert_eq!(
            sig.hash_alg(),
            Some(pgp::crypto::hash::HashAlgorithm::Sha256)
        );
    }
}

#[test]
fn stored_key_is_reloaded_and_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apt-signing-key.asc");
    let (first, generated) = SigningKey::load_or_generate(&path, "a <a@a>").unwrap();
    assert!(generated);
    let (second, generated) = SigningKey::load_or_generate(&path, "a <a@a>").unwrap();
    assert!(!generated);
    assert_eq!(first.fingerprint(), second.fingerprint());
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::write(&path, "not a key").unwrap();
    assert!(SigningKey::load_or_generate(&path, "a <a@a>").is_err());
}

#[test]
fn clearsigned_messages_verify_only_with_the_right_key() {
    let s = Signed::new();
    let inrelease = std::fs::read_to_string(s.path("InRelease")).unwrap();
    let public = s.key.public_key_armored().unwrap();
    assert_eq!(
        pinfold_apt::verify_clearsigned(&inrelease, &public).unwrap(),
        s.release
    );
    let other = SigningKey::generate("other <o@o>").unwrap();
    assert!(matches!(
        pinfold_apt::verify_clearsigned(&inrelease, &other.public_key_armored().unwrap()),
        Err(pinfold_apt::SignError::BadSignature)
    ));
    let tampered = inrelease.replace("Suite: stable", "Suite: unstable");
    assert!(pinfold_apt::verify_clearsigned(&tampered, &public).is_err());
}

/// A key and InRelease made by the real gpg verify (the mirror's upstream case).
#[test]
fn gpg_clearsigned_message_verifies() {
    if !require_tool("gpg") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    // gpg starts an agent for this home; stop it (only it) when the test ends.
    struct StopAgent<'a>(&'a Path);
    impl Drop for StopAgent<'_> {
        fn drop(&mut self) {
            let _ = Command::new("gpgconf")
                .env("GNUPGHOME", self.0)
                .args(["--kill", "gpg-agent"])
                .output();
        }
    }
    let _agent = StopAgent(home.path());
    let gpg = |args: &[&str], input: Option<&str>| {
        use std::io::Write;
        let mut child = Command::new("gpg")
            .env("GNUPGHOME", home.path())
            .args([
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.unwrap_or("").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    gpg(
        &[
            "--quick-gen-key",
            "Upstream <up@example.com>",
            "ed25519",
            "sign",
            "never",
        ],
        None,
    );
    let public = gpg(&["--armor", "--export"], None);
    let release = release_text();
    let signed = gpg(&["--clearsign", "--digest-algo", "SHA256"], Some(&release));
    assert_eq!(
        pinfold_apt::verify_clearsigned(&signed, &public).unwrap(),
        release
    );
}

/// A private GnuPG home driven in batch mode; its agent is stopped on drop.
struct GpgHome {
    home: tempfile::TempDir,
}

impl GpgHome {
    fn new() -> GpgHome {
        GpgHome {
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args([
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// A configured key exported by gpg is accepted when apt would accept it (RSA 3072, Ed25519)
/// and refused when not (RSA 2048); signatures made with it verify with gpgv.
#[test]
fn configured_gpg_keys_are_checked_and_sign() {
    if !require_tool("gpg") || !require_tool("gpgv") {
        return;
    }
    for (algo, accepted) in [("rsa3072", true), ("ed25519", true), ("rsa2048", false)] {
        let gpg = GpgHome::new();
        gpg.run(&[
            "--quick-gen-key",
            &format!("Configured {algo} <c@example.com>"),
            algo,
            "sign",
            "never",
        ]);
        let secret = gpg.run(&["--armor", "--export-secret-keys"]);
        let loaded = SigningKey::from_armored(&secret);
        if !accepted {
            assert!(
                matches!(loaded, Err(pinfold_apt::SignError::RsaTooSmall(2048))),
                "{algo}: {loaded:?}"
            );
            continue;
        }
        let key = loaded.unwrap_or_else(|e| panic!("{algo}: {e}"));
        let dir = tempfile::tempdir().unwrap();
        let release = release_text();
        std::fs::write(dir.path().join("Release"), &release).unwrap();
        std::fs::write(
            dir.path().join("Release.gpg"),
            key.detached_sign(release.as_bytes()).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("InRelease"),
            key.clearsign(&release).unwrap(),
        )
        .unwrap();
        let keyring = dir.path().join("key.gpg");
        std::fs::write(&keyring, key.public_key_binary().unwrap()).unwrap();
        let (ok, out) = gpgv(&keyring, &[&dir.path().join("InRelease")]);
        assert!(ok, "{algo} InRelease: {out}");
        let (ok, out) = gpgv(
            &keyring,
            &[&dir.path().join("Release.gpg"), &dir.path().join("Release")],
        );
        assert!(ok, "{algo} Release.gpg: {out}");
    }
}
