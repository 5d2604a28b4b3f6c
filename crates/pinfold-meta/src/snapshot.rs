//! Consistent copies of the metadata and the list of blobs they need: for backups and
//! verification.
//!
//! [`Meta::snapshot_to`] writes an online, transactionally consistent copy of the metadata as a
//! SQLite file (`VACUUM INTO` on a reader connection: WAL lets writers carry on meanwhile; on
//! PostgreSQL, a copy of every table from one `REPEATABLE READ` transaction, `engine_copy.rs`).
//! [`Meta::open_sqlite_read_only`] opens such a copy, or a live database beside a running server,
//! without ever writing to it. [`Meta::blob_references`] lists every blob the metadata names and
//! who names it, so a backup copies exactly those and `pinfold verify` checks they exist.

use std::collections::HashSet;
use std::path::Path;

use pinfold_oci::Digest;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::engine::{on_engine, Engine, Pools};
use crate::{columns, Meta, MetaError};

/// Every blob the metadata names, with a description of who names it and whether its absence
/// is damage (`required = 1`) or expected history (`0`: the tag journal and drift events name
/// digests that may have been deleted or never fetched). Works on both engines (`||` concatenates
/// in SQLite and PostgreSQL alike). Required rows come first so that deduplication keeps them.
const BLOB_REFERENCES_SQL: &str = "\
SELECT m.digest, 'manifest ' || r.name || '@' || m.digest, 1 \
  FROM manifests m JOIN repositories r ON r.id = m.repo_id \
UNION ALL SELECT mb.blob_digest, 'blob of manifest ' || r.name || '@' || mb.manifest_digest, 1 \
  FROM manifest_blobs mb JOIN repositories r ON r.id = mb.repo_id \
UNION ALL SELECT mc.child_digest, 'child of index ' || r.name || '@' || mc.manifest_digest, 1 \
  FROM manifest_children mc JOIN repositories r ON r.id = mc.repo_id \
UNION ALL SELECT rb.digest, 'blob of repository ' || r.name, 1 \
  FROM repository_blobs rb JOIN repositories r ON r.id = rb.repo_id \
UNION ALL SELECT 'sha256:' || p.sha256, 'APT package ' || ar.name || '/' || p.path, 1 \
  FROM apt_packages p JOIN apt_repos ar ON ar.id = p.repo_id \
UNION ALL SELECT 'sha256:' || sp.sha256, 'APT snapshot ' || s.name || '/' || sp.path, 1 \
  FROM apt_snapshot_packages sp JOIN apt_snapshots s ON s.id = sp.snapshot_id \
UNION ALL SELECT 'sha256:' || f.sha256, \
  'APT index ' || pb.prefix || '/dists/' || pb.distribution || '/' || f.path, 1 \
  FROM apt_index_files f JOIN apt_publications pb ON pb.id = f.publication_id \
UNION ALL SELECT j.new_digest, 'tag journal ' || j.repository || ':' || j.tag, 0 \
  FROM tag_journal j WHERE j.new_digest IS NOT NULL \
UNION ALL SELECT j.previous_digest, 'tag journal ' || j.repository || ':' || j.tag, 0 \
  FROM tag_journal j WHERE j.previous_digest IS NOT NULL \
UNION ALL SELECT d.pinned_digest, 'drift event ' || d.repository || ':' || d.tag, 0 \
  FROM drift_events d \
UNION ALL SELECT d.upstream_digest, 'drift event ' || d.repository || ':' || d.tag, 0 \
  FROM drift_events d";

/// One blob the metadata names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobReference {
    /// The blob.
    pub digest: Digest,
    /// Who names it, for reports: `manifest repo@sha256:..`, `APT package repo/pool/..`, ...
    pub referrer: String,
    /// Whether a missing blob is damage. `false` for digests named only by history (the tag
    /// journal, drift events), which may legitimately have been deleted or never fetched.
    pub required: bool,
}

impl Meta {
    /// Writes a consistent copy of the whole metadata database to `dest` (a new file; its
    /// directory must exist), while the server keeps serving and writing.
    ///
    /// The copy is a SQLite file on either engine. SQLite: `VACUUM INTO` on a read-only
    /// connection, one read transaction, so the copy is exactly the database as of one commit.
    /// PostgreSQL: a new SQLite file filled from one `REPEATABLE READ` transaction (see
    /// `engine_copy.rs`); [`Meta::load_snapshot`] loads it back into PostgreSQL. The copy is not
    /// fsynced; the caller does that once it has hashed it.
    ///
    /// # Errors
    /// [`MetaError::Database`] when the copy fails (e.g. `dest` exists, the disk is full);
    /// [`MetaError::SchemaMismatch`] when PostgreSQL's schema is not the one this version
    /// migrates SQLite to.
    pub async fn snapshot_to(&self, dest: &Path) -> Result<(), MetaError> {
        let Engine::Sqlite(db) = &self.engine else {
            return self.snapshot_postgres_to(dest).await;
        };
        let dest = dest.to_str().ok_or_else(|| MetaError::CorruptValue {
            what: "snapshot path (not UTF-8)",
            value: dest.display().to_string(),
        })?;
        sqlx::query("VACUUM INTO $1")
            .bind(dest)
            .execute(&db.readers)
            .await?;
        Ok(())
    }

    /// Opens the SQLite database at `path` for reading only: no migration, no WAL switch, no
    /// write ever. For a snapshot written by [`snapshot_to`](Self::snapshot_to) and for
    /// `pinfold verify` beside a running server. Every write method fails.
    ///
    /// # Errors
    /// [`MetaError::Database`] when the file is missing or not a database.
    pub async fn open_sqlite_read_only(path: &Path) -> Result<Meta, MetaError> {
        if !path.is_file() {
            return Err(MetaError::Database(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} does not exist", path.display()),
            ))));
        }
        let options = SqliteConnectOptions::new().filename(path).read_only(true);
        let readers = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(2)
            .connect_with(options)
            .await?;
        // Fails here, not at first use, when the file is not a database.
        sqlx::query("SELECT count(*) FROM sqlite_master")
            .execute(&readers)
            .await?;
        Ok(Meta {
            engine: Engine::Sqlite(Pools {
                writer: readers.clone(),
                readers,
            }),
        })
    }

    /// Every blob the metadata names, each digest once (the first, required, referrer wins):
    /// manifests, their blobs and children, blobs linked to repositories, APT packages (live and
    /// in snapshots) and generated index files, and the digests of the tag journal and drift
    /// events (not required).
    ///
    /// # Errors
    /// [`MetaError::Database`] when the query fails; [`MetaError::CorruptValue`] when a row
    /// holds something that is not a digest.
    pub async fn blob_references(&self) -> Result<Vec<BlobReference>, MetaError> {
        let rows: Vec<(String, String, i32)> = on_engine!(self, |db| {
            sqlx::query_as(BLOB_REFERENCES_SQL)
                .fetch_all(&db.readers)
                .await?
        });
        let mut seen = HashSet::new();
        let mut references = Vec::new();
        for (digest, referrer, required) in rows {
            let digest = columns::digest(digest)?;
            if seen.insert(digest.clone()) {
                references.push(BlobReference {
                    digest,
                    referrer,
                    required: required != 0,
                });
            }
        }
        Ok(references)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn snapshot_is_a_readable_copy_and_open_read_only_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open_sqlite(&dir.path().join("meta.db"))
            .await
            .unwrap();
        let snapshot = dir.path().join("snap.db");
        meta.snapshot_to(&snapshot).await.unwrap();
        assert!(
            meta.snapshot_to(&snapshot).await.is_err(),
            "an existing file is not overwritten"
        );
        let copy = Meta::open_sqlite_read_only(&snapshot).await.unwrap();
        assert!(copy.blob_references().await.unwrap().is_empty());
        let on_copy = sqlx::query("CREATE TABLE t (x INTEGER)");
        let Engine::Sqlite(db) = &copy.engine else {
            panic!("sqlite")
        };
        assert!(on_copy.execute(&db.writer).await.is_err());
        assert!(Meta::open_sqlite_read_only(&dir.path().join("absent.db"))
            .await
            .is_err());
        meta.close().await;
    }
}
