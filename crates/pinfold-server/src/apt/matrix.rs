//! Parsing an upload path: `<repo>/<dir>/.../<file>.deb` with Artifactory matrix parameters
//! (`;deb.distribution=D;deb.component=C;deb.architecture=A`) on any segment. Parsed once,
//! before any handler logic; everything that becomes a path or an index name is checked here.

use pinfold_apt::Architecture;

use super::error::AptError;

/// The matrix parameters of an upload, each list deduplicated in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matrix {
    /// `deb.distribution` values (at least one).
    pub distributions: Vec<String>,
    /// `deb.component` values (at least one).
    pub components: Vec<String>,
    /// `deb.architecture` values (empty: the package's own architecture).
    pub architectures: Vec<String>,
}

/// Where an upload goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployTarget {
    /// Repository name.
    pub repo: String,
    /// Path inside the repository, without matrix parameters (`pool/h/hello_1.0_amd64.deb`).
    pub path: String,
    /// The listing parameters.
    pub matrix: Matrix,
}

/// Longest repository name, path segment and parameter value accepted.
const MAX_NAME: usize = 128;
/// Most path segments accepted.
const MAX_SEGMENTS: usize = 32;

/// Decodes `%XX` escapes. Refuses malformed escapes and non-UTF-8 results.
fn percent_decode(text: &str) -> Result<String, AptError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| AptError::bad_request(format!("malformed %-escape in {text:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| AptError::bad_request(format!("{text:?} is not UTF-8")))
}

/// A repository name: letters, digits, `.`, `_`, `-`, starting with a letter or digit.
pub fn check_repo_name(name: &str) -> Result<(), AptError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(AptError::bad_request(format!(
            "invalid repository name {name:?} (letters, digits, . _ -)"
        )))
    }
}

/// A distribution or component name: it becomes a directory under `dists/`, so one safe
/// path segment.
pub fn check_index_name(what: &str, value: &str) -> Result<(), AptError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(AptError::bad_request(format!(
            "invalid {what} {value:?} (letters, digits, . _ - +, starting with a letter or digit)"
        )))
    }
}

/// One file-name segment of an upload path.
fn check_segment(segment: &str) -> Result<(), AptError> {
    let ok = !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment.len() <= MAX_NAME
        && segment.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'~' | b':')
        });
    if ok {
        Ok(())
    } else {
        Err(AptError::bad_request(format!(
            "invalid path segment {segment:?}"
        )))
    }
}

/// A `.deb` path inside a repository (`pool/main/h/hello/hello_1.0_amd64.deb`), as a mirror's
/// upstream index names it: safe segments, not under `dists/`.
pub fn check_deb_path(path: &str) -> Result<(), AptError> {
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() > MAX_SEGMENTS || segments.first() == Some(&"dists") {
        return Err(AptError::bad_request(format!(
            "invalid package path {path:?}"
        )));
    }
    for segment in segments {
        check_segment(segment)?;
    }
    Ok(())
}

fn push_unique(list: &mut Vec<String>, value: String) {
    if !list.contains(&value) {
        list.push(value);
    }
}

/// Parses `<repo>/<path>` with matrix parameters (the part of the URL path after
/// `/artifactory/` or `/apt/`, still percent-encoded).
///
/// # Errors
/// 400 with a message naming the problem: a bad repository name or segment, `..`, a path
/// under `dists/`, a file not ending in `.deb`, an unknown matrix key, an empty value, or a
/// missing `deb.distribution` / `deb.component`.
pub fn parse_deploy_path(raw: &str) -> Result<DeployTarget, AptError> {
    let mut matrix = Matrix::default();
    let mut names = Vec::new();
    let segments: Vec<&str> = raw.split('/').collect();
    if segments.len() > MAX_SEGMENTS + 1 {
        return Err(AptError::bad_request("upload path has too many segments"));
    }
    for segment in segments {
        let mut parts = segment.split(';');
        let name = percent_decode(parts.next().unwrap_or_default())?;
        for param in parts {
            if param.is_empty() {
                continue;
            }
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            let key = percent_decode(key)?;
            let value = percent_decode(value)?;
            let list = match key.as_str() {
                "deb.distribution" => &mut matrix.distributions,
                "deb.component" => &mut matrix.components,
                "deb.architecture" => &mut matrix.architectures,
                other => {
                    return Err(AptError::bad_request(format!(
                        "unknown matrix parameter {other:?} (known: deb.distribution, deb.component, deb.architecture)"
                    )))
                }
            };
            for v in value.split(',') {
                let v = v.trim();
                if v.is_empty() {
                    return Err(AptError::bad_request(format!(
                        "matrix parameter {key} has an empty value"
                    )));
                }
                match key.as_str() {
                    "deb.distribution" => check_index_name("distribution", v)?,
                    "deb.component" => check_index_name("component", v)?,
                    _ => {
                        v.parse::<Architecture>().map_err(|_| {
                            AptError::bad_request(format!("invalid architecture {v:?}"))
                        })?;
                    }
                }
                push_unique(list, v.to_owned());
            }
        }
        names.push(name);
    }
    let mut names = names.into_iter();
    let repo = names.next().unwrap_or_default();
    check_repo_name(&repo)?;
    let rest: Vec<String> = names.collect();
    if rest.is_empty() || rest.iter().all(String::is_empty) {
        return Err(AptError::bad_request("the upload path names no file"));
    }
    for segment in &rest {
        check_segment(segment)?;
    }
    if rest.first().is_some_and(|s| s == "dists") {
        return Err(AptError::bad_request(
            "dists/ holds generated indices; upload packages elsewhere (e.g. pool/)",
        ));
    }
    let path = rest.join("/");
    if !path.ends_with(".deb") {
        return Err(AptError::bad_request(format!(
            "{path} is not a .deb file name; only Debian packages are accepted"
        )));
    }
    if matrix.distributions.is_empty() {
        return Err(AptError::bad_request(
            "matrix parameter deb.distribution is required",
        ));
    }
    if matrix.components.is_empty() {
        return Err(AptError::bad_request(
            "matrix parameter deb.component is required",
        ));
    }
    Ok(DeployTarget { repo, path, matrix })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_matrix_on_any_segment_with_lists() {
        let cases = [
            (
                "ci/pool/hello_1.0_amd64.deb;deb.distribution=jammy;deb.component=non-free;deb.architecture=amd64",
                ("ci", "pool/hello_1.0_amd64.deb", v(&["jammy"]), v(&["non-free"]), v(&["amd64"])),
            ),
            (
                "ci;deb.distribution=focal,jammy/pool;deb.component=main/h/hello.deb;deb.distribution=noble;deb.distribution=jammy",
                ("ci", "pool/h/hello.deb", v(&["focal", "jammy", "noble"]), v(&["main"]), v(&[])),
            ),
            (
                "r/x%2By_1%3A2_all.deb;deb.distribution=s;deb.component=c;deb.architecture=all",
                ("r", "x+y_1:2_all.deb", v(&["s"]), v(&["c"]), v(&["all"])),
            ),
        ];
        for (raw, (repo, path, d, c, a)) in cases {
            let t = parse_deploy_path(raw).unwrap();
            assert_eq!(t.repo, repo, "{raw}");
            assert_eq!(t.path, path, "{raw}");
            assert_eq!(t.matrix.distributions, d, "{raw}");
            assert_eq!(t.matrix.components, c, "{raw}");
            assert_eq!(t.matrix.architectures, a, "{raw}");
        }
    }

    #[test]
    fn refuses_bad_paths_and_parameters() {
        let cases = [
            ("ci/a.deb;deb.distribution=s", "deb.component is required"),
            ("ci/a.deb;deb.component=c", "deb.distribution is required"),
            ("ci/a.deb;deb.distribution=;deb.component=c", "empty value"),
            (
                "ci/a.deb;deb.distribution=a,,b;deb.component=c",
                "empty value",
            ),
            (
                "ci/a.deb;deb.distribution=s;deb.component=c;deb.foo=x",
                "unknown matrix parameter \"deb.foo\"",
            ),
            (
                "ci/a.deb;deb.distribution=s;deb.component=c;release=1",
                "unknown matrix parameter",
            ),
            (
                "ci/a.deb;deb.distribution=../x;deb.component=c",
                "invalid distribution",
            ),
            (
                "ci/a.deb;deb.distribution=s;deb.component=c;deb.architecture=AMD64",
                "invalid architecture",
            ),
            (
                "ci/../a.deb;deb.distribution=s;deb.component=c",
                "invalid path segment",
            ),
            (
                "ci/%2e%2e/a.deb;deb.distribution=s;deb.component=c",
                "invalid path segment",
            ),
            (
                "ci//a.deb;deb.distribution=s;deb.component=c",
                "invalid path segment",
            ),
            (
                "ci/dists/s/Release.deb;deb.distribution=s;deb.component=c",
                "dists/",
            ),
            ("ci/a.rpm;deb.distribution=s;deb.component=c", "not a .deb"),
            (
                "-ci/a.deb;deb.distribution=s;deb.component=c",
                "invalid repository name",
            ),
            ("ci;deb.distribution=s;deb.component=c", "names no file"),
            (
                "ci/a%zz.deb;deb.distribution=s;deb.component=c",
                "malformed %-escape",
            ),
        ];
        for (raw, want) in cases {
            let err = parse_deploy_path(raw).unwrap_err();
            assert_eq!(err.status().as_u16(), 400, "{raw}");
            assert!(err.message().contains(want), "{raw}: {}", err.message());
        }
    }
}
