-- Core provenance tables (storage.md). Column names marked compat in storage.md are read by
-- existing SQL dashboards: keep them. Arrays and maps are JSON text; times are ns since epoch,
-- except created_at (ingest time, RFC 3339 UTC text).

CREATE TABLE entities (
    id            TEXT PRIMARY KEY,
    instrument_id TEXT NOT NULL,
    trace_id      TEXT,
    timestamp_ns  INTEGER NOT NULL,
    parent_ids    TEXT NOT NULL DEFAULT '[]',
    metadata      TEXT NOT NULL DEFAULT '{}',
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    span_id       TEXT,
    stage         TEXT,
    service_name  TEXT,
    process_name  TEXT,
    end_ns        INTEGER,
    status        TEXT NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'error')),
    placeholder   INTEGER NOT NULL DEFAULT 0 CHECK (placeholder IN (0, 1))
);
-- Search by instrument and time window, newest first.
CREATE INDEX entities_instrument_time ON entities (instrument_id, timestamp_ns);
-- Stage filters, and stage summaries answered from the index alone (covering).
CREATE INDEX entities_instrument_stage ON entities (instrument_id, stage, placeholder, status, timestamp_ns);
-- Search without an instrument filter, newest first.
CREATE INDEX entities_time ON entities (timestamp_ns);

-- Provenance edges. Parents that do not exist yet are kept: the edge joins the DAG when the
-- parent arrives. The parent index makes descendants as cheap to walk as ancestors.
CREATE TABLE entity_parents (
    child_id  TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    position  INTEGER NOT NULL,
    PRIMARY KEY (child_id, parent_id)
) WITHOUT ROWID;
CREATE INDEX entity_parents_parent ON entity_parents (parent_id, child_id);

-- Re-creation spans applied to an entity (the first creation's span is entities.span_id):
-- tells a retried re-creation (no-op) from a new one (merged and counted).
CREATE TABLE entity_creations (
    entity_id TEXT NOT NULL,
    span_id   TEXT NOT NULL,
    PRIMARY KEY (entity_id, span_id)
) WITHOUT ROWID;

CREATE TABLE entity_operations (
    id            INTEGER PRIMARY KEY,
    entity_id     TEXT NOT NULL,
    instrument_id TEXT NOT NULL,
    operation     TEXT NOT NULL,
    trace_id      TEXT NOT NULL,
    timestamp_ns  INTEGER NOT NULL,
    duration_ns   INTEGER NOT NULL,
    metadata      TEXT NOT NULL DEFAULT '{}',
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    span_id       TEXT NOT NULL UNIQUE,
    status        TEXT NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'error')),
    service_name  TEXT
);
CREATE INDEX entity_operations_entity ON entity_operations (entity_id, timestamp_ns, span_id);

CREATE TABLE entity_events (
    id            INTEGER PRIMARY KEY,
    instrument_id TEXT NOT NULL,
    entity_id     TEXT NOT NULL,
    event_name    TEXT NOT NULL,
    timestamp_ns  INTEGER NOT NULL,
    metadata      TEXT NOT NULL DEFAULT '{}',
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    trace_id      TEXT NOT NULL,
    span_id       TEXT NOT NULL,
    ordinal       INTEGER NOT NULL,
    UNIQUE (span_id, ordinal)
);
CREATE INDEX entity_events_entity ON entity_events (entity_id, timestamp_ns, span_id, ordinal);

-- Instruments that have sent data: a small table so listing them never scans entities.
CREATE TABLE instruments (
    instrument_id TEXT PRIMARY KEY,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID;
