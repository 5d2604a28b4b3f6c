//! `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}` and `${VAR+alt}`
//! substitution, as BuildKit applies global `ARG` defaults to `FROM`.

use std::collections::HashMap;

/// Substitutes variables in `text`. `vars` maps a declared name to its value (`None`: declared
/// without a default, so unset). Returns the text and the names that had no value and no default
/// (they expand to nothing). `\$` stands for a literal `$` (with `escape` being `\` or `` ` ``).
pub fn substitute(
    text: &str,
    vars: &HashMap<String, Option<String>>,
    escape: char,
) -> (String, Vec<String>) {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut unresolved = Vec::new();
    let mut i = 0;
    let lookup = |name: &str| vars.get(name).and_then(|v| v.clone());
    while i < chars.len() {
        let c = chars[i];
        if c == escape && chars.get(i + 1) == Some(&'$') {
            out.push('$');
            i += 2;
            continue;
        }
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        if chars.get(i + 1) == Some(&'{') {
            let Some(close) = chars[i + 2..].iter().position(|&c| c == '}') else {
                // No closing brace: keep the text as written.
                out.extend(&chars[i..]);
                break;
            };
            let inner: String = chars[i + 2..i + 2 + close].iter().collect();
            i += close + 3;
            let name_len = inner
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(inner.len());
            let (name, op) = inner.split_at(name_len);
            let value = lookup(name);
            let (colon, rest) = match op.strip_prefix(':') {
                Some(r) => (true, r),
                None => (false, op),
            };
            // With ':' an empty value counts as unset.
            let set = match &value {
                Some(v) => !(colon && v.is_empty()),
                None => false,
            };
            if let Some(default) = rest.strip_prefix('-') {
                if set {
                    out.push_str(value.as_deref().unwrap_or(""));
                } else {
                    let (d, u) = substitute(default, vars, escape);
                    out.push_str(&d);
                    unresolved.extend(u);
                }
            } else if let Some(alt) = rest.strip_prefix('+') {
                if set {
                    let (a, u) = substitute(alt, vars, escape);
                    out.push_str(&a);
                    unresolved.extend(u);
                }
            } else {
                match value {
                    Some(v) => out.push_str(&v),
                    None => unresolved.push(name.to_string()),
                }
            }
            continue;
        }
        let name: String = chars[i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
            .collect();
        if name.is_empty() {
            out.push('$');
            i += 1;
            continue;
        }
        i += 1 + name.chars().count();
        match lookup(&name) {
            Some(v) => out.push_str(&v),
            None => unresolved.push(name),
        }
    }
    (out, unresolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_table() {
        let mut vars = HashMap::new();
        vars.insert("BASE".to_string(), Some("ruby".to_string()));
        vars.insert("EMPTY".to_string(), Some(String::new()));
        vars.insert("UNSET".to_string(), None);
        let cases: &[(&str, &str, &[&str])] = &[
            ("$BASE:3.3", "ruby:3.3", &[]),
            ("${BASE}:3.3", "ruby:3.3", &[]),
            ("${UNSET:-debian}:12", "debian:12", &[]),
            ("${EMPTY:-debian}", "debian", &[]),
            ("${EMPTY-debian}", "", &[]),
            ("${BASE:+x}", "x", &[]),
            ("${UNSET:+x}", "", &[]),
            ("${UNSET}", "", &["UNSET"]),
            ("$NOPE/app", "/app", &["NOPE"]),
            ("a\\$b", "a$b", &[]),
            ("${BASE", "${BASE", &[]),
        ];
        for (input, want, unresolved) in cases {
            let (got, u) = substitute(input, &vars, '\\');
            assert_eq!(got, *want, "{input}");
            assert_eq!(u, *unresolved, "{input}");
        }
    }
}
