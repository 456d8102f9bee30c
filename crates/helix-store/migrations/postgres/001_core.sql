-- Core provenance tables (storage.md), PostgreSQL flavour. Columns marked compat in storage.md
-- are read by existing Grafana dashboards: keep their names, types and meanings.
--
-- Text columns that are sorted or compared by range use COLLATE "C" (byte order, which is
-- code-point order for UTF-8): pages, cursors and ID-prefix searches then order exactly as the
-- SQLite backend does, whatever locale the database was created with.

CREATE TABLE entities (
    id            TEXT COLLATE "C" PRIMARY KEY,
    instrument_id TEXT COLLATE "C" NOT NULL,
    trace_id      TEXT,
    timestamp_ns  BIGINT NOT NULL,
    parent_ids    TEXT[] NOT NULL DEFAULT '{}',
    metadata      JSONB NOT NULL DEFAULT '{}',
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    span_id       TEXT,
    stage         TEXT COLLATE "C",
    service_name  TEXT,
    process_name  TEXT,
    end_ns        BIGINT,
    status        TEXT NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'error')),
    placeholder   BOOLEAN NOT NULL DEFAULT false
);
-- Search by instrument and time window, newest first.
CREATE INDEX entities_instrument_time ON entities (instrument_id, timestamp_ns);
-- Stage filters and stage summaries (index-only when the visibility map allows).
CREATE INDEX entities_instrument_stage ON entities (instrument_id, stage, placeholder, status, timestamp_ns);
-- Search without an instrument filter, newest first.
CREATE INDEX entities_time ON entities (timestamp_ns);

-- Provenance edges. Parents that do not exist yet are kept: the edge joins the DAG when the
-- parent arrives. The parent index makes descendants as cheap to walk as ancestors.
CREATE TABLE entity_parents (
    child_id  TEXT COLLATE "C" NOT NULL,
    parent_id TEXT COLLATE "C" NOT NULL,
    position  INTEGER NOT NULL,
    PRIMARY KEY (child_id, parent_id)
);
CREATE INDEX entity_parents_parent ON entity_parents (parent_id, child_id);

-- Re-creation spans applied to an entity (the first creation's span is entities.span_id):
-- tells a retried re-creation (no-op) from a new one (merged and counted).
CREATE TABLE entity_creations (
    entity_id TEXT COLLATE "C" NOT NULL,
    span_id   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (entity_id, span_id)
);

-- One row per operation span. No surrogate key: span_id is the identity (and a hypertable
-- could not have a key without the time column anyway, see 003_timescale.sql).
CREATE TABLE entity_operations (
    entity_id     TEXT COLLATE "C" NOT NULL,
    instrument_id TEXT COLLATE "C" NOT NULL,
    operation     TEXT NOT NULL,
    trace_id      TEXT NOT NULL,
    timestamp_ns  BIGINT NOT NULL,
    duration_ns   BIGINT NOT NULL,
    metadata      JSONB NOT NULL DEFAULT '{}',
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    span_id       TEXT COLLATE "C" NOT NULL,
    status        TEXT NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'error')),
    service_name  TEXT,
    CONSTRAINT entity_operations_span UNIQUE (span_id)
);
CREATE INDEX entity_operations_entity ON entity_operations (entity_id, timestamp_ns, span_id);
-- Retention deletes by age; BRIN costs next to nothing on ingest for time-ordered rows.
CREATE INDEX entity_operations_time ON entity_operations USING brin (timestamp_ns);

-- One row per helix.* span event; (span_id, ordinal) is the identity.
CREATE TABLE entity_events (
    instrument_id TEXT COLLATE "C" NOT NULL,
    entity_id     TEXT COLLATE "C" NOT NULL,
    event_name    TEXT NOT NULL,
    timestamp_ns  BIGINT NOT NULL,
    metadata      JSONB NOT NULL DEFAULT '{}',
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    trace_id      TEXT NOT NULL,
    span_id       TEXT COLLATE "C" NOT NULL,
    ordinal       INTEGER NOT NULL,
    CONSTRAINT entity_events_span UNIQUE (span_id, ordinal)
);
CREATE INDEX entity_events_entity ON entity_events (entity_id, timestamp_ns, span_id, ordinal);
CREATE INDEX entity_events_time ON entity_events USING brin (timestamp_ns);

-- Instruments that have sent data: a small table so listing them never scans entities.
CREATE TABLE instruments (
    instrument_id TEXT COLLATE "C" PRIMARY KEY,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
