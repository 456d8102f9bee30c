-- The span store (storage.md "spans"): every acknowledged span, keyed by (trace_id, span_id)
-- so a retried export inserts nothing; the same shape as SQLite's 003_spans.sql:
-- * the key as raw 16/8-byte bytea (half the size of hex text, in the row and the index);
-- * span_rest is the OTLP span without the fields the columns hold; a read puts them back
--   (form bit 4: span_rest is the whole span as sent);
-- * what every span of a process repeats is one span_sources row (a stable hash is its key);
-- * traces: one summary per trace, upserted once per trace per batch; trace_terms: per trace,
--   the hashes of its services, span names and instruments, for the trace search.
-- With TimescaleDB, 004_spans_timescale.sql then makes spans a hypertable.

CREATE TABLE span_sources (
    id            BIGINT PRIMARY KEY,
    service_name  TEXT COLLATE "C",
    process_name  TEXT,
    instrument_id TEXT COLLATE "C",
    scope_name    TEXT NOT NULL,
    scope_version TEXT NOT NULL,
    resource      BYTEA NOT NULL
);

CREATE TABLE spans (
    trace_id       BYTEA NOT NULL,
    span_id        BYTEA NOT NULL,
    start_ns       BIGINT NOT NULL,
    duration_ns    BIGINT NOT NULL,
    source_id      BIGINT NOT NULL,
    kind           SMALLINT NOT NULL,
    status_code    SMALLINT NOT NULL,
    -- role (0 span, 1 creation, 2 operation) | 4 whole span kept | 8 the span had a status,
    -- and where the entity and instrument attributes left out of span_rest go back.
    form           INTEGER NOT NULL,
    parent_span_id BYTEA,
    name           TEXT COLLATE "C" NOT NULL,
    status_message TEXT NOT NULL,
    entity_id      TEXT COLLATE "C",
    span_rest      BYTEA NOT NULL,
    CONSTRAINT spans_key PRIMARY KEY (trace_id, span_id)
);
-- Only entity spans name an entity: a partial index stays small.
CREATE INDEX spans_entity ON spans (entity_id) WHERE entity_id IS NOT NULL;

CREATE TABLE traces (
    trace_id      BYTEA PRIMARY KEY,
    start_ns      BIGINT NOT NULL,
    end_ns        BIGINT NOT NULL,
    span_count    BIGINT NOT NULL,
    error_count   BIGINT NOT NULL,
    root_rank     INTEGER NOT NULL,
    root_start_ns BIGINT NOT NULL,
    root_span_id  BYTEA NOT NULL,
    root_name     TEXT NOT NULL,
    root_service  TEXT,
    bytes         BIGINT NOT NULL
);
CREATE INDEX traces_start ON traces (start_ns DESC, trace_id);
CREATE INDEX traces_errors ON traces (start_ns DESC, trace_id) WHERE error_count > 0;

CREATE TABLE trace_terms (
    term     BIGINT NOT NULL,
    trace_id BYTEA NOT NULL,
    PRIMARY KEY (term, trace_id)
);
