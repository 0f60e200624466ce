-- Sub-blocks (src/search/mod.rs): a block with filters also has one filter per 128 of its rows,
-- tested only when the block's own filter passes, so that a rare needle reads fewer rows.
ALTER TABLE search_blocks ADD COLUMN sub_bits BIGINT NOT NULL DEFAULT 0; -- each filter's bits
ALTER TABLE search_blocks ADD COLUMN subs BLOB;     -- the filters, one after the other;
                                                    --   NULL: the block is read whole
ALTER TABLE search_blocks ADD COLUMN sub_last BLOB; -- each sub-block's last id, 8 bytes
                                                    --   little-endian (sub-block i holds the
                                                    --   ids after sub-block i-1's last)
