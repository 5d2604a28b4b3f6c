//! The `pinfold.lock` format: TOML, sorted, one value per line, so a changed digest is a
//! one-line diff and running `pinfold lock` twice writes identical bytes.
//!
//! ```toml
//! # pinfold.lock: image references pinned to digests by `pinfold lock`. Regenerate it with
//! # `pinfold lock`; `pinfold lock --check` says what moved.
//! version = 1
//!
//! [[image]]
//! name = "docker.io/library/ruby:3.3"
//! digest = "sha256:…"
//! media_type = "application/vnd.oci.image.index.v1+json"
//!
//! [image.platforms]
//! "linux/amd64" = "sha256:…"
//! "linux/arm64/v8" = "sha256:…"
//!
//! [[image.found]]
//! file = "Dockerfile"
//! line = 3
//! kind = "from"
//! written = "ruby:3.3"
//! ```
//!
//! Images are sorted by `name` (the canonical reference: registry and `library/` spelled out),
//! platforms by key, `found` entries by file, line and text. `written` is the reference as the
//! file spells it (after build-argument defaults are applied); `kind` is one of `from`,
//! `from-arg`, `copy-from`, `mount-from`, `compose`, `kubernetes`. Files are named relative to
//! the lockfile's directory, with `/` separators.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use pinfold_oci::Digest;
use serde::{Deserialize, Serialize};

use super::find::FoundImage;
use super::resolve::Resolved;

/// The format version this code reads and writes.
pub const LOCKFILE_VERSION: u32 = 1;

/// A whole lockfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockfile {
    /// Format version ([`LOCKFILE_VERSION`]).
    pub version: u32,
    /// The locked images, sorted by name.
    #[serde(default, rename = "image")]
    pub images: Vec<LockedImage>,
}

/// One locked image reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedImage {
    /// The canonical reference (`docker.io/library/ruby:3.3`).
    pub name: String,
    /// The digest it resolved to (an index or a manifest).
    pub digest: Digest,
    /// The media type of what `digest` names.
    pub media_type: String,
    /// Platform (`linux/amd64`) → image manifest digest.
    #[serde(default)]
    pub platforms: BTreeMap<String, Digest>,
    /// Where the reference is used.
    #[serde(default)]
    pub found: Vec<Location>,
}

/// Where a locked reference is used.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// The file, relative to the lockfile's directory.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The construct (`from`, `compose`, `kubernetes`...).
    pub kind: String,
    /// The reference as written there.
    pub written: String,
}

/// Why a lockfile could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LockfileError {
    /// Not valid TOML, or not the lockfile's shape.
    #[error("invalid lockfile: {0}")]
    Syntax(String),
    /// Written by a newer (or unknown) format version.
    #[error(
        "lockfile version {0} is not supported (this pinfold reads version {LOCKFILE_VERSION})"
    )]
    UnsupportedVersion(u32),
}

impl Lockfile {
    /// The lockfile for `found` references, each resolved in `resolved` (keyed by canonical
    /// reference). References missing from `resolved` are left out.
    pub fn build<'a>(
        found: impl IntoIterator<Item = &'a FoundImage>,
        resolved: &BTreeMap<String, Resolved>,
    ) -> Lockfile {
        let mut images: BTreeMap<String, LockedImage> = BTreeMap::new();
        for f in found {
            let name = f.reference.to_string();
            let Some(r) = resolved.get(&name) else {
                continue;
            };
            let entry = images.entry(name.clone()).or_insert_with(|| LockedImage {
                name,
                digest: r.digest.clone(),
                media_type: r.media_type.clone(),
                platforms: r.platforms.clone(),
                found: Vec::new(),
            });
            entry.found.push(Location {
                file: f.file.clone(),
                line: f.line,
                kind: f.origin.label().to_string(),
                written: f.written.clone(),
            });
        }
        let mut images: Vec<LockedImage> = images.into_values().collect();
        for image in &mut images {
            image.found.sort();
            image.found.dedup();
        }
        Lockfile {
            version: LOCKFILE_VERSION,
            images,
        }
    }

    /// Parses a lockfile.
    ///
    /// # Errors
    ///
    /// [`LockfileError`] for TOML or shape errors and unknown versions.
    pub fn parse(text: &str) -> Result<Lockfile, LockfileError> {
        #[derive(Deserialize)]
        struct Version {
            version: Option<u32>,
        }
        // The version first, so a future format is refused as such, not as a shape error.
        let version = toml::from_str::<Version>(text)
            .map_err(|e| LockfileError::Syntax(e.to_string()))?
            .version;
        match version {
            Some(LOCKFILE_VERSION) => {}
            Some(v) => return Err(LockfileError::UnsupportedVersion(v)),
            None => return Err(LockfileError::Syntax("missing `version`".into())),
        }
        toml::from_str(text).map_err(|e| LockfileError::Syntax(e.to_string()))
    }

    /// The lockfile as text; see the module docs. Equal lockfiles give equal bytes.
    pub fn to_toml(&self) -> String {
        // Written by hand rather than with a TOML serializer so the layout (blank lines,
        // table order, inline nothing) is fixed by this file and not by a crate version.
        let q = |s: &str| toml::Value::String(s.to_string()).to_string();
        let mut out = String::new();
        out.push_str(
            "# pinfold.lock: image references pinned to digests by `pinfold lock`. Regenerate it with\n\
             # `pinfold lock`; `pinfold lock --check` says what moved.\n",
        );
        let _ = writeln!(out, "version = {}", self.version);
        for image in &self.images {
            let _ = writeln!(out, "\n[[image]]");
            let _ = writeln!(out, "name = {}", q(&image.name));
            let _ = writeln!(out, "digest = {}", q(image.digest.as_str()));
            let _ = writeln!(out, "media_type = {}", q(&image.media_type));
            if !image.platforms.is_empty() {
                let _ = writeln!(out, "\n[image.platforms]");
                for (platform, digest) in &image.platforms {
                    let _ = writeln!(out, "{} = {}", q(platform), q(digest.as_str()));
                }
            }
            for at in &image.found {
                let _ = writeln!(out, "\n[[image.found]]");
                let _ = writeln!(out, "file = {}", q(&at.file));
                let _ = writeln!(out, "line = {}", at.line);
                let _ = writeln!(out, "kind = {}", q(&at.kind));
                let _ = writeln!(out, "written = {}", q(&at.written));
            }
        }
        out
    }

    /// The locked image named `name` (canonical reference).
    pub fn image(&self, name: &str) -> Option<&LockedImage> {
        self.images.iter().find(|i| i.name == name)
    }

    /// Every file the lockfile names, sorted, once each.
    pub fn files(&self) -> Vec<String> {
        let mut files: Vec<String> = self
            .images
            .iter()
            .flat_map(|i| i.found.iter().map(|f| f.file.clone()))
            .collect();
        files.sort();
        files.dedup();
        files
    }
}

/// A reference whose digest changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Moved {
    /// The canonical reference.
    pub name: String,
    /// The digest in the lockfile.
    pub old: Digest,
    /// The digest it resolves to now.
    pub new: Digest,
    /// Platforms whose digest changed, was added or removed: platform → (old, new).
    pub platforms: BTreeMap<String, (Option<Digest>, Option<Digest>)>,
}

/// What `pinfold lock --check` found: the lockfile against what the files and registries say now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// References whose digest moved.
    pub moved: Vec<Moved>,
    /// References in the files that the lockfile lacks.
    pub added: Vec<LockedImage>,
    /// References in the lockfile that no file uses any more.
    pub removed: Vec<LockedImage>,
    /// Pins are unchanged but lines or spellings moved: the lockfile is stale, not wrong.
    pub relocated: Vec<String>,
}

impl CheckReport {
    /// Compares the lockfile on disk (`old`) with the one the files give now (`new`).
    pub fn compare(old: &Lockfile, new: &Lockfile) -> CheckReport {
        let mut report = CheckReport::default();
        for n in &new.images {
            match old.image(&n.name) {
                None => report.added.push(n.clone()),
                Some(o) if o.digest != n.digest => {
                    let mut platforms = BTreeMap::new();
                    for key in o.platforms.keys().chain(n.platforms.keys()) {
                        let (a, b) = (o.platforms.get(key), n.platforms.get(key));
                        if a != b {
                            platforms.insert(key.clone(), (a.cloned(), b.cloned()));
                        }
                    }
                    report.moved.push(Moved {
                        name: n.name.clone(),
                        old: o.digest.clone(),
                        new: n.digest.clone(),
                        platforms,
                    });
                }
                Some(o) if o.found != n.found => report.relocated.push(n.name.clone()),
                Some(_) => {}
            }
        }
        for o in &old.images {
            if new.image(&o.name).is_none() {
                report.removed.push(o.clone());
            }
        }
        report
    }

    /// Whether the lockfile still pins exactly what the files use (relocations aside).
    pub fn is_clean(&self) -> bool {
        self.moved.is_empty() && self.added.is_empty() && self.removed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::find::{FoundImage, Origin};

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    fn found(file: &str, line: usize, written: &str) -> FoundImage {
        FoundImage {
            file: file.into(),
            line,
            column: 6,
            written: written.into(),
            reference: written.parse().unwrap(),
            origin: Origin::From,
            site: None,
        }
    }

    fn resolved(d: char, platforms: &[(&str, char)]) -> Resolved {
        Resolved {
            digest: digest(d),
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            platforms: platforms
                .iter()
                .map(|(p, c)| (p.to_string(), digest(*c)))
                .collect(),
            tag_digest: None,
        }
    }

    #[test]
    fn sorted_stable_and_round_trips() {
        let mut map = BTreeMap::new();
        map.insert(
            "docker.io/library/ruby:3.3".to_string(),
            resolved('a', &[("linux/arm64/v8", 'c'), ("linux/amd64", 'b')]),
        );
        map.insert("ghcr.io/o/x:1".to_string(), resolved('d', &[]));
        let items = [
            found("k8s.yaml", 9, "ghcr.io/o/x:1"),
            found("Dockerfile", 4, "docker.io/library/ruby:3.3"),
            found("Dockerfile", 1, "ruby:3.3"),
            found("Dockerfile", 1, "ruby:3.3"),
        ];
        let lock = Lockfile::build(&items, &map);
        let reversed: Vec<FoundImage> = items.iter().rev().cloned().collect();
        let text = lock.to_toml();
        assert_eq!(text, Lockfile::build(&reversed, &map).to_toml());
        assert_eq!(Lockfile::parse(&text).unwrap(), lock);
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let c = "c".repeat(64);
        assert!(
            text.contains(&format!(
                "\n[[image]]\nname = \"docker.io/library/ruby:3.3\"\ndigest = \"sha256:{a}\"\n\
                 media_type = \"application/vnd.oci.image.index.v1+json\"\n\n[image.platforms]\n\
                 \"linux/amd64\" = \"sha256:{b}\"\n\"linux/arm64/v8\" = \"sha256:{c}\"\n\n\
                 [[image.found]]\nfile = \"Dockerfile\"\nline = 1\nkind = \"from\"\nwritten = \"ruby:3.3\"\n\n\
                 [[image.found]]\nfile = \"Dockerfile\"\nline = 4\n"
            )),
            "{text}"
        );
        assert_eq!(lock.images[0].found.len(), 2, "duplicates collapse");
        assert_eq!(lock.files(), vec!["Dockerfile", "k8s.yaml"]);
    }

    #[test]
    fn bad_lockfiles_are_refused() {
        assert_eq!(
            Lockfile::parse("version = 2\n"),
            Err(LockfileError::UnsupportedVersion(2))
        );
        assert!(matches!(
            Lockfile::parse("[[image]\n"),
            Err(LockfileError::Syntax(_))
        ));
        assert!(matches!(
            Lockfile::parse("version = 1\n[[image]]\nname = \"x\"\n"),
            Err(LockfileError::Syntax(_))
        ));
        assert!(matches!(
            Lockfile::parse("version = 1\nextra = 1\n"),
            Err(LockfileError::Syntax(_))
        ));
    }

    #[test]
    fn check_names_moves_additions_removals_and_relocations() {
        let mut then = BTreeMap::new();
        then.insert(
            "docker.io/library/a:1".to_string(),
            resolved('a', &[("linux/amd64", 'b')]),
        );
        then.insert("docker.io/library/gone:1".to_string(), resolved('c', &[]));
        then.insert("docker.io/library/same:1".to_string(), resolved('d', &[]));
        let old = Lockfile::build(
            &[
                found("D", 1, "a:1"),
                found("D", 2, "gone:1"),
                found("D", 3, "same:1"),
            ],
            &then,
        );
        let mut now = then.clone();
        now.insert(
            "docker.io/library/a:1".to_string(),
            resolved('e', &[("linux/amd64", 'f')]),
        );
        now.insert("docker.io/library/new:1".to_string(), resolved('9', &[]));
        let new = Lockfile::build(
            &[
                found("D", 1, "a:1"),
                found("D", 5, "same:1"),
                found("D", 6, "new:1"),
            ],
            &now,
        );
        let report = CheckReport::compare(&old, &new);
        assert!(!report.is_clean());
        assert_eq!(report.moved.len(), 1);
        assert_eq!(report.moved[0].old, digest('a'));
        assert_eq!(report.moved[0].new, digest('e'));
        assert_eq!(
            report.moved[0].platforms["linux/amd64"],
            (Some(digest('b')), Some(digest('f')))
        );
        assert_eq!(report.added[0].name, "docker.io/library/new:1");
        assert_eq!(report.removed[0].name, "docker.io/library/gone:1");
        assert_eq!(report.relocated, vec!["docker.io/library/same:1"]);
        assert!(CheckReport::compare(&new, &new).is_clean());
    }
}
