//! Test-only `Store` that knows nothing or fails every call, for routing and error-path
//! tests. Data-path tests use the real `SqliteStore`.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use helix_model::{EntityEvent, LogRecorded, SpanRef};
use helix_store::{
    Descendants, Entity, EntityFilter, Graph, GraphQuery, Lineage, LineageQuery, LogField, LogFilter, Operation, Page,
    PageRequest, StageSummary, Store, StoreError, StoreResult, WriteBatch, WriteOutcome,
};

use super::ApiState;
use crate::metrics::Metrics;

/// How every call of a [`FakeStore`] ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Unknown entities, empty lists, ready.
    Empty,
    Unavailable,
    Internal,
    BadCursor,
}

pub struct FakeStore {
    behaviour: Behaviour,
}

impl FakeStore {
    pub fn empty() -> Self {
        FakeStore { behaviour: Behaviour::Empty }
    }

    pub fn failing(behaviour: Behaviour) -> Self {
        FakeStore { behaviour }
    }

    pub fn state(self) -> ApiState {
        let metrics = Arc::new(Metrics::new());
        let auth = Arc::new(crate::auth::Auth::off(metrics.clone()));
        ApiState {
            store: Arc::new(self),
            metrics,
            spans_stored: true,
            loki_scan_lines: super::loki::DEFAULT_SCAN_LINES,
            prov_namespace: crate::export::DEFAULT_NAMESPACE.into(),
            auth,
            platform: crate::canary::PlatformStatus::disabled(),
        }
    }

    /// `Ok(value)` when empty, the configured error otherwise.
    fn answer<T>(&self, value: T) -> StoreResult<T> {
        match self.behaviour {
            Behaviour::Empty => Ok(value),
            Behaviour::Unavailable => Err(StoreError::unavailable("database is locked")),
            Behaviour::Internal => Err(StoreError::internal("secret table detail")),
            Behaviour::BadCursor => Err(StoreError::BadCursor("not a cursor of this store".into())),
        }
    }
}

fn empty_page<T>() -> Page<T> {
    Page { items: Vec::new(), next_cursor: None }
}

#[async_trait]
impl Store for FakeStore {
    fn backend(&self) -> &'static str {
        "fake"
    }
    async fn write(&self, _batch: &WriteBatch) -> StoreResult<WriteOutcome> {
        self.answer(WriteOutcome::default())
    }
    async fn span_refs(&self, _entity_ids: &[String]) -> StoreResult<HashMap<String, SpanRef>> {
        self.answer(HashMap::new())
    }
    async fn check_ready(&self) -> StoreResult<()> {
        self.answer(())
    }
    async fn entity(&self, _id: &str) -> StoreResult<Option<Entity>> {
        self.answer(None)
    }
    async fn children_count(&self, _id: &str) -> StoreResult<u64> {
        self.answer(0)
    }
    async fn events(&self, _entity_id: &str, _page: &PageRequest) -> StoreResult<Page<EntityEvent>> {
        self.answer(empty_page())
    }
    async fn operations(&self, _entity_id: &str, _page: &PageRequest) -> StoreResult<Page<Operation>> {
        self.answer(empty_page())
    }
    async fn lineage(&self, _query: &LineageQuery) -> StoreResult<Option<Lineage>> {
        self.answer(None)
    }
    async fn descendants(&self, _root: &str, _depth: Option<u32>, _cap: usize) -> StoreResult<Option<Descendants>> {
        self.answer(None)
    }
    async fn graph(&self, _id: &str, _query: &GraphQuery) -> StoreResult<Option<Graph>> {
        self.answer(None)
    }
    async fn search(&self, _filter: &EntityFilter, _page: &PageRequest) -> StoreResult<Page<Entity>> {
        self.answer(empty_page())
    }
    async fn instruments(&self) -> StoreResult<Vec<String>> {
        self.answer(Vec::new())
    }
    async fn stages(&self, _instrument_id: &str) -> StoreResult<Vec<StageSummary>> {
        self.answer(Vec::new())
    }
    async fn log_search(&self, _filter: &LogFilter, _page: &PageRequest) -> StoreResult<Page<LogRecorded>> {
        self.answer(empty_page())
    }
    async fn log_values(&self, _field: LogField, _from: i64, _to: i64, _limit: usize) -> StoreResult<Vec<String>> {
        self.answer(Vec::new())
    }
    async fn entities(&self, _ids: &[String]) -> StoreResult<Vec<Entity>> {
        self.answer(Vec::new())
    }
    async fn add_flag(&self, _flag: &helix_store::NewFlag) -> StoreResult<helix_store::FlagAdded> {
        self.answer(helix_store::FlagAdded::UnknownEntity)
    }
    async fn clear_flag(&self, _entity: &str, _flag: &str, _by: &str) -> StoreResult<helix_store::Cleared> {
        self.answer(helix_store::Cleared::Unknown)
    }
    async fn flags(&self, _ids: &[String], _active_only: bool) -> StoreResult<Vec<helix_store::Flag>> {
        self.answer(Vec::new())
    }
    async fn instrument_events(
        &self,
        _query: &helix_store::EventQuery,
        _page: &PageRequest,
    ) -> StoreResult<Page<EntityEvent>> {
        self.answer(empty_page())
    }
    async fn numeric_fields(
        &self,
        _instrument_id: &str,
        _from_ns: i64,
        _to_ns: i64,
        _sample: usize,
    ) -> StoreResult<Vec<String>> {
        self.answer(Vec::new())
    }
    async fn monitor_points(&self, _query: &helix_store::MonitorQuery) -> StoreResult<helix_store::MonitorPoints> {
        self.answer(helix_store::MonitorPoints::default())
    }
    async fn span_entities(&self, keys: &[(String, Option<String>)]) -> StoreResult<Vec<Option<String>>> {
        self.answer(vec![None; keys.len()])
    }
    async fn trace(&self, _trace_id: &str, _max_spans: usize) -> StoreResult<Option<helix_store::StoredTrace>> {
        self.answer(None)
    }
    async fn traces(
        &self,
        _filter: &helix_store::TraceFilter,
        _page: &PageRequest,
    ) -> StoreResult<Page<helix_store::TraceSummary>> {
        self.answer(empty_page())
    }
    async fn stage_histogram(
        &self,
        _query: &helix_store::StageHistogramQuery,
    ) -> StoreResult<Vec<helix_store::StageBucket>> {
        self.answer(Vec::new())
    }

    async fn prune_logs(&self, _: std::time::Duration, _: i64) -> StoreResult<u64> {
        self.answer(0)
    }
    async fn prune_spans(&self, _limits: &helix_store::SpanRetention, _now_ns: i64) -> StoreResult<u64> {
        self.answer(0)
    }
}
