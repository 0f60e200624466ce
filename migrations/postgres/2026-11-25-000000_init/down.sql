DROP TABLE dead_letters;
DROP TABLE log_events;
DROP TABLE files;
