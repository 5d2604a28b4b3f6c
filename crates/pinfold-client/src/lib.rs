//! Pinfold's one registry client: what the pull-through mirror (`pinfold-mirror`) and the client
//! tools (`pinfold diff`, `pinfold lock`) use to read from any OCI / Docker registry, and what
//! `pinfold export` / `pinfold import` use to move images through OCI layouts (pushes:
//! `has_blob`, `push_blob`, `push_manifest`, bodies sent from memory).
//!
//! One [`RegistryClient`] talks to one registry host. It reads manifests as exact bytes and
//! checks them against `Docker-Content-Digest` and the digest asked for; it streams blobs while
//! hashing them and ends the stream with an error when digest or size do not match, so a caller
//! that stores what it reads never keeps bytes it did not ask for ("bytes are sacred",
//! DESIGN.md). It speaks anonymous access, HTTP Basic and the Docker token flow (401 challenge,
//! token from the realm, cached per scope until it expires), with credentials given explicitly
//! or found the way the Docker CLI finds them ([`DockerConfig`]). Every wait is bounded:
//! connect and idle-read timeouts, a 4 MiB manifest limit, a page bound on tag listings.
//!
//! Tokens and passwords are never logged: every type holding one implements `Debug` by hand.
//!
//! ```no_run
//! # async fn pull() -> Result<(), Box<dyn std::error::Error>> {
//! use futures_util::StreamExt;
//! use pinfold_client::{ClientConfig, RegistryClient};
//! use pinfold_oci::{ImageReference, Manifest};
//!
//! let image: ImageReference = "ruby:3.3".parse()?;
//! let client = RegistryClient::from_docker_config(image.registry(), ClientConfig::default()).await?;
//! let fetched = client.get_manifest(image.repository(), &image.reference()).await?;
//! let manifest = Manifest::parse(Some(&fetched.media_type), &fetched.bytes)?;
//! for layer in &manifest.layers {
//!     let mut blob = client.get_blob(image.repository(), &layer.digest).await?;
//!     while let Some(chunk) = blob.next().await {
//!         let _bytes = chunk?; // provisional until the stream ends without an error
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! This crate must not depend on the server, the metadata or the store: it only fetches and
//! verifies (and pushes what it is given, unchanged); deciding what to keep is the caller's job. Its only Pinfold dependency is
//! `pinfold-oci`.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod blob;
mod challenge;
mod client;
mod credentials;
mod error;
mod token;

pub use blob::BlobStream;
pub use challenge::{parse_www_authenticate, Challenge};
pub use client::{ClientConfig, FetchedManifest, ManifestHead, RegistryClient};
pub use credentials::{Credentials, DockerConfig, DEFAULT_HELPER_TIMEOUT};
pub use error::ClientError;
