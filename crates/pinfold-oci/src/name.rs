//! Repository names, tags and references, checked against the distribution-spec grammar
//! ("Pulling manifests": `<name>` and `<reference>`).
//!
//! A name that passes [`RepoName::from_str`] contains only `[a-z0-9._/-]`, never starts or ends
//! a component with a separator and never contains `..`, so no accepted name can climb out of a
//! directory even if someone did use it as a path (Pinfold does not).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, DigestError};

/// Longest repository name accepted, as distribution enforces (and the spec recommends clients
/// keep `<host>/<name>` under 255 characters).
pub const MAX_NAME_LEN: usize = 255;

/// Why a name, tag or reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The repository name does not match the spec grammar or is too long.
    #[error("invalid repository name {0:?}")]
    InvalidName(String),
    /// The tag does not match `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
    #[error("invalid tag {0:?}")]
    InvalidTag(String),
    /// The reference looks like a digest (contains ':') but is not a valid one.
    #[error(transparent)]
    InvalidDigest(#[from] DigestError),
}

/// A repository name such as `library/ruby` or `docker.io/library/ruby`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoName(String);

impl RepoName {
    /// The name as accepted.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated components.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_component(c: &[u8]) -> bool {
    let mut i = 0;
    let n = c.len();
    loop {
        // an alphanumeric run
        let start = i;
        while i < n && is_alnum(c[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == n {
            return true;
        }
        // a separator: '.', '_', '__', or one or more '-'
        match c[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < n && c[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < n && c[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= MAX_NAME_LEN
            && s.split('/').all(|c| valid_component(c.as_bytes()));
        if ok {
            Ok(RepoName(s.to_owned()))
        } else {
            Err(NameError::InvalidName(s.to_owned()))
        }
    }
}

impl TryFrom<String> for RepoName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<RepoName> for String {
    fn from(value: RepoName) -> Self {
        value.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepoName({})", self.0)
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tag(String);

impl Tag {
    /// The tag as accepted.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 128
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b[1..]
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if ok {
            Ok(Tag(s.to_owned()))
        } else {
            Err(NameError::InvalidTag(s.to_owned()))
        }
    }
}

impl TryFrom<String> for Tag {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Tag> for String {
    fn from(value: Tag) -> Self {
        value.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({})", self.0)
    }
}

/// The `<reference>` of a manifest URL: a tag or a digest. A string containing `:` is a
/// digest (tags cannot contain `:`), anything else a tag.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Reference {
    /// By tag.
    Tag(Tag),
    /// By digest.
    Digest(Digest),
}

impl FromStr for Reference {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else {
            Ok(Reference::Tag(s.parse()?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names_follow_the_spec_grammar() {
        let good = [
            "a",
            "library/ruby",
            "docker.io/library/ruby",
            "a/b/c/d/e",
            "foo_bar",
            "foo__bar",
            "foo---bar",
            "foo.bar",
            "0",
            "ghcr.io/org/app",
        ];
        for s in good {
            assert_eq!(s.parse::<RepoName>().unwrap().as_str(), s);
        }
        let long_ok = "a".repeat(MAX_NAME_LEN);
        assert!(long_ok.parse::<RepoName>().is_ok());
        let bad = [
            "",
            "/",
            "a/",
            "/a",
            "a//b",
            "A",
            "Library/ruby",
            "foo___bar",
            "foo.-bar",
            "-foo",
            "foo-",
            "foo.",
            "..",
            "a/../b",
            "a/./b",
            "a b",
            "a:b",
            "a%2fb",
            "a\\b",
        ];
        for s in bad {
            assert!(s.parse::<RepoName>().is_err(), "{s:?} should be rejected");
        }
        assert!("a".repeat(MAX_NAME_LEN + 1).parse::<RepoName>().is_err());
    }

    #[test]
    fn tags_follow_the_spec_grammar() {
        for s in ["latest", "3.3", "_x", "v1.0-rc.1", "A", &"a".repeat(128)] {
            assert!(s.parse::<Tag>().is_ok(), "{s:?} should be accepted");
        }
        for s in ["", ".x", "-x", "a:b", "a/b", "a b", &"a".repeat(129), "ä"] {
            assert!(s.parse::<Tag>().is_err(), "{s:?} should be rejected");
        }
    }

    #[test]
    fn references_split_on_colon() {
        assert!(matches!(
            "latest".parse::<Reference>(),
            Ok(Reference::Tag(_))
        ));
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(d.parse::<Reference>(), Ok(Reference::Digest(_))));
        assert!(matches!(
            "sha256:abc".parse::<Reference>(),
            Err(NameError::InvalidDigest(_))
        ));
        assert!(matches!(
            "bad tag".parse::<Reference>(),
            Err(NameError::InvalidTag(_))
        ));
    }
}
