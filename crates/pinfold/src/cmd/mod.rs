//! One file per subcommand.

pub mod apt;
pub mod diff;
pub mod lint;
pub mod lock;
pub mod mirror;
pub mod serve;
pub mod gc;
