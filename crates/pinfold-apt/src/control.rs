//! deb822 paragraphs (Debian Policy §5.1) and the binary package control file (§5.3).
//!
//! A [`Paragraph`] keeps its fields in the order they were written and their values exactly as
//! written (continuation lines included), because a Packages stanza repeats the control file's
//! fields verbatim: re-wrapping a Description or reordering Depends would make Pinfold's
//! indices differ from what the package author built. [`BinaryControl`] is the checked view of
//! a `.deb`'s `control` file: the fields apt needs are present and well-formed, with the line
//! of the problem in every error.

use std::fmt;
use std::str::FromStr;

use crate::{DebVersion, VersionError};

/// Largest control text accepted, in bytes. Real control files are a few KiB; the bound keeps a
/// hostile `.deb` from making the server hold a huge string per upload.
pub const MAX_CONTROL_BYTES: usize = 1024 * 1024;

/// Why a deb822 text or a binary control file was refused. Lines count from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The text is not UTF-8.
    #[error("control text is not UTF-8")]
    NotUtf8,
    /// The text is longer than [`MAX_CONTROL_BYTES`].
    #[error("control text has {0} bytes, more than the {MAX_CONTROL_BYTES} allowed")]
    TooLarge(usize),
    /// The text holds no paragraph at all.
    #[error("control text is empty")]
    Empty,
    /// A line is neither `Field: value`, a continuation, a comment nor blank.
    #[error("line {line}: expected `Field: value`, found {text:?}")]
    NotAField {
        /// Line number.
        line: usize,
        /// The line as written.
        text: String,
    },
    /// A continuation line (starting with a space or tab) comes before any field.
    #[error("line {line}: continuation line before any field")]
    LeadingContinuation {
        /// Line number.
        line: usize,
    },
    /// A field name is empty or contains characters Policy §5.1 does not allow.
    #[error("line {line}: invalid field name {name:?}")]
    InvalidFieldName {
        /// Line number.
        line: usize,
        /// The name as written.
        name: String,
    },
    /// The same field appears twice in one paragraph.
    #[error("line {line}: field {name} appears twice in one paragraph")]
    DuplicateField {
        /// Line of the second occurrence.
        line: usize,
        /// The field.
        name: String,
    },
    /// A binary control file holds more than one paragraph.
    #[error("line {line}: a binary control file holds one paragraph, a second one starts here")]
    SecondParagraph {
        /// First line of the second paragraph.
        line: usize,
    },
    /// A field the binary control file must have is missing.
    #[error("required field {field} is missing from the paragraph starting at line {line}")]
    MissingField {
        /// The field.
        field: &'static str,
        /// First line of the paragraph.
        line: usize,
    },
    /// A required field is present but empty.
    #[error("line {line}: field {field} is empty")]
    EmptyField {
        /// The field.
        field: &'static str,
        /// Line of the field.
        line: usize,
    },
    /// `Package` is not a valid package name (Policy §5.6.1: `[a-z0-9][a-z0-9+.-]+`).
    #[error("line {line}: invalid package name {value:?} (lower-case letters, digits, + - . and at least two characters)")]
    InvalidPackageName {
        /// Line of the field.
        line: usize,
        /// The value.
        value: String,
    },
    /// `Version` is not a Debian version.
    #[error("line {line}: invalid version: {source}")]
    InvalidVersion {
        /// Line of the field.
        line: usize,
        /// Why.
        #[source]
        source: VersionError,
    },
    /// `Architecture` is not one architecture name (`amd64`, `all`, `arm64`, ...).
    #[error("line {line}: invalid architecture {value:?} (one name of lower-case letters, digits and -)")]
    InvalidArchitecture {
        /// Line of the field.
        line: usize,
        /// The value.
        value: String,
    },
}

/// One field of a paragraph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name as written (field names compare case-insensitively).
    pub name: String,
    /// The value: the first line without surrounding whitespace, then each continuation line
    /// as written (leading space kept), joined by `\n`.
    pub value: String,
    /// Line number of the field's first line.
    pub line: usize,
}

/// A deb822 paragraph: fields in written order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Paragraph {
    fields: Vec<Field>,
    /// Line number of the first field.
    line: usize,
}

impl Paragraph {
    /// An empty paragraph, for building stanzas field by field.
    pub fn new() -> Paragraph {
        Paragraph::default()
    }

    /// The fields in written order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Line number of the paragraph's first field (0 for a built paragraph).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The field named `name` (case-insensitive), if present.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The value of the field named `name` (case-insensitive), if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.field(name).map(|f| f.value.as_str())
    }

    /// Sets a field: replaces the value of an existing field of that name (keeping its
    /// position) or appends a new one. `value` must not contain blank lines.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .fields
            .iter_mut()
            .find(|f| f.name.eq_ignore_ascii_case(name))
        {
            Some(field) => field.value = value,
            None => self.fields.push(Field {
                name: name.to_owned(),
                value,
                line: 0,
            }),
        }
    }

    /// Removes the field named `name` (case-insensitive), if present.
    pub fn remove(&mut self, name: &str) {
        self.fields.retain(|f| !f.name.eq_ignore_ascii_case(name));
    }

    /// Parses exactly one paragraph (a `.deb`'s control file).
    ///
    /// # Errors
    /// Any [`ControlError`] about syntax, and [`ControlError::SecondParagraph`] when a second
    /// paragraph follows, [`ControlError::Empty`] when there is none.
    pub fn parse_one(text: &str) -> Result<Paragraph, ControlError> {
        let mut paragraphs = parse_paragraphs(text)?;
        if paragraphs.len() > 1 {
            return Err(ControlError::SecondParagraph {
                line: paragraphs[1].line,
            });
        }
        paragraphs.pop().ok_or(ControlError::Empty)
    }
}

impl fmt::Display for Paragraph {
    /// Writes the paragraph as deb822 text, one `Name: value` per field with its
    /// continuation lines, ending with a newline (no blank line).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for field in &self.fields {
            let mut lines = field.value.split('\n');
            let first = lines.next().unwrap_or_default();
            if first.is_empty() {
                writeln!(f, "{}:", field.name)?;
            } else {
                writeln!(f, "{}: {}", field.name, first)?;
            }
            for line in lines {
                writeln!(f, "{line}")?;
            }
        }
        Ok(())
    }
}

/// Policy §5.1: a field name is US-ASCII printable characters except control characters,
/// space and colon, and does not begin with `#` or `-`.
fn valid_field_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['#', '-'])
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// Parses a deb822 text of any number of paragraphs separated by blank lines (a control file,
/// a Packages file). Comment lines (`#` in the first column) are skipped, as dpkg does for
/// control files.
///
/// # Errors
/// A [`ControlError`] naming the first offending line.
pub fn parse_paragraphs(text: &str) -> Result<Vec<Paragraph>, ControlError> {
    let mut paragraphs = Vec::new();
    let mut current = Paragraph::default();
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() {
            if !current.fields.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
            continue;
        }
        if raw.starts_with('#') {
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            let Some(field) = current.fields.last_mut() else {
                return Err(ControlError::LeadingContinuation { line });
            };
            field.value.push('\n');
            field.value.push_str(raw.trim_end());
            continue;
        }
        let Some((name, value)) = raw.split_once(':') else {
            return Err(ControlError::NotAField {
                line,
                text: raw.to_owned(),
            });
        };
        if !valid_field_name(name) {
            return Err(ControlError::InvalidFieldName {
                line,
                name: name.to_owned(),
            });
        }
        if current.field(name).is_some() {
            return Err(ControlError::DuplicateField {
                line,
                name: name.to_owned(),
            });
        }
        if current.fields.is_empty() {
            current.line = line;
        }
        current.fields.push(Field {
            name: name.to_owned(),
            value: value.trim().to_owned(),
            line,
        });
    }
    if !current.fields.is_empty() {
        paragraphs.push(current);
    }
    Ok(paragraphs)
}

/// A Debian binary package name (Policy §5.6.1).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackageName(String);

/// Why a string is not a package name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid package name {0:?}")]
pub struct PackageNameError(pub String);

impl PackageName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PackageName {
    type Err = PackageNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = s.len() >= 2
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.')
            });
        if ok {
            Ok(PackageName(s.to_owned()))
        } else {
            Err(PackageNameError(s.to_owned()))
        }
    }
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Debian architecture name as used in control files and repository paths (`amd64`, `all`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Architecture(String);

/// Why a string is not an architecture name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid architecture {0:?}")]
pub struct ArchitectureError(pub String);

impl Architecture {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is `all` (architecture-independent: listed under every architecture).
    pub fn is_all(&self) -> bool {
        self.0 == "all"
    }
}

impl FromStr for Architecture {
    type Err = ArchitectureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // dpkg's architecture names are lower-case letters, digits and '-', never leading '-'.
        let ok = !s.is_empty()
            && s.len() <= 64
            && !s.starts_with('-')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Architecture(s.to_owned()))
        } else {
            Err(ArchitectureError(s.to_owned()))
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The checked control file of a binary package: the paragraph as written plus the typed
/// fields every index needs.
#[derive(Debug, Clone)]
pub struct BinaryControl {
    /// Package name.
    pub package: PackageName,
    /// Version.
    pub version: DebVersion,
    /// Architecture (`all` for architecture-independent packages).
    pub architecture: Architecture,
    /// The whole paragraph, fields in written order.
    pub paragraph: Paragraph,
}

/// Fields Policy §5.3 requires in a binary package's control file. dpkg-deb refuses to build
/// without the first three; Maintainer and Description are required by Policy and shown by apt.
const REQUIRED_FIELDS: [&str; 5] = [
    "Package",
    "Version",
    "Architecture",
    "Maintainer",
    "Description",
];

impl BinaryControl {
    /// Parses and checks a binary control file.
    ///
    /// # Errors
    /// A [`ControlError`] with the line of the problem: syntax errors, a second paragraph,
    /// [`ControlError::MissingField`] / [`ControlError::EmptyField`] for the required fields,
    /// and invalid package names, versions or architectures.
    pub fn parse(text: &str) -> Result<BinaryControl, ControlError> {
        if text.len() > MAX_CONTROL_BYTES {
            return Err(ControlError::TooLarge(text.len()));
        }
        let paragraph = Paragraph::parse_one(text)?;
        BinaryControl::from_paragraph(paragraph)
    }

    /// Checks an already parsed paragraph (a control file, or a stanza of an upstream
    /// Packages file).
    ///
    /// # Errors
    /// As [`BinaryControl::parse`], without the syntax errors.
    pub fn from_paragraph(paragraph: Paragraph) -> Result<BinaryControl, ControlError> {
        for field in REQUIRED_FIELDS {
            match paragraph.field(field) {
                None => {
                    return Err(ControlError::MissingField {
                        field,
                        line: paragraph.line,
                    })
                }
                Some(f) if f.value.trim().is_empty() => {
                    return Err(ControlError::EmptyField {
                        field,
                        line: f.line,
                    })
                }
                Some(_) => {}
            }
        }
        let field = |name: &str| {
            paragraph.field(name).cloned().unwrap_or_else(|| Field {
                name: name.to_owned(),
                value: String::new(),
                line: paragraph.line,
            })
        };
        let package = field("Package");
        let package = package
            .value
            .parse()
            .map_err(|_| ControlError::InvalidPackageName {
                line: package.line,
                value: package.value.clone(),
            })?;
        let version = field("Version");
        let version = version
            .value
            .parse()
            .map_err(|source| ControlError::InvalidVersion {
                line: version.line,
                source,
            })?;
        let architecture = field("Architecture");
        let architecture =
            architecture
                .value
                .parse()
                .map_err(|_| ControlError::InvalidArchitecture {
                    line: architecture.line,
                    value: architecture.value.clone(),
                })?;
        Ok(BinaryControl {
            package,
            version,
            architecture,
            paragraph,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "Package: hello\nVersion: 1.0-1\nArchitecture: amd64\n\
        Maintainer: A <a@example.com>\nDepends: libc6 (>= 2.34)\nDescription: says hello\n \
        A longer text.\n .\n Second paragraph.\n";

    #[test]
    fn parses_and_writes_back_verbatim() {
        let control = BinaryControl::parse(HELLO).unwrap();
        assert_eq!(control.package.as_str(), "hello");
        assert_eq!(control.version.as_str(), "1.0-1");
        assert_eq!(control.architecture.as_str(), "amd64");
        assert_eq!(
            control.paragraph.get("description"),
            Some("says hello\n A longer text.\n .\n Second paragraph.")
        );
        assert_eq!(control.paragraph.to_string(), HELLO);
    }

    #[test]
    fn parses_several_paragraphs_with_comments_and_crlf() {
        let text = "# comment\r\nPackage: a\r\nVersion: 1\r\n\r\n\r\nPackage: b\nConffiles:\n /etc/b 0123\n";
        let paragraphs = parse_paragraphs(text).unwrap();
        assert_eq!(paragraphs.len(), 2);
        assert_eq!(paragraphs[0].get("Version"), Some("1"));
        assert_eq!(paragraphs[1].line(), 6);
        assert_eq!(paragraphs[1].get("Conffiles"), Some("\n /etc/b 0123"));
        assert_eq!(
            paragraphs[1].to_string(),
            "Package: b\nConffiles:\n /etc/b 0123\n"
        );
    }

    #[test]
    fn errors_name_the_line() {
        let cases: Vec<(&str, ControlError)> = vec![
            ("", ControlError::Empty),
            (
                " leading\n",
                ControlError::LeadingContinuation { line: 1 },
            ),
            (
                "Package: a\nno colon here\n",
                ControlError::NotAField {
                    line: 2,
                    text: "no colon here".into(),
                },
            ),
            (
                "Package: a\n-Bad: x\n",
                ControlError::InvalidFieldName {
                    line: 2,
                    name: "-Bad".into(),
                },
            ),
            (
                "Package: a\npackage: b\n",
                ControlError::DuplicateField {
                    line: 2,
                    name: "package".into(),
                },
            ),
            (
                "Package: a\n\nPackage: b\n",
                ControlError::SecondParagraph { line: 3 },
            ),
            (
                "Package: hello\nVersion: 1.0\nArchitecture: amd64\nDescription: x\n",
                ControlError::MissingField {
                    field: "Maintainer",
                    line: 1,
                },
            ),
            (
                "\n\nVersion: 1.0\nArchitecture: amd64\nMaintainer: m\nDescription: x\n",
                ControlError::MissingField {
                    field: "Package",
                    line: 3,
                },
            ),
            (
                "Package: hello\nVersion:\nArchitecture: amd64\nMaintainer: m\nDescription: x\n",
                ControlError::EmptyField {
                    field: "Version",
                    line: 2,
                },
            ),
            (
                "Package: Hello\nVersion: 1\nArchitecture: amd64\nMaintainer: m\nDescription: x\n",
                ControlError::InvalidPackageName {
                    line: 1,
                    value: "Hello".into(),
                },
            ),
            (
                "Package: hello\nVersion: 1\nArchitecture: amd64 i386\nMaintainer: m\nDescription: x\n",
                ControlError::InvalidArchitecture {
                    line: 3,
                    value: "amd64 i386".into(),
                },
            ),
        ];
        for (text, want) in cases {
            let got = BinaryControl::parse(text).unwrap_err();
            assert_eq!(got, want, "{text:?}");
        }
        let err = BinaryControl::parse(
            "Package: hello\nVersion: a1\nArchitecture: all\nMaintainer: m\nDescription: x\n",
        )
        .unwrap_err();
        assert!(
            matches!(err, ControlError::InvalidVersion { line: 2, .. }),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("line 2: invalid version"),
            "{err}"
        );
    }

    #[test]
    fn names_and_architectures() {
        for ok in ["hello", "libc6", "g++", "a.b-c+d", "0ad"] {
            assert!(ok.parse::<PackageName>().is_ok(), "{ok}");
        }
        for bad in ["", "a", "Hello", "-a", "a_b", "a b", ".a"] {
            assert!(bad.parse::<PackageName>().is_err(), "{bad}");
        }
        for ok in ["amd64", "all", "arm64", "kfreebsd-amd64"] {
            assert!(ok.parse::<Architecture>().is_ok(), "{ok}");
        }
        for bad in ["", "AMD64", "amd64,i386", "-x", "a/b", "../x"] {
            assert!(bad.parse::<Architecture>().is_err(), "{bad}");
        }
        assert!("all".parse::<Architecture>().unwrap().is_all());
    }

    #[test]
    fn set_replaces_in_place_and_appends() {
        let mut p = Paragraph::parse_one("Package: a\nVersion: 1\n").unwrap();
        p.set("version", "2");
        p.set("Filename", "pool/a.deb");
        p.remove("Package");
        assert_eq!(p.to_string(), "Version: 2\nFilename: pool/a.deb\n");
    }
}
