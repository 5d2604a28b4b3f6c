//! The OCI vocabulary every other Pinfold crate speaks: [`Digest`], [`RepoName`], [`Tag`],
//! [`Reference`], media types and a read-only view of manifests ([`Manifest`]).
//!
//! Every type here is checked at the edge: `FromStr` applies the distribution-spec grammar and
//! rejects what does not match (it never normalises), `Deserialize` goes through `FromStr`, and
//! `Display` returns exactly the accepted text. Nothing here does I/O, and this crate depends on
//! no other Pinfold crate.
#![warn(missing_docs)]

mod digest;
mod image_ref;
mod manifest;
pub mod media_type;
mod name;

pub use digest::{Digest, DigestAlgorithm, DigestError, Digester};
pub use image_ref::{ImageRefError, ImageReference, DEFAULT_REGISTRY, DEFAULT_TAG};
pub use manifest::{
    Descriptor, Manifest, ManifestError, ManifestKind, Platform, MAX_MANIFEST_BYTES,
};
pub use name::{NameError, Reference, RepoName, Tag};
