//! The notification side of a store: the outbox (notifications recorded in the transaction of
//! the event that caused them, claimed and delivered by a dispatcher), rate-limit windows and
//! their digests, silences, the GitHub issue of each error class, and the delivery log.
//! `NotifyStore` is implemented by both backends; the rules of delivery live in the herald.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use helix_model::{EntityEvent, Metadata};
use serde::{Deserialize, Serialize};

use crate::StoreResult;

/// Pending outbox rows at most, by default (`NotifySet::with_outbox_max`).
pub const DEFAULT_OUTBOX_MAX: u64 = 100_000;

/// The (instrument, event name) pairs whose events notify, and the bound of the outbox they
/// are recorded in. Cheap to clone.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifySet {
    /// Event names by instrument: looked up per event with borrowed keys, no allocation.
    pairs: Arc<HashMap<String, HashSet<String>>>,
    outbox_max: u64,
}

impl Default for NotifySet {
    fn default() -> Self {
        NotifySet { pairs: Arc::default(), outbox_max: DEFAULT_OUTBOX_MAX }
    }
}

impl NotifySet {
    pub fn new(pairs: HashSet<(String, String)>) -> NotifySet {
        let mut by_instrument: HashMap<String, HashSet<String>> = HashMap::new();
        for (instrument, event) in pairs {
            by_instrument.entry(instrument).or_default().insert(event);
        }
        NotifySet { pairs: Arc::new(by_instrument), ..NotifySet::default() }
    }

    /// At most `max` pending rows: a batch's notifying events beyond it are coalesced, per
    /// error class, into one row that tells how many (`OutboxKind::Overflow`).
    pub fn with_outbox_max(self, max: u64) -> NotifySet {
        NotifySet { outbox_max: max, ..self }
    }

    pub fn outbox_max(&self) -> u64 {
        self.outbox_max
    }

    pub fn contains(&self, instrument_id: &str, event_name: &str) -> bool {
        self.pairs.get(instrument_id).is_some_and(|events| events.contains(event_name))
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Whether a batch's `new` outbox rows surely fit under `max`. `span` is the outbox's id
/// range (min, max): every row in it is pending (finished rows are deleted), so its width
/// bounds their count at the cost of two index lookups. Only when it does not is the exact
/// count asked for (`outbox_room`).
pub(crate) fn outbox_fits(span: (Option<i64>, Option<i64>), new: usize, max: u64) -> bool {
    let width = match span {
        (Some(lo), Some(hi)) => hi.saturating_sub(lo).saturating_add(1).max(0).unsigned_abs(),
        _ => 0,
    };
    width.saturating_add(new as u64) <= max
}

/// How many of `new` rows fit with `pending` rows in the outbox.
pub(crate) fn outbox_room(pending: u64, new: usize, max: u64) -> usize {
    usize::try_from(max.saturating_sub(pending)).unwrap_or(usize::MAX).min(new)
}

/// The events of a batch that did not fit in the outbox, per class (instrument, event,
/// fingerprint): how many, and the last of them (what its message tells of).
pub(crate) fn coalesce<'a, 'b>(rows: &'a [OutboxEvent<'b>]) -> Vec<(&'a OutboxEvent<'b>, i64)> {
    let mut classes: Vec<(&OutboxEvent<'_>, i64)> = Vec::new();
    let mut index: HashMap<(&str, &str, &str), usize> = HashMap::new();
    for o in rows {
        let key = (o.event.instrument_id.as_str(), o.event.event_name.as_str(), o.fingerprint.as_str());
        match index.get(&key) {
            Some(&i) => classes[i] = (o, classes[i].1 + 1),
            None => {
                index.insert(key, classes.len());
                classes.push((o, 1));
            }
        }
    }
    classes
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

/// The message an event's notification carries when its event row is gone before delivery
/// (deleted by hand, or a TimescaleDB chunk dropped by a retention policy; the herald's own
/// retention keeps an event until its notification is delivered).
pub const OCCURRENCE_GONE: &str = "the event was removed from the store before this notification was delivered";

/// An event's row whose event row is gone: still delivered, as its class (instrument, event,
/// entity, fingerprint and stage are the row's own), at the time it was recorded, with
/// `OCCURRENCE_GONE` for its message.
pub(crate) fn occurrence_gone(item: &mut OutboxItem, created_ns: i64) {
    item.timestamp_ns = created_ns;
    item.metadata = Metadata::from([("message".to_owned(), OCCURRENCE_GONE.to_owned())]);
}

/// What a row of the outbox asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxKind {
    /// One event to notify about through its rule's backends.
    Event,
    /// The digest of a rate-limit window's suppressed messages, for one Slack webhook.
    Digest,
    /// Events of one class that found the outbox full (`digest_count` of them, the last one
    /// described): delivered as one message through the class's rule.
    Overflow,
}

impl OutboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Event => "event",
            OutboxKind::Digest => "digest",
            OutboxKind::Overflow => "overflow",
        }
    }

    pub fn parse(text: &str) -> OutboxKind {
        match text {
            "digest" => OutboxKind::Digest,
            "overflow" => OutboxKind::Overflow,
            _ => OutboxKind::Event,
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

/// A rate-limit verdict to take in a round's transaction (`NotifyStore::write_round`).
#[derive(Debug, Clone, PartialEq)]
pub struct RateTake {
    /// The outbox row it is for.
    pub id: i64,
    pub key: RateKey,
    pub window_ns: i64,
    pub max_per_window: u32,
    /// What the window's digest tells of the row if it is suppressed (`last_event`).
    pub last: serde_json::Value,
    /// The row's progress: saved with the verdict, so a later attempt never counts it again.
    pub progress: Progress,
    /// Nothing else is left to do for the row when it is suppressed: it is finished in the
    /// same transaction, without a send.
    pub finish_if_suppressed: bool,
}

/// What becomes of a row after an attempt (or without one).
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// Delivered, or given up on (the delivery log says why): the row leaves the outbox.
    Finish { id: i64 },
    /// Released for another attempt at `next_ns`, keeping the steps done.
    Retry { id: i64, attempts: u32, next_ns: i64, error: String, progress: Progress },
}

/// The writes of a dispatcher round (or part of one), applied in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoundWrites {
    pub takes: Vec<RateTake>,
    pub settle: Vec<Settle>,
    pub log: Vec<Delivery>,
}

impl RoundWrites {
    pub fn is_empty(&self) -> bool {
        self.takes.is_empty() && self.settle.is_empty() && self.log.is_empty()
    }

    /// Move everything out (what was written by a flush).
    pub fn take(&mut self) -> RoundWrites {
        std::mem::take(self)
    }
}

/// What a window's digest says of the last suppressed event.
pub fn last_event(item: &OutboxItem) -> serde_json::Value {
    serde_json::json!({
        "event_name": item.event_name, "entity_id": item.entity_id, "stage": item.stage,
        "timestamp_ns": item.timestamp_ns, "metadata": item.metadata,
    })
}

/// The stored state of one rate-limit window.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub start_ns: i64,
    pub window_ns: i64,
    pub sent: i64,
    pub suppressed: i64,
    pub last_event: Option<serde_json::Value>,
}

impl Window {
    /// Count one message at `now_ns`: sent while the window has room, suppressed (keeping
    /// `last` for the digest) when full. An ended window opens anew, and the digest of what it
    /// suppressed is returned for the outbox.
    pub fn take(
        &mut self,
        key: &RateKey,
        now_ns: i64,
        window_ns: i64,
        max_per_window: u32,
        last: &serde_json::Value,
    ) -> (RateDecision, Option<DigestRow>) {
        if self.start_ns.saturating_add(self.window_ns) > now_ns {
            if self.sent < i64::from(max_per_window) {
                self.sent += 1;
                (RateDecision::Send, None)
            } else {
                self.suppressed += 1;
                self.last_event = Some(last.clone());
                (RateDecision::Suppress, None)
            }
        } else {
            let digest = DigestRow::of(key, self, now_ns);
            *self = Window { start_ns: now_ns, window_ns, sent: 1, suppressed: 0, last_event: None };
            (RateDecision::Send, digest)
        }
    }
}

/// The outbox row of a window's digest, with the last suppressed event it tells of.
#[derive(Debug, Clone, PartialEq)]
pub struct DigestRow {
    pub instrument_id: String,
    pub fingerprint: String,
    pub destination: String,
    pub event_name: String,
    pub entity_id: String,
    pub stage: String,
    pub timestamp_ns: i64,
    pub metadata: serde_json::Value,
    pub count: i64,
    pub window_ns: i64,
}

impl DigestRow {
    /// `None` when the window suppressed nothing.
    pub fn of(key: &RateKey, window: &Window, now_ns: i64) -> Option<DigestRow> {
        if window.suppressed <= 0 {
            return None;
        }
        let last = window.last_event.clone().unwrap_or_default();
        let text = |k: &str| last.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
        Some(DigestRow {
            instrument_id: key.instrument_id.clone(),
            fingerprint: key.fingerprint.clone(),
            destination: key.destination.clone(),
            event_name: text("event_name"),
            entity_id: text("entity_id"),
            stage: text("stage"),
            timestamp_ns: last.get("timestamp_ns").and_then(serde_json::Value::as_i64).unwrap_or(now_ns),
            metadata: last.get("metadata").cloned().unwrap_or_else(|| serde_json::json!({})),
            count: window.suppressed,
            window_ns: window.window_ns,
        })
    }
}

/// The statements both backends run, in PostgreSQL's `$n` form (`sqlite::notify` turns `$`
/// into `?`, SQLite's numbered parameters): one text, one meaning.
pub(crate) mod sql {
    /// `$1` id, `$2` owner.
    pub const FINISH: &str = "DELETE FROM notification_outbox WHERE id = $1 AND lease_owner = $2";
    /// `$1` attempts, `$2` next attempt, `$3` error, `$4` progress, `$5` id, `$6` owner.
    pub const RETRY: &str = "UPDATE notification_outbox SET attempts = $1, next_attempt_ns = $2, last_error = $3,
             progress = $4, lease_owner = NULL, lease_until_ns = 0
         WHERE id = $5 AND lease_owner = $6";
    /// `$1` progress, `$2` id, `$3` owner.
    pub const SAVE_PROGRESS: &str = "UPDATE notification_outbox SET progress = $1 WHERE id = $2 AND lease_owner = $3";
    /// `$1` until, `$2` owner.
    pub const RENEW: &str = "UPDATE notification_outbox SET lease_until_ns = $1 WHERE lease_owner = $2";
    pub const DEPTH: &str = "SELECT count(*) FROM notification_outbox WHERE state = 'pending'";
    /// Rows an older herald kept after finishing them.
    pub const PRUNE_FINISHED: &str = "DELETE FROM notification_outbox WHERE state <> 'pending'";
    /// `$1..$3` key, `$4` start, `$5` length: a window row to lock (and fold into) if none.
    pub const ENSURE_WINDOW: &str =
        "INSERT INTO notification_windows (instrument_id, fingerprint, destination, start_ns, window_ns, sent, suppressed)
         VALUES ($1, $2, $3, $4, $5, 0, 0) ON CONFLICT DO NOTHING";
    /// `$1..$3` key.
    pub const WINDOW: &str = "SELECT start_ns, window_ns, sent, suppressed, last_event FROM notification_windows
         WHERE instrument_id = $1 AND fingerprint = $2 AND destination = $3";
    /// `$1..$3` key, `$4` start, `$5` length, `$6` sent, `$7` suppressed, `$8` last event.
    pub const PUT_WINDOW: &str = "UPDATE notification_windows SET start_ns = $4, window_ns = $5, sent = $6,
             suppressed = $7, last_event = $8
         WHERE instrument_id = $1 AND fingerprint = $2 AND destination = $3";
    /// `$1` now.
    pub const END_WINDOWS: &str = "DELETE FROM notification_windows WHERE start_ns + window_ns <= $1
         RETURNING instrument_id, fingerprint, destination, start_ns, window_ns, sent, suppressed, last_event";
    /// `$1` instrument, `$2` event, `$3` entity, `$4` stage, `$5` fingerprint, `$6` time,
    /// `$7` metadata, `$8` destination, `$9` count, `$10` window, `$11` now.
    pub const INSERT_DIGEST: &str =
        "INSERT INTO notification_outbox (kind, instrument_id, event_name, entity_id, stage, fingerprint, timestamp_ns,
             metadata, destination, digest_count, digest_window_ns, created_ns)
         VALUES ('digest', $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
    /// `$1` at, `$2` instrument, `$3` event, `$4` fingerprint, `$5` channel, `$6` outcome, `$7` detail.
    pub const LOG: &str =
        "INSERT INTO notification_deliveries (at_ns, instrument_id, event_name, fingerprint, channel, outcome, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7)";
    /// The outbox's id range (each an index lookup).
    pub const OUTBOX_SPAN: &str =
        "SELECT (SELECT min(id) FROM notification_outbox), (SELECT max(id) FROM notification_outbox)";
    /// `$1` instrument, `$2` event, `$3` fingerprint, `$4` more, `$5` entity, `$6` stage,
    /// `$7` time, `$8` metadata: add to the class's overflow row no dispatcher has started on.
    pub const ADD_OVERFLOW: &str = "UPDATE notification_outbox SET digest_count = digest_count + $4, entity_id = $5,
             stage = $6, timestamp_ns = $7, metadata = $8
         WHERE kind = 'overflow' AND instrument_id = $1 AND event_name = $2 AND fingerprint = $3
           AND lease_owner IS NULL AND attempts = 0";
    /// The same parameters, `$9` now: the class's first overflow row.
    pub const INSERT_OVERFLOW: &str =
        "INSERT INTO notification_outbox (kind, instrument_id, event_name, fingerprint, digest_count, entity_id, stage,
             timestamp_ns, metadata, created_ns)
         VALUES ('overflow', $1, $2, $3, $4, $5, $6, $7, $8, $9)";
    /// `$1` rows to keep.
    pub const PRUNE_LOG: &str = "DELETE FROM notification_deliveries
         WHERE id <= (SELECT max(id) FROM notification_deliveries) - $1";
}

/// The notification tables of a store.
#[async_trait]
pub trait NotifyStore: Send + Sync {
    /// Up to `limit` pending rows due at `now_ns` that no live lease holds, leased to `owner`
    /// until `now_ns + lease_ns`, oldest first. Several replicas never claim the same row.
    async fn claim_outbox(&self, owner: &str, now_ns: i64, lease_ns: i64, limit: usize)
        -> StoreResult<Vec<OutboxItem>>;

    /// In one transaction: the verdicts of `writes.takes` in order (rows suppressed with
    /// nothing else to do finished), the rows of `writes.settle` finished or released, the
    /// delivery log appended. Only rows `owner` holds are changed. The verdicts, in order.
    async fn write_round(&self, owner: &str, now_ns: i64, writes: &RoundWrites) -> StoreResult<Vec<RateDecision>>;

    /// Save the steps done of a row `owner` holds (a step that must never be repeated).
    async fn save_progress(&self, id: i64, owner: &str, progress: &Progress) -> StoreResult<()>;

    /// Extend the lease of every row `owner` holds to `until_ns`; how many.
    async fn renew_leases(&self, owner: &str, until_ns: i64) -> StoreResult<u64>;

    /// Rows not finished yet.
    async fn outbox_depth(&self) -> StoreResult<u64>;

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

    /// The newest deliveries first.
    async fn deliveries(&self, instrument_id: Option<&str>, limit: usize) -> StoreResult<Vec<Delivery>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RateKey {
        RateKey { instrument_id: "CHIME".into(), fingerprint: "f".into(), destination: "HOOK".into() }
    }

    #[test]
    fn a_window_sends_up_to_its_max_then_suppresses_and_its_end_yields_the_digest() {
        let mut w = Window { start_ns: 0, window_ns: 100, sent: 0, suppressed: 0, last_event: None };
        let last = |n: i64| serde_json::json!({"entity_id": format!("e{n}"), "timestamp_ns": n});
        let decisions: Vec<_> = (0..5).map(|n| w.take(&key(), n, 100, 2, &last(n))).collect();
        assert_eq!(
            decisions.iter().map(|d| d.0).collect::<Vec<_>>(),
            [
                RateDecision::Send,
                RateDecision::Send,
                RateDecision::Suppress,
                RateDecision::Suppress,
                RateDecision::Suppress
            ]
        );
        assert!(decisions.iter().all(|d| d.1.is_none()));
        // The first take after the end: sent, and the digest of the 3 suppressed, last e4.
        let (decision, digest) = w.take(&key(), 100, 50, 2, &last(100));
        assert_eq!(decision, RateDecision::Send);
        let digest = digest.expect("a digest");
        assert_eq!((digest.count, digest.window_ns, digest.entity_id.as_str(), digest.timestamp_ns), (3, 100, "e4", 4));
        assert_eq!(w, Window { start_ns: 100, window_ns: 50, sent: 1, suppressed: 0, last_event: None });
        // A window that suppressed nothing ends without a digest.
        assert!(w.take(&key(), 150, 50, 2, &last(150)).1.is_none());
    }

    #[test]
    fn the_outbox_id_range_bounds_its_rows_and_the_exact_count_decides_near_the_bound() {
        assert!(outbox_fits((None, None), 5, 5));
        assert!(!outbox_fits((None, None), 6, 5));
        assert!(outbox_fits((Some(10), Some(12)), 2, 5), "3 rows at most, 2 more fit");
        assert!(!outbox_fits((Some(10), Some(13)), 2, 5));
        assert_eq!(outbox_room(1, 10, 5), 4);
        assert_eq!(outbox_room(7, 10, 5), 0);
        assert_eq!(outbox_room(0, 3, 5), 3);
    }
}
