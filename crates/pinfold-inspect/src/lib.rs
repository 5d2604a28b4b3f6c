//! Client-side inspection tools for Pinfold (issue 4): a full Dockerfile parser
//! ([`dockerfile`]) and determinism rules over it ([`lint`]), used by `pinfold lint`; the digest
//! lockfile behind `pinfold lock` ([`lock`]).
//!
//! This crate works on any Dockerfile and any registry's references; it must not depend on the
//! server (`pinfold-server`) or the metadata store (`pinfold-meta`), so the CLI can ship it alone.
//! It speaks the OCI vocabulary of `pinfold-oci` and reads registries only through
//! `pinfold-client` (the one registry client). Nothing here panics on bad input: syntax
//! errors come back as [`dockerfile::ParseError`] with a line and column.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod dockerfile;
pub mod lint;
pub mod lock;
pub mod packages;
