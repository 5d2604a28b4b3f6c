//! Alpine's apk database, `lib/apk/db/installed`: one stanza per package, separated by blank
//! lines, each line `X:value` with a one-letter key (`P` name, `V` version, `A` architecture,
//! `o` origin; `F`/`R`/`Z` file lists, which are ignored here). See apk-tools'
//! `doc/apk-package.5` ("installed database").

use super::{Ecosystem, Package, MAX_OS_DB_BYTES};

/// Path of the database, relative to the root filesystem.
pub const INSTALLED_PATH: &str = "lib/apk/db/installed";

/// Why an apk database could not be read. Lines are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApkError {
    /// Larger than [`MAX_OS_DB_BYTES`].
    #[error("database is {size} bytes, more than the {limit} accepted")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: u64,
    },
    /// A line is not `X:value`.
    #[error("line {line}: malformed line (expected `X:value`)")]
    MalformedLine {
        /// The line.
        line: usize,
    },
    /// A stanza has no `P` (name) or `V` (version) line.
    #[error("line {line}: package stanza without {field} line")]
    MissingField {
        /// First line of the stanza.
        line: usize,
        /// `P` or `V`.
        field: &'static str,
    },
}

/// Parses `lib/apk/db/installed` into its packages, in file order.
///
/// # Errors
/// [`ApkError`] for an oversized file, a malformed line or a stanza without name or version.
pub fn parse_installed(bytes: &[u8]) -> Result<Vec<Package>, ApkError> {
    if bytes.len() as u64 > MAX_OS_DB_BYTES {
        return Err(ApkError::TooLarge {
            size: bytes.len(),
            limit: MAX_OS_DB_BYTES,
        });
    }
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    let mut current = Stanza::default();
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        let content = raw.strip_suffix('\r').unwrap_or(raw);
        if content.trim().is_empty() {
            current.finish(&mut out)?;
            continue;
        }
        if current.start == 0 {
            current.start = line;
        }
        let mut chars = content.chars();
        let (Some(key), Some(':')) = (chars.next(), chars.next()) else {
            return Err(ApkError::MalformedLine { line });
        };
        let value = chars.as_str();
        match key {
            'P' => current.name = Some(value.to_owned()),
            'V' => current.version = Some(value.to_owned()),
            'A' => current.arch = Some(value.to_owned()),
            'o' => current.origin = Some(value.to_owned()),
            _ => {}
        }
    }
    current.finish(&mut out)?;
    Ok(out)
}

#[derive(Default)]
struct Stanza {
    start: usize,
    name: Option<String>,
    version: Option<String>,
    arch: Option<String>,
    origin: Option<String>,
}

impl Stanza {
    fn finish(&mut self, out: &mut Vec<Package>) -> Result<(), ApkError> {
        if self.start == 0 {
            return Ok(());
        }
        let stanza = std::mem::take(self);
        let name = stanza.name.ok_or(ApkError::MissingField {
            line: stanza.start,
            field: "P",
        })?;
        let version = stanza.version.ok_or(ApkError::MissingField {
            line: stanza.start,
            field: "V",
        })?;
        out.push(Package {
            ecosystem: Ecosystem::Apk,
            name,
            version,
            architecture: stanza.arch,
            source: stanza.origin,
            location: None,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpine_excerpt() {
        let db = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nS:383152\nI:622592\nT:the musl c library\no:musl\nF:lib\nR:ld-musl-x86_64.so.1\n\nP:ca-certificates-bundle\nV:20230506-r0\nA:x86_64\no:ca-certificates\n\n";
        let got = parse_installed(db.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "musl");
        assert_eq!(got[0].version, "1.2.4-r2");
        assert_eq!(got[0].architecture.as_deref(), Some("x86_64"));
        assert_eq!(got[1].source.as_deref(), Some("ca-certificates"));
    }

    #[test]
    fn malformed() {
        assert_eq!(
            parse_installed(b"P:musl\nnonsense\n"),
            Err(ApkError::MalformedLine { line: 2 })
        );
        assert_eq!(
            parse_installed(b"P:musl\n\nP:x\nV:1\n\nV:2\n"),
            Err(ApkError::MissingField {
                line: 1,
                field: "V"
            })
        );
    }
}
