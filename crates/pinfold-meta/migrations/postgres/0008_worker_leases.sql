-- Pinfold metadata, PostgreSQL engine, migration 8: leases of the background workers (issue 17).
-- A singleton worker (GC, drift poller, APT reindex, backup, upload janitor) runs on the one
-- replica that holds its lease; the holder renews it well before `expires_at` (unix
-- microseconds, the replicas' clocks), and any other replica takes it over once it has expired.
CREATE TABLE worker_leases (
    name       TEXT COLLATE "C" PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
