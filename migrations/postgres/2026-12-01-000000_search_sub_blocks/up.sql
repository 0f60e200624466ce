-- Sub-blocks (src/search/mod.rs): a block with filters also has one filter per 128 of its rows,
-- tested only when the block's own filter passes, so that a rare needle reads fewer rows.
ALTER TABLE search_blocks
    ADD COLUMN sub_bits BIGINT NOT NULL DEFAULT 0, -- each sub-block filter's size in bits
    ADD COLUMN subs BYTEA,                          -- the sub-block filters, one after the other;
                                                    --   NULL: the block is read whole
    ADD COLUMN sub_last BIGINT[];                   -- each sub-block's last id (sub-block i holds
                                                    --   the ids after sub-block i-1's last)
-- Read by single bytes, like bloom.
ALTER TABLE search_blocks ALTER COLUMN subs SET STORAGE EXTERNAL;

-- A coarse copy of the filter, folded to at most 2 KiB and kept in the row (MAIN: not out of
-- line), tested before bloom: testing it costs no TOAST fetch, and most blocks fail it.
ALTER TABLE search_blocks
    ADD COLUMN coarse_bits BIGINT NOT NULL DEFAULT 0, -- its size in bits; 0: none
    ADD COLUMN coarse BYTEA;
ALTER TABLE search_blocks ALTER COLUMN coarse SET STORAGE MAIN;
-- The row is now wider than PostgreSQL's toast target: without MAIN, counts (read for every
-- block by --count) would be moved out of line too, a TOAST fetch each.
ALTER TABLE search_blocks ALTER COLUMN counts SET STORAGE MAIN;
