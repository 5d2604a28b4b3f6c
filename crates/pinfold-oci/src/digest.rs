//! Content digests (`algorithm:encoded`) as defined by the OCI image-spec, section "Digests".
//!
//! Only the registered algorithms `sha256` and `sha512` are accepted: a registry that stored a
//! blob under an algorithm it cannot verify would break "bytes are sacred".

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// A digest algorithm Pinfold can compute and verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestAlgorithm {
    /// SHA-256, 64 lowercase hex characters. The default for everything Pinfold computes.
    Sha256,
    /// SHA-512, 128 lowercase hex characters.
    Sha512,
}

impl DigestAlgorithm {
    /// The algorithm's name as it appears before the colon.
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex-encoded part.
    pub fn encoded_len(self) -> usize {
        match self {
            DigestAlgorithm::Sha256 => 64,
            DigestAlgorithm::Sha512 => 128,
        }
    }
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not an acceptable digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// No `:` separates algorithm and encoded part.
    #[error("digest {0:?} has no ':' between algorithm and hex")]
    MissingSeparator(String),
    /// The algorithm is well-formed but not one Pinfold can verify.
    #[error("digest algorithm {0:?} is not supported (sha256 and sha512 are)")]
    UnsupportedAlgorithm(String),
    /// The encoded part is not lowercase hex of the algorithm's length.
    #[error("digest {0:?} does not have the lowercase hex length its algorithm requires")]
    BadEncoding(String),
}

/// A verified-shape content digest such as `sha256:e3b0…`.
///
/// Ordering and hashing follow the text, so digests sort like their strings.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest {
    // The whole accepted text; `algorithm` tells where the colon is.
    text: String,
    algorithm: DigestAlgorithm,
}

impl Digest {
    /// The algorithm part.
    pub fn algorithm(&self) -> DigestAlgorithm {
        self.algorithm
    }

    /// The hex-encoded part after the colon.
    pub fn encoded(&self) -> &str {
        &self.text[self.algorithm.as_str().len() + 1..]
    }

    /// The whole digest text, `algorithm:encoded`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Computes the digest of `bytes` with `algorithm`.
    pub fn compute(algorithm: DigestAlgorithm, bytes: &[u8]) -> Digest {
        let mut digester = Digester::new(algorithm);
        digester.update(bytes);
        digester.finalize()
    }

    /// Computes the SHA-256 digest of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Digest {
        Digest::compute(DigestAlgorithm::Sha256, bytes)
    }

    fn from_parts(algorithm: DigestAlgorithm, hex: &str) -> Digest {
        Digest {
            text: format!("{}:{}", algorithm.as_str(), hex),
            algorithm,
        }
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (algorithm, encoded) = s
            .split_once(':')
            .ok_or_else(|| DigestError::MissingSeparator(s.to_owned()))?;
        let algorithm = match algorithm {
            "sha256" => DigestAlgorithm::Sha256,
            "sha512" => DigestAlgorithm::Sha512,
            other => return Err(DigestError::UnsupportedAlgorithm(other.to_owned())),
        };
        let hex_ok = encoded.len() == algorithm.encoded_len()
            && encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_ok {
            return Err(DigestError::BadEncoding(s.to_owned()));
        }
        Ok(Digest {
            text: s.to_owned(),
            algorithm,
        })
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Digest> for String {
    fn from(value: Digest) -> Self {
        value.text
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

/// Incremental hashing that ends in a [`Digest`]; uses SHA-NI where the CPU has it.
#[derive(Clone)]
pub enum Digester {
    /// SHA-256 state.
    Sha256(sha2::Sha256),
    /// SHA-512 state.
    Sha512(sha2::Sha512),
}

impl Digester {
    /// A fresh digester for `algorithm`.
    pub fn new(algorithm: DigestAlgorithm) -> Digester {
        match algorithm {
            DigestAlgorithm::Sha256 => Digester::Sha256(sha2::Sha256::new()),
            DigestAlgorithm::Sha512 => Digester::Sha512(sha2::Sha512::new()),
        }
    }

    /// The algorithm this digester computes.
    pub fn algorithm(&self) -> DigestAlgorithm {
        match self {
            Digester::Sha256(_) => DigestAlgorithm::Sha256,
            Digester::Sha512(_) => DigestAlgorithm::Sha512,
        }
    }

    /// Feeds more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Digester::Sha256(h) => h.update(bytes),
            Digester::Sha512(h) => h.update(bytes),
        }
    }

    /// Ends hashing and returns the digest of everything fed.
    pub fn finalize(self) -> Digest {
        match self {
            Digester::Sha256(h) => Digest::from_parts(DigestAlgorithm::Sha256, &hex(&h.finalize())),
            Digester::Sha512(h) => Digest::from_parts(DigestAlgorithm::Sha512, &hex(&h.finalize())),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn computes_known_digests() {
        assert_eq!(Digest::sha256(b"").as_str(), EMPTY_SHA256);
        let d = Digest::compute(DigestAlgorithm::Sha512, b"");
        assert!(d.as_str().starts_with("sha512:cf83e1357eefb8bd"));
        assert_eq!(d.encoded().len(), 128);
    }

    #[test]
    fn accepts_valid_and_round_trips() {
        let d: Digest = EMPTY_SHA256.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY_SHA256);
        assert_eq!(d.algorithm(), DigestAlgorithm::Sha256);
        let json = serde_json::to_string(&d).unwrap();
        let back: Digest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn rejects_invalid() {
        let bad = [
            "",
            "sha256",
            "sha256:",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855a",
            "sha256:../../../../etc/passwd",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ];
        for s in bad {
            assert!(s.parse::<Digest>().is_err(), "{s:?} should be rejected");
            assert!(serde_json::from_str::<Digest>(&format!("{s:?}")).is_err());
        }
    }
}
