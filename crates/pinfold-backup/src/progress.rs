//! Progress reporting, so the binary can draw a bar without this crate knowing about terminals.

/// Receives progress of a long operation. Called from several threads at once.
pub trait Progress: Send + Sync {
    /// A phase starts (`"copying blobs"`, `"verifying"`) with this much work in items and bytes.
    fn start(&self, _phase: &str, _items: u64, _bytes: u64) {}
    /// Items and bytes done since the last call.
    fn advance(&self, _items: u64, _bytes: u64) {}
    /// The current phase is over.
    fn finish(&self) {}
}

/// Reports nothing (scheduled backups, tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
