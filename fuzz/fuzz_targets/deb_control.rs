//! The deb822 control parser of pinfold-apt (control files of uploaded .debs, Packages and
//! Release indices of mirrored repositories): paragraphs, the binary package's checked fields,
//! and Debian versions. No input panics; a version that parses prints back to an equal one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pinfold_apt::control::parse_paragraphs;
use pinfold_apt::{BinaryControl, DebVersion, Paragraph};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_paragraphs(text);
    let _ = Paragraph::parse_one(text);
    let _ = BinaryControl::parse(text);
    if let Ok(version) = text.parse::<DebVersion>() {
        let printed = version.to_string();
        let again: DebVersion = printed.parse().unwrap_or_else(|e| {
            panic!("{text:?} printed as {printed:?}, which does not parse: {e}")
        });
        assert_eq!(
            again.cmp(&version),
            std::cmp::Ordering::Equal,
            "{text:?} → {printed:?}"
        );
    }
});
