//! The shared test harness: a server under test, content to push, and bounded external tools.

mod content;
mod digest;
mod haproxy;
mod registry;
mod server;
mod tool;

pub use content::*;
pub use digest::*;
pub use haproxy::*;
pub use registry::*;
pub use server::*;
pub use tool::*;
