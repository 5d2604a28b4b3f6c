//! Pinfold's pull-through mirror of any number of upstream registries (DESIGN.md, story 1).
//!
//! A repository named `<upstream>/<path>` (`docker.io/library/ruby`) is a mirror of `<path>`
//! on the upstream configured under that name ([`Upstreams::route`]). [`Mirror`] fetches what
//! clients ask for through the one registry client (`pinfold-client`), stores it exactly as
//! the upstream sent it, and decides what a mirrored tag serves by the upstream's
//! [`TagPolicy`]: `pin` keeps the first digest until someone promotes another, `follow`
//! re-resolves once per refresh interval, `cooldown` follows a new digest only once it has
//! been stable upstream for a while. Every tag move goes through `pinfold-meta`, which
//! journals it; every upstream observation is recorded there too, and the differences
//! between what a tag serves and what its upstream says are drift events.
//!
//! Blobs are fetched once however many clients ask at the same moment, and streamed to all of
//! them while they are written (`fetch.rs`); nothing becomes visible before its digest is
//! verified. When an upstream is unreachable, rate limiting or failing, cached content is
//! served as is.
//!
//! This crate knows nothing of HTTP serving: `pinfold-server` routes requests here and maps
//! [`MirrorError`] to OCI error answers.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod config;
mod error;
mod fetch;
mod mirror;
mod upstream;

pub use config::{MirrorConfig, MirrorSettings, TagPolicy, UpstreamConfig};
pub use error::MirrorError;
pub use mirror::{
    CheckOutcome, DriftPass, ImmutableTags, Mirror, Promoted, PulledBlob, PulledManifest,
};
pub use upstream::{Route, Upstream, Upstreams};
