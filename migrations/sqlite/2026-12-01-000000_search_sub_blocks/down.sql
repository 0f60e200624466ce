ALTER TABLE search_blocks DROP COLUMN sub_last;
ALTER TABLE search_blocks DROP COLUMN subs;
ALTER TABLE search_blocks DROP COLUMN sub_bits;
