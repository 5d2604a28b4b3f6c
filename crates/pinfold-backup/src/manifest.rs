//! `manifest.json`: what one backup holds, with the digest of every file. Written last and
//! atomically; its presence is what makes a backup complete.

use std::path::{Component, Path};

use pinfold_oci::Digest;
use serde::{Deserialize, Serialize};

use crate::files::write_atomic;
use crate::BackupError;

/// The backup format this build writes and reads. Bump it when the layout or the manifest
/// changes incompatibly; restore refuses other versions instead of guessing.
pub const FORMAT_VERSION: u32 = 1;

/// File name of the manifest inside a backup's directory.
pub(crate) const MANIFEST_FILE: &str = "manifest.json";

/// The manifest of one backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackupManifest {
    /// Backup format version ([`FORMAT_VERSION`]).
    pub format: u32,
    /// Version of the Pinfold that wrote it.
    pub pinfold_version: String,
    /// The backup's name (its directory under `backups/`).
    pub name: String,
    /// When the metadata snapshot was taken (RFC 3339, UTC).
    pub created_at: String,
    /// The files of the backup's own directory: `meta.db` and `state/...`.
    pub files: Vec<FileEntry>,
    /// Every blob the snapshot needs, in the shared `blobs/` tree (named by its digest).
    pub blobs: Vec<BlobEntry>,
    /// Blobs the snapshot requires that were missing or corrupt in the data directory when
    /// the backup ran: they are not in the backup, and a restore will lack them too.
    #[serde(default)]
    pub missing: Vec<MissingBlob>,
}

/// One file of a backup's own directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to the backup's directory (`meta.db`, `state/apt/signing-key.asc`).
    pub path: String,
    /// Lowercase hex SHA-256 of its content.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Unix permission bits to restore (e.g. 0o600 for the signing key).
    pub mode: u32,
}

/// One blob of a backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BlobEntry {
    /// The blob's digest (also its file name).
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// A blob the metadata requires that the backup could not include.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MissingBlob {
    /// The blob.
    pub digest: Digest,
    /// Who needs it.
    pub referrer: String,
    /// `missing` or `corrupt` (in the data directory at backup time).
    pub reason: String,
}

impl BackupManifest {
    /// Writes the manifest into `backup_dir` atomically (temp file, fsync, rename, fsync).
    pub(crate) fn write(&self, backup_dir: &Path) -> Result<(), BackupError> {
        let path = backup_dir.join(MANIFEST_FILE);
        let json = serde_json::to_vec_pretty(self).map_err(|e| BackupError::ManifestInvalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &json)
    }

    /// Reads and checks the manifest of `backup_dir`: present, the format this build reads,
    /// and every file path inside the backup directory.
    ///
    /// # Errors
    /// [`BackupError::Incomplete`] without a manifest; [`BackupError::FormatVersion`] for
    /// another format; [`BackupError::ManifestInvalid`] for anything unparsable or a path that
    /// leaves the backup directory.
    pub fn read(backup_dir: &Path) -> Result<BackupManifest, BackupError> {
        let path = backup_dir.join(MANIFEST_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BackupError::Incomplete(backup_dir.to_owned()))
            }
            Err(e) => return Err(BackupError::io("read", &path, e)),
        };
        let invalid = |reason: String| BackupError::ManifestInvalid {
            path: path.clone(),
            reason,
        };
        // The version first, on a loose parse: a manifest of another format may not match
        // this build's structure, and "format 2" is a better answer than a field error.
        let loose: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        let format = loose.get("format").and_then(serde_json::Value::as_u64);
        if format != Some(u64::from(FORMAT_VERSION)) {
            return Err(BackupError::FormatVersion {
                path: path.clone(),
                found: format.unwrap_or(0),
                written_by: loose
                    .get("pinfold_version")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("unknown")
                    .to_owned(),
                expected: FORMAT_VERSION,
            });
        }
        let manifest: BackupManifest =
            serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        for file in &manifest.files {
            if !is_inside(&file.path) {
                return Err(invalid(format!(
                    "file path {:?} leaves the backup directory",
                    file.path
                )));
            }
        }
        if !manifest
            .files
            .iter()
            .any(|f| f.path == crate::backup::SNAPSHOT_FILE)
        {
            return Err(invalid("it lists no meta.db".into()));
        }
        Ok(manifest)
    }
}

/// Whether `path` is relative and made of normal components only (no `..`, no root).
fn is_inside(path: &str) -> bool {
    let p = Path::new(path);
    !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_stay_inside() {
        assert!(is_inside("meta.db"));
        assert!(is_inside("state/apt/signing-key.asc"));
        assert!(!is_inside("../x"));
        assert!(!is_inside("/etc/passwd"));
        assert!(!is_inside("state/../../x"));
        assert!(!is_inside(""));
    }
}
