//! Where the files of a local image live: an OCI image-layout directory, or a tar archive
//! (`docker save` output) read in place.
//!
//! An archive is scanned once for its member names and data offsets; a member is then read by
//! seeking to its offset, so a multi-GiB archive is never extracted nor held in memory.
//! Member names are only looked up in that table, never used as filesystem paths.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ImageError;
use crate::layer::path;

/// Most members indexed in one archive (`docker save` of many images has a few thousand).
const MAX_MEMBERS: usize = 1_000_000;
/// Most symlinks followed to find one archive member.
const MAX_MEMBER_HOPS: usize = 8;

/// A blob stream.
pub type BoxRead = Box<dyn Read + Send>;

#[derive(Debug)]
enum Member {
    File { offset: u64, size: u64 },
    Link(String),
}

/// A tar archive's member table.
#[derive(Debug)]
pub struct ArchiveIndex {
    path: PathBuf,
    members: HashMap<String, Member>,
}

impl ArchiveIndex {
    /// Scans the archive at `path`.
    ///
    /// # Errors
    /// [`ImageError::NotFound`], [`ImageError::Io`], [`ImageError::CompressedArchive`] (gzip
    /// or zstd: members could not be reached by seeking), [`ImageError::MalformedArchive`].
    pub fn scan(path: &Path) -> Result<ArchiveIndex, ImageError> {
        let io = |source| ImageError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ImageError::NotFound(path.to_path_buf()),
            _ => io(e),
        })?;
        let mut magic = [0u8; 4];
        let n = file.read(&mut magic).map_err(io)?;
        if n >= 2 && (magic[..2] == [0x1f, 0x8b] || magic == [0x28, 0xb5, 0x2f, 0xfd]) {
            return Err(ImageError::CompressedArchive(path.to_path_buf()));
        }
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let malformed = |e: std::io::Error| ImageError::MalformedArchive {
            path: path.to_path_buf(),
            reason: crate::layer::error_chain(&e),
        };
        let mut archive = tar::Archive::new(file);
        let mut members = HashMap::new();
        for entry in archive.entries_with_seek().map_err(malformed)? {
            let entry = entry.map_err(malformed)?;
            if members.len() >= MAX_MEMBERS {
                return Err(ImageError::MalformedArchive {
                    path: path.to_path_buf(),
                    reason: format!("more than {MAX_MEMBERS} members"),
                });
            }
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            // Unsafe names cannot be what a manifest refers to; they are simply not indexed.
            let Ok(name) = path::normalize(&raw) else {
                continue;
            };
            let link = || {
                entry
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
            };
            let member = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => Member::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                },
                tar::EntryType::Symlink => match link() {
                    // Relative to the link's directory, like `../<id>/layer.tar` in old saves.
                    Some(t) => match path::normalize_within(path::parent(&name), &t) {
                        Some(target) => Member::Link(target),
                        None => continue,
                    },
                    None => continue,
                },
                tar::EntryType::Link => match link().and_then(|t| path::normalize(&t).ok()) {
                    Some(target) => Member::Link(target),
                    None => continue,
                },
                _ => continue,
            };
            members.insert(name, member);
        }
        Ok(ArchiveIndex {
            path: path.to_path_buf(),
            members,
        })
    }

    fn find(&self, name: &str) -> Option<(u64, u64)> {
        let mut name = name.to_owned();
        for _ in 0..=MAX_MEMBER_HOPS {
            match self.members.get(&name)? {
                Member::File { offset, size } => return Some((*offset, *size)),
                Member::Link(target) => name = target.clone(),
            }
        }
        None
    }
}

/// Where an image's files are.
#[derive(Debug, Clone)]
pub enum Store {
    /// A directory (OCI image layout).
    Dir(PathBuf),
    /// A tar archive.
    Archive(Arc<ArchiveIndex>),
}

impl Store {
    /// A description for messages: the directory or archive path.
    pub fn display(&self) -> String {
        match self {
            Store::Dir(d) => d.display().to_string(),
            Store::Archive(a) => a.path.display().to_string(),
        }
    }

    /// Whether `name` exists.
    pub fn exists(&self, name: &str) -> bool {
        match self {
            Store::Dir(d) => d.join(name).is_file(),
            Store::Archive(a) => a.find(name).is_some(),
        }
    }

    /// Opens `name` for streaming, with its size.
    ///
    /// # Errors
    /// [`ImageError::MissingFile`] when it does not exist, [`ImageError::Io`] otherwise.
    pub fn open(&self, name: &str) -> Result<(BoxRead, u64), ImageError> {
        let missing = || ImageError::MissingFile {
            store: self.display(),
            name: name.to_owned(),
        };
        match self {
            Store::Dir(d) => {
                let path = d.join(name);
                let file = File::open(&path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => missing(),
                    _ => ImageError::Io {
                        path: path.clone(),
                        source: e,
                    },
                })?;
                let size = file
                    .metadata()
                    .map_err(|source| ImageError::Io {
                        path: path.clone(),
                        source,
                    })?
                    .len();
                Ok((Box::new(file), size))
            }
            Store::Archive(a) => {
                let (offset, size) = a.find(name).ok_or_else(missing)?;
                let io = |source| ImageError::Io {
                    path: a.path.clone(),
                    source,
                };
                let mut file = File::open(&a.path).map_err(io)?;
                file.seek(SeekFrom::Start(offset)).map_err(io)?;
                Ok((Box::new(file.take(size)), size))
            }
        }
    }

    /// Reads all of `name`, refusing more than `limit` bytes.
    ///
    /// # Errors
    /// As [`open`](Self::open), and [`ImageError::TooLarge`].
    pub fn read_small(&self, name: &str, limit: u64) -> Result<Vec<u8>, ImageError> {
        let (reader, size) = self.open(name)?;
        if size > limit {
            return Err(ImageError::TooLarge {
                what: name.to_owned(),
                size,
                limit,
            });
        }
        let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        reader
            .take(limit)
            .read_to_end(&mut out)
            .map_err(|source| ImageError::Io {
                path: PathBuf::from(self.display()).join(name),
                source,
            })?;
        Ok(out)
    }
}
