-- Storage that lives for months: log_events and dead_letters become range-partitioned by
-- ingested_at, so that retention drops whole partitions instead of deleting rows.
--
-- The rows already stored are not copied: each old table is attached, as it is, as the first
-- partition (lower bound MINVALUE, upper bound now), after a unique index on (id, ingested_at)
-- is built for it (the primary key of a partitioned table must hold its partition key). The
-- cost is that index build and one scan to check the bound: a few seconds per million rows.
-- A DEFAULT partition takes any row that no partition covers (a clock far off, a partition not
-- yet created), so that no insert ever fails for want of one. logbelt creates the partitions
-- ahead of time, named <table>_p<lower>_<upper> (UTC, %Y%m%dt%H%M%S); the first one's lower
-- bound, MINVALUE, is written 00000000t000000.
DO $$
DECLARE
    t TEXT;
    cutoff TIMESTAMPTZ;
    newest TIMESTAMPTZ;
BEGIN
    FOREACH t IN ARRAY ARRAY['log_events', 'dead_letters'] LOOP
        EXECUTE format('SELECT max(ingested_at) FROM %I', t) INTO newest;
        cutoff := date_trunc('second', greatest(now(), newest + interval '1 microsecond'))
            + interval '1 second';
        EXECUTE format('ALTER TABLE %I RENAME TO %I', t, t || '_unpartitioned');
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', t || '_unpartitioned', t || '_pkey');
        EXECUTE format('ALTER TABLE %I ALTER COLUMN id DROP DEFAULT', t || '_unpartitioned');
        EXECUTE format(
            'CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS,'
            ' PRIMARY KEY (id, ingested_at)) PARTITION BY RANGE (ingested_at)',
            t, t || '_unpartitioned');
        EXECUTE format('ALTER TABLE %I ALTER COLUMN id SET DEFAULT nextval(%L)', t, t || '_id_seq');
        EXECUTE format('ALTER SEQUENCE %I OWNED BY %I.id', t || '_id_seq', t);
        EXECUTE format('CREATE UNIQUE INDEX ON %I (id, ingested_at)', t || '_unpartitioned');
        EXECUTE format(
            'ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (MINVALUE) TO (%L)',
            t, t || '_unpartitioned', cutoff);
        EXECUTE format('ALTER TABLE %I RENAME TO %I',
            t || '_unpartitioned',
            t || '_p00000000t000000_' || to_char(cutoff AT TIME ZONE 'UTC', 'YYYYMMDD"t"HH24MISS'));
        EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', t || '_default', t);
    END LOOP;
END
$$;

-- The indexes the partitions share (the old table's own are matched and attached: no rebuild).
ALTER INDEX log_events_ts RENAME TO log_events_ts_unpartitioned;
ALTER INDEX log_events_level RENAME TO log_events_level_unpartitioned;
CREATE INDEX log_events_ts ON log_events (ts);
CREATE INDEX log_events_level ON log_events (level);

-- What retention did last, per host: what `logbelt status` shows.
CREATE TABLE expiry (
    host TEXT PRIMARY KEY,
    ran_at TIMESTAMPTZ NOT NULL,         -- the last check
    expired_at TIMESTAMPTZ,              -- the last check that removed anything
    expired_before TIMESTAMPTZ,          -- every row ingested before this is gone
    log_events BIGINT NOT NULL,          -- what the check at expired_at removed
    dead_letters BIGINT NOT NULL,
    files BIGINT NOT NULL,
    partitions BIGINT NOT NULL,
    stored_bytes BIGINT NOT NULL         -- the size retention measured after its last run
);
