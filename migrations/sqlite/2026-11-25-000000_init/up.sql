-- Files and their committed positions: updated in the same transaction as the rows they cover.
CREATE TABLE files (
    id INTEGER PRIMARY KEY NOT NULL,          -- chosen by logbelt when it first meets the file
    host TEXT NOT NULL,
    source TEXT NOT NULL,
    path TEXT NOT NULL,                       -- the file's latest path (it changes on rotation)
    dev BIGINT NOT NULL,
    inode BIGINT NOT NULL,
    fingerprint_len INTEGER NOT NULL,         -- bytes covered by fingerprint
    fingerprint BIGINT NOT NULL,              -- FNV-1a 64 of the first fingerprint_len bytes
    committed_offset BIGINT NOT NULL,         -- every line before this byte is stored
    updated_at TEXT NOT NULL
);
CREATE INDEX files_host_identity ON files (host, dev, inode);

CREATE TABLE log_events (
    id INTEGER PRIMARY KEY NOT NULL,
    host TEXT NOT NULL,
    source TEXT NOT NULL,
    file_id BIGINT NOT NULL,
    file_offset BIGINT NOT NULL,              -- byte offset of the line's first byte
    ts TEXT,                                  -- RFC 3339 UTC, 6 fractional digits (sorts as text)
    level TEXT,
    message TEXT,
    fields TEXT NOT NULL,                     -- the line: the whole JSON object
    ingested_at TEXT NOT NULL
);
CREATE INDEX log_events_ts ON log_events (ts);
CREATE INDEX log_events_level ON log_events (level);

CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY NOT NULL,
    host TEXT NOT NULL,
    source TEXT NOT NULL,
    file_id BIGINT NOT NULL,
    file_offset BIGINT NOT NULL,
    raw BLOB NOT NULL,                        -- the line's bytes, cut to max_line_bytes
    line_bytes BIGINT NOT NULL,               -- the line's full length
    error TEXT NOT NULL,
    ingested_at TEXT NOT NULL
);
