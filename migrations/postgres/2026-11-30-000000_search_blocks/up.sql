-- The search index (README, "Searching"): one block per commit, written in the same transaction
-- as its rows: the ids its rows got, and a bloom filter of their text (src/search/bloom.rs).
CREATE TABLE search_blocks (
    id BIGSERIAL PRIMARY KEY,
    host TEXT,                    -- whose rows; NULL: any host's
    first_id BIGINT NOT NULL,     -- the block's rows are log_events rows of host with ids in
    last_id BIGINT NOT NULL,      --   first_id..=last_id (the range may hold others' rows too)
    ingested_at TIMESTAMPTZ,      -- their ingested_at (one per commit); NULL: any
    rows BIGINT NOT NULL,         -- how many rows the block covers
    bits BIGINT NOT NULL,         -- the filter's size in bits (a power of two; 0 without one)
    bloom BYTEA,                  -- the filter; NULL: the block may hold anything
    counts TEXT                   -- rows per minute, level and source (src/search/mod.rs);
                                  --   NULL: count the rows (retention may have taken some)
);
-- Uncompressed out of line: a query reads single bytes of a filter (substring on EXTERNAL
-- storage fetches only the chunk that holds them), never the whole filter.
ALTER TABLE search_blocks ALTER COLUMN bloom SET STORAGE EXTERNAL;

-- The rows stored before the index existed: one block that may hold anything.
INSERT INTO search_blocks (host, first_id, last_id, ingested_at, rows, bits, bloom)
SELECT NULL, min(id), max(id), NULL, count(*), 0, NULL FROM log_events HAVING count(*) > 0;
