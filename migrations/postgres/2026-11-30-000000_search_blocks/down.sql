DROP TABLE search_blocks;
