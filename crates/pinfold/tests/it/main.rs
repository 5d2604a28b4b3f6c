//! Pinfold's integration tests: the real `pinfold` binary, driven over loopback HTTP and by
//! real clients (skopeo, the Docker engine), and killed with SIGKILL to check durability.
//!
//! Every test starts its own server through [`harness::TestServer`] on an ephemeral port with
//! its own temporary data directory, so tests run in parallel and leave nothing behind.
//!
//! `PINFOLD_IT_TARGET=distribution` runs the same tests against Debian's `docker-registry`
//! (distribution 2.8) instead of Pinfold: a debugging aid that tells a test bug from a server
//! bug. Assertions about Pinfold-only surfaces (the tag journal, the blob tree layout) check
//! [`harness::Target`] first.
//!
//! Real-client tests live in `e2e::` so that nextest can select them (`-E 'test(e2e::)'`).
//! A missing client tool fails the test: a skipped real-client test would read as a pass.

mod apt_cli;
mod crash;
mod diff;
mod drift_pages;
mod e2e;
mod gc_cli;
mod harness;
mod lock;
mod mirror_cli;
mod tls;
