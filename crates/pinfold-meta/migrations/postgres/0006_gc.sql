-- Pinfold metadata, PostgreSQL engine, migration 6: garbage collection and retention.
-- The same tables and triggers as migrations/sqlite/0006_gc.sql (which explains them).

CREATE TABLE gc_candidates (
    repo_id      BIGINT NOT NULL,
    digest       TEXT COLLATE "C" NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('blob', 'manifest')),
    fresh_at     BIGINT NOT NULL,
    examined_run BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (repo_id, digest, kind)
);

CREATE INDEX gc_candidates_examined ON gc_candidates (examined_run);

CREATE FUNCTION gc_now_micros() RETURNS BIGINT LANGUAGE sql AS $$
    SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT
$$;

CREATE FUNCTION gc_enqueue(r BIGINT, d TEXT, k TEXT) RETURNS void LANGUAGE sql AS $$
    INSERT INTO gc_candidates (repo_id, digest, kind, fresh_at)
    VALUES (r, d, k, gc_now_micros())
    ON CONFLICT (repo_id, digest, kind)
    DO UPDATE SET fresh_at = excluded.fresh_at, examined_run = 0
$$;

CREATE FUNCTION gc_blob_linked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM gc_enqueue(new.repo_id, new.digest, 'blob');
    RETURN NULL;
END
$$;
CREATE TRIGGER gc_blob_linked AFTER INSERT ON repository_blobs
    FOR EACH ROW EXECUTE FUNCTION gc_blob_linked();

CREATE FUNCTION gc_manifest_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM gc_enqueue(new.repo_id, new.digest, 'manifest');
    RETURN NULL;
END
$$;
CREATE TRIGGER gc_manifest_added AFTER INSERT ON manifests
    FOR EACH ROW EXECUTE FUNCTION gc_manifest_added();

CREATE FUNCTION gc_manifest_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM gc_enqueue(m.repo_id, m.digest, 'manifest')
    FROM manifests m WHERE m.repo_id = old.repo_id AND m.subject_digest = old.digest;
    RETURN NULL;
END
$$;
CREATE TRIGGER gc_manifest_deleted AFTER DELETE ON manifests
    FOR EACH ROW EXECUTE FUNCTION gc_manifest_deleted();

CREATE FUNCTION gc_tag_dropped() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR old.digest <> new.digest THEN
        PERFORM gc_enqueue(old.repo_id, old.digest, 'manifest');
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER gc_tag_moved AFTER UPDATE OF digest ON tags
    FOR EACH ROW EXECUTE FUNCTION gc_tag_dropped();
CREATE TRIGGER gc_tag_deleted AFTER DELETE ON tags
    FOR EACH ROW EXECUTE FUNCTION gc_tag_dropped();

CREATE FUNCTION gc_manifest_blob_dropped() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM gc_enqueue(old.repo_id, old.blob_digest, 'blob');
    RETURN NULL;
END
$$;
CREATE TRIGGER gc_manifest_blob_dropped AFTER DELETE ON manifest_blobs
    FOR EACH ROW EXECUTE FUNCTION gc_manifest_blob_dropped();

CREATE FUNCTION gc_manifest_child_dropped() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM gc_enqueue(old.repo_id, old.child_digest, 'manifest');
    RETURN NULL;
END
$$;
CREATE TRIGGER gc_manifest_child_dropped AFTER DELETE ON manifest_children
    FOR EACH ROW EXECUTE FUNCTION gc_manifest_child_dropped();

CREATE INDEX tag_journal_new_digest ON tag_journal (new_digest) WHERE new_digest IS NOT NULL;
CREATE INDEX tag_journal_previous_digest ON tag_journal (previous_digest)
    WHERE previous_digest IS NOT NULL;
CREATE INDEX tag_journal_at ON tag_journal (at);
CREATE INDEX drift_events_digests ON drift_events (repository, upstream_digest);
CREATE INDEX drift_events_pinned ON drift_events (repository, pinned_digest);
CREATE INDEX uploads_repo ON uploads (repo_id);
-- By digest alone in every table that names files (see the SQLite migration).
CREATE INDEX manifests_digest ON manifests (digest);
CREATE INDEX apt_packages_sha256 ON apt_packages (sha256);
CREATE INDEX apt_snapshot_packages_sha256 ON apt_snapshot_packages (sha256);
CREATE INDEX apt_index_files_sha256 ON apt_index_files (sha256);

CREATE TABLE gc_state (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    journal_cutoff BIGINT NOT NULL DEFAULT 0,
    last_run       TEXT
);
INSERT INTO gc_state (id) VALUES (1);

ALTER TABLE tag_journal DROP CONSTRAINT tag_journal_source_check;
ALTER TABLE tag_journal ADD CONSTRAINT tag_journal_source_check
    CHECK (source IN ('push', 'delete', 'mirror', 'promote', 'restore', 'retention'));
