//! Full image references as people type them (`ruby:3.3`, `ghcr.io/org/app@sha256:…`), parsed
//! the way Docker does (distribution's `reference` package, `ParseNormalizedNamed`).
//!
//! The registry is the first `/`-separated component when it contains `.` or `:` or is
//! `localhost`; otherwise the reference names Docker Hub (`docker.io`, also spelled
//! `index.docker.io`), where a one-component repository lives under `library/`. With neither tag nor digest the tag is `latest`. Those
//! defaults are the only things filled in: case is never changed, so `Ruby` is refused rather
//! than lowercased.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, DigestError};
use crate::name::{NameError, Reference, RepoName, Tag, MAX_NAME_LEN};

/// The registry a reference without a registry component names.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// The name Docker used for Docker Hub before `docker.io`; Docker reads it as `docker.io`.
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";

/// The tag a reference with neither tag nor digest means.
pub const DEFAULT_TAG: &str = "latest";

/// Why an image reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageRefError {
    /// The text is empty.
    #[error("empty image reference")]
    Empty,
    /// The registry component is not `host[:port]` (a DNS name, IPv4 or bracketed IPv6).
    #[error("invalid registry {0:?} in image reference")]
    InvalidRegistry(String),
    /// `registry/repository` is longer than Docker accepts (255 characters).
    #[error("image name {0:?} is longer than {MAX_NAME_LEN} characters")]
    NameTooLong(String),
    /// The repository or tag does not match the distribution-spec grammar.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The part after `@` is not a valid digest.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// A parsed, defaulted image reference: `registry/repository[:tag][@digest]`.
///
/// At least one of tag and digest is present. `Display` writes the canonical form (registry
/// and `library/` spelled out), which parses back to an equal value.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageReference {
    registry: String,
    repository: RepoName,
    pin: Pin,
}

/// Tag, digest or both: an enum so "neither" cannot be represented.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Pin {
    Tag(Tag),
    Digest(Digest),
    Both(Tag, Digest),
}

impl ImageReference {
    /// The registry host, with its port when one was given (`docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository within the registry (`library/ruby`).
    pub fn repository(&self) -> &RepoName {
        &self.repository
    }

    /// The tag, if the reference has one (it always does when it has no digest).
    pub fn tag(&self) -> Option<&Tag> {
        match &self.pin {
            Pin::Tag(t) | Pin::Both(t, _) => Some(t),
            Pin::Digest(_) => None,
        }
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        match &self.pin {
            Pin::Digest(d) | Pin::Both(_, d) => Some(d),
            Pin::Tag(_) => None,
        }
    }

    /// What to ask the registry for: the digest when pinned (a digest wins over a tag, as in
    /// Docker, because `name:tag@digest` means "this digest, which was tagged so"), else the tag.
    pub fn reference(&self) -> Reference {
        match &self.pin {
            Pin::Digest(d) | Pin::Both(_, d) => Reference::Digest(d.clone()),
            Pin::Tag(t) => Reference::Tag(t.clone()),
        }
    }

    /// The same image pinned to `digest`, keeping the tag for readers (`ruby:3.3@sha256:…`).
    pub fn with_digest(&self, digest: Digest) -> ImageReference {
        let pin = match self.tag() {
            Some(tag) => Pin::Both(tag.clone(), digest),
            None => Pin::Digest(digest),
        };
        ImageReference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            pin,
        }
    }
}

/// `host[:port]`: DNS labels of `[A-Za-z0-9-]` (not starting or ending with `-`) joined by `.`,
/// or a bracketed IPv6 literal, then an optional decimal port. Mirrors distribution's
/// `domainAndPort` grammar, which allows upper case in host names.
fn valid_registry(s: &str) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return false;
        };
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("x", Some(port)),
                None => return false,
            },
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    port_ok && host.split('.').all(label_ok)
}

impl FromStr for ImageReference {
    type Err = ImageRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ImageRefError::Empty);
        }
        // The digest goes first: it contains ':' that would otherwise look like a tag.
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (rest, Some(d.parse::<Digest>()?)),
            None => (s, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !valid_registry(first) {
                    return Err(ImageRefError::InvalidRegistry(first.to_owned()));
                }
                (first, path)
            }
            _ => (DEFAULT_REGISTRY, rest),
        };
        // As Docker does: both names mean Docker Hub, and one spelling keeps lockfiles stable.
        let registry = if registry == LEGACY_DEFAULT_REGISTRY {
            DEFAULT_REGISTRY
        } else {
            registry
        };
        // Repository paths cannot contain ':', so a ':' left here starts the tag.
        let (path, tag) = match path.rsplit_once(':') {
            Some((p, t)) => (p, Some(t.parse::<Tag>()?)),
            None => (path, None),
        };
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            // Docker Hub's official images live under `library/`.
            format!("library/{path}").parse::<RepoName>()?
        } else {
            path.parse::<RepoName>()?
        };
        // Measured on the name as printed (`library/` included), so that every reference
        // accepted here parses again from its own `Display` (found by fuzz/reference).
        let full_len = registry.len() + 1 + repository.as_str().len();
        if full_len > MAX_NAME_LEN {
            return Err(ImageRefError::NameTooLong(rest.to_owned()));
        }
        let pin = match (tag, digest) {
            (None, None) => Pin::Tag(DEFAULT_TAG.parse()?),
            (Some(t), None) => Pin::Tag(t),
            (None, Some(d)) => Pin::Digest(d),
            (Some(t), Some(d)) => Pin::Both(t, d),
        };
        Ok(ImageReference {
            registry: registry.to_owned(),
            repository,
            pin,
        })
    }
}

impl TryFrom<String> for ImageReference {
    type Error = ImageRefError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<ImageReference> for String {
    fn from(value: ImageReference) -> Self {
        value.to_string()
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = self.tag() {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = self.digest() {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageReference({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // (input, registry, repository, tag, has digest, canonical form)
    type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, bool, String);

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn valid_references_parse_with_docker_defaults() {
        let d = D;
        let cases: &[Case] = &[
            (
                "ruby",
                "docker.io",
                "library/ruby",
                Some("latest"),
                false,
                "docker.io/library/ruby:latest".into(),
            ),
            (
                "ruby:3.3",
                "docker.io",
                "library/ruby",
                Some("3.3"),
                false,
                "docker.io/library/ruby:3.3".into(),
            ),
            (
                "library/ruby:3.3",
                "docker.io",
                "library/ruby",
                Some("3.3"),
                false,
                "docker.io/library/ruby:3.3".into(),
            ),
            (
                "index.docker.io/ruby:3",
                "docker.io",
                "library/ruby",
                Some("3"),
                false,
                "docker.io/library/ruby:3".into(),
            ),
            (
                "docker.io/ruby",
                "docker.io",
                "library/ruby",
                Some("latest"),
                false,
                "docker.io/library/ruby:latest".into(),
            ),
            (
                "bitnami/redis:7",
                "docker.io",
                "bitnami/redis",
                Some("7"),
                false,
                "docker.io/bitnami/redis:7".into(),
            ),
            (
                "ghcr.io/org/app:1",
                "ghcr.io",
                "org/app",
                Some("1"),
                false,
                "ghcr.io/org/app:1".into(),
            ),
            (
                "ghcr.io/app",
                "ghcr.io",
                "app",
                Some("latest"),
                false,
                "ghcr.io/app:latest".into(),
            ),
            (
                "localhost/app",
                "localhost",
                "app",
                Some("latest"),
                false,
                "localhost/app:latest".into(),
            ),
            (
                "localhost:5000/a/b/c:v1.0-rc.1",
                "localhost:5000",
                "a/b/c",
                Some("v1.0-rc.1"),
                false,
                "localhost:5000/a/b/c:v1.0-rc.1".into(),
            ),
            (
                &format!("127.0.0.1:5000/team/app@{d}"),
                "127.0.0.1:5000",
                "team/app",
                None,
                true,
                format!("127.0.0.1:5000/team/app@{d}"),
            ),
            (
                &format!("ruby:3.3@{d}"),
                "docker.io",
                "library/ruby",
                Some("3.3"),
                true,
                format!("docker.io/library/ruby:3.3@{d}"),
            ),
            (
                &format!("ruby@{d}"),
                "docker.io",
                "library/ruby",
                None,
                true,
                format!("docker.io/library/ruby@{d}"),
            ),
            (
                "Registry.Example.COM/app",
                "Registry.Example.COM",
                "app",
                Some("latest"),
                false,
                "Registry.Example.COM/app:latest".into(),
            ),
            (
                "[::1]:5000/app:x",
                "[::1]:5000",
                "app",
                Some("x"),
                false,
                "[::1]:5000/app:x".into(),
            ),
            // `localhost:5000` alone is a Docker Hub name with a tag, as in Docker.
            (
                "localhost:5000",
                "docker.io",
                "library/localhost",
                Some("5000"),
                false,
                "docker.io/library/localhost:5000".into(),
            ),
        ];
        for (input, registry, repository, tag, has_digest, canonical) in cases {
            let r: ImageReference = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry(), *registry, "{input}");
            assert_eq!(r.repository().as_str(), *repository, "{input}");
            assert_eq!(r.tag().map(Tag::as_str), *tag, "{input}");
            assert_eq!(r.digest().is_some(), *has_digest, "{input}");
            assert_eq!(&r.to_string(), canonical, "{input}");
            // The canonical form is a fixed point.
            assert_eq!(canonical.parse::<ImageReference>().unwrap(), r, "{input}");
        }
    }

    #[test]
    fn invalid_references_are_rejected() {
        let cases = [
            "",
            "Ruby",
            "ruby:",
            ":3.3",
            "ruby@",
            "ruby@sha256:abc",
            "ruby@md5:d41d8cd98f00b204e9800998ecf8427e",
            "ghcr.io/",
            "ghcr.io/Org/app",
            "/ruby",
            "ruby/",
            "ruby:bad/tag",
            "ruby:.x",
            "a:b:c",
            "ruby 3",
            "-bad.io/app",
            "bad-.io/app",
            "host:port/app",
            "host:123456/app",
            "[::1/app",
            "[zz]:5000/app",
            "ghcr.io//app",
        ];
        for input in cases {
            assert!(
                input.parse::<ImageReference>().is_err(),
                "{input:?} should be rejected"
            );
        }
        let long = format!("ghcr.io/{}", "a".repeat(250));
        assert!(matches!(
            long.parse::<ImageReference>(),
            Err(ImageRefError::NameTooLong(_))
        ));
    }

    /// fuzz/reference found a Docker Hub short name that fit 255 characters only without
    /// the `library/` it is printed with, so its printed form did not parse.
    #[test]
    fn the_length_limit_counts_the_library_prefix() {
        let short = "a".repeat(240);
        assert!(matches!(
            short.parse::<ImageReference>(),
            Err(ImageRefError::NameTooLong(_))
        ));
        let fits = "a".repeat(255 - "docker.io/library/".len());
        let parsed: ImageReference = fits.parse().unwrap();
        assert_eq!(
            parsed.to_string().parse::<ImageReference>().unwrap(),
            parsed
        );
    }

    #[test]
    fn serde_goes_through_from_str() {
        let r: ImageReference = serde_json::from_str(r#""ruby:3.3""#).unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#""docker.io/library/ruby:3.3""#
        );
        assert!(serde_json::from_str::<ImageReference>(r#""Ruby""#).is_err());
    }

    #[test]
    fn reference_prefers_the_digest() {
        let r: ImageReference = format!("ruby:3.3@{D}").parse().unwrap();
        assert_eq!(r.reference().to_string(), D);
        let r: ImageReference = "ruby:3.3".parse().unwrap();
        assert_eq!(r.reference().to_string(), "3.3");
        let pinned = r.with_digest(D.parse().unwrap());
        assert_eq!(
            pinned.to_string(),
            format!("docker.io/library/ruby:3.3@{D}")
        );
    }
}
