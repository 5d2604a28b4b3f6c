//! Finding image references, with file and line, in Dockerfiles, compose files and Kubernetes
//! manifests.
//!
//! Each reference also records its *site*: the exact text in the file that the reference came
//! from, so `--rewrite` can replace those bytes and nothing else. A reference assembled from
//! build arguments (`FROM ${REGISTRY}/app:${TAG}`) has no single site and is locked but not
//! rewritten.

use std::collections::HashMap;
use std::path::Path;

use pinfold_oci::{ImageRefError, ImageReference};

use super::yaml::{self, Node, YamlError};
use crate::dockerfile::{self, substitute, BaseImage, Body, Dockerfile, Instruction, ParseError};

/// What kind of file a path holds, decided from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A Dockerfile (`Dockerfile`, `Dockerfile.*`, `*.Dockerfile`, `Containerfile`...).
    Dockerfile,
    /// YAML: compose files and Kubernetes manifests (`*.yml`, `*.yaml`).
    Yaml,
}

impl FileKind {
    /// The kind of `path` from its file name: YAML for `.yml`/`.yaml`, Dockerfile for the
    /// Dockerfile and Containerfile names; `None` for anything else.
    pub fn of(path: &Path) -> Option<FileKind> {
        let name = path.file_name()?.to_str()?;
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".yml") || lower.ends_with(".yaml") {
            Some(FileKind::Yaml)
        } else if lower.starts_with("dockerfile")
            || lower.starts_with("containerfile")
            || lower.ends_with(".dockerfile")
            || lower.ends_with(".containerfile")
        {
            Some(FileKind::Dockerfile)
        } else {
            None
        }
    }
}

/// Where an image reference was found, by construct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A Dockerfile `FROM` naming the image directly.
    From,
    /// A Dockerfile `FROM` whose image comes from the default of a global `ARG`.
    FromArg {
        /// The build argument.
        arg: String,
    },
    /// `COPY --from=<image>` (or `ADD --from`).
    CopyFrom,
    /// `RUN --mount=...,from=<image>`.
    MountFrom,
    /// `services.<service>.image` of a compose file.
    Compose {
        /// The service name.
        service: String,
    },
    /// A container of a Kubernetes pod spec (any kind with a pod template).
    Kubernetes {
        /// The object's `kind`.
        kind: String,
        /// The object's `metadata.name`, when it has one.
        name: Option<String>,
        /// The container's `name`, when it has one.
        container: Option<String>,
    },
}

impl Origin {
    /// A short stable label for the lockfile and JSON output (`from`, `from-arg`, `copy-from`,
    /// `mount-from`, `compose`, `kubernetes`).
    pub fn label(&self) -> &'static str {
        match self {
            Origin::From => "from",
            Origin::FromArg { .. } => "from-arg",
            Origin::CopyFrom => "copy-from",
            Origin::MountFrom => "mount-from",
            Origin::Compose { .. } => "compose",
            Origin::Kubernetes { .. } => "kubernetes",
        }
    }
}

/// The exact text in a file that a reference was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Byte offset of the text in the file.
    pub offset: usize,
    /// The text at that offset (the reference as written there).
    pub text: String,
    /// 1-based line of the text.
    pub line: usize,
}

/// One image reference found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundImage {
    /// The file, as the caller named it.
    pub file: String,
    /// 1-based line where the reference is used.
    pub line: usize,
    /// 1-based column where the reference is used.
    pub column: usize,
    /// The reference as written, after build-argument or compose-default substitution.
    pub written: String,
    /// The parsed reference (registry and `library/` filled in as Docker does).
    pub reference: ImageReference,
    /// Which construct named it.
    pub origin: Origin,
    /// Where its literal text sits, when it has a single one (see the module docs).
    pub site: Option<Site>,
}

/// Something that looked like an image reference but cannot be locked, and why: reported as a
/// warning, not an error, because the build may supply it (a build argument without default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What was skipped and why.
    pub reason: String,
}

/// What one file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// The lockable references, in file order.
    pub images: Vec<FoundImage>,
    /// What was skipped.
    pub skipped: Vec<Skipped>,
}

/// Why a file could not be searched: where, and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {kind}")]
pub struct FindError {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub kind: FindErrorKind,
}

/// The kinds of [`FindError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FindErrorKind {
    /// A Dockerfile syntax error.
    #[error("Dockerfile syntax error: {0}")]
    Dockerfile(crate::dockerfile::ParseErrorKind),
    /// A YAML syntax error.
    #[error("YAML syntax error: {0}")]
    Yaml(String),
    /// Text in an image position is not a valid image reference.
    #[error("invalid image reference {written:?}: {error}")]
    InvalidReference {
        /// The text.
        written: String,
        /// Why it was refused.
        error: ImageRefError,
    },
}

/// Finds the image references in `text`, the contents of `file` (a name used in messages).
///
/// # Errors
///
/// [`FindError`] for a syntax error or an invalid reference, with its position.
pub fn find(file: &str, kind: FileKind, text: &str) -> Result<Findings, FindError> {
    match kind {
        FileKind::Dockerfile => find_in_dockerfile(file, text),
        FileKind::Yaml => find_in_yaml(file, text),
    }
}

/// Byte offsets where each line starts, so 1-based line numbers map to text.
struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Lines<'a> {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines { text, starts }
    }

    /// Line `n` (1-based) without its newline, and its byte offset.
    fn line(&self, n: usize) -> Option<(usize, &'a str)> {
        let start = *self.starts.get(n.checked_sub(1)?)?;
        let end = self.starts.get(n).map_or(self.text.len(), |next| next - 1);
        Some((start, self.text.get(start..end)?))
    }

    /// The first occurrence of `needle` on lines `first..=last` that follows `anchor` (when
    /// given, directly or after a quote) and stands as a whole word; its site and column.
    fn locate(
        &self,
        first: usize,
        last: usize,
        anchor: Option<&str>,
        needle: &str,
    ) -> Option<(Site, usize)> {
        if needle.is_empty() {
            return None;
        }
        let before_ok = |c: Option<char>| {
            c.is_none_or(|c| c.is_whitespace() || matches!(c, '=' | '"' | '\'' | ','))
        };
        let after_ok = |c: Option<char>| {
            c.is_none_or(|c| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | '\\' | '`'))
        };
        for n in first..=last {
            let (line_start, line) = self.line(n)?;
            let mut from = 0;
            while let Some(p) = line[from..].find(anchor.unwrap_or(needle)) {
                let at = from + p;
                from = at + 1;
                let candidate = match anchor {
                    Some(a) => {
                        let mut c = at + a.len();
                        if line[c..].starts_with(['"', '\'']) {
                            c += 1;
                        }
                        if !line[c..].starts_with(needle) {
                            continue;
                        }
                        c
                    }
                    None => at,
                };
                let end = candidate + needle.len();
                if before_ok(line[..candidate].chars().next_back())
                    && after_ok(line[end..].chars().next())
                {
                    let column = line[..candidate].chars().count() + 1;
                    let site = Site {
                        offset: line_start + candidate,
                        text: needle.to_string(),
                        line: n,
                    };
                    return Some((site, column));
                }
            }
        }
        None
    }
}

fn parse_reference(
    file: &str,
    line: usize,
    column: usize,
    written: &str,
) -> Result<ImageReference, FindError> {
    written.parse::<ImageReference>().map_err(|error| {
        let written = written.to_string();
        find_error(
            file,
            line,
            column,
            FindErrorKind::InvalidReference { written, error },
        )
    })
}

fn find_error(file: &str, line: usize, column: usize, kind: FindErrorKind) -> FindError {
    FindError {
        file: file.to_string(),
        line,
        column,
        kind,
    }
}

fn find_in_dockerfile(file: &str, text: &str) -> Result<Findings, FindError> {
    let df = dockerfile::parse(text).map_err(|e: ParseError| {
        find_error(file, e.line, e.column, FindErrorKind::Dockerfile(e.kind))
    })?;
    let lines = Lines::new(text);
    let mut out = Findings::default();
    let global = global_args(&df);
    for stage in &df.stages {
        let from = &df.instructions[stage.from];
        from_reference(file, &df, &lines, from, &stage.base, &mut out)?;
        let mut stage_args: HashMap<String, Option<String>> = HashMap::new();
        for ins in &df.instructions[stage.instructions.clone()] {
            if let Body::Arg(decls) = &ins.body {
                for d in decls {
                    // `ARG NAME` inside a stage brings the global default into scope.
                    let value = match &d.default {
                        Some(v) => Some(substitute(v, &stage_args, df.escape).0),
                        None => global.get(&d.name).cloned().flatten(),
                    };
                    stage_args.insert(d.name.clone(), value);
                }
            }
            if let Some(value) = ins.flag("from") {
                let origin = Origin::CopyFrom;
                let anchor = "--from=";
                out.push(named_image(
                    file,
                    &df,
                    &lines,
                    ins,
                    value,
                    anchor,
                    origin,
                    &stage_args,
                )?);
            }
            for flag in ins.flags.iter().filter(|f| f.name == "mount") {
                let Some(value) = flag.value.as_deref() else {
                    continue;
                };
                let from = value
                    .split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| k.trim() == "from")
                    .map(|(_, v)| v.trim());
                if let Some(from) = from {
                    let origin = Origin::MountFrom;
                    out.push(named_image(
                        file,
                        &df,
                        &lines,
                        ins,
                        from,
                        "from=",
                        origin,
                        &stage_args,
                    )?);
                }
            }
        }
    }
    Ok(out)
}

impl Findings {
    fn push(&mut self, found: Lookup) {
        match found {
            Lookup::Image(image) => self.images.push(*image),
            Lookup::Skipped(skipped) => self.skipped.push(skipped),
            Lookup::Stage => {}
        }
    }
}

/// What a name in an image position turned out to be.
enum Lookup {
    Image(Box<FoundImage>),
    Skipped(Skipped),
    Stage,
}

/// Global `ARG`s (before the first `FROM`) with their substituted defaults, as `FROM` sees them.
fn global_args(df: &Dockerfile) -> HashMap<String, Option<String>> {
    let mut global = HashMap::new();
    for ins in df.instructions.iter().take_while(|i| i.stage.is_none()) {
        if let Body::Arg(decls) = &ins.body {
            for d in decls {
                let value = d
                    .default
                    .as_ref()
                    .map(|v| substitute(v, &global, df.escape).0);
                global.insert(d.name.clone(), value);
            }
        }
    }
    global
}

/// `$NAME` or `${NAME}` and nothing else: the name.
fn sole_variable(text: &str) -> Option<&str> {
    let name = text
        .strip_prefix("${")
        .and_then(|t| t.strip_suffix('}'))
        .or_else(|| text.strip_prefix('$'))?;
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some(name)
}

fn from_reference(
    file: &str,
    df: &Dockerfile,
    lines: &Lines<'_>,
    from: &Instruction,
    base: &BaseImage,
    out: &mut Findings,
) -> Result<(), FindError> {
    let Body::From { image: written, .. } = &from.body else {
        return Ok(());
    };
    let BaseImage::Image {
        reference,
        unresolved,
    } = base
    else {
        return Ok(()); // scratch or an earlier stage: nothing to lock
    };
    let (first, last) = (from.span.start_line, from.span.end_line);
    let (used_site, column) = match lines.locate(first, last, None, written) {
        Some((site, column)) => (Some(site), column),
        None => (None, from.span.column),
    };
    if !unresolved.is_empty() {
        out.skipped.push(Skipped {
            file: file.to_string(),
            line: first,
            reason: format!(
                "FROM {written} depends on build argument(s) {} without a default",
                unresolved.join(", ")
            ),
        });
        return Ok(());
    }
    let parsed = parse_reference(file, first, column, reference)?;
    let (origin, site) = if !written.contains('$') {
        (Origin::From, used_site)
    } else if let Some(arg) = sole_variable(written) {
        (
            Origin::FromArg {
                arg: arg.to_string(),
            },
            arg_default_site(df, lines, arg, reference),
        )
    } else {
        // Assembled from several arguments: lockable, but no single text to rewrite.
        let arg = written.clone();
        (Origin::FromArg { arg }, None)
    };
    out.images.push(FoundImage {
        file: file.to_string(),
        line: first,
        column,
        written: reference.clone(),
        reference: parsed,
        origin,
        site,
    });
    Ok(())
}

/// Where the global `ARG name=<value>` that `FROM $name` uses writes `value` literally.
fn arg_default_site(df: &Dockerfile, lines: &Lines<'_>, name: &str, value: &str) -> Option<Site> {
    let ins = df
        .instructions
        .iter()
        .take_while(|i| i.stage.is_none())
        .filter(|i| match &i.body {
            Body::Arg(decls) => decls.iter().any(|d| d.name == name),
            _ => false,
        })
        .last()?;
    let Body::Arg(decls) = &ins.body else {
        return None;
    };
    let decl = decls.iter().rev().find(|d| d.name == name)?;
    // Only a default written without variables is the text the reference came from.
    if decl.default.as_deref() != Some(value) {
        return None;
    }
    let anchor = format!("{name}=");
    lines
        .locate(ins.span.start_line, ins.span.end_line, Some(&anchor), value)
        .map(|(site, _)| site)
}

/// `COPY --from=` / `RUN --mount=from=`: an image unless it names a stage.
#[allow(clippy::too_many_arguments)] // one call site per construct; a struct would only rename them
fn named_image(
    file: &str,
    df: &Dockerfile,
    lines: &Lines<'_>,
    ins: &Instruction,
    value: &str,
    anchor: &str,
    origin: Origin,
    args: &HashMap<String, Option<String>>,
) -> Result<Lookup, FindError> {
    let (first, last) = (ins.span.start_line, ins.span.end_line);
    // BuildKit reads flag values like shell words: `--from="img"` names `img`.
    let value = ["\"", "'"]
        .iter()
        .find_map(|q| value.strip_prefix(q).and_then(|v| v.strip_suffix(q)))
        .unwrap_or(value);
    let (reference, unresolved) = substitute(value, args, df.escape);
    let lower = reference.to_ascii_lowercase();
    let is_stage = (!reference.is_empty() && reference.chars().all(|c| c.is_ascii_digit()))
        || df
            .stages
            .iter()
            .any(|s| s.name.as_deref() == Some(lower.as_str()));
    if is_stage {
        return Ok(Lookup::Stage);
    }
    if !unresolved.is_empty() || reference.is_empty() {
        return Ok(Lookup::Skipped(Skipped {
            file: file.to_string(),
            line: first,
            reason: format!(
                "{} {anchor}{value} depends on build argument(s) {} without a default",
                ins.keyword.as_str(),
                unresolved.join(", ")
            ),
        }));
    }
    let located = lines.locate(first, last, Some(anchor), value);
    let column = located.as_ref().map_or(ins.span.column, |(_, c)| *c);
    let line = located.as_ref().map_or(first, |(s, _)| s.line);
    let parsed = parse_reference(file, line, column, &reference)?;
    let site = located.map(|(s, _)| s).filter(|_| !value.contains('$'));
    Ok(Lookup::Image(Box::new(FoundImage {
        file: file.to_string(),
        line,
        column,
        written: reference,
        reference: parsed,
        origin,
        site,
    })))
}

fn find_in_yaml(file: &str, text: &str) -> Result<Findings, FindError> {
    let documents = yaml::parse_documents(text).map_err(|e: YamlError| {
        find_error(file, e.line, e.column, FindErrorKind::Yaml(e.message))
    })?;
    let mut out = Findings::default();
    for doc in &documents {
        if let Some(kind) = doc.get("kind").and_then(Node::as_str) {
            let kind = kind.to_string();
            let name = doc
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Node::as_str)
                .map(str::to_string);
            walk_pod_specs(file, text, doc, &kind, &name, &mut out)?;
        } else if let Some(Node::Mapping(services, _)) = doc.get("services") {
            for (service, spec) in services {
                let (Some(service), Some(image)) = (service, spec.get("image")) else {
                    continue;
                };
                let Node::Scalar { value, pos, .. } = image else {
                    continue;
                };
                if spec.get("build").is_some() {
                    // With `build`, `image` names what compose builds, not something to pull.
                    out.skipped.push(Skipped {
                        file: file.to_string(),
                        line: pos.line,
                        reason: format!(
                            "service {service} builds its image; `image: {value}` names the result"
                        ),
                    });
                    continue;
                }
                let origin = Origin::Compose {
                    service: service.clone(),
                };
                yaml_image(file, text, value, *pos, origin, &mut out)?;
            }
        }
    }
    Ok(out)
}

/// Every `containers`, `initContainers` and `ephemeralContainers` list anywhere below `node`:
/// that covers Pods, every workload's pod template (Deployment, StatefulSet, DaemonSet, Job,
/// CronJob's job template, ReplicaSet...) and `List` items, without a table of paths per kind.
fn walk_pod_specs(
    file: &str,
    text: &str,
    node: &Node,
    kind: &str,
    name: &Option<String>,
    out: &mut Findings,
) -> Result<(), FindError> {
    match node {
        Node::Mapping(entries, _) => {
            // A nested object (a `List` item) names its own kind and name.
            let (kind, name) = match node.get("kind").and_then(Node::as_str) {
                Some(own) => (
                    own,
                    node.get("metadata")
                        .and_then(|m| m.get("name"))
                        .and_then(Node::as_str)
                        .map(str::to_string),
                ),
                None => (kind, name.clone()),
            };
            for (key, value) in entries {
                let is_containers = matches!(
                    key.as_deref(),
                    Some("containers" | "initContainers" | "ephemeralContainers")
                );
                if let (true, Node::Sequence(items)) = (is_containers, value) {
                    for item in items {
                        let Some(Node::Scalar { value, pos, .. }) = item.get("image") else {
                            continue;
                        };
                        let origin = Origin::Kubernetes {
                            kind: kind.to_string(),
                            name: name.clone(),
                            container: item.get("name").and_then(Node::as_str).map(str::to_string),
                        };
                        yaml_image(file, text, value, *pos, origin, out)?;
                    }
                } else {
                    walk_pod_specs(file, text, value, kind, &name, out)?;
                }
            }
        }
        Node::Sequence(items) => {
            for item in items {
                walk_pod_specs(file, text, item, kind, name, out)?;
            }
        }
        Node::Scalar { .. } => {}
    }
    Ok(())
}

/// One `image:` scalar of a compose file or manifest. Compose's `${VAR:-default}` takes its
/// default (the environment at lock time is not what deploys); `$VAR` alone is skipped.
fn yaml_image(
    file: &str,
    text: &str,
    value: &str,
    pos: yaml::Pos,
    origin: Origin,
    out: &mut Findings,
) -> Result<(), FindError> {
    let (written, unresolved) = if value.contains('$') {
        substitute(value, &HashMap::new(), '$')
    } else {
        (value.to_string(), Vec::new())
    };
    if !unresolved.is_empty() || written.is_empty() {
        out.skipped.push(Skipped {
            file: file.to_string(),
            line: pos.line,
            reason: format!(
                "image {value} depends on unset variable(s) {}",
                unresolved.join(", ")
            ),
        });
        return Ok(());
    }
    let reference = parse_reference(file, pos.line, pos.column, &written)?;
    let site = (written == value)
        .then(|| scalar_site(text, pos, value))
        .flatten();
    out.images.push(FoundImage {
        file: file.to_string(),
        line: pos.line,
        column: pos.column,
        written,
        reference,
        origin,
        site,
    });
    Ok(())
}

/// The literal `value` on the scalar's line at or after its start (past a quote or an anchor):
/// absent when the scalar is written with escapes or folded over lines.
fn scalar_site(text: &str, pos: yaml::Pos, value: &str) -> Option<Site> {
    let rest = text.get(pos.offset..)?;
    let line = rest.split('\n').next()?;
    let at = line.find(value)?;
    Some(Site {
        offset: pos.offset + at,
        text: value.to_string(),
        line: pos.line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(f: &Findings) -> Vec<(usize, &str, &str)> {
        f.images
            .iter()
            .map(|i| (i.line, i.written.as_str(), i.origin.label()))
            .collect()
    }

    fn site_text<'a>(text: &'a str, image: &FoundImage) -> &'a str {
        let site = image.site.as_ref().expect("site");
        &text[site.offset..site.offset + site.text.len()]
    }

    #[test]
    fn dockerfile_from_arg_copy_and_mount() {
        let text = "\
ARG BASE=ruby:3.3
ARG V=12
FROM ${BASE} AS build
RUN --mount=type=bind,from=busybox:1.36,target=/b true
FROM build AS again
FROM --platform=$BUILDPLATFORM debian:${V}-slim
COPY --from=build /a /a
COPY --from=0 /a /a
COPY --from=nginx:1.25 \\
     /etc/nginx /etc/nginx
FROM scratch
COPY --from=\"127.0.0.1:5000/tools/x\" /x /x
";
        let f = find("Dockerfile", FileKind::Dockerfile, text).unwrap();
        assert_eq!(
            images(&f),
            vec![
                (3, "ruby:3.3", "from-arg"),
                (4, "busybox:1.36", "mount-from"),
                (6, "debian:12-slim", "from-arg"),
                (9, "nginx:1.25", "copy-from"),
                (12, "127.0.0.1:5000/tools/x", "copy-from"),
            ]
        );
        // The ARG default is where `ruby:3.3` is written; debian:${V}-slim has no single site.
        assert_eq!(site_text(text, &f.images[0]), "ruby:3.3");
        assert_eq!(
            f.images[0].reference.to_string(),
            "docker.io/library/ruby:3.3"
        );
        assert_eq!(f.images[0].site.as_ref().unwrap().line, 1);
        assert_eq!(site_text(text, &f.images[1]), "busybox:1.36");
        assert_eq!(f.images[2].site, None);
        assert_eq!(site_text(text, &f.images[3]), "nginx:1.25");
        assert_eq!(site_text(text, &f.images[4]), "127.0.0.1:5000/tools/x");
        assert!(f.skipped.is_empty(), "{:?}", f.skipped);
    }

    #[test]
    fn dockerfile_unset_arg_is_skipped_and_bad_reference_is_an_error() {
        let f = find("D", FileKind::Dockerfile, "ARG IMG\nFROM $IMG\n").unwrap();
        assert!(f.images.is_empty());
        assert_eq!(f.skipped.len(), 1);
        assert!(f.skipped[0].reason.contains("IMG"), "{:?}", f.skipped);

        let err = find("D", FileKind::Dockerfile, "FROM alpine\nFROM Ruby:3\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("D:2:6: invalid image reference \"Ruby:3\""),
            "{err}"
        );
        let err = find("D", FileKind::Dockerfile, "FROM a\nRUN <<EOF\n").unwrap_err();
        assert!(err.to_string().starts_with("D:2:"), "{err}");
    }

    #[test]
    fn compose_services_with_and_without_build() {
        let text = "\
services:
  web:
    image: \"nginx:1.25\"
  app:
    build: .
    image: me/app:dev
  db:
    image: postgres:${PG:-16}
  cache: {image: 'redis:7'}
";
        let f = find("compose.yaml", FileKind::Yaml, text).unwrap();
        assert_eq!(
            images(&f),
            vec![
                (3, "nginx:1.25", "compose"),
                (8, "postgres:16", "compose"),
                (9, "redis:7", "compose"),
            ]
        );
        assert_eq!(site_text(text, &f.images[0]), "nginx:1.25");
        assert_eq!(f.images[1].site, None);
        assert_eq!(site_text(text, &f.images[2]), "redis:7");
        assert_eq!(f.skipped.len(), 1);
        assert_eq!(f.skipped[0].line, 6);
    }

    #[test]
    fn kubernetes_workloads_of_every_kind() {
        let text = "\
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  initContainers:
  - name: init
    image: busybox:1.36
  containers:
  - name: main
    image: nginx:1.25
  ephemeralContainers:
  - {name: debug, image: 'alpine:3.20'}
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: job
            image: ghcr.io/org/job:1
---
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web}
  spec:
    template:
      spec:
        containers:
        - image: \"registry.example.com:5000/web@sha256:0000000000000000000000000000000000000000000000000000000000000000\"
---
apiVersion: v1
kind: ConfigMap
data: {image: not-an-image-field}
";
        let f = find("k8s.yaml", FileKind::Yaml, text).unwrap();
        assert_eq!(
            images(&f)
                .iter()
                .map(|(l, w, _)| (*l, *w))
                .collect::<Vec<_>>(),
            vec![
                (7, "busybox:1.36"),
                (10, "nginx:1.25"),
                (12, "alpine:3.20"),
                (25, "ghcr.io/org/job:1"),
                (37, "registry.example.com:5000/web@sha256:0000000000000000000000000000000000000000000000000000000000000000"),
            ]
        );
        assert_eq!(
            f.images[3].origin,
            Origin::Kubernetes {
                kind: "CronJob".into(),
                name: Some("nightly".into()),
                container: Some("job".into())
            }
        );
        assert_eq!(
            f.images[4].origin,
            Origin::Kubernetes {
                kind: "Deployment".into(),
                name: Some("web".into()),
                container: None
            }
        );
        for image in &f.images {
            assert_eq!(site_text(text, image), image.written);
        }
    }

    #[test]
    fn yaml_errors_and_bad_references_name_file_and_line() {
        let err = find(
            "k.yaml",
            FileKind::Yaml,
            "kind: Pod\nspec:\n  containers: [\n",
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("k.yaml:4:"), "{err}");
        let err = find(
            "c.yml",
            FileKind::Yaml,
            "services:\n  a:\n    image: \"UPPER:1\"\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("c.yml:3:12: invalid image reference"),
            "{err}"
        );
    }

    #[test]
    fn file_kinds_from_names() {
        for (name, kind) in [
            ("Dockerfile", Some(FileKind::Dockerfile)),
            ("Dockerfile.dev", Some(FileKind::Dockerfile)),
            ("api.Dockerfile", Some(FileKind::Dockerfile)),
            ("Containerfile", Some(FileKind::Dockerfile)),
            ("compose.yaml", Some(FileKind::Yaml)),
            ("deploy.YML", Some(FileKind::Yaml)),
            ("README.md", None),
        ] {
            assert_eq!(FileKind::of(Path::new(name)), kind, "{name}");
        }
    }
}
