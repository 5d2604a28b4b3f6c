//! SHA-256 digests of test content and of files on disk.
//!
//! The `pinfold` package has no SHA-256 crate among its dev-dependencies, and this code is
//! compiled unoptimised in tests, where a Rust SHA-256 runs at about 28 MB/s. So small inputs
//! (manifests, configs) are hashed here, and large ones by coreutils' `sha256sum` (≈400 MB/s),
//! which is also a hasher independent of the server's. Replace both with the `sha2` crate once
//! it is a dev-dependency (it is built with opt-level 3 in the workspace profile).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Inputs up to this size are hashed in-process; larger ones by `sha256sum`.
const IN_PROCESS_LIMIT: usize = 256 * 1024;

/// The `sha256:<hex>` digest of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    if bytes.len() <= IN_PROCESS_LIMIT {
        return to_hex(&sha256_in_process(bytes));
    }
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sha256sum (coreutils)");
    let mut stdin = child.stdin.take().expect("sha256sum stdin");
    // Feed stdin from a second thread so a full stdout pipe cannot deadlock us.
    let input = bytes.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("wait for sha256sum");
    feeder
        .join()
        .expect("sha256sum feeder thread")
        .expect("write to sha256sum");
    assert!(
        output.status.success(),
        "sha256sum failed: {}",
        output.status
    );
    parse_sha256sum_line(&String::from_utf8_lossy(&output.stdout))
}

/// The hex SHA-256 of each file, in the order given, hashed by one `sha256sum` run per
/// batch of files.
pub fn sha256_files(paths: &[PathBuf]) -> Vec<String> {
    let mut hashes = Vec::with_capacity(paths.len());
    for batch in paths.chunks(256) {
        let output = Command::new("sha256sum")
            .arg("--")
            .args(batch)
            .output()
            .expect("run sha256sum (coreutils)");
        assert!(
            output.status.success(),
            "sha256sum {batch:?} failed: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), batch.len(), "sha256sum output: {text}");
        hashes.extend(lines.into_iter().map(parse_sha256sum_line));
    }
    hashes
}

fn parse_sha256sum_line(line: &str) -> String {
    let hex = line.split_whitespace().next().unwrap_or_default();
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "unexpected sha256sum output: {line:?}"
    );
    // A file name with a backslash makes sha256sum prefix the line with '\'.
    hex.trim_start_matches('\\').to_owned()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// FIPS 180-4 SHA-256.
fn sha256_in_process(bytes: &[u8]) -> [u8; 32] {
    let mut state: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut padded = bytes.to_vec();
    padded.push(0x80);
    while padded.len() % 64 != 56 {
        padded.push(0);
    }
    padded.extend_from_slice(&((bytes.len() as u64) * 8).to_be_bytes());
    for block in padded.chunks_exact(64) {
        compress(&mut state, block);
    }
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn compress(state: &mut [u32; 8], block: &[u8]) {
    let mut w = [0u32; 64];
    for (i, c) in block.chunks_exact(4).enumerate() {
        w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
    }
    for i in 16..64 {
        let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
        let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16]
            .wrapping_add(s0)
            .wrapping_add(w[i - 7])
            .wrapping_add(s1);
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    for i in 0..64 {
        let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
        let ch = (e & f) ^ (!e & g);
        let t1 = h
            .wrapping_add(s1)
            .wrapping_add(ch)
            .wrapping_add(K[i])
            .wrapping_add(w[i]);
        let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
        let maj = (a & b) ^ (a & c) ^ (b & c);
        let t2 = s0.wrapping_add(maj);
        h = g;
        g = f;
        f = e;
        e = d.wrapping_add(t1);
        d = c;
        c = b;
        b = a;
        a = t1.wrapping_add(t2);
    }
    for (word, add) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *word = word.wrapping_add(add);
    }
}

#[test]
fn sha256_matches_known_vectors_and_sha256sum() {
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let data: Vec<u8> = (0..IN_PROCESS_LIMIT + 1000)
        .map(|i| (i % 251) as u8)
        .collect();
    let external = sha256_hex(&data);
    assert_eq!(to_hex(&sha256_in_process(&data)), external);
}
