//! One file per subcommand.

pub mod lint;
pub mod lock;
pub mod serve;
