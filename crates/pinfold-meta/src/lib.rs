//! Pinfold's metadata: repositories, blob links, manifests and their references, tags, the
//! append-only tag journal, referrers and upload sessions.
//!
//! All SQL lives in this crate. SQLite (WAL, one writer connection beside a reader pool) is the
//! embedded engine; the queries use `$N` placeholders and portable SQL so that a PostgreSQL
//! engine can run the same statements. [`Meta::put_manifest`], [`Meta::move_tag`],
//! [`Meta::delete_tag`] and [`Meta::delete_manifest`] are the only ways a tag changes, and each
//! writes its journal row in the same transaction as the move. This crate must not depend on the
//! blob store or the server.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod blobs;
mod columns;
mod error;
mod journal;
mod manifests;
mod model;
mod repositories;
mod sqlite;
mod tags;
mod uploads;

pub use error::MetaError;
pub use model::{
    JournalEntry, ManifestRecord, NewManifest, ReferrerRecord, TagMove, TagMoveSource, UploadRecord,
};
pub use sqlite::Meta;
