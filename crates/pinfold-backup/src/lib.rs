//! Durable copies of a Pinfold data directory, and checks of it.
//!
//! * [`backup`]: an online, consistent backup while the server serves and accepts pushes: a
//!   metadata snapshot first, then every blob that snapshot names, copied incrementally into a
//!   content-addressed tree shared by all backups of the directory, then the other state files,
//!   and last a manifest with the SHA-256 and size of every file (written atomically: a backup
//!   without `manifest.json` is incomplete). [`prune`] keeps the newest backups.
//! * [`restore`]: a new data directory from a backup, every file checked against the manifest
//!   while it is copied, refusing a damaged backup before the target is touched; [`repair`]
//!   copies back only the blobs of a data directory that are missing or corrupt.
//! * [`verify`]: recomputes every blob's digest (parallel, optionally throttled) and checks that
//!   every blob the metadata names exists. Runs beside a running server.
//!
//! Blobs may live on the filesystem or in object storage (`BlobStore::open_configured`): all of
//! the above read and write them through the store, so a backup of either restores onto either
//! ([`restore_to`] picks the target's backend).
//! * [`export`] / [`import`]: images to and from an OCI image layout through a registry's
//!   `/v2/` API (`pinfold-client`), for air-gapped transfer; bytes and digests unchanged.
//!
//! Backup directory layout:
//!
//! ```text
//! <backup dir>/
//!   lock                          flock held by a backup or prune run (one at a time)
//!   blobs/sha256/<xx>/<hex>       every blob of every backup, once, named by its digest
//!   blobs/sha512/<xx>/<hex>
//!   backups/<UTC time>/           one backup, e.g. 2026-11-22T08-30-00.123Z
//!     meta.db                     the metadata snapshot (SQLite: VACUUM INTO; PostgreSQL: copied into a SQLite file)
//!     state/<path>                other files of the data directory (apt/signing-key.asc, ...)
//!     manifest.json               written last: format, versions, time, every file's sha256 + size
//! ```
//!
//! This crate writes blobs into a data directory only through `pinfold-store` and reads and
//! snapshots metadata only through `pinfold-meta`. It knows nothing of HTTP.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod backup;
mod config;
mod error;
mod files;
mod manifest;
mod oci_layout;
mod progress;
mod restore;
mod verify;

pub use backup::{backup, prune, BackupSummary, PruneSummary};
pub use config::BackupConfig;
pub use error::BackupError;
pub use manifest::{BackupManifest, BlobEntry, FileEntry, MissingBlob, FORMAT_VERSION};
pub use oci_layout::{export, import, TransferSummary, REF_NAME_ANNOTATION, REPOSITORY_ANNOTATION};
pub use progress::{NoProgress, Progress};
pub use restore::{
    list_backups, repair, restore, restore_to, BackupListing, RepairSummary, RestoreSummary,
};
pub use verify::{verify, Finding, VerifyOptions, VerifyReport};
