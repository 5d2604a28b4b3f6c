//! One file per subcommand.

pub mod serve;
