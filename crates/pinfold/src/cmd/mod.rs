//! One file per subcommand.

pub mod diff;
pub mod apt;
pub mod lint;
pub mod lock;
pub mod serve;
