-- Log search filters (storage.md "logs"): one row per block of 4 096 consecutive log row IDs,
-- a Bloom filter of the byte trigrams of its lines' bodies (ASCII-lowercased) and its time
-- range, kept by the writer in the commit's transaction. They replace the FTS5 trigram index,
-- which cost about two thirds of a log line's ingest; the filters of the existing lines are
-- built by this migration (the herald's code, after this SQL, in the same transaction).
DROP TRIGGER logs_text_insert;
DROP TRIGGER logs_text_delete;
DROP TABLE logs_text;
CREATE TABLE log_blocks (
    block  INTEGER PRIMARY KEY,
    min_ns INTEGER NOT NULL,
    max_ns INTEGER NOT NULL,
    grams  BLOB NOT NULL
);

-- A service's and a process's lines carry their severity in the index too, so that a walk
-- along them for one Loki `level` reads only the table rows of that level (the rest are
-- skipped on the index entry). The row ID stays right after the time: the walk's order.
DROP INDEX logs_service_time;
DROP INDEX logs_process_time;
CREATE INDEX logs_service_time ON logs (service_name, timestamp_ns, id, severity);
CREATE INDEX logs_process_time ON logs (process_name, timestamp_ns, id, severity);
