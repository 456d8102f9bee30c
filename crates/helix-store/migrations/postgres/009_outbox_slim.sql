-- The notification outbox, smaller per notifying event (docs/storage.md "Notification
-- outbox"): an event's row keeps its class (instrument, event name, entity, fingerprint,
-- stage) and the key of its event row (span_id, ordinal, timestamp_ns), not a copy of the
-- event's metadata: the claim reads that from the event row. Digest and overflow rows, which
-- have no event row, keep theirs. Rows written before keep their copy.
ALTER TABLE notification_outbox ALTER COLUMN metadata DROP NOT NULL;
ALTER TABLE notification_outbox ALTER COLUMN metadata DROP DEFAULT;
