//! Parsing of `/v2/` paths into typed routes, once, before any handler runs.
//!
//! Repository names contain `/`, so the router cannot split the path; this parser reads the
//! resource from the right-hand end (`…/blobs/uploads/<id>`, `…/manifests/<ref>`, …) and checks
//! the name against the spec grammar, answering NAME_INVALID before anything else happens.

use pinfold_oci::RepoName;

use super::error::{ErrorCode, OciError};

/// A `/v2/` resource, with its repository name already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V2Route {
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags {
        /// Repository.
        repo: RepoName,
    },
    /// `/v2/<name>/manifests/<reference>` (reference unparsed: errors differ per method)
    Manifest {
        /// Repository.
        repo: RepoName,
        /// Tag or digest text.
        reference: String,
    },
    /// `/v2/<name>/blobs/<digest>`
    Blob {
        /// Repository.
        repo: RepoName,
        /// Digest text.
        digest: String,
    },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart {
        /// Repository.
        repo: RepoName,
    },
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload {
        /// Repository.
        repo: RepoName,
        /// Upload id text.
        id: String,
    },
    /// `/v2/<name>/referrers/<digest>`
    Referrers {
        /// Repository.
        repo: RepoName,
        /// Digest text.
        digest: String,
    },
}

impl V2Route {
    /// The repository the route names (`None` for the catalog).
    pub fn repo_mut(&mut self) -> Option<&mut RepoName> {
        match self {
            V2Route::Catalog => None,
            V2Route::Tags { repo }
            | V2Route::Manifest { repo, .. }
            | V2Route::Blob { repo, .. }
            | V2Route::UploadStart { repo }
            | V2Route::Upload { repo, .. }
            | V2Route::Referrers { repo, .. } => Some(repo),
        }
    }
}

/// Parses the part of the path after `/v2/`.
///
/// # Errors
/// NAME_INVALID for a bad repository name in a recognised route; NAME_UNKNOWN-free 404
/// (`None`) is left to the caller for paths that match no route.
pub fn parse(path: &str) -> Result<Option<V2Route>, OciError> {
    if path == "_catalog" {
        return Ok(Some(V2Route::Catalog));
    }
    let segments: Vec<&str> = path.split('/').collect();
    let n = segments.len();
    let name = |upto: usize| -> Result<RepoName, OciError> {
        let text = segments[..upto].join("/");
        text.parse::<RepoName>()
            .map_err(|e| OciError::new(ErrorCode::NameInvalid).detail(e.to_string()))
    };
    if n >= 3 && segments[n - 3] == "blobs" && segments[n - 2] == "uploads" && n > 3 {
        let id = segments[n - 1];
        return Ok(Some(if id.is_empty() {
            V2Route::UploadStart { repo: name(n - 3)? }
        } else {
            V2Route::Upload {
                repo: name(n - 3)?,
                id: id.to_owned(),
            }
        }));
    }
    // `/v2/<name>/blobs/uploads` without the trailing slash: accepted like distribution does.
    if n >= 3 && segments[n - 2] == "blobs" && segments[n - 1] == "uploads" {
        return Ok(Some(V2Route::UploadStart { repo: name(n - 2)? }));
    }
    if n >= 3 && segments[n - 2] == "tags" && segments[n - 1] == "list" {
        return Ok(Some(V2Route::Tags { repo: name(n - 2)? }));
    }
    if n >= 3 {
        let last = segments[n - 1].to_owned();
        let route = match segments[n - 2] {
            "manifests" => V2Route::Manifest {
                repo: name(n - 2)?,
                reference: last,
            },
            "blobs" => V2Route::Blob {
                repo: name(n - 2)?,
                digest: last,
            },
            "referrers" => V2Route::Referrers {
                repo: name(n - 2)?,
                digest: last,
            },
            _ => return Ok(None),
        };
        return Ok(Some(route));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_route() {
        let table: Vec<(&str, V2Route)> = vec![
            ("_catalog", V2Route::Catalog),
            ("a/tags/list", V2Route::Tags { repo: repo("a") }),
            (
                "a/b/c/tags/list",
                V2Route::Tags {
                    repo: repo("a/b/c"),
                },
            ),
            (
                "lib/ruby/manifests/3.3",
                V2Route::Manifest {
                    repo: repo("lib/ruby"),
                    reference: "3.3".into(),
                },
            ),
            (
                "x/blobs/sha256:ab",
                V2Route::Blob {
                    repo: repo("x"),
                    digest: "sha256:ab".into(),
                },
            ),
            ("x/blobs/uploads/", V2Route::UploadStart { repo: repo("x") }),
            ("x/blobs/uploads", V2Route::UploadStart { repo: repo("x") }),
            (
                "x/y/blobs/uploads/abc",
                V2Route::Upload {
                    repo: repo("x/y"),
                    id: "abc".into(),
                },
            ),
            (
                "x/referrers/sha256:ab",
                V2Route::Referrers {
                    repo: repo("x"),
                    digest: "sha256:ab".into(),
                },
            ),
            // names may contain the resource words themselves
            (
                "blobs/manifests/manifests/v1",
                V2Route::Manifest {
                    repo: repo("blobs/manifests"),
                    reference: "v1".into(),
                },
            ),
            (
                "a/blobs/blobs/uploads/id",
                V2Route::Upload {
                    repo: repo("a/blobs"),
                    id: "id".into(),
                },
            ),
            ("tags/tags/list", V2Route::Tags { repo: repo("tags") }),
        ];
        for (path, want) in table {
            assert_eq!(parse(path).unwrap(), Some(want), "{path}");
        }
    }

    #[test]
    fn rejects_bad_names_and_unknown_paths() {
        for path in [
            "UP/manifests/x",
            "a/../b/manifests/x",
            "../manifests/x",
            "a//b/blobs/sha256:x",
            "-a/tags/list",
        ] {
            let err = parse(path).unwrap_err();
            assert_eq!(err.code(), ErrorCode::NameInvalid, "{path}");
        }
        for path in ["", "a", "a/b", "a/things/x", "manifests/x"] {
            assert_eq!(parse(path).unwrap(), None, "{path}");
        }
    }
}
