//! Debian package versions, `[epoch:]upstream_version[-debian_revision]` (Debian Policy §5.6.12),
//! ordered exactly as dpkg orders them (`verrevcmp` in dpkg's `lib/dpkg/version.c`).
//!
//! Why our own type: DESIGN.md notes that `debian-packaging` orders some versions differently from
//! dpkg, and snapshot diffs (story 2: `containerd.io` 1.2.13-1 → 1.2.13-2) must agree with what
//! `apt` and `dpkg` will do on the host. The tests check the ordering against the real `dpkg`.
//!
//! Grammar choices, each checked against `dpkg --validate-version` (dpkg 1.21):
//! - the epoch is decimal digits, at most `i32::MAX` (dpkg: "epoch in version is too big");
//! - the upstream version must start with a digit. `dpkg --compare-versions` only warns about
//!   this, but `dpkg --validate-version` rejects it (exit 1), and so does Policy; we reject;
//! - characters outside Policy's set (e.g. `_`) are rejected, as `dpkg --validate-version` does
//!   (`--compare-versions` again only warns);
//! - surrounding whitespace is rejected: dpkg trims it, but a typed ID never normalises.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Why a string is not a Debian version. Each variant names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// The string is empty.
    #[error("version is empty")]
    Empty,
    /// Nothing precedes the first `:` (`:1.0`).
    #[error("epoch in version {0:?} is empty")]
    EmptyEpoch(String),
    /// The part before the first `:` is not decimal digits (`a:1.0`).
    #[error("epoch in version {0:?} is not a number")]
    EpochNotNumber(String),
    /// The epoch does not fit dpkg's `int` (greater than 2147483647).
    #[error("epoch in version {0:?} is too big")]
    EpochTooBig(String),
    /// The upstream version is empty (`1:`, `-1`, `1:-1`).
    #[error("upstream version in {0:?} is empty")]
    EmptyUpstream(String),
    /// The upstream version does not start with a digit (`a1.0`).
    #[error("upstream version in {0:?} does not start with a digit")]
    UpstreamNotDigit(String),
    /// The upstream version contains a character outside `[A-Za-z0-9.+~-]` (and `:` with an epoch).
    #[error("invalid character {ch:?} in upstream version of {version:?}")]
    UpstreamChar {
        /// The whole version as given.
        version: String,
        /// The first offending character.
        ch: char,
    },
    /// A `-` is the last character, so the Debian revision is empty (`1.0-`).
    #[error("debian revision in {0:?} is empty")]
    EmptyRevision(String),
    /// The Debian revision contains a character outside `[A-Za-z0-9+.~]`.
    #[error("invalid character {ch:?} in debian revision of {version:?}")]
    RevisionChar {
        /// The whole version as given.
        version: String,
        /// The first offending character.
        ch: char,
    },
}

/// A Debian package version, `[epoch:]upstream_version[-debian_revision]`.
///
/// Built only through [`FromStr`], which checks Policy §5.6.12 and never normalises;
/// [`Display`](fmt::Display) gives back exactly the accepted text.
///
/// Ordering and equality are dpkg's: [`Ord`] is `dpkg --compare-versions`, and
/// [`PartialEq`] is `cmp == Equal`, so `1.0 == 1.00`, `0:1.0 == 1.0` and `1.0 == 1.0-0` even though
/// their texts differ. Compare [`DebVersion::as_str`] for textual identity. For that reason the
/// type does not implement `Hash` (a hash would have to agree with this equality).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DebVersion {
    text: String,
    epoch: u32,
    /// Byte range of the upstream version in `text`.
    upstream: (usize, usize),
    /// Start of the revision in `text` (after the last `-`), if there is one.
    revision: Option<usize>,
}

impl DebVersion {
    /// The version exactly as parsed.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The epoch; 0 when the version has none.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The upstream version (between the epoch's `:` and the last `-`).
    pub fn upstream(&self) -> &str {
        self.text
            .get(self.upstream.0..self.upstream.1)
            .unwrap_or("")
    }

    /// The Debian revision (after the last `-`), if there is one.
    pub fn revision(&self) -> Option<&str> {
        self.revision.and_then(|start| self.text.get(start..))
    }
}

fn is_upstream_char(c: char, has_epoch: bool) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | '-') || (has_epoch && c == ':')
}

fn is_revision_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~')
}

impl FromStr for DebVersion {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(VersionError::Empty);
        }
        let owned = || s.to_owned();
        // The epoch ends at the first ':' (dpkg uses strchr); later colons belong to upstream.
        let (epoch, rest_start) = match s.find(':') {
            Some(colon) => {
                let digits = &s[..colon];
                if digits.is_empty() {
                    return Err(VersionError::EmptyEpoch(owned()));
                }
                if !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(VersionError::EpochNotNumber(owned()));
                }
                let epoch = digits
                    .parse::<u32>()
                    .ok()
                    .filter(|e| i32::try_from(*e).is_ok())
                    .ok_or_else(|| VersionError::EpochTooBig(owned()))?;
                (Some(epoch), colon + 1)
            }
            None => (None, 0),
        };
        let rest = &s[rest_start..];
        // The revision starts after the last '-' (dpkg uses strrchr).
        let (upstream_end, revision) = match rest.rfind('-') {
            Some(dash) => {
                let revision = &rest[dash + 1..];
                if revision.is_empty() {
                    return Err(VersionError::EmptyRevision(owned()));
                }
                if let Some(ch) = revision.chars().find(|c| !is_revision_char(*c)) {
                    return Err(VersionError::RevisionChar {
                        version: owned(),
                        ch,
                    });
                }
                (rest_start + dash, Some(rest_start + dash + 1))
            }
            None => (s.len(), None),
        };
        let upstream = &s[rest_start..upstream_end];
        match upstream.chars().next() {
            None => return Err(VersionError::EmptyUpstream(owned())),
            Some(c) if !c.is_ascii_digit() => return Err(VersionError::UpstreamNotDigit(owned())),
            Some(_) => {}
        }
        if let Some(ch) = upstream
            .chars()
            .find(|c| !is_upstream_char(*c, epoch.is_some()))
        {
            return Err(VersionError::UpstreamChar {
                version: owned(),
                ch,
            });
        }
        Ok(DebVersion {
            text: owned(),
            epoch: epoch.unwrap_or(0),
            upstream: (rest_start, upstream_end),
            revision,
        })
    }
}

impl TryFrom<String> for DebVersion {
    type Error = VersionError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<DebVersion> for String {
    fn from(value: DebVersion) -> Self {
        value.text
    }
}

impl fmt::Display for DebVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// dpkg's `order()`: the weight of one byte in a non-digit part; 0 is the end of the string.
/// `~` sorts before everything, even the end; letters sort before all other characters.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`: alternate non-digit parts (compared by [`order`]) and digit parts
/// (compared numerically, without parsing, so arbitrarily long digit runs cannot overflow).
fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        // Equal-length runs compare by their first differing digit; a longer run is bigger.
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a.get(i).cmp(&b.get(j));
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

impl Ord for DebVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream().as_bytes(), other.upstream().as_bytes()))
            .then_with(|| {
                verrevcmp(
                    self.revision().unwrap_or("").as_bytes(),
                    other.revision().unwrap_or("").as_bytes(),
                )
            })
    }
}

impl PartialOrd for DebVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for DebVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for DebVersion {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn v(s: &str) -> DebVersion {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    /// Tricky pairs with dpkg's answer (checked by hand with `dpkg --compare-versions`, and
    /// again by `ordering_matches_real_dpkg`).
    const PAIRS: &[(&str, Ordering, &str)] = &[
        ("1:0.1", Ordering::Greater, "9.9"),
        ("0:1.0", Ordering::Equal, "1.0"),
        ("1.0~rc1", Ordering::Less, "1.0"),
        ("1.0~~", Ordering::Less, "1.0~"),
        ("1.0~", Ordering::Less, "1.0"),
        ("1.0~~a", Ordering::Less, "1.0~"),
        ("1.0+b1", Ordering::Greater, "1.0"),
        ("1.0", Ordering::Less, "1.0.0"),
        ("1.2.13-1", Ordering::Less, "1.2.13-2"),
        ("1.0-1", Ordering::Greater, "1.0"),
        ("1.0", Ordering::Equal, "1.0-0"),
        ("1.0-0", Ordering::Less, "1.0-0.1"),
        ("1.0a", Ordering::Greater, "1.0"),
        ("1.0a", Ordering::Less, "1.0+"),
        ("1.0a", Ordering::Less, "1.0."),
        ("1a", Ordering::Less, "1b"),
        ("1Z", Ordering::Less, "1a"),
        ("1.a", Ordering::Greater, "1.1"),
        ("1.0", Ordering::Equal, "1.00"),
        ("1.010", Ordering::Equal, "1.10"),
        ("1.09", Ordering::Less, "1.10"),
        ("007", Ordering::Equal, "7"),
        (
            "1.123456789012345678901234567890",
            Ordering::Less,
            "1.123456789012345678901234567891",
        ),
        (
            "99999999999999999999999999999999999999",
            Ordering::Greater,
            "9999999999999999999999999999999999999",
        ),
        ("000000000000000000000000000000001", Ordering::Equal, "1"),
        ("20230311", Ordering::Less, "20240203"),
        ("3.0.11-1~deb12u2", Ordering::Less, "3.0.13-1~deb12u1"),
        ("3.0.11-1~deb12u2", Ordering::Less, "3.0.11-1"),
        ("2024a-0+deb12u1", Ordering::Less, "2025b-0+deb12u1"),
        ("2024a-0+deb12u1", Ordering::Greater, "2024a-0"),
        ("2:1.0", Ordering::Greater, "1:9.0"),
        ("1:1:1", Ordering::Greater, "1:1"),
        ("1.0-1-2", Ordering::Greater, "1.0-1-1"),
        ("1.0-1-2", Ordering::Greater, "1.0-2"),
        ("1.0-a", Ordering::Greater, "1.0"),
        ("1.0-~", Ordering::Less, "1.0"),
        ("2147483647:0", Ordering::Greater, "0:99"),
    ];

    #[test]
    fn table_of_tricky_pairs() {
        for (a, want, b) in PAIRS {
            let (va, vb) = (v(a), v(b));
            assert_eq!(va.cmp(&vb), *want, "{a} vs {b}");
            assert_eq!(vb.cmp(&va), want.reverse(), "{b} vs {a}");
            assert_eq!(va == vb, *want == Ordering::Equal, "{a} == {b}");
        }
    }

    #[test]
    fn display_is_exact_text_and_parts() {
        for s in [
            "1.0",
            "0:1.0",
            "1:1:1-2",
            "1.0-1-2",
            "007",
            "3.0.11-1~deb12u2",
        ] {
            assert_eq!(v(s).to_string(), s);
        }
        let x = v("1:1:1.0-a-b1");
        assert_eq!(
            (x.epoch(), x.upstream(), x.revision()),
            (1, "1:1.0-a", Some("b1"))
        );
        let y = v("2.0");
        assert_eq!((y.epoch(), y.upstream(), y.revision()), (0, "2.0", None));
    }

    #[test]
    fn serde_goes_through_from_str() {
        let x: DebVersion = serde_json::from_str("\"1:2.0-1\"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(x.as_str(), "1:2.0-1");
        assert!(serde_json::from_str::<DebVersion>("\"a:1\"").is_err());
        assert_eq!(
            serde_json::to_string(&x).unwrap_or_else(|e| panic!("{e}")),
            "\"1:2.0-1\""
        );
    }

    fn invalid_cases() -> Vec<(&'static str, VersionError)> {
        let s = |x: &str| x.to_owned();
        vec![
            ("", VersionError::Empty),
            (":1.0", VersionError::EmptyEpoch(s(":1.0"))),
            ("a:1.0", VersionError::EpochNotNumber(s("a:1.0"))),
            ("1.0:1", VersionError::EpochNotNumber(s("1.0:1"))),
            ("1.0-a:b", VersionError::EpochNotNumber(s("1.0-a:b"))),
            ("-1:1", VersionError::EpochNotNumber(s("-1:1"))),
            ("2147483648:1", VersionError::EpochTooBig(s("2147483648:1"))),
            (
                "99999999999999999999:1",
                VersionError::EpochTooBig(s("99999999999999999999:1")),
            ),
            ("1:", VersionError::EmptyUpstream(s("1:"))),
            ("-1", VersionError::EmptyUpstream(s("-1"))),
            ("1:-1", VersionError::EmptyUpstream(s("1:-1"))),
            ("1.0-", VersionError::EmptyRevision(s("1.0-"))),
            ("1:1.0-", VersionError::EmptyRevision(s("1:1.0-"))),
            ("a1.0", VersionError::UpstreamNotDigit(s("a1.0"))),
            ("~1", VersionError::UpstreamNotDigit(s("~1"))),
            ("1:a", VersionError::UpstreamNotDigit(s("1:a"))),
            (" 1.0", VersionError::UpstreamNotDigit(s(" 1.0"))),
            (
                "1.0 ",
                VersionError::UpstreamChar {
                    version: s("1.0 "),
                    ch: ' ',
                },
            ),
            (
                "1_0",
                VersionError::UpstreamChar {
                    version: s("1_0"),
                    ch: '_',
                },
            ),
            (
                "1.0é",
                VersionError::UpstreamChar {
                    version: s("1.0é"),
                    ch: 'é',
                },
            ),
            (
                "1.0-_",
                VersionError::RevisionChar {
                    version: s("1.0-_"),
                    ch: '_',
                },
            ),
            ("1.0-1:2", VersionError::EpochNotNumber(s("1.0-1:2"))),
        ]
    }

    #[test]
    fn invalid_versions_are_rejected() {
        for (input, want) in invalid_cases() {
            assert_eq!(input.parse::<DebVersion>().err(), Some(want), "{input:?}");
        }
    }

    /// `CI` set: the real peer must exist. Locally a missing `dpkg` skips with a reason.
    fn have_dpkg() -> bool {
        let ok = Command::new("dpkg")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            assert!(std::env::var_os("CI").is_none(), "dpkg is required in CI");
            eprintln!("skipping: dpkg not found");
        }
        ok
    }

    /// Tiny xorshift64* so the generated versions are the same on every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// A random valid version, biased towards the interesting characters.
    fn random_version(rng: &mut Rng) -> String {
        const CHARS: &[u8] = b"0123456789.~+aZz001~~..+9";
        let mut s = String::new();
        if rng.below(4) == 0 {
            s.push_str(&rng.below(3).to_string());
            s.push(':');
        }
        s.push(char::from(b'0' + rng.below(10) as u8));
        for _ in 0..rng.below(8) {
            s.push(char::from(CHARS[rng.below(CHARS.len())]));
        }
        if rng.below(2) == 0 {
            s.push('-');
            for _ in 0..=rng.below(5) {
                s.push(char::from(CHARS[rng.below(CHARS.len())]));
            }
        }
        s
    }

    /// Compares every pair with one `sh` running `dpkg --compare-versions`, one line per pair.
    fn dpkg_orderings(pairs: &[(String, String)]) -> Vec<Ordering> {
        let mut script = String::new();
        for (a, b) in pairs {
            // Versions hold only [0-9A-Za-z.+~:-], so single quotes are enough.
            script.push_str(&format!(
                "if dpkg --compare-versions '{a}' lt '{b}'; then echo lt; \
                 elif dpkg --compare-versions '{a}' eq '{b}'; then echo eq; \
                 elif dpkg --compare-versions '{a}' gt '{b}'; then echo gt; else echo err; fi\n"
            ));
        }
        // The script goes through stdin: as an argument it exceeds ARG_MAX.
        let mut child = Command::new("sh")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("sh: {e}"));
        let mut stdin = child.stdin.take().unwrap_or_else(|| panic!("no stdin"));
        let writer = std::thread::spawn(move || stdin.write_all(script.as_bytes()));
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("sh: {e}"));
        writer
            .join()
            .unwrap_or_else(|_| panic!("writer panicked"))
            .unwrap_or_else(|e| panic!("writing the script: {e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let got: Vec<Ordering> = text
            .lines()
            .map(|l| match l {
                "lt" => Ordering::Less,
                "eq" => Ordering::Equal,
                "gt" => Ordering::Greater,
                other => panic!("dpkg gave {other:?}"),
            })
            .collect();
        assert_eq!(got.len(), pairs.len());
        got
    }

    #[test]
    fn ordering_matches_real_dpkg() {
        if !have_dpkg() {
            return;
        }
        let started = Instant::now();
        let mut pairs: Vec<(String, String)> = PAIRS
            .iter()
            .map(|(a, _, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let versions: Vec<String> = (0..300).map(|_| random_version(&mut rng)).collect();
        // Each generated version against a fixed sample of 4 others (and its neighbour, which
        // often shares a prefix): ~1500 pairs, a few seconds of dpkg.
        for (i, a) in versions.iter().enumerate() {
            for k in [1, 7, 53, 151, 299] {
                pairs.push((a.clone(), versions[(i + k) % versions.len()].clone()));
            }
        }
        let want = dpkg_orderings(&pairs);
        let mut mismatches = Vec::new();
        for ((a, b), want) in pairs.iter().zip(want) {
            let got = v(a).cmp(&v(b));
            if got != want {
                mismatches.push(format!("{a} vs {b}: ours {got:?}, dpkg {want:?}"));
            }
        }
        assert!(mismatches.is_empty(), "{mismatches:#?}");
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "dpkg cross-check took {:?}",
            started.elapsed()
        );
        eprintln!(
            "dpkg agreed on {} pairs in {:?}",
            pairs.len(),
            started.elapsed()
        );
    }

    #[test]
    fn validity_matches_dpkg_validate_version() {
        if !have_dpkg() {
            return;
        }
        let mut inputs: Vec<&str> = invalid_cases().into_iter().map(|(i, _)| i).collect();
        // Whitespace: dpkg trims it and accepts; we reject on purpose (no normalising).
        inputs.retain(|i| i.trim() == *i);
        for input in inputs {
            let out = Command::new("dpkg")
                .args(["--validate-version", "--", input])
                .output()
                .unwrap_or_else(|e| panic!("dpkg: {e}"));
            assert!(!out.status.success(), "dpkg accepts {input:?}");
        }
        for (a, _, b) in PAIRS {
            for input in [a, b] {
                let out = Command::new("dpkg")
                    .args(["--validate-version", "--", input])
                    .output()
                    .unwrap_or_else(|e| panic!("dpkg: {e}"));
                assert!(out.status.success(), "dpkg rejects {input:?}");
            }
        }
    }
}
