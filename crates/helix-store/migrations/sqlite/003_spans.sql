-- The span store (storage.md "spans"): every acknowledged span, keyed by (trace_id, span_id)
-- so a retried export inserts nothing, with the OTLP span as sent. A span's resource is kept
-- once in span_resources (keyed by a hash of its encoding), not once per span; traces holds a
-- summary per trace, updated with each inserted span, for the newest-first trace search.

CREATE TABLE span_resources (
    id       INTEGER PRIMARY KEY,
    resource BLOB NOT NULL
);

CREATE TABLE spans (
    trace_id       TEXT NOT NULL,
    span_id        TEXT NOT NULL,
    parent_span_id TEXT,
    name           TEXT NOT NULL,
    kind           INTEGER NOT NULL,
    start_ns       INTEGER NOT NULL,
    end_ns         INTEGER NOT NULL,
    status_code    INTEGER NOT NULL,
    status_message TEXT NOT NULL,
    service_name   TEXT,
    process_name   TEXT,
    instrument_id  TEXT,
    entity_id      TEXT,
    -- 'creation', 'operation' or 'span'.
    role           TEXT NOT NULL,
    resource_id    INTEGER NOT NULL,
    scope_name     TEXT NOT NULL,
    scope_version  TEXT NOT NULL,
    span_proto     BLOB NOT NULL,
    UNIQUE (trace_id, span_id)
);
-- Only entity spans name an entity: a partial index stays small.
CREATE INDEX spans_entity ON spans (entity_id) WHERE entity_id IS NOT NULL;

CREATE TABLE traces (
    trace_id      TEXT PRIMARY KEY,
    start_ns      INTEGER NOT NULL,
    end_ns        INTEGER NOT NULL,
    span_count    INTEGER NOT NULL,
    error_count   INTEGER NOT NULL,
    root_rank     INTEGER NOT NULL,
    root_start_ns INTEGER NOT NULL,
    root_span_id  TEXT NOT NULL,
    root_name     TEXT NOT NULL,
    root_service  TEXT
) WITHOUT ROWID;
CREATE INDEX traces_start ON traces (start_ns DESC, trace_id);
