//! One file per subcommand.

pub mod apt;
pub mod lint;
pub mod serve;
