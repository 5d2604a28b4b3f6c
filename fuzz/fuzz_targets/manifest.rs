//! `Manifest::parse` (pinfold-oci) on any body under any of the Content-Types a client may send:
//! it must answer Ok or a ManifestError, never panic; a parsed manifest's descriptors carry
//! digests that print and parse back to themselves.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pinfold_oci::{Digest, Manifest};

const CONTENT_TYPES: [Option<&str>; 8] = [
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json"),
    Some("application/json"),
    Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
    Some("text/plain; charset=utf-8"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()];
    if let Ok(manifest) = Manifest::parse(content_type, body) {
        let _ = manifest.required_blobs().count();
        let _ = manifest.referrer_artifact_type();
        let all = manifest
            .config
            .iter()
            .chain(&manifest.layers)
            .chain(&manifest.manifests)
            .chain(&manifest.subject);
        for descriptor in all {
            let text = descriptor.digest.to_string();
            let again: Digest = text.parse().expect("a parsed digest prints parseable");
            assert_eq!(again, descriptor.digest);
        }
    }
});
