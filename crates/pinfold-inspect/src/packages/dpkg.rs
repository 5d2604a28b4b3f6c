//! The dpkg status database: `var/lib/dpkg/status` (Debian, Ubuntu) and the distroless layout,
//! one file per package under `var/lib/dpkg/status.d/` (same format, one or more stanzas each,
//! usually without a `Status` field; skip the `*.md5sums` files beside them).
//!
//! The format is deb822 (Debian Policy §5.1): stanzas separated by blank lines (lines of only
//! spaces and tabs count as blank), `Field: value` lines with case-insensitive names, and
//! continuation lines starting with a space or tab. [`parse_status`] keeps the packages that are
//! installed and returns them in file order.
//!
//! The input comes from untrusted image layers, so parsing is bounded ([`MAX_FILE_BYTES`],
//! [`MAX_STANZA_BYTES`]) and every failure is a [`StatusError`] with a 1-based line number;
//! nothing here panics.

use std::borrow::Cow;

use pinfold_apt::{DebVersion, VersionError};

/// Path of the classic status file, relative to the root filesystem.
pub const STATUS_PATH: &str = "var/lib/dpkg/status";
/// Directory of distroless per-package status files, relative to the root filesystem.
pub const STATUS_D_DIR: &str = "var/lib/dpkg/status.d";
/// Largest status file accepted. A full Debian desktop's status file is about 5 MiB.
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;
/// Largest stanza accepted (the biggest real ones, with long `Conffiles` lists, are tens of KiB).
pub const MAX_STANZA_BYTES: usize = 1024 * 1024;

/// One installed package from a dpkg status database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledPackage {
    /// Binary package name (`Package`).
    pub name: String,
    /// Installed version (`Version`).
    pub version: DebVersion,
    /// `Architecture` (`amd64`, `all`, ...).
    pub architecture: String,
    /// Source package and, when it differs from [`Self::version`], its version
    /// (`Source: openssl (3.0.11-1)`); `None` when the field is absent (source = binary name).
    pub source: Option<(String, Option<DebVersion>)>,
    /// The `Status` field as written (`install ok installed`); `None` in status.d files.
    pub status: Option<String>,
}

/// Why a status database could not be read. Lines are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("status file is {size} bytes, more than the {limit} accepted")]
    FileTooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The stanza starting at `line` is larger than [`MAX_STANZA_BYTES`].
    #[error("line {line}: stanza is larger than {limit} bytes")]
    StanzaTooLarge {
        /// First line of the stanza.
        line: usize,
        /// The limit.
        limit: usize,
    },
    /// A line is neither blank, a `Field: value` line nor a continuation.
    #[error("line {line}: malformed line (expected `Field: value`)")]
    MalformedLine {
        /// The line.
        line: usize,
    },
    /// A continuation line (leading space or tab) starts a stanza.
    #[error("line {line}: continuation line without a field")]
    ContinuationWithoutField {
        /// The line.
        line: usize,
    },
    /// A field appears twice in one stanza (dpkg refuses this too).
    #[error("line {line}: duplicate field {field:?}")]
    DuplicateField {
        /// The line of the second occurrence.
        line: usize,
        /// The field name as written.
        field: String,
    },
    /// An installed package's stanza lacks a required field.
    #[error("line {line}: stanza has no {field} field")]
    MissingField {
        /// First line of the stanza.
        line: usize,
        /// `Package`, `Version` or `Architecture`.
        field: &'static str,
    },
    /// A `Package` or `Source` name is not a Debian package name (Policy §5.6.1).
    #[error("line {line}: invalid package name {name:?}")]
    InvalidName {
        /// The field's line.
        line: usize,
        /// The value.
        name: String,
    },
    /// A `Version` (or the version in `Source`) is not a Debian version.
    #[error("line {line}: invalid version: {source}")]
    InvalidVersion {
        /// The field's line.
        line: usize,
        /// Why.
        source: VersionError,
    },
    /// `Source` is neither `name` nor `name (version)`.
    #[error("line {line}: malformed Source field {value:?}")]
    MalformedSource {
        /// The field's line.
        line: usize,
        /// The value.
        value: String,
    },
    /// `Status` is not three words (`want flag state`).
    #[error("line {line}: malformed Status field {value:?}")]
    MalformedStatus {
        /// The field's line.
        line: usize,
        /// The value.
        value: String,
    },
}

/// One field of a stanza: lowercased name, value (continuations joined by `\n`), line.
struct Field<'a> {
    key: String,
    value: Cow<'a, str>,
    line: usize,
}

/// Parses a dpkg status file (or one status.d file) and returns its installed packages in order.
///
/// A stanza is kept when its `Status` is `install ok installed` or `hold ok installed` (a held
/// package is installed too), or when it has no `Status` field at all (status.d). Other stanzas
/// (`deinstall ok config-files`, `purge ok not-installed`, half-installed, ...) are skipped, but
/// still checked for well-formed lines. Invalid UTF-8 is replaced (it can only occur in free-text
/// fields such as `Description`, which are not kept).
///
/// # Errors
/// [`StatusError`] for an oversized file or stanza, a malformed line, or a kept stanza with a
/// missing or invalid `Package`, `Version`, `Architecture`, `Source` or `Status`.
pub fn parse_status(bytes: &[u8]) -> Result<Vec<InstalledPackage>, StatusError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(StatusError::FileTooLarge {
            size: bytes.len(),
            limit: MAX_FILE_BYTES,
        });
    }
    let text = String::from_utf8_lossy(bytes);
    let mut packages = Vec::new();
    let mut stanza: Vec<Field<'_>> = Vec::new();
    let mut stanza_start = 0;
    let mut stanza_bytes = 0;
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        let content = raw.strip_suffix('\r').unwrap_or(raw);
        if content.trim_matches([' ', '\t']).is_empty() {
            if !stanza.is_empty() {
                finish_stanza(&stanza, stanza_start, &mut packages)?;
                stanza.clear();
            }
            continue;
        }
        if stanza.is_empty() {
            stanza_start = line;
            stanza_bytes = 0;
        }
        stanza_bytes += raw.len() + 1;
        if stanza_bytes > MAX_STANZA_BYTES {
            return Err(StatusError::StanzaTooLarge {
                line: stanza_start,
                limit: MAX_STANZA_BYTES,
            });
        }
        if content.starts_with([' ', '\t']) {
            let Some(last) = stanza.last_mut() else {
                return Err(StatusError::ContinuationWithoutField { line });
            };
            let value = last.value.to_mut();
            value.push('\n');
            value.push_str(content.trim_start_matches([' ', '\t']));
            continue;
        }
        let Some((name, value)) = content.split_once(':') else {
            return Err(StatusError::MalformedLine { line });
        };
        // Policy §5.1: printable ASCII except space and colon, not starting with `#` or `-`.
        let name_ok = !name.is_empty()
            && !name.starts_with(['#', '-'])
            && name.bytes().all(|b| b.is_ascii_graphic());
        if !name_ok {
            return Err(StatusError::MalformedLine { line });
        }
        let key = name.to_ascii_lowercase();
        if stanza.iter().any(|f| f.key == key) {
            return Err(StatusError::DuplicateField {
                line,
                field: name.to_owned(),
            });
        }
        stanza.push(Field {
            key,
            value: Cow::Borrowed(value.trim_matches([' ', '\t'])),
            line,
        });
    }
    if !stanza.is_empty() {
        finish_stanza(&stanza, stanza_start, &mut packages)?;
    }
    Ok(packages)
}

fn field<'s, 'a>(stanza: &'s [Field<'a>], key: &str) -> Option<&'s Field<'a>> {
    stanza.iter().find(|f| f.key == key)
}

fn required<'s, 'a>(
    stanza: &'s [Field<'a>],
    key: &str,
    display: &'static str,
    start: usize,
) -> Result<&'s Field<'a>, StatusError> {
    field(stanza, key).ok_or(StatusError::MissingField {
        line: start,
        field: display,
    })
}

/// Policy §5.6.1: lowercase letters, digits, `+`, `-`, `.`; at least two characters, starting
/// with an alphanumeric.
fn is_package_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2
        && b.first()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.')
        })
}

fn parse_version(value: &str, line: usize) -> Result<DebVersion, StatusError> {
    value
        .parse()
        .map_err(|source| StatusError::InvalidVersion { line, source })
}

fn finish_stanza(
    stanza: &[Field<'_>],
    start: usize,
    out: &mut Vec<InstalledPackage>,
) -> Result<(), StatusError> {
    let status = match field(stanza, "status") {
        Some(f) => {
            let words: Vec<&str> = f.value.split_ascii_whitespace().collect();
            let [want, flag, state] = words.as_slice() else {
                return Err(StatusError::MalformedStatus {
                    line: f.line,
                    value: f.value.clone().into_owned(),
                });
            };
            if !(matches!(*want, "install" | "hold") && *flag == "ok" && *state == "installed") {
                return Ok(());
            }
            Some(words.join(" "))
        }
        None => None,
    };
    let package = required(stanza, "package", "Package", start)?;
    if !is_package_name(&package.value) {
        return Err(StatusError::InvalidName {
            line: package.line,
            name: package.value.clone().into_owned(),
        });
    }
    let version = required(stanza, "version", "Version", start)?;
    let version = parse_version(&version.value, version.line)?;
    let architecture = required(stanza, "architecture", "Architecture", start)?;
    if architecture.value.is_empty() || architecture.value.contains(char::is_whitespace) {
        return Err(StatusError::MalformedLine {
            line: architecture.line,
        });
    }
    let source = field(stanza, "source")
        .map(|f| parse_source(&f.value, f.line))
        .transpose()?;
    out.push(InstalledPackage {
        name: package.value.clone().into_owned(),
        version,
        architecture: architecture.value.clone().into_owned(),
        source,
        status,
    });
    Ok(())
}

/// `Source: name` or `Source: name (version)`.
fn parse_source(value: &str, line: usize) -> Result<(String, Option<DebVersion>), StatusError> {
    let malformed = || StatusError::MalformedSource {
        line,
        value: value.to_owned(),
    };
    let (name, version) = match value.split_once(' ') {
        None => (value, None),
        Some((name, rest)) => {
            let inner = rest
                .trim_start()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(malformed)?;
            (name, Some(parse_version(inner.trim(), line)?))
        }
    };
    if !is_package_name(name) {
        return Err(StatusError::InvalidName {
            line,
            name: name.to_owned(),
        });
    }
    Ok((name.to_owned(), version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> DebVersion {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// An excerpt of a Debian 12 (bookworm) `var/lib/dpkg/status`.
    const BOOKWORM: &str = "\
Package: ca-certificates
Status: install ok installed
Priority: optional
Section: misc
Installed-Size: 384
Maintainer: Julien Cristau <jcristau@debian.org>
Architecture: all
Multi-Arch: foreign
Version: 20230311
Depends: openssl (>= 1.1.1), debconf (>= 0.5) | debconf-2.0
Enhances: openssl
Conffiles:
 /etc/ca-certificates.conf newconffile
Description: Common CA certificates
 Contains the certificate authorities shipped with Mozilla's browser to allow
 SSL-based applications to check for the authenticity of SSL connections.
 .
 Please note that Debian can neither confirm nor deny whether the
 certificate authorities whose certificates are included in this package
 have in any way been audited for trustworthiness or RFC 3647 compliance.

Package: libssl3
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 6125
Maintainer: Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>
Architecture: amd64
Multi-Arch: same
Source: openssl
Version: 3.0.11-1~deb12u2
Depends: libc6 (>= 2.34)
Description: Secure Sockets Layer toolkit - shared libraries
 This package is part of the OpenSSL project's implementation of the SSL and
 TLS cryptographic protocols for secure communication over the Internet.
Homepage: https://www.openssl.org/

Package: tzdata
Status: install ok installed
Priority: required
Section: localization
Installed-Size: 3328
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: all
Multi-Arch: foreign
Version: 2024a-0+deb12u1
Replaces: libc0.1, libc0.3, libc6, libc6.1
Provides: tzdata-bookworm
Depends: debconf (>= 0.5) | debconf-2.0
Description: time zone and daylight-saving time data
 This package contains data required for the implementation of
 standard local time for many representative locations around the globe.
Homepage: https://www.iana.org/time-zones

Package: libgcc-s1
status: hold ok installed
Priority: optional
Section: libs
Architecture: amd64
Source: gcc-12 (12.2.0-14)
Version: 12.2.0-14
Description: GCC support library

Package: nano
Status: deinstall ok config-files
Priority: important
Section: editors
Installed-Size: 2688
Maintainer: Jordi Mallach <jordi@debian.org>
Architecture: amd64
Version: 7.2-1
Conffiles:
 /etc/nanorc 2c3b3e29e9b3cb4a6c9d1b3e2f4c1234
Description: small, friendly text editor inspired by Pico

Package: vim-tiny
Status: purge ok not-installed
Priority: important
Section: editors
Architecture: amd64
";

    #[test]
    fn bookworm_status_keeps_installed_packages() {
        let got = parse_status(BOOKWORM.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = got.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["ca-certificates", "libssl3", "tzdata", "libgcc-s1"]);
        let ca = &got[0];
        assert_eq!(ca.version.as_str(), "20230311");
        assert_eq!(ca.architecture, "all");
        assert_eq!(ca.source, None);
        assert_eq!(ca.status.as_deref(), Some("install ok installed"));
        let ssl = &got[1];
        assert_eq!(ssl.version.as_str(), "3.0.11-1~deb12u2");
        assert_eq!(ssl.architecture, "amd64");
        assert_eq!(ssl.source, Some(("openssl".to_owned(), None)));
        assert!(ssl.version < v("3.0.13-1~deb12u1"));
        assert!(got[2].version < v("2025b-0+deb12u1"));
        assert_eq!(
            got[3].source,
            Some(("gcc-12".to_owned(), Some(v("12.2.0-14"))))
        );
        assert_eq!(got[3].status.as_deref(), Some("hold ok installed"));
    }

    #[test]
    fn crlf_and_whitespace_only_separators() {
        let text = "Package: a1\r\nVersion: 1.0\r\nArchitecture: all\r\n \t\r\nPackage: b2\r\nVersion: 2\r\nArchitecture: all\r\n";
        let got = parse_status(text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].version.as_str(), "2");
    }

    /// A distroless `var/lib/dpkg/status.d/libssl3` file: no Status field.
    #[test]
    fn status_d_file_without_status() {
        let text = "\
Package: libssl3
Version: 3.0.11-1~deb12u2
Architecture: amd64
Maintainer: Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>
Installed-Size: 6125
Depends: libc6 (>= 2.34)
Section: libs
Priority: optional
Multi-Arch: same
Homepage: https://www.openssl.org/
Source: openssl
Description: Secure Sockets Layer toolkit - shared libraries
 This package is part of the OpenSSL project's implementation.

PACKAGE: libssl3-extra
VERSION: 1:3.0.11-1~deb12u2
ARCHITECTURE: amd64
SOURCE: openssl (3.0.11-1~deb12u2)
";
        let got = parse_status(text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].status, None);
        assert_eq!(got[0].name, "libssl3");
        assert_eq!(got[1].version.epoch(), 1);
        assert_eq!(
            got[1].source,
            Some(("openssl".to_owned(), Some(v("3.0.11-1~deb12u2"))))
        );
    }

    #[test]
    fn malformed_inputs_name_the_line() {
        let base = "Package: aa\nVersion: 1.0\nArchitecture: all\n";
        let cases: Vec<(String, StatusError)> = vec![
            (
                " leading continuation\n".to_owned(),
                StatusError::ContinuationWithoutField { line: 1 },
            ),
            (
                format!("{base}no colon here\n"),
                StatusError::MalformedLine { line: 4 },
            ),
            (
                format!("{base}: empty name\n"),
                StatusError::MalformedLine { line: 4 },
            ),
            (
                format!("{base}\n\nPackage: bb\nversion: 1\nVERSION: 2\n"),
                StatusError::DuplicateField {
                    line: 8,
                    field: "VERSION".to_owned(),
                },
            ),
            (
                format!("{base}\nPackage: bb\nArchitecture: all\n"),
                StatusError::MissingField {
                    line: 5,
                    field: "Version",
                },
            ),
            (
                "Version: 1\nArchitecture: all\n".to_owned(),
                StatusError::MissingField {
                    line: 1,
                    field: "Package",
                },
            ),
            (
                format!("{base}\nPackage: bb\nVersion: a:1\nArchitecture: all\n"),
                StatusError::InvalidVersion {
                    line: 6,
                    source: VersionError::EpochNotNumber("a:1".to_owned()),
                },
            ),
            (
                "Package: Bad_Name\nVersion: 1\nArchitecture: all\n".to_owned(),
                StatusError::InvalidName {
                    line: 1,
                    name: "Bad_Name".to_owned(),
                },
            ),
            (
                format!("{base}Source: openssl 3.0\n"),
                StatusError::MalformedSource {
                    line: 4,
                    value: "openssl 3.0".to_owned(),
                },
            ),
            (
                format!("{base}Status: install ok\n"),
                StatusError::MalformedStatus {
                    line: 4,
                    value: "install ok".to_owned(),
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_status(input.as_bytes()), Err(want), "{input:?}");
        }
    }

    #[test]
    fn size_limits() {
        let huge = vec![b'\n'; MAX_FILE_BYTES + 1];
        assert_eq!(
            parse_status(&huge),
            Err(StatusError::FileTooLarge {
                size: MAX_FILE_BYTES + 1,
                limit: MAX_FILE_BYTES
            })
        );
        let mut big = String::from("\n\nPackage: aa\nDescription: x\n");
        let filler = format!(" {}\n", "y".repeat(1000));
        while big.len() <= MAX_STANZA_BYTES + 2000 {
            big.push_str(&filler);
        }
        assert_eq!(
            parse_status(big.as_bytes()),
            Err(StatusError::StanzaTooLarge {
                line: 3,
                limit: MAX_STANZA_BYTES
            })
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_9abc_def0_u64;
        let alphabet = b"Package: Version:Status \n\t:-~1a(\r)\xff";
        for _ in 0..2000 {
            let mut input = Vec::new();
            for _ in 0..(seed % 200) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                input.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let _ = parse_status(&input);
        }
    }
}
