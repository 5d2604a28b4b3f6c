//! Debian (APT) repository support for Pinfold: per DESIGN.md this crate owns `.deb` parsing,
//! dpkg version ordering, index generation and signing.
//!
//! - [`version`]: [`DebVersion`], checked against Debian Policy §5.6.12 and ordered exactly as
//!   `dpkg --compare-versions`;
//! - [`control`]: deb822 paragraphs and the checked binary control file ([`BinaryControl`]);
//! - [`deb`]: reading a `.deb` ([`read_deb`]): ar, control.tar.{gz,xz,zst}, data.tar detection;
//! - [`index`]: `Packages` stanzas and files, `Release` files, gzip and xz;
//! - [`digests`]: the MD5/SHA-1/SHA-256 triple every index lists;
//! - [`sign`]: the repository key (Ed25519) and `InRelease` / `Release.gpg` signatures;
//! - [`diff`]: what changed between two package sets (added, removed, upgraded, downgraded).
//!
//! This crate is vocabulary and file formats only: it must not depend on the server
//! (`pinfold-server`) or the metadata store (`pinfold-meta`), so client tools such as
//! `pinfold-inspect` can use it. Nothing here panics on bad input.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod control;
pub mod deb;
pub mod diff;
pub mod digests;
pub mod index;
pub mod sign;
pub mod version;

pub use control::{Architecture, BinaryControl, ControlError, PackageName, Paragraph};
pub use deb::{read_deb, DebError, DebInfo};
pub use digests::{FileDigests, MultiHasher};
pub use sign::{parse_public_keys, verify_clearsigned, SignError, SigningKey};
pub use version::{DebVersion, VersionError};
