-- The span store (storage.md "spans"): every acknowledged span, keyed by (trace_id, span_id)
-- so a retried export inserts nothing. Sized for tens of millions of spans:
-- * spans is WITHOUT ROWID with the key as raw 16/8-byte BLOBs: one B-tree serves both the
--   idempotent insert and the by-trace read (no rowid, no second unique index);
-- * span_rest is the OTLP span without the fields the columns hold (IDs, parent, name, kind,
--   times, status); a read puts them back (form bit 4: span_rest is the whole span as sent);
-- * what every span of a process repeats (service, process, instrument, scope, resource) is
--   one span_sources row, keyed by a stable hash of those values;
-- * traces holds a summary per trace, upserted once per trace per batch, for the newest-first
--   search; trace_terms lists, per trace, the services, span names and instruments its spans
--   have (by hash), so a search for a rare value does not walk every trace;
-- * span_totals keeps the stored bytes of the span store for the size budget.

CREATE TABLE span_sources (
    id            INTEGER PRIMARY KEY,
    service_name  TEXT,
    process_name  TEXT,
    instrument_id TEXT,
    scope_name    TEXT NOT NULL,
    scope_version TEXT NOT NULL,
    resource      BLOB NOT NULL
);

CREATE TABLE spans (
    trace_id       BLOB NOT NULL,
    span_id        BLOB NOT NULL,
    parent_span_id BLOB,
    start_ns       INTEGER NOT NULL,
    duration_ns    INTEGER NOT NULL,
    name           TEXT NOT NULL,
    kind           INTEGER NOT NULL,
    status_code    INTEGER NOT NULL,
    status_message TEXT NOT NULL,
    source_id      INTEGER NOT NULL,
    -- role (0 span, 1 creation, 2 operation) | 4 whole span kept | 8 the span had a status.
    form           INTEGER NOT NULL,
    entity_id      TEXT,
    span_rest      BLOB NOT NULL,
    PRIMARY KEY (trace_id, span_id)
) WITHOUT ROWID;
-- Only entity spans name an entity: a partial index stays small.
CREATE INDEX spans_entity ON spans (entity_id) WHERE entity_id IS NOT NULL;

CREATE TABLE traces (
    trace_id      BLOB PRIMARY KEY,
    start_ns      INTEGER NOT NULL,
    end_ns        INTEGER NOT NULL,
    span_count    INTEGER NOT NULL,
    error_count   INTEGER NOT NULL,
    root_rank     INTEGER NOT NULL,
    root_start_ns INTEGER NOT NULL,
    root_span_id  BLOB NOT NULL,
    root_name     TEXT NOT NULL,
    root_service  TEXT,
    -- Stored bytes of the trace's span rows (what retention frees by removing it).
    bytes         INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX traces_start ON traces (start_ns DESC, trace_id);
-- Error traces are a few percent: the errors-only search walks this instead of every trace.
CREATE INDEX traces_errors ON traces (start_ns DESC, trace_id) WHERE error_count > 0;

-- term = stable hash of (kind, value): kind 1 service, 2 span name, 3 instrument.
CREATE TABLE trace_terms (
    term     INTEGER NOT NULL,
    trace_id BLOB NOT NULL,
    PRIMARY KEY (term, trace_id)
) WITHOUT ROWID;

CREATE TABLE span_totals (
    id    INTEGER PRIMARY KEY CHECK (id = 0),
    bytes INTEGER NOT NULL
);
INSERT INTO span_totals (id, bytes) VALUES (0, 0);
