-- OTLP log records correlated with entities (wire.md "Logs"). Retried exports must not
-- duplicate rows: dedup_hash is a stable 64-bit hash of every other field of the record, and
-- (timestamp_ns, dedup_hash) is unique.

CREATE TABLE logs (
    id            INTEGER PRIMARY KEY,
    timestamp_ns  INTEGER NOT NULL,
    severity      TEXT NOT NULL,
    body          TEXT NOT NULL,
    trace_id      TEXT,
    span_id       TEXT,
    entity_id     TEXT,
    instrument_id TEXT,
    process_name  TEXT,
    service_name  TEXT,
    source        TEXT,
    attributes    TEXT NOT NULL DEFAULT '{}',
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    dedup_hash    INTEGER NOT NULL,
    UNIQUE (timestamp_ns, dedup_hash)
);
CREATE INDEX logs_entity ON logs (entity_id, timestamp_ns);
CREATE INDEX logs_trace ON logs (trace_id, timestamp_ns);
