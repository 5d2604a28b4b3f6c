-- Pinfold metadata, SQLite engine, migration 6: garbage collection and retention.
-- Same conventions as migration 1 (times in unix microseconds, identifiers compared by bytes).

-- What garbage collection examines: (repository, digest) pairs that may have lost their last
-- reference. Triggers below fill it in the same transaction that drops or creates a reference,
-- so a GC run reads only these rows, never every blob: its cost follows the churn since the last
-- run, not the size of the registry. `kind` says which table the pair lives in.
-- `fresh_at` is when the pair was enqueued or last used (blob HEAD/GET, mount, re-upload): GC
-- leaves anything fresher than its grace period alone. `examined_run` is the id of the last GC
-- run that looked at the row and kept it (time-limited protection: grace, journal, pins).
CREATE TABLE gc_candidates (
    repo_id      INTEGER NOT NULL,
    digest       TEXT    NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('blob', 'manifest')),
    fresh_at     INTEGER NOT NULL,
    examined_run INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (repo_id, digest, kind)
) WITHOUT ROWID;

CREATE INDEX gc_candidates_examined ON gc_candidates (examined_run);

-- The time triggers stamp, in unix microseconds (the convention of every other column).
-- SQLite has no function for it; julianday('now') has millisecond precision, which is enough.

-- A new blob link (upload completed, mount, mirror fetch) may never be referenced.
CREATE TRIGGER gc_blob_linked AFTER INSERT ON repository_blobs
BEGIN
    INSERT INTO gc_candidates (repo_id, digest, kind, fresh_at)
    VALUES (new.repo_id, new.digest, 'blob',
            CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER))
    ON CONFLICT (repo_id, digest, kind)
    DO UPDATE SET fresh_at = excluded.fresh_at, examined_run = 0;
END;

-- A manifest pushed by digest may never be tagged.
CREATE TRIGGER gc_manifest_added AFTER INSERT ON manifests
BEGIN
    INSERT INTO gc_candidates (repo_id, digest, kind, fresh_at)
    VALUES (new.repo_id, new.digest, 'manifest',
            CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER))
    ON CONFLICT (repo_id, digest, kind)
    DO UPDATE SET fresh_at = excluded.fresh_at, examined_run = 0;
END;

-- A deleted manifest's referrers may have lost their subject.
CREATE TRIGGER gc_manifest_deleted AFTER DELETE ON manifests
BEGIN
    INSERT INTO gc_candidates (repo_id, digest, kind, fresh_at)
    SELECT repo_id, digest, 'manifest',
           CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)
    FROM manifests WHERE repo_id = old.repo_id AND subject_digest = old.digest
    ON CONFLICT (repo_id, digest, kind)
    DO UPDATE SET fresh_at = excluded.fresh_at, examined_run = 0;
END;

-- A tag moved away from, or deleted from, a manifest.
CREATE TRIGGER gc_tag_moved AFTER UPDATE OF digest ON tags
WHEN old.digest <> new.digest
BEGIN
    INSERT INTO gc_candidates (repo_id, digest, kind, fresh_at)
    VALUES (old.repo_id, old.digest, 'manifest',
            CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER))
    ON CONFLICT (repo_id, digest, kind)
    DO UPDATE SET fresh_at = excluded.fresh_at, examined_run = 0;
END;

CREATE TRIGGER gc_tag_deleted AFTER DELETE ON tags
BEGIN
    INSERT INTO gc_candidates (repo_id, digest, kind, fresh_at)
    VALUES (old.repo_id, old.digest, 'manifest',
            CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER))
    ON CONFLICT (repo_id, digest, kind)
    DO UPDATE SET fresh_at = excluded.fresh_at, examined_run = 0;
END;

-- A manifest's references went with it (ON DELETE CASCADE fires these).
CREATE TRIGGER gc_manifest_blob_dropped AFTER DELETE ON manifest_blobs
BEGIN
    INSERT INTO gc_candidates (repo_id, digest, kind, fresh_at)
    VALUES (old.repo_id, old.blob_digest, 'blob',
            CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER))
    ON CONFLICT (repo_id, digest, kind)
    DO UPDATE SET fresh_at = excluded.fresh_at, examined_run = 0;
END;

CREATE TRIGGER gc_manifest_child_dropped AFTER DELETE ON manifest_children
BEGIN
    INSERT INTO gc_candidates (repo_id, digest, kind, fresh_at)
    VALUES (old.repo_id, old.child_digest, 'manifest',
            CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER))
    ON CONFLICT (repo_id, digest, kind)
    DO UPDATE SET fresh_at = excluded.fresh_at, examined_run = 0;
END;

-- GC asks "does a pin, drift event or open upload protect this pair?" (journal indexes are
-- created with the rebuilt journal below); referrers by subject are already indexed.
CREATE INDEX drift_events_digests ON drift_events (repository, upstream_digest);
CREATE INDEX drift_events_pinned ON drift_events (repository, pinned_digest);
CREATE INDEX uploads_repo ON uploads (repo_id);
-- "Does any row still name this digest?" (asked for every collected pair before its file goes)
-- must not scan: by digest alone in every table that names files.
CREATE INDEX manifests_digest ON manifests (digest);
CREATE INDEX apt_packages_sha256 ON apt_packages (sha256);
CREATE INDEX apt_snapshot_packages_sha256 ON apt_snapshot_packages (sha256);
CREATE INDEX apt_index_files_sha256 ON apt_index_files (sha256);

-- One row: the last GC run's outcome (served by GET /api/v1/gc) and how far journal expiry was
-- processed.
CREATE TABLE gc_state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    journal_cutoff  INTEGER NOT NULL DEFAULT 0,
    last_run        TEXT
);
INSERT INTO gc_state (id) VALUES (1);

-- Retention removes tags, journaled with source 'retention'. SQLite cannot alter a CHECK, so the
-- journal table is rebuilt with the same rows, ids and triggers. The append-only triggers are
-- dropped first (DROP TABLE fires no triggers, but the copy must not be blocked either).
DROP TRIGGER tag_journal_no_update;
DROP TRIGGER tag_journal_no_delete;
CREATE TABLE tag_journal_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    repository      TEXT    NOT NULL,
    tag             TEXT    NOT NULL,
    previous_digest TEXT,
    new_digest      TEXT,
    at              INTEGER NOT NULL,
    actor           TEXT    NOT NULL,
    source          TEXT    NOT NULL
        CHECK (source IN ('push', 'delete', 'mirror', 'promote', 'restore', 'retention')),
    CHECK (previous_digest IS NOT NULL OR new_digest IS NOT NULL)
);
INSERT INTO tag_journal_new (id, repository, tag, previous_digest, new_digest, at, actor, source)
    SELECT id, repository, tag, previous_digest, new_digest, at, actor, source FROM tag_journal;
DROP TABLE tag_journal;
ALTER TABLE tag_journal_new RENAME TO tag_journal;
CREATE INDEX tag_journal_tag ON tag_journal (repository, tag, id);
CREATE INDEX tag_journal_new_digest ON tag_journal (new_digest) WHERE new_digest IS NOT NULL;
CREATE INDEX tag_journal_previous_digest ON tag_journal (previous_digest)
    WHERE previous_digest IS NOT NULL;
CREATE INDEX tag_journal_at ON tag_journal (at);
CREATE TRIGGER tag_journal_no_update BEFORE UPDATE ON tag_journal
BEGIN
    SELECT RAISE(ABORT, 'tag_journal is append-only');
END;
CREATE TRIGGER tag_journal_no_delete BEFORE DELETE ON tag_journal
BEGIN
    SELECT RAISE(ABORT, 'tag_journal is append-only');
END;
