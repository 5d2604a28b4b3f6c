//! `pinfold lint`: parses Dockerfiles with `pinfold-inspect` and prints its determinism findings
//! as compiler-style text, a JSON array or SARIF 2.1.0.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use pinfold_inspect::dockerfile::parse;
use pinfold_inspect::lint::report::{to_json, to_sarif, FileFindings};
use pinfold_inspect::lint::{lint, Finding, LintOptions, RuleId, Severity};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `file:line:col: severity[ID]: message`, then the hint.
    Text,
    /// One JSON array of `{id, severity, file, line, column, message, hint}`.
    Json,
    /// SARIF 2.1.0, for code-scanning dashboards.
    Sarif,
}

/// The lowest severity that makes the exit code 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailLevel {
    /// Only errors fail.
    Error,
    /// Warnings and errors fail.
    Warning,
    /// Any finding fails.
    Info,
    /// Never fail on findings (syntax errors still exit 2).
    None,
}

/// Arguments of `pinfold lint`.
#[derive(Debug, clap::Args)]
pub struct LintArgs {
    /// Dockerfiles to check; `-` reads standard input.
    #[arg(required = true, value_name = "DOCKERFILE")]
    pub files: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Exit 1 when a finding is at or above this severity.
    #[arg(long, value_enum, default_value = "warning")]
    pub fail_level: FailLevel,
    /// Allowed base image registry (`docker.io`, `ghcr.io`, `host/path` prefix); repeatable.
    /// Without any, the registry rule (PF013) is off.
    #[arg(long = "allow-registry", value_name = "REGISTRY")]
    pub allow_registries: Vec<String>,
    /// Rule ID to skip (e.g. PF002); repeatable.
    #[arg(long = "disable", value_name = "ID")]
    pub disable: Vec<String>,
}

/// Lints every file and prints the findings.
///
/// Returns exit code 0 when no finding reaches the fail level, 1 when one does, 2 when a file
/// could not be read or parsed (the other files are still checked and reported).
///
/// # Errors
///
/// An unknown rule ID in `--disable`, or a failure to write the output.
pub fn run(args: LintArgs) -> anyhow::Result<ExitCode> {
    let disabled = args
        .disable
        .iter()
        .map(|d| d.parse::<RuleId>())
        .collect::<Result<Vec<_>, _>>()?;
    let options = LintOptions {
        allow_registries: args.allow_registries.clone(),
        disabled,
    };
    let format = if args.json { Format::Json } else { args.format };

    let mut failed = false;
    let mut results: Vec<(String, Vec<Finding>)> = Vec::new();
    for file in &args.files {
        let (name, text) = match read(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("pinfold: error: {e:#}");
                failed = true;
                continue;
            }
        };
        match parse(&text) {
            Ok(df) => results.push((name, lint(&df, &options))),
            Err(e) => {
                eprintln!("{name}:{}:{}: error: {}", e.line, e.column, e.kind);
                failed = true;
            }
        }
    }

    let files: Vec<FileFindings<'_>> = results
        .iter()
        .map(|(file, findings)| FileFindings { file, findings })
        .collect();
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&to_json(&files))?)?,
        Format::Sarif => writeln!(out, "{}", serde_json::to_string_pretty(&to_sarif(&files))?)?,
        Format::Text => {
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            for f in &files {
                for x in f.findings {
                    write_text(&mut out, f.file, x, colour)?;
                }
            }
        }
    }
    out.flush()?;

    if failed {
        return Ok(ExitCode::from(2));
    }
    let threshold = match args.fail_level {
        FailLevel::Error => Some(Severity::Error),
        FailLevel::Warning => Some(Severity::Warning),
        FailLevel::Info => Some(Severity::Info),
        FailLevel::None => None,
    };
    let over =
        threshold.is_some_and(|t| results.iter().flat_map(|(_, f)| f).any(|f| f.severity >= t));
    Ok(if over {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The display name and text of `file` (`-`: standard input, shown as `<stdin>`).
fn read(file: &str) -> anyhow::Result<(String, String)> {
    if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        return Ok(("<stdin>".to_string(), text));
    }
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
    Ok((file.to_string(), text))
}

/// `Dockerfile:3:6: warning[PF002]: message` and an indented hint, like a compiler.
fn write_text(out: &mut impl Write, file: &str, f: &Finding, colour: bool) -> std::io::Result<()> {
    let (on, off, bold) = if colour {
        let c = match f.severity {
            Severity::Error => "\x1b[1;31m",
            Severity::Warning => "\x1b[1;33m",
            Severity::Info => "\x1b[1;36m",
        };
        (c, "\x1b[0m", "\x1b[1m")
    } else {
        ("", "", "")
    };
    writeln!(
        out,
        "{bold}{file}:{}:{}:{off} {on}{}[{}]{off}: {}",
        f.line,
        f.column,
        f.severity.as_str(),
        f.rule.id(),
        f.message
    )?;
    writeln!(out, "  = hint: {}", f.hint)
}
