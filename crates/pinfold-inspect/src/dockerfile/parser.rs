//! The line-level parser: directives, continuations, heredocs, then per-instruction arguments.

use std::collections::HashMap;

use super::{
    substitute, ArgDecl, BaseImage, Body, Command, Comment, Directive, Dockerfile, Flag, Heredoc,
    Instruction, Keyword, ParseError, ParseErrorKind, Span, Stage,
};

fn err(line: usize, column: usize, kind: ParseErrorKind) -> ParseError {
    ParseError { line, column, kind }
}

/// 1-based column of the first non-blank character of `line`.
fn first_col(line: &str) -> usize {
    line.chars().take_while(|c| c.is_whitespace()).count() + 1
}

/// Parses a whole Dockerfile.
///
/// # Errors
///
/// A [`ParseError`] with line and column for unknown instructions, unterminated heredocs or
/// quotes, malformed exec forms, instructions other than `ARG` before the first `FROM`, a missing
/// `FROM`, an invalid `# escape=` or instructions with missing arguments.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut directives = Vec::new();
    let mut escape = '\\';
    let mut i = 0;

    // Parser directives: `# name=value` lines at the very top, before anything else.
    while i < lines.len() {
        let Some((name, value)) = directive(lines[i]) else {
            break;
        };
        if directives.iter().any(|d: &Directive| d.name == name) {
            break; // a repeated directive is a comment, and ends the directive block
        }
        if name == "escape" {
            escape = match value.as_str() {
                "\\" => '\\',
                "`" => '`',
                _ => {
                    return Err(err(
                        i + 1,
                        first_col(lines[i]),
                        ParseErrorKind::InvalidEscape(value),
                    ))
                }
            };
        }
        directives.push(Directive {
            name,
            value,
            line: i + 1,
        });
        i += 1;
    }

    let mut instructions: Vec<Instruction> = Vec::new();
    let mut comments = Vec::new();
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if let Some(text) = trimmed.strip_prefix('#') {
            comments.push(Comment {
                line: i + 1,
                text: text.trim().to_string(),
            });
        }
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i;
        let column = first_col(line);
        // Join continuation lines.
        let mut joined = String::new();
        let mut cur = line;
        loop {
            match strip_continuation(cur, escape) {
                Some(head) => {
                    joined.push_str(head);
                    i += 1;
                    // Blank and comment lines inside a continuation are dropped.
                    while i < lines.len() {
                        let t = lines[i].trim_start();
                        if t.is_empty() || t.starts_with('#') {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    if i >= lines.len() {
                        break;
                    }
                    cur = lines[i];
                }
                None => {
                    joined.push_str(cur);
                    i += 1;
                    break;
                }
            }
        }
        let joined = joined.trim_start().to_string();
        let (word, rest) = match joined.find(char::is_whitespace) {
            Some(p) => (&joined[..p], joined[p..].trim()),
            None => (joined.as_str(), ""),
        };
        let keyword = Keyword::parse(word).ok_or_else(|| {
            err(
                start + 1,
                column,
                ParseErrorKind::UnknownInstruction(word.to_string()),
            )
        })?;
        let args_col = arg_column(lines[start], column, word);

        let (flags, args) = if matches!(
            keyword,
            Keyword::From | Keyword::Run | Keyword::Copy | Keyword::Add | Keyword::Healthcheck
        ) {
            split_flags(rest)
        } else {
            (Vec::new(), rest.to_string())
        };

        // Heredocs: their bodies follow the instruction line.
        let mut heredocs = Vec::new();
        if matches!(keyword, Keyword::Run | Keyword::Copy | Keyword::Add) {
            for (delimiter, strip_tabs, quoted) in heredoc_markers(&args) {
                let body_start = i;
                let mut body = Vec::new();
                let mut closed = false;
                while i < lines.len() {
                    let l = if strip_tabs {
                        lines[i].trim_start_matches('\t')
                    } else {
                        lines[i]
                    };
                    i += 1;
                    if l == delimiter {
                        closed = true;
                        break;
                    }
                    body.push(l);
                }
                if !closed {
                    let col = lines[start]
                        .find(&format!("<<{}", if strip_tabs { "-" } else { "" }))
                        .map_or(column, |p| lines[start][..p].chars().count() + 1);
                    return Err(err(
                        start + 1,
                        col,
                        ParseErrorKind::UnterminatedHeredoc(delimiter),
                    ));
                }
                heredocs.push(Heredoc {
                    delimiter,
                    strip_tabs,
                    quoted,
                    body: body.join("\n"),
                    body_start_line: body_start + 1,
                });
            }
        }

        let kw = keyword.as_str();
        let body = match keyword {
            Keyword::Run | Keyword::Cmd | Keyword::Entrypoint => {
                Body::Command(command(&args, kw, start + 1, args_col)?)
            }
            Keyword::Shell => {
                match command(&args, kw, start + 1, args_col)? {
                    Command::Exec(v) if !v.is_empty() => Body::Shell(v),
                    _ => return Err(err(
                        start + 1,
                        args_col,
                        ParseErrorKind::BadArguments {
                            keyword: kw,
                            problem:
                                "requires a non-empty JSON array such as [\"/bin/bash\", \"-c\"]",
                        },
                    )),
                }
            }
            Keyword::From => {
                let words: Vec<&str> = args.split_whitespace().collect();
                match words.as_slice() {
                    [image] => Body::From {
                        image: image.to_string(),
                        alias: None,
                    },
                    [image, as_, name] if as_.eq_ignore_ascii_case("as") => Body::From {
                        image: image.to_string(),
                        alias: Some(name.to_ascii_lowercase()),
                    },
                    _ => {
                        return Err(err(
                            start + 1,
                            args_col,
                            ParseErrorKind::BadArguments {
                                keyword: kw,
                                problem: "requires an image and an optional `AS name`",
                            },
                        ))
                    }
                }
            }
            Keyword::Arg => {
                let words = split_words(&args, escape).map_err(|k| err(start + 1, args_col, k))?;
                if words.is_empty() {
                    return Err(err(
                        start + 1,
                        args_col,
                        ParseErrorKind::BadArguments {
                            keyword: kw,
                            problem: "requires a name",
                        },
                    ));
                }
                Body::Arg(
                    words
                        .into_iter()
                        .map(|w| match w.split_once('=') {
                            Some((n, d)) => ArgDecl {
                                name: n.to_string(),
                                default: Some(d.to_string()),
                            },
                            None => ArgDecl {
                                name: w,
                                default: None,
                            },
                        })
                        .collect(),
                )
            }
            Keyword::Env => {
                Body::Env(env_pairs(&args, escape).map_err(|k| err(start + 1, args_col, k))?)
            }
            Keyword::Add | Keyword::Copy => {
                let mut words = if args.trim_start().starts_with("[\"") {
                    match command(&args, kw, start + 1, args_col)? {
                        Command::Exec(v) => v,
                        Command::Shell(_) => Vec::new(),
                    }
                } else {
                    split_words(&args, escape).map_err(|k| err(start + 1, args_col, k))?
                };
                if words.len() < 2 {
                    return Err(err(
                        start + 1,
                        args_col,
                        ParseErrorKind::BadArguments {
                            keyword: kw,
                            problem: "requires at least one source and a destination",
                        },
                    ));
                }
                let dest = words.pop().unwrap_or_default();
                Body::Files {
                    sources: words,
                    dest,
                }
            }
            _ => Body::Raw(args),
        };

        let end = i; // exclusive index of the next line
        let original = lines[start..end].join("\n");
        // Trailing blank/comment lines swallowed by a continuation at EOF do not count.
        let mut end_line = end;
        while end_line > start + 1 && {
            let t = lines[end_line - 1].trim_start();
            t.is_empty() || t.starts_with('#')
        } {
            end_line -= 1;
        }
        instructions.push(Instruction {
            keyword,
            span: Span {
                start_line: start + 1,
                end_line,
                column,
            },
            original,
            flags,
            body,
            heredocs,
            stage: None,
        });
    }

    let stages = build_stages(&mut instructions, escape)?;
    Ok(Dockerfile {
        directives,
        escape,
        instructions,
        stages,
        comments,
    })
}

/// `# name=value` with a word name, or `None`.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim_start().strip_prefix('#')?;
    let (name, value) = rest.split_once('=')?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some((name.to_ascii_lowercase(), value.trim().to_string()))
}

/// The line without its trailing escape character (and blanks after it), when it continues.
/// Like BuildKit's `\\[ \t]*$`, an escape at the end always continues, even after another one.
fn strip_continuation(line: &str, escape: char) -> Option<&str> {
    line.trim_end().strip_suffix(escape)
}

/// The 1-based column where the arguments start on the first line.
fn arg_column(line: &str, column: usize, word: &str) -> usize {
    let after: String = line
        .chars()
        .skip(column - 1 + word.chars().count())
        .collect();
    column + word.chars().count() + after.chars().take_while(|c| c.is_whitespace()).count()
}

/// Leading `--name[=value]` words, and the rest.
fn split_flags(args: &str) -> (Vec<Flag>, String) {
    let mut flags = Vec::new();
    let mut rest = args.trim_start();
    while let Some(f) = rest.strip_prefix("--") {
        let end = f.find(char::is_whitespace).unwrap_or(f.len());
        let word = &f[..end];
        if word.is_empty() {
            break;
        }
        let (name, value) = match word.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (word.to_string(), None),
        };
        flags.push(Flag { name, value });
        rest = f[end..].trim_start();
    }
    (flags, rest.to_string())
}

/// Exec form when the arguments start with `["` (or are `[]`) and must then be JSON; `[ "`
/// is exec form when it parses, else shell form; anything else is shell form.
fn command(
    args: &str,
    keyword: &'static str,
    line: usize,
    column: usize,
) -> Result<Command, ParseError> {
    let t = args.trim();
    let compact: String = t.chars().filter(|c| !c.is_whitespace()).collect();
    if t.starts_with('[') && compact.starts_with("[\"") && !t.starts_with("[\"") {
        // `[ "a", "b" ]` is exec form, `[ "$X" = 1 ] && ...` is a shell test: like BuildKit,
        // fall back to shell form when the spaced form is not JSON.
        if let Ok(v) = serde_json::from_str::<Vec<String>>(t) {
            return Ok(Command::Exec(v));
        }
        return Ok(Command::Shell(args.to_string()));
    }
    if t.starts_with("[\"") || compact == "[]" {
        return serde_json::from_str::<Vec<String>>(t)
            .map(Command::Exec)
            .map_err(|e| {
                err(
                    line,
                    column,
                    ParseErrorKind::BadExecForm {
                        keyword,
                        reason: e.to_string(),
                    },
                )
            });
    }
    Ok(Command::Shell(args.to_string()))
}

/// Heredoc markers in instruction arguments: `<<WORD`, `<<-WORD`, `<<"WORD"`, `<<'WORD'`,
/// outside quotes. `<<<` (a here-string) is not a heredoc.
fn heredoc_markers(args: &str) -> Vec<(String, bool, bool)> {
    let chars: Vec<char> = args.chars().collect();
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if c == '\'' || c == '"' {
            quote = Some(c);
            i += 1;
            continue;
        }
        if c == '<' && chars.get(i + 1) == Some(&'<') && chars.get(i + 2) == Some(&'<') {
            i += 3; // a here-string
            continue;
        }
        if c == '<' && chars.get(i + 1) == Some(&'<') {
            let mut j = i + 2;
            let strip = chars.get(j) == Some(&'-');
            if strip {
                j += 1;
            }
            let q = match chars.get(j) {
                Some(&c @ ('"' | '\'')) => {
                    j += 1;
                    Some(c)
                }
                _ => None,
            };
            let start = j;
            while j < chars.len()
                && (chars[j].is_ascii_alphanumeric() || matches!(chars[j], '_' | '-' | '.'))
            {
                j += 1;
            }
            let word: String = chars[start..j].iter().collect();
            if let Some(q) = q {
                if chars.get(j) == Some(&q) {
                    j += 1;
                } else {
                    i = j;
                    continue;
                }
            }
            if !word.is_empty() {
                out.push((word, strip, q.is_some()));
            }
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

/// Whitespace-separated words with quotes removed and the escape character honoured.
fn split_words(args: &str, escape: char) -> Result<Vec<String>, ParseErrorKind> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = args.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some('"') if c == escape => {
                if let Some(n) = chars.next() {
                    if n != '"' && n != escape && n != '$' {
                        cur.push(c);
                    }
                    cur.push(n);
                }
            }
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c == escape => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(ParseErrorKind::UnterminatedQuote);
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// `ENV k=v k2="v 2"`, or the legacy `ENV key the value`.
fn env_pairs(args: &str, escape: char) -> Result<Vec<(String, String)>, ParseErrorKind> {
    let words = split_words(args, escape)?;
    let Some(first) = words.first() else {
        return Err(ParseErrorKind::BadArguments {
            keyword: "ENV",
            problem: "requires key=value",
        });
    };
    if !first.contains('=') {
        // Legacy `ENV key the value`: the key has no blanks, the value is the rest as written.
        let value = args
            .trim_start()
            .split_once(char::is_whitespace)
            .map_or("", |(_, v)| v.trim());
        return Ok(vec![(first.clone(), value.to_string())]);
    }
    Ok(words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (w, String::new()),
        })
        .collect())
}

/// Assigns instructions to stages, checks that only `ARG` precedes the first `FROM`, and
/// resolves each `FROM` to scratch, an earlier stage or an image (global `ARG`s substituted).
fn build_stages(instructions: &mut [Instruction], escape: char) -> Result<Vec<Stage>, ParseError> {
    let mut global: HashMap<String, Option<String>> = HashMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    for idx in 0..instructions.len() {
        let ins = &instructions[idx];
        if stages.is_empty() && ins.keyword != Keyword::From {
            if let Body::Arg(decls) = &ins.body {
                for d in decls {
                    let value = d.default.as_ref().map(|v| substitute(v, &global, escape).0);
                    global.insert(d.name.clone(), value);
                }
                continue;
            }
            return Err(err(
                ins.span.start_line,
                ins.span.column,
                ParseErrorKind::InstructionBeforeFrom(ins.keyword.as_str()),
            ));
        }
        if let Body::From { image, alias } = &ins.body {
            let (reference, unresolved) = substitute(image, &global, escape);
            let lower = reference.to_ascii_lowercase();
            let base = if lower == "scratch" {
                BaseImage::Scratch
            } else if let Some(s) = stages
                .iter()
                .find(|s| s.name.as_deref() == Some(lower.as_str()))
            {
                BaseImage::Stage(s.index)
            } else {
                BaseImage::Image {
                    reference,
                    unresolved,
                }
            };
            if let Some(last) = stages.last_mut() {
                last.instructions.end = idx;
            }
            stages.push(Stage {
                index: stages.len(),
                name: alias.clone(),
                base,
                from: idx,
                instructions: idx..instructions.len(),
            });
        }
        instructions[idx].stage = Some(stages.len() - 1);
    }
    if stages.is_empty() {
        let (line, column) = instructions
            .last()
            .map_or((1, 1), |i| (i.span.start_line, i.span.column));
        return Err(err(line, column, ParseErrorKind::NoFrom));
    }
    Ok(stages)
}

#[cfg(test)]
mod tests {
    use super::super::*;

    fn run_text(df: &Dockerfile, n: usize) -> String {
        match &df.instructions[n].body {
            Body::Command(Command::Shell(s)) => s.clone(),
            other => panic!("not shell form: {other:?}"),
        }
    }

    #[test]
    fn continuations_table() {
        let cases: &[(&str, &str, (usize, usize))] = &[
            ("FROM a\nRUN echo a \\\n  b\n", "echo a   b", (2, 3)),
            ("FROM a\nRUN echo a \\  \n b\n", "echo a  b", (2, 3)),
            (
                "FROM a\nRUN apt-get install \\\n# a comment\n\n  curl\n",
                "apt-get install   curl",
                (2, 5),
            ),
            (
                "# escape=`\nFROM a\nRUN echo C:\\dir `\n  b\n",
                "echo C:\\dir   b",
                (3, 4),
            ),
            ("FROM a\n  run   echo hi\n", "echo hi", (2, 2)),
        ];
        for (text, want, (start, end)) in cases {
            let df = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(run_text(&df, 1), *want, "{text:?}");
            assert_eq!(df.instructions[1].span.start_line, *start, "{text:?}");
            assert_eq!(df.instructions[1].span.end_line, *end, "{text:?}");
        }
    }

    #[test]
    fn escape_directive_and_directives_only_at_top() {
        let df = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM a\n").unwrap();
        assert_eq!(df.escape, '`');
        assert_eq!(df.directives.len(), 2);
        assert_eq!(df.directives[0].name, "syntax");
        // After a comment, `# escape=` is just a comment.
        let df = parse("# hello\n# escape=`\nFROM a\nRUN a \\\n b\n").unwrap();
        assert_eq!(df.escape, '\\');
        assert!(df.directives.is_empty());
        assert_eq!(run_text(&df, 1), "a  b");
        let e = parse("# escape=x\nFROM a\n").unwrap_err();
        assert_eq!((e.line, e.column), (1, 1));
        assert!(matches!(e.kind, ParseErrorKind::InvalidEscape(_)));
    }

    #[test]
    fn heredocs_table() {
        let text = "FROM a\n\
RUN <<EOF\n\
apt-get update\n\
EOF\n\
RUN <<-'END' cat > /x && <<\"TWO\" sh\n\
\t\tindented $HOME\n\
\tEND\n\
echo two\n\
TWO\n\
COPY <<EOF /etc/app.conf\n\
key=value\n\
EOF\n\
RUN echo done\n";
        let df = parse(text).unwrap();
        let run = &df.instructions[1];
        assert_eq!(run.heredocs.len(), 1);
        assert_eq!(run.heredocs[0].body, "apt-get update");
        assert_eq!((run.span.start_line, run.span.end_line), (2, 4));
        let two = &df.instructions[2];
        assert_eq!(two.heredocs.len(), 2);
        assert_eq!(two.heredocs[0].delimiter, "END");
        assert!(two.heredocs[0].strip_tabs && two.heredocs[0].quoted);
        assert_eq!(two.heredocs[0].body, "indented $HOME");
        assert_eq!(two.heredocs[1].body, "echo two");
        assert_eq!(two.heredocs[1].body_start_line, 8);
        let copy = &df.instructions[3];
        assert_eq!(
            copy.body,
            Body::Files {
                sources: vec!["<<EOF".into()],
                dest: "/etc/app.conf".into()
            }
        );
        assert_eq!(copy.heredocs[0].body, "key=value");
        assert_eq!(df.instructions[4].span.start_line, 13);
        // A here-string is not a heredoc.
        let df = parse("FROM a\nRUN cat <<<word\n").unwrap();
        assert!(df.instructions[1].heredocs.is_empty());
    }

    #[test]
    fn arg_before_from_and_stages() {
        let text = "ARG BASE=ruby\nARG TAG\nFROM ${BASE}:${TAG:-3.3} AS Build\nRUN make\n\
FROM --platform=$BUILDPLATFORM build AS test\nFROM scratch\nCOPY --from=build /a /b\n\
FROM $BASE:$TAG\n";
        let df = parse(text).unwrap();
        assert_eq!(df.stages.len(), 4);
        assert_eq!(df.stages[0].name.as_deref(), Some("build"));
        assert_eq!(
            df.stages[0].base,
            BaseImage::Image {
                reference: "ruby:3.3".into(),
                unresolved: vec![]
            }
        );
        assert_eq!(df.stages[0].instructions, 2..4);
        assert_eq!(df.stages[1].base, BaseImage::Stage(0));
        assert_eq!(df.instructions[4].flag("platform"), Some("$BUILDPLATFORM"));
        assert_eq!(df.stages[2].base, BaseImage::Scratch);
        assert_eq!(df.instructions[6].flag("from"), Some("build"));
        assert_eq!(
            df.stages[3].base,
            BaseImage::Image {
                reference: "ruby:".into(),
                unresolved: vec!["TAG".into()]
            }
        );
        assert_eq!(df.instructions[0].stage, None);
        assert_eq!(df.instructions[3].stage, Some(0));
    }

    #[test]
    fn exec_and_shell_forms() {
        let text = "FROM a\nCMD [\"/bin/app\", \"--flag\"]\nENTRYPOINT exec app\n\
RUN [ -f /x ] && echo yes\nSHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]\n\
RUN --mount=type=cache,target=/root/.cache pip install x\n\
ADD --checksum=sha256:abc --chmod=644 https://x/y /y\n";
        let df = parse(text).unwrap();
        assert_eq!(
            df.instructions[1].body,
            Body::Command(Command::Exec(vec!["/bin/app".into(), "--flag".into()]))
        );
        assert_eq!(
            df.instructions[2].body,
            Body::Command(Command::Shell("exec app".into()))
        );
        assert!(matches!(
            df.instructions[3].body,
            Body::Command(Command::Shell(_))
        ));
        assert_eq!(
            df.instructions[4].body,
            Body::Shell(vec![
                "/bin/bash".into(),
                "-o".into(),
                "pipefail".into(),
                "-c".into()
            ])
        );
        assert_eq!(
            df.instructions[5].flag("mount"),
            Some("type=cache,target=/root/.cache")
        );
        assert_eq!(df.instructions[6].flag("checksum"), Some("sha256:abc"));
        assert_eq!(df.instructions[6].flag("chmod"), Some("644"));
    }

    #[test]
    fn spaced_brackets_are_exec_only_when_json() {
        let df = parse("FROM a\nCMD [ \"a\", \"b\" ]\nRUN [ \"$X\" = 1 ] && echo\n").unwrap();
        assert_eq!(
            df.instructions[1].body,
            Body::Command(Command::Exec(vec!["a".into(), "b".into()]))
        );
        assert!(matches!(
            df.instructions[2].body,
            Body::Command(Command::Shell(_))
        ));
    }

    #[test]
    fn env_and_arg_values() {
        let df = parse("FROM a\nENV TZ=\"Europe/Berlin\" A=b\nENV OLD hello world\nARG X=1 Y\n")
            .unwrap();
        assert_eq!(
            df.instructions[1].body,
            Body::Env(vec![
                ("TZ".into(), "Europe/Berlin".into()),
                ("A".into(), "b".into())
            ])
        );
        assert_eq!(
            df.instructions[2].body,
            Body::Env(vec![("OLD".into(), "hello world".into())])
        );
    }

    #[test]
    fn errors_with_locations() {
        let cases: &[(&str, (usize, usize), &str)] = &[
            ("FROM a\n  FORM b\n", (2, 3), "unknown instruction \"FORM\""),
            ("FROM a\nRUN <<EOF\necho\n", (2, 5), "unterminated heredoc"),
            ("FROM a\nCMD [\"a\", ]\n", (2, 5), "exec form"),
            ("FROM a\nCMD [\"a\", 1]\n", (2, 5), "exec form"),
            ("ARG X\nRUN echo\nFROM a\n", (2, 1), "before the first FROM"),
            ("# only a comment\n", (1, 1), "no FROM"),
            ("FROM\n", (1, 5), "FROM requires"),
            ("FROM a b c d\n", (1, 6), "FROM requires"),
            ("FROM a\nCOPY onlyone\n", (2, 6), "COPY requires"),
            ("FROM a\nSHELL /bin/bash\n", (2, 7), "SHELL requires"),
            ("FROM a\nENV A=\"x\n", (2, 5), "unterminated quote"),
        ];
        for (text, (line, col), msg) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!((e.line, e.column), (*line, *col), "{text:?}: {e}");
            assert!(e.to_string().contains(msg), "{text:?}: {e}");
        }
    }

    #[test]
    fn original_text_is_kept() {
        let text = "FROM a\nRUN echo a \\\n  b\n";
        let df = parse(text).unwrap();
        assert_eq!(df.instructions[1].original, "RUN echo a \\\n  b");
    }
}
