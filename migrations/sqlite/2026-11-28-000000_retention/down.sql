DROP TABLE expiry;
