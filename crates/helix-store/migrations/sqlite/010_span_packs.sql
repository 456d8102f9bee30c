-- Span packs (storage.md "Span packs"): one row per trace instead of a row per span, a summary
-- row and a search-term row per (term, trace). Every tree of the span store is now keyed by
-- something the writer makes ascending (the trace number `id`, time, the term's newest
-- traces), so a commit appends instead of dirtying one page per trace of a tree keyed by
-- random trace IDs; the only map from a trace ID is the writer's in-memory directory.
-- * span_traces: a trace's summary and its spans, packed (sqlite/pack.rs: the protobuf `Pack`
--   message). `id` is the trace number: AUTOINCREMENT, so never reused, and a block's traces
--   are the numbers first_id..=last_id of its span_blocks row.
-- * span_terms: per (block, term, commit) the trace numbers that gained the term, as LEB128
--   offsets from `first` (a row per term a commit touches, not per trace).
-- * span_blocks: as in migration 5, with the block's trace numbers; a sealed block's `traces`
--   now holds the directory's entries (fingerprint and trace number) of its traces.
-- The spans of schema 5 (and 9) are renamed here and packed by the store when it opens
-- (sqlite/pack.rs `convert_schema_5`, one transaction), which then drops them.

DROP VIEW traces;
DROP INDEX spans_entity;
DROP INDEX traces_start;
DROP INDEX traces_errors;
DROP INDEX traces_duration;
ALTER TABLE spans RENAME TO spans_005;
ALTER TABLE trace_terms RENAME TO trace_terms_005;
DROP TABLE span_blocks;

CREATE TABLE span_blocks (
    block        INTEGER PRIMARY KEY,
    sealed       INTEGER NOT NULL DEFAULT 0,
    -- Wall time (ns) the block was opened: an open block is sealed after an hour.
    opened_ns    INTEGER NOT NULL,
    -- The block's traces are the span_traces ids first_id..=last_id (NULL while it has none).
    first_id     INTEGER,
    last_id      INTEGER,
    -- Earliest and latest trace start written to the block (NULL while empty); the latest is
    -- an upper bound (a later span can make a trace start earlier, never later).
    min_start_ns INTEGER,
    max_start_ns INTEGER,
    span_count   INTEGER NOT NULL DEFAULT 0,
    -- Stored bytes of the block's traces: the size budget drops the oldest blocks.
    bytes        INTEGER NOT NULL DEFAULT 0,
    -- Sealed blocks: the directory entries of its traces, sorted little-endian u64
    -- (fingerprint << 36 | id).
    traces       BLOB
);

CREATE TABLE span_traces (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    block       INTEGER NOT NULL,
    trace_id    BLOB NOT NULL,
    -- Earliest start and latest end of the trace's spans.
    start_ns    INTEGER NOT NULL,
    end_ns      INTEGER NOT NULL,
    span_count  INTEGER NOT NULL,
    -- Spans with an ERROR status.
    error_count INTEGER NOT NULL,
    spans       BLOB NOT NULL
);
-- Newest first: time-ordered keys (a commit appends to their tail).
CREATE INDEX span_traces_start ON span_traces (start_ns);
CREATE INDEX span_traces_errors ON span_traces (start_ns) WHERE error_count > 0;
-- A minimum-duration search with few matches starts here, block by block.
CREATE INDEX span_traces_duration ON span_traces (block, end_ns - start_ns);

-- term = stable hash of (kind, value): kind 1 service, 2 span name, 3 instrument, 4 entity.
-- Keyed by block first: entity terms are as random as entity IDs, and a commit writes only
-- into the open block's few pages of this tree.
CREATE TABLE span_terms (
    block INTEGER NOT NULL,
    term  INTEGER NOT NULL,
    -- Lowest trace number of `ids`.
    first INTEGER NOT NULL,
    n     INTEGER NOT NULL,
    -- Ascending trace numbers, each as the LEB128 varint of (id - first).
    ids   BLOB NOT NULL,
    PRIMARY KEY (block, term, first)
) WITHOUT ROWID;
