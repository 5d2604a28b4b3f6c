//! Pinfold's access rules, without any HTTP: who the users are ([`users`]), how a password or
//! an API token is checked ([`secret`]), what a scope and a permission rule grant
//! ([`permissions`]), and the short-lived registry tokens (JWT, ES256) that Docker clients
//! fetch from `/v2/token` ([`jwt`]).
//!
//! `pinfold-server` turns HTTP headers into calls here; token records are kept by
//! `pinfold-meta`. This crate must not depend on either, nor on an HTTP stack.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
pub mod jwt;
pub mod permissions;
pub mod secret;
pub mod users;

pub use config::{AuthConfig, PermissionRule, UserConfig};
pub use jwt::{AccessEntry, Claims, JwtError, JwtSigner};
pub use permissions::{Action, Actions, Authorizer, Principal, Scope, ScopeError};
pub use secret::{constant_time_eq, new_token_secret, sha256_hex};
pub use users::{UserDb, UsersError};
