-- The span store (storage.md "spans"): every acknowledged span, keyed by (trace_id, span_id)
-- so a retried export inserts nothing, with the OTLP span as sent. A span's resource is kept
-- once in span_resources (keyed by a hash of its encoding, the same function as SQLite's);
-- traces holds a summary per trace, updated with each inserted span, for the trace search.
-- With TimescaleDB, 004_spans_timescale.sql then makes spans a hypertable.

CREATE TABLE span_resources (
    id       BIGINT PRIMARY KEY,
    resource BYTEA NOT NULL
);

CREATE TABLE spans (
    trace_id       TEXT COLLATE "C" NOT NULL,
    span_id        TEXT COLLATE "C" NOT NULL,
    parent_span_id TEXT,
    name           TEXT COLLATE "C" NOT NULL,
    kind           INTEGER NOT NULL,
    start_ns       BIGINT NOT NULL,
    end_ns         BIGINT NOT NULL,
    status_code    INTEGER NOT NULL,
    status_message TEXT NOT NULL,
    service_name   TEXT COLLATE "C",
    process_name   TEXT,
    instrument_id  TEXT COLLATE "C",
    entity_id      TEXT COLLATE "C",
    role           TEXT NOT NULL CHECK (role IN ('creation', 'operation', 'span')),
    resource_id    BIGINT NOT NULL,
    scope_name     TEXT NOT NULL,
    scope_version  TEXT NOT NULL,
    span_proto     BYTEA NOT NULL,
    CONSTRAINT spans_key UNIQUE (trace_id, span_id)
);
-- What the span-level filters of the trace search look up.
CREATE INDEX spans_entity ON spans (entity_id) WHERE entity_id IS NOT NULL;
CREATE INDEX spans_service ON spans (service_name, start_ns);
CREATE INDEX spans_name ON spans (name, start_ns);
CREATE INDEX spans_instrument ON spans (instrument_id, start_ns);
CREATE INDEX spans_time ON spans USING brin (start_ns);

CREATE TABLE traces (
    trace_id      TEXT COLLATE "C" PRIMARY KEY,
    start_ns      BIGINT NOT NULL,
    end_ns        BIGINT NOT NULL,
    span_count    BIGINT NOT NULL,
    error_count   BIGINT NOT NULL,
    root_rank     INTEGER NOT NULL,
    root_start_ns BIGINT NOT NULL,
    root_span_id  TEXT COLLATE "C" NOT NULL,
    root_name     TEXT NOT NULL,
    root_service  TEXT
);
CREATE INDEX traces_start ON traces (start_ns DESC, trace_id);
