//! `WWW-Authenticate` parsing (RFC 9110 §11.6.1): one header may carry several challenges,
//! each a scheme followed by `name=value` parameters whose values are tokens or quoted
//! strings. Quoted strings may hold commas (`scope="repository:a:pull,push"`) and `\"`
//! escapes, which is why splitting on `,` is wrong and this is a small parser.

/// One challenge: the scheme (compared case-insensitively) and its parameters in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The auth scheme as sent (`Bearer`, `Basic`).
    pub scheme: String,
    /// Parameters with lowercased names (names are case-insensitive), values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `name` (lowercase), if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the scheme is `scheme`, ignoring case.
    pub fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn skip_ws_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> &str {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        // tchar is ASCII, so the slice is valid UTF-8.
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default()
    }

    /// A token68 value may end in `=` padding; only used to skip it.
    fn token68(&mut self) {
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || b"-._~+/".contains(&c))
        {
            self.i += 1;
        }
        while self.peek() == Some(b'=') {
            self.i += 1;
        }
    }

    fn quoted(&mut self) -> Result<String, String> {
        // Called on the opening quote.
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err("unterminated quoted string".into()),
                Some(b'"') => {
                    self.i += 1;
                    return String::from_utf8(out).map_err(|_| "quoted string is not UTF-8".into());
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(c) => {
                            out.push(c);
                            self.i += 1;
                        }
                        None => return Err("unterminated escape".into()),
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    /// Looking at `name =`? Leaves the cursor where it was.
    fn at_param(&self) -> bool {
        let mut j = self.i;
        while self.s.get(j).copied().is_some_and(is_tchar) {
            j += 1;
        }
        if j == self.i {
            return false;
        }
        while matches!(self.s.get(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        // `name=` but not `token68==` padding followed by end/comma.
        self.s.get(j) == Some(&b'=') && !matches!(self.s.get(j + 1), Some(b'=') | None | Some(b','))
    }
}

/// Parses a `WWW-Authenticate` header value into its challenges.
///
/// # Errors
///
/// Returns a description when the header is empty or malformed (a parameter without a value,
/// an unterminated quoted string, stray characters).
pub fn parse_www_authenticate(header: &str) -> Result<Vec<Challenge>, String> {
    let mut c = Cursor {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    c.skip_ws_and_commas();
    // Every iteration consumes at least the scheme token, so this ends.
    while c.peek().is_some() {
        let scheme = c.token().to_owned();
        if scheme.is_empty() {
            return Err(format!("expected an auth scheme at byte {}", c.i));
        }
        let mut params = Vec::new();
        c.skip_ws();
        if !c.at_param() && c.peek().is_some_and(|b| b != b',') {
            c.token68();
            c.skip_ws();
        }
        while c.at_param() {
            let name = c.token().to_ascii_lowercase();
            c.skip_ws();
            c.i += 1; // '='
            c.skip_ws();
            let value = if c.peek() == Some(b'"') {
                c.quoted()?
            } else {
                let v = c.token().to_owned();
                if v.is_empty() {
                    return Err(format!("parameter {name:?} has no value"));
                }
                v
            };
            params.push((name, value));
            c.skip_ws();
            match c.peek() {
                Some(b',') => c.skip_ws_and_commas(),
                None => break,
                Some(_) if c.at_param() => {
                    return Err("parameters must be separated by commas".into())
                }
                Some(_) => break,
            }
        }
        out.push(Challenge { scheme, params });
        c.skip_ws_and_commas();
        if c.peek().is_some_and(|b| !is_tchar(b)) {
            return Err(format!("unexpected character at byte {}", c.i));
        }
    }
    if out.is_empty() {
        return Err("empty header".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn docker_hub_bearer_challenge() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ruby:pull""#;
        let got = parse_www_authenticate(h).unwrap();
        assert_eq!(got.len(), 1);
        assert!(got[0].is("bearer"));
        assert_eq!(got[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(got[0].param("service"), Some("registry.docker.io"));
        assert_eq!(got[0].param("scope"), Some("repository:library/ruby:pull"));
    }

    #[test]
    fn quoted_commas_escapes_and_spacing() {
        let h = r#"Bearer  realm = "http://127.0.0.1:1/t?a=1,b=2" , scope="repository:a/b:pull,push",error="insufficient_scope", x=tok, msg="say \"hi\"""#;
        let got = parse_www_authenticate(h).unwrap();
        assert_eq!(
            got,
            vec![Challenge {
                scheme: "Bearer".into(),
                params: p(&[
                    ("realm", "http://127.0.0.1:1/t?a=1,b=2"),
                    ("scope", "repository:a/b:pull,push"),
                    ("error", "insufficient_scope"),
                    ("x", "tok"),
                    ("msg", "say \"hi\""),
                ]),
            }]
        );
    }

    #[test]
    fn several_challenges_in_one_header() {
        let h = r#"Basic realm="basic-realm", Bearer realm="https://r/token",service="s", Negotiate abc123=="#;
        let got = parse_www_authenticate(h).unwrap();
        let schemes: Vec<_> = got.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["Basic", "Bearer", "Negotiate"]);
        assert_eq!(got[0].params, p(&[("realm", "basic-realm")]));
        assert_eq!(
            got[1].params,
            p(&[("realm", "https://r/token"), ("service", "s")])
        );
        assert!(got[2].params.is_empty());
    }

    #[test]
    fn names_are_case_insensitive_and_scheme_alone_is_fine() {
        let got = parse_www_authenticate(r#"BEARER Realm="x",SERVICE=y"#).unwrap();
        assert!(got[0].is("Bearer"));
        assert_eq!(got[0].param("realm"), Some("x"));
        assert_eq!(got[0].param("service"), Some("y"));
        let got = parse_www_authenticate("Basic").unwrap();
        assert!(got[0].is("basic") && got[0].params.is_empty());
    }

    #[test]
    fn malformed_headers_are_errors() {
        for h in [
            "",
            "   ",
            r#"Bearer realm="unterminated"#,
            r#"Bearer realm="x\"#,
            r#"Bearer realm="a" service="b""#,
            r#"Bearer realm="a",@"#,
        ] {
            assert!(parse_www_authenticate(h).is_err(), "{h:?} should fail");
        }
    }
}
