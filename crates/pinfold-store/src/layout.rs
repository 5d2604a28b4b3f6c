//! Where things live under the store root (the tree is drawn in the crate docs).
//!
//! Every path the store touches is built here, and only from a [`Digest`] (validated algorithm
//! and lowercase hex) or an [`UploadId`] (validated UUID), so no client-supplied text can ever
//! name a path outside the store.

use std::path::{Path, PathBuf};

use pinfold_oci::{Digest, DigestAlgorithm};

use crate::UploadId;

/// Every algorithm the blob tree has a directory for.
pub(crate) const ALGORITHMS: [DigestAlgorithm; 2] =
    [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512];

/// Temp files are named `<TEMP_PREFIX><uuid>` inside the directory of their destination. A
/// leading dot keeps them apart from blob names, which are bare hex.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// The paths of one store.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout under `root`.
    pub(crate) fn new(root: PathBuf) -> Layout {
        Layout { root }
    }

    /// The store root.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/blobs`.
    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// `<root>/blobs/<alg>`.
    pub(crate) fn algorithm_dir(&self, algorithm: DigestAlgorithm) -> PathBuf {
        self.blobs_dir().join(algorithm.as_str())
    }

    /// `<root>/blobs/<alg>/<first two hex digits>`: the directory a blob's file lives in.
    /// Fanning out by two hex digits keeps directories small enough to list and look up fast
    /// with millions of blobs.
    pub(crate) fn blob_dir(&self, digest: &Digest) -> PathBuf {
        let encoded = digest.encoded();
        // A validated digest has at least 64 hex digits, so the fallback is never taken.
        let fan_out = encoded.get(..2).unwrap_or(encoded);
        self.algorithm_dir(digest.algorithm()).join(fan_out)
    }

    /// `<root>/blobs/<alg>/<xx>/<hex>`: the blob's file.
    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blob_dir(digest).join(digest.encoded())
    }

    /// `<root>/uploads`.
    pub(crate) fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    /// `<root>/uploads/<id>`: the bytes an upload session received so far.
    pub(crate) fn upload_path(&self, id: &UploadId) -> PathBuf {
        self.uploads_dir().join(id.as_str())
    }
}

/// A fresh temp file path inside `dir`.
pub(crate) fn temp_path(dir: &Path) -> PathBuf {
    dir.join(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple()))
}

/// The 256 fan-out directory names, `00` to `ff`.
pub(crate) fn fan_out_names() -> impl Iterator<Item = String> {
    (0..=255u8).map(|b| format!("{b:02x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_paths_fan_out_by_two_hex_digits() {
        let layout = Layout::new(PathBuf::from("/data"));
        let digest = Digest::sha256(b"");
        assert_eq!(
            layout.blob_path(&digest),
            PathBuf::from(
                "/data/blobs/sha256/e3/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            )
        );
        let sha512 = Digest::compute(DigestAlgorithm::Sha512, b"");
        assert!(layout.blob_dir(&sha512).ends_with("blobs/sha512/cf"));
    }

    #[test]
    fn upload_and_temp_paths_stay_in_their_directories() {
        let layout = Layout::new(PathBuf::from("/data"));
        let id = UploadId::new_random();
        assert_eq!(
            layout.upload_path(&id).parent(),
            Some(layout.uploads_dir().as_path())
        );
        let temp = temp_path(Path::new("/data/blobs/sha256/e3"));
        assert_eq!(temp.parent(), Some(Path::new("/data/blobs/sha256/e3")));
        let name = temp
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(name.starts_with(TEMP_PREFIX));
        assert_eq!(fan_out_names().count(), 256);
        assert_eq!(fan_out_names().last().as_deref(), Some("ff"));
    }
}
