//! Reading binary packages (`.deb`, deb(5)): an `ar` archive of `debian-binary` (format
//! `2.x`), `control.tar[.gz|.xz|.zst]` and `data.tar[.gz|.xz|.zst|.bz2|.lzma]`, in that order.
//!
//! Only the control member is decompressed: indices need the control file, not the payload.
//! The data member is read through (not decompressed) so that a `.deb` cut off midway is
//! refused rather than published. Every size is bounded, so a hostile archive (a compression
//! bomb in control.tar, a huge control file) costs at most a few MiB.

use std::io::{self, Cursor, Read};

use crate::control::{BinaryControl, ControlError, MAX_CONTROL_BYTES};

/// Largest decompressed control.tar accepted. Real ones hold a control file, md5sums and
/// maintainer scripts: tens of KiB for most packages, a few MiB for huge md5sums.
const MAX_CONTROL_TAR_BYTES: u64 = 64 * 1024 * 1024;

/// Entries of control.tar examined before giving up on finding `control`.
const MAX_CONTROL_TAR_ENTRIES: usize = 10_000;

/// Why a file is not a usable `.deb`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DebError {
    /// The file does not start with the `ar` magic `!<arch>\n`.
    #[error("not a Debian package: the file is not an ar archive")]
    NotAr,
    /// The ar archive ends early or its headers are malformed.
    #[error("not a Debian package: malformed or truncated ar archive: {0}")]
    Ar(#[source] io::Error),
    /// The first member is not `debian-binary`.
    #[error("not a Debian package: the first member is {0:?}, not debian-binary")]
    FirstMemberNotDebianBinary(String),
    /// `debian-binary` does not announce format 2.x.
    #[error("unsupported .deb format version {0:?} (expected 2.x)")]
    FormatVersion(String),
    /// A required member is absent.
    #[error("not a Debian package: member {0} is missing")]
    MissingMember(&'static str),
    /// A member appears where deb(5) does not allow it.
    #[error("unexpected member {0:?} in .deb")]
    UnexpectedMember(String),
    /// A control.tar or data.tar uses a compression this reader does not handle.
    #[error("unsupported compression in member {0:?}")]
    UnsupportedCompression(String),
    /// control.tar cannot be decompressed or read as tar.
    #[error("control.tar is corrupt: {0}")]
    ControlTar(#[source] io::Error),
    /// control.tar decompresses to more than allowed (64 MiB).
    #[error("control.tar is larger than {MAX_CONTROL_TAR_BYTES} bytes decompressed")]
    ControlTarTooLarge,
    /// control.tar holds no `control` file.
    #[error("control.tar holds no control file")]
    NoControlFile,
    /// The control file is larger than [`MAX_CONTROL_BYTES`].
    #[error("the control file is larger than {MAX_CONTROL_BYTES} bytes")]
    ControlFileTooLarge,
    /// The control file is refused.
    #[error("control file: {0}")]
    Control(#[from] ControlError),
}

/// How a member (control.tar or data.tar) is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (`.gz`).
    Gzip,
    /// xz (`.xz`).
    Xz,
    /// Zstandard (`.zst`), as Ubuntu builds them.
    Zstd,
    /// bzip2 (`.bz2`), data.tar only.
    Bzip2,
    /// lzma (`.lzma`), data.tar only.
    Lzma,
}

impl Compression {
    /// The compression of a member named `<stem>.tar[.ext]`, or `None` if the name is not that.
    fn of_member(name: &str, stem: &str) -> Option<Compression> {
        let rest = name.strip_prefix(stem)?.strip_prefix(".tar")?;
        Some(match rest {
            "" => Compression::None,
            ".gz" => Compression::Gzip,
            ".xz" => Compression::Xz,
            ".zst" => Compression::Zstd,
            ".bz2" => Compression::Bzip2,
            ".lzma" => Compression::Lzma,
            _ => return None,
        })
    }
}

/// What a `.deb` says about itself.
#[derive(Debug, Clone)]
pub struct DebInfo {
    /// The checked control file.
    pub control: BinaryControl,
    /// Compression of control.tar.
    pub control_compression: Compression,
    /// Compression of data.tar.
    pub data_compression: Compression,
    /// Size of the data.tar member as stored (compressed).
    pub data_size: u64,
}

/// The ar member name without GNU ar's trailing `/` and padding.
fn member_name(identifier: &[u8]) -> String {
    let name = String::from_utf8_lossy(identifier);
    name.trim_end().trim_end_matches('/').to_owned()
}

/// Reads a `.deb` from `reader` (to its end) and returns its checked control file and layout.
///
/// # Errors
/// [`DebError`] naming what is wrong: not an ar archive, wrong or missing members, corrupt or
/// oversized control.tar, no or refused control file ([`DebError::Control`] carries the line).
pub fn read_deb(reader: impl Read) -> Result<DebInfo, DebError> {
    let mut reader = reader;
    let mut magic = [0u8; 8];
    reader.read_exact(&mut magic).map_err(|_| DebError::NotAr)?;
    if &magic != b"!<arch>\n" {
        return Err(DebError::NotAr);
    }
    let mut archive = ar::Archive::new(Cursor::new(magic).chain(reader));

    // 1. debian-binary
    let mut entry = archive
        .next_entry()
        .ok_or(DebError::MissingMember("debian-binary"))?
        .map_err(DebError::Ar)?;
    let name = member_name(entry.header().identifier());
    if name != "debian-binary" {
        return Err(DebError::FirstMemberNotDebianBinary(name));
    }
    let mut version = String::new();
    entry
        .by_ref()
        .take(64)
        .read_to_string(&mut version)
        .map_err(DebError::Ar)?;
    let version = version.trim_end().to_owned();
    if !version.starts_with("2.") {
        return Err(DebError::FormatVersion(version));
    }
    drop(entry);

    // 2. control.tar, then 3. data.tar; deb(5) allows members starting with '_' in between.
    let mut control = None;
    let mut data = None;
    while let Some(entry) = archive.next_entry() {
        let mut entry = entry.map_err(DebError::Ar)?;
        let name = member_name(entry.header().identifier());
        if name.starts_with('_') && data.is_none() {
            io::copy(&mut entry, &mut io::sink()).map_err(DebError::Ar)?;
            continue;
        }
        if control.is_none() {
            if !name.starts_with("control.tar") {
                return Err(if name.starts_with("data.tar") {
                    DebError::MissingMember("control.tar")
                } else {
                    DebError::UnexpectedMember(name)
                });
            }
            let compression = Compression::of_member(&name, "control")
                .filter(|c| !matches!(c, Compression::Bzip2 | Compression::Lzma))
                .ok_or_else(|| DebError::UnsupportedCompression(name.clone()))?;
            let parsed = read_control_tar(&mut entry, compression)?;
            // Read the rest of the member so a truncated archive is noticed below.
            io::copy(&mut entry, &mut io::sink()).map_err(DebError::Ar)?;
            control = Some((parsed, compression));
        } else if data.is_none() {
            if !name.starts_with("data.tar") {
                return Err(DebError::UnexpectedMember(name));
            }
            let compression = Compression::of_member(&name, "data")
                .ok_or_else(|| DebError::UnsupportedCompression(name.clone()))?;
            let size = io::copy(&mut entry, &mut io::sink()).map_err(DebError::Ar)?;
            if size != entry.header().size() {
                return Err(DebError::Ar(io::ErrorKind::UnexpectedEof.into()));
            }
            data = Some((compression, size));
        } else {
            return Err(DebError::UnexpectedMember(name));
        }
    }
    let (control, control_compression) = control.ok_or(DebError::MissingMember("control.tar"))?;
    let (data_compression, data_size) = data.ok_or(DebError::MissingMember("data.tar"))?;
    Ok(DebInfo {
        control,
        control_compression,
        data_compression,
        data_size,
    })
}

/// Decompresses control.tar (bounded) and parses its `control` file.
fn read_control_tar(
    member: &mut impl Read,
    compression: Compression,
) -> Result<BinaryControl, DebError> {
    let decoder: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(member),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(member)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new(member)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(member).map_err(DebError::ControlTar)?)
        }
        Compression::Bzip2 | Compression::Lzma => {
            return Err(DebError::UnsupportedCompression("control.tar".into()))
        }
    };
    let mut limited = Limit {
        inner: decoder,
        left: MAX_CONTROL_TAR_BYTES,
    };
    let mut tar = tar::Archive::new(&mut limited);
    let entries = tar.entries().map_err(DebError::ControlTar)?;
    for entry in entries.take(MAX_CONTROL_TAR_ENTRIES) {
        let entry = entry.map_err(map_limit)?;
        let path = entry.path().map_err(DebError::ControlTar)?;
        let is_control = path
            .to_str()
            .map(|p| p.trim_start_matches("./") == "control")
            .unwrap_or(false);
        if !is_control {
            continue;
        }
        if entry.size() > MAX_CONTROL_BYTES as u64 {
            return Err(DebError::ControlFileTooLarge);
        }
        let mut bytes = Vec::new();
        entry
            .take(MAX_CONTROL_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(map_limit)?;
        let text = String::from_utf8(bytes).map_err(|_| ControlError::NotUtf8)?;
        return Ok(BinaryControl::parse(&text)?);
    }
    Err(DebError::NoControlFile)
}

/// Marker error for [`Limit`].
#[derive(Debug)]
struct LimitExceeded;

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("decompressed size limit exceeded")
    }
}

impl std::error::Error for LimitExceeded {}

/// An io error from [`Limit`] becomes [`DebError::ControlTarTooLarge`], others corruption.
fn map_limit(e: io::Error) -> DebError {
    if e.get_ref().is_some_and(|inner| inner.is::<LimitExceeded>()) {
        DebError::ControlTarTooLarge
    } else {
        DebError::ControlTar(e)
    }
}

/// A reader that fails (rather than truncating silently) once more than `left` bytes were read.
struct Limit<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Limit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self
            .left
            .checked_sub(n as u64)
            .ok_or_else(|| io::Error::other(LimitExceeded))?;
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) const CONTROL: &str = "Package: hello\nVersion: 1.0-1\nArchitecture: amd64\n\
        Maintainer: A <a@example.com>\nDescription: says hello\n";

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, *bytes).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn compress(bytes: &[u8], compression: Compression) -> Vec<u8> {
        match compression {
            Compression::None => bytes.to_vec(),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(bytes).unwrap();
                e.finish().unwrap()
            }
            Compression::Xz => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
                e.write_all(bytes).unwrap();
                e.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(bytes, 1).unwrap(),
            _ => unreachable!(),
        }
    }

    /// A .deb built in memory from members.
    pub(crate) fn deb_of(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut builder = ar::Builder::new(Vec::new());
        for (name, bytes) in members {
            let header = ar::Header::new(name.as_bytes().to_vec(), bytes.len() as u64);
            builder.append(&header, bytes.as_slice()).unwrap();
        }
        builder.into_inner().unwrap()
    }

    pub(crate) fn sample_deb(control: &str, compression: Compression) -> Vec<u8> {
        let ext = match compression {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Xz => ".xz",
            Compression::Zstd => ".zst",
            _ => unreachable!(),
        };
        let control_tar = compress(
            &tar_of(&[("./control", control.as_bytes()), ("./md5sums", b"")]),
            compression,
        );
        let data_tar = compress(&tar_of(&[("./usr/bin/hello", b"#!/bin/sh\n")]), compression);
        deb_of(&[
            ("debian-binary", b"2.0\n".to_vec()),
            (&format!("control.tar{ext}"), control_tar),
            (&format!("data.tar{ext}"), data_tar),
        ])
    }

    #[test]
    fn reads_every_control_compression() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Xz,
            Compression::Zstd,
        ] {
            let info = read_deb(sample_deb(CONTROL, c).as_slice()).unwrap();
            assert_eq!(info.control.package.as_str(), "hello");
            assert_eq!(info.control_compression, c);
            assert_eq!(info.data_compression, c);
            assert!(info.data_size > 0);
        }
    }

    #[test]
    fn refuses_what_is_not_a_deb() {
        assert!(matches!(read_deb(&b"hello"[..]), Err(DebError::NotAr)));
        assert!(matches!(
            read_deb(&b"PK\x03\x04 not an ar archive"[..]),
            Err(DebError::NotAr)
        ));
        let wrong_first = deb_of(&[("control.tar", vec![])]);
        assert!(matches!(
            read_deb(wrong_first.as_slice()),
            Err(DebError::FirstMemberNotDebianBinary(n)) if n == "control.tar"
        ));
        let v3 = deb_of(&[("debian-binary", b"3.0\n".to_vec())]);
        assert!(matches!(
            read_deb(v3.as_slice()),
            Err(DebError::FormatVersion(v)) if v == "3.0"
        ));
        let no_data = deb_of(&[
            ("debian-binary", b"2.0\n".to_vec()),
            ("control.tar", tar_of(&[("./control", CONTROL.as_bytes())])),
        ]);
        assert!(matches!(
            read_deb(no_data.as_slice()),
            Err(DebError::MissingMember("data.tar"))
        ));
        let no_control_file = deb_of(&[
            ("debian-binary", b"2.0\n".to_vec()),
            ("control.tar", tar_of(&[("./md5sums", b"")])),
            ("data.tar", tar_of(&[])),
        ]);
        assert!(matches!(
            read_deb(no_control_file.as_slice()),
            Err(DebError::NoControlFile)
        ));
        let bad_compression = deb_of(&[
            ("debian-binary", b"2.0\n".to_vec()),
            ("control.tar.rar", vec![1, 2, 3]),
        ]);
        assert!(matches!(
            read_deb(bad_compression.as_slice()),
            Err(DebError::UnsupportedCompression(_))
        ));
        let corrupt = deb_of(&[
            ("debian-binary", b"2.0\n".to_vec()),
            ("control.tar.gz", b"not gzip at all".to_vec()),
            ("data.tar", tar_of(&[])),
        ]);
        assert!(matches!(
            read_deb(corrupt.as_slice()),
            Err(DebError::ControlTar(_))
        ));
    }

    #[test]
    fn refuses_a_truncated_deb() {
        let deb = sample_deb(CONTROL, Compression::Gzip);
        for cut in [deb.len() - 1, deb.len() - 20, deb.len() / 2, 70] {
            assert!(
                read_deb(&deb[..cut]).is_err(),
                "cut at {cut} of {}",
                deb.len()
            );
        }
    }

    #[test]
    fn control_errors_carry_the_line() {
        let missing = "Package: hello\nVersion: 1.0\nArchitecture: amd64\nDescription: x\n";
        let err = read_deb(sample_deb(missing, Compression::Xz).as_slice()).unwrap_err();
        assert!(
            matches!(
                err,
                DebError::Control(ControlError::MissingField {
                    field: "Maintainer",
                    line: 1
                })
            ),
            "{err}"
        );
    }

    #[test]
    fn compression_bomb_in_control_tar_is_bounded() {
        // 80 MiB of zeros inside a tar entry compress to a few KiB of zstd.
        let big = vec![0u8; 80 * 1024 * 1024];
        let tar = tar_of(&[("./padding", &big), ("./control", CONTROL.as_bytes())]);
        let deb = deb_of(&[
            ("debian-binary", b"2.0\n".to_vec()),
            (
                "control.tar.zst",
                zstd::encode_all(tar.as_slice(), 3).unwrap(),
            ),
            ("data.tar", tar_of(&[])),
        ]);
        assert!(deb.len() < 1024 * 1024);
        assert!(matches!(
            read_deb(deb.as_slice()),
            Err(DebError::ControlTarTooLarge)
        ));
    }

    /// A package built by the real dpkg-deb reads back with the same fields.
    #[test]
    fn reads_debs_built_by_dpkg_deb() {
        if std::process::Command::new("dpkg-deb")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "dpkg-deb is required in CI"
            );
            eprintln!("skipping: dpkg-deb not installed");
            return;
        }
        for compression in ["gzip", "xz", "zstd"] {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("pkg");
            std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
            std::fs::create_dir_all(root.join("usr/share/doc/hello")).unwrap();
            std::fs::write(root.join("usr/share/doc/hello/README"), "hi\n").unwrap();
            std::fs::write(root.join("DEBIAN/control"), CONTROL).unwrap();
            let out = dir.path().join("hello.deb");
            let status = std::process::Command::new("dpkg-deb")
                .args(["--root-owner-group", "-Z", compression, "--build"])
                .arg(&root)
                .arg(&out)
                .output()
                .unwrap();
            assert!(status.status.success(), "{status:?}");
            let info = read_deb(std::fs::File::open(&out).unwrap()).unwrap();
            assert_eq!(info.control.version.as_str(), "1.0-1");
            assert_eq!(info.control.paragraph.to_string(), CONTROL);
        }
    }
}
