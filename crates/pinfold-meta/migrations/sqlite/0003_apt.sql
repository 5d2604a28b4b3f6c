-- Pinfold metadata, SQLite engine, migration 3: the Debian (APT) repository (issue 7).
-- (0002 is the registry mirror's.) Same conventions as 0001; migrations/postgres/0003_apt.sql
-- holds the same tables.
--
-- Model:
-- * apt_repos: a `local` repository receives uploads; a `mirror` follows an upstream archive.
-- * apt_packages: what a repository holds now, one row per listing: a file listed in one
--   distribution, component and architecture. The same file (same pool path) may be listed
--   in several. The control paragraph is kept verbatim for the Packages stanza.
-- * apt_snapshots / apt_snapshot_packages: an immutable copy of a repository distribution's
--   listings at one moment (rows are copied, so later uploads or mirror syncs cannot change
--   them; triggers refuse updates and deletes).
-- * apt_publications: what clients see at /apt/<prefix>/dists/<distribution>/: either a
--   snapshot or the live state of a repository distribution. Switching a publication is one
--   UPDATE. `change_seq` counts changes of what it shows, `indexed_seq` the change its current
--   indices were built from; the reindex worker runs while they differ.
-- * apt_index_files: the generated index files (Packages, Packages.gz, Release, InRelease...)
--   of each generation of a publication, as blobs in the store (by SHA-256). A few old
--   generations are kept for by-hash requests of clients holding an older InRelease.

CREATE TABLE apt_repos (
    id             INTEGER PRIMARY KEY,
    name           TEXT    NOT NULL UNIQUE,
    kind           TEXT    NOT NULL CHECK (kind IN ('local', 'mirror')),
    -- mirror: upstream archive root URL, suite, and space-separated filters ('' = all)
    upstream_url   TEXT,
    upstream_suite TEXT,
    -- mirror: armored OpenPGP public key(s) the upstream InRelease must verify with; NULL
    -- syncs the unsigned Release (its SHA-256 chain is still checked)
    upstream_key   TEXT,
    components     TEXT    NOT NULL DEFAULT '',
    architectures  TEXT    NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    CHECK ((kind = 'mirror') = (upstream_url IS NOT NULL AND upstream_suite IS NOT NULL))
);

CREATE TABLE apt_packages (
    id           INTEGER PRIMARY KEY,
    repo_id      INTEGER NOT NULL REFERENCES apt_repos (id),
    distribution TEXT    NOT NULL,
    component    TEXT    NOT NULL,
    architecture TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    -- pool path relative to the repository root, the stanza's Filename
    path         TEXT    NOT NULL,
    size         INTEGER NOT NULL CHECK (size >= 0),
    md5          TEXT    NOT NULL,
    sha1         TEXT    NOT NULL,
    sha256       TEXT    NOT NULL,
    control      TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    UNIQUE (repo_id, distribution, component, architecture, name, version)
);

-- 409 checks and pool GETs look files up by path.
CREATE INDEX apt_packages_path ON apt_packages (repo_id, path);

CREATE TABLE apt_snapshots (
    id                  INTEGER PRIMARY KEY,
    name                TEXT    NOT NULL UNIQUE,
    source_repo_id      INTEGER NOT NULL REFERENCES apt_repos (id),
    source_distribution TEXT    NOT NULL,
    created_at          INTEGER NOT NULL
);

CREATE TABLE apt_snapshot_packages (
    snapshot_id  INTEGER NOT NULL REFERENCES apt_snapshots (id),
    component    TEXT    NOT NULL,
    architecture TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    path         TEXT    NOT NULL,
    size         INTEGER NOT NULL CHECK (size >= 0),
    md5          TEXT    NOT NULL,
    sha1         TEXT    NOT NULL,
    sha256       TEXT    NOT NULL,
    control      TEXT    NOT NULL,
    PRIMARY KEY (snapshot_id, component, architecture, name, version)
) WITHOUT ROWID;

CREATE INDEX apt_snapshot_packages_path ON apt_snapshot_packages (snapshot_id, path);

CREATE TRIGGER apt_snapshot_packages_no_update BEFORE UPDATE ON apt_snapshot_packages
BEGIN
    SELECT RAISE(ABORT, 'snapshots are immutable');
END;

CREATE TRIGGER apt_snapshot_packages_no_delete BEFORE DELETE ON apt_snapshot_packages
BEGIN
    SELECT RAISE(ABORT, 'snapshots are immutable');
END;

CREATE TABLE apt_publications (
    id                  INTEGER PRIMARY KEY,
    prefix              TEXT    NOT NULL,
    distribution        TEXT    NOT NULL,
    snapshot_id         INTEGER REFERENCES apt_snapshots (id),
    source_repo_id      INTEGER REFERENCES apt_repos (id),
    source_distribution TEXT,
    change_seq          INTEGER NOT NULL DEFAULT 1,
    indexed_seq         INTEGER NOT NULL DEFAULT 0,
    generation          INTEGER NOT NULL DEFAULT 0,
    updated_at          INTEGER NOT NULL,
    UNIQUE (prefix, distribution),
    CHECK ((snapshot_id IS NULL) <> (source_repo_id IS NULL AND source_distribution IS NULL)),
    CHECK ((source_repo_id IS NULL) = (source_distribution IS NULL))
);

CREATE INDEX apt_publications_source ON apt_publications (source_repo_id, source_distribution);

CREATE TABLE apt_index_files (
    publication_id INTEGER NOT NULL REFERENCES apt_publications (id),
    generation     INTEGER NOT NULL,
    -- relative to dists/<distribution>/
    path           TEXT    NOT NULL,
    sha256         TEXT    NOT NULL,
    size           INTEGER NOT NULL CHECK (size >= 0),
    PRIMARY KEY (publication_id, generation, path)
) WITHOUT ROWID;

CREATE INDEX apt_index_files_hash ON apt_index_files (publication_id, sha256);

-- Index files of pruned generations, waiting to be deleted from the blob store once unreferenced
-- for a grace period (a client may still be fetching them; another replica may be about to
-- reference identical bytes).
CREATE TABLE apt_index_garbage (
    sha256    TEXT    PRIMARY KEY,
    pruned_at INTEGER NOT NULL
) WITHOUT ROWID;
