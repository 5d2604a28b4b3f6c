//! Pinfold's content-addressed blob store and its resumable upload sessions.
//!
//! Only this crate writes the blob tree. A blob becomes visible only after its digest has been
//! verified and its file and directory fsynced and renamed into place ("visible means verified
//! and durable", DESIGN.md); one function, `durable::install_blob`, does that for pushed
//! manifests and finished uploads alike. This crate knows nothing of repositories, HTTP or
//! metadata; it must not depend on any Pinfold crate but `pinfold-oci`.
//!
//! On-disk layout under the store root:
//!
//! ```text
//! <root>/
//!   blobs/
//!     sha256/
//!       00/ .. ff/             all 256 fan-out directories, created by BlobStore::open
//!       e3/
//!         e3b0c442...b855      one file per blob, named by its encoded digest
//!         .tmp-<uuid>          a blob being written (put_blob); renamed to its hex name
//!                              when durable, removed on failure
//!     sha512/
//!       cf/cf83e135...
//!   sweep.lock                 advisory lock: backups hold it shared, a GC sweep exclusive
//!   uploads/
//!     <upload id>              the bytes received so far for one upload session; the file
//!                              is the session's whole durable state. Completing renames it
//!                              into blobs/ (same file system, so the rename is atomic).
//! ```
//!
//! Paths are only ever built from a validated `Digest` or [`UploadId`] (module `layout`).
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod append;
mod durable;
mod error;
mod layout;
mod object;
mod session;
mod store;
mod sweep_lock;
mod upload;

pub use append::AppendOptions;
pub use error::StoreError;
pub use object::{StorageBackend, StorageConfig};
pub use store::{BlobFile, BlobReader, BlobStore};
pub use sweep_lock::SweepGuard;
pub use upload::UploadId;

/// The shared file ([`BlobStore::read_state`]) holding the APT signing key replicas sign with.
pub const SHARED_APT_SIGNING_KEY: &str = "apt/signing-key.asc";
/// The shared file holding the registry-token (JWT) key replicas sign and check tokens with.
pub const SHARED_JWT_KEY: &str = "auth/jwt-es256.pk8";
/// Every shared file: what a backup of object storage takes from the bucket.
pub const SHARED_STATE: [&str; 2] = [SHARED_APT_SIGNING_KEY, SHARED_JWT_KEY];
