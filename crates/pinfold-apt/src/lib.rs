//! Debian (APT) repository support for Pinfold: per DESIGN.md this crate owns `.deb` parsing,
//! dpkg version ordering, index generation, signing and frozen snapshots of upstream archives.
//! Only the first piece exists yet: [`DebVersion`] ([`version`]), a Debian package version
//! checked against Debian Policy §5.6.12 and ordered exactly as `dpkg --compare-versions`.
//!
//! This crate is vocabulary and file formats only: it must not depend on the server
//! (`pinfold-server`) or the metadata store (`pinfold-meta`), so client tools such as
//! `pinfold-inspect` can use it. Nothing here panics on bad input.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod version;

pub use version::{DebVersion, VersionError};
