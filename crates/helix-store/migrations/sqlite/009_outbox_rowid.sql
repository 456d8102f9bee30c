-- The notification outbox, cheaper to write with every notifying event (docs/notifications.md):
-- a plain rowid key instead of AUTOINCREMENT (no sqlite_sequence update per row; new rows still
-- get a larger id than every row in the table, which is the claim's walk order, and an id a
-- finished row had is only ever taken by a row no lease holds), and no unique (span_id,
-- ordinal) index: the writer adds an event's row only when the event's own row was inserted
-- (entity_events is unique by span and ordinal), so a re-sent event is no second notification.
CREATE TABLE notification_outbox_new (
    id               INTEGER PRIMARY KEY,
    kind             TEXT    NOT NULL,
    instrument_id    TEXT    NOT NULL,
    event_name       TEXT    NOT NULL,
    entity_id        TEXT    NOT NULL,
    span_id          TEXT,
    ordinal          INTEGER,
    stage            TEXT    NOT NULL,
    fingerprint      TEXT    NOT NULL,
    timestamp_ns     INTEGER NOT NULL,
    metadata         TEXT    NOT NULL DEFAULT '{}',
    destination      TEXT    NOT NULL DEFAULT '',
    digest_count     INTEGER NOT NULL DEFAULT 0,
    digest_window_ns INTEGER NOT NULL DEFAULT 0,
    state            TEXT    NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ns  INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_until_ns   INTEGER NOT NULL DEFAULT 0,
    progress         TEXT    NOT NULL DEFAULT '{}',
    last_error       TEXT,
    created_ns       INTEGER NOT NULL,
    done_ns          INTEGER
);
-- Pending rows keep their ids (and so their order); finished ones an older herald kept go.
INSERT INTO notification_outbox_new (id, kind, instrument_id, event_name, entity_id, span_id, ordinal, stage,
    fingerprint, timestamp_ns, metadata, destination, digest_count, digest_window_ns, state, attempts,
    next_attempt_ns, lease_owner, lease_until_ns, progress, last_error, created_ns, done_ns)
SELECT id, kind, instrument_id, event_name, entity_id, span_id, ordinal, stage,
    fingerprint, timestamp_ns, metadata, destination, digest_count, digest_window_ns, state, attempts,
    next_attempt_ns, lease_owner, lease_until_ns, progress, last_error, created_ns, done_ns
FROM notification_outbox WHERE state = 'pending';
DROP TABLE notification_outbox;
ALTER TABLE notification_outbox_new RENAME TO notification_outbox;
CREATE INDEX notification_outbox_due ON notification_outbox (state, next_attempt_ns);
DELETE FROM sqlite_sequence WHERE name = 'notification_outbox';
