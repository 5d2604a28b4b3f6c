//! Reading one layer: the blob is streamed once through digest verification, decompression
//! (gzip, zstd or none, found from the first bytes rather than trusted from the media type) and
//! the tar reader, and what `pinfold diff` needs is kept: a [`LayerIndex`] of every entry
//! (path, type, size, mode, owner, SHA-256 of the content, link target), its whiteouts, and the
//! package databases it contains, already parsed.
//!
//! Memory does not grow with the layer: file contents are hashed in 64 KiB pieces and dropped;
//! only package database files are held, and only up to their size limit
//! ([`crate::packages::DbKind::size_limit`]). Nothing is ever written to disk here; the
//! [`cache`] stores finished indexes.
//!
//! Every failure is a [`LayerError`] naming the layer digest and, where there is one, the
//! entry path: corrupt compression, a malformed or truncated tar, unsafe paths ([`path`]),
//! oversized or malformed package databases, and a blob whose digest is not the one asked for.

pub mod cache;
pub mod fs;
pub mod path;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use pinfold_oci::{Digest, Digester};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::packages::{self, DbKind, Package, PackageError};
use path::UnsafePath;

/// Version of the [`LayerIndex`] format; a cached index of another version is recomputed.
/// 2: hard links carry their target's size and hash.
pub const INDEX_FORMAT: u32 = 2;

/// Most entries accepted in one layer (a full Debian with desktop has about 400k files).
pub const MAX_ENTRIES: usize = 5_000_000;

/// How a layer blob is compressed, as found from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

impl Compression {
    /// `none`, `gzip` or `zstd`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// The type of a filesystem entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Hard link to another path of the same layer.
    Hardlink,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Named pipe.
    Fifo,
}

impl FileKind {
    /// `file`, `dir`, `symlink`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Dir => "dir",
            FileKind::Symlink => "symlink",
            FileKind::Hardlink => "hardlink",
            FileKind::CharDevice => "char device",
            FileKind::BlockDevice => "block device",
            FileKind::Fifo => "fifo",
        }
    }
}

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Normalised path ([`path::normalize`]).
    pub path: String,
    /// Entry type.
    pub kind: FileKind,
    /// Content size in bytes (0 for everything but regular files and hard links to them).
    pub size: u64,
    /// Permission bits, including setuid/setgid/sticky (`0o7777` mask).
    pub mode: u32,
    /// Owner user id.
    pub uid: u64,
    /// Owner group id.
    pub gid: u64,
    /// Lowercase hex SHA-256 of the content (regular files, and hard links to a file of the
    /// same layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Symlink target as written, or a hard link's normalised target path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
}

/// A package database found in a layer, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageDb {
    /// Where it is.
    pub path: String,
    /// What it is.
    pub kind: DbKind,
    /// Its packages, in database order.
    pub packages: Vec<Package>,
}

/// A language metadata file that was not read, and why (it is not an error: see
/// [`crate::packages`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedFile {
    /// Where it is.
    pub path: String,
    /// Why it was skipped.
    pub reason: String,
}

/// What one layer contains, as far as `pinfold diff` cares. Serialised as the cache entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerIndex {
    /// [`INDEX_FORMAT`] when written.
    pub format: u32,
    /// The blob's digest (verified while reading).
    pub digest: Digest,
    /// How the blob was compressed.
    pub compression: Compression,
    /// Bytes of the blob.
    pub compressed_size: u64,
    /// Bytes of the tar stream inside.
    pub uncompressed_size: u64,
    /// Every entry except whiteouts, in tar order.
    pub entries: Vec<FileEntry>,
    /// Paths removed from lower layers by `.wh.<name>` entries.
    pub whiteouts: Vec<String>,
    /// Directories made opaque by `.wh..wh..opq` (lower layers' contents hidden).
    pub opaque_dirs: Vec<String>,
    /// Package databases in this layer, parsed.
    pub package_dbs: Vec<PackageDb>,
    /// Language metadata files that were too large or malformed.
    pub skipped: Vec<SkippedFile>,
}

/// Why a layer could not be read. Every variant names the layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// Reading the blob itself failed (I/O error, network error, or the registry client's own
    /// digest or size check).
    #[error("layer {layer}: reading the blob failed: {message}")]
    Read {
        /// The layer.
        layer: Digest,
        /// The cause, with its chain.
        message: String,
    },
    /// The compressed stream is corrupt or truncated.
    #[error("layer {layer}: corrupt {compression} stream{}: {message}", at_entry(.entry))]
    Decompress {
        /// The layer.
        layer: Digest,
        /// `gzip` or `zstd`.
        compression: &'static str,
        /// The last entry read before the failure, if any.
        entry: Option<String>,
        /// The decoder's message.
        message: String,
    },
    /// The tar stream is malformed or truncated.
    #[error("layer {layer}: malformed tar{}: {message}", at_entry(.entry))]
    Tar {
        /// The layer.
        layer: Digest,
        /// The entry being read (or the last one read) when it failed.
        entry: Option<String>,
        /// What the tar reader said.
        message: String,
    },
    /// An entry path points outside the layer root.
    #[error("layer {layer}: entry {path:?}: {reason} is not allowed in a layer")]
    UnsafePath {
        /// The layer.
        layer: Digest,
        /// The path as written in the tar.
        path: String,
        /// What is wrong with it.
        reason: UnsafePath,
    },
    /// A hard link points outside the layer root.
    #[error("layer {layer}: hard link {path:?} points outside the layer ({target:?})")]
    HardlinkOutside {
        /// The layer.
        layer: Digest,
        /// The link's path.
        path: String,
        /// Its target as written.
        target: String,
    },
    /// A package database is larger than its limit.
    #[error(
        "layer {layer}: package database {path} is {size} bytes, more than the {limit} accepted"
    )]
    PackageDbTooLarge {
        /// The layer.
        layer: Digest,
        /// The database's path.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// An OS package database is malformed.
    #[error("layer {layer}: package database {path}: {source}")]
    PackageDb {
        /// The layer.
        layer: Digest,
        /// The database's path.
        path: String,
        /// What is wrong.
        source: PackageError,
    },
    /// The layer has more than [`MAX_ENTRIES`] entries.
    #[error("layer {layer}: more than {limit} entries")]
    TooManyEntries {
        /// The layer.
        layer: Digest,
        /// The limit.
        limit: usize,
    },
    /// The blob's content does not hash to its digest.
    #[error("layer {expected}: content hashes to {actual}")]
    DigestMismatch {
        /// The digest the layer is known by.
        expected: Digest,
        /// The digest of what was read.
        actual: Digest,
    },
}

fn at_entry(entry: &Option<String>) -> String {
    match entry {
        Some(e) => format!(" at entry {e:?}"),
        None => String::new(),
    }
}

impl LayerError {
    /// The digest of the layer the error is about.
    pub fn layer(&self) -> &Digest {
        match self {
            LayerError::Read { layer, .. }
            | LayerError::Decompress { layer, .. }
            | LayerError::Tar { layer, .. }
            | LayerError::UnsafePath { layer, .. }
            | LayerError::HardlinkOutside { layer, .. }
            | LayerError::PackageDbTooLarge { layer, .. }
            | LayerError::PackageDb { layer, .. }
            | LayerError::TooManyEntries { layer, .. } => layer,
            LayerError::DigestMismatch { expected, .. } => expected,
        }
    }
}

/// The error message of `e` followed by its sources, `: `-separated.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    // Error chains are short; the bound guards against a cycle.
    for _ in 0..16 {
        let Some(s) = source else { break };
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Which stage of the pipeline failed first; set by the reader wrappers below so an error that
/// comes out of the tar reader can be told apart from one that came from under it.
#[derive(Default)]
struct Failure {
    stage: Option<(Stage, String)>,
}

#[derive(Clone, Copy)]
enum Stage {
    Read,
    Decompress,
}

type FailureCell = Rc<RefCell<Failure>>;

fn record(cell: &FailureCell, stage: Stage, e: &io::Error) {
    let mut f = cell.borrow_mut();
    if f.stage.is_none() {
        f.stage = Some((stage, error_chain(e)));
    }
}

/// The raw blob: hashes and counts every byte and reports progress.
struct Source<'p, R> {
    inner: R,
    digester: Digester,
    read: u64,
    failure: FailureCell,
    progress: &'p mut dyn FnMut(u64),
}

impl<R: Read> Read for Source<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.digester.update(&buf[..n]);
                self.read += n as u64;
                (self.progress)(n as u64);
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    record(&self.failure, Stage::Read, &e);
                }
                Err(e)
            }
        }
    }
}

/// The decompressed tar stream.
enum Decoder<R: BufRead> {
    // Boxed: the inflate state is large, the other variants are small.
    Gzip(Box<flate2::bufread::MultiGzDecoder<R>>),
    Zstd(zstd::stream::read::Decoder<'static, R>),
    Plain(R),
}

impl<R: BufRead> Decoder<R> {
    fn into_inner(self) -> R {
        match self {
            Decoder::Gzip(d) => (*d).into_inner(),
            Decoder::Zstd(d) => d.finish(),
            Decoder::Plain(r) => r,
        }
    }
}

/// Counts the tar bytes and records decoder failures.
struct Decoded<R: BufRead> {
    decoder: Decoder<R>,
    read: u64,
    failure: FailureCell,
}

impl<R: BufRead> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = match &mut self.decoder {
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
            Decoder::Plain(r) => r.read(buf),
        };
        match result {
            Ok(n) => {
                self.read += n as u64;
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    record(&self.failure, Stage::Decompress, &e);
                }
                Err(e)
            }
        }
    }
}

/// Reads a layer blob known by `digest` from `reader` and indexes it. `progress` is called
/// with the number of blob bytes read each time more arrive.
///
/// The whole blob is read, also past the end of the tar archive, so that its digest can be
/// checked; no index is returned for content that does not match `digest`.
///
/// # Errors
/// [`LayerError`]; see its variants.
pub fn index_layer<R: Read>(
    reader: R,
    digest: &Digest,
    progress: &mut dyn FnMut(u64),
) -> Result<LayerIndex, LayerError> {
    let failure = FailureCell::default();
    let source = Source {
        inner: reader,
        digester: Digester::new(digest.algorithm()),
        read: 0,
        failure: failure.clone(),
        progress,
    };
    // 256 KiB: large reads keep the decompressor and the hasher in their fast loops.
    let mut buffered = BufReader::with_capacity(256 * 1024, source);
    let magic = match buffered.fill_buf() {
        Ok(b) => b.get(..4).map(|m| [m[0], m[1], m[2], m[3]]),
        Err(e) => {
            return Err(LayerError::Read {
                layer: digest.clone(),
                message: error_chain(&e),
            })
        }
    };
    let (compression, decoder) = match magic {
        Some([0x1f, 0x8b, _, _]) => (
            Compression::Gzip,
            Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(buffered))),
        ),
        Some([0x28, 0xb5, 0x2f, 0xfd]) => {
            let d = zstd::stream::read::Decoder::with_buffer(buffered).map_err(|e| {
                LayerError::Decompress {
                    layer: digest.clone(),
                    compression: "zstd",
                    entry: None,
                    message: error_chain(&e),
                }
            })?;
            (Compression::Zstd, Decoder::Zstd(d))
        }
        _ => (Compression::None, Decoder::Plain(buffered)),
    };
    let mut decoded = Decoded {
        decoder,
        read: 0,
        failure: failure.clone(),
    };
    let mut builder = Builder::new(digest);
    let walk = walk_tar(&mut decoded, &mut builder);
    // Read what follows the archive's end marker, through the decoder (its trailer checks the
    // content: gzip's CRC and length) and then below it, so the digest covers every byte.
    let mut uncompressed_size = 0;
    let drained = match walk {
        Ok(()) => match io::copy(&mut decoded, &mut io::sink()) {
            Ok(_) => {
                uncompressed_size = decoded.read;
                let mut raw = decoded.decoder.into_inner();
                match io::copy(&mut raw, &mut io::sink()) {
                    Ok(_) => Ok(raw.into_inner()),
                    Err(e) => Err(builder.io_error(e, &failure)),
                }
            }
            Err(e) => Err(builder.io_error(e, &failure)),
        },
        Err(e) => {
            // A corrupt stream is often a corrupt or wrong blob: when the rest of the blob can be
            // read, its digest tells which, and a mismatch is the better answer.
            if matches!(e, LayerError::Tar { .. } | LayerError::Decompress { .. }) {
                let mut raw = decoded.decoder.into_inner();
                if io::copy(&mut raw, &mut io::sink()).is_ok() {
                    let actual = raw.into_inner().digester.finalize();
                    if actual != *digest {
                        return Err(LayerError::DigestMismatch {
                            expected: digest.clone(),
                            actual,
                        });
                    }
                }
            }
            Err(e)
        }
    };
    let source = match drained {
        Ok(source) => source,
        Err(e) => {
            return Err(match e {
                LayerError::Decompress { message, entry, .. } => LayerError::Decompress {
                    layer: digest.clone(),
                    compression: compression.as_str(),
                    entry,
                    message,
                },
                other => other,
            })
        }
    };
    let actual = source.digester.finalize();
    if actual != *digest {
        return Err(LayerError::DigestMismatch {
            expected: digest.clone(),
            actual,
        });
    }
    Ok(LayerIndex {
        format: INDEX_FORMAT,
        digest: digest.clone(),
        compression,
        compressed_size: source.read,
        uncompressed_size,
        entries: builder.entries,
        whiteouts: builder.whiteouts,
        opaque_dirs: builder.opaque_dirs,
        package_dbs: builder.package_dbs,
        skipped: builder.skipped,
    })
}

/// What is collected while walking the tar.
struct Builder<'d> {
    digest: &'d Digest,
    entries: Vec<FileEntry>,
    whiteouts: Vec<String>,
    opaque_dirs: Vec<String>,
    package_dbs: Vec<PackageDb>,
    skipped: Vec<SkippedFile>,
    /// Last entry path seen, for error messages.
    current: Option<String>,
}

impl<'d> Builder<'d> {
    fn new(digest: &'d Digest) -> Builder<'d> {
        Builder {
            digest,
            entries: Vec::new(),
            whiteouts: Vec::new(),
            opaque_dirs: Vec::new(),
            package_dbs: Vec::new(),
            skipped: Vec::new(),
            current: None,
        }
    }

    /// Classifies an I/O error that surfaced through the tar reader by the stage that failed
    /// first (the compression label is filled in by the caller).
    fn io_error(&self, e: io::Error, failure: &FailureCell) -> LayerError {
        let layer = self.digest.clone();
        let entry = self.current.clone();
        match failure.borrow().stage.clone() {
            Some((Stage::Read, message)) => LayerError::Read { layer, message },
            Some((Stage::Decompress, message)) => LayerError::Decompress {
                layer,
                compression: "",
                entry,
                message,
            },
            None => LayerError::Tar {
                layer,
                entry,
                message: error_chain(&e),
            },
        }
    }
}

fn walk_tar<R: BufRead>(decoded: &mut Decoded<R>, b: &mut Builder<'_>) -> Result<(), LayerError> {
    let failure = decoded.failure.clone();
    let mut archive = tar::Archive::new(decoded);
    let entries = archive.entries().map_err(|e| b.io_error(e, &failure))?;
    let mut buf = vec![0u8; 64 * 1024];
    for entry in entries {
        let mut entry = entry.map_err(|e| b.io_error(e, &failure))?;
        if b.entries.len() >= MAX_ENTRIES {
            return Err(LayerError::TooManyEntries {
                layer: b.digest.clone(),
                limit: MAX_ENTRIES,
            });
        }
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        b.current = Some(raw_path.clone());
        let path = path::normalize(&raw_path).map_err(|reason| LayerError::UnsafePath {
            layer: b.digest.clone(),
            path: raw_path.clone(),
            reason,
        })?;
        let header = entry.header();
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                FileKind::File
            }
            tar::EntryType::Directory => FileKind::Dir,
            tar::EntryType::Symlink => FileKind::Symlink,
            tar::EntryType::Link => FileKind::Hardlink,
            tar::EntryType::Char => FileKind::CharDevice,
            tar::EntryType::Block => FileKind::BlockDevice,
            tar::EntryType::Fifo => FileKind::Fifo,
            // Extension headers are consumed by the tar reader; anything else (volume labels,
            // GNU dump directories) has no place in a root filesystem and is ignored.
            _ => continue,
        };
        if path.is_empty() {
            // The root directory itself (`./`).
            continue;
        }
        let name = path.rsplit('/').next().unwrap_or(&path);
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let dir = path::parent(&path);
            if hidden == ".wh..opq" {
                b.opaque_dirs.push(dir.to_owned());
            } else if !hidden.starts_with(".wh.") && !hidden.is_empty() {
                b.whiteouts.push(path::join(dir, hidden));
            }
            // Other `.wh..wh.` names are aufs bookkeeping (hard link dirs), not content.
            continue;
        }
        let mode = header.mode().unwrap_or(0) & 0o7777;
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let link_target = match kind {
            FileKind::Symlink | FileKind::Hardlink => {
                let raw = entry
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .unwrap_or_default();
                if kind == FileKind::Hardlink {
                    match path::normalize(&raw) {
                        Ok(t) if !t.is_empty() => Some(t),
                        _ => {
                            return Err(LayerError::HardlinkOutside {
                                layer: b.digest.clone(),
                                path: raw_path,
                                target: raw,
                            })
                        }
                    }
                } else {
                    Some(raw)
                }
            }
            _ => None,
        };
        let size = if kind == FileKind::File {
            entry.size()
        } else {
            0
        };
        let mut sha256 = None;
        if kind == FileKind::File {
            let db = DbKind::classify(&path);
            let mut keep = match db {
                Some(db) if size > db.size_limit() => {
                    if db.ecosystem().is_os() {
                        return Err(LayerError::PackageDbTooLarge {
                            layer: b.digest.clone(),
                            path,
                            size,
                            limit: db.size_limit(),
                        });
                    }
                    b.skipped.push(SkippedFile {
                        path: path.clone(),
                        reason: format!("{size} bytes, more than the {} read", db.size_limit()),
                    });
                    None
                }
                // Bounded by the size limit checked just above.
                Some(_) => Some(Vec::with_capacity(usize::try_from(size).unwrap_or(0))),
                None => None,
            };
            let mut hasher = sha2::Sha256::new();
            let mut seen = 0u64;
            // Bounded: each turn consumes bytes of a finite entry or ends.
            loop {
                let n = match entry.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(b.io_error(e, &failure)),
                };
                seen += n as u64;
                hasher.update(&buf[..n]);
                if let Some(k) = keep.as_mut() {
                    k.extend_from_slice(&buf[..n]);
                }
            }
            if seen != size {
                // The stream ended inside the entry's content.
                let e = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("entry content ends after {seen} of {size} bytes"),
                );
                return Err(b.io_error(e, &failure));
            }
            sha256 = Some(hex(&hasher.finalize()));
            if let (Some(db), Some(bytes)) = (db, keep) {
                match packages::parse_db(db, &path, &bytes) {
                    Ok(packages) => b.package_dbs.push(PackageDb {
                        path: path.clone(),
                        kind: db,
                        packages,
                    }),
                    Err(source) if db.ecosystem().is_os() => {
                        return Err(LayerError::PackageDb {
                            layer: b.digest.clone(),
                            path,
                            source,
                        })
                    }
                    Err(e) => b.skipped.push(SkippedFile {
                        path: path.clone(),
                        reason: e.to_string(),
                    }),
                }
            }
        }
        b.entries.push(FileEntry {
            path,
            kind,
            size,
            mode,
            uid,
            gid,
            sha256,
            link_target,
        });
    }
    fill_hardlink_content(&mut b.entries);
    Ok(())
}

/// Gives each hard link the size and content hash of the file it links to (an earlier entry
/// of the same layer, as tar requires), so a hard-linked file whose content changed shows as
/// modified. Links to paths the layer does not hold keep no hash.
fn fill_hardlink_content(entries: &mut [FileEntry]) {
    let targets: std::collections::HashSet<String> = entries
        .iter()
        .filter(|e| e.kind == FileKind::Hardlink)
        .filter_map(|e| e.link_target.clone())
        .collect();
    if targets.is_empty() {
        return;
    }
    let content: std::collections::HashMap<String, (u64, Option<String>)> = entries
        .iter()
        .filter(|e| e.kind == FileKind::File && targets.contains(&e.path))
        .map(|e| (e.path.clone(), (e.size, e.sha256.clone())))
        .collect();
    for e in entries.iter_mut().filter(|e| e.kind == FileKind::Hardlink) {
        if let Some((size, sha256)) = e.link_target.as_ref().and_then(|t| content.get(t)) {
            e.size = *size;
            e.sha256.clone_from(sha256);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The entries of `index` by path (the last one wins when a tar repeats a path).
pub fn entries_by_path(index: &LayerIndex) -> BTreeMap<&str, &FileEntry> {
    index.entries.iter().map(|e| (e.path.as_str(), e)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn index(blob: &[u8]) -> Result<LayerIndex, LayerError> {
        index_layer(blob, &Digest::sha256(blob), &mut |_| {})
    }

    #[test]
    fn gzip_zstd_and_plain_give_the_same_entries() {
        let tar = tar_of(&[("etc/hostname", b"box\n"), ("./etc/ssl/x", b"")]);
        let plain = index(&tar).unwrap();
        let gz = index(&gzip(&tar)).unwrap();
        let zst = index(&zstd::encode_all(&tar[..], 1).unwrap()).unwrap();
        assert_eq!(plain.compression, Compression::None);
        assert_eq!(gz.compression, Compression::Gzip);
        assert_eq!(zst.compression, Compression::Zstd);
        assert_eq!(plain.entries, gz.entries);
        assert_eq!(plain.entries, zst.entries);
        assert_eq!(plain.entries[0].path, "etc/hostname");
        assert_eq!(plain.entries[1].path, "etc/ssl/x");
        assert_eq!(
            plain.entries[0].sha256.as_deref(),
            Some(Digest::sha256(b"box\n").encoded())
        );
        assert_eq!(gz.uncompressed_size, tar.len() as u64);
    }

    #[test]
    fn hard_links_carry_their_target_content() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o755);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "usr/bin/perl5.36", &b"perl!"[..])
            .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Link);
        b.append_link(&mut h, "usr/bin/perl", "usr/bin/perl5.36")
            .unwrap();
        let got = index(&b.into_inner().unwrap()).unwrap();
        let link = &got.entries[1];
        assert_eq!(link.kind, FileKind::Hardlink);
        assert_eq!(link.link_target.as_deref(), Some("usr/bin/perl5.36"));
        assert_eq!(link.size, 5);
        assert_eq!(link.sha256, got.entries[0].sha256);
    }

    #[test]
    fn whiteouts_and_opaque_dirs() {
        let tar = tar_of(&[
            ("etc/.wh.motd", b""),
            ("var/cache/.wh..wh..opq", b""),
            ("usr/.wh..wh.plnk", b""),
        ]);
        let got = index(&tar).unwrap();
        assert!(got.entries.is_empty());
        assert_eq!(got.whiteouts, ["etc/motd"]);
        assert_eq!(got.opaque_dirs, ["var/cache"]);
    }

    #[test]
    fn digest_is_verified() {
        let blob = gzip(&tar_of(&[("a", b"1")]));
        let wrong = Digest::sha256(b"something else");
        match index_layer(&blob[..], &wrong, &mut |_| {}) {
            Err(LayerError::DigestMismatch { expected, actual }) => {
                assert_eq!(expected, wrong);
                assert_eq!(actual, Digest::sha256(&blob));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn corrupt_gzip_is_a_decompress_error() {
        let mut blob = gzip(&tar_of(&[("a", &[7u8; 5000])]));
        let mid = blob.len() / 2;
        blob[mid] ^= 0xff;
        blob[mid + 1] ^= 0xff;
        match index(&blob) {
            Err(LayerError::Decompress { compression, .. }) => assert_eq!(compression, "gzip"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated_tar_names_the_entry() {
        let tar = tar_of(&[("etc/a", b"x"), ("usr/big", &[1u8; 4000])]);
        let cut = &tar[..1024 + 512 + 1000];
        match index(cut) {
            Err(LayerError::Tar { entry, .. }) => assert_eq!(entry.as_deref(), Some("usr/big")),
            other => panic!("{other:?}"),
        }
    }
}
