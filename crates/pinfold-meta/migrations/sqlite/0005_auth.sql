-- Pinfold metadata, SQLite engine, migration 5: API tokens and the audit log (issue 6).
-- migrations/postgres/0005_auth.sql holds the same tables. Times are unix microseconds (UTC).
--
-- * api_tokens: a token's secret is never stored, only the SHA-256 of it (the secret is 32
--   random bytes, so a fast hash is enough; bcrypt is for low-entropy passwords). `id` is the
--   public handle shown by `pinfold token list` and used to revoke. `scope` is the text given
--   at creation ("repository:team/*:pull,push ..."), parsed by pinfold-auth.
-- * audit_events: append-only (triggers refuse UPDATE and DELETE), one row per write or
--   refused login: who (actor), from where (client), what (action, target), how it ended.

CREATE TABLE api_tokens (
    id            TEXT    PRIMARY KEY,
    user_name     TEXT    NOT NULL,
    secret_sha256 TEXT    NOT NULL UNIQUE,
    scope         TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    revoked_at    INTEGER
);
CREATE INDEX api_tokens_user ON api_tokens (user_name);

CREATE TABLE audit_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    client  TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    target  TEXT    NOT NULL,
    outcome TEXT    NOT NULL
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_actor ON audit_events (actor, id);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
