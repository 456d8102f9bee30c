-- TimescaleDB only: run by migration 4 after 004_spans.sql when the extension is enabled in
-- this database (migration 3). A hypertable's unique constraints must contain its time
-- column; a span's start never changes between retries, so (trace_id, span_id, start_ns) is
-- as good an identity, and the writer's target-less ON CONFLICT DO NOTHING works with either.
-- Span retention stays the herald's job (whole traces, with their summaries), not a policy.

ALTER TABLE spans DROP CONSTRAINT spans_key;
ALTER TABLE spans ADD CONSTRAINT spans_key UNIQUE (trace_id, span_id, start_ns);
SELECT create_hypertable('spans', 'start_ns', chunk_time_interval => 86400000000000, migrate_data => true);
SELECT set_integer_now_func('spans', 'helix_now_ns');
