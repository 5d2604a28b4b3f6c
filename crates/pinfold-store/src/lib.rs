//! Pinfold's content-addressed blob store and its resumable upload sessions.
//!
//! Only this crate writes the blob tree. A blob becomes visible only after its digest has been
//! verified and its file and directory fsynced and renamed into place ("visible means verified
//! and durable", DESIGN.md). This crate knows nothing of repositories, HTTP or metadata; it
//! must not depend on any Pinfold crate but `pinfold-oci`.
//!
//! On-disk layout under the store root:
//!
//! ```text
//! <root>/
//!   blobs/
//!     sha256/
//!       e3/
//!         e3b0c442...b855      one file per blob, named by its encoded digest
//!     sha512/
//!       cf/cf83e135...
//!   uploads/
//!     <upload id>              the bytes received so far for one upload session
//!   tmp/                       (not used: temp files live beside their destination)
//! ```
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod error;
mod store;
mod upload;

pub use error::StoreError;
pub use store::{BlobFile, BlobStore};
pub use upload::UploadId;
