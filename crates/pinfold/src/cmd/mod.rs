//! One file per subcommand.

pub mod lint;
pub mod serve;
