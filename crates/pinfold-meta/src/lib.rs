//! Pinfold's metadata: repositories, blob links, manifests and their references, tags, the
//! append-only tag journal, referrers and upload sessions.
//!
//! One handle, [`Meta`], over two engines:
//!
//! * SQLite, the embedded default: [`Meta::open_sqlite`] (WAL, `synchronous=FULL`, one writer
//!   connection beside a reader pool);
//! * PostgreSQL, for several replicas sharing one database: [`Meta::open_postgres`] with a URL
//!   such as `postgres://user:password@host:5432/pinfold` (the database must exist; migrations
//!   run at open).
//!
//! All SQL lives in this crate, one module per table group (`repositories`, `blobs`,
//! `manifests`, `tags`, `journal`, `uploads`, `mirror`, `apt`), written once with `$N`
//! placeholders and portable
//! SQL and run on either engine (`engine.rs` explains how, and the few places where the engines
//! differ). The schemas are `migrations/sqlite/` and `migrations/postgres/`, numbered alike.
//! [`Meta::put_manifest`], [`Meta::move_tag`], [`Meta::delete_tag`] and
//! [`Meta::delete_manifest`] are the only ways a tag changes, and each writes its journal row in
//! the same transaction as the move. This crate must not depend on the blob store or the server.
//!
//! The integration tests run one behaviour suite on both engines: on PostgreSQL when
//! `TEST_PINFOLD_POSTGRES_URL` names a database whose role may create databases (each test
//! makes its own); without it those tests print "skipped" and pass, unless `CI` is set. The
//! variable is deliberately not `PINFOLD_*`: the `pinfold` binary reads every `PINFOLD_*`
//! variable as configuration and refuses unknown ones, and the workspace's tests run it.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod apt;
mod auth;
mod blobs;
mod columns;
mod config;
mod coordination;
mod engine;
mod engine_copy;
mod error;
mod gc;
mod journal;
mod manifests;
mod mirror;
mod model;
mod postgres;
mod repositories;
mod snapshot;
mod sqlite;
mod tags;
mod uploads;

pub use apt::{
    AptAddOutcome, AptIndexFile, AptPackage, AptPublication, AptPublishSource, AptRepo,
    AptRepoKind, AptSnapshot, NewAptRepo, APT_INDEX_GENERATIONS_KEPT,
};
pub use auth::{ApiToken, AuditEvent, NewAuditEvent};
pub use config::MetaConfig;
pub use coordination::{Change, ChangeListener, Lease};
pub use engine::Meta;
pub use error::MetaError;
pub use gc::{GcItem, GcKind, GcPolicy, GcSweep};
pub use mirror::{DriftEvent, DriftResolution, MirrorTagState, UpstreamObservation};
pub use model::{
    JournalEntry, ManifestRecord, NewManifest, ReferrerRecord, TagMove, TagMoveSource, UploadRecord,
};
pub use snapshot::BlobReference;
