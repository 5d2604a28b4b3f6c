-- Pinfold metadata, PostgreSQL engine, migration 1. Same tables, constraints and indexes as
-- migrations/sqlite/0001_init.sql, so that both engines run the same statements.
--
-- Differences from SQLite, all of representation:
-- * identifiers (digests, names, tags, upload ids) are TEXT COLLATE "C": compared and ordered by
--   bytes like SQLite's BINARY, and lower() folds ASCII only;
-- * every integer is BIGINT (sqlx maps i64 to BIGINT only); ids are identity columns;
-- * no WITHOUT ROWID; the append-only triggers are a PL/pgSQL function.

CREATE TABLE repositories (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE repository_blobs (
    repo_id BIGINT NOT NULL REFERENCES repositories (id),
    digest  TEXT COLLATE "C" NOT NULL,
    size    BIGINT NOT NULL CHECK (size >= 0),
    PRIMARY KEY (repo_id, digest)
);

CREATE INDEX repository_blobs_digest ON repository_blobs (digest);

CREATE TABLE manifests (
    repo_id        BIGINT NOT NULL REFERENCES repositories (id),
    digest         TEXT COLLATE "C" NOT NULL,
    media_type     TEXT NOT NULL,
    size           BIGINT NOT NULL CHECK (size >= 0),
    artifact_type  TEXT,
    subject_digest TEXT COLLATE "C",
    -- JSON object as text (not jsonb): stored and returned byte for byte, like SQLite.
    annotations    TEXT,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (repo_id, digest)
);

CREATE INDEX manifests_subject ON manifests (repo_id, subject_digest)
    WHERE subject_digest IS NOT NULL;

CREATE TABLE manifest_blobs (
    repo_id         BIGINT NOT NULL,
    manifest_digest TEXT COLLATE "C" NOT NULL,
    blob_digest     TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (repo_id, manifest_digest, blob_digest),
    FOREIGN KEY (repo_id, manifest_digest) REFERENCES manifests (repo_id, digest) ON DELETE CASCADE
);

CREATE INDEX manifest_blobs_blob ON manifest_blobs (blob_digest);

CREATE TABLE manifest_children (
    repo_id         BIGINT NOT NULL,
    manifest_digest TEXT COLLATE "C" NOT NULL,
    child_digest    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (repo_id, manifest_digest, child_digest),
    FOREIGN KEY (repo_id, manifest_digest) REFERENCES manifests (repo_id, digest) ON DELETE CASCADE
);

CREATE INDEX manifest_children_child ON manifest_children (repo_id, child_digest);

-- No ON DELETE action on purpose: every tag removal goes through the code that journals it.
CREATE TABLE tags (
    repo_id    BIGINT NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    digest     TEXT COLLATE "C" NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (repo_id, name),
    FOREIGN KEY (repo_id, digest) REFERENCES manifests (repo_id, digest)
);

-- Tag listing order: case-insensitive, then by bytes (distribution-spec "Listing Tags").
CREATE INDEX tags_lexical ON tags (repo_id, lower(name), name);

CREATE INDEX tags_digest ON tags (repo_id, digest);

CREATE TABLE tag_journal (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repository      TEXT COLLATE "C" NOT NULL,
    tag             TEXT COLLATE "C" NOT NULL,
    previous_digest TEXT COLLATE "C",
    new_digest      TEXT COLLATE "C",
    at              BIGINT NOT NULL,
    actor           TEXT NOT NULL,
    source          TEXT NOT NULL
        CHECK (source IN ('push', 'delete', 'mirror', 'promote', 'restore')),
    CHECK (previous_digest IS NOT NULL OR new_digest IS NOT NULL)
);

CREATE INDEX tag_journal_tag ON tag_journal (repository, tag, id);

CREATE FUNCTION tag_journal_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tag_journal is append-only';
END
$$;

CREATE TRIGGER tag_journal_no_update BEFORE UPDATE ON tag_journal
    FOR EACH ROW EXECUTE FUNCTION tag_journal_append_only();

CREATE TRIGGER tag_journal_no_delete BEFORE DELETE ON tag_journal
    FOR EACH ROW EXECUTE FUNCTION tag_journal_append_only();

-- Row triggers do not see TRUNCATE.
CREATE TRIGGER tag_journal_no_truncate BEFORE TRUNCATE ON tag_journal
    FOR EACH STATEMENT EXECUTE FUNCTION tag_journal_append_only();

CREATE TABLE uploads (
    id         TEXT COLLATE "C" PRIMARY KEY,
    repo_id    BIGINT NOT NULL REFERENCES repositories (id),
    created_at BIGINT NOT NULL
);

CREATE INDEX uploads_created_at ON uploads (created_at);
