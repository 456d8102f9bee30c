-- Log search (storage.md "logs"): the OTLP severity number, observed time and resource of each
-- record; a (timestamp, id) index for newest-first search and tail in both directions; and,
-- where the pg_trgm extension can be enabled, a trigram GIN index that answers the
-- case-insensitive substring search (`ILIKE '%text%'`). Without pg_trgm the search reads rows
-- in time order within the other filters (docs/postgres.md).

ALTER TABLE logs ADD COLUMN severity_number INTEGER NOT NULL DEFAULT 0;
ALTER TABLE logs ADD COLUMN observed_ns BIGINT;
ALTER TABLE logs ADD COLUMN resource JSONB NOT NULL DEFAULT '{}';

UPDATE logs SET severity_number = CASE upper(trim(severity))
    WHEN 'TRACE' THEN 1 WHEN 'DEBUG' THEN 5 WHEN 'INFO' THEN 9 WHEN 'NOTICE' THEN 9
    WHEN 'WARN' THEN 13 WHEN 'WARNING' THEN 13 WHEN 'ERROR' THEN 17
    WHEN 'FATAL' THEN 21 WHEN 'CRITICAL' THEN 21 ELSE 0 END
WHERE severity_number = 0;

CREATE INDEX logs_time_id ON logs (timestamp_ns, id);

-- The extension goes to `public` (or wherever an operator already put it) and the operator
-- class is named with its schema, so every schema on the database shares one installation.
DO $$
DECLARE
    trgm_schema TEXT;
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'pg_trgm could not be enabled (%): log text search reads rows in time order', SQLERRM;
    END;
    SELECT extnamespace::regnamespace::text INTO trgm_schema FROM pg_extension WHERE extname = 'pg_trgm';
    IF trgm_schema IS NOT NULL THEN
        EXECUTE format('CREATE INDEX logs_body_trgm ON logs USING gin (body %s.gin_trgm_ops)', trgm_schema);
    END IF;
END
$$;
