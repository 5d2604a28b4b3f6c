//! Language packages: Python distributions (`<dir>/<name>-<version>.dist-info/METADATA`, the
//! core metadata's `Name` and `Version` headers), Ruby gems
//! (`<dir>/specifications/<name>-<version>.gemspec`, the `s.name = ` / `s.version = ` lines
//! RubyGems writes) and npm packages (`<dir>/node_modules/[@scope/]<name>/package.json`, its
//! `name` and `version`). Each package's [`Package::location`] is the directory that holds
//! the metadata (`site-packages`, `node_modules`, the gem directory), so copies of one package in
//! two places are two packages.

use super::{Ecosystem, Package};

/// Why a language metadata file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LanguageError {
    /// A required field (`Name`/`Version`, `name`/`version`) is missing or empty.
    #[error("{file}: no {field}")]
    MissingField {
        /// The metadata file's kind (`METADATA`, `gemspec`, `package.json`).
        file: &'static str,
        /// The field.
        field: &'static str,
    },
    /// `package.json` is not a JSON object.
    #[error("package.json: {0}")]
    Json(String),
}

/// The package directory of `<...>/node_modules/<name>` or `<...>/node_modules/@scope/<name>`,
/// as `(node_modules dir, package name)`.
pub fn npm_package_dir(dir: &str) -> Option<(&str, String)> {
    let (parent, name) = dir.rsplit_once('/')?;
    if name.is_empty() || name.starts_with('.') {
        return None;
    }
    if parent == "node_modules" || parent.ends_with("/node_modules") {
        return Some((parent, name.to_owned()));
    }
    let (grand, scope) = parent.rsplit_once('/')?;
    if scope.starts_with('@') && (grand == "node_modules" || grand.ends_with("/node_modules")) {
        return Some((grand, format!("{scope}/{name}")));
    }
    None
}

/// `Name` and `Version` from a dist-info `METADATA` (email-header format: headers end at the
/// first blank line).
///
/// # Errors
/// [`LanguageError::MissingField`] when either header is missing.
pub fn parse_python_metadata(path: &str, bytes: &[u8]) -> Result<Package, LanguageError> {
    let text = String::from_utf8_lossy(bytes);
    let mut name = None;
    let mut version = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if let Some((key, value)) = line.split_once(':') {
            match key.to_ascii_lowercase().as_str() {
                "name" if name.is_none() => name = Some(value.trim().to_owned()),
                "version" if version.is_none() => version = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    let missing = |field| LanguageError::MissingField {
        file: "METADATA",
        field,
    };
    let location = path
        .rsplit_once('/')
        .and_then(|(dist_info, _)| dist_info.rsplit_once('/'))
        .map(|(dir, _)| dir.to_owned())
        .unwrap_or_default();
    Ok(Package {
        ecosystem: Ecosystem::Python,
        name: name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| missing("Name"))?,
        version: version
            .filter(|v| !v.is_empty())
            .ok_or_else(|| missing("Version"))?,
        architecture: None,
        source: None,
        location: Some(location),
    })
}

/// Name and version from a RubyGems specification (`s.name = "rack".freeze`,
/// `s.version = "3.0.8"`), falling back to the file name `<name>-<version>.gemspec`.
///
/// # Errors
/// [`LanguageError::MissingField`] when neither the file nor its name gives both.
pub fn parse_gemspec(path: &str, bytes: &[u8]) -> Result<Package, LanguageError> {
    let text = String::from_utf8_lossy(bytes);
    let mut name = None;
    let mut version = None;
    for line in text.lines() {
        let line = line.trim();
        let Some((lhs, rhs)) = line.split_once('=') else {
            continue;
        };
        let field = match lhs.trim().rsplit_once('.') {
            Some((_, f)) => f.trim(),
            None => continue,
        };
        let quoted = rhs
            .trim()
            .strip_prefix('"')
            .and_then(|r| r.split_once('"'))
            .map(|(v, _)| v.to_owned());
        match field {
            "name" if name.is_none() => name = quoted,
            "version" if version.is_none() => version = quoted,
            _ => {}
        }
    }
    let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
    let stem = file.strip_suffix(".gemspec").unwrap_or(file);
    // `name-with-dashes-1.2.3`: the version is after the last dash followed by a digit.
    let from_file = stem
        .char_indices()
        .rfind(|&(i, c)| c == '-' && stem[i + 1..].starts_with(|d: char| d.is_ascii_digit()))
        .map(|(i, _)| (stem[..i].to_owned(), stem[i + 1..].to_owned()));
    let (name, version) = match (name, version, from_file) {
        (Some(n), Some(v), _) => (n, v),
        (n, v, Some((fname, fversion))) => (n.unwrap_or(fname), v.unwrap_or(fversion)),
        (None, _, None) => {
            return Err(LanguageError::MissingField {
                file: "gemspec",
                field: "name",
            })
        }
        (Some(_), None, None) => {
            return Err(LanguageError::MissingField {
                file: "gemspec",
                field: "version",
            })
        }
    };
    let location = dir.strip_suffix("specifications").unwrap_or(dir);
    Ok(Package {
        ecosystem: Ecosystem::Ruby,
        name,
        version,
        architecture: None,
        source: None,
        location: Some(location.trim_end_matches('/').to_owned()),
    })
}

/// `name` and `version` of an npm `package.json`; the name falls back to the directory name.
///
/// # Errors
/// [`LanguageError::Json`] for invalid JSON, [`LanguageError::MissingField`] without a version.
pub fn parse_npm_package_json(path: &str, bytes: &[u8]) -> Result<Package, LanguageError> {
    #[derive(serde::Deserialize)]
    struct PackageJson {
        name: Option<serde_json::Value>,
        version: Option<serde_json::Value>,
    }
    let parsed: PackageJson =
        serde_json::from_slice(bytes).map_err(|e| LanguageError::Json(e.to_string()))?;
    let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    let (location, dir_name) = npm_package_dir(dir).unwrap_or(("", String::new()));
    let name = parsed
        .name
        .and_then(|v| v.as_str().map(str::to_owned))
        .filter(|n| !n.is_empty())
        .unwrap_or(dir_name);
    let version = parsed
        .version
        .and_then(|v| v.as_str().map(str::to_owned))
        .filter(|v| !v.is_empty())
        .ok_or(LanguageError::MissingField {
            file: "package.json",
            field: "version",
        })?;
    Ok(Package {
        ecosystem: Ecosystem::Npm,
        name,
        version,
        architecture: None,
        source: None,
        location: Some(location.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_metadata() {
        let text = "Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\nSummary: HTTP\n\nVersion: not-this\n";
        let p = parse_python_metadata(
            "usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA",
            text.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (p.name.as_str(), p.version.as_str()),
            ("requests", "2.31.0")
        );
        assert_eq!(p.location.as_deref(), Some("usr/lib/python3/dist-packages"));
        assert!(parse_python_metadata("a/x.dist-info/METADATA", b"Name: x\n").is_err());
    }

    #[test]
    fn gemspec() {
        let text = "# stub\nGem::Specification.new do |s|\n  s.name = \"rack\".freeze\n  s.version = \"3.0.8\"\nend\n";
        let p = parse_gemspec(
            "usr/local/bundle/specifications/rack-3.0.8.gemspec",
            text.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.name.as_str(), p.version.as_str()), ("rack", "3.0.8"));
        assert_eq!(p.location.as_deref(), Some("usr/local/bundle"));
        let p = parse_gemspec("x/specifications/net-http-0.4.1.gemspec", b"")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.name.as_str(), p.version.as_str()), ("net-http", "0.4.1"));
    }

    #[test]
    fn npm() {
        let p = parse_npm_package_json(
            "app/node_modules/@babel/core/package.json",
            br#"{"name":"@babel/core","version":"7.23.0"}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.name, "@babel/core");
        assert_eq!(p.location.as_deref(), Some("app/node_modules"));
        let p = parse_npm_package_json("node_modules/x/package.json", br#"{"version":"1.0.0"}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.name, "x");
        assert!(parse_npm_package_json("node_modules/x/package.json", b"{").is_err());
        assert!(parse_npm_package_json("node_modules/x/package.json", b"{}").is_err());
    }
}
