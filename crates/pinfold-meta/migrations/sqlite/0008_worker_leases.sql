-- Pinfold metadata, SQLite engine, migration 8: leases of the background workers (issue 17).
-- A singleton worker (GC, drift poller, APT reindex, backup, upload janitor) runs on the one
-- process that holds its lease; the holder renews it well before `expires_at` (unix
-- microseconds), and any other process takes it over once it has expired. On SQLite there is one
-- process; the table keeps one code path for both engines and shows who holds what.
CREATE TABLE worker_leases (
    name       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
