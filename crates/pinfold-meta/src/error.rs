/// What went wrong in the metadata store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    /// The database failed (I/O, corruption, lock timeout).
    #[error("metadata database: {0}")]
    Database(#[from] sqlx::Error),
    /// Schema migration failed at start-up.
    #[error("metadata migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A stored value does not parse back (a digest, name or time written by another tool).
    #[error("metadata row holds an invalid {what}: {value:?}")]
    CorruptValue {
        /// Which column.
        what: &'static str,
        /// What it holds.
        value: String,
    },
}
