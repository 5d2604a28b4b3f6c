//! API token secrets: how they are made, stored (SHA-256) and compared (in constant time).

use base64::Engine as _;
use ring::rand::SecureRandom;
use sha2::{Digest as _, Sha256};

/// The prefix of every API token secret, so that secret scanners and people recognise one.
pub const TOKEN_PREFIX: &str = "pft_";

/// A fresh token: `(id, secret)`. The secret is `pft_` and 32 random bytes in base64url (256
/// bits: a single SHA-256 is a sufficient stored form); the id is 8 random bytes in hex, a
/// public handle.
///
/// # Errors
/// When the system's random source fails.
pub fn new_token_secret() -> Result<(String, String), ring::error::Unspecified> {
    let rng = ring::rand::SystemRandom::new();
    let mut secret = [0u8; 32];
    rng.fill(&mut secret)?;
    let mut id = [0u8; 8];
    rng.fill(&mut id)?;
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    Ok((
        id,
        format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        ),
    ))
}

/// Lowercase hex SHA-256 of `data`: the stored form of a token secret, and the cache key of a
/// credential header (so the cache never holds a secret).
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares two byte strings in time that depends only on their lengths, so a caller cannot
/// learn how many leading bytes of a guess were right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_distinct_and_prefixed() {
        let (id1, s1) = new_token_secret().unwrap();
        let (id2, s2) = new_token_secret().unwrap();
        assert_ne!(s1, s2);
        assert_ne!(id1, id2);
        assert!(s1.starts_with(TOKEN_PREFIX));
        assert_eq!(s1.len(), TOKEN_PREFIX.len() + 43);
        assert_eq!(id1.len(), 16);
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn sha256_hex_is_the_standard_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
