//! Integration tests of pinfold-store: one conformance suite (`suite.rs`) that every blob-store
//! backend must pass, run on the filesystem (`filesystem.rs`) and on S3-compatible object
//! storage (`object.rs`, against Garage).

mod filesystem;
mod object;
mod suite;
