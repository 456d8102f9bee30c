-- Notifications (docs/notifications.md). notification_issues and notification_silences keep the
-- older herald's column names; times are ns since epoch here (TIMESTAMPTZ on PostgreSQL).

-- One GitHub issue per (instrument, error class, repository). github_issue_number 0: the
-- creation is under way since intent_ns (a retry looks for the issue before creating another).
CREATE TABLE notification_issues (
    instrument_id       TEXT    NOT NULL,
    error_fingerprint   TEXT    NOT NULL,
    github_repo         TEXT    NOT NULL,
    github_issue_number INTEGER NOT NULL,
    entity_count        INTEGER NOT NULL DEFAULT 1,
    first_seen_at       INTEGER NOT NULL,
    last_updated_at     INTEGER NOT NULL,
    recent_entity_ids   TEXT    NOT NULL DEFAULT '[]',
    closed              INTEGER NOT NULL DEFAULT 0,
    intent_ns           INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (instrument_id, error_fingerprint, github_repo)
);

-- Silences: event_type NULL = every event of the instrument; fingerprint NULL = every class.
CREATE TABLE notification_silences (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    instrument_id TEXT    NOT NULL,
    event_type    TEXT,
    fingerprint   TEXT,
    silenced_by   TEXT    NOT NULL,
    silenced_at   INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    reason        TEXT
);
CREATE INDEX idx_silences_active ON notification_silences (instrument_id, expires_at);

-- The outbox: one row per notifying event (written in the event's transaction) or digest.
CREATE TABLE notification_outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
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
-- A re-sent event is no second notification.
CREATE UNIQUE INDEX notification_outbox_event ON notification_outbox (span_id, ordinal) WHERE kind = 'event';
CREATE INDEX notification_outbox_due ON notification_outbox (state, next_attempt_ns);

-- Rate-limit windows of (instrument, class, Slack webhook variable).
CREATE TABLE notification_windows (
    instrument_id  TEXT    NOT NULL,
    fingerprint    TEXT    NOT NULL,
    destination    TEXT    NOT NULL,
    start_ns       INTEGER NOT NULL,
    window_ns      INTEGER NOT NULL,
    sent           INTEGER NOT NULL,
    suppressed     INTEGER NOT NULL,
    last_event     TEXT,
    PRIMARY KEY (instrument_id, fingerprint, destination)
);

-- What was delivered, suppressed or failed, newest kept.
CREATE TABLE notification_deliveries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ns         INTEGER NOT NULL,
    instrument_id TEXT    NOT NULL,
    event_name    TEXT    NOT NULL,
    fingerprint   TEXT    NOT NULL,
    channel       TEXT    NOT NULL,
    outcome       TEXT    NOT NULL,
    detail        TEXT    NOT NULL
);
CREATE INDEX notification_deliveries_instrument ON notification_deliveries (instrument_id, id);
