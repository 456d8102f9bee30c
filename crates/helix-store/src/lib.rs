//! Persistence for helixobs: the `Store` trait every backend implements, the query types the
//! API reads, the SQLite and PostgreSQL backends, and (feature `conformance`) the suite every backend must pass.

mod cursor;
mod error;
mod filter;
pub mod notify;
mod plan;
pub mod postgres;
mod redact;
mod rows;
pub mod sqlite;
mod suspicion;
mod types;
mod walk;
mod window;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::collections::HashMap;

use async_trait::async_trait;
use helix_model::{EntityEvent, SpanRef};

pub use error::{DbCause, StoreError, StoreResult};
pub use postgres::{PostgresOptions, PostgresStore};
pub use redact::redact_url;
pub use sqlite::{SqliteOptions, SqliteStore};
pub use suspicion::MAX_SUSPICION_ANCESTORS;
pub use types::*;
pub use walk::offset_page;
pub use window::*;

/// Most flags (active and cleared) one entity may carry; more are refused.
pub const MAX_FLAGS_PER_ENTITY: usize = 1_000;

/// One backend holding entities, operations, events, edges and logs.
///
/// Writes are whole batches applied in one transaction, in record order, idempotently
/// (docs/storage.md "Write semantics"). Reads never block writes for long.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Short backend name for logs and `/readyz` (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    /// The notification tables (outbox, silences, issues), where the backend has them.
    fn notify(&self) -> Option<&dyn notify::NotifyStore> {
        None
    }

    /// How many batches the writer may commit at the same time. One for a backend with a
    /// single writer (SQLite); more where transactions run side by side (PostgreSQL).
    fn write_concurrency(&self) -> usize {
        1
    }

    /// The connections this store holds right now; `None` for a backend that cannot say.
    fn connections(&self) -> Option<Connections> {
        None
    }

    /// What the span directory holds (SQLite); `None` for a backend without one.
    fn span_directory(&self) -> Option<SpanDirectoryStats> {
        None
    }

    /// What the retention jobs have done since the store opened; `None` without such jobs.
    fn retention(&self) -> Option<RetentionSnapshot> {
        None
    }

    /// The bytes the store takes (files or database); `None` when it cannot say.
    async fn size_bytes(&self) -> StoreResult<Option<u64>> {
        Ok(None)
    }

    /// Apply a batch atomically: either every record is committed or none is.
    async fn write(&self, batch: &WriteBatch) -> StoreResult<WriteOutcome>;

    /// [`Self::write`] of a batch the caller shares: a backend that writes on another thread
    /// (SQLite) takes it there without copying it. The herald's writer uses this one.
    async fn write_shared(&self, batch: std::sync::Arc<WriteBatch>) -> StoreResult<WriteOutcome> {
        self.write(&batch).await
    }

    /// TraceStore fallback: creation span of each known, non-placeholder entity among `entity_ids`.
    async fn span_refs(&self, entity_ids: &[String]) -> StoreResult<HashMap<String, SpanRef>>;

    /// Database reachable and schema current.
    async fn check_ready(&self) -> StoreResult<()>;

    async fn entity(&self, id: &str) -> StoreResult<Option<Entity>>;

    /// The existing entities among `ids`, in any order (unknown IDs are absent). Callers keep
    /// `ids` to a bounded batch.
    async fn entities(&self, ids: &[String]) -> StoreResult<Vec<Entity>>;

    /// Number of entities that name `id` as a parent.
    async fn children_count(&self, id: &str) -> StoreResult<u64>;

    /// Events of an entity, oldest first (by timestamp, then span, then ordinal).
    async fn events(&self, entity_id: &str, page: &PageRequest) -> StoreResult<Page<EntityEvent>>;

    /// Operations of an entity, oldest first. Does not include the synthetic "creation" row.
    async fn operations(&self, entity_id: &str, page: &PageRequest) -> StoreResult<Page<Operation>>;

    /// Breadth-first walk from `query.root`; `None` when the root is unknown.
    async fn lineage(&self, query: &LineageQuery) -> StoreResult<Option<Lineage>>;

    /// Every descendant of `root` within `max_depth` levels, each once, in `/lineage`'s order,
    /// with only the columns an impact counts and lists; stops once more than `cap` are known
    /// (`partial`). `None` when the root is unknown.
    async fn descendants(&self, root: &str, max_depth: Option<u32>, cap: usize) -> StoreResult<Option<Descendants>>;

    /// The compatible `/graph` view; `None` when the entity is unknown.
    async fn graph(&self, id: &str, query: &GraphQuery) -> StoreResult<Option<Graph>>;

    /// Entities matching the filter, newest first (timestamp descending, then ID ascending).
    async fn search(&self, filter: &EntityFilter, page: &PageRequest) -> StoreResult<Page<Entity>>;

    /// Instruments that have sent data (applied creations, operations, logs), sorted; the
    /// empty fallback instrument `""` is not listed.
    async fn instruments(&self) -> StoreResult<Vec<String>>;

    /// Per-stage counts of an instrument's (non-placeholder) entities, sorted by stage.
    async fn stages(&self, instrument_id: &str) -> StoreResult<Vec<StageSummary>>;

    /// Log records correlated with an entity (by `helix_entity_id` or by one of its traces), oldest first.
    async fn logs(&self, entity_id: &str, page: &PageRequest) -> StoreResult<Page<helix_model::LogRecorded>> {
        let filter = LogFilter { entity_id: Some(entity_id.to_owned()), ..LogFilter::default() };
        self.log_search(&filter, page).await
    }

    /// Log records matching the filter in its order (timestamp, ties in arrival order), paged.
    async fn log_search(&self, filter: &LogFilter, page: &PageRequest) -> StoreResult<Page<helix_model::LogRecorded>>;

    /// One log retention pass as of `now_ns` (the store's job runs them periodically):
    /// records timestamped before `now_ns - max_age`, oldest first, in small transactions
    /// that leave ingest room between them. Returns the records removed.
    async fn prune_logs(&self, max_age: std::time::Duration, now_ns: i64) -> StoreResult<u64>;

    /// Distinct values of a log field among records in `[from_ns, to_ns)`, sorted, at most `limit`.
    async fn log_values(&self, field: LogField, from_ns: i64, to_ns: i64, limit: usize) -> StoreResult<Vec<String>>;

    // ---- flags and suspicion (`suspicion.rs`)

    /// Raise a flag on an entity, recording who and when; refused for an unknown entity and
    /// for one that already has [`MAX_FLAGS_PER_ENTITY`] flags.
    async fn add_flag(&self, flag: &NewFlag) -> StoreResult<FlagAdded>;

    /// Clear a flag of an entity, recording who and when; the row stays as history.
    async fn clear_flag(&self, entity_id: &str, flag_id: &str, cleared_by: &str) -> StoreResult<Cleared>;

    /// Flags of the given entities, oldest first (then by flag ID); only active ones when
    /// `active_only`. Cleared flags keep their row, so this is the audit history.
    async fn flags(&self, entity_ids: &[String], active_only: bool) -> StoreResult<Vec<Flag>>;

    /// Why `entity_id` is suspect: every active flag on it or on one of its ancestors, with
    /// the shortest path. Empty for an unknown or unsuspected entity.
    async fn suspicion(&self, entity_id: &str) -> StoreResult<Suspicion> {
        let query = LineageQuery {
            root: entity_id.to_owned(),
            direction: Direction::Ancestors,
            max_depth: None,
            limit: MAX_SUSPICION_ANCESTORS,
            cursor: None,
        };
        let Some(walk) = self.lineage(&query).await? else {
            return Ok(Suspicion::default());
        };
        let ids: Vec<String> = walk.nodes.iter().map(|n| n.id.clone()).collect();
        let active = self.flags(&ids, true).await?;
        Ok(Suspicion { because: suspicion::because(&walk.nodes, &active), partial: walk.partial })
    }

    // ---- reads over an instrument's time window (`window.rs`)

    /// Events matching `query` (instrument, exact name, time window on the event's own
    /// timestamp), newest first (timestamp descending, then span and ordinal descending), paged.
    async fn instrument_events(&self, query: &EventQuery, page: &PageRequest) -> StoreResult<Page<EntityEvent>>;

    /// Metadata keys holding a numeric value (see [`numeric_value`]) on at least one of the
    /// newest `sample` non-placeholder entities of `instrument_id` created in
    /// `[from_ns, to_ns)`; sorted, unique.
    async fn numeric_fields(
        &self,
        instrument_id: &str,
        from_ns: i64,
        to_ns: i64,
        sample: usize,
    ) -> StoreResult<Vec<String>>;

    /// Non-placeholder entities of the instrument created in the window whose `y_field` is
    /// numeric, newest first (timestamp descending, then ID ascending), at most `limit`.
    async fn monitor_points(&self, query: &MonitorQuery) -> StoreResult<MonitorPoints>;

    /// Non-empty (stage, bucket) cells of the instrument's non-placeholder entities with a
    /// stage, sorted by stage then bucket.
    async fn stage_histogram(&self, query: &StageHistogramQuery) -> StoreResult<Vec<StageBucket>>;

    // ---- the span store

    /// The stored spans of a trace, ordered by start time then span ID, at most `max_spans`
    /// (`partial` when there are more); `None` for a trace with no stored span.
    async fn trace(&self, trace_id: &str, max_spans: usize) -> StoreResult<Option<StoredTrace>>;

    /// Traces matching the filter, newest first (trace start descending, then trace ID
    /// ascending), paged.
    async fn traces(&self, filter: &TraceFilter, page: &PageRequest) -> StoreResult<Page<TraceSummary>>;

    /// For each (trace ID, span ID) where a log line was logged, the entity it was logged for,
    /// from the stored spans: the entity of that span when it is a creation or operation span,
    /// else the entity of the trace's earliest creation or operation span (ties by span ID);
    /// `None` when no such span of the trace is stored or an ID is not hex. Answers align with
    /// `keys`; callers keep `keys` to a page of lines.
    async fn span_entities(&self, keys: &[(String, Option<String>)]) -> StoreResult<Vec<Option<String>>>;

    /// One span retention pass as of `now_ns` (the store's job runs them periodically):
    /// whole traces that started before `now_ns - max_age`, then, while the spans' stored
    /// bytes exceed `max_bytes`, the oldest traces; in small transactions that leave ingest
    /// room between them. Entity, operation, event and log rows are not touched. Returns the
    /// spans removed.
    async fn prune_spans(&self, limits: &SpanRetention, now_ns: i64) -> StoreResult<u64>;
}
