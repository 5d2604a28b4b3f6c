-- Pinfold metadata, SQLite engine, migration 2: the pull-through mirror's state.
-- Same conventions as migration 1 (times in unix microseconds, identifiers compared by bytes).

-- What each mirrored tag resolves to upstream, as last observed. One row per tag that was ever
-- pulled through the mirror. The tag itself (what clients get) lives in `tags`; this row is what
-- the upstream says, which under the `pin` policy may differ from it.
CREATE TABLE mirror_tags (
    repository      TEXT    NOT NULL,
    tag             TEXT    NOT NULL,
    -- The configured upstream's name (the first path component of `repository`).
    upstream        TEXT    NOT NULL,
    -- The digest the tag resolved to upstream at the last successful check; NULL when the
    -- upstream no longer has the tag.
    upstream_digest TEXT,
    -- When `upstream_digest` was first observed: the cooldown policy counts from here.
    upstream_since  INTEGER,
    -- Last check attempt, successful or not: the drift poller takes the oldest first.
    checked_at      INTEGER NOT NULL,
    -- Why the last check failed (unreachable, 429, ...); NULL after a success.
    check_error     TEXT,
    PRIMARY KEY (repository, tag)
) WITHOUT ROWID;

CREATE INDEX mirror_tags_checked ON mirror_tags (checked_at);

-- An upstream move of a mirrored tag that the mirror did not follow (yet). Open while
-- `resolved_at` is NULL; at most one open event per tag and upstream digest.
CREATE TABLE drift_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    repository      TEXT    NOT NULL,
    tag             TEXT    NOT NULL,
    upstream        TEXT    NOT NULL,
    pinned_digest   TEXT    NOT NULL,
    upstream_digest TEXT    NOT NULL,
    first_seen      INTEGER NOT NULL,
    last_seen       INTEGER NOT NULL,
    resolved_at     INTEGER,
    -- accepted: the tag now points at upstream_digest (promote, follow, cooldown);
    -- reverted: the upstream went back to the pinned digest;
    -- superseded: the upstream moved on to yet another digest (which has its own event).
    resolution      TEXT CHECK (resolution IN ('accepted', 'reverted', 'superseded')),
    -- JSON: pinfold-inspect's explanation of what changed, once computed.
    explanation     TEXT,
    CHECK ((resolved_at IS NULL) = (resolution IS NULL))
);

CREATE UNIQUE INDEX drift_events_open ON drift_events (repository, tag, upstream_digest)
    WHERE resolved_at IS NULL;
CREATE INDEX drift_events_tag ON drift_events (repository, tag, id);
