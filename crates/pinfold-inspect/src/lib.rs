//! Client-side inspection tools for Pinfold (issue 4): a full Dockerfile parser
//! ([`dockerfile`]) and determinism rules over it ([`lint`]), used by `pinfold lint`.
//!
//! This crate works on any Dockerfile and any registry's references; it must not depend on the
//! server (`pinfold-server`) or the metadata store (`pinfold-meta`), so the CLI can ship it alone.
//! It only speaks the OCI vocabulary of `pinfold-oci`. Nothing here panics on bad input: syntax
//! errors come back as [`dockerfile::ParseError`] with a line and column.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod dockerfile;
pub mod lint;
pub mod packages;
