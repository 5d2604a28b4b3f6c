-- Pinfold metadata, PostgreSQL engine, migration 7: who opened each upload session (issue 16),
-- so that one caller cannot hold more than `[server] max_upload_sessions_per_user` open
-- sessions. `owner` is `user:<name>`, or `addr:<client address>` for anonymous callers; '' for
-- sessions opened before this migration.
ALTER TABLE uploads ADD COLUMN owner TEXT COLLATE "C" NOT NULL DEFAULT '';

CREATE INDEX uploads_owner ON uploads (owner);
