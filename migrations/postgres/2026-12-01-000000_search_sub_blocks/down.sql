ALTER TABLE search_blocks DROP COLUMN sub_bits, DROP COLUMN subs, DROP COLUMN sub_last;
