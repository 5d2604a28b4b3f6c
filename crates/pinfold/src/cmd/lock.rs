//! `pinfold lock`: finds image references in Dockerfiles, compose files and Kubernetes
//! manifests, resolves them through any registry and writes `pinfold.lock`; `--check` compares
//! instead of writing, `--rewrite` pins the references in the files.
//!
//! Every step runs before anything is written: a syntax error, an unknown host or a missing
//! image exits 2 with the file and line, and leaves the lockfile and the files as they were.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use pinfold_inspect::lock::{
    self, rewrite, CheckReport, Edit, FileKind, FoundImage, Lockfile, ResolveOptions, Resolved,
    Skipped,
};
use serde_json::json;

/// Arguments of `pinfold lock`.
#[derive(Debug, clap::Args)]
pub struct LockArgs {
    /// Files or directories to read. Default: the files the lockfile already names, plus, in
    /// the current directory, Dockerfile*, *.Dockerfile, Containerfile* and every *.yml/*.yaml
    /// (compose files, and Kubernetes manifests by their `kind`). A directory is read the same
    /// way (not recursively).
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The lockfile to write or check; its directory is what file names in it are relative to.
    #[arg(long, value_name = "PATH", default_value = "pinfold.lock")]
    pub lockfile: PathBuf,
    /// Write nothing; exit 1 when a reference moved to another digest, or was added or removed
    /// since the lockfile was written, and say which.
    #[arg(long, conflicts_with = "rewrite")]
    pub check: bool,
    /// With --check: for every moved reference, read both images and say what changed, ranked
    /// by how likely it is to break a build (the explanation of `pinfold diff`).
    #[arg(long, requires = "check")]
    pub explain: bool,
    /// Also pin the references in the files as `name:tag@sha256:...`, changing nothing else.
    /// References that already carry a digest are left as they are.
    #[arg(long)]
    pub rewrite: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Record only this platform (`linux/amd64`, `linux/arm64/v8`; `linux/arm64` matches any
    /// arm64 variant); every image must have it. Repeatable. Default: every platform.
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]")]
    pub platforms: Vec<String>,
}

/// One file to read: where it is, how the lockfile names it, what it holds.
struct Source {
    path: PathBuf,
    name: String,
    kind: FileKind,
    text: String,
}

/// Runs `pinfold lock`. Returns exit code 0 (locked, or `--check` found nothing), 1 (`--check`
/// found moved, added or removed references) or 2 (some input could not be read, parsed or
/// resolved; nothing was written).
///
/// # Errors
///
/// Failures that are not about one input: the lockfile's directory, writing output.
pub async fn run(args: LockArgs) -> anyhow::Result<ExitCode> {
    let lock_dir = match args.lockfile.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let old = read_lockfile(&args.lockfile)?;
    if args.check && old.is_none() {
        eprintln!(
            "pinfold: error: no lockfile at {}; run `pinfold lock` first",
            args.lockfile.display()
        );
        return Ok(ExitCode::from(2));
    }
    let old = match old {
        Some(Ok(lockfile)) => Some(lockfile),
        Some(Err(e)) if args.check => {
            eprintln!("{}: error: {e}", args.lockfile.display());
            return Ok(ExitCode::from(2));
        }
        Some(Err(e)) => {
            // It is about to be regenerated; its file list is all that is lost.
            eprintln!(
                "{}: warning: {e}; writing a new one",
                args.lockfile.display()
            );
            None
        }
        None => None,
    };

    let mut failed = false;
    let paths = match input_paths(&args.files, old.as_ref(), &args.lockfile, &lock_dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pinfold: error: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut sources = Vec::new();
    for (path, explicit) in paths {
        let Some(kind) = FileKind::of(&path).or(explicit.then_some(FileKind::Dockerfile)) else {
            continue;
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => sources.push(Source {
                name: display_name(&path, &lock_dir),
                path,
                kind,
                text,
            }),
            Err(e) => {
                eprintln!("{}: error: cannot read: {e}", path.display());
                failed = true;
            }
        }
    }

    let (mut found, mut skipped) = (Vec::new(), Vec::new());
    for source in &sources {
        match lock::find(&source.name, source.kind, &source.text) {
            Ok(f) => {
                found.extend(f.images);
                skipped.extend(f.skipped);
            }
            Err(e) => {
                eprintln!("{}:{}:{}: error: {}", e.file, e.line, e.column, e.kind);
                failed = true;
            }
        }
    }
    if failed {
        return Ok(ExitCode::from(2));
    }
    for s in &skipped {
        eprintln!("{}:{}: warning: {}", s.file, s.line, s.reason);
    }

    let options = ResolveOptions {
        platforms: args.platforms.clone(),
        ..ResolveOptions::default()
    };
    let mut resolved = BTreeMap::new();
    if !resolve_missing(&found, &mut resolved, &options, !args.json).await {
        return Ok(ExitCode::from(2));
    }

    let mut edits = Vec::new();
    if args.rewrite {
        let (applied, warnings) = match rewrite_files(&mut sources, &found, &resolved) {
            Ok(done) => done,
            Err(e) => {
                eprintln!("pinfold: error: {e:#}");
                return Ok(ExitCode::from(2));
            }
        };
        for w in &warnings {
            eprintln!("{}:{}: warning: {}", w.file, w.line, w.reason);
        }
        skipped.extend(warnings);
        edits = applied;
        // The lockfile describes the files as they are now: find the pinned references again
        // (their resolutions are known: a pin resolves to the digest it was given).
        for f in &found {
            if let Some(r) = resolved.get(&f.reference.to_string()).cloned() {
                let pinned = f.reference.with_digest(r.digest.clone()).to_string();
                resolved.entry(pinned).or_insert(Resolved {
                    tag_digest: None,
                    ..r
                });
            }
        }
        found.clear();
        for source in &sources {
            let f = lock::find(&source.name, source.kind, &source.text)
                .with_context(|| format!("reading {} back after rewriting", source.name))?;
            found.extend(f.images);
        }
        if !resolve_missing(&found, &mut resolved, &options, !args.json).await {
            return Ok(ExitCode::from(2));
        }
    }

    if !args.rewrite {
        // (With --rewrite the plan already warned about these.)
        for f in &found {
            let note = resolved
                .get(&f.reference.to_string())
                .and_then(|r| rewrite::behind_tag(f, r));
            if let Some(note) = note {
                eprintln!("{}:{}: note: {note}", f.file, f.line);
                skipped.push(Skipped {
                    file: f.file.clone(),
                    line: f.line,
                    reason: note,
                });
            }
        }
    }

    let new = Lockfile::build(&found, &resolved);
    let mut out = std::io::stdout().lock();
    let warnings: Vec<_> = skipped
        .iter()
        .map(|s| json!({"file": s.file, "line": s.line, "reason": s.reason}))
        .collect();

    if args.check {
        let old = old.unwrap_or_else(|| Lockfile::build(&[], &resolved));
        let report = CheckReport::compare(&old, &new);
        let explanations = if args.explain {
            explain_moves(&report.moved).await
        } else {
            BTreeMap::new()
        };
        if args.json {
            let value = json!({
                "lockfile": args.lockfile.display().to_string(),
                "clean": report.is_clean(),
                "moved": report.moved,
                "added": report.added,
                "removed": report.removed,
                "relocated": report.relocated,
                "warnings": warnings,
                "explanations": explanations
                    .iter()
                    .map(|(name, e)| match e {
                        Ok(explanation) => (name.clone(), json!(explanation)),
                        Err(error) => (name.clone(), json!({ "error": error })),
                    })
                    .collect::<serde_json::Map<_, _>>(),
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        } else {
            write_check(&mut out, &args.lockfile, &old, &new, &report, &explanations)?;
        }
        out.flush()?;
        return Ok(if report.is_clean() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }

    let text = new.to_toml();
    let changed = std::fs::read(&args.lockfile).ok().as_deref() != Some(text.as_bytes());
    if changed {
        write_atomically(&args.lockfile, text.as_bytes())
            .with_context(|| format!("writing {}", args.lockfile.display()))?;
    }
    if args.json {
        let value = json!({
            "lockfile": args.lockfile.display().to_string(),
            "changed": changed,
            "images": new.images,
            "rewritten": edits,
            "warnings": warnings,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        for e in &edits {
            writeln!(out, "{}:{}: pinned {} -> {}", e.file, e.line, e.old, e.new)?;
        }
        let count = new.images.len();
        let state = if changed { "wrote" } else { "unchanged:" };
        writeln!(
            out,
            "{state} {} ({count} image{})",
            args.lockfile.display(),
            if count == 1 { "" } else { "s" }
        )?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `None` when there is no lockfile; otherwise it parsed or why not.
fn read_lockfile(path: &Path) -> anyhow::Result<Option<Result<Lockfile, lock::LockfileError>>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(Lockfile::parse(&text))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The files to read, each with whether it was named explicitly (an explicit file of unknown
/// name is read as a Dockerfile, as `pinfold lint` would).
fn input_paths(
    args: &[PathBuf],
    old: Option<&Lockfile>,
    lockfile: &Path,
    lock_dir: &Path,
) -> anyhow::Result<Vec<(PathBuf, bool)>> {
    let mut out: Vec<(PathBuf, bool)> = Vec::new();
    let mut seen = BTreeSet::new();
    // The lockfile is never an input, even when its name looks like one (`--lockfile x.yaml`).
    seen.insert(std::path::absolute(lockfile).unwrap_or_else(|_| lockfile.to_path_buf()));
    let mut add = |path: PathBuf, explicit: bool, out: &mut Vec<(PathBuf, bool)>| {
        let key = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
        if seen.insert(key) {
            out.push((path, explicit));
        }
    };
    if args.is_empty() {
        let discovered = lock::discover(Path::new(".")).context("reading the current directory")?;
        for path in discovered {
            add(strip_dot(path), false, &mut out);
        }
        // Files locked before stay locked; a deleted one drops out (and `--check` says so).
        for file in old.map(Lockfile::files).unwrap_or_default() {
            let path = lock_dir.join(&file);
            if path.is_file() {
                add(strip_dot(path), true, &mut out);
            }
        }
    }
    for arg in args {
        if arg.is_dir() {
            let discovered = lock::discover(arg)
                .with_context(|| format!("reading directory {}", arg.display()))?;
            for path in discovered {
                add(path, false, &mut out);
            }
        } else if arg.exists() {
            add(arg.clone(), true, &mut out);
        } else {
            anyhow::bail!("{}: no such file or directory", arg.display());
        }
    }
    Ok(out)
}

/// `./Dockerfile` → `Dockerfile`, for messages.
fn strip_dot(path: PathBuf) -> PathBuf {
    match path.strip_prefix(".") {
        Ok(p) => p.to_path_buf(),
        Err(_) => path,
    }
}

/// How the lockfile names `path`: relative to its directory with `/` separators when inside
/// it, else the path as given.
fn display_name(path: &Path, lock_dir: &Path) -> String {
    let (Ok(file), Ok(dir)) = (std::path::absolute(path), std::path::absolute(lock_dir)) else {
        return path.display().to_string();
    };
    match file.strip_prefix(&dir) {
        Ok(rel) => rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
        Err(_) => path.display().to_string(),
    }
}

/// Resolves every reference of `found` not yet in `resolved`, printing each failure with the
/// first place the reference is used. Returns whether all resolved.
async fn resolve_missing(
    found: &[FoundImage],
    resolved: &mut BTreeMap<String, Resolved>,
    options: &ResolveOptions,
    progress: bool,
) -> bool {
    let missing: Vec<_> = found
        .iter()
        .filter(|f| !resolved.contains_key(&f.reference.to_string()))
        .map(|f| f.reference.clone())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let unique = missing
        .iter()
        .map(ToString::to_string)
        .collect::<BTreeSet<_>>()
        .len();
    let bar = if progress && std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(unique as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} resolving {pos}/{len} {wide_msg}")
        {
            bar.set_style(style);
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let on_done = |r: &pinfold_oci::ImageReference| {
        bar.set_message(r.to_string());
        bar.inc(1);
    };
    let outcomes = lock::resolve_all(&missing, options, &on_done).await;
    bar.finish_and_clear();
    let mut ok = true;
    for (name, outcome) in outcomes {
        match outcome {
            Ok(r) => {
                resolved.insert(name, r);
            }
            Err(e) => {
                ok = false;
                let mut uses = found.iter().filter(|f| f.reference.to_string() == name);
                let (first, more) = (uses.next(), uses.count());
                match first {
                    Some(f) => eprint!("{}:{}:{}: error: ", f.file, f.line, f.column),
                    None => eprint!("error: "),
                }
                eprint!("{}", error_chain(&e));
                if more > 0 {
                    eprint!(
                        " (also used in {more} other place{})",
                        if more == 1 { "" } else { "s" }
                    );
                }
                eprintln!();
            }
        }
    }
    ok
}

/// The error and its causes on one line, skipping causes its message already quotes.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    for _ in 0..16 {
        let Some(s) = source else { break };
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Plans and applies the pins of every file, then writes the changed files. Nothing is
/// written unless every file's edits apply.
fn rewrite_files(
    sources: &mut [Source],
    found: &[FoundImage],
    resolved: &BTreeMap<String, Resolved>,
) -> anyhow::Result<(Vec<Edit>, Vec<Skipped>)> {
    let mut all_edits = Vec::new();
    let mut warnings = Vec::new();
    let mut new_texts = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let here: Vec<&FoundImage> = found.iter().filter(|f| f.file == source.name).collect();
        let plan = rewrite::plan(&here, resolved);
        warnings.extend(plan.warnings);
        if plan.edits.is_empty() {
            continue;
        }
        let text = rewrite::apply(&source.text, &plan.edits)?;
        all_edits.extend(plan.edits);
        new_texts.push((i, text));
    }
    for (i, text) in new_texts {
        let source = &mut sources[i];
        // Write through a symlink, not over it: the rename would replace the link itself.
        let target = std::fs::canonicalize(&source.path).unwrap_or_else(|_| source.path.clone());
        write_atomically(&target, text.as_bytes())
            .with_context(|| format!("writing {}", target.display()))?;
        source.text = text;
    }
    Ok((all_edits, warnings))
}

/// Writes `bytes` to `path` through a temp file in the same directory and a rename, so a
/// reader (or a crash) sees the old file or the new one, never half of one. An existing
/// file's permissions are kept.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.pinfold-{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        if let Ok(meta) = std::fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The human report of `--check`.
/// Explanations of moved references, by name: both images read from their registry (the
/// host's platform of an index), compared with `pinfold diff`'s library call.
async fn explain_moves(
    moved: &[lock::Moved],
) -> BTreeMap<String, Result<pinfold_inspect::diff::Explanation, String>> {
    use pinfold_inspect::{diff, image};
    let mut out = BTreeMap::new();
    for m in moved {
        let explained = async {
            let reference: pinfold_oci::ImageReference =
                m.name.parse().map_err(|e| format!("{}: {e}", m.name))?;
            let open = |digest: &pinfold_oci::Digest| {
                let text = format!(
                    "{}/{}@{digest}",
                    reference.registry(),
                    reference.repository()
                );
                async move {
                    let source: image::ImageSource =
                        text.parse().map_err(|e| format!("{text}: {e}"))?;
                    image::open(&source, &image::OpenOptions::default())
                        .await
                        .map_err(|e| format!("{text}: {e}"))
                }
            };
            let before = open(&m.old).await?;
            let after = open(&m.new).await?;
            diff::diff_images(&before, &after, &diff::DiffOptions::default())
                .await
                .map(|report| report.explanation)
                .map_err(|e| e.to_string())
        }
        .await;
        out.insert(m.name.clone(), explained);
    }
    out
}

/// Most explanation items printed per moved reference (all of them are in `--json`).
const EXPLAIN_ITEMS: usize = 8;

fn write_check(
    out: &mut impl Write,
    lockfile: &Path,
    old: &Lockfile,
    new: &Lockfile,
    report: &CheckReport,
    explanations: &BTreeMap<String, Result<pinfold_inspect::diff::Explanation, String>>,
) -> std::io::Result<()> {
    let wheres = |image: &lock::LockedImage| {
        image
            .found
            .iter()
            .map(|f| format!("{}:{}", f.file, f.line))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for m in &report.moved {
        let at = new.image(&m.name).map(wheres).unwrap_or_default();
        writeln!(out, "moved: {} ({at})", m.name)?;
        writeln!(out, "  {} -> {}", m.old, m.new)?;
        for (platform, (a, b)) in &m.platforms {
            let show = |d: &Option<pinfold_oci::Digest>| {
                d.as_ref().map_or("(none)".to_string(), ToString::to_string)
            };
            writeln!(out, "  {platform}: {} -> {}", show(a), show(b))?;
        }
        match explanations.get(&m.name) {
            None => {}
            Some(Err(error)) => writeln!(out, "  not explained: {error}")?,
            Some(Ok(explanation)) => {
                if let Some(summary) = &explanation.summary {
                    writeln!(out, "  why: {summary}")?;
                }
                for item in explanation.items.iter().take(EXPLAIN_ITEMS) {
                    writeln!(out, "  {}. {}: {}", item.rank, item.subject, item.change)?;
                }
            }
        }
    }
    for a in &report.added {
        writeln!(out, "added: {} at {} ({})", a.name, a.digest, wheres(a))?;
    }
    for r in &report.removed {
        writeln!(
            out,
            "removed: {} (was {} at {})",
            r.name,
            r.digest,
            wheres(r)
        )?;
    }
    for name in &report.relocated {
        writeln!(
            out,
            "note: {name} is used at other lines now; `pinfold lock` refreshes the lockfile"
        )?;
    }
    if report.is_clean() {
        writeln!(
            out,
            "{} is up to date ({} image{})",
            lockfile.display(),
            old.images.len(),
            if old.images.len() == 1 { "" } else { "s" }
        )?;
    } else {
        writeln!(
            out,
            "{} differs: {} moved, {} added, {} removed",
            lockfile.display(),
            report.moved.len(),
            report.added.len(),
            report.removed.len()
        )?;
    }
    Ok(())
}
