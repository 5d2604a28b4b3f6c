-- Pinfold metadata, SQLite engine, migration 1.
--
-- Conventions (kept identical in migrations/postgres/ so both engines run the same statements):
-- * times are INTEGER unix microseconds, UTC;
-- * digests, names and tags are TEXT exactly as accepted by pinfold-oci and compared by bytes
--   (SQLite's default BINARY collation; PostgreSQL needs COLLATE "C" on these columns);
-- * sizes are INTEGER >= 0;
-- * foreign keys are declared from the start (sqlx turns PRAGMA foreign_keys on per connection).

-- A repository exists once anything (a blob link, a manifest, an upload) was made in it.
-- Rows are never deleted: ids stay stable for the tables that point here.
CREATE TABLE repositories (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

-- Blobs made part of a repository (by a finished upload, a mount or the mirror).
CREATE TABLE repository_blobs (
    repo_id INTEGER NOT NULL REFERENCES repositories (id),
    digest  TEXT    NOT NULL,
    size    INTEGER NOT NULL CHECK (size >= 0),
    PRIMARY KEY (repo_id, digest)
) WITHOUT ROWID;

-- "Does any repository hold this blob?" (cross-repository mount, blob GET without a link).
CREATE INDEX repository_blobs_digest ON repository_blobs (digest);

CREATE TABLE manifests (
    repo_id        INTEGER NOT NULL REFERENCES repositories (id),
    digest         TEXT    NOT NULL,
    media_type     TEXT    NOT NULL,
    size           INTEGER NOT NULL CHECK (size >= 0),
    artifact_type  TEXT,
    subject_digest TEXT,
    -- JSON object of the manifest's top-level annotations, served by the referrers API.
    annotations    TEXT,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (repo_id, digest)
) WITHOUT ROWID;

-- The referrers API looks manifests up by subject. Partial: most manifests have no subject.
-- No foreign key on subject_digest: the spec lets a referrer be pushed before its subject.
CREATE INDEX manifests_subject ON manifests (repo_id, subject_digest)
    WHERE subject_digest IS NOT NULL;

-- What a manifest references, for garbage collection. Only the referencing side has a foreign
-- key: a referenced blob or child may be missing (GC and mounts decide about those).
CREATE TABLE manifest_blobs (
    repo_id         INTEGER NOT NULL,
    manifest_digest TEXT    NOT NULL,
    blob_digest     TEXT    NOT NULL,
    PRIMARY KEY (repo_id, manifest_digest, blob_digest),
    FOREIGN KEY (repo_id, manifest_digest) REFERENCES manifests (repo_id, digest) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE INDEX manifest_blobs_blob ON manifest_blobs (blob_digest);

CREATE TABLE manifest_children (
    repo_id         INTEGER NOT NULL,
    manifest_digest TEXT    NOT NULL,
    child_digest    TEXT    NOT NULL,
    PRIMARY KEY (repo_id, manifest_digest, child_digest),
    FOREIGN KEY (repo_id, manifest_digest) REFERENCES manifests (repo_id, digest) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE INDEX manifest_children_child ON manifest_children (repo_id, child_digest);

-- A tag points at a manifest of its own repository. No ON DELETE action on purpose: deleting a
-- manifest that still has tags fails, so every tag removal goes through the code that journals it.
CREATE TABLE tags (
    repo_id    INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    digest     TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (repo_id, name),
    FOREIGN KEY (repo_id, digest) REFERENCES manifests (repo_id, digest)
) WITHOUT ROWID;

-- Tag listing order: case-insensitive, then by bytes (distribution-spec "Listing Tags").
CREATE INDEX tags_lexical ON tags (repo_id, lower(name), name);

-- Finds the tags of a manifest being deleted; SQLite also needs it to check the foreign key
-- above without a full scan when a manifest row goes.
CREATE INDEX tags_digest ON tags (repo_id, digest);

-- Every move of every tag, append-only. Repository and tag are kept as text (no foreign keys) so
-- that history outlives deleted tags and manifests.
CREATE TABLE tag_journal (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    repository      TEXT    NOT NULL,
    tag             TEXT    NOT NULL,
    previous_digest TEXT,
    new_digest      TEXT,
    at              INTEGER NOT NULL,
    actor           TEXT    NOT NULL,
    source          TEXT    NOT NULL
        CHECK (source IN ('push', 'delete', 'mirror', 'promote', 'restore')),
    CHECK (previous_digest IS NOT NULL OR new_digest IS NOT NULL)
);

CREATE INDEX tag_journal_tag ON tag_journal (repository, tag, id);

CREATE TRIGGER tag_journal_no_update BEFORE UPDATE ON tag_journal
BEGIN
    SELECT RAISE(ABORT, 'tag_journal is append-only');
END;

CREATE TRIGGER tag_journal_no_delete BEFORE DELETE ON tag_journal
BEGIN
    SELECT RAISE(ABORT, 'tag_journal is append-only');
END;

-- Upload sessions; the bytes live in the blob store under the same id.
CREATE TABLE uploads (
    id         TEXT    PRIMARY KEY,
    repo_id    INTEGER NOT NULL REFERENCES repositories (id),
    created_at INTEGER NOT NULL
);

-- The upload janitor asks for sessions older than a cut-off.
CREATE INDEX uploads_created_at ON uploads (created_at);
