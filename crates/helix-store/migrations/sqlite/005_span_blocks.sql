-- Span blocks (storage.md "Span blocks"): every span-store key now leads with `block`, a
-- number the writer assigns, so a commit writes into the small subtree of the open block
-- instead of dirtying one page per new trace of every tree keyed by a random trace ID.
-- * A trace lives in exactly one block: the open one when its first span arrives; later
--   spans of a trace join it where it is (the writer finds it through an in-memory directory
--   of trace fingerprints, checked with an exact seek). So a trace's summary is complete and
--   a retried span hits the same (block, trace_id, span_id) key: idempotent as before.
-- * span_blocks: one row per block. The open block (sealed = 0) takes new traces until it has
--   about 16 000 spans or is an hour old; a sealed block keeps `traces`, the sorted 32-bit
--   keyed fingerprints of its traces, from which the directory is rebuilt at start.
-- * Retention deletes whole blocks (contiguous key ranges) once their newest trace is old.
-- Existing spans keep their data: their traces get blocks in start order.

CREATE TABLE span_store (
    -- SipHash key of the trace fingerprints: random per database, so no client can aim
    -- many traces at one fingerprint.
    fingerprint_key BLOB NOT NULL
);
INSERT INTO span_store (fingerprint_key) VALUES (randomblob(16));

CREATE TABLE span_blocks (
    block        INTEGER PRIMARY KEY,
    sealed       INTEGER NOT NULL DEFAULT 0,
    -- Wall time (ns) the block was opened: an open block is sealed after an hour.
    opened_ns    INTEGER NOT NULL,
    -- Earliest and latest trace start written to the block (NULL while empty); the latest is
    -- an upper bound (a later span can make a trace start earlier, never later).
    min_start_ns INTEGER,
    max_start_ns INTEGER,
    span_count   INTEGER NOT NULL DEFAULT 0,
    -- Sum of the block's traces' `bytes`: the size budget drops the oldest blocks.
    bytes        INTEGER NOT NULL DEFAULT 0,
    -- Sealed blocks: sorted little-endian u32 fingerprints of its traces (NULL: to compute).
    traces       BLOB
);

CREATE TEMP TABLE trace_blocks (trace_id BLOB PRIMARY KEY, block INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO temp.trace_blocks (trace_id, block)
    SELECT trace_id, (row_number() OVER (ORDER BY start_ns, trace_id) - 1) / 12000 + 1
    FROM spans WHERE span_id = x'0000000000000000';

DROP VIEW traces;
DROP INDEX spans_entity;
DROP INDEX traces_start;
DROP INDEX traces_errors;
DROP INDEX traces_duration;
ALTER TABLE spans RENAME TO spans_003;
ALTER TABLE trace_terms RENAME TO trace_terms_003;

CREATE TABLE spans (
    block          INTEGER NOT NULL,
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
    PRIMARY KEY (block, trace_id, span_id)
) WITHOUT ROWID;

INSERT INTO spans (block, trace_id, span_id, parent_span_id, start_ns, duration_ns, name, kind, status_code,
                   status_message, source_id, form, entity_id, span_rest, span_count, root_start_ns, bytes)
    SELECT coalesce(b.block, 1), s.trace_id, s.span_id, s.parent_span_id, s.start_ns, s.duration_ns, s.name, s.kind,
           s.status_code, s.status_message, s.source_id, s.form, s.entity_id, s.span_rest, s.span_count,
           s.root_start_ns, s.bytes
    FROM spans_003 AS s LEFT JOIN temp.trace_blocks AS b ON b.trace_id = s.trace_id
    ORDER BY 1, 2, 3;

-- Every index leads with the block or with time: a commit appends to each.
CREATE INDEX spans_entity ON spans (block, entity_id) WHERE entity_id IS NOT NULL;
CREATE INDEX traces_start ON spans (start_ns DESC, trace_id) WHERE span_id = x'0000000000000000';
CREATE INDEX traces_errors ON spans (start_ns DESC, trace_id)
    WHERE span_id = x'0000000000000000' AND status_code > 0;
CREATE INDEX traces_duration ON spans (block, duration_ns) WHERE span_id = x'0000000000000000';

CREATE VIEW traces AS
    SELECT block, trace_id, start_ns, start_ns + duration_ns AS end_ns, span_count, status_code AS error_count,
           kind AS root_rank, root_start_ns, parent_span_id AS root_span_id, name AS root_name,
           source_id AS root_source, bytes
    FROM spans WHERE span_id = x'0000000000000000';

-- term = stable hash of (kind, value): kind 1 service, 2 span name, 3 instrument.
CREATE TABLE trace_terms (
    block    INTEGER NOT NULL,
    term     INTEGER NOT NULL,
    trace_id BLOB NOT NULL,
    PRIMARY KEY (block, term, trace_id)
) WITHOUT ROWID;
INSERT INTO trace_terms (block, term, trace_id)
    SELECT DISTINCT coalesce(b.block, 1), k.term, k.trace_id
    FROM trace_terms_003 AS k LEFT JOIN temp.trace_blocks AS b ON b.trace_id = k.trace_id
    ORDER BY 1, 2, 3;

DROP TABLE spans_003;
DROP TABLE trace_terms_003;

INSERT INTO span_blocks (block, sealed, opened_ns, min_start_ns, max_start_ns, span_count, bytes)
    SELECT block, 1, CAST((julianday('now') - 2440587.5) * 86400000000000 AS INTEGER), min(start_ns), max(start_ns),
           sum(span_count), sum(bytes)
    FROM spans WHERE span_id = x'0000000000000000' GROUP BY block;
-- The open block, after the migrated ones.
INSERT INTO span_blocks (block, sealed, opened_ns)
    SELECT coalesce(max(block), 0) + 1, 0, CAST((julianday('now') - 2440587.5) * 86400000000000 AS INTEGER)
    FROM span_blocks;
DROP TABLE temp.trace_blocks;
