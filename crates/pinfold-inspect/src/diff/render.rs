//! A [`DiffReport`] as text for a terminal (optionally coloured with ANSI styles) or as
//! Markdown (for pull requests, issues and drift notifications). JSON is the report itself.
//!
//! Long lists are cut at [`MAX_FILE_LINES`] files with a line saying how many were left out;
//! the JSON output always has everything.

use std::fmt::Write as _;
use std::io::{self, Write};

use anstyle::{AnsiColor, Style};

use super::explain::{short_digest, shorten};
use super::{
    Category, DiffReport, FileChange, FileChangeKind, LayerRef, LayerSummary, PackageChange,
    PackageChangeKind,
};

/// Most file changes listed in text and Markdown output.
pub const MAX_FILE_LINES: usize = 200;

struct Styles {
    heading: Style,
    added: Style,
    removed: Style,
    modified: Style,
    dim: Style,
    severe: Style,
    warn: Style,
}

impl Styles {
    fn new(colour: bool) -> Styles {
        if !colour {
            let none = Style::new();
            return Styles {
                heading: none,
                added: none,
                removed: none,
                modified: none,
                dim: none,
                severe: none,
                warn: none,
            };
        }
        let fg = |c: AnsiColor| Style::new().fg_color(Some(c.into()));
        Styles {
            heading: Style::new().bold(),
            added: fg(AnsiColor::Green),
            removed: fg(AnsiColor::Red),
            modified: fg(AnsiColor::Yellow),
            dim: Style::new().dimmed(),
            severe: fg(AnsiColor::Red).bold(),
            warn: fg(AnsiColor::Yellow).bold(),
        }
    }

    fn category(&self, c: Category) -> Style {
        match c {
            Category::TrustStore | Category::TlsCrypto | Category::Libc => self.severe,
            Category::Other => self.dim,
            _ => self.warn,
        }
    }
}

fn layer_text(l: &LayerRef) -> String {
    let by = l
        .created_by
        .as_deref()
        .map(|c| format!(" {}", shorten(c, 70)))
        .unwrap_or_default();
    format!("layer {} {}{by}", l.index, short_digest(&l.digest))
}

fn package_label(p: &PackageChange) -> String {
    let mut s = format!("{} {}", p.ecosystem.as_str(), p.name);
    if let Some(a) = &p.architecture {
        let _ = write!(s, ":{a}");
    }
    if let Some(l) = p.location.as_deref().filter(|l| !l.is_empty()) {
        let _ = write!(s, " (/{l})");
    }
    s
}

fn package_versions(p: &PackageChange) -> String {
    let kind = match p.change {
        PackageChangeKind::Added => "added",
        PackageChangeKind::Removed => "removed",
        PackageChangeKind::Upgraded => "upgraded",
        PackageChangeKind::Downgraded => "downgraded",
        PackageChangeKind::Changed => "changed",
    };
    match (&p.a, &p.b) {
        (Some(a), Some(b)) => format!("{a} → {b} ({kind})"),
        (None, Some(b)) => format!("{b} ({kind})"),
        (Some(a), None) => format!("{a} ({kind})"),
        (None, None) => kind.to_owned(),
    }
}

fn file_detail(f: &FileChange) -> String {
    let (Some(a), Some(b)) = (&f.a, &f.b) else {
        let s = f.a.as_ref().or(f.b.as_ref());
        return s
            .map(|s| match &s.link_target {
                Some(t) => format!("{} → {t}", s.kind.as_str()),
                None => format!(
                    "{} {} bytes, mode {:04o}, {}:{}",
                    s.kind.as_str(),
                    s.size,
                    s.mode,
                    s.uid,
                    s.gid
                ),
            })
            .unwrap_or_default();
    };
    let mut parts = Vec::new();
    for field in &f.fields {
        parts.push(match field.as_str() {
            "type" => format!("type {} → {}", a.kind.as_str(), b.kind.as_str()),
            "size" => format!("size {} → {}", a.size, b.size),
            "mode" => format!("mode {:04o} → {:04o}", a.mode, b.mode),
            "owner" => format!("owner {}:{} → {}:{}", a.uid, a.gid, b.uid, b.gid),
            "target" => format!(
                "target {} → {}",
                a.link_target.as_deref().unwrap_or("-"),
                b.link_target.as_deref().unwrap_or("-")
            ),
            other => other.to_owned(),
        });
    }
    parts.join(", ")
}

fn layer_line(l: &LayerSummary) -> String {
    let by = l
        .layer
        .created_by
        .as_deref()
        .map(|c| format!("  {}", shorten(c, 80)))
        .unwrap_or_default();
    format!(
        "[{}] {} {} bytes, {} entries{by}",
        l.layer.index,
        short_digest(&l.layer.digest),
        l.size,
        l.entries
    )
}

/// Writes the report as text; `colour` adds ANSI styles (the caller decides: a terminal and
/// no `NO_COLOR`).
///
/// # Errors
/// Write errors of `out`.
pub fn write_text(out: &mut dyn Write, r: &DiffReport, colour: bool) -> io::Result<()> {
    let s = Styles::new(colour);
    let (h, hr) = (s.heading, s.heading.render_reset());
    for (label, side) in [("A", &r.a), ("B", &r.b)] {
        writeln!(
            out,
            "{h}{label}{hr} {}  {}, config {}, {} layers, {} files, {} packages",
            side.name,
            side.platform,
            short_digest(&side.config_digest),
            side.layers,
            side.files,
            side.packages
        )?;
    }
    if r.equal {
        writeln!(out, "\nThe images are equal.")?;
        return Ok(());
    }
    if let Some(summary) = &r.explanation.summary {
        writeln!(out, "\n{h}Summary:{hr} {summary}")?;
    }
    writeln!(out, "\n{h}Explanation{hr} (most likely to break first)")?;
    for item in &r.explanation.items {
        let cs = s.category(item.category);
        writeln!(
            out,
            "{:>4}. {cs}{:<22}{} {}: {}",
            item.rank,
            item.category.title(),
            cs.render_reset(),
            item.subject,
            item.change
        )?;
        let (d, dr) = (s.dim, s.dim.render_reset());
        if let Some(l) = &item.layer {
            writeln!(out, "{:29}{d}from {}{dr}", "", layer_text(l))?;
        } else if let Some(step) = &item.step {
            writeln!(out, "{:29}{d}set by {}{dr}", "", shorten(step, 90))?;
        }
    }
    if !r.config.is_empty() {
        writeln!(out, "\n{h}Config{hr}")?;
        for c in &r.config {
            let name = match &c.key {
                Some(k) => format!("{} {k}", c.field),
                None => c.field.clone(),
            };
            let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".to_owned());
            writeln!(out, "  {name}: {} → {}", show(&c.a), show(&c.b))?;
        }
    }
    let l = &r.layers;
    writeln!(
        out,
        "\n{h}Layers{hr}: {} shared, {} only in A, {} only in B",
        l.shared_prefix,
        l.a_only.len(),
        l.b_only.len()
    )?;
    for (sign, style, list) in [("-", s.removed, &l.a_only), ("+", s.added, &l.b_only)] {
        for layer in list {
            writeln!(
                out,
                "  {style}{sign} {}{}",
                layer_line(layer),
                style.render_reset()
            )?;
        }
    }
    if !r.packages.is_empty() {
        writeln!(out, "\n{h}Packages{hr} ({} changed)", r.packages.len())?;
        for p in &r.packages {
            let (sign, style) = match p.change {
                PackageChangeKind::Added => ("+", s.added),
                PackageChangeKind::Removed => ("-", s.removed),
                _ => ("~", s.modified),
            };
            let from = p
                .layer
                .as_ref()
                .map(|l| format!("  [layer {}]", l.index))
                .unwrap_or_default();
            writeln!(
                out,
                "  {style}{sign} {} {}{}{from}",
                package_label(p),
                package_versions(p),
                style.render_reset()
            )?;
        }
    }
    let f = &r.files;
    if !f.changes.is_empty() {
        writeln!(
            out,
            "\n{h}Files{hr} ({} added, {} removed, {} modified)",
            f.added, f.removed, f.modified
        )?;
        for c in f.changes.iter().take(MAX_FILE_LINES) {
            let (sign, style) = match c.change {
                FileChangeKind::Added => ("+", s.added),
                FileChangeKind::Removed => ("-", s.removed),
                FileChangeKind::Modified => ("~", s.modified),
            };
            writeln!(
                out,
                "  {style}{sign} {}{}  {}",
                c.path,
                style.render_reset(),
                file_detail(c)
            )?;
        }
        if f.changes.len() > MAX_FILE_LINES {
            writeln!(
                out,
                "  ... and {} more (--json lists all)",
                f.changes.len() - MAX_FILE_LINES
            )?;
        }
    }
    Ok(())
}

/// A Markdown table cell: pipes escaped, newlines flattened.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// A code span that survives any backticks in `s`.
fn code(s: &str) -> String {
    if s.contains('`') {
        format!("`` {} ``", cell(s))
    } else {
        format!("`{}`", cell(s))
    }
}

/// The report as Markdown.
pub fn to_markdown(r: &DiffReport) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "## Image diff\n");
    let _ = writeln!(m, "| | A | B |\n|---|---|---|");
    let _ = writeln!(m, "| image | {} | {} |", code(&r.a.name), code(&r.b.name));
    let _ = writeln!(
        m,
        "| config | {} | {} |",
        code(r.a.config_digest.as_str()),
        code(r.b.config_digest.as_str())
    );
    let _ = writeln!(m, "| platform | {} | {} |", r.a.platform, r.b.platform);
    let _ = writeln!(m, "| layers | {} | {} |", r.a.layers, r.b.layers);
    let _ = writeln!(m, "| files | {} | {} |", r.a.files, r.b.files);
    let _ = writeln!(m, "| packages | {} | {} |", r.a.packages, r.b.packages);
    if r.equal {
        let _ = writeln!(m, "\nThe images are equal.");
        return m;
    }
    if let Some(summary) = &r.explanation.summary {
        let _ = writeln!(m, "\n**Summary:** {}", cell(summary));
    }
    let _ = writeln!(m, "\n### Explanation (most likely to break first)\n");
    let _ = writeln!(
        m,
        "| # | category | what | change | from |\n|---|---|---|---|---|"
    );
    for i in &r.explanation.items {
        let from = match (&i.layer, &i.step) {
            (Some(l), _) => cell(&layer_text(l)),
            (None, Some(step)) => cell(&shorten(step, 90)),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {from} |",
            i.rank,
            i.category.title(),
            code(&i.subject),
            cell(&i.change)
        );
    }
    if !r.config.is_empty() {
        let _ = writeln!(m, "\n### Config\n\n| setting | A | B |\n|---|---|---|");
        for c in &r.config {
            let name = match &c.key {
                Some(k) => format!("{} {k}", c.field),
                None => c.field.clone(),
            };
            let show = |v: &Option<String>| {
                v.as_deref()
                    .map(code)
                    .unwrap_or_else(|| "(unset)".to_owned())
            };
            let _ = writeln!(m, "| {} | {} | {} |", cell(&name), show(&c.a), show(&c.b));
        }
    }
    let l = &r.layers;
    let _ = writeln!(
        m,
        "\n### Layers\n\n{} shared, {} only in A, {} only in B.\n",
        l.shared_prefix,
        l.a_only.len(),
        l.b_only.len()
    );
    if !l.a_only.is_empty() || !l.b_only.is_empty() {
        let _ = writeln!(
            m,
            "| side | # | digest | size | created by |\n|---|---|---|---|---|"
        );
        for (side, list) in [("A", &l.a_only), ("B", &l.b_only)] {
            for x in list {
                let _ = writeln!(
                    m,
                    "| {side} | {} | {} | {} | {} |",
                    x.layer.index,
                    code(&short_digest(&x.layer.digest)),
                    x.size,
                    x.layer
                        .created_by
                        .as_deref()
                        .map(|c| code(&shorten(c, 80)))
                        .unwrap_or_default()
                );
            }
        }
    }
    if !r.packages.is_empty() {
        let _ = writeln!(
            m,
            "\n### Packages\n\n| package | A | B | change | layer |\n|---|---|---|---|---|"
        );
        for p in &r.packages {
            let kind = package_versions(p);
            let kind = kind
                .rsplit_once('(')
                .map(|(_, k)| k.trim_end_matches(')'))
                .unwrap_or("");
            let _ = writeln!(
                m,
                "| {} | {} | {} | {kind} | {} |",
                code(&package_label(p)),
                p.a.as_deref().map(code).unwrap_or_default(),
                p.b.as_deref().map(code).unwrap_or_default(),
                p.layer
                    .as_ref()
                    .map(|l| l.index.to_string())
                    .unwrap_or_default()
            );
        }
    }
    let f = &r.files;
    if !f.changes.is_empty() {
        let _ = writeln!(
            m,
            "\n### Files\n\n{} added, {} removed, {} modified.\n\n| | path | detail |\n|---|---|---|",
            f.added, f.removed, f.modified
        );
        for c in f.changes.iter().take(MAX_FILE_LINES) {
            let sign = match c.change {
                FileChangeKind::Added => "+",
                FileChangeKind::Removed => "-",
                FileChangeKind::Modified => "~",
            };
            let _ = writeln!(
                m,
                "| {sign} | {} | {} |",
                code(&c.path),
                cell(&file_detail(c))
            );
        }
        if f.changes.len() > MAX_FILE_LINES {
            let _ = writeln!(
                m,
                "\n... and {} more (the JSON output lists all).",
                f.changes.len() - MAX_FILE_LINES
            );
        }
    }
    m
}
