-- Log search (storage.md "logs"): the OTLP severity number (filters "WARN and above"), the
-- observed time and the resource of each record; a time index for newest-first search and
-- tail; and a trigram index of the bodies (FTS5, detail=none: rowids only, about the size of
-- the text) that answers case-insensitive substring searches. Triggers keep the index in
-- step with inserts and deletions (retention), in the same transaction.

ALTER TABLE logs ADD COLUMN severity_number INTEGER NOT NULL DEFAULT 0;
ALTER TABLE logs ADD COLUMN observed_ns INTEGER;
ALTER TABLE logs ADD COLUMN resource TEXT NOT NULL DEFAULT '{}';

UPDATE logs SET severity_number = CASE upper(trim(severity))
    WHEN 'TRACE' THEN 1 WHEN 'DEBUG' THEN 5 WHEN 'INFO' THEN 9 WHEN 'NOTICE' THEN 9
    WHEN 'WARN' THEN 13 WHEN 'WARNING' THEN 13 WHEN 'ERROR' THEN 17
    WHEN 'FATAL' THEN 21 WHEN 'CRITICAL' THEN 21 ELSE 0 END;

-- The rowid is the last key column: (timestamp_ns, id) order in both directions.
CREATE INDEX logs_time ON logs (timestamp_ns);

CREATE VIRTUAL TABLE logs_text USING fts5(
    body, content = 'logs', content_rowid = 'id', tokenize = 'trigram', detail = 'none'
);
INSERT INTO logs_text (logs_text) VALUES ('rebuild');

CREATE TRIGGER logs_text_insert AFTER INSERT ON logs BEGIN
    INSERT INTO logs_text (rowid, body) VALUES (new.id, new.body);
END;
CREATE TRIGGER logs_text_delete AFTER DELETE ON logs BEGIN
    INSERT INTO logs_text (logs_text, rowid, body) VALUES ('delete', old.id, old.body);
END;
