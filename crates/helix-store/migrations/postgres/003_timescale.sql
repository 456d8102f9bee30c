-- TimescaleDB only: applied by migration 3 when the `timescaledb` extension could be created
-- in this database; on plain PostgreSQL this file is never run (the herald's own retention job
-- deletes old rows instead). See docs/postgres.md.
--
-- Hypertables need every unique constraint to contain the partitioning column. The time of a
-- span never changes between retries, so (span_id, timestamp_ns) is as good an identity as
-- span_id alone; the writer uses target-less ON CONFLICT DO NOTHING and works with either.

-- Time columns are nanoseconds since the epoch: retention policies need "now" in that unit.
CREATE OR REPLACE FUNCTION helix_now_ns() RETURNS BIGINT
    LANGUAGE SQL STABLE AS $$ SELECT (extract(epoch FROM now()) * 1000000000)::BIGINT $$;

ALTER TABLE entity_operations DROP CONSTRAINT entity_operations_span;
ALTER TABLE entity_operations ADD CONSTRAINT entity_operations_span UNIQUE (span_id, timestamp_ns);
ALTER TABLE entity_events DROP CONSTRAINT entity_events_span;
ALTER TABLE entity_events ADD CONSTRAINT entity_events_span UNIQUE (span_id, ordinal, timestamp_ns);
-- logs_dedup already starts with timestamp_ns.

-- One-day chunks (in ns); migrate_data converts tables that already hold rows.
SELECT create_hypertable('entity_operations', 'timestamp_ns', chunk_time_interval => 86400000000000, migrate_data => true);
SELECT create_hypertable('entity_events', 'timestamp_ns', chunk_time_interval => 86400000000000, migrate_data => true);
SELECT create_hypertable('logs', 'timestamp_ns', chunk_time_interval => 86400000000000, migrate_data => true);
SELECT set_integer_now_func('entity_operations', 'helix_now_ns');
SELECT set_integer_now_func('entity_events', 'helix_now_ns');
SELECT set_integer_now_func('logs', 'helix_now_ns');

-- Default retention: 90 days (storage.md). Change with remove_retention_policy /
-- add_retention_policy; the herald never overrides a policy an operator set.
SELECT add_retention_policy('entity_operations', BIGINT '7776000000000000', if_not_exists => true);
SELECT add_retention_policy('entity_events', BIGINT '7776000000000000', if_not_exists => true);
SELECT add_retention_policy('logs', BIGINT '7776000000000000', if_not_exists => true);
