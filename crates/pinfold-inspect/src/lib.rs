//! Client-side inspection tools for Pinfold (issue 4): opening images from OCI layouts,
//! `docker save` archives and registries ([`image`]), reading their layers as streams into
//! per-layer indexes of files and package databases ([`layer`], [`packages`]), comparing two
//! images and explaining what is likely to break ([`diff`], used by `pinfold diff` and by the
//! server for drift events), and a full Dockerfile parser ([`dockerfile`]) with determinism
//! rules over it ([`lint`], used by `pinfold lint`), and the digest lockfile behind
//! `pinfold lock` ([`lock`]).
//!
//! This crate works on any image, Dockerfile and registry; it must not depend on the server
//! (`pinfold-server`), the metadata store (`pinfold-meta`) or the blob store, so the CLI can ship
//! it alone. Registries are reached only through `pinfold-client`. Nothing here panics on bad
//! input: syntax errors come back as [`dockerfile::ParseError`] with a line and column, and
//! unreadable images and layers as [`image::ImageError`] and [`layer::LayerError`] naming the
//! file, layer digest and entry.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod diff;
pub mod dockerfile;
pub mod image;
pub mod layer;
pub mod lint;
pub mod lock;
pub mod packages;
