//! Tar entry paths from untrusted layers, checked and put in one form: relative,
//! `/`-separated, no `.` or empty components (`./etc//passwd` → `etc/passwd`).
//!
//! A layer is applied on top of a root directory, so an entry that names anything outside it
//! (`../x`, `a/../../x`, `/etc/passwd`) is refused rather than silently re-rooted: real layer
//! tools never write such entries, and a diff that hid them would hide an attack. `..` is
//! refused even where it would stay inside (`a/../b`), as Docker's own layer code does.

/// Why an entry path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnsafePath {
    /// The path starts with `/`.
    Absolute,
    /// The path has a `..` component.
    ParentDir,
    /// The path contains a NUL byte.
    Nul,
}

impl std::fmt::Display for UnsafePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UnsafePath::Absolute => "absolute path",
            UnsafePath::ParentDir => "path with a `..` component",
            UnsafePath::Nul => "path with a NUL byte",
        })
    }
}

/// The normalised form of a tar entry path; `Ok("")` for the root directory itself (`./`).
///
/// # Errors
/// [`UnsafePath`] when the path is absolute, has a `..` component or a NUL.
pub fn normalize(raw: &str) -> Result<String, UnsafePath> {
    if raw.contains('\0') {
        return Err(UnsafePath::Nul);
    }
    if raw.starts_with('/') {
        return Err(UnsafePath::Absolute);
    }
    let mut out = String::with_capacity(raw.len());
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(UnsafePath::ParentDir),
            p => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(p);
            }
        }
    }
    Ok(out)
}

/// The parent directory of a normalised path (`""` for a top-level name).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(p, _)| p).unwrap_or("")
}

/// `dir/name`, or `name` when `dir` is the root.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// The normalised form of a symlink `target` found in directory `dir`, resolved lexically
/// (`..` pops a component); `None` when it climbs above the root or is absolute.
pub fn normalize_within(dir: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_forms() {
        for (raw, want) in [
            ("etc/passwd", "etc/passwd"),
            ("./etc/passwd", "etc/passwd"),
            ("./", ""),
            (".", ""),
            ("usr//lib/./x/", "usr/lib/x"),
            ("..foo/bar..", "..foo/bar.."),
        ] {
            assert_eq!(normalize(raw), Ok(want.to_owned()), "{raw}");
        }
    }

    #[test]
    fn unsafe_forms() {
        for (raw, want) in [
            ("/etc/passwd", UnsafePath::Absolute),
            ("../evil", UnsafePath::ParentDir),
            ("a/../../evil", UnsafePath::ParentDir),
            ("./a/..", UnsafePath::ParentDir),
            ("a\0b", UnsafePath::Nul),
        ] {
            assert_eq!(normalize(raw), Err(want), "{raw}");
        }
    }

    #[test]
    fn within() {
        assert_eq!(
            normalize_within("a/b", "../c/layer.tar"),
            Some("a/c/layer.tar".into())
        );
        assert_eq!(normalize_within("a", "../../x"), None);
        assert_eq!(normalize_within("a", "/x"), None);
    }

    #[test]
    fn parent_and_join() {
        assert_eq!(parent("a/b/c"), "a/b");
        assert_eq!(parent("a"), "");
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("a/b", "c"), "a/b/c");
    }
}
