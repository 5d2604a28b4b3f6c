//! SHA-256 digests of test content and of files on disk, computed with `pinfold-oci` (sha2,
//! built with opt-level 3 even in test builds).

use std::path::PathBuf;

use pinfold_oci::Digest;

/// The `sha256:<hex>` digest of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    Digest::sha256(bytes).to_string()
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Digest::sha256(bytes).encoded().to_owned()
}

/// The hex SHA-256 of each file, in the order given.
pub fn sha256_files(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| {
            sha256_hex(&std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())))
        })
        .collect()
}

#[test]
fn sha256_matches_sha256sum() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"abc").unwrap();
    let out = std::process::Command::new("sha256sum")
        .arg(&file)
        .output()
        .unwrap();
    let expected = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(sha256_files(&[file]), vec![expected.clone()]);
    assert_eq!(sha256_hex(b"abc"), expected);
}
