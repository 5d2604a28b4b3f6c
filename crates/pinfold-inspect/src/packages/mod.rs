//! The packages installed in an image's root filesystem, read from each package manager's own
//! database, so `pinfold diff` can say which packages changed between two images.
//!
//! OS package managers: dpkg ([`dpkg`]: `var/lib/dpkg/status` and distroless `status.d/`),
//! apk ([`apk`]: `lib/apk/db/installed`) and rpm ([`rpm`]: the sqlite rpmdb). Language
//! packages: Python `*.dist-info/METADATA`, Ruby `specifications/*.gemspec` and npm
//! `node_modules/*/package.json` ([`language`]).
//!
//! [`DbKind::classify`] says whether a path in a layer is one of these databases, and
//! [`parse_db`] turns its bytes into [`Package`]s. Every input comes from untrusted layers:
//! OS databases are size-bounded and a malformed one is an error ([`PackageError`]); a
//! language metadata file that cannot be read is skipped instead, because broken fixtures under
//! `node_modules` are common and must not make a whole image unreadable.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

pub mod apk;
pub mod dpkg;
pub mod language;
pub mod rpm;

/// Largest OS package database accepted (dpkg status, apk installed, rpmdb.sqlite). A full
/// Debian desktop's dpkg status is about 5 MiB, a Fedora workstation's rpmdb about 100 MiB;
/// container images are far below both.
pub const MAX_OS_DB_BYTES: u64 = dpkg::MAX_FILE_BYTES as u64;

/// Largest language metadata file read (`METADATA`, `.gemspec`, `package.json`); bigger ones are
/// skipped (a `METADATA` embedding a long README can reach hundreds of KiB).
pub const MAX_LANGUAGE_FILE_BYTES: u64 = 1024 * 1024;

/// Which package manager a package belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ecosystem {
    /// Debian / Ubuntu (dpkg).
    Dpkg,
    /// Alpine (apk).
    Apk,
    /// Red Hat family, SUSE (rpm).
    Rpm,
    /// Python distributions (`*.dist-info`).
    Python,
    /// Ruby gems.
    Ruby,
    /// npm packages.
    Npm,
}

impl Ecosystem {
    /// The name used in reports (`dpkg`, `apk`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Dpkg => "dpkg",
            Ecosystem::Apk => "apk",
            Ecosystem::Rpm => "rpm",
            Ecosystem::Python => "python",
            Ecosystem::Ruby => "ruby",
            Ecosystem::Npm => "npm",
        }
    }

    /// OS package managers, whose databases are bounded strictly and must parse.
    pub fn is_os(self) -> bool {
        matches!(self, Ecosystem::Dpkg | Ecosystem::Apk | Ecosystem::Rpm)
    }
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Package manager.
    pub ecosystem: Ecosystem,
    /// Package name as the manager spells it.
    pub name: String,
    /// Installed version, as written in the database (rpm: `[epoch:]version-release`).
    pub version: String,
    /// Architecture, for OS packages (`amd64`, `x86_64`, `all`, `noarch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// Source package, when the database names one (dpkg `Source`, rpm source rpm, apk origin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// For language packages: the directory that holds them (`usr/lib/python3/dist-packages`,
    /// `app/node_modules`), since one image may hold several copies of a package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl Package {
    /// What identifies "the same package" in two images: ecosystem, name, architecture and
    /// location (so `libc6:amd64` and `libc6:i386` are two packages).
    pub fn key(&self) -> PackageKey {
        PackageKey {
            ecosystem: self.ecosystem,
            name: self.name.clone(),
            architecture: self.architecture.clone(),
            location: self.location.clone(),
        }
    }
}

/// The identity of a package across images; see [`Package::key`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PackageKey {
    /// Package manager.
    pub ecosystem: Ecosystem,
    /// Name.
    pub name: String,
    /// Architecture (OS packages).
    pub architecture: Option<String>,
    /// Directory (language packages).
    pub location: Option<String>,
}

/// Which database a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DbKind {
    /// `var/lib/dpkg/status`.
    DpkgStatus,
    /// One file of `var/lib/dpkg/status.d/`.
    DpkgStatusD,
    /// `lib/apk/db/installed`.
    ApkInstalled,
    /// `var/lib/rpm/rpmdb.sqlite` or `usr/lib/sysimage/rpm/rpmdb.sqlite`.
    RpmSqlite,
    /// `<dir>/<name>.dist-info/METADATA`.
    PythonMetadata,
    /// `<dir>/specifications/<name>.gemspec`.
    RubyGemspec,
    /// `<dir>/node_modules/[@scope/]<name>/package.json`.
    NpmPackageJson,
}

impl DbKind {
    /// The kind of package database at `path` (normalised: relative, `/`-separated, no `.` or
    /// `..` components), if it is one.
    pub fn classify(path: &str) -> Option<DbKind> {
        match path {
            dpkg::STATUS_PATH => return Some(DbKind::DpkgStatus),
            apk::INSTALLED_PATH => return Some(DbKind::ApkInstalled),
            p if rpm::SQLITE_PATHS.contains(&p) => return Some(DbKind::RpmSqlite),
            _ => {}
        }
        if let Some(name) = path
            .strip_prefix(dpkg::STATUS_D_DIR)
            .and_then(|r| r.strip_prefix('/'))
        {
            // distroless writes `<pkg>` and `<pkg>.md5sums`; only the former is a stanza file.
            return (!name.is_empty() && !name.contains('/') && !name.ends_with(".md5sums"))
                .then_some(DbKind::DpkgStatusD);
        }
        let (parent, file) = path.rsplit_once('/')?;
        if file == "METADATA" && parent.ends_with(".dist-info") {
            return Some(DbKind::PythonMetadata);
        }
        if file.ends_with(".gemspec")
            && (parent == "specifications" || parent.ends_with("/specifications"))
        {
            return Some(DbKind::RubyGemspec);
        }
        if file == "package.json" && language::npm_package_dir(parent).is_some() {
            return Some(DbKind::NpmPackageJson);
        }
        None
    }

    /// The ecosystem whose packages this database lists.
    pub fn ecosystem(self) -> Ecosystem {
        match self {
            DbKind::DpkgStatus | DbKind::DpkgStatusD => Ecosystem::Dpkg,
            DbKind::ApkInstalled => Ecosystem::Apk,
            DbKind::RpmSqlite => Ecosystem::Rpm,
            DbKind::PythonMetadata => Ecosystem::Python,
            DbKind::RubyGemspec => Ecosystem::Ruby,
            DbKind::NpmPackageJson => Ecosystem::Npm,
        }
    }

    /// The size limit for this kind of file.
    pub fn size_limit(self) -> u64 {
        if self.ecosystem().is_os() {
            MAX_OS_DB_BYTES
        } else {
            MAX_LANGUAGE_FILE_BYTES
        }
    }
}

/// Why a package database could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    /// A dpkg status file or `status.d` file is malformed.
    #[error("dpkg status: {0}")]
    Dpkg(#[from] dpkg::StatusError),
    /// The apk installed database is malformed.
    #[error("apk database: {0}")]
    Apk(#[from] apk::ApkError),
    /// The rpm database is malformed.
    #[error("rpm database: {0}")]
    Rpm(#[from] rpm::RpmError),
    /// A language metadata file is malformed.
    #[error("{0}")]
    Language(#[from] language::LanguageError),
}

/// Parses the database of `kind` found at `path` (the path gives language packages their
/// location and name fallback).
///
/// # Errors
/// [`PackageError`] naming what is malformed.
pub fn parse_db(kind: DbKind, path: &str, bytes: &[u8]) -> Result<Vec<Package>, PackageError> {
    Ok(match kind {
        DbKind::DpkgStatus | DbKind::DpkgStatusD => dpkg::parse_status(bytes)?
            .into_iter()
            .map(|p| Package {
                ecosystem: Ecosystem::Dpkg,
                name: p.name,
                version: p.version.as_str().to_owned(),
                architecture: Some(p.architecture),
                source: p.source.map(|(name, _)| name),
                location: None,
            })
            .collect(),
        DbKind::ApkInstalled => apk::parse_installed(bytes)?,
        DbKind::RpmSqlite => rpm::parse_sqlite(bytes)?,
        DbKind::PythonMetadata => vec![language::parse_python_metadata(path, bytes)?],
        DbKind::RubyGemspec => vec![language::parse_gemspec(path, bytes)?],
        DbKind::NpmPackageJson => vec![language::parse_npm_package_json(path, bytes)?],
    })
}

/// Orders two versions of one package by its ecosystem's rules: dpkg's (Debian Policy
/// §5.6.12, [`pinfold_apt::DebVersion`]) for dpkg, rpm's `rpmvercmp` over
/// `[epoch:]version-release` for rpm, and the same segment comparison for the others (it
/// orders apk, PEP 440, semver and gem versions correctly in the common cases: numeric
/// segments compare as numbers, `~` sorts before anything).
///
/// `None` when a dpkg version does not parse.
pub fn compare_versions(ecosystem: Ecosystem, a: &str, b: &str) -> Option<Ordering> {
    match ecosystem {
        Ecosystem::Dpkg => {
            let a: pinfold_apt::DebVersion = a.parse().ok()?;
            let b: pinfold_apt::DebVersion = b.parse().ok()?;
            Some(a.cmp(&b))
        }
        Ecosystem::Rpm => Some(rpm::compare_evr(a, b)),
        _ => Some(rpm::rpmvercmp(a, b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_paths() {
        let cases = [
            ("var/lib/dpkg/status", Some(DbKind::DpkgStatus)),
            ("var/lib/dpkg/status-old", None),
            ("var/lib/dpkg/status.d/libssl3", Some(DbKind::DpkgStatusD)),
            ("var/lib/dpkg/status.d/libssl3.md5sums", None),
            ("var/lib/dpkg/status.d/x/y", None),
            ("lib/apk/db/installed", Some(DbKind::ApkInstalled)),
            ("var/lib/rpm/rpmdb.sqlite", Some(DbKind::RpmSqlite)),
            ("usr/lib/sysimage/rpm/rpmdb.sqlite", Some(DbKind::RpmSqlite)),
            (
                "usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA",
                Some(DbKind::PythonMetadata),
            ),
            ("usr/lib/python3/METADATA", None),
            (
                "usr/local/bundle/specifications/rack-3.0.8.gemspec",
                Some(DbKind::RubyGemspec),
            ),
            ("app/rack.gemspec", None),
            (
                "app/node_modules/express/package.json",
                Some(DbKind::NpmPackageJson),
            ),
            (
                "app/node_modules/@babel/core/package.json",
                Some(DbKind::NpmPackageJson),
            ),
            ("app/node_modules/express/lib/package.json", None),
            ("app/package.json", None),
        ];
        for (path, want) in cases {
            assert_eq!(DbKind::classify(path), want, "{path}");
        }
    }

    #[test]
    fn version_order_per_ecosystem() {
        use Ordering::*;
        let cases = [
            (
                Ecosystem::Dpkg,
                "3.0.11-1~deb12u2",
                "3.0.13-1~deb12u1",
                Less,
            ),
            (Ecosystem::Dpkg, "20240203", "20230311", Greater),
            (Ecosystem::Dpkg, "1:1.0", "2.0", Greater),
            (Ecosystem::Rpm, "1:1.0-1", "2.0-1", Greater),
            (Ecosystem::Rpm, "3.0.7-25.el9", "3.0.7-24.el9", Greater),
            (Ecosystem::Apk, "3.1.4-r5", "3.1.4-r6", Less),
            (Ecosystem::Python, "2.31.0", "2.4.0", Greater),
            (Ecosystem::Npm, "4.18.2", "4.18.2", Equal),
        ];
        for (eco, a, b, want) in cases {
            assert_eq!(compare_versions(eco, a, b), Some(want), "{eco:?} {a} {b}");
        }
        assert_eq!(compare_versions(Ecosystem::Dpkg, "a:1", "1"), None);
    }
}
