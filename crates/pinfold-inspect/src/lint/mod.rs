//! Determinism rules over a parsed [`crate::dockerfile::Dockerfile`]: things that
//! make two builds of the same file produce different images, or images that break at runtime.
//!
//! Every rule has a stable ID, a default severity, a message and a fix hint; see
//! [`RuleId::ALL`]. [`lint`] runs all enabled rules; [`report`] renders findings as JSON or
//! SARIF 2.1.0.
//!
//! | ID    | Severity | Finds |
//! |-------|----------|-------|
//! | PF001 | warning  | base image (or `COPY --from` image) with `latest` or no tag |
//! | PF002 | warning  | base image not pinned by digest (or depending on an `ARG` without default) |
//! | PF003 | warning  | `apt-get upgrade`/`dist-upgrade`/`full-upgrade`, `apk upgrade` |
//! | PF004 | warning  | `apt-get`/`apt install` of names without `=version` |
//! | PF005 | warning  | `apk add` of names without `=version` |
//! | PF006 | warning  | `pip install` of names without `==` (unless `--require-hashes`) |
//! | PF007 | warning  | `npm`/`yarn`/`pnpm install` of names without `@version` |
//! | PF008 | warning  | `gem install` without `-v` or `name:version` |
//! | PF009 | warning  | `ADD http(s)://…` without `--checksum` |
//! | PF010 | warning  | `curl`/`wget` piped into a shell, `sh -c "$(curl …)"`, `bash <(curl …)` |
//! | PF011 | error    | bash-only syntax (`[[`, `source`, arrays, brace expansion, `function`, `$'…'`, `==` in `[ ]`, `&>`) in shell form run by `/bin/sh` |
//! | PF012 | error    | a literal `\n` outside quotes in shell form (story 3's `for … do\n\`) |
//! | PF013 | error    | base image registry outside `--allow-registry` (off without a list) |
//! | PF014 | warning  | final image runs `date`/cron but sets no timezone (`ENV TZ`, tzdata, `/etc/localtime`) |
//!
//! Package rules look at `RUN` only (the build); the shell rules also check shell-form `CMD` and
//! `ENTRYPOINT`, and `RUN <<EOF` heredoc scripts (a `#!` line picks their shell). The `SHELL` in
//! effect is tracked per stage and inherited by `FROM <earlier stage>`.

pub mod report;
mod rules;
mod shell;

use serde::Serialize;

use crate::dockerfile::{parse, Dockerfile, ParseError};

/// How serious a finding is. Ordered: `Info < Warning < Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; rarely breaks a build.
    Info,
    /// Makes builds non-reproducible or fragile.
    Warning,
    /// Breaks the build or the container, or violates policy.
    Error,
}

impl Severity {
    /// `error`, `warning` or `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

macro_rules! rules {
    ($($variant:ident = $id:literal, $sev:ident, $title:literal, $hint:literal;)*) => {
        /// The stable identifiers of the lint rules.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum RuleId {
            $(
                #[doc = $title]
                $variant,
            )*
        }

        impl RuleId {
            /// Every rule, in ID order.
            pub const ALL: &'static [RuleId] = &[$(RuleId::$variant),*];

            /// The stable ID, e.g. `PF002`.
            pub fn id(self) -> &'static str {
                match self { $(RuleId::$variant => $id),* }
            }

            /// The rule's default severity.
            pub fn severity(self) -> Severity {
                match self { $(RuleId::$variant => Severity::$sev),* }
            }

            /// A one-line description of what the rule finds.
            pub fn title(self) -> &'static str {
                match self { $(RuleId::$variant => $title),* }
            }

            /// The general fix hint (findings may carry a more specific one).
            pub fn hint(self) -> &'static str {
                match self { $(RuleId::$variant => $hint),* }
            }
        }
    };
}

rules! {
    LatestTag = "PF001", Warning,
        "Base image uses the `latest` tag or no tag",
        "name a version tag (e.g. debian:12.5) and pin the digest: name:tag@sha256:...";
    NotPinned = "PF002", Warning,
        "Base image is not pinned by digest",
        "append the digest: name:tag@sha256:... (`pinfold lock --rewrite` writes it)";
    DistUpgrade = "PF003", Warning,
        "Distribution upgrade inside the build (apt-get upgrade/dist-upgrade, apk upgrade)",
        "drop the upgrade and move to a newer pinned base image instead";
    AptUnpinned = "PF004", Warning,
        "apt-get/apt install of packages without versions",
        "pin each package: apt-get install -y curl=7.88.1-10+deb12u5";
    ApkUnpinned = "PF005", Warning,
        "apk add of packages without versions",
        "pin each package: apk add curl=8.5.0-r0";
    PipUnpinned = "PF006", Warning,
        "pip install of packages without `==` versions",
        "pin each package (pip install requests==2.31.0) or use a requirements file with --require-hashes";
    NpmUnpinned = "PF007", Warning,
        "npm install of packages without `@version`",
        "pin each package (npm install left-pad@1.3.0) or install from package-lock.json with npm ci";
    GemUnpinned = "PF008", Warning,
        "gem install without `-v`",
        "pin the version: gem install bundler -v 2.5.6";
    AddUrlNoChecksum = "PF009", Warning,
        "ADD of a URL without --checksum",
        "add --checksum=sha256:<hex> so the download is verified and the build is reproducible";
    CurlPipeShell = "PF010", Warning,
        "Script downloaded and piped into a shell",
        "download to a file, verify its checksum (sha256sum -c), then run it; or install a pinned package";
    BashOnlySyntax = "PF011", Error,
        "Shell form uses bash-only syntax while the shell is /bin/sh",
        "rewrite for POSIX sh, or set SHELL [\"/bin/bash\", \"-c\"] before this instruction";
    LiteralNewline = "PF012", Error,
        "Shell form contains a literal `\\n` escape, which the shell reads as `n`",
        "separate commands with `;` or `&&` before the line continuation, or use a heredoc or a script file";
    RegistryNotAllowed = "PF013", Error,
        "Base image registry is not in the allow-list",
        "mirror the image into an allowed registry and use that reference";
    NoTimezone = "PF014", Warning,
        "Image handles dates but sets no timezone",
        "set ENV TZ=<Area/City> (and install tzdata when the base lacks it)";
}

impl std::str::FromStr for RuleId {
    type Err = UnknownRule;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RuleId::ALL
            .iter()
            .copied()
            .find(|r| r.id().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownRule(s.to_string()))
    }
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// A rule ID that no rule has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown lint rule {0:?} (rules are PF001 to PF014)")]
pub struct UnknownRule(pub String);

/// One problem found in a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Which rule.
    pub rule: RuleId,
    /// Its severity.
    pub severity: Severity,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong, naming the offending text.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

/// What to check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LintOptions {
    /// Registries base images may come from (`docker.io`, `ghcr.io`, or `host/path` prefixes).
    /// Empty: [`RuleId::RegistryNotAllowed`] is off.
    pub allow_registries: Vec<String>,
    /// Rules not to run.
    pub disabled: Vec<RuleId>,
}

/// Runs every enabled rule; findings are sorted by line, column and rule.
///
/// A comment `# pinfold-lint ignore=PF004,PF006` in the comment block right above an
/// instruction silences those rules for that instruction (like hadolint's `# hadolint ignore=`).
pub fn lint(df: &Dockerfile, options: &LintOptions) -> Vec<Finding> {
    let mut findings = rules::run(df, options);
    findings.retain(|f| !options.disabled.contains(&f.rule));
    let ignored = inline_ignores(df);
    findings.retain(|f| {
        !ignored
            .iter()
            .any(|(lines, rules)| lines.contains(&f.line) && rules.contains(&f.rule))
    });
    findings.sort_by_key(|f| (f.line, f.column, f.rule));
    findings.dedup();
    findings
}

/// Line ranges of instructions and the rules their `# pinfold-lint ignore=` comments silence.
fn inline_ignores(df: &Dockerfile) -> Vec<(std::ops::RangeInclusive<usize>, Vec<RuleId>)> {
    let mut out = Vec::new();
    for ins in &df.instructions {
        let mut rules = Vec::new();
        let mut line = ins.span.start_line;
        while let Some(c) = df.comments.iter().find(|c| c.line + 1 == line) {
            if let Some(list) = c.text.strip_prefix("pinfold-lint ignore=") {
                rules.extend(
                    list.split(',')
                        .filter_map(|id| id.trim().parse::<RuleId>().ok()),
                );
            }
            line = c.line;
        }
        if !rules.is_empty() {
            out.push((ins.span.start_line..=ins.span.end_line, rules));
        }
    }
    out
}

/// Parses `text` and lints it.
///
/// # Errors
///
/// The [`ParseError`] when the Dockerfile does not parse.
pub fn lint_source(text: &str, options: &LintOptions) -> Result<Vec<Finding>, ParseError> {
    Ok(lint(&parse(text)?, options))
}
