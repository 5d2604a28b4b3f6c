-- Pinfold metadata, PostgreSQL engine, migration 3: the Debian (APT) repository (issue 7).
-- Same tables, constraints and indexes as migrations/sqlite/0003_apt.sql (the model is
-- described there); the differences are those of 0001 (COLLATE "C" identifiers, BIGINT,
-- identity ids, PL/pgSQL for the immutability triggers).

CREATE TABLE apt_repos (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           TEXT COLLATE "C" NOT NULL UNIQUE,
    kind           TEXT NOT NULL CHECK (kind IN ('local', 'mirror')),
    upstream_url   TEXT,
    upstream_suite TEXT,
    upstream_key   TEXT,
    components     TEXT NOT NULL DEFAULT '',
    architectures  TEXT NOT NULL DEFAULT '',
    created_at     BIGINT NOT NULL,
    CHECK ((kind = 'mirror') = (upstream_url IS NOT NULL AND upstream_suite IS NOT NULL))
);

CREATE TABLE apt_packages (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repo_id      BIGINT NOT NULL REFERENCES apt_repos (id),
    distribution TEXT COLLATE "C" NOT NULL,
    component    TEXT COLLATE "C" NOT NULL,
    architecture TEXT COLLATE "C" NOT NULL,
    name         TEXT COLLATE "C" NOT NULL,
    version      TEXT COLLATE "C" NOT NULL,
    path         TEXT COLLATE "C" NOT NULL,
    size         BIGINT NOT NULL CHECK (size >= 0),
    md5          TEXT NOT NULL,
    sha1         TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    control      TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    UNIQUE (repo_id, distribution, component, architecture, name, version)
);

CREATE INDEX apt_packages_path ON apt_packages (repo_id, path);

CREATE TABLE apt_snapshots (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                TEXT COLLATE "C" NOT NULL UNIQUE,
    source_repo_id      BIGINT NOT NULL REFERENCES apt_repos (id),
    source_distribution TEXT COLLATE "C" NOT NULL,
    created_at          BIGINT NOT NULL
);

CREATE TABLE apt_snapshot_packages (
    snapshot_id  BIGINT NOT NULL REFERENCES apt_snapshots (id),
    component    TEXT COLLATE "C" NOT NULL,
    architecture TEXT COLLATE "C" NOT NULL,
    name         TEXT COLLATE "C" NOT NULL,
    version      TEXT COLLATE "C" NOT NULL,
    path         TEXT COLLATE "C" NOT NULL,
    size         BIGINT NOT NULL CHECK (size >= 0),
    md5          TEXT NOT NULL,
    sha1         TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    control      TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, component, architecture, name, version)
);

CREATE INDEX apt_snapshot_packages_path ON apt_snapshot_packages (snapshot_id, path);

CREATE FUNCTION apt_snapshot_packages_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'snapshots are immutable';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER apt_snapshot_packages_no_update BEFORE UPDATE ON apt_snapshot_packages
    FOR EACH ROW EXECUTE FUNCTION apt_snapshot_packages_immutable();

CREATE TRIGGER apt_snapshot_packages_no_delete BEFORE DELETE ON apt_snapshot_packages
    FOR EACH ROW EXECUTE FUNCTION apt_snapshot_packages_immutable();

CREATE TABLE apt_publications (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    prefix              TEXT COLLATE "C" NOT NULL,
    distribution        TEXT COLLATE "C" NOT NULL,
    snapshot_id         BIGINT REFERENCES apt_snapshots (id),
    source_repo_id      BIGINT REFERENCES apt_repos (id),
    source_distribution TEXT COLLATE "C",
    change_seq          BIGINT NOT NULL DEFAULT 1,
    indexed_seq         BIGINT NOT NULL DEFAULT 0,
    generation          BIGINT NOT NULL DEFAULT 0,
    updated_at          BIGINT NOT NULL,
    UNIQUE (prefix, distribution),
    CHECK ((snapshot_id IS NULL) <> (source_repo_id IS NULL AND source_distribution IS NULL)),
    CHECK ((source_repo_id IS NULL) = (source_distribution IS NULL))
);

CREATE INDEX apt_publications_source ON apt_publications (source_repo_id, source_distribution);

CREATE TABLE apt_index_files (
    publication_id BIGINT NOT NULL REFERENCES apt_publications (id),
    generation     BIGINT NOT NULL,
    path           TEXT COLLATE "C" NOT NULL,
    sha256         TEXT NOT NULL,
    size           BIGINT NOT NULL CHECK (size >= 0),
    PRIMARY KEY (publication_id, generation, path)
);

CREATE INDEX apt_index_files_hash ON apt_index_files (publication_id, sha256);

CREATE TABLE apt_index_garbage (
    sha256    TEXT COLLATE "C" PRIMARY KEY,
    pruned_at BIGINT NOT NULL
);
