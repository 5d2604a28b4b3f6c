-- Pinfold metadata, PostgreSQL engine, migration 2: the pull-through mirror's state.
-- Same conventions as migration 1 (times in unix microseconds, identifiers compared by bytes).

-- What each mirrored tag resolves to upstream, as last observed. One row per tag that was ever
-- pulled through the mirror. The tag itself (what clients get) lives in `tags`; this row is what
-- the upstream says, which under the `pin` policy may differ from it.
CREATE TABLE mirror_tags (
    repository      TEXT COLLATE "C" NOT NULL,
    tag             TEXT COLLATE "C" NOT NULL,
    -- The configured upstream's name (the first path component of `repository`).
    upstream        TEXT COLLATE "C" NOT NULL,
    -- The digest the tag resolved to upstream at the last successful check; NULL when the
    -- upstream no longer has the tag.
    upstream_digest TEXT COLLATE "C",
    -- When `upstream_digest` was first observed: the cooldown policy counts from here.
    upstream_since  BIGINT,
    -- Last check attempt, successful or not: the drift poller takes the oldest first.
    checked_at      BIGINT NOT NULL,
    -- Why the last check failed (unreachable, 429, ...); NULL after a success.
    check_error     TEXT,
    PRIMARY KEY (repository, tag)
);

CREATE INDEX mirror_tags_checked ON mirror_tags (checked_at);

-- An upstream move of a mirrored tag that the mirror did not follow (yet). Open while
-- `resolved_at` is NULL; at most one open event per tag and upstream digest.
CREATE TABLE drift_events (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repository      TEXT COLLATE "C" NOT NULL,
    tag             TEXT COLLATE "C" NOT NULL,
    upstream        TEXT COLLATE "C" NOT NULL,
    pinned_digest   TEXT COLLATE "C" NOT NULL,
    upstream_digest TEXT COLLATE "C" NOT NULL,
    first_seen      BIGINT NOT NULL,
    last_seen       BIGINT NOT NULL,
    resolved_at     BIGINT,
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
