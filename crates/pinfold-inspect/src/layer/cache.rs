//! The layer index cache: a finished [`LayerIndex`] is kept as JSON under the user's cache
//! directory, named by the layer's digest, so a second diff against the same base image reads
//! a few KiB instead of the base's layers.
//!
//! ```text
//! $XDG_CACHE_HOME/pinfold/            (default ~/.cache/pinfold)
//!   layers/sha256/<64 hex>.json       one LayerIndex per layer blob digest
//!   layers/sha256/.<hex>.<pid>.<n>.tmp  being written; renamed into place when complete
//! ```
//!
//! Content addressing makes entries immutable: an index is only stored after the blob's digest
//! was verified, and a cached index is used only if it parses, has the current
//! [`INDEX_FORMAT`](super::INDEX_FORMAT) and names the digest asked for; anything else is
//! ignored and recomputed. Writes go to a temporary file in the same directory and are renamed
//! into place, so a reader never sees half an entry. Nothing is written outside the cache
//! directory. Cache failures never fail a diff: they are logged and the index is recomputed.

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use pinfold_oci::Digest;

use super::{LayerIndex, INDEX_FORMAT};

/// Where layer indexes are cached, or nowhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerCache {
    dir: Option<PathBuf>,
}

impl LayerCache {
    /// A cache rooted at `dir` (entries go to `dir/layers/<alg>/<hex>.json`).
    pub fn at(dir: impl Into<PathBuf>) -> LayerCache {
        LayerCache {
            dir: Some(dir.into()),
        }
    }

    /// No caching: every layer is read every time.
    pub fn disabled() -> LayerCache {
        LayerCache { dir: None }
    }

    /// The user's cache: `$XDG_CACHE_HOME/pinfold`, else `$HOME/.cache/pinfold`; disabled when
    /// neither variable is set (or they are relative paths, which the XDG spec says to ignore).
    pub fn user_default() -> LayerCache {
        LayerCache {
            dir: default_dir(
                std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from),
                std::env::var_os("HOME").map(PathBuf::from),
            ),
        }
    }

    /// The cache's root directory, if caching is on.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The file an index of `digest` is cached in.
    pub fn entry_path(&self, digest: &Digest) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| {
            d.join("layers")
                .join(digest.algorithm().as_str())
                .join(format!("{}.json", digest.encoded()))
        })
    }

    /// The cached index of `digest`, if there is a valid one.
    pub fn load(&self, digest: &Digest) -> Option<LayerIndex> {
        let path = self.entry_path(digest)?;
        let file = std::fs::File::open(&path).ok()?;
        match serde_json::from_reader::<_, LayerIndex>(BufReader::new(file)) {
            Ok(index) if index.format == INDEX_FORMAT && index.digest == *digest => Some(index),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "ignoring unreadable cache entry");
                None
            }
        }
    }

    /// Stores `index` under its digest, atomically. Failures are logged, not returned: the
    /// cache is an optimisation.
    pub fn store(&self, index: &LayerIndex) {
        let Some(path) = self.entry_path(&index.digest) else {
            return;
        };
        if let Err(e) = write_atomically(&path, index) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write layer cache entry");
        }
    }
}

fn default_dir(xdg_cache_home: Option<PathBuf>, home: Option<PathBuf>) -> Option<PathBuf> {
    match xdg_cache_home.filter(|p| p.is_absolute()) {
        Some(dir) => Some(dir.join("pinfold")),
        None => home
            .filter(|p| p.is_absolute())
            .map(|h| h.join(".cache").join("pinfold")),
    }
}

fn write_atomically(path: &Path, index: &LayerIndex) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("cache path has no parent"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        index.digest.encoded(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut out = BufWriter::new(file);
        serde_json::to_writer(&mut out, index)?;
        out.flush()?;
        // A cache entry need not survive a crash (it is recomputed), so no fsync: but the
        // rename must never expose a partly written file, which rename-after-write ensures.
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Compression;

    #[test]
    fn default_dir_follows_xdg() {
        assert_eq!(
            default_dir(Some("/x/cache".into()), Some("/home/u".into())),
            Some(PathBuf::from("/x/cache/pinfold"))
        );
        assert_eq!(
            default_dir(Some("relative".into()), Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.cache/pinfold"))
        );
        assert_eq!(default_dir(None, None), None);
    }

    #[test]
    fn store_then_load_and_reject_foreign_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::at(dir.path());
        let digest = Digest::sha256(b"layer");
        let index = LayerIndex {
            format: INDEX_FORMAT,
            digest: digest.clone(),
            compression: Compression::Gzip,
            compressed_size: 5,
            uncompressed_size: 1024,
            entries: Vec::new(),
            whiteouts: vec!["etc/motd".into()],
            opaque_dirs: Vec::new(),
            package_dbs: Vec::new(),
            skipped: Vec::new(),
        };
        assert_eq!(cache.load(&digest), None);
        cache.store(&index);
        let path = cache.entry_path(&digest).unwrap();
        assert!(path.ends_with(format!("layers/sha256/{}.json", digest.encoded())));
        assert_eq!(cache.load(&digest), Some(index.clone()));
        // An entry that names another digest (copied by hand, say) is not trusted.
        let other = Digest::sha256(b"other");
        std::fs::copy(&path, cache.entry_path(&other).unwrap()).unwrap();
        assert_eq!(cache.load(&other), None);
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(cache.load(&digest), None);
        // No temporary files left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(names.iter().all(|n| !n.to_string_lossy().ends_with(".tmp")));
    }
}
