//! Values crossing the `Store` boundary: write batches and their outcome, and query results.

use helix_model::{EntityCreated, LogRecorded, Metadata, OperationRecorded, SpanRecorded, Status};
use serde::{Deserialize, Serialize};

use crate::StoreResult;

/// One record to apply, in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteRecord {
    Created(EntityCreated),
    Operation(OperationRecorded),
    Log(LogRecorded),
    /// Any acknowledged span, for the span store; idempotent by (trace, span).
    Span(SpanRecorded),
}

/// Everything the writer commits in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    pub records: Vec<WriteRecord>,
    /// Refuse the whole batch ([`crate::StoreError::InstrumentConflict`]) when a record names
    /// an entity owned by another instrument, instead of skipping that record: the senders
    /// are authenticated, so such a record is an attempt to write another instrument's data.
    pub refuse_conflicts: bool,
    /// The (instrument, event name) pairs that notify: their new events are recorded in the
    /// notification outbox in the batch's transaction.
    pub notify: crate::notify::NotifySet,
}

impl WriteBatch {
    /// A batch that skips (and counts) records on entities of other instruments.
    pub fn of(records: Vec<WriteRecord>) -> WriteBatch {
        WriteBatch { records, refuse_conflicts: false, notify: Default::default() }
    }
}

/// A record on an entity owned by another instrument, in a batch that refuses conflicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstrumentConflict {
    pub entity_id: String,
    /// The instrument owning the entity.
    pub owner: String,
    /// The instrument the record came from.
    pub instrument: String,
}

/// What a committed batch changed, for metrics. Re-applied (duplicate) records count nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteOutcome {
    /// Entities that got their creation for the first time (new rows and placeholder upgrades).
    pub entities_created: Vec<EntityCount>,
    /// Placeholders inserted for operations on unknown entities.
    pub placeholders_created: u64,
    /// Newly inserted operation rows.
    pub operations_inserted: u64,
    /// Newly inserted events, in record order.
    pub events_inserted: Vec<EventCount>,
    /// Creation spans for an entity that already had a different creation span.
    pub recreations: u64,
    /// Spans naming an entity owned by another instrument: not applied.
    pub instrument_conflicts: u64,
    /// Newly inserted log records.
    pub logs_inserted: u64,
    /// Newly inserted spans (a re-sent span counts nothing).
    pub spans_inserted: u64,
    /// Notifying events recorded in the outbox one by one.
    pub notifications_recorded: u64,
    /// Notifying events that found the outbox full: counted in their class's overflow row.
    pub notifications_coalesced: u64,
}

/// One newly inserted event, as the metrics count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCount {
    pub instrument_id: String,
    pub event_name: String,
}

impl EventCount {
    pub fn new(instrument_id: &str, event_name: &str) -> Self {
        EventCount { instrument_id: instrument_id.to_owned(), event_name: event_name.to_owned() }
    }

    /// A `helix.error` event (the ones `helix_errors_total` counts).
    pub fn is_error(&self) -> bool {
        self.event_name == helix_model::interpret::ERROR_EVENT
    }
}

/// What a store's retention jobs have done since it opened, kept by the jobs themselves.
#[derive(Debug, Default)]
pub struct RetentionProgress {
    passes: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
    removed: std::sync::atomic::AtomicU64,
    last_pass_ns: std::sync::atomic::AtomicI64,
}

impl RetentionProgress {
    /// One pass of a retention job ended at `now_ns`, with the rows (or spans) it removed.
    pub fn record(&self, result: &StoreResult<u64>, now_ns: i64) {
        use std::sync::atomic::Ordering::Relaxed;
        match result {
            Ok(n) => {
                self.passes.fetch_add(1, Relaxed);
                self.removed.fetch_add(*n, Relaxed);
            }
            Err(_) => {
                self.failed.fetch_add(1, Relaxed);
            }
        }
        self.last_pass_ns.store(now_ns, Relaxed);
    }

    pub fn snapshot(&self) -> RetentionSnapshot {
        use std::sync::atomic::Ordering::Relaxed;
        let last = self.last_pass_ns.load(Relaxed);
        RetentionSnapshot {
            passes: self.passes.load(Relaxed),
            failed_passes: self.failed.load(Relaxed),
            removed: self.removed.load(Relaxed),
            last_pass_ns: (last > 0).then_some(last),
        }
    }
}

/// [`RetentionProgress`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetentionSnapshot {
    pub passes: u64,
    pub failed_passes: u64,
    /// Rows and spans removed, every job together.
    pub removed: u64,
    pub last_pass_ns: Option<i64>,
}

/// What the SQLite span store's in-memory directory holds (docs/storage.md "Span directory").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SpanDirectoryStats {
    /// Memory the directory takes (entries, filters, block list), counted.
    pub bytes: u64,
    /// Its cap (`HELIX_SPAN_DIRECTORY_BYTES`).
    pub cap_bytes: u64,
    /// Entries held (trace fingerprints of the open and the newest sealed blocks).
    pub entries: u64,
    /// Sealed blocks whose entries are held.
    pub resident_blocks: u64,
    /// Evicted blocks that keep a filter.
    pub filtered_blocks: u64,
}

/// How many database connections a store holds, for the `helix_db_connections_*` gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connections {
    /// Connections doing work right now.
    pub in_use: usize,
    /// Connections open (in use or idle).
    pub open: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityCount {
    pub entity_id: String,
    pub instrument_id: String,
    pub stage: String,
    pub status: Status,
}

/// An `entities` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub id: String,
    pub instrument_id: String,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub timestamp_ns: i64,
    pub end_ns: Option<i64>,
    pub stage: Option<String>,
    pub service_name: Option<String>,
    pub process_name: Option<String>,
    pub status: Status,
    pub placeholder: bool,
    pub parent_ids: Vec<String>,
    pub metadata: Metadata,
    /// Ingest time, RFC 3339 UTC.
    pub created_at: String,
}

/// An `entity_operations` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub entity_id: String,
    pub instrument_id: String,
    pub operation: String,
    pub trace_id: String,
    pub span_id: String,
    pub timestamp_ns: i64,
    pub duration_ns: i64,
    pub status: Status,
    pub service_name: Option<String>,
    pub metadata: Metadata,
    pub created_at: String,
}

/// Limit and opaque cursor of a list call.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    pub limit: usize,
    pub cursor: Option<String>,
}

impl PageRequest {
    pub fn first(limit: usize) -> Self {
        PageRequest { limit, cursor: None }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Present when more rows exist; pass it back as `PageRequest::cursor`.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ancestors,
    Descendants,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LineageQuery {
    pub root: String,
    pub direction: Direction,
    /// `None`: unbounded.
    pub max_depth: Option<u32>,
    /// Node budget of this page (the root is not counted).
    pub limit: usize,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineageNode {
    pub id: String,
    /// 0 for the root, 1 for its parents (or children), …
    pub depth: u32,
    pub stage: Option<String>,
    pub status: Status,
    pub instrument_id: String,
    pub timestamp_ns: i64,
    pub parent_ids: Vec<String>,
    pub placeholder: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct Edge {
    pub source: String,
    pub target: String,
}

/// A breadth-first walk. Nodes are unique, ordered by depth, then timestamp, then ID; edges
/// join returned nodes only. Parents that do not exist as entities are not nodes.
///
/// Paging: the root is on the first page only; every edge is on the page of its later
/// endpoint (in walk order), so concatenating all pages gives each node and each edge between
/// them exactly once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    pub root: String,
    pub direction: Direction,
    pub nodes: Vec<LineageNode>,
    pub edges: Vec<Edge>,
    /// True when the node budget cut the walk.
    pub partial: bool,
    pub next_cursor: Option<String>,
}

/// One descendant as an impact counts and lists it: the walk's columns, without parents or
/// metadata (an impact reads up to hundreds of thousands of them).
#[derive(Debug, Clone, PartialEq)]
pub struct Descendant {
    pub id: String,
    /// The shortest distance from the root: 1 for its children, …
    pub depth: u32,
    pub instrument_id: String,
    pub stage: Option<String>,
    pub status: Status,
    pub timestamp_ns: i64,
    pub placeholder: bool,
}

/// Every descendant of a root once, in the order of a descendants `/lineage` walk (depth, then
/// timestamp, then ID), the root excluded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Descendants {
    /// At most the `cap` asked for.
    pub nodes: Vec<Descendant>,
    /// True when more than `cap` descendants exist within the depth.
    pub partial: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GraphQuery {
    pub up: u32,
    pub down: u32,
    pub limit: usize,
}

impl Default for GraphQuery {
    fn default() -> Self {
        GraphQuery { up: 10, down: 2, limit: 500 }
    }
}

/// A node of the compatible `/graph` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphNode {
    pub id: String,
    pub instrument_id: String,
    pub trace_id: Option<String>,
    pub timestamp_ns: i64,
    pub parent_ids: Vec<String>,
    pub metadata: Metadata,
    pub has_error: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<Edge>,
}

/// Filters of the entity search; every field is optional and they combine with AND.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntityFilter {
    pub instrument_id: Option<String>,
    pub stage: Option<String>,
    pub status: Option<Status>,
    /// Creation timestamp lower bound, inclusive.
    pub from_ns: Option<i64>,
    /// Creation timestamp upper bound, exclusive.
    pub to_ns: Option<i64>,
    /// Entity ID prefix (an exact ID is a prefix of itself).
    pub id_prefix: Option<String>,
    /// `metadata[key] == value` for every pair.
    pub metadata: Vec<(String, String)>,
    /// `Some(true)`: only suspect entities (flagged, or derived at any depth from an entity
    /// with an active flag); `Some(false)`: only the others.
    pub suspect: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageSummary {
    pub stage: String,
    pub count: u64,
    pub error_count: u64,
    pub last_seen_ns: i64,
}

/// The stored spans of one trace, ordered by start time then span ID.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTrace {
    pub spans: Vec<SpanRecorded>,
    /// True when the trace has more spans than the read's cap.
    pub partial: bool,
}

/// Filters of the trace search; every field is optional and they combine with AND. A trace
/// matches when one of its spans matches every span-level filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceFilter {
    pub service_name: Option<String>,
    /// Exact span name.
    pub span_name: Option<String>,
    pub instrument_id: Option<String>,
    pub entity_id: Option<String>,
    /// Only traces with at least one span whose status is ERROR.
    pub errors_only: bool,
    /// Trace duration bounds (inclusive), over the trace's earliest start to latest end.
    pub min_duration_ns: Option<i64>,
    pub max_duration_ns: Option<i64>,
    /// Trace start lower bound, inclusive.
    pub from_ns: Option<i64>,
    /// Trace start upper bound, exclusive.
    pub to_ns: Option<i64>,
}

/// One row of the trace search, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceSummary {
    pub trace_id: String,
    /// Name and service of the root span (the earliest span without a parent, or the earliest span).
    pub root_name: String,
    pub root_service: Option<String>,
    pub start_ns: i64,
    pub duration_ns: i64,
    pub span_count: u64,
    pub error_count: u64,
    /// Entities named by the trace's creation and operation spans, sorted, unique.
    pub entity_ids: Vec<String>,
}

/// How long spans are kept and how much room they may take; older (or, over the budget, oldest)
/// spans are removed by the store's retention job in small batches. Entity, operation and event
/// rows are never touched by span retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanRetention {
    /// Spans of traces that started longer ago than this are removed; `None` keeps them.
    pub max_age: Option<std::time::Duration>,
    /// Approximate bytes the stored spans may take; `None`: no budget.
    pub max_bytes: Option<u64>,
}

impl Default for SpanRetention {
    fn default() -> Self {
        SpanRetention { max_age: Some(std::time::Duration::from_secs(7 * 86_400)), max_bytes: None }
    }
}

/// Filters of the log search; every field is optional and they combine with AND.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogFilter {
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    /// The entity's lines: those naming it (`helix_entity_id`) and every line of its
    /// creation's and operations' traces (so lines logged before `set_entity_id()` count).
    pub entity_id: Option<String>,
    pub instrument_id: Option<String>,
    pub service_name: Option<String>,
    pub process_name: Option<String>,
    /// Lowest OTLP severity number (`WARN` is 13).
    pub min_severity: Option<i32>,
    /// Loki's `level` label: the severity text, trimmed of spaces and lowercased, equals this
    /// (printable ASCII; a severity with any other character is let through for the caller to
    /// judge, as the Loki layer does for every label).
    pub level: Option<String>,
    /// Case-insensitive substring of the body.
    pub text: Option<String>,
    /// Record timestamp lower bound, inclusive.
    pub from_ns: Option<i64>,
    /// Record timestamp upper bound, exclusive.
    pub to_ns: Option<i64>,
    pub order: LogOrder,
}

/// The order of a log search: by timestamp, ties in arrival order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogOrder {
    /// Oldest first (an entity's or a trace's story).
    #[default]
    Asc,
    /// Newest first (search, tail).
    Desc,
}

/// A log field whose distinct values the Loki label endpoints list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogField {
    Service,
    Process,
    Instrument,
    Severity,
    Trace,
}

/// How bad a flagged entity is: known bad, or only suspected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Bad,
    Suspect,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Bad => "bad",
            Severity::Suspect => "suspect",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "bad" => Some(Severity::Bad),
            "suspect" => Some(Severity::Suspect),
            _ => None,
        }
    }
}

/// A flag to raise on an entity (`flag_id` is chosen by the caller, unique).
#[derive(Debug, Clone, PartialEq)]
pub struct NewFlag {
    pub flag_id: String,
    pub entity_id: String,
    pub severity: Severity,
    pub reason: String,
    /// Who says so (free text from the request).
    pub flagged_by: String,
    /// The token's subject that raised it when auth is on (`None` with auth off).
    pub principal: Option<String>,
}

/// An `entity_flags` row. Flags are never deleted: a cleared flag keeps its row (the audit
/// history) with `cleared_at` and `cleared_by`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    pub flag_id: String,
    pub entity_id: String,
    pub severity: Severity,
    pub reason: String,
    pub flagged_by: String,
    pub principal: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    pub cleared_at: Option<String>,
    pub cleared_by: Option<String>,
}

impl Flag {
    pub fn is_active(&self) -> bool {
        self.cleared_at.is_none()
    }
}

/// The outcome of raising a flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagAdded {
    Added(Flag),
    UnknownEntity,
    /// The entity already has [`crate::MAX_FLAGS_PER_ENTITY`] flags.
    TooMany,
}

/// The outcome of clearing a flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleared {
    /// Cleared now.
    Now(Flag),
    /// It was cleared before (the row as it is).
    Already(Flag),
    /// No such flag on that entity.
    Unknown,
}

/// One active flag that makes an entity suspect, and the shortest path by which it reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuspectBecause {
    pub flag_id: String,
    /// The flagged entity (the entity itself for its own flag).
    pub entity_id: String,
    pub reason: String,
    pub flagged_by: String,
    pub severity: Severity,
    pub created_at: String,
    /// Entity IDs from the flagged entity down to the suspect one, both included.
    pub path: Vec<String>,
}

/// Why an entity is (or is not) suspect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspicion {
    /// One entry per active flag on the entity or on any of its ancestors, nearest first.
    pub because: Vec<SuspectBecause>,
    /// True when the entity has more ancestors than one suspicion check reads
    /// ([`crate::MAX_SUSPICION_ANCESTORS`]): flags beyond them are not seen.
    pub partial: bool,
}
