//! The reference grammar of pinfold-oci: repository names, tags, references (tag or digest),
//! digests and full image references (`registry/name:tag@digest`). Any input parses or is
//! refused without a panic, and whatever parses prints to a string that parses back to the
//! same value (the server and `pinfold lock` store the printed form).
#![no_main]

use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use pinfold_oci::{Digest, ImageReference, Reference, RepoName, Tag};

fn round_trips<T>(text: &str)
where
    T: FromStr + std::fmt::Display + PartialEq,
{
    if let Ok(value) = text.parse::<T>() {
        let printed = value.to_string();
        let again = printed
            .parse::<T>()
            .unwrap_or_else(|_| panic!("{text:?} printed as {printed:?}, which does not parse"));
        assert!(again == value, "{text:?} → {printed:?} → a different value");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    round_trips::<RepoName>(text);
    round_trips::<Tag>(text);
    round_trips::<Reference>(text);
    round_trips::<Digest>(text);
    if let Ok(image) = text.parse::<ImageReference>() {
        let _ = (
            image.registry(),
            image.repository(),
            image.tag(),
            image.digest(),
        );
        let _ = image.reference();
        let printed = image.to_string();
        let again = printed.parse::<ImageReference>().unwrap_or_else(|e| {
            panic!("{text:?} printed as {printed:?}, which does not parse: {e}")
        });
        assert!(
            again == image,
            "{text:?} → {printed:?} → a different reference"
        );
    }
});
