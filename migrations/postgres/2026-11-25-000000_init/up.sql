-- Files and their committed positions: updated in the same transaction as the rows they cover.
CREATE TABLE files (
    id BIGINT PRIMARY KEY,                    -- chosen by logbelt when it first meets the file
    host TEXT NOT NULL,
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    dev BIGINT NOT NULL,
    inode BIGINT NOT NULL,
    fingerprint_len INTEGER NOT NULL,
    fingerprint BIGINT NOT NULL,
    committed_offset BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX files_host_identity ON files (host, dev, inode);

CREATE TABLE log_events (
    id BIGSERIAL PRIMARY KEY,
    host TEXT NOT NULL,
    source TEXT NOT NULL,
    file_id BIGINT NOT NULL,
    file_offset BIGINT NOT NULL,
    ts TIMESTAMPTZ,
    level TEXT,
    message TEXT,
    fields JSONB NOT NULL,
    ingested_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX log_events_ts ON log_events (ts);
CREATE INDEX log_events_level ON log_events (level);

CREATE TABLE dead_letters (
    id BIGSERIAL PRIMARY KEY,
    host TEXT NOT NULL,
    source TEXT NOT NULL,
    file_id BIGINT NOT NULL,
    file_offset BIGINT NOT NULL,
    raw BYTEA NOT NULL,
    line_bytes BIGINT NOT NULL,
    error TEXT NOT NULL,
    ingested_at TIMESTAMPTZ NOT NULL
);
