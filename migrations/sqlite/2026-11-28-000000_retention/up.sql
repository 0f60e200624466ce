-- What retention did last, per host: what `logbelt status` shows.
CREATE TABLE expiry (
    host TEXT PRIMARY KEY NOT NULL,
    ran_at TEXT NOT NULL,                -- the last check
    expired_at TEXT,                     -- the last check that removed anything
    expired_before TEXT,                 -- every row ingested before this is gone
    log_events BIGINT NOT NULL,          -- what the check at expired_at removed
    dead_letters BIGINT NOT NULL,
    files BIGINT NOT NULL,
    partitions BIGINT NOT NULL,          -- always 0: SQLite has no partitions
    stored_bytes BIGINT NOT NULL         -- the size retention measured after its last run
);
