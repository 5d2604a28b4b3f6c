//! Integration tests of the `/v2/` API (distribution-spec v1.1) and the tag journal, against the
//! real server on a loopback port. One binary: `cargo test -p pinfold-server --test it`.
//!
//! Every test starts its own server over its own temporary data directory ([`harness`]), so
//! tests are independent and run in parallel.

mod harness;

mod apt;
mod apt_mirror;
mod auth;
mod base;
mod blobs;
mod catalog;
mod cross_repository;
mod derived_credentials;
mod errors;
mod gc;
mod history;
mod limits;
mod manifests;
mod mirror;
mod referrers;
mod tags;
mod tls;
mod traversal;
mod ui;
mod uploads;
