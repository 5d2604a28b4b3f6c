//! `pinfold lock`: pins every image reference of a project to a digest.
//!
//! Four steps, one module each, so the CLI (and later the server) can drive them:
//!
//! 1. [`mod@find`]: image references with file and line in Dockerfiles (`FROM`, `ARG` defaults
//!    used in `FROM`, `COPY --from=<image>`, `RUN --mount=from=<image>`), compose files
//!    (`services.*.image`) and Kubernetes manifests (every pod spec's containers), each with
//!    the exact text it came from;
//! 2. [`resolve`]: each reference to its digest, media type and per-platform digests through
//!    `pinfold-client` (any registry, the user's Docker credentials);
//! 3. [`lockfile`]: the sorted, stable `pinfold.lock` (TOML) and the comparison behind
//!    `--check`;
//! 4. [`rewrite`]: `name:tag@sha256:…` written into the files, nothing else touched.
//!
//! Nothing here writes files: the caller decides when (after every step succeeded, so bad
//! input leaves the lockfile and the sources untouched).

pub mod find;
pub mod lockfile;
pub mod resolve;
pub mod rewrite;
pub mod yaml;

use std::path::{Path, PathBuf};

pub use find::{
    find, FileKind, FindError, FindErrorKind, Findings, FoundImage, Origin, Site, Skipped,
};
pub use lockfile::{CheckReport, Location, LockedImage, Lockfile, LockfileError, Moved};
pub use resolve::{resolve_all, ResolveError, ResolveOptions, Resolved};
pub use rewrite::{Edit, RewriteError, RewritePlan};

/// Most directory entries looked at by [`discover`]: a directory this large is not a project.
const MAX_DIR_ENTRIES: usize = 100_000;

/// The files `pinfold lock` reads in `dir` when given none (not recursive): Dockerfiles
/// (`Dockerfile`, `Dockerfile.*`, `*.Dockerfile`, `Containerfile*`), compose files (`compose.y*ml`,
/// `compose.*.y*ml`, `docker-compose*.y*ml`) and every other `*.yml`/`*.yaml` (read for
/// Kubernetes objects; one without `kind` contributes nothing). Hidden files are skipped;
/// symlinks to files are followed.
/// Sorted by name.
///
/// # Errors
///
/// The I/O error of reading the directory.
pub fn discover(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)?.take(MAX_DIR_ENTRIES) {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        // `metadata` follows symlinks: a linked Dockerfile is a Dockerfile; a dangling link
        // is skipped like any other non-file.
        let is_file = std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file());
        if name.starts_with('.') || !is_file {
            continue;
        }
        if FileKind::of(Path::new(name)).is_some() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discover_takes_dockerfiles_and_yaml_only() {
        let dir = std::env::temp_dir().join(format!("pinfold-discover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub.yaml")).unwrap();
        for name in [
            "Dockerfile",
            "Dockerfile.dev",
            "compose.yaml",
            "deploy.yml",
            "README.md",
            ".hidden.yaml",
        ] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        let found: Vec<String> = discover(&dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            found,
            vec!["Dockerfile", "Dockerfile.dev", "compose.yaml", "deploy.yml"]
        );
    }
}
