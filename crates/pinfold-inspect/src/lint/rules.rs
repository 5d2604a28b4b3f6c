//! The rule implementations, walking stages in order and tracking each stage's `SHELL`.

use pinfold_oci::ImageReference;

use super::shell::{bashisms, commands, literal_newlines, SimpleCommand};
use super::{Finding, LintOptions, RuleId};
use crate::dockerfile::{BaseImage, Body, Command, Dockerfile, Instruction, Keyword, Stage};

/// What kind of shell runs a shell-form command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShellKind {
    /// POSIX sh: dash, busybox ash (the default `/bin/sh -c`).
    Posix,
    /// bash, zsh, ksh: bash-only syntax is fine.
    Bash,
    /// cmd.exe, PowerShell or something unknown: shell rules do not apply.
    Other,
}

fn shell_kind(argv0: &str) -> ShellKind {
    let name = argv0.rsplit(['/', '\\']).next().unwrap_or(argv0);
    match name.trim_end_matches(".exe") {
        "sh" | "ash" | "dash" | "busybox" => ShellKind::Posix,
        "bash" | "zsh" | "ksh" | "mksh" => ShellKind::Bash,
        _ => ShellKind::Other,
    }
}

/// A script to check, the shell that runs it and whether it is a build step (`RUN`).
struct Script<'a> {
    text: &'a str,
    kind: ShellKind,
    build: bool,
}

struct Ctx<'a> {
    out: Vec<Finding>,
    options: &'a LintOptions,
}

impl Ctx<'_> {
    fn push(
        &mut self,
        rule: RuleId,
        (line, column): (usize, usize),
        message: String,
        hint: Option<String>,
    ) {
        self.out.push(Finding {
            rule,
            severity: rule.severity(),
            line,
            column,
            message,
            hint: hint.unwrap_or_else(|| rule.hint().to_string()),
        });
    }
}

/// Line and column of the first occurrence of `needle` in the instruction's text.
fn locate(ins: &Instruction, needle: &str) -> (usize, usize) {
    for (n, line) in ins.original.lines().enumerate() {
        if let Some(p) = line.find(needle) {
            return (ins.span.start_line + n, line[..p].chars().count() + 1);
        }
    }
    (ins.span.start_line, ins.span.column)
}

pub(super) fn run(df: &Dockerfile, options: &LintOptions) -> Vec<Finding> {
    let mut cx = Ctx {
        out: Vec::new(),
        options,
    };
    let default_shell = vec!["/bin/sh".to_string(), "-c".to_string()];
    let mut final_shells: Vec<Vec<String>> = Vec::new();
    for stage in &df.stages {
        let from = &df.instructions[stage.from];
        base_image_rules(&mut cx, stage, from);
        let mut shell = match &stage.base {
            BaseImage::Stage(i) => final_shells
                .get(*i)
                .cloned()
                .unwrap_or_else(|| default_shell.clone()),
            // Windows images run shell form with `cmd /S /C`: the sh rules do not apply.
            BaseImage::Image { reference, .. }
                if ["windows", "servercore", "nanoserver"]
                    .iter()
                    .any(|w| reference.to_ascii_lowercase().contains(w)) =>
            {
                vec!["cmd".to_string(), "/S".to_string(), "/C".to_string()]
            }
            _ => default_shell.clone(),
        };
        for ins in &df.instructions[stage.instructions.clone()] {
            let kind = shell_kind(shell.first().map(String::as_str).unwrap_or("/bin/sh"));
            match &ins.body {
                Body::Shell(argv) => shell = argv.clone(),
                Body::Files { sources, .. } => {
                    if ins.keyword == Keyword::Add {
                        add_url(&mut cx, ins, sources);
                    }
                    copy_from_rules(&mut cx, df, ins);
                }
                Body::Command(cmd) => {
                    for script in scripts(ins, cmd, kind) {
                        script_rules(&mut cx, ins, &script);
                    }
                }
                // `HEALTHCHECK [--flags] CMD command`: shell form runs under the stage's shell.
                Body::Raw(text) if ins.keyword == Keyword::Healthcheck => {
                    let t = text.trim_start();
                    if let (Some(head), Some(rest)) = (t.get(..3), t.get(3..)) {
                        let rest = rest.trim_start();
                        let exec = rest.starts_with("[\"") || rest.starts_with("[]");
                        if head.eq_ignore_ascii_case("cmd") && !exec {
                            let script = Script {
                                text: rest,
                                kind,
                                build: false,
                            };
                            script_rules(&mut cx, ins, &script);
                        }
                    }
                }
                _ => {}
            }
        }
        final_shells.push(shell);
    }
    timezone(&mut cx, df);
    cx.out
}

/// The shell scripts an instruction runs: the shell-form text, `sh -c` in exec form, and
/// heredoc bodies that are the script itself (`RUN <<EOF`, `RUN bash <<EOF`).
fn scripts<'a>(ins: &'a Instruction, cmd: &'a Command, kind: ShellKind) -> Vec<Script<'a>> {
    let build = ins.keyword == Keyword::Run;
    let mut out = Vec::new();
    match cmd {
        Command::Shell(text) => {
            out.push(Script { text, kind, build });
            let words = commands(text);
            // The command before the heredoc markers: nothing (the shell runs the body) or an
            // interpreter.
            let first = words.first();
            let body_shell = match first {
                None => Some(kind),
                Some(c) if c.words.len() <= 2 => match shell_kind(c.name()) {
                    ShellKind::Other => None,
                    k => Some(k),
                },
                Some(_) => None,
            };
            if let (Some(body_kind), true) = (body_shell, build) {
                for h in &ins.heredocs {
                    let k = match h.body.lines().next().and_then(|l| l.strip_prefix("#!")) {
                        Some(shebang) => {
                            let mut parts = shebang.split_whitespace();
                            let interp = parts.next().unwrap_or("");
                            if interp.ends_with("/env") {
                                shell_kind(parts.next().unwrap_or(""))
                            } else {
                                shell_kind(interp)
                            }
                        }
                        None => body_kind,
                    };
                    out.push(Script {
                        text: &h.body,
                        kind: k,
                        build,
                    });
                }
            }
        }
        Command::Exec(argv) => {
            if let [sh, flag, script, ..] = argv.as_slice() {
                if flag == "-c" && shell_kind(sh) != ShellKind::Other {
                    out.push(Script {
                        text: script,
                        kind: shell_kind(sh),
                        build,
                    });
                }
            }
        }
    }
    out
}

fn base_image_rules(cx: &mut Ctx<'_>, stage: &Stage, from: &Instruction) {
    let Body::From { image: written, .. } = &from.body else {
        return;
    };
    let BaseImage::Image {
        reference,
        unresolved,
    } = &stage.base
    else {
        return; // scratch or an earlier stage: nothing to pin
    };
    image_rules(cx, from, "base image", written, reference, unresolved);
}

/// `COPY --from=<image>` names an image unless it is an earlier stage or a stage index.
fn copy_from_rules(cx: &mut Ctx<'_>, df: &Dockerfile, ins: &Instruction) {
    let Some(from) = ins.flag("from") else {
        return;
    };
    let lower = from.to_ascii_lowercase();
    let is_stage = from.chars().all(|c| c.is_ascii_digit())
        || df
            .stages
            .iter()
            .any(|s| s.name.as_deref() == Some(lower.as_str()));
    if is_stage || from.contains('$') || from.is_empty() {
        return;
    }
    image_rules(cx, ins, "image in COPY --from", from, from, &[]);
}

fn image_rules(
    cx: &mut Ctx<'_>,
    ins: &Instruction,
    what: &str,
    written: &str,
    reference: &str,
    unresolved: &[String],
) {
    let at = locate(ins, written);
    let shown = if reference == written {
        reference.to_string()
    } else {
        format!("{reference} (from {written})")
    };
    if !unresolved.is_empty() {
        cx.push(
            RuleId::NotPinned,
            at,
            format!(
                "{what} {written} depends on build argument(s) {} without a default, so it cannot be pinned",
                unresolved.join(", ")
            ),
            Some("give the ARG before FROM a default that names a digest: ARG BASE=name:tag@sha256:...".into()),
        );
        return;
    }
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let tag = last.split_once(':').map(|(_, t)| t);
    if digest.is_none() {
        match tag {
            None => cx.push(
                RuleId::LatestTag,
                at,
                format!("{what} {shown} has no tag, so it means `latest`"),
                None,
            ),
            Some("latest") => cx.push(
                RuleId::LatestTag,
                at,
                format!("{what} {shown} uses the `latest` tag"),
                None,
            ),
            Some(_) => {}
        }
        cx.push(
            RuleId::NotPinned,
            at,
            format!("{what} {shown} is not pinned by digest"),
            None,
        );
    }
    if !cx.options.allow_registries.is_empty() {
        if let Ok(parsed) = reference.parse::<ImageReference>() {
            let registry = parsed.registry();
            let full = format!("{registry}/{}", parsed.repository());
            let allowed = cx.options.allow_registries.iter().any(|entry| {
                let e = entry.trim_end_matches('/');
                let e = match e {
                    "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io",
                    other => other,
                };
                registry == e || full.starts_with(&format!("{e}/"))
            });
            if !allowed {
                cx.push(
                    RuleId::RegistryNotAllowed,
                    at,
                    format!(
                        "{what} {shown} comes from {registry}, which is not in the allow-list ({})",
                        cx.options.allow_registries.join(", ")
                    ),
                    None,
                );
            }
        }
    }
}

fn add_url(cx: &mut Ctx<'_>, ins: &Instruction, sources: &[String]) {
    if ins.has_flag("checksum") {
        return;
    }
    for src in sources {
        if src.starts_with("http://") || src.starts_with("https://") {
            cx.push(
                RuleId::AddUrlNoChecksum,
                locate(ins, src),
                format!("ADD {src} downloads without --checksum"),
                None,
            );
        }
    }
}

fn script_rules(cx: &mut Ctx<'_>, ins: &Instruction, script: &Script<'_>) {
    let kw = ins.keyword.as_str();
    if script.kind == ShellKind::Other {
        return;
    }
    if literal_newlines(script.text) > 0 {
        cx.push(
            RuleId::LiteralNewline,
            locate(ins, "\\n"),
            format!(
                "shell-form {kw} contains `\\n`, which is not a newline: the shell reads it as `n` (so `do\\n` becomes `don`) and the script fails"
            ),
            Some(format!(
                "end each command with `;` before the line continuation, or write `{kw} /bin/bash -c '...'` with `;`, or move the script to a file"
            )),
        );
    }
    if script.kind == ShellKind::Posix {
        for b in bashisms(script.text) {
            cx.push(
                RuleId::BashOnlySyntax,
                locate(ins, &b.needle),
                format!("shell-form {kw} uses {} but runs under /bin/sh", b.what),
                None,
            );
        }
    }
    if !script.build {
        return;
    }
    let cmds = commands(script.text);
    for (n, cmd) in cmds.iter().enumerate() {
        package_rules(cx, ins, cmd);
        let name = cmd.name();
        if (name == "curl" || name == "wget") && cmd.piped {
            if let Some(next) = cmds.get(n + 1) {
                if is_interpreter(next.name()) {
                    cx.push(
                        RuleId::CurlPipeShell,
                        locate(ins, name),
                        format!("{name} output is piped into {}", next.name()),
                        None,
                    );
                }
            }
        }
        if is_interpreter(name)
            && cmd.raw.iter().any(|w| {
                w.contains("$(curl")
                    || w.contains("$(wget")
                    || w.contains("`curl")
                    || w.contains("`wget")
            })
        {
            cx.push(
                RuleId::CurlPipeShell,
                locate(ins, name),
                format!("{name} runs a script downloaded by command substitution"),
                None,
            );
        }
    }
    if script.text.contains("<(curl") || script.text.contains("<(wget") {
        cx.push(
            RuleId::CurlPipeShell,
            locate(ins, "<("),
            "a downloaded script is run through process substitution".into(),
            None,
        );
    }
}

fn is_interpreter(name: &str) -> bool {
    matches!(
        name,
        "sh" | "bash"
            | "zsh"
            | "dash"
            | "ash"
            | "ksh"
            | "python"
            | "python3"
            | "perl"
            | "ruby"
            | "node"
    )
}

/// Words that are not options, skipping the values of options that take one.
fn operands<'a>(words: &'a [String], with_value: &[&str]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut skip = false;
    for w in words {
        if skip {
            skip = false;
            continue;
        }
        if w.starts_with('-') {
            if with_value.contains(&w.as_str()) {
                skip = true;
            }
            continue;
        }
        out.push(w.as_str());
    }
    out
}

/// A package name without its version specifier or extras (`uvicorn[standard]>=0.23` → `uvicorn`).
fn bare(word: &str) -> &str {
    let end = word
        .find(['<', '>', '=', '!', '~', ';', '[', ' '])
        .unwrap_or(word.len());
    &word[..end]
}

/// Line and column of `needle` as a whole word after the first `anchor` (falling back to
/// [`locate`]): `pip install --upgrade pip` points at the second `pip`.
fn locate_word_after(ins: &Instruction, anchor: &str, needle: &str) -> (usize, usize) {
    let mut seen_anchor = false;
    let is_word = |c: Option<char>| {
        c.is_some_and(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | ';' | '&' | '|'))
    };
    for (n, line) in ins.original.lines().enumerate() {
        let mut from = 0;
        if !seen_anchor {
            match line.find(anchor) {
                Some(p) => {
                    seen_anchor = true;
                    from = p + anchor.len();
                }
                None => continue,
            }
        }
        let mut start = from;
        while let Some(p) = line[start..].find(needle) {
            let at = start + p;
            let end = at + needle.len();
            if !is_word(line[..at].chars().next_back()) && !is_word(line[end..].chars().next()) {
                return (ins.span.start_line + n, line[..at].chars().count() + 1);
            }
            start = end;
        }
    }
    locate(ins, needle)
}

/// A word that cannot be judged (a variable) or names a local file or URL.
fn not_a_name(w: &str) -> bool {
    w.contains('$')
        || w.starts_with('.')
        || w.starts_with('/')
        || w.starts_with('~')
        || w.contains("://")
}

fn package_rules(cx: &mut Ctx<'_>, ins: &Instruction, cmd: &SimpleCommand) {
    let name = cmd.name();
    let args = &cmd.words[1..];
    let report = |cx: &mut Ctx<'_>, rule: RuleId, manager: &str, names: Vec<&str>, hint: String| {
        if names.is_empty() {
            return;
        }
        let (sub, first) = (manager.rsplit(' ').next().unwrap_or(manager), names[0]);
        cx.push(
            rule,
            locate_word_after(ins, sub, first),
            format!(
                "`{manager}` of {} without a pinned version",
                names.join(", ")
            ),
            Some(hint),
        );
    };
    match name {
        "apt-get" | "apt" | "aptitude" => {
            let ops = operands(
                args,
                &[
                    "-o",
                    "-c",
                    "-t",
                    "--option",
                    "--config-file",
                    "--target-release",
                    "--default-release",
                ],
            );
            let Some((sub, rest)) = ops.split_first() else {
                return;
            };
            match *sub {
                "upgrade" | "dist-upgrade" | "full-upgrade" => cx.push(
                    RuleId::DistUpgrade,
                    locate(ins, sub),
                    format!("{name} {sub} makes the image depend on the day it was built"),
                    None,
                ),
                "install" => {
                    let names: Vec<&str> = rest
                        .iter()
                        .copied()
                        .filter(|w| !w.contains('=') && !not_a_name(w) && !w.ends_with(".deb"))
                        .collect();
                    let hint = format!(
                        "pin each package, e.g. {name} install -y {}=<version> (apt-cache policy {} shows candidates)",
                        bare(names.first().unwrap_or(&"")),
                        bare(names.first().unwrap_or(&""))
                    );
                    report(
                        cx,
                        RuleId::AptUnpinned,
                        &format!("{name} install"),
                        names,
                        hint,
                    );
                }
                _ => {}
            }
        }
        "apk" => {
            let ops = operands(
                args,
                &[
                    "-X",
                    "--repository",
                    "-t",
                    "--virtual",
                    "-p",
                    "--root",
                    "--arch",
                    "--cache-dir",
                    "--keys-dir",
                    "--repositories-file",
                ],
            );
            let Some((sub, rest)) = ops.split_first() else {
                return;
            };
            match *sub {
                "upgrade" => cx.push(
                    RuleId::DistUpgrade,
                    locate(ins, "upgrade"),
                    "apk upgrade makes the image depend on the day it was built".into(),
                    None,
                ),
                "add" => {
                    let names: Vec<&str> = rest
                        .iter()
                        .copied()
                        .filter(|w| !w.contains('=') && !not_a_name(w) && !w.ends_with(".apk"))
                        .collect();
                    let hint = format!(
                        "pin each package, e.g. apk add {}=<version> (apk policy {} shows candidates)",
                        bare(names.first().unwrap_or(&"")),
                        bare(names.first().unwrap_or(&""))
                    );
                    report(cx, RuleId::ApkUnpinned, "apk add", names, hint);
                }
                _ => {}
            }
        }
        _ => {}
    }
    // pip, pip3, pip3.12, python -m pip
    let pip_args: Option<&[String]> = if name == "pip" || name.starts_with("pip3") {
        Some(args)
    } else if name.starts_with("python") {
        match args {
            [m, pip, rest @ ..] if m == "-m" && (pip == "pip" || pip == "pip3") => Some(rest),
            _ => None,
        }
    } else {
        None
    };
    if let Some(pargs) = pip_args {
        if pargs.iter().any(|w| w == "--require-hashes") {
            return;
        }
        let with_value = [
            "-r",
            "--requirement",
            "-c",
            "--constraint",
            "-e",
            "--editable",
            "-i",
            "--index-url",
            "--extra-index-url",
            "-f",
            "--find-links",
            "-t",
            "--target",
            "--prefix",
            "--root",
            "--trusted-host",
            "--platform",
            "--python-version",
            "--implementation",
            "--abi",
            "--cache-dir",
            "--src",
            "--log",
            "--progress-bar",
        ];
        let ops = operands(pargs, &with_value);
        if ops.first() == Some(&"install") {
            let names: Vec<&str> = ops[1..]
                .iter()
                .copied()
                .filter(|w| {
                    !w.contains("==")
                        && !w.contains('@')
                        && !not_a_name(w)
                        && !w.ends_with(".whl")
                        && !w.ends_with(".tar.gz")
                        && !w.ends_with(".zip")
                })
                .collect();
            let hint = format!(
                "pin each package, e.g. pip install {}==<version>, or use -r requirements.txt --require-hashes",
                bare(names.first().unwrap_or(&""))
            );
            report(cx, RuleId::PipUnpinned, "pip install", names, hint);
        }
    }
    let npm_names: Option<Vec<&str>> = match name {
        "npm" | "pnpm" | "yarn" => {
            let ops = operands(
                args,
                &[
                    "--prefix",
                    "--registry",
                    "--cache",
                    "-w",
                    "--workspace",
                    "--userconfig",
                ],
            );
            let ops: Vec<&str> = ops.into_iter().skip_while(|w| *w == "global").collect();
            match ops.split_first() {
                Some((sub, rest)) if matches!(*sub, "install" | "i" | "add" | "isntall") => Some(
                    rest.iter()
                        .copied()
                        .filter(|w| {
                            w.rfind('@').is_none_or(|p| p == 0)
                                && !not_a_name(w)
                                && !w.ends_with(".tgz")
                                && !w.contains(':')
                        })
                        .collect(),
                ),
                _ => None,
            }
        }
        _ => None,
    };
    if let Some(names) = npm_names {
        let hint = format!(
            "pin each package, e.g. {name} install {}@<version>, or install from the lockfile with npm ci",
            bare(names.first().unwrap_or(&""))
        );
        report(
            cx,
            RuleId::NpmUnpinned,
            &format!("{name} install"),
            names,
            hint,
        );
    }
    if name == "gem" && args.first().map(String::as_str) == Some("install") {
        let pinned = args.iter().any(|w| {
            w == "-v"
                || w == "--version"
                || w.starts_with("--version=")
                || (w.starts_with("-v") && w.len() > 2)
        });
        if !pinned {
            let ops = operands(
                &args[1..],
                &[
                    "-i",
                    "--install-dir",
                    "-n",
                    "--bindir",
                    "--source",
                    "-s",
                    "-P",
                    "--trust-policy",
                    "--platform",
                ],
            );
            let names: Vec<&str> = ops
                .into_iter()
                .filter(|w| !w.contains(':') && !not_a_name(w) && !w.ends_with(".gem"))
                .collect();
            let hint = format!(
                "pin the version, e.g. gem install {} -v <version>",
                bare(names.first().unwrap_or(&""))
            );
            report(cx, RuleId::GemUnpinned, "gem install", names, hint);
        }
    }
}

/// Programs whose presence means the image works with dates and times of day.
const DATE_COMMANDS: &[&str] = &[
    "date",
    "cron",
    "crond",
    "crontab",
    "anacron",
    "supercronic",
    "atd",
    "faketime",
];

/// PF014: in the final stage (and the stages it is built on), something handles dates (a
/// `date` or cron command in RUN/CMD/ENTRYPOINT, or a cron package installed) while no timezone
/// is set: no `ENV TZ=...`, no tzdata installed, no `/etc/localtime` or zoneinfo touched.
/// Deliberately conservative: language runtimes alone do not count.
fn timezone(cx: &mut Ctx<'_>, df: &Dockerfile) {
    let Some(mut stage) = df.stages.last() else {
        return;
    };
    let mut chain = vec![stage];
    while let BaseImage::Stage(i) = stage.base {
        match df.stages.get(i) {
            Some(s) if s.index < stage.index => {
                stage = s;
                chain.push(s);
            }
            _ => break,
        }
    }
    let mut tz_set = false;
    let mut date_use: Option<(usize, usize, String)> = None;
    for s in chain {
        for ins in &df.instructions[s.instructions.clone()] {
            match &ins.body {
                Body::Env(pairs) if pairs.iter().any(|(k, v)| k == "TZ" && !v.is_empty()) => {
                    tz_set = true;
                }
                Body::Command(cmd) => {
                    let mut texts: Vec<String> = Vec::new();
                    match cmd {
                        Command::Shell(t) => texts.push(t.clone()),
                        Command::Exec(argv) => texts.push(argv.join(" ")),
                    }
                    texts.extend(ins.heredocs.iter().map(|h| h.body.clone()));
                    for t in &texts {
                        if t.contains("tzdata")
                            || t.contains("/etc/localtime")
                            || t.contains("zoneinfo")
                            || t.contains("/etc/timezone")
                        {
                            tz_set = true;
                        }
                        for c in commands(t) {
                            let hit = if DATE_COMMANDS.contains(&c.name()) {
                                Some(c.name().to_string())
                            } else if matches!(c.name(), "apt-get" | "apt" | "apk" | "yum" | "dnf")
                            {
                                c.words
                                    .iter()
                                    .map(|w| w.split('=').next().unwrap_or(w))
                                    .find(|w| {
                                        matches!(*w, "cron" | "cronie" | "dcron" | "supercronic")
                                    })
                                    .map(str::to_string)
                            } else {
                                None
                            };
                            if let (Some(what), None) = (hit, &date_use) {
                                let (l, col) = locate(ins, &what);
                                date_use = Some((l, col, what));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    if let (Some((line, column, what)), false) = (date_use, tz_set) {
        cx.push(
            RuleId::NoTimezone,
            (line, column),
            format!("the image uses {what} but sets no timezone, so it runs in UTC whatever the host says"),
            None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::{lint_source, LintOptions, RuleId};

    const PINNED: &str =
        "FROM debian:12@sha256:0000000000000000000000000000000000000000000000000000000000000000\n";

    fn ids(text: &str, options: &LintOptions) -> Vec<RuleId> {
        lint_source(text, options)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .into_iter()
            .map(|f| f.rule)
            .collect()
    }

    /// Each rule: Dockerfile bodies (after a pinned FROM unless they start with FROM) that must
    /// and must not trigger it.
    #[test]
    fn each_rule_has_a_failing_and_a_passing_example() {
        use RuleId::*;
        let table: &[(RuleId, &[&str], &[&str])] = &[
            (
                LatestTag,
                &["FROM ruby\n", "FROM ruby:latest\n", "FROM ghcr.io/org/app\n"],
                &["FROM ruby:3.3\n", "FROM ruby:latest@sha256:0000000000000000000000000000000000000000000000000000000000000000\n", "FROM localhost:5000/app:1\n"],
            ),
            (
                NotPinned,
                &[
                    "FROM ruby:3.3\n",
                    "ARG BASE\nFROM $BASE\n",
                    "ARG V=3.3\nFROM ruby:${V}\n",
                    "COPY --from=nginx:1.25 /etc/nginx /etc/nginx\n",
                ],
                &[
                    PINNED,
                    "FROM scratch\n",
                    "FROM debian:12@sha256:0000000000000000000000000000000000000000000000000000000000000000 AS build\nFROM scratch\nCOPY --from=build /a /a\nCOPY --from=0 /b /b\n",
                    "ARG B=ruby@sha256:0000000000000000000000000000000000000000000000000000000000000000\nFROM ${B} AS build\nFROM build\n",
                ],
            ),
            (
                DistUpgrade,
                &["RUN apt-get update && apt-get -y dist-upgrade\n", "RUN apt-get upgrade -y\n", "RUN apk upgrade --no-cache\n", "RUN apt full-upgrade\n"],
                &["RUN apt-get update\n", "RUN apk add --no-cache --upgrade=no curl=8.5.0-r0\n"],
            ),
            (
                AptUnpinned,
                &["RUN apt-get install -y curl\n", "RUN DEBIAN_FRONTEND=noninteractive apt-get -y install dpkg curl=7.88\n", "RUN sudo apt install -y --no-install-recommends git\n"],
                &["RUN apt-get install -y curl=7.88.1-10 git=1:2.39.2-1.1\n", "RUN apt-get install -y ./local.deb\n", "RUN apt-get install -y $PACKAGES\n"],
            ),
            (
                ApkUnpinned,
                &["RUN apk add --no-cache curl\n", "RUN apk add --virtual .deps gcc=13.2.1-r0 make\n"],
                &["RUN apk add --no-cache curl=8.5.0-r0\n", "RUN apk add --virtual .deps gcc=13.2.1-r0\n"],
            ),
            (
                PipUnpinned,
                &["RUN pip install requests\n", "RUN pip3 install --no-cache-dir flask==3.0.0 gunicorn\n", "RUN python3 -m pip install -U pip\n"],
                &["RUN pip install requests==2.31.0\n", "RUN pip install -r requirements.txt\n", "RUN pip install --require-hashes -r r.txt\n", "RUN pip install .\n"],
            ),
            (
                NpmUnpinned,
                &["RUN npm install -g yarn\n", "RUN npm i left-pad @types/node@20.1.0\n", "RUN yarn global add typescript\n"],
                &["RUN npm install\n", "RUN npm ci\n", "RUN npm install -g yarn@1.22.19 @types/node@20.1.0\n"],
            ),
            (
                GemUnpinned,
                &["RUN gem install bundler\n", "RUN gem install --no-document rails\n"],
                &["RUN gem install bundler -v 2.5.6\n", "RUN gem install bundler:2.5.6\n", "RUN gem install --version=2.5.6 bundler\n"],
            ),
            (
                AddUrlNoChecksum,
                &["ADD https://example.com/x.tar.gz /x\n", "ADD --chmod=644 http://example.com/f /f\n"],
                &["ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/x.tar.gz /x\n", "ADD local.tar.gz /x\n"],
            ),
            (
                CurlPipeShell,
                &["RUN curl -fsSL https://get.example.com | sh\n", "RUN wget -O- https://x/install | sudo bash -s --\n", "RUN sh -c \"$(curl -fsSL https://x)\"\n", "RUN bash <(curl -s https://x)\n"],
                &["RUN curl -fsSLo /tmp/i.sh https://x && echo 'abc  /tmp/i.sh' | sha256sum -c && sh /tmp/i.sh\n", "RUN curl -s https://x | tar xz\n"],
            ),
            (
                BashOnlySyntax,
                &[
                    "RUN if [[ -f /x ]]; then echo; fi\n",
                    "RUN source /venv/bin/activate\n",
                    "RUN mkdir -p /srv/{a,b}\n",
                    "CMD a=(1 2); echo $a\n",
                    "ENTRYPOINT function main { echo; }; main\n",
                    "RUN [ \"$X\" == 1 ] || true\n",
                    "SHELL [\"/bin/bash\", \"-c\"]\nRUN echo\nSHELL [\"/bin/sh\", \"-c\"]\nRUN source x\n",
                    "RUN <<EOF\nsource /x\nEOF\n",
                    "HEALTHCHECK --interval=5s CMD [[ -f /ok ]]\n",
                ],
                &[
                    "RUN if [ -f /x ]; then . /venv/bin/activate; fi\n",
                    "SHELL [\"/bin/bash\", \"-c\"]\nRUN source /venv/bin/activate && mkdir -p /srv/{a,b}\n",
                    "CMD /bin/bash -c 'source x; [[ -f y ]]'\n",
                    "CMD [\"bash\", \"-c\", \"source x\"]\n",
                    "RUN <<EOF\n#!/bin/bash\nsource /x\nEOF\n",
                    "RUN bash <<EOF\nsource /x\nEOF\n",
                    "RUN cat > /x.sh <<EOF\nsource /x\nEOF\n",
                ],
            ),
            (
                LiteralNewline,
                &["CMD for p in *.deb; do\\n\\\n  echo $p\\n\\\n  done\n", "RUN echo a\\nb\n"],
                &[
                    "CMD for p in *.deb; do \\\n  echo $p; \\\n  done\n",
                    "RUN printf '%s\\n' a && echo \"a\\nb\"\n",
                    "FROM mcr.microsoft.com/windows/servercore:ltsc2022\nRUN dir C:\\new\n",
                ],
            ),
            (
                NoTimezone,
                &["CMD [\"crond\", \"-f\"]\n", "RUN apt-get install -y cron=3.0\n", "FROM debian:12 AS base\nENV A=b\nFROM base\nCMD date +%F > /out\n"],
                &[
                    "ENV TZ=Europe/Berlin\nCMD [\"crond\", \"-f\"]\n",
                    "RUN apk add tzdata=2024a-r0\nCMD crond -f\n",
                    "FROM debian:12 AS base\nENV TZ=UTC\nFROM base\nCMD date\n",
                    "CMD [\"/app\"]\n",
                    "FROM debian:12 AS build\nRUN date > /built\nFROM debian:12\nCMD [\"/app\"]\n",
                ],
            ),
        ];
        let options = LintOptions::default();
        for (rule, failing, passing) in table {
            for body in *failing {
                let text = if body.starts_with("FROM") || body.starts_with("ARG") {
                    body.to_string()
                } else {
                    format!("{PINNED}{body}")
                };
                assert!(
                    ids(&text, &options).contains(rule),
                    "{rule} should flag:\n{text}"
                );
            }
            for body in *passing {
                let text = if body.starts_with("FROM") || body.starts_with("ARG") {
                    body.to_string()
                } else {
                    format!("{PINNED}{body}")
                };
                let got = ids(&text, &options);
                assert!(
                    !got.contains(rule),
                    "{rule} should not flag:\n{text}\ngot {got:?}"
                );
            }
        }
    }

    #[test]
    fn registry_allow_list() {
        let on = LintOptions {
            allow_registries: vec!["docker.io".into(), "registry.example.com/base".into()],
            ..LintOptions::default()
        };
        let failing = [
            "FROM ghcr.io/org/app:1\n",
            "FROM registry.example.com/other/app:1\n",
            "FROM quay.io/x/y@sha256:0000000000000000000000000000000000000000000000000000000000000000\n",
        ];
        for text in failing {
            assert!(
                ids(text, &on).contains(&RuleId::RegistryNotAllowed),
                "{text}"
            );
        }
        let passing = [
            "FROM ruby:3.3\n",
            "FROM docker.io/library/ruby:3.3\n",
            "FROM registry.example.com/base/debian:12\n",
            "FROM scratch\n",
        ];
        for text in passing {
            assert!(
                !ids(text, &on).contains(&RuleId::RegistryNotAllowed),
                "{text}"
            );
        }
        // Off without a list.
        assert!(!ids(failing[0], &LintOptions::default()).contains(&RuleId::RegistryNotAllowed));
    }

    #[test]
    fn inline_ignore_comments() {
        let text = "# pinfold-lint ignore=PF002\n# base\nFROM ruby:3.3\n\
# pinfold-lint ignore=PF004, PF006\nRUN apt-get install -y curl \\\n && pip install x\n\
RUN apk add git\n";
        assert_eq!(
            ids(text, &LintOptions::default()),
            vec![RuleId::ApkUnpinned]
        );
    }

    #[test]
    fn disabled_rules_are_dropped() {
        let options = LintOptions {
            disabled: vec![RuleId::NotPinned],
            ..LintOptions::default()
        };
        assert_eq!(ids("FROM ruby:3.3\n", &options), vec![]);
    }

    /// Bad input never panics: every prefix of a Dockerfile full of edge cases (multi-byte
    /// text, open quotes, heredocs, substitutions) either parses or is a located error.
    #[test]
    fn no_panic_on_any_prefix() {
        let text = "# escape=\\\nARG B=\"rübÿ\"\nFROM ${B:-x}:${T} AS é\n\
RUN <<-'E' a=(1 2) && echo $'\\t' {a,b} \"é\\n\" `x \\n` $(curl -s h | sh) <(wget x)\n\
\tbody ü\n\tE\nENV \"é\" v ü\nENV k=\"v\nCOPY --from=é:1 [\"a\", \"b\"]\n\
CMD [ \"$X\" == \"ü\" ] \\\n  && [[ x ]]\\n\nADD https://ü/x /y\nSHELL [\"pwsh\"]\nRUN ${x\nHEALTHCHECK ü\nHEALTHCHECK CMD ü\n";
        let options = LintOptions {
            allow_registries: vec!["ghcr.io".into()],
            ..LintOptions::default()
        };
        for (i, _) in text.char_indices() {
            let _ = lint_source(&text[..i], &options);
        }
        for weird in [
            "",
            "\n\n",
            "FROM",
            "FROM a\nRUN \\",
            "FROM a\nRUN <<",
            "FROM a\nRUN <<\"",
            "FROM a\nCMD [",
            "FROM a\nRUN $(",
            "FROM a\nRUN ${",
            "FROM a\nRUN '",
            "FROM a\nRUN \"\\",
            "FROM a\nHEALTHCHECK éé\n",
            "FROM a\nHEALTHCHECK CMDé\n",
        ] {
            let _ = lint_source(weird, &options);
        }
    }

    /// Story 3 (shared/seeds/docker-runtime-and-dockerfile-quirks.txt): the naive deploy
    /// container whose shell-form CMD `for` loop is written with `\n` escapes.
    #[test]
    fn story_3_dockerfile_is_flagged() {
        let text = r#"FROM debian:stretch
RUN DEBIAN_FRONTEND=noninteractive apt-get update && apt-get -y dist-upgrade
RUN DEBIAN_FRONTEND=noninteractive apt-get update && apt-get -y install dpkg curl

# Setup work dir, $PROJECT_ROOT must be mounted as a volume under /elsa
WORKDIR /packages

# Publish the deb-packages to clients artifactory
CMD for package in *.deb; do\n\
  ARCH=`dpkg --info $package | grep "Architecture" | sed "s/Architecture:\ \([[:alnum:]]*\).*/\1/g" | tr -d [:space:]`\n\
  curl -H "X-JFrog-Art-Api:${API_KEY}" -XPUT "${REPOSITORY_URL}/${package};deb.distribution=${DISTRIBUTION};deb.component=non-free;deb.architecture=$ARCH" -T ${package} \n\
  done
"#;
        let findings = lint_source(text, &LintOptions::default()).unwrap();
        let got: Vec<(RuleId, usize, usize)> = findings
            .iter()
            .map(|f| (f.rule, f.line, f.column))
            .collect();
        assert!(got.contains(&(RuleId::NotPinned, 1, 6)), "{got:?}");
        assert!(got.contains(&(RuleId::DistUpgrade, 2, 65)), "{got:?}");
        assert!(
            got.iter().any(|g| g.0 == RuleId::AptUnpinned && g.1 == 3),
            "{got:?}"
        );
        // The CMD: `\n` on its first line, column of the `\n` after `do`.
        assert!(got.contains(&(RuleId::LiteralNewline, 9, 29)), "{got:?}");
        let newline = findings
            .iter()
            .find(|f| f.rule == RuleId::LiteralNewline)
            .unwrap();
        assert!(newline.message.contains("CMD"));

        // The article's fix passes the shell rules.
        let fixed = r#"FROM debian:stretch
WORKDIR /packages
CMD /bin/bash -c 'for package in *.deb;\
do ARCH=`dpkg --info $package | grep "Architecture" | sed "s/Architecture:\ \([[:alnum:]]*\).*/\1/g" | tr -d [:space:]`;\
  curl -H "X-JFrog-Art-Api:${API_KEY}" -XPUT "${REPOSITORY_URL}/${package};deb.distribution=${DISTRIBUTION};deb.component=non-free;deb.architecture=$ARCH" -T ${package};\
done'
"#;
        let got = ids(fixed, &LintOptions::default());
        assert!(!got.contains(&RuleId::LiteralNewline), "{got:?}");
        assert!(!got.contains(&RuleId::BashOnlySyntax), "{got:?}");
    }
}
