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
