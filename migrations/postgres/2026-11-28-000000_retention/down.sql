-- Back to plain tables: every partition's rows are copied into one table again.
DROP TABLE expiry;
DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['log_events', 'dead_letters'] LOOP
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS)', t || '_plain', t);
        EXECUTE format('INSERT INTO %I SELECT * FROM %I', t || '_plain', t);
        EXECUTE format('ALTER SEQUENCE %I OWNED BY NONE', t || '_id_seq');
        EXECUTE format('DROP TABLE %I CASCADE', t);
        EXECUTE format('ALTER TABLE %I RENAME TO %I', t || '_plain', t);
        EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY (id)', t);
        EXECUTE format('ALTER SEQUENCE %I OWNED BY %I.id', t || '_id_seq', t);
    END LOOP;
END
$$;
CREATE INDEX log_events_ts ON log_events (ts);
CREATE INDEX log_events_level ON log_events (level);
