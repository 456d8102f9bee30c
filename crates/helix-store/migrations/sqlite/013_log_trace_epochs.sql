-- A trace's lines are found through (id >> 16, trace_id, timestamp_ns): the row ID's epoch
-- (65 536 consecutive lines) first, so that each new line lands in the newest epoch's part of
-- the index rather than at a random place in all of it. With trace IDs random, the old
-- (trace_id, timestamp_ns) index cost ingest a page read and write per line once it outgrew
-- the cache. A lookup seeks once per epoch: `log_epochs` lists those the table holds.
DROP INDEX logs_trace;
CREATE INDEX logs_trace_epoch ON logs ((id >> 16), trace_id, timestamp_ns);
CREATE VIEW log_epochs (epoch) AS
    WITH RECURSIVE e (epoch) AS (
        SELECT (SELECT min(id) FROM logs) >> 16 WHERE EXISTS (SELECT 1 FROM logs)
        UNION ALL
        SELECT epoch + 1 FROM e WHERE epoch < (SELECT max(id) FROM logs) >> 16
    )
    SELECT epoch FROM e;
