//! Repository indices: `Packages` stanzas and files, `Release` files, and their compressed
//! forms, in the format of Debian's repository specification
//! (<https://wiki.debian.org/DebianRepository/Format>).
//!
//! Everything here is a pure function of its input (the `Release` date is passed in), so the
//! same repository state always yields the same bytes and the same by-hash names.

use std::fmt::Write as _;
use std::io::Write as _;

use crate::control::Paragraph;
use crate::digests::FileDigests;
use crate::DebVersion;

/// Fields a Packages stanza gets from the repository, never from the uploaded control file: a
/// control file carrying them (or a mirrored stanza) must not override where the file is.
const REPOSITORY_FIELDS: [&str; 7] = [
    "Filename",
    "Size",
    "MD5sum",
    "SHA1",
    "SHA256",
    "SHA512",
    "Description-md5",
];

/// One package as listed in a `Packages` file.
#[derive(Debug, Clone)]
pub struct PackageEntry {
    /// The control paragraph (from the `.deb`, or an upstream stanza).
    pub control: Paragraph,
    /// Package name (sort key).
    pub name: String,
    /// Version (sort key).
    pub version: DebVersion,
    /// Architecture (sort key).
    pub architecture: String,
    /// Path of the `.deb` relative to the repository root (`pool/...`).
    pub filename: String,
    /// Size and digests of the `.deb`.
    pub digests: FileDigests,
}

impl PackageEntry {
    /// The stanza for this package: the control fields as written, then `Filename`, `Size`,
    /// `MD5sum`, `SHA1` and `SHA256` (any such fields in the control paragraph are replaced).
    pub fn stanza(&self) -> String {
        let mut out = String::with_capacity(512);
        self.write_stanza(&mut out);
        out
    }

    fn write_stanza(&self, out: &mut String) {
        let mut paragraph = self.control.clone();
        for field in REPOSITORY_FIELDS {
            paragraph.remove(field);
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "{paragraph}");
        let _ = writeln!(out, "Filename: {}", self.filename);
        let _ = writeln!(out, "Size: {}", self.digests.size);
        let _ = writeln!(out, "MD5sum: {}", self.digests.md5);
        let _ = writeln!(out, "SHA1: {}", self.digests.sha1);
        let _ = writeln!(out, "SHA256: {}", self.digests.sha256);
    }
}

/// A `Packages` file: every entry's stanza separated by blank lines, sorted by name, then
/// version (dpkg order), then architecture, so the output does not depend on upload order.
pub fn packages_file(entries: &mut [PackageEntry]) -> String {
    entries.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| a.version.cmp(&b.version))
            .then_with(|| a.version.as_str().cmp(b.version.as_str()))
            .then_with(|| a.architecture.cmp(&b.architecture))
    });
    let mut out = String::with_capacity(entries.len() * 700);
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        entry.write_stanza(&mut out);
    }
    out
}

/// gzip of `bytes` at the default level (what `Packages.gz` needs: small, fast to make).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::default(),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// xz of `bytes` at preset 1. Not xz's default 6: `bench/apt.sh` measured preset 6 at 2.3 s
/// for the indices of 10,000 packages (issue 7 asks for under 1 s), and on Packages text
/// preset 1 is several times faster for a file a few percent larger.
pub fn xz(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = liblzma::write::XzEncoder::new(Vec::with_capacity(bytes.len() / 6), 1);
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// One file listed in a `Release` file.
#[derive(Debug, Clone)]
pub struct ReleaseEntry {
    /// Path relative to the distribution directory (`main/binary-amd64/Packages.gz`).
    pub path: String,
    /// Its size and digests.
    pub digests: FileDigests,
}

/// The fields of a `Release` file.
#[derive(Debug, Clone)]
pub struct Release {
    /// `Origin`.
    pub origin: String,
    /// `Label`.
    pub label: String,
    /// `Suite` (the distribution name clients use).
    pub suite: String,
    /// `Codename`.
    pub codename: String,
    /// `Date`, the time the indices were generated.
    pub date: time::OffsetDateTime,
    /// `Valid-Until`, if the indices expire. `None` for frozen snapshots: their content never
    /// changes, so there is nothing a replay could hide.
    pub valid_until: Option<time::OffsetDateTime>,
    /// `Architectures`, e.g. `amd64 arm64`.
    pub architectures: Vec<String>,
    /// `Components`, e.g. `main non-free`.
    pub components: Vec<String>,
    /// `Description`.
    pub description: Option<String>,
    /// The index files, each listed in MD5Sum, SHA1 and SHA256.
    pub files: Vec<ReleaseEntry>,
}

/// Picks one digest out of [`FileDigests`] (one `Release` section per digest).
type DigestField = fn(&FileDigests) -> &str;

/// RFC 2822 date in UTC, the form apt parses in `Date` and `Valid-Until`.
fn rfc2822_utc(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] UTC"
    );
    t.format(&format).unwrap_or_default()
}

impl Release {
    /// The `Release` text. Always `Acquire-By-Hash: yes`: the server keeps index files under
    /// `by-hash/SHA256/<hex>` for a few generations, so a client that fetched an older
    /// `InRelease` still finds the indices it names.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(256 + self.files.len() * 3 * 120);
        let _ = writeln!(out, "Origin: {}", self.origin);
        let _ = writeln!(out, "Label: {}", self.label);
        let _ = writeln!(out, "Suite: {}", self.suite);
        let _ = writeln!(out, "Codename: {}", self.codename);
        let _ = writeln!(out, "Date: {}", rfc2822_utc(self.date));
        if let Some(until) = self.valid_until {
            let _ = writeln!(out, "Valid-Until: {}", rfc2822_utc(until));
        }
        let _ = writeln!(out, "Acquire-By-Hash: yes");
        let _ = writeln!(out, "Architectures: {}", self.architectures.join(" "));
        let _ = writeln!(out, "Components: {}", self.components.join(" "));
        if let Some(description) = &self.description {
            let _ = writeln!(out, "Description: {description}");
        }
        let width = self
            .files
            .iter()
            .map(|f| f.digests.size.to_string().len())
            .max()
            .unwrap_or(1);
        let sections: [(&str, DigestField); 3] = [
            ("MD5Sum", |d| &d.md5),
            ("SHA1", |d| &d.sha1),
            ("SHA256", |d| &d.sha256),
        ];
        for (name, digest) in sections {
            let _ = writeln!(out, "{name}:");
            for file in &self.files {
                let _ = writeln!(
                    out,
                    " {} {:>width$} {}",
                    digest(&file.digests),
                    file.digests.size,
                    file.path
                );
            }
        }
        out
    }
}

/// Why an upstream `Release` file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// The text is not deb822.
    #[error("Release: {0}")]
    Syntax(#[from] crate::ControlError),
    /// It lists no SHA256 section, so nothing it names can be verified.
    #[error("Release has no SHA256 section")]
    NoSha256,
    /// A SHA256 line is not `<64 hex> <size> <path>`.
    #[error("Release: malformed SHA256 line {0:?}")]
    BadLine(String),
}

/// What a client needs from an upstream `Release`: its components, architectures, and the
/// size and SHA-256 of every index file it lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRelease {
    /// `Components`.
    pub components: Vec<String>,
    /// `Architectures`.
    pub architectures: Vec<String>,
    /// path → (size, SHA-256 hex), from the `SHA256` section.
    pub sha256: std::collections::BTreeMap<String, (u64, String)>,
}

/// Parses an upstream `Release` (or the text of an `InRelease`, signature removed).
///
/// # Errors
/// [`ReleaseError`] for syntax errors, a missing SHA256 section or a malformed line.
pub fn parse_release(text: &str) -> Result<UpstreamRelease, ReleaseError> {
    let paragraph = crate::control::parse_paragraphs(text)?
        .into_iter()
        .next()
        .ok_or(ReleaseError::NoSha256)?;
    let words = |name: &str| -> Vec<String> {
        paragraph
            .get(name)
            .map(|v| v.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let section = paragraph.get("SHA256").ok_or(ReleaseError::NoSha256)?;
    let mut sha256 = std::collections::BTreeMap::new();
    for line in section.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [hash, size, path] = parts.as_slice() else {
            return Err(ReleaseError::BadLine(line.to_owned()));
        };
        let size: u64 = size
            .parse()
            .map_err(|_| ReleaseError::BadLine(line.to_owned()))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ReleaseError::BadLine(line.to_owned()));
        }
        sha256.insert((*path).to_owned(), (size, hash.to_ascii_lowercase()));
    }
    Ok(UpstreamRelease {
        components: words("Components"),
        architectures: words("Architectures"),
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::BinaryControl;

    fn entry(name: &str, version: &str, arch: &str) -> PackageEntry {
        let text = format!(
            "Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: m\n\
             Filename: ../../etc/passwd\nDescription: d\n long\n"
        );
        let control = BinaryControl::parse(&text).unwrap();
        PackageEntry {
            name: name.into(),
            version: control.version.clone(),
            architecture: arch.into(),
            control: control.paragraph,
            filename: format!(
                "pool/main/{}/{name}/{name}_{version}_{arch}.deb",
                &name[..1]
            ),
            digests: FileDigests::of(name.as_bytes()),
        }
    }

    #[test]
    fn stanza_replaces_repository_fields() {
        let stanza = entry("hello", "1.0", "amd64").stanza();
        assert_eq!(
            stanza,
            "Package: hello\nVersion: 1.0\nArchitecture: amd64\nMaintainer: m\n\
             Description: d\n long\nFilename: pool/main/h/hello/hello_1.0_amd64.deb\nSize: 5\n\
             MD5sum: 5d41402abc4b2a76b9719d911017c592\n\
             SHA1: aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d\n\
             SHA256: 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\n"
        );
    }

    #[test]
    fn packages_file_is_sorted_in_dpkg_order() {
        let mut entries = vec![
            entry("zsh", "5.9", "amd64"),
            entry("hello", "1.0-10", "arm64"),
            entry("hello", "1.0-9", "amd64"),
            entry("hello", "1.0~rc1", "amd64"),
        ];
        let text = packages_file(&mut entries);
        let order: Vec<_> = entries
            .iter()
            .map(|e| format!("{} {} {}", e.name, e.version, e.architecture))
            .collect();
        assert_eq!(
            order,
            [
                "hello 1.0~rc1 amd64",
                "hello 1.0-9 amd64",
                "hello 1.0-10 arm64",
                "zsh 5.9 amd64"
            ]
        );
        let paragraphs = crate::control::parse_paragraphs(&text).unwrap();
        assert_eq!(paragraphs.len(), 4);
        assert!(text.ends_with('\n') && !text.ends_with("\n\n"));
        assert!(packages_file(&mut []).is_empty());
    }

    #[test]
    fn compressed_forms_decompress_to_the_input() {
        use std::io::Read;
        let text = packages_file(&mut [entry("hello", "1", "all")]);
        let mut back = String::new();
        flate2::read::GzDecoder::new(gzip(text.as_bytes()).as_slice())
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, text);
        back.clear();
        liblzma::read::XzDecoder::new(xz(text.as_bytes()).as_slice())
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, text);
    }

    #[test]
    fn release_lists_every_file_in_three_hash_sections() {
        let release = Release {
            origin: "Pinfold".into(),
            label: "Pinfold".into(),
            suite: "stable".into(),
            codename: "stable".into(),
            date: time::macros::datetime!(2026-11-22 04:52:47 UTC),
            valid_until: None,
            architectures: vec!["amd64".into(), "arm64".into()],
            components: vec!["main".into()],
            description: None,
            files: vec![
                ReleaseEntry {
                    path: "main/binary-amd64/Packages".into(),
                    digests: FileDigests::of(b""),
                },
                ReleaseEntry {
                    path: "main/binary-amd64/Packages.gz".into(),
                    digests: FileDigests::of(b"abc"),
                },
            ],
        };
        let text = release.render();
        assert!(
            text.contains("Date: Sun, 22 Nov 2026 04:52:47 UTC\n"),
            "{text}"
        );
        assert!(!text.contains("Valid-Until"));
        assert!(text.contains("Acquire-By-Hash: yes\n"));
        assert!(text.contains(
            "SHA256:\n e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 0 main/binary-amd64/Packages\n \
             ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad 3 main/binary-amd64/Packages.gz\n"
        ), "{text}");
        assert!(text.contains("MD5Sum:\n d41d8cd98f00b204e9800998ecf8427e 0 main"));
        assert!(text.contains("SHA1:\n da39a3ee5e6b4b0d3255bfef95601890afd80709 0 main"));
        // The header is one deb822 paragraph.
        assert_eq!(crate::control::parse_paragraphs(&text).unwrap().len(), 1);
        let expiring = Release {
            valid_until: Some(time::macros::datetime!(2026-11-29 04:52:47 UTC)),
            ..release
        };
        assert!(expiring
            .render()
            .contains("Valid-Until: Sun, 29 Nov 2026 04:52:47 UTC\n"));
    }

    #[test]
    fn parses_an_upstream_release_and_its_own_output() {
        let release = Release {
            origin: "o".into(),
            label: "l".into(),
            suite: "stable".into(),
            codename: "stable".into(),
            date: time::macros::datetime!(2026-11-22 04:52:47 UTC),
            valid_until: None,
            architectures: vec!["amd64".into()],
            components: vec!["main".into(), "contrib".into()],
            description: None,
            files: vec![ReleaseEntry {
                path: "main/binary-amd64/Packages.gz".into(),
                digests: FileDigests::of(b"abc"),
            }],
        };
        let parsed = parse_release(&release.render()).unwrap();
        assert_eq!(parsed.components, ["main", "contrib"]);
        assert_eq!(parsed.architectures, ["amd64"]);
        assert_eq!(
            parsed.sha256.get("main/binary-amd64/Packages.gz").unwrap(),
            &(
                3,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into()
            )
        );
        assert_eq!(parse_release("Origin: x\n"), Err(ReleaseError::NoSha256));
        assert!(matches!(
            parse_release("SHA256:\n abc 1 x\n"),
            Err(ReleaseError::BadLine(_))
        ));
    }
}
