//! One file per subcommand.

pub mod apt;
pub mod auth;
pub mod diff;
pub mod durability;
pub mod gc;
pub mod lint;
pub mod lock;
pub mod mirror;
pub mod serve;
