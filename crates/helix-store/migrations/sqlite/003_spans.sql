-- The span store (storage.md "spans"): every acknowledged span, keyed by (trace_id, span_id)
-- so a retried export inserts nothing. Sized for tens of millions of spans:
-- * spans is WITHOUT ROWID with the key as raw 16/8-byte BLOBs: one B-tree serves both the
--   idempotent insert and the by-trace read (no rowid, no second unique index). Trace IDs are
--   random, so every new trace dirties its own page of this tree at commit: the trace's
--   summary is a row of the same tree (span_id all zeros), on that same page, instead of a
--   second randomly keyed table (measured: 15 % fewer bytes written per span);
-- * span_rest is the OTLP span without the fields the columns hold (IDs, parent, name, kind,
--   times, status); a read puts them back (form bit 4: span_rest is the whole span as sent);
-- * what every span of a process repeats (service, process, instrument, scope, resource) is
--   one span_sources row, keyed by a stable hash of those values;
-- * the summary is upserted once per trace per batch; the view traces reads it; trace_terms
--   lists, per trace, the services, span names and instruments its spans have (by hash), so
--   a search for a rare value does not walk every trace.

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
    -- x'0000000000000000' (never a span's: OTLP calls it invalid) is the trace's summary row.
    span_id        BLOB NOT NULL,
    parent_span_id BLOB,              -- summary: the root span's ID
    start_ns       INTEGER NOT NULL,  -- summary: the earliest start
    duration_ns    INTEGER NOT NULL,  -- summary: latest end - earliest start
    name           TEXT NOT NULL,     -- summary: the root span's name
    kind           INTEGER NOT NULL,  -- summary: the root's rank (0 parentless, 1 not)
    status_code    INTEGER NOT NULL,  -- summary: spans with an ERROR status
    status_message TEXT NOT NULL,
    source_id      INTEGER NOT NULL,  -- summary: the root span's source
    -- role (0 span, 1 creation, 2 operation) | 4 whole span kept | 8 the span had a status;
    -- 16 on a summary row.
    form           INTEGER NOT NULL,
    entity_id      TEXT,
    span_rest      BLOB NOT NULL,
    -- Summary rows only (NULL on spans): span count, the root's start, stored bytes.
    span_count     INTEGER,
    root_start_ns  INTEGER,
    bytes          INTEGER,
    PRIMARY KEY (trace_id, span_id)
) WITHOUT ROWID;
-- Only entity spans name an entity: a partial index stays small.
CREATE INDEX spans_entity ON spans (entity_id) WHERE entity_id IS NOT NULL;
-- The trace search walks summaries newest first; error traces (a few percent) have their own.
CREATE INDEX traces_start ON spans (start_ns DESC, trace_id) WHERE span_id = x'0000000000000000';
CREATE INDEX traces_errors ON spans (start_ns DESC, trace_id)
    WHERE span_id = x'0000000000000000' AND status_code > 0;

-- Long traces are few: a minimum-duration search starts from them when they are.
CREATE INDEX traces_duration ON spans (duration_ns) WHERE span_id = x'0000000000000000';

CREATE VIEW traces AS
    SELECT trace_id, start_ns, start_ns + duration_ns AS end_ns, span_count, status_code AS error_count,
           kind AS root_rank, root_start_ns, parent_span_id AS root_span_id, name AS root_name,
           source_id AS root_source, bytes
    FROM spans WHERE span_id = x'0000000000000000';

-- term = stable hash of (kind, value): kind 1 service, 2 span name, 3 instrument; start_ns is
-- the trace's start as first written, so new entries of a term land at its end.
CREATE TABLE trace_terms (
    term     INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    trace_id BLOB NOT NULL,
    PRIMARY KEY (term, start_ns, trace_id)
) WITHOUT ROWID;
