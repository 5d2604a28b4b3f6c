//! One file per subcommand.

pub mod diff;
pub mod lint;
pub mod lock;
pub mod serve;
