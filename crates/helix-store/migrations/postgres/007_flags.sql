-- Flags raised on entities (docs/storage.md "Flags and suspicion"). Never deleted: a cleared
-- flag keeps its row with who cleared it and when, so the table is the audit history.
-- Suspicion is computed from these rows and the edges when it is read.
CREATE TABLE entity_flags (
    flag_id    TEXT COLLATE "C" PRIMARY KEY,
    entity_id  TEXT COLLATE "C" NOT NULL,
    severity   TEXT NOT NULL CHECK (severity IN ('bad', 'suspect')),
    reason     TEXT NOT NULL,
    flagged_by TEXT NOT NULL,
    principal  TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    cleared_at TIMESTAMPTZ,
    cleared_by TEXT
);
CREATE INDEX entity_flags_entity ON entity_flags (entity_id, created_at);
-- The active flags: the seeds of the suspect search filter.
CREATE INDEX entity_flags_active ON entity_flags (entity_id) WHERE cleared_at IS NULL;
