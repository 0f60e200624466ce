ALTER TABLE search_blocks DROP COLUMN sub_bits, DROP COLUMN subs, DROP COLUMN sub_last,
    DROP COLUMN coarse_bits, DROP COLUMN coarse;
ALTER TABLE search_blocks ALTER COLUMN counts SET STORAGE EXTENDED;
