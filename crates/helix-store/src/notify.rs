//! The notification side of a store: the outbox (notifications recorded in the transaction of
//! the event that caused them, claimed and delivered by a dispatcher), rate-limit windows and
//! their digests, silences, the GitHub issue of each error class, and the delivery log.
//! `NotifyStore` is implemented by both backends; the rules of delivery live in the herald.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use helix_model::{EntityEvent, Metadata};
use serde::{Deserialize, Serialize};

use crate::StoreResult;

/// The (instrument, event name) pairs whose events notify. Cheap to clone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotifySet(Arc<HashSet<(String, String)>>);

impl NotifySet {
    pub fn new(pairs: HashSet<(String, String)>) -> NotifySet {
        NotifySet(Arc::new(pairs))
    }

    pub fn contains(&self, instrument_id: &str, event_name: &str) -> bool {
        // Most batches run with no notifications configured; skip the allocation then.
        !self.0.is_empty() && self.0.contains(&(instrument_id.to_owned(), event_name.to_owned()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A new event of a batch that notifies, with what its outbox row needs.
#[derive(Debug, PartialEq)]
pub struct OutboxEvent<'b> {
    pub event: &'b EntityEvent,
    pub stage: String,
    pub fingerprint: String,
}

impl<'b> OutboxEvent<'b> {
    /// `span_stage`: the span's name, used when the event names no `stage`.
    pub fn of(event: &'b EntityEvent, span_stage: &str) -> OutboxEvent<'b> {
        let stage = event.metadata.get("stage").map_or(span_stage, String::as_str).to_owned();
        let fingerprint =
            helix_model::fingerprint::fingerprint(&event.instrument_id, &event.event_name, message_of(event), &stage);
        OutboxEvent { event, stage, fingerprint }
    }
}

/// The message of an event: `message`, else `exception.message`, else empty.
pub fn message_of(event: &EntityEvent) -> &str {
    event.metadata.get("message").or_else(|| event.metadata.get("exception.message")).map_or("", String::as_str)
}

/// What a row of the outbox asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxKind {
    /// One event to notify about through its rule's backends.
    Event,
    /// The digest of a rate-limit window's suppressed messages, for one Slack webhook.
    Digest,
}

impl OutboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Event => "event",
            OutboxKind::Digest => "digest",
        }
    }

    pub fn parse(text: &str) -> OutboxKind {
        if text == "digest" {
            OutboxKind::Digest
        } else {
            OutboxKind::Event
        }
    }
}

/// Which steps of a row are done, kept between attempts so a retry never repeats one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    #[serde(default)]
    pub github_done: bool,
    #[serde(default)]
    pub issue_urls: Vec<String>,
    /// The rate limit's verdict, taken once (a retry must not count the message again).
    #[serde(default)]
    pub slack_allowed: Option<bool>,
    #[serde(default)]
    pub slack_done: bool,
    #[serde(default)]
    pub webhook_done: bool,
}

/// A claimed outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub id: i64,
    pub kind: OutboxKind,
    pub instrument_id: String,
    pub event_name: String,
    pub entity_id: String,
    pub stage: String,
    pub fingerprint: String,
    pub timestamp_ns: i64,
    pub metadata: Metadata,
    /// For a digest: the webhook variable it goes to.
    pub destination: String,
    /// For a digest: how many messages were suppressed, in a window of `digest_window_ns`.
    pub digest_count: u64,
    pub digest_window_ns: i64,
    pub attempts: u32,
    pub progress: Progress,
}

/// The rate-limit window of one error class on one Slack webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct RateKey {
    pub instrument_id: String,
    pub fingerprint: String,
    /// The webhook's environment variable (never the URL).
    pub destination: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Send,
    Suppress,
}

/// A silence to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSilence {
    pub instrument_id: String,
    pub event_type: Option<String>,
    pub fingerprint: Option<String>,
    pub silenced_by: String,
    pub reason: Option<String>,
    pub expires_ns: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Silence {
    pub id: i64,
    pub instrument_id: String,
    pub event_type: Option<String>,
    pub fingerprint: Option<String>,
    pub silenced_by: String,
    pub silenced_ns: i64,
    pub expires_ns: i64,
    pub reason: Option<String>,
}

impl Silence {
    /// Whether it covers an event: instrument-wide, an event type, or an event type and fingerprint.
    pub fn covers(&self, instrument_id: &str, event_name: &str, fingerprint: &str, now_ns: i64) -> bool {
        self.expires_ns > now_ns
            && self.instrument_id == instrument_id
            && match (&self.event_type, &self.fingerprint) {
                (None, _) => true,
                (Some(t), None) => t == event_name,
                (Some(t), Some(f)) => t == event_name && f == fingerprint,
            }
    }
}

/// The GitHub issue of one error class in one repository (`notification_issues`).
#[derive(Debug, Clone, PartialEq)]
pub struct IssueRecord {
    pub instrument_id: String,
    pub fingerprint: String,
    pub repo: String,
    /// 0 while its creation is under way: the issue may exist without its number recorded.
    pub issue_number: i64,
    pub entity_count: i64,
    pub first_seen_ns: i64,
    pub last_updated_ns: i64,
    /// Newest first, at most 10.
    pub recent_entity_ids: Vec<String>,
    /// Closed by the herald (auto-close) or found closed.
    pub closed: bool,
    /// When the creation was started (a retry looks for issues created since).
    pub intent_ns: i64,
}

/// One line of the delivery log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub at_ns: i64,
    pub instrument_id: String,
    pub event_name: String,
    pub fingerprint: String,
    /// `slack`, `github`, `webhook`, `silence`.
    pub channel: String,
    /// `sent`, `digest`, `suppressed`, `retrying`, `failed`.
    pub outcome: String,
    /// What happened, e.g. `HTTP 500`, the issue URL; never a secret.
    pub detail: String,
}

/// Wall-clock time in ns since the epoch (0 before 1970).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// At most this many delivery log rows are kept (older ones are pruned when a row is added).
pub const DELIVERY_LOG_ROWS: i64 = 10_000;

/// The notification tables of a store.
#[async_trait]
pub trait NotifyStore: Send + Sync {
    /// Up to `limit` pending rows due at `now_ns` that no live lease holds, leased to `owner`
    /// until `now_ns + lease_ns`, oldest first. Several replicas never claim the same row.
    async fn claim_outbox(&self, owner: &str, now_ns: i64, lease_ns: i64, limit: usize)
        -> StoreResult<Vec<OutboxItem>>;

    /// Save the steps done of a row `owner` holds.
    async fn save_progress(&self, id: i64, owner: &str, progress: &Progress) -> StoreResult<()>;

    /// The row is finished (`failed`: given up); it is no longer pending.
    async fn finish_outbox(
        &self,
        id: i64,
        owner: &str,
        failed: bool,
        error: Option<&str>,
        now_ns: i64,
    ) -> StoreResult<()>;

    /// Release the row for another attempt at `next_ns`.
    async fn retry_outbox(&self, id: i64, owner: &str, attempts: u32, next_ns: i64, error: &str) -> StoreResult<()>;

    /// Rows not finished yet.
    async fn outbox_depth(&self) -> StoreResult<u64>;

    /// Count one message of the key's window at `now_ns`: sent while the window has room,
    /// suppressed (remembering `last` for the digest) when full. An expired window with
    /// suppressed messages becomes a digest row, and a new window opens.
    async fn rate_take(
        &self,
        key: &RateKey,
        now_ns: i64,
        window_ns: i64,
        max_per_window: u32,
        last: &OutboxItem,
    ) -> StoreResult<RateDecision>;

    /// Windows ended by `now_ns`: a digest row for each that suppressed messages; all removed.
    async fn flush_windows(&self, now_ns: i64) -> StoreResult<u64>;

    async fn create_silence(&self, silence: &NewSilence, now_ns: i64) -> StoreResult<Silence>;

    /// Every silence of the instrument, expired ones too, newest first.
    async fn silences(&self, instrument_id: &str) -> StoreResult<Vec<Silence>>;

    /// Silences in force at `now_ns`, of every instrument.
    async fn active_silences(&self, now_ns: i64) -> StoreResult<Vec<Silence>>;

    async fn silence(&self, id: i64) -> StoreResult<Option<Silence>>;

    /// Whether there was one.
    async fn delete_silence(&self, id: i64) -> StoreResult<bool>;

    /// End a silence now (it stays listed, expired). Whether there was one.
    async fn expire_silence(&self, id: i64, now_ns: i64) -> StoreResult<bool>;

    async fn issue(&self, instrument_id: &str, fingerprint: &str, repo: &str) -> StoreResult<Option<IssueRecord>>;

    async fn put_issue(&self, record: &IssueRecord) -> StoreResult<()>;

    /// Insert `record` (a creation intent) unless the key has a record; whether it was inserted.
    async fn begin_issue(&self, record: &IssueRecord) -> StoreResult<bool>;

    /// Mark an open record closed; whether this call did (so one replica closes each issue).
    async fn mark_issue_closed(
        &self,
        instrument_id: &str,
        fingerprint: &str,
        repo: &str,
        closed: bool,
    ) -> StoreResult<bool>;

    async fn delete_issue(&self, instrument_id: &str, fingerprint: &str, repo: &str) -> StoreResult<()>;

    /// Issues of an instrument (every instrument for `None`).
    async fn issues(&self, instrument_id: Option<&str>) -> StoreResult<Vec<IssueRecord>>;

    async fn log_delivery(&self, delivery: &Delivery) -> StoreResult<()>;

    /// The newest deliveries first.
    async fn deliveries(&self, instrument_id: Option<&str>, limit: usize) -> StoreResult<Vec<Delivery>>;
}
