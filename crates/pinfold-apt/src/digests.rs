//! The three digests Debian indices list for every file (MD5Sum, SHA1, SHA256) and its size.
//!
//! apt verifies SHA256 (the strongest listed); MD5 and SHA1 are written because older tools
//! (and Artifactory clients sending `X-Checksum-Sha1`) still read them. One pass computes all
//! three so a `.deb` or an index is read once.

use std::fmt::Write as _;
use std::io;

use md5::Digest as _;

/// Size and MD5, SHA-1 and SHA-256 of one file, as lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileDigests {
    /// Length in bytes.
    pub size: u64,
    /// MD5, 32 hex digits.
    pub md5: String,
    /// SHA-1, 40 hex digits.
    pub sha1: String,
    /// SHA-256, 64 hex digits.
    pub sha256: String,
}

impl FileDigests {
    /// The digests of `bytes`.
    pub fn of(bytes: &[u8]) -> FileDigests {
        let mut hasher = MultiHasher::new();
        hasher.update(bytes);
        hasher.finish()
    }
}

/// Computes [`FileDigests`] incrementally; also an [`io::Write`] sink.
#[derive(Clone, Default)]
pub struct MultiHasher {
    size: u64,
    md5: md5::Md5,
    sha1: sha1::Sha1,
    sha256: sha2::Sha256,
}

impl MultiHasher {
    /// A hasher that has seen nothing.
    pub fn new() -> MultiHasher {
        MultiHasher::default()
    }

    /// Feeds more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        self.md5.update(bytes);
        self.sha1.update(bytes);
        self.sha256.update(bytes);
    }

    /// The digests of everything fed so far.
    pub fn finish(self) -> FileDigests {
        FileDigests {
            size: self.size,
            md5: hex(&self.md5.finalize()),
            sha1: hex(&self.sha1.finalize()),
            sha256: hex(&self.sha256.finalize()),
        }
    }
}

impl io::Write for MultiHasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests_of_abc() {
        let d = FileDigests::of(b"abc");
        assert_eq!(d.size, 3);
        assert_eq!(d.md5, "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(d.sha1, "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            d.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut h = MultiHasher::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), d);
    }
}
