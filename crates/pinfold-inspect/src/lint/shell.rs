//! Just enough POSIX shell to lint `RUN` lines: a quote-aware lexer that splits a script into
//! pipelines of simple commands, and scanners for bash-only syntax.
//!
//! It is not a shell parser: compound commands are flattened (`if`, `then`, `do`, … are dropped
//! from the front of a command), and a `$(...)` or backtick substitution stays inside its word.

/// A simple command: its words with quotes removed, and whether its output is piped into the
/// next command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleCommand {
    /// Words with quotes and backslashes removed; leading reserved words, `VAR=value`
    /// assignments, `sudo` and `env` dropped.
    pub words: Vec<String>,
    /// The words as written (quotes kept), same leading words dropped.
    pub raw: Vec<String>,
    /// `|` follows this command.
    pub piped: bool,
}

impl SimpleCommand {
    /// The command name without its directory (`/usr/bin/apt-get` → `apt-get`).
    pub fn name(&self) -> &str {
        self.words
            .first()
            .map(|w| w.rsplit('/').next().unwrap_or(w))
            .unwrap_or("")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word { raw: String, plain: String },
    Op(&'static str),
}

const RESERVED: &[&str] = &[
    "if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}", "time",
];

fn lex(script: &str) -> Vec<Tok> {
    let chars: Vec<char> = script.chars().collect();
    let mut toks = Vec::new();
    let mut raw = String::new();
    let mut plain = String::new();
    let mut in_word = false;
    let mut i = 0;
    macro_rules! flush {
        () => {
            if in_word {
                toks.push(Tok::Word {
                    raw: std::mem::take(&mut raw),
                    plain: std::mem::take(&mut plain),
                });
                in_word = false;
            }
        };
    }
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' => {
                in_word = true;
                raw.push(c);
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    raw.push(chars[i]);
                    plain.push(chars[i]);
                    i += 1;
                }
                raw.push('\'');
                i += 1;
            }
            '"' => {
                in_word = true;
                raw.push(c);
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        raw.push('\\');
                        i += 1;
                        if !matches!(chars[i], '"' | '\\' | '$' | '`') {
                            plain.push('\\');
                        }
                    }
                    raw.push(chars[i]);
                    plain.push(chars[i]);
                    i += 1;
                }
                raw.push('"');
                i += 1;
            }
            '\\' => {
                i += 1;
                if let Some(&n) = chars.get(i) {
                    if n != '\n' {
                        in_word = true;
                        raw.push('\\');
                        raw.push(n);
                        plain.push(n);
                    }
                    i += 1;
                }
            }
            '`' => {
                in_word = true;
                raw.push(c);
                i += 1;
                while i < chars.len() && chars[i] != '`' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        raw.push('\\');
                        i += 1;
                    }
                    raw.push(chars[i]);
                    i += 1;
                }
                raw.push('`');
                i += 1;
            }
            '$' if chars.get(i + 1) == Some(&'(') => {
                // Command substitution (or arithmetic): keep it inside the word.
                in_word = true;
                let mut depth = 0usize;
                let mut quote: Option<char> = None;
                while i < chars.len() {
                    let d = chars[i];
                    raw.push(d);
                    plain.push(d);
                    i += 1;
                    match quote {
                        Some(q) if d == q => quote = None,
                        Some(_) => {}
                        None if d == '\'' || d == '"' => quote = Some(d),
                        None if d == '(' => depth += 1,
                        None if d == ')' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                break;
                            }
                        }
                        None => {}
                    }
                }
            }
            '$' if chars.get(i + 1) == Some(&'{') => {
                in_word = true;
                while i < chars.len() {
                    raw.push(chars[i]);
                    plain.push(chars[i]);
                    i += 1;
                    if chars[i - 1] == '}' {
                        break;
                    }
                }
            }
            '#' if !in_word => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '(' if in_word && raw.ends_with('=') => {
                // A bash array assignment `a=(x y)`: keep it as one word.
                while i < chars.len() {
                    raw.push(chars[i]);
                    plain.push(chars[i]);
                    i += 1;
                    if chars[i - 1] == ')' {
                        break;
                    }
                }
            }
            ' ' | '\t' => {
                flush!();
                i += 1;
            }
            _ => {
                let rest: String = chars[i..chars.len().min(i + 3)].iter().collect();
                let op: Option<&'static str> = [
                    "&&", "||", ";;", "<<<", "<<", ">>", "&>", ">&", "|", ";", "&", "\n", "(", ")",
                    "<", ">",
                ]
                .into_iter()
                .find(|op| rest.starts_with(op));
                match op {
                    Some(op) => {
                        // `2>`: the digits were a file descriptor, not a word.
                        if matches!(op, "<" | ">" | ">>" | ">&" | "<<")
                            && in_word
                            && !raw.is_empty()
                            && raw.chars().all(|c| c.is_ascii_digit())
                        {
                            raw.clear();
                            plain.clear();
                            in_word = false;
                        }
                        flush!();
                        toks.push(Tok::Op(op));
                        i += op.chars().count();
                    }
                    None => {
                        in_word = true;
                        raw.push(c);
                        plain.push(c);
                        i += 1;
                    }
                }
            }
        }
    }
    if in_word {
        toks.push(Tok::Word { raw, plain });
    }
    toks
}

/// Splits a script into simple commands in order.
pub fn commands(script: &str) -> Vec<SimpleCommand> {
    let mut out = Vec::new();
    let mut cur: Vec<(String, String)> = Vec::new();
    let mut skip_next_word = false;
    let finish = |cur: &mut Vec<(String, String)>, piped: bool, out: &mut Vec<SimpleCommand>| {
        let mut words: Vec<(String, String)> = std::mem::take(cur);
        // Leading reserved words, assignments and wrappers.
        while let Some((raw, plain)) = words.first() {
            let is_assign = {
                let name_end = plain.find('=').unwrap_or(0);
                name_end > 0
                    && plain[..name_end]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !raw.starts_with('\'')
                    && !raw.starts_with('"')
            };
            if RESERVED.contains(&plain.as_str())
                || plain == "sudo"
                || plain == "env"
                || plain == "exec"
                || plain == "command"
                || (is_assign && !plain.contains("=("))
            {
                words.remove(0);
            } else {
                break;
            }
        }
        if !words.is_empty() {
            out.push(SimpleCommand {
                raw: words.iter().map(|w| w.0.clone()).collect(),
                words: words.into_iter().map(|w| w.1).collect(),
                piped,
            });
        }
    };
    for tok in lex(script) {
        match tok {
            Tok::Word { raw, plain } => {
                if skip_next_word {
                    skip_next_word = false;
                } else {
                    cur.push((raw, plain));
                }
            }
            Tok::Op(op @ (">" | ">>" | "<" | "<<" | "<<<" | "&>" | ">&")) => {
                skip_next_word = true;
                if op == "&>" {
                    cur.push(("&>".into(), "&>".into()));
                }
            }
            Tok::Op("|") => finish(&mut cur, true, &mut out),
            Tok::Op(_) => finish(&mut cur, false, &mut out),
        }
    }
    finish(&mut cur, false, &mut out);
    out
}

/// A piece of bash-only syntax found in a script: what it is and the text that shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bashism {
    /// A short name for the construct (`[[ ]]`, `source`, …).
    pub what: &'static str,
    /// Text to locate it in the source.
    pub needle: String,
}

/// Bash-only constructs that POSIX sh (dash, busybox ash) rejects or reads differently.
pub fn bashisms(script: &str) -> Vec<Bashism> {
    let mut found = Vec::new();
    let mut push = |what: &'static str, needle: &str| {
        if !found.iter().any(|b: &Bashism| b.what == what) {
            found.push(Bashism {
                what,
                needle: needle.to_string(),
            });
        }
    };
    for cmd in commands(script) {
        let name = cmd.words.first().map(String::as_str).unwrap_or("");
        match name {
            "[[" => push("`[[ ]]` test", "[["),
            "source" => push("`source` (POSIX sh has `.`)", "source"),
            "function" => push("`function name` definitions", "function"),
            "[" | "test" if cmd.words.iter().any(|w| w == "==") => {
                push("`==` inside `[ ]` (POSIX test uses `=`)", "==")
            }
            _ => {}
        }
        for raw in &cmd.raw {
            if raw == "&>" {
                push("`&>` redirection", "&>");
                continue;
            }
            if let Some(eq) = raw.find("=(") {
                if eq > 0
                    && raw[..eq]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    push("arrays `name=(...)`", &raw[..eq + 2]);
                }
            }
            if let Some(b) = brace_expansion(raw) {
                push("brace expansion", &b);
            }
            if unquoted_positions(raw)
                .iter()
                .any(|&(i, c)| c == '$' && raw[i + 1..].starts_with('\''))
            {
                push("`$'...'` strings", "$'");
            }
        }
    }
    found
}

/// Positions of characters outside quotes, `$(...)`, `${...}` and backticks.
fn unquoted_positions(raw: &str) -> Vec<(usize, char)> {
    let chars: Vec<(usize, char)> = raw.char_indices().collect();
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut depth = 0usize;
    let mut k = 0;
    while k < chars.len() {
        let (i, c) = chars[k];
        k += 1;
        if let Some(q) = quote {
            if c == '\\' && q != '\'' {
                k += 1;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        if depth > 0 {
            match c {
                '(' | '{' => depth += 1,
                ')' | '}' => depth -= 1,
                '\'' | '"' => quote = Some(c),
                _ => {}
            }
            continue;
        }
        match c {
            '\\' => k += 1,
            '\'' | '"' | '`' => quote = Some(c),
            '$' if matches!(chars.get(k), Some((_, '(' | '{'))) => {
                depth = 1;
                k += 1;
            }
            _ => out.push((i, c)),
        }
    }
    out
}

/// `{a,b}` or `{1..3}` outside quotes and `${...}`.
fn brace_expansion(raw: &str) -> Option<String> {
    let visible = unquoted_positions(raw);
    for (k, &(i, c)) in visible.iter().enumerate() {
        if c != '{' {
            continue;
        }
        let mut inner = String::new();
        for &(j, d) in &visible[k + 1..] {
            if d == '}' {
                let ok = inner.contains(',') || inner.contains("..");
                if ok && !inner.is_empty() && !inner.contains(char::is_whitespace) {
                    return Some(raw[i..=j].to_string());
                }
                break;
            }
            if d == '{' {
                break;
            }
            inner.push(d);
        }
    }
    None
}

/// Unquoted `\n` escapes (outside single and double quotes): the shell reads `\n` as `n`.
/// Returns how many there are.
pub fn literal_newlines(script: &str) -> usize {
    let chars: Vec<char> = script.chars().collect();
    let mut quote: Option<char> = None;
    let mut count = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(q) => {
                if c == '\\' && q != '\'' {
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => quote = Some(c),
                '\\' => {
                    if chars.get(i + 1) == Some(&'n') {
                        count += 1;
                    }
                    i += 1;
                }
                _ => {}
            },
        }
        i += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_commands_and_pipes() {
        let cmds = commands(
            "DEBIAN_FRONTEND=noninteractive sudo apt-get update && curl -fsSL https://x | sh -s -- -y; if [ -f a ]; then echo 'a | b' > /dev/null 2>&1; fi",
        );
        let names: Vec<&str> = cmds.iter().map(SimpleCommand::name).collect();
        assert_eq!(names, ["apt-get", "curl", "sh", "[", "echo"]);
        assert!(cmds[1].piped);
        assert!(!cmds[2].piped);
        assert_eq!(cmds[4].words, ["echo", "a | b"]);
    }

    #[test]
    fn bashism_table() {
        let flagged: &[(&str, &str)] = &[
            ("if [[ -f x ]]; then echo; fi", "[["),
            ("source /etc/profile", "source"),
            ("a=(1 2 3); echo ${a[0]}", "arrays"),
            ("mkdir -p /x/{a,b}", "brace"),
            ("echo {1..3}", "brace"),
            ("function f { echo; }", "function"),
            ("echo $'a\\tb'", "$'"),
            ("[ \"$a\" == b ] && echo", "=="),
            ("make &> /dev/null", "&>"),
        ];
        for (script, what) in flagged {
            let b = bashisms(script);
            assert!(b.iter().any(|b| b.what.contains(what)), "{script:?}: {b:?}");
        }
        let clean = [
            "if [ -f x ]; then . /etc/profile; fi",
            "echo '[[ {a,b} source' \"$'x'\" ${HOME} $(echo {}) ",
            "find . -name '*.o' -exec rm {} \\;",
            "awk '{print $1}' f",
            "[ \"$a\" = b ] && echo ${x:-{a,b}}",
            "echo \"${A}\" >/dev/null 2>&1",
        ];
        for script in clean {
            assert_eq!(bashisms(script), vec![], "{script:?}");
        }
    }

    #[test]
    fn literal_newline_table() {
        assert_eq!(
            literal_newlines("for p in *.deb; do\\n  echo $p\\n done"),
            2
        );
        assert_eq!(literal_newlines("printf '%s\\n' a; echo \"a\\nb\""), 0);
        assert_eq!(literal_newlines("echo a\\\\nb"), 0);
    }
}
