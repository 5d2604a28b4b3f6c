//! `pinfold lock --rewrite`: pins references in place as `name:tag@sha256:…`.
//!
//! Only the bytes of each reference's site change; everything else in the file (comments,
//! quoting, indentation, line endings) stays byte for byte. A reference that already carries a
//! digest is left alone, so rewriting twice changes nothing; when its tag now points elsewhere,
//! that is reported rather than silently re-pinned, because choosing the new digest is a
//! decision (`pinfold lock --check` shows the move).

use std::collections::BTreeMap;

use super::find::{FoundImage, Site, Skipped};
use super::resolve::Resolved;

/// One replacement in a file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Edit {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// Byte offset of `old` in the file.
    pub offset: usize,
    /// The text replaced.
    pub old: String,
    /// The text written.
    pub new: String,
}

/// What rewriting one file will do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewritePlan {
    /// Replacements, sorted by offset, at most one per site.
    pub edits: Vec<Edit>,
    /// References left as they are, and why.
    pub warnings: Vec<Skipped>,
}

/// Why planned edits could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RewriteError {
    /// The file no longer holds the text the edit replaces (changed since it was read).
    #[error(
        "{file}:{line}: expected {expected:?} at byte {offset}; the file changed while locking"
    )]
    Changed {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// Byte offset.
        offset: usize,
        /// The text that should be there.
        expected: String,
    },
}

/// Plans the pins for the references `found` in one file, using `resolved` (by canonical
/// reference).
pub fn plan(found: &[&FoundImage], resolved: &BTreeMap<String, Resolved>) -> RewritePlan {
    let mut plan = RewritePlan::default();
    for f in found {
        let Some(r) = resolved.get(&f.reference.to_string()) else {
            continue;
        };
        let warn = |reason: String| Skipped {
            file: f.file.clone(),
            line: f.line,
            reason,
        };
        if f.reference.digest().is_some() {
            if let Some(note) = behind_tag(f, r) {
                plan.warnings.push(warn(format!("{note}; left as is")));
            }
            continue;
        }
        let Some(Site { offset, text, line }) = &f.site else {
            plan.warnings.push(warn(format!(
                "{} is assembled from variables; pin the variable's default by hand to {}",
                f.written, r.digest
            )));
            continue;
        };
        // Keep the tag readable next to the digest; an implicit `latest` is spelled out.
        let last = text.rsplit('/').next().unwrap_or(text);
        let tag = if last.contains(':') { "" } else { ":latest" };
        let new = format!("{text}{tag}@{}", r.digest);
        let edit = Edit {
            file: f.file.clone(),
            line: *line,
            offset: *offset,
            old: text.clone(),
            new,
        };
        // One site can serve several references (one ARG default used by two stages).
        if !plan.edits.contains(&edit) {
            plan.edits.push(edit);
        }
    }
    plan.edits.sort_by_key(|e| e.offset);
    plan
}

/// `X is pinned to D but tag T now points to N` when `found` carries a digest that its tag no
/// longer points to (see [`Resolved::pin_behind_tag`]).
pub fn behind_tag(found: &FoundImage, resolved: &Resolved) -> Option<String> {
    let tag = found.reference.tag()?;
    let now = resolved.pin_behind_tag()?;
    Some(format!(
        "{} is pinned to {} but tag {tag} now points to {now}",
        found.written, resolved.digest
    ))
}

/// Applies `edits` (sorted by offset, not overlapping, as [`plan`] makes them) to `text`.
///
/// # Errors
///
/// [`RewriteError::Changed`] when `text` does not hold an edit's old text at its offset (or
/// edits overlap); nothing is applied then.
pub fn apply(text: &str, edits: &[Edit]) -> Result<String, RewriteError> {
    let mut out = String::with_capacity(text.len() + edits.len() * 80);
    let mut at = 0;
    for e in edits {
        let end = e.offset + e.old.len();
        if e.offset < at || text.get(e.offset..end) != Some(e.old.as_str()) {
            return Err(RewriteError::Changed {
                file: e.file.clone(),
                line: e.line,
                offset: e.offset,
                expected: e.old.clone(),
            });
        }
        out.push_str(&text[at..e.offset]);
        out.push_str(&e.new);
        at = end;
    }
    out.push_str(&text[at..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::find::{find, FileKind};

    fn digest(c: char) -> pinfold_oci::Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    fn resolved_all(
        found: &[FoundImage],
        d: char,
        tag: Option<char>,
    ) -> BTreeMap<String, Resolved> {
        found
            .iter()
            .map(|f| {
                (
                    f.reference.to_string(),
                    Resolved {
                        digest: f.reference.digest().cloned().unwrap_or_else(|| digest(d)),
                        media_type: String::new(),
                        platforms: BTreeMap::new(),
                        tag_digest: tag.map(digest),
                    },
                )
            })
            .collect()
    }

    fn rewrite(file: &str, kind: FileKind, text: &str) -> (String, RewritePlan) {
        let found = find(file, kind, text).unwrap().images;
        let refs: Vec<&FoundImage> = found.iter().collect();
        let plan = plan(&refs, &resolved_all(&found, 'a', None));
        (apply(text, &plan.edits).unwrap(), plan)
    }

    #[test]
    fn dockerfile_pins_in_place_and_is_idempotent() {
        let text = "# keep me\r\nARG BASE=ruby:3.3\r\nFROM ${BASE} AS b\r\nFROM $BASE\r\nCOPY --from=\"nginx\" /a /a\r\nFROM  127.0.0.1:5000/x/y:1  AS c\r\nFROM debian:${V:-12}\r\n";
        let (once, plan) = rewrite("Dockerfile", FileKind::Dockerfile, text);
        let d = digest('a');
        assert_eq!(
            once,
            format!(
                "# keep me\r\nARG BASE=ruby:3.3@{d}\r\nFROM ${{BASE}} AS b\r\nFROM $BASE\r\nCOPY --from=\"nginx:latest@{d}\" /a /a\r\nFROM  127.0.0.1:5000/x/y:1@{d}  AS c\r\nFROM debian:${{V:-12}}\r\n"
            )
        );
        assert_eq!(plan.edits.len(), 3, "one edit for the shared ARG default");
        assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
        assert!(plan.warnings[0].reason.contains("variables"));
        let (twice, plan) = rewrite("Dockerfile", FileKind::Dockerfile, &once);
        assert_eq!(twice, once);
        assert!(plan.edits.is_empty());
    }

    #[test]
    fn yaml_pins_keep_quotes_and_comments() {
        let text = "services:\n  web:\n    image: \"nginx:1.25\"   # front\n  db: {image: 'postgres:16'}\n";
        let (once, _) = rewrite("compose.yaml", FileKind::Yaml, text);
        let d = digest('a');
        assert_eq!(
            once,
            format!("services:\n  web:\n    image: \"nginx:1.25@{d}\"   # front\n  db: {{image: 'postgres:16@{d}'}}\n")
        );
        assert_eq!(rewrite("compose.yaml", FileKind::Yaml, &once).0, once);
    }

    #[test]
    fn a_pin_behind_its_tag_is_reported_not_changed() {
        let text = format!("FROM ruby:3.3@{}\n", digest('a'));
        let found = find("D", FileKind::Dockerfile, &text).unwrap().images;
        let refs: Vec<&FoundImage> = found.iter().collect();
        let plan = plan(&refs, &resolved_all(&found, 'a', Some('b')));
        assert!(plan.edits.is_empty());
        assert!(
            plan.warnings[0].reason.contains("now points to"),
            "{:?}",
            plan.warnings
        );
    }

    #[test]
    fn apply_refuses_a_changed_file() {
        let edit = Edit {
            file: "D".into(),
            line: 1,
            offset: 5,
            old: "ruby:3.3".into(),
            new: "x".into(),
        };
        assert!(apply("FROM ruby:3.4\n", std::slice::from_ref(&edit)).is_err());
        assert!(apply("FROM", &[edit]).is_err());
    }
}
