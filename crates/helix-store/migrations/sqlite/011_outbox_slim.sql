-- The notification outbox, smaller per notifying event (docs/storage.md "Notification
-- outbox"): an event's row points at the event's own row (`event_id`, the entity_events rowid)
-- and keeps only its class — instrument, event name, entity, fingerprint, stage — which is what
-- a claim, the rate limit, silences and the GitHub issue need; the occurrence (time, metadata)
-- is read from the event row when the row is claimed. Digest and overflow rows, which have no
-- event row of their own, keep their time and metadata here. No `state` column (finished rows
-- are deleted, so every row is pending) and no (state, next_attempt_ns) index: the claim walks
-- the rows in id order, and the count of pending rows is the table's.
CREATE TABLE notification_outbox_new (
    id               INTEGER PRIMARY KEY,
    kind             TEXT    NOT NULL,
    event_id         INTEGER,
    instrument_id    TEXT    NOT NULL,
    event_name       TEXT    NOT NULL,
    entity_id        TEXT    NOT NULL,
    fingerprint      TEXT    NOT NULL,
    stage            TEXT    NOT NULL,
    created_ns       INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ns  INTEGER NOT NULL DEFAULT 0,
    lease_until_ns   INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    -- NULL: no step done yet.
    progress         TEXT,
    last_error       TEXT,
    -- Digest and overflow rows (and event rows whose event row is gone): their own.
    timestamp_ns     INTEGER,
    metadata         TEXT,
    destination      TEXT    NOT NULL DEFAULT '',
    digest_count     INTEGER NOT NULL DEFAULT 0,
    digest_window_ns INTEGER NOT NULL DEFAULT 0
);
-- Pending rows keep their ids (the claim's order) and everything they had; an event row also
-- gets its event's rowid.
INSERT INTO notification_outbox_new (id, kind, event_id, instrument_id, event_name, entity_id, fingerprint, stage,
    created_ns, attempts, next_attempt_ns, lease_until_ns, lease_owner, progress, last_error, timestamp_ns, metadata,
    destination, digest_count, digest_window_ns)
SELECT o.id, o.kind,
    CASE WHEN o.kind = 'event'
        THEN (SELECT e.id FROM entity_events e WHERE e.span_id = o.span_id AND e.ordinal = o.ordinal) END,
    o.instrument_id, o.event_name, o.entity_id, o.fingerprint, o.stage, o.created_ns, o.attempts, o.next_attempt_ns,
    o.lease_until_ns, o.lease_owner, o.progress, o.last_error, o.timestamp_ns, o.metadata, o.destination,
    o.digest_count, o.digest_window_ns
FROM notification_outbox o WHERE o.state = 'pending';
DROP TABLE notification_outbox;
ALTER TABLE notification_outbox_new RENAME TO notification_outbox;
