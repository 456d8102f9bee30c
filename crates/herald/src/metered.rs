//! A `Store` that counts and times every call of the store it wraps, for the older herald's
//! `helix_db_*` metrics: writes by table, reads by query (the `Store` method's name), and the
//! connection gauges. The store itself knows nothing of metrics.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use helix_model::{EntityEvent, LogRecorded, SpanRef};
use helix_store::{
    Descendants, Entity, EntityFilter, EventQuery, Graph, GraphQuery, Lineage, LineageQuery, LogField, LogFilter,
    MonitorPoints, MonitorQuery, Operation, Page, PageRequest, SpanRetention, StageBucket, StageHistogramQuery,
    StageSummary, Store, StoreError, StoreResult, StoredTrace, TraceFilter, TraceSummary, WriteBatch, WriteOutcome,
    WriteRecord,
};

use crate::metrics::Metrics;

/// The tables `helix_db_writes_total{table}` names (the older herald's three).
pub const TABLES: [&str; 3] = ["entities", "entity_operations", "entity_events"];

/// Wraps the herald's store; every component reads and writes through it.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    pub fn wrap(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Arc<dyn Store> {
        Arc::new(MeteredStore { inner, metrics })
    }

    /// Run one read, counted and timed under `query`.
    async fn query<T>(&self, query: &'static str, read: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        let started = Instant::now();
        let result = read.await;
        self.metrics.db_query_duration.with_label_values(&[query]).observe(started.elapsed().as_secs_f64());
        let status = if result.is_ok() { "success" } else { "failed" };
        self.metrics.db_queries.with_label_values(&[query, status]).inc();
        self.refresh_connections();
        result
    }

    /// Time and count one write, whichever way the batch is handed over.
    async fn metered_write(
        &self,
        batch: &WriteBatch,
        write: impl Future<Output = StoreResult<WriteOutcome>>,
    ) -> StoreResult<WriteOutcome> {
        let started = Instant::now();
        let result = write.await;
        let seconds = started.elapsed().as_secs_f64();
        let touched = attempted(batch);
        for (table, rows) in TABLES.iter().zip(touched) {
            if rows > 0 {
                self.metrics.db_write_duration.with_label_values(&[table]).observe(seconds);
            }
        }
        match &result {
            Ok(outcome) => {
                for (table, rows) in TABLES.iter().zip(written(outcome)) {
                    self.metrics.db_writes.with_label_values(&[table, "success"]).inc_by(rows);
                }
            }
            // A refusal of the sender's data, not a failure of the database.
            Err(StoreError::InstrumentConflict(_)) => {}
            Err(_) => {
                self.metrics.db_write_errors.inc();
                for (table, rows) in TABLES.iter().zip(touched) {
                    self.metrics.db_writes.with_label_values(&[table, "failed"]).inc_by(rows);
                }
            }
        }
        self.refresh_connections();
        result
    }

    fn refresh_connections(&self) {
        if let Some(c) = self.inner.connections() {
            self.metrics.db_connections_in_use.set(c.in_use as i64);
            self.metrics.db_connections_total.set(c.open as i64);
        }
    }
}

/// Rows a batch asked each table for: what a failed commit did not write.
fn attempted(batch: &WriteBatch) -> [u64; 3] {
    let mut rows = [0u64; 3];
    for record in &batch.records {
        let span = match record {
            WriteRecord::Created(c) => {
                rows[0] += 1;
                &c.0
            }
            WriteRecord::Operation(o) => {
                rows[1] += 1;
                &o.0
            }
            WriteRecord::Log(_) | WriteRecord::Span(_) => continue,
        };
        rows[2] += span.events.len() as u64;
    }
    rows
}

/// Rows a committed batch wrote to each table (re-sent records write nothing).
fn written(outcome: &WriteOutcome) -> [u64; 3] {
    [
        outcome.entities_created.len() as u64 + outcome.placeholders_created,
        outcome.operations_inserted,
        outcome.events_inserted.len() as u64,
    ]
}

#[async_trait]
impl Store for MeteredStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn write_concurrency(&self) -> usize {
        self.inner.write_concurrency()
    }

    fn connections(&self) -> Option<helix_store::Connections> {
        self.inner.connections()
    }

    fn notify(&self) -> Option<&dyn helix_store::notify::NotifyStore> {
        self.inner.notify()
    }

    fn retention(&self) -> Option<helix_store::RetentionSnapshot> {
        self.inner.retention()
    }

    fn span_directory(&self) -> Option<helix_store::SpanDirectoryStats> {
        self.inner.span_directory()
    }

    async fn size_bytes(&self) -> StoreResult<Option<u64>> {
        self.query("size_bytes", self.inner.size_bytes()).await
    }

    async fn write(&self, batch: &WriteBatch) -> StoreResult<WriteOutcome> {
        self.metered_write(batch, self.inner.write(batch)).await
    }

    async fn write_shared(&self, batch: Arc<WriteBatch>) -> StoreResult<WriteOutcome> {
        let counted = batch.clone();
        self.metered_write(&counted, self.inner.write_shared(batch)).await
    }

    async fn span_refs(&self, entity_ids: &[String]) -> StoreResult<HashMap<String, SpanRef>> {
        self.query("span_refs", self.inner.span_refs(entity_ids)).await
    }

    async fn check_ready(&self) -> StoreResult<()> {
        self.query("check_ready", self.inner.check_ready()).await
    }

    async fn entity(&self, id: &str) -> StoreResult<Option<Entity>> {
        self.query("entity", self.inner.entity(id)).await
    }

    async fn entities(&self, ids: &[String]) -> StoreResult<Vec<Entity>> {
        self.query("entities", self.inner.entities(ids)).await
    }

    async fn children_count(&self, id: &str) -> StoreResult<u64> {
        self.query("children_count", self.inner.children_count(id)).await
    }

    async fn add_flag(&self, flag: &helix_store::NewFlag) -> StoreResult<helix_store::FlagAdded> {
        self.query("add_flag", self.inner.add_flag(flag)).await
    }

    async fn clear_flag(&self, entity_id: &str, flag_id: &str, cleared_by: &str) -> StoreResult<helix_store::Cleared> {
        self.query("clear_flag", self.inner.clear_flag(entity_id, flag_id, cleared_by)).await
    }

    async fn flags(&self, entity_ids: &[String], active_only: bool) -> StoreResult<Vec<helix_store::Flag>> {
        self.query("flags", self.inner.flags(entity_ids, active_only)).await
    }

    async fn suspicion(&self, entity_id: &str) -> StoreResult<helix_store::Suspicion> {
        self.query("suspicion", self.inner.suspicion(entity_id)).await
    }

    async fn events(&self, entity_id: &str, page: &PageRequest) -> StoreResult<Page<EntityEvent>> {
        self.query("events", self.inner.events(entity_id, page)).await
    }

    async fn operations(&self, entity_id: &str, page: &PageRequest) -> StoreResult<Page<Operation>> {
        self.query("operations", self.inner.operations(entity_id, page)).await
    }

    async fn lineage(&self, query: &LineageQuery) -> StoreResult<Option<Lineage>> {
        self.query("lineage", self.inner.lineage(query)).await
    }

    async fn descendants(&self, root: &str, max_depth: Option<u32>, cap: usize) -> StoreResult<Option<Descendants>> {
        self.query("descendants", self.inner.descendants(root, max_depth, cap)).await
    }

    async fn graph(&self, id: &str, query: &GraphQuery) -> StoreResult<Option<Graph>> {
        self.query("graph", self.inner.graph(id, query)).await
    }

    async fn search(&self, filter: &EntityFilter, page: &PageRequest) -> StoreResult<Page<Entity>> {
        self.query("search", self.inner.search(filter, page)).await
    }

    async fn instruments(&self) -> StoreResult<Vec<String>> {
        self.query("instruments", self.inner.instruments()).await
    }

    async fn stages(&self, instrument_id: &str) -> StoreResult<Vec<StageSummary>> {
        self.query("stages", self.inner.stages(instrument_id)).await
    }

    async fn logs(&self, entity_id: &str, page: &PageRequest) -> StoreResult<Page<LogRecorded>> {
        self.query("logs", self.inner.logs(entity_id, page)).await
    }

    async fn log_search(&self, filter: &LogFilter, page: &PageRequest) -> StoreResult<Page<LogRecorded>> {
        self.query("log_search", self.inner.log_search(filter, page)).await
    }

    async fn prune_logs(&self, max_age: std::time::Duration, now_ns: i64) -> StoreResult<u64> {
        self.query("prune_logs", self.inner.prune_logs(max_age, now_ns)).await
    }

    async fn log_values(&self, field: LogField, from_ns: i64, to_ns: i64, limit: usize) -> StoreResult<Vec<String>> {
        self.query("log_values", self.inner.log_values(field, from_ns, to_ns, limit)).await
    }

    async fn instrument_events(&self, query: &EventQuery, page: &PageRequest) -> StoreResult<Page<EntityEvent>> {
        self.query("instrument_events", self.inner.instrument_events(query, page)).await
    }

    async fn numeric_fields(
        &self,
        instrument_id: &str,
        from_ns: i64,
        to_ns: i64,
        sample: usize,
    ) -> StoreResult<Vec<String>> {
        self.query("numeric_fields", self.inner.numeric_fields(instrument_id, from_ns, to_ns, sample)).await
    }

    async fn monitor_points(&self, query: &MonitorQuery) -> StoreResult<MonitorPoints> {
        self.query("monitor_points", self.inner.monitor_points(query)).await
    }

    async fn stage_histogram(&self, query: &StageHistogramQuery) -> StoreResult<Vec<StageBucket>> {
        self.query("stage_histogram", self.inner.stage_histogram(query)).await
    }

    async fn trace(&self, trace_id: &str, max_spans: usize) -> StoreResult<Option<StoredTrace>> {
        self.query("trace", self.inner.trace(trace_id, max_spans)).await
    }

    async fn traces(&self, filter: &TraceFilter, page: &PageRequest) -> StoreResult<Page<TraceSummary>> {
        self.query("traces", self.inner.traces(filter, page)).await
    }

    async fn span_entities(&self, keys: &[(String, Option<String>)]) -> StoreResult<Vec<Option<String>>> {
        self.query("span_entities", self.inner.span_entities(keys)).await
    }

    async fn prune_spans(&self, limits: &SpanRetention, now_ns: i64) -> StoreResult<u64> {
        self.query("prune_spans", self.inner.prune_spans(limits, now_ns)).await
    }
}
