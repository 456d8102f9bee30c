-- Notifications (docs/notifications.md). notification_issues and notification_silences keep the
-- older herald's names and types, so its dashboards and its rows keep working.

CREATE TABLE IF NOT EXISTS notification_issues (
    instrument_id       TEXT        NOT NULL,
    error_fingerprint   TEXT        NOT NULL,
    github_repo         TEXT        NOT NULL,
    github_issue_number INT         NOT NULL,
    entity_count        INT         NOT NULL DEFAULT 1,
    first_seen_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    recent_entity_ids   TEXT[]      NOT NULL DEFAULT '{}',
    PRIMARY KEY (instrument_id, error_fingerprint, github_repo)
);
-- Ours: closed by the herald or found closed; github_issue_number 0 with intent_ns: a creation
-- under way (a retry looks for the issue before creating another).
ALTER TABLE notification_issues ADD COLUMN IF NOT EXISTS closed BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE notification_issues ADD COLUMN IF NOT EXISTS intent_ns BIGINT NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS notification_silences (
    id             SERIAL PRIMARY KEY,
    instrument_id  TEXT        NOT NULL,
    event_type     TEXT,
    fingerprint    TEXT,
    silenced_by    TEXT        NOT NULL,
    silenced_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at     TIMESTAMPTZ NOT NULL,
    reason         TEXT
);
CREATE INDEX IF NOT EXISTS idx_silences_active ON notification_silences (instrument_id, expires_at);

-- The outbox: one row per notifying event (written in the event's transaction) or digest;
-- replicas claim rows with FOR UPDATE SKIP LOCKED and a lease.
CREATE TABLE notification_outbox (
    id               BIGSERIAL PRIMARY KEY,
    kind             TEXT   NOT NULL,
    instrument_id    TEXT   NOT NULL,
    event_name       TEXT   NOT NULL,
    entity_id        TEXT   NOT NULL,
    span_id          TEXT,
    ordinal          INT,
    stage            TEXT   NOT NULL,
    fingerprint      TEXT   NOT NULL,
    timestamp_ns     BIGINT NOT NULL,
    metadata         JSONB  NOT NULL DEFAULT '{}',
    destination      TEXT   NOT NULL DEFAULT '',
    digest_count     BIGINT NOT NULL DEFAULT 0,
    digest_window_ns BIGINT NOT NULL DEFAULT 0,
    state            TEXT   NOT NULL DEFAULT 'pending',
    attempts         INT    NOT NULL DEFAULT 0,
    next_attempt_ns  BIGINT NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_until_ns   BIGINT NOT NULL DEFAULT 0,
    progress         JSONB  NOT NULL DEFAULT '{}',
    last_error       TEXT,
    created_ns       BIGINT NOT NULL,
    done_ns          BIGINT
);
CREATE UNIQUE INDEX notification_outbox_event ON notification_outbox (span_id, ordinal) WHERE kind = 'event';
CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_ns) WHERE state = 'pending';

CREATE TABLE notification_windows (
    instrument_id TEXT   NOT NULL,
    fingerprint   TEXT   NOT NULL,
    destination   TEXT   NOT NULL,
    start_ns      BIGINT NOT NULL,
    window_ns     BIGINT NOT NULL,
    sent          BIGINT NOT NULL,
    suppressed    BIGINT NOT NULL,
    last_event    JSONB,
    PRIMARY KEY (instrument_id, fingerprint, destination)
);

CREATE TABLE notification_deliveries (
    id            BIGSERIAL PRIMARY KEY,
    at_ns         BIGINT NOT NULL,
    instrument_id TEXT   NOT NULL,
    event_name    TEXT   NOT NULL,
    fingerprint   TEXT   NOT NULL,
    channel       TEXT   NOT NULL,
    outcome       TEXT   NOT NULL,
    detail        TEXT   NOT NULL
);
CREATE INDEX notification_deliveries_instrument ON notification_deliveries (instrument_id, id);
