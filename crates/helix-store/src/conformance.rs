//! The backend-independent conformance suite: every `Store` backend must pass these checks.
//!
//! The checks are written only against the `Store` trait. A backend runs them all with
//! `helix_store::conformance_tests!(path::to::async_factory)` in one of its test files, where
//! the factory is an `async fn() -> Fixture` returning a fresh, empty store (the calling crate
//! needs `tokio` with its test macros). Each check is also a plain `pub async fn` so a backend
//! can call one directly while debugging.
//!
//! Atomicity of a failed commit cannot be provoked portably through the trait (every valid
//! batch commits): each backend's own tests make the database reject operations named `boom`
//! (a trigger) and then run `failed_batch_leaves_no_partial_rows`.

use std::any::Any;
use std::collections::HashSet;
use std::ops::Deref;

use helix_model::{
    EntityCreated, EntityEvent, EntitySpan, LogRecorded, Metadata, OperationRecorded, SpanRecorded, SpanRole, Status,
    ERROR_EVENT,
};

use crate::{
    Cleared, Direction, Edge, Entity, EntityFilter, EventCount, EventQuery, Flag, FlagAdded, GraphQuery, Lineage,
    LineageQuery, LogField, LogFilter, LogOrder, MonitorQuery, NewFlag, PageRequest, Severity, SpanRetention,
    StageBucket, StageHistogramQuery, Store, StoreError, TraceFilter, TraceSummary, WriteBatch, WriteOutcome,
    WriteRecord,
};

/// A fresh store plus whatever must live as long as it (a temporary directory, a schema).
pub struct Fixture {
    store: Box<dyn Store>,
    _keep: Box<dyn Any + Send>,
}

impl Fixture {
    pub fn new(store: Box<dyn Store>, keep: impl Any + Send) -> Fixture {
        Fixture { store, _keep: Box::new(keep) }
    }
}

impl Deref for Fixture {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        &*self.store
    }
}

/// Expands to one `#[tokio::test]` per conformance check, each with a fresh store from
/// `$factory` (an `async fn() -> helix_store::conformance::Fixture`).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::__conformance_each!(
            $factory;
            backend_is_ready,
            empty_batch_changes_nothing,
            creation_inserts_entity_edges_and_events,
            same_batch_twice_is_idempotent,
            size_and_connections_are_reported,
            concurrent_duplicate_batches_write_once,
            operation_on_unknown_entity_creates_placeholder,
            placeholder_is_upgraded_by_creation,
            recreation_merges_parents_and_metadata,
            instrument_conflicts_are_not_applied,
            a_batch_refusing_conflicts_writes_nothing_on_a_conflict,
            error_status_and_error_events,
            events_oldest_first_with_own_timestamps,
            events_paging_walks_all,
            operations_oldest_first_all_kept_and_paged,
            operations_idempotent_by_span,
            span_refs_only_for_created_entities,
            children_count_counts_named_children,
            lineage_linear_chain,
            lineage_fan_in_of_five,
            lineage_diamond_depths,
            lineage_child_before_parent,
            lineage_parent_that_never_arrives,
            lineage_cycles_terminate,
            lineage_paging_walks_all,
            lineage_wide_level_is_cut_in_order,
            lineage_unknown_root_is_none,
            descendants_are_the_lineage_walk_each_once,
            graph_default_view_and_limits,
            search_filters_combine,
            search_prefix_is_literal,
            search_paging_newest_first,
            instruments_are_listed_sorted,
            stages_summarise_non_placeholders,
            logs_correlate_by_entity_and_traces,
            log_search_by_each_filter,
            log_search_by_level,
            log_search_pages_both_ways,
            log_retention_removes_old_records_only,
            hostile_ids_round_trip,
            malformed_cursors_are_rejected,
            instrument_events_newest_first_filtered_and_paged,
            numeric_fields_lists_keys_with_numeric_values,
            monitor_points_numeric_only_newest_first,
            stage_histogram_counts_per_stage_and_bucket,
            spans_round_trip_byte_exact_in_order,
            spans_rewritten_add_nothing,
            traces_search_by_each_filter,
            traces_paging_walks_all,
            spans_split_and_joined_exactly,
            span_entities_resolve_log_places,
            span_retention_removes_old_traces_only,
            span_budget_removes_oldest_first,
            flags_are_kept_with_their_history,
            suspicion_reaches_every_descendant_and_clears_per_flag,
            search_filters_suspect_entities,
            entities_by_id_returns_the_existing_ones,
            a_notifying_event_is_recorded_once_however_often_it_arrives,
            outbox_rows_are_claimed_in_arrival_order_and_a_stale_settle_touches_no_new_row,
            a_claimed_notification_carries_its_event_and_its_class,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_each {
    ($factory:path; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let fixture: $crate::conformance::Fixture = $factory().await;
                $crate::conformance::$name(&*fixture).await;
            }
        )*
    };
}

// ---- record builders --------------------------------------------------------------------------

/// Base timestamp of the suite (2024-05-20).
pub const T0: i64 = 1_716_200_000_000_000_000;
pub const INST: &str = "CHIME";

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// A deterministic 32-hex trace ID derived from `seed`.
pub fn trace_of(seed: &str) -> String {
    format!("{:016x}{:016x}", fnv(seed), fnv(&format!("{seed}#")))
}

/// A deterministic 16-hex span ID derived from `seed`.
pub fn span_of(seed: &str) -> String {
    format!("{:016x}", fnv(&format!("span:{seed}")))
}

fn md(pairs: &[(&str, &str)]) -> Metadata {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A creation of `id` by `INST` at `T0 + offset_ns` with `parents`, stage `ingest`.
pub fn creation(id: &str, parents: &[&str], offset_ns: i64) -> EntityCreated {
    EntityCreated(EntitySpan {
        entity_id: id.to_owned(),
        instrument_id: INST.to_owned(),
        name: "ingest".to_owned(),
        trace_id: trace_of(id),
        span_id: span_of(id),
        start_ns: T0 + offset_ns,
        end_ns: T0 + offset_ns + 5_000,
        parent_ids: parents.iter().map(|p| p.to_string()).collect(),
        metadata: Metadata::new(),
        service_name: Some("svc".to_owned()),
        process_name: Some("CHIME/pipe/ingest".to_owned()),
        status: Status::Ok,
        events: Vec::new(),
    })
}

/// An operation `name` on `id` by `INST`, its span derived from `span_seed`.
pub fn operation(id: &str, name: &str, span_seed: &str, offset_ns: i64) -> OperationRecorded {
    OperationRecorded(EntitySpan {
        entity_id: id.to_owned(),
        instrument_id: INST.to_owned(),
        name: name.to_owned(),
        trace_id: trace_of(span_seed),
        span_id: span_of(span_seed),
        start_ns: T0 + offset_ns,
        end_ns: T0 + offset_ns + 9_000,
        parent_ids: Vec::new(),
        metadata: Metadata::new(),
        service_name: Some("svc".to_owned()),
        process_name: None,
        status: Status::Ok,
        events: Vec::new(),
    })
}

/// Event number `ordinal` of the span (`trace_id`, `span_id`) on `entity_id`.
pub fn event(entity_id: &str, trace_id: &str, span_id: &str, name: &str, ordinal: u32, offset_ns: i64) -> EntityEvent {
    EntityEvent {
        entity_id: entity_id.to_owned(),
        instrument_id: INST.to_owned(),
        event_name: name.to_owned(),
        timestamp_ns: T0 + offset_ns,
        metadata: md(&[("message", "boom"), ("n", &ordinal.to_string())]),
        trace_id: trace_id.to_owned(),
        span_id: span_id.to_owned(),
        ordinal,
    }
}

fn event_on_creation(c: &EntityCreated, name: &str, ordinal: u32, offset_ns: i64) -> EntityEvent {
    event(&c.entity_id, &c.trace_id, &c.span_id, name, ordinal, offset_ns)
}

fn event_on_operation(o: &OperationRecorded, name: &str, ordinal: u32, offset_ns: i64) -> EntityEvent {
    event(&o.entity_id, &o.trace_id, &o.span_id, name, ordinal, offset_ns)
}

pub fn log(offset_ns: i64, body: &str, trace_id: Option<&str>, entity_id: Option<&str>) -> LogRecorded {
    LogRecorded {
        timestamp_ns: T0 + offset_ns,
        observed_ns: T0 + offset_ns + 1,
        severity: "INFO".to_owned(),
        severity_number: 9,
        body: body.to_owned(),
        trace_id: trace_id.map(str::to_owned),
        span_id: None,
        entity_id: entity_id.map(str::to_owned),
        instrument_id: Some(INST.to_owned()),
        process_name: None,
        service_name: None,
        source: Some("python".to_owned()),
        attributes: md(&[("logger", "x")]),
        resource: md(&[("service.name", "conf")]),
    }
}

/// A plain span `name` of the trace `trace_seed` at `T0 + offset_ns`, lasting 1 µs, under
/// `parent` (a span seed); its span and resource bytes are made up and must come back as is.
pub fn span(trace_seed: &str, span_seed: &str, parent: Option<&str>, name: &str, offset_ns: i64) -> SpanRecorded {
    SpanRecorded {
        trace_id: trace_of(trace_seed),
        span_id: span_of(span_seed),
        parent_span_id: parent.map(span_of),
        name: name.to_owned(),
        kind: 1,
        start_ns: T0 + offset_ns,
        end_ns: T0 + offset_ns + 1_000,
        status_code: 0,
        status_message: String::new(),
        service_name: Some("svc".to_owned()),
        process_name: Some("CHIME/pipe".to_owned()),
        instrument_id: Some(INST.to_owned()),
        entity_id: None,
        role: SpanRole::Span,
        // Zero bytes and every byte value: the store must not treat these as text.
        span_proto: [span_seed.as_bytes(), &[0, 255, 10, 0], name.as_bytes()].concat(),
        resource_proto: vec![0x0a, 0, 0xff, b'r'],
        scope_name: "helix".to_owned(),
        scope_version: "0.1".to_owned(),
    }
}

fn span_rec(s: SpanRecorded) -> WriteRecord {
    WriteRecord::Span(s)
}

pub fn batch(records: Vec<WriteRecord>) -> WriteBatch {
    WriteBatch::of(records)
}

fn created(c: EntityCreated) -> WriteRecord {
    WriteRecord::Created(c)
}

fn op(o: OperationRecorded) -> WriteRecord {
    WriteRecord::Operation(o)
}

async fn write(store: &dyn Store, records: Vec<WriteRecord>) -> WriteOutcome {
    store.write(&batch(records)).await.expect("write")
}

/// Create each `(id, parents, offset)` in its own record of one batch.
async fn create_all(store: &dyn Store, specs: &[(&str, &[&str], i64)]) {
    let records = specs.iter().map(|(id, parents, off)| created(creation(id, parents, *off))).collect();
    write(store, records).await;
}

async fn get(store: &dyn Store, id: &str) -> Entity {
    store.entity(id).await.expect("entity query").unwrap_or_else(|| panic!("entity {id:?} missing"))
}

async fn lineage(store: &dyn Store, root: &str, direction: Direction, depth: Option<u32>) -> Lineage {
    store
        .lineage(&LineageQuery { root: root.to_owned(), direction, max_depth: depth, limit: 10_000, cursor: None })
        .await
        .expect("lineage query")
        .unwrap_or_else(|| panic!("lineage root {root:?} unknown"))
}

fn node_ids(l: &Lineage) -> Vec<(String, u32)> {
    l.nodes.iter().map(|n| (n.id.clone(), n.depth)).collect()
}

fn ids_depths(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
    pairs.iter().map(|(i, d)| (i.to_string(), *d)).collect()
}

fn edge_set(edges: &[Edge]) -> HashSet<(String, String)> {
    edges.iter().map(|e| (e.source.clone(), e.target.clone())).collect()
}

fn edges(pairs: &[(&str, &str)]) -> HashSet<(String, String)> {
    pairs.iter().map(|(s, t)| (s.to_string(), t.to_string())).collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn all_event_names(store: &dyn Store, id: &str) -> Vec<(String, i64)> {
    let page = store.events(id, &PageRequest::first(10_000)).await.expect("events");
    assert!(page.next_cursor.is_none());
    page.items.into_iter().map(|e| (e.event_name, e.timestamp_ns)).collect()
}

// ---- checks -----------------------------------------------------------------------------------

pub async fn backend_is_ready(store: &dyn Store) {
    assert!(!store.backend().is_empty());
    store.check_ready().await.expect("a fresh store is ready");
    assert!(store.instruments().await.unwrap().is_empty());
}

pub async fn empty_batch_changes_nothing(store: &dyn Store) {
    assert_eq!(write(store, vec![]).await, WriteOutcome::default());
    assert!(store.search(&EntityFilter::default(), &PageRequest::first(10)).await.unwrap().items.is_empty());
}

pub async fn creation_inserts_entity_edges_and_events(store: &dyn Store) {
    let mut c = creation("cand-1", &["block-2", "block-1"], 100);
    c.metadata = md(&[("score", "0.97"), ("dm", "512.3")]);
    c.events = vec![
        event_on_creation(&c, "helix.event.classified", 0, 150),
        event_on_creation(&c, "helix.event.rfi_flagged", 1, 160),
    ];
    let out = write(store, vec![created(c.clone())]).await;
    assert_eq!(out.entities_created.len(), 1);
    assert_eq!(out.entities_created[0].entity_id, "cand-1");
    assert_eq!(out.entities_created[0].instrument_id, INST);
    assert_eq!(out.entities_created[0].stage, "ingest");
    assert_eq!(out.entities_created[0].status, Status::Ok);
    assert_eq!(
        out.events_inserted,
        vec![EventCount::new(INST, "helix.event.classified"), EventCount::new(INST, "helix.event.rfi_flagged")]
    );
    assert_eq!((out.placeholders_created, out.recreations, out.instrument_conflicts), (0, 0, 0));

    let e = get(store, "cand-1").await;
    assert_eq!(e.id, "cand-1");
    assert_eq!(e.instrument_id, INST);
    assert_eq!(e.trace_id.as_deref(), Some(c.trace_id.as_str()));
    assert_eq!(e.span_id.as_deref(), Some(c.span_id.as_str()));
    assert_eq!(e.timestamp_ns, T0 + 100);
    assert_eq!(e.end_ns, Some(T0 + 5_100));
    assert_eq!(e.stage.as_deref(), Some("ingest"));
    assert_eq!(e.service_name.as_deref(), Some("svc"));
    assert_eq!(e.process_name.as_deref(), Some("CHIME/pipe/ingest"));
    assert_eq!(e.status, Status::Ok);
    assert!(!e.placeholder);
    assert_eq!(e.parent_ids, strings(&["block-2", "block-1"]), "caller order kept");
    assert_eq!(e.metadata, c.metadata);
    assert!(!e.created_at.is_empty());
    assert!(store.entity("nope").await.unwrap().is_none());

    // Edges to parents that do not exist yet are kept.
    assert_eq!(store.children_count("block-1").await.unwrap(), 1);
    assert_eq!(store.children_count("block-2").await.unwrap(), 1);
    let events = store.events("cand-1", &PageRequest::first(10)).await.unwrap().items;
    assert_eq!(events, c.events);
}

pub async fn size_and_connections_are_reported(store: &dyn Store) {
    write(store, vec![created(creation("sized", &[], 0))]).await;
    let size = store.size_bytes().await.unwrap();
    assert!(size.is_some_and(|b| b > 0), "{size:?}");
    let c = store.connections().expect("both backends count their connections");
    assert!(c.open >= 1 && c.in_use <= c.open, "{c:?}");
}

pub async fn same_batch_twice_is_idempotent(store: &dyn Store) {
    let mut c = creation("e1", &["p1"], 0);
    c.events = vec![event_on_creation(&c, ERROR_EVENT, 0, 1)];
    c.status = Status::Error;
    let mut o = operation("e1", "archive", "op-1", 10);
    o.events = vec![event_on_operation(&o, "helix.event.x", 0, 11)];
    let records = vec![
        created(c),
        op(o),
        op(operation("ghost", "touch", "op-2", 20)),
        WriteRecord::Log(log(30, "hello", None, Some("e1"))),
    ];
    let first = write(store, records.clone()).await;
    assert_eq!(first.entities_created.len(), 1);
    assert_eq!(first.placeholders_created, 1);
    assert_eq!(first.operations_inserted, 2);
    assert_eq!(first.events_inserted, vec![EventCount::new(INST, ERROR_EVENT), EventCount::new(INST, "helix.event.x")]);
    assert_eq!(first.logs_inserted, 1);
    let second = write(store, records).await;
    assert_eq!(second, WriteOutcome::default(), "a re-sent batch changes nothing");

    assert_eq!(store.events("e1", &PageRequest::first(100)).await.unwrap().items.len(), 2);
    assert_eq!(store.operations("e1", &PageRequest::first(100)).await.unwrap().items.len(), 1);
    assert_eq!(store.operations("ghost", &PageRequest::first(100)).await.unwrap().items.len(), 1);
    assert_eq!(store.logs("e1", &PageRequest::first(100)).await.unwrap().items.len(), 1);
    assert_eq!(store.children_count("p1").await.unwrap(), 1);
    assert_eq!(get(store, "e1").await.parent_ids, strings(&["p1"]));
    let all = store.search(&EntityFilter::default(), &PageRequest::first(100)).await.unwrap();
    assert_eq!(all.items.len(), 2);
}

pub async fn concurrent_duplicate_batches_write_once(store: &dyn Store) {
    let mut records = Vec::new();
    for i in 0..50 {
        let id = format!("c-{i}");
        let parent = format!("c-{}", i.max(1) - 1);
        let mut c = creation(&id, &[parent.as_str()], i);
        c.events = vec![event_on_creation(&c, "helix.event.seen", 0, i)];
        records.push(created(c));
        records.push(op(operation(&id, "check", &format!("op-{i}"), i + 1)));
        records.push(WriteRecord::Log(log(i, &format!("log {i}"), None, Some(&id))));
        records.push(span_rec(span("cc-trace", &format!("cc-{i}"), None, "step", i)));
    }
    let b = batch(records);
    let (a, b2) = tokio::join!(store.write(&b), store.write(&b));
    let (a, b2) = (a.expect("first write"), b2.expect("second write"));
    assert_eq!(a.entities_created.len() + b2.entities_created.len(), 50);
    assert_eq!(a.operations_inserted + b2.operations_inserted, 50);
    assert_eq!(a.events_inserted.len() + b2.events_inserted.len(), 50);
    assert_eq!(a.logs_inserted + b2.logs_inserted, 50);
    assert_eq!(a.recreations + b2.recreations, 0);
    assert_eq!(a.spans_inserted + b2.spans_inserted, 50);
    let trace = store.trace(&trace_of("cc-trace"), 1_000).await.unwrap().expect("stored trace");
    assert_eq!(trace.spans.len(), 50);
    let listed = store.traces(&TraceFilter::default(), &PageRequest::first(10)).await.unwrap().items;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].span_count, 50, "the summary counts each span once");

    let all = store.search(&EntityFilter::default(), &PageRequest::first(1000)).await.unwrap();
    assert_eq!(all.items.len(), 50);
    for i in [0, 17, 49] {
        let id = format!("c-{i}");
        assert_eq!(store.events(&id, &PageRequest::first(10)).await.unwrap().items.len(), 1);
        assert_eq!(store.operations(&id, &PageRequest::first(10)).await.unwrap().items.len(), 1);
        assert_eq!(store.logs(&id, &PageRequest::first(10)).await.unwrap().items.len(), 1);
    }
    assert_eq!(store.children_count("c-5").await.unwrap(), 1);
}

pub async fn operation_on_unknown_entity_creates_placeholder(store: &dyn Store) {
    let o = operation("late-1", "calibrate", "op-a", 500);
    let out = write(store, vec![op(o.clone())]).await;
    assert_eq!(out.placeholders_created, 1);
    assert_eq!(out.operations_inserted, 1);
    assert!(out.entities_created.is_empty());

    let e = get(store, "late-1").await;
    assert!(e.placeholder);
    assert_eq!(e.instrument_id, INST);
    assert_eq!(e.trace_id, None);
    assert_eq!(e.span_id, None);
    assert_eq!(e.stage, None);
    assert_eq!(e.timestamp_ns, T0 + 500);
    assert!(e.parent_ids.is_empty());
    assert!(e.metadata.is_empty());
    assert_eq!(e.status, Status::Ok);

    // A second operation on the placeholder adds a row, not another placeholder.
    let out = write(store, vec![op(operation("late-1", "calibrate", "op-b", 600))]).await;
    assert_eq!((out.placeholders_created, out.operations_inserted), (0, 1));
    let ops = store.operations("late-1", &PageRequest::first(10)).await.unwrap().items;
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0].trace_id, o.trace_id);
    assert!(store.span_refs(&strings(&["late-1"])).await.unwrap().is_empty(), "placeholders have no creation");
    assert!(store.stages(INST).await.unwrap().is_empty(), "placeholders are not counted in stages");
}

pub async fn placeholder_is_upgraded_by_creation(store: &dyn Store) {
    let mut o = operation("u-1", "inspect", "op-u", 10);
    o.events = vec![event_on_operation(&o, ERROR_EVENT, 0, 12)];
    write(store, vec![op(o)]).await;
    assert_eq!(get(store, "u-1").await.status, Status::Error, "helix.error on an operation marks the entity");

    let mut c = creation("u-1", &["par-1", "par-2"], 1_000);
    c.name = "detect".to_owned();
    c.metadata = md(&[("snr", "12")]);
    let out = write(store, vec![created(c.clone()), created(creation("par-1", &[], 0))]).await;
    assert_eq!(out.entities_created.len(), 2);
    assert_eq!(out.entities_created[0].stage, "detect");
    assert_eq!(out.entities_created[0].status, Status::Error, "an upgrade keeps the error");
    assert_eq!(out.recreations, 0);

    let e = get(store, "u-1").await;
    assert!(!e.placeholder);
    assert_eq!(e.trace_id.as_deref(), Some(c.trace_id.as_str()));
    assert_eq!(e.span_id.as_deref(), Some(c.span_id.as_str()));
    assert_eq!(e.timestamp_ns, T0 + 1_000);
    assert_eq!(e.end_ns, Some(T0 + 6_000));
    assert_eq!(e.stage.as_deref(), Some("detect"));
    assert_eq!(e.parent_ids, strings(&["par-1", "par-2"]));
    assert_eq!(e.metadata, c.metadata);
    assert_eq!(e.status, Status::Error);
    assert_eq!(e.process_name.as_deref(), Some("CHIME/pipe/ingest"));

    let refs = store.span_refs(&strings(&["u-1"])).await.unwrap();
    assert_eq!(refs["u-1"].span_id, c.span_id);
    let l = lineage(store, "u-1", Direction::Ancestors, None).await;
    assert_eq!(node_ids(&l), ids_depths(&[("u-1", 0), ("par-1", 1)]));
    assert_eq!(edge_set(&l.edges), edges(&[("par-1", "u-1")]));
    assert_eq!(store.operations("u-1", &PageRequest::first(10)).await.unwrap().items.len(), 1);
}

pub async fn recreation_merges_parents_and_metadata(store: &dyn Store) {
    let mut first = creation("r-1", &["p1", "p2"], 0);
    first.metadata = md(&[("a", "1")]);
    write(store, vec![created(first.clone())]).await;

    let mut again = creation("r-1", &["p3", "p1"], 777);
    again.span_id = span_of("r-1 again");
    again.trace_id = trace_of("r-1 again");
    again.name = "other".to_owned();
    again.metadata = md(&[("a", "2"), ("b", "3")]);
    again.events = vec![event_on_creation(&again, "helix.event.redo", 0, 800)];
    let out = write(store, vec![created(again.clone())]).await;
    assert_eq!(out.recreations, 1);
    assert!(out.entities_created.is_empty());
    assert_eq!(out.events_inserted.len(), 1);

    let e = get(store, "r-1").await;
    assert_eq!(e.trace_id.as_deref(), Some(first.trace_id.as_str()), "first trace kept");
    assert_eq!(e.span_id.as_deref(), Some(first.span_id.as_str()), "first span kept");
    assert_eq!(e.timestamp_ns, first.start_ns);
    assert_eq!(e.stage.as_deref(), Some("ingest"));
    assert_eq!(e.parent_ids, strings(&["p1", "p2", "p3"]), "union, order kept");
    assert_eq!(e.metadata, md(&[("a", "1"), ("b", "3")]), "only missing keys added");
    assert_eq!(store.children_count("p3").await.unwrap(), 1);
    assert_eq!(store.children_count("p1").await.unwrap(), 1);

    // The re-creation re-sent, and the first creation re-sent: both no-ops.
    let out = write(store, vec![created(again), created(first)]).await;
    assert_eq!(out, WriteOutcome::default());
    assert_eq!(get(store, "r-1").await.parent_ids, strings(&["p1", "p2", "p3"]));
    assert_eq!(store.events("r-1", &PageRequest::first(10)).await.unwrap().items.len(), 1);
}

pub async fn instrument_conflicts_are_not_applied(store: &dyn Store) {
    write(store, vec![created(creation("own-1", &["p1"], 0))]).await;
    let mut foreign = creation("own-1", &["p9"], 50);
    foreign.instrument_id = "OTHER".to_owned();
    foreign.span_id = span_of("foreign");
    foreign.metadata = md(&[("x", "y")]);
    foreign.status = Status::Error;
    foreign.events =
        vec![EntityEvent { instrument_id: "OTHER".into(), ..event_on_creation(&foreign, ERROR_EVENT, 0, 51) }];
    let mut foreign_op = operation("own-1", "steal", "op-foreign", 60);
    foreign_op.instrument_id = "OTHER".to_owned();
    foreign_op.events =
        vec![EntityEvent { instrument_id: "OTHER".into(), ..event_on_operation(&foreign_op, ERROR_EVENT, 0, 61) }];
    let out = write(store, vec![created(foreign), op(foreign_op)]).await;
    assert_eq!(out.instrument_conflicts, 2);
    assert_eq!(out.recreations, 0);
    assert_eq!(out.operations_inserted, 0);
    assert!(out.events_inserted.is_empty());

    let e = get(store, "own-1").await;
    assert_eq!(e.instrument_id, INST);
    assert_eq!(e.parent_ids, strings(&["p1"]));
    assert!(e.metadata.is_empty());
    assert_eq!(e.status, Status::Ok);
    assert_eq!(store.children_count("p9").await.unwrap(), 0);
    assert!(store.events("own-1", &PageRequest::first(10)).await.unwrap().items.is_empty());
    assert!(store.operations("own-1", &PageRequest::first(10)).await.unwrap().items.is_empty());
    assert_eq!(store.instruments().await.unwrap(), strings(&[INST]));

    // A placeholder belongs to the instrument of its operation, too.
    write(store, vec![op(operation("ph-1", "touch", "op-ph", 0))]).await;
    let mut other = creation("ph-1", &[], 5);
    other.instrument_id = "OTHER".to_owned();
    let out = write(store, vec![created(other)]).await;
    assert_eq!(out.instrument_conflicts, 1);
    assert!(get(store, "ph-1").await.placeholder);
}

/// With authenticated senders, a record on another instrument's entity refuses its whole
/// batch: nothing of it is written, the error names the entity and both instruments, and the
/// same batch without that record commits.
pub async fn a_batch_refusing_conflicts_writes_nothing_on_a_conflict(store: &dyn Store) {
    write(store, vec![created(creation("mine-1", &[], 0))]).await;
    let mut foreign_op = operation("mine-1", "steal", "op-steal", 10);
    foreign_op.instrument_id = "OTHER".to_owned();
    let mut fresh = creation("theirs-1", &["mine-1"], 5);
    fresh.instrument_id = "OTHER".to_owned();
    let records = vec![created(fresh), span_rec(span("steal-trace", "steal-span", None, "steal", 10)), op(foreign_op)];
    let refused = WriteBatch { records: records.clone(), refuse_conflicts: true, notify: Default::default() };
    match store.write(&refused).await {
        Err(StoreError::InstrumentConflict(c)) => {
            assert_eq!((c.entity_id.as_str(), c.owner.as_str(), c.instrument.as_str()), ("mine-1", INST, "OTHER"))
        }
        other => panic!("expected an instrument conflict, got {other:?}"),
    }
    assert!(store.entity("theirs-1").await.unwrap().is_none(), "the batch's other records are not written");
    assert!(store.operations("mine-1", &PageRequest::first(10)).await.unwrap().items.is_empty());
    assert_eq!(store.trace(&trace_of("steal-trace"), 10).await.unwrap(), None);
    assert_eq!(store.instruments().await.unwrap(), strings(&[INST]));
    // Without the conflicting record the batch commits.
    let ok = WriteBatch { records: records[..2].to_vec(), refuse_conflicts: true, notify: Default::default() };
    let out = store.write(&ok).await.unwrap();
    assert_eq!((out.entities_created.len(), out.spans_inserted, out.instrument_conflicts), (1, 1, 0));
}

pub async fn error_status_and_error_events(store: &dyn Store) {
    let mut failed = creation("err-span", &[], 0);
    failed.status = Status::Error;
    let mut bad_op = operation("ok-1", "flaky", "op-flaky", 10);
    bad_op.status = Status::Error;
    let mut err_op = operation("ok-2", "check", "op-check", 10);
    err_op.events = vec![event_on_operation(&err_op, ERROR_EVENT, 0, 11)];
    write(
        store,
        vec![
            created(failed),
            created(creation("ok-1", &[], 0)),
            created(creation("ok-2", &[], 0)),
            op(bad_op),
            op(err_op),
        ],
    )
    .await;
    assert_eq!(get(store, "err-span").await.status, Status::Error, "ERROR span status fails the entity");
    assert_eq!(get(store, "ok-1").await.status, Status::Ok, "a failed operation without helix.error");
    let ops = store.operations("ok-1", &PageRequest::first(10)).await.unwrap().items;
    assert_eq!(ops[0].status, Status::Error, "the operation row keeps its own status");
    assert_eq!(get(store, "ok-2").await.status, Status::Error, "helix.error on an operation");
    let ops = store.operations("ok-2", &PageRequest::first(10)).await.unwrap().items;
    assert_eq!(ops[0].status, Status::Ok);
    // An error never heals: a later clean operation leaves it.
    write(store, vec![op(operation("ok-2", "check", "op-check-2", 20))]).await;
    assert_eq!(get(store, "ok-2").await.status, Status::Error);
}

pub async fn events_oldest_first_with_own_timestamps(store: &dyn Store) {
    let mut c = creation("ev-1", &[], 0);
    c.events =
        vec![event_on_creation(&c, "helix.event.late", 0, 30), event_on_creation(&c, "helix.event.early", 1, 10)];
    let mut o = operation("ev-1", "check", "op-ev", 15);
    // The same event name and message twice: every occurrence is kept.
    o.events = vec![event_on_operation(&o, ERROR_EVENT, 0, 20), event_on_operation(&o, ERROR_EVENT, 1, 20)];
    write(store, vec![created(c), op(o)]).await;
    assert_eq!(
        all_event_names(store, "ev-1").await,
        vec![
            ("helix.event.early".to_owned(), T0 + 10),
            (ERROR_EVENT.to_owned(), T0 + 20),
            (ERROR_EVENT.to_owned(), T0 + 20),
            ("helix.event.late".to_owned(), T0 + 30),
        ]
    );
    let page = store.events("ev-1", &PageRequest::first(10)).await.unwrap();
    assert_eq!(page.items[1].ordinal, 0);
    assert_eq!(page.items[2].ordinal, 1);
    assert_eq!(page.items[1].metadata.get("message").map(String::as_str), Some("boom"));
    assert_eq!(get(store, "ev-1").await.status, Status::Error);
    assert!(store.events("nobody", &PageRequest::first(10)).await.unwrap().items.is_empty());
}

pub async fn events_paging_walks_all(store: &dyn Store) {
    let mut c = creation("evp", &[], 0);
    // Timestamps repeat so that the tie-breakers (span, ordinal) matter for paging.
    c.events = (0..25).map(|i| event_on_creation(&c, "helix.event.tick", i, i64::from(i / 3))).collect();
    write(store, vec![created(c)]).await;
    let full = store.events("evp", &PageRequest::first(1000)).await.unwrap().items;
    assert_eq!(full.len(), 25);
    let mut walked = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.events("evp", &PageRequest { limit: 7, cursor: cursor.clone() }).await.unwrap();
        assert!(page.items.len() <= 7);
        walked.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(walked, full, "pages concatenate to the full list: no duplicate, no loss");
    let exact = store.events("evp", &PageRequest::first(25)).await.unwrap();
    assert!(exact.next_cursor.is_none(), "no cursor when nothing follows");
}

pub async fn operations_oldest_first_all_kept_and_paged(store: &dyn Store) {
    write(store, vec![created(creation("op-e", &[], 0))]).await;
    let mut records = Vec::new();
    for i in 0..12i64 {
        // Shuffled start times; two operations share one trace (the older herald lost one).
        let mut o = operation("op-e", if i % 2 == 0 { "archive" } else { "copy" }, &format!("s{i}"), (i * 7) % 12);
        if i == 3 {
            o.trace_id = trace_of("s2");
        }
        o.metadata = md(&[("i", &i.to_string())]);
        records.push(op(o));
    }
    write(store, records).await;
    let full = store.operations("op-e", &PageRequest::first(100)).await.unwrap().items;
    assert_eq!(full.len(), 12);
    assert!(full.windows(2).all(|w| (w[0].timestamp_ns, &w[0].span_id) < (w[1].timestamp_ns, &w[1].span_id)));
    let first = &full[0];
    assert_eq!(first.entity_id, "op-e");
    assert_eq!(first.instrument_id, INST);
    assert_eq!(first.duration_ns, 9_000);
    assert_eq!(first.service_name.as_deref(), Some("svc"));
    assert!(!first.created_at.is_empty());
    assert_eq!(first.metadata.len(), 1);
    let mut walked = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.operations("op-e", &PageRequest { limit: 5, cursor }).await.unwrap();
        walked.extend(page.items);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(walked, full);
}

pub async fn operations_idempotent_by_span(store: &dyn Store) {
    write(store, vec![op(operation("x", "a", "same", 0))]).await;
    let out = write(store, vec![op(operation("x", "a", "same", 0))]).await;
    assert_eq!(out, WriteOutcome::default());
    let mut sibling = operation("x", "a", "sibling", 0);
    sibling.trace_id = trace_of("same");
    let out = write(store, vec![op(sibling)]).await;
    assert_eq!(out.operations_inserted, 1, "same trace, different span: a new operation");
    assert_eq!(store.operations("x", &PageRequest::first(10)).await.unwrap().items.len(), 2);
}

pub async fn span_refs_only_for_created_entities(store: &dyn Store) {
    let c = creation("known", &[], 0);
    write(store, vec![created(c.clone()), op(operation("ph", "x", "ph-op", 0))]).await;
    let refs = store.span_refs(&strings(&["known", "ph", "unknown", "known"])).await.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs["known"].trace_id, c.trace_id);
    assert_eq!(refs["known"].span_id, c.span_id);
    assert!(store.span_refs(&[]).await.unwrap().is_empty());
}

pub async fn children_count_counts_named_children(store: &dyn Store) {
    create_all(store, &[("root", &[], 0), ("k1", &["root"], 1), ("k2", &["root", "other"], 2), ("k3", &["k1"], 3)])
        .await;
    assert_eq!(store.children_count("root").await.unwrap(), 2);
    assert_eq!(store.children_count("k1").await.unwrap(), 1);
    assert_eq!(store.children_count("other").await.unwrap(), 1, "a parent that does not exist still has children");
    assert_eq!(store.children_count("k3").await.unwrap(), 0);
    assert_eq!(store.children_count("nobody").await.unwrap(), 0);
}

pub async fn lineage_linear_chain(store: &dyn Store) {
    let ids: Vec<String> = (0..10).map(|i| format!("chain-{i}")).collect();
    let mut records = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let parents: Vec<&str> = if i == 0 { vec![] } else { vec![ids[i - 1].as_str()] };
        records.push(created(creation(id, &parents, i as i64)));
    }
    write(store, records).await;
    let l = lineage(store, "chain-9", Direction::Ancestors, None).await;
    assert_eq!(l.root, "chain-9");
    assert_eq!(l.direction, Direction::Ancestors);
    assert_eq!(l.nodes.len(), 10);
    for (d, n) in l.nodes.iter().enumerate() {
        assert_eq!(n.id, format!("chain-{}", 9 - d));
        assert_eq!(n.depth, d as u32);
        assert_eq!(n.stage.as_deref(), Some("ingest"));
        assert_eq!(n.instrument_id, INST);
        assert!(!n.placeholder);
    }
    assert_eq!(l.nodes[0].parent_ids, strings(&["chain-8"]));
    assert_eq!(l.edges.len(), 9);
    assert!(!l.partial);
    assert!(l.next_cursor.is_none());

    let l = lineage(store, "chain-9", Direction::Ancestors, Some(3)).await;
    assert_eq!(node_ids(&l), ids_depths(&[("chain-9", 0), ("chain-8", 1), ("chain-7", 2), ("chain-6", 3)]));
    assert_eq!(edge_set(&l.edges), edges(&[("chain-8", "chain-9"), ("chain-7", "chain-8"), ("chain-6", "chain-7")]));
    assert!(!l.partial, "a depth limit is not a budget cut");

    let l = lineage(store, "chain-0", Direction::Descendants, Some(2)).await;
    assert_eq!(node_ids(&l), ids_depths(&[("chain-0", 0), ("chain-1", 1), ("chain-2", 2)]));
    assert_eq!(edge_set(&l.edges), edges(&[("chain-0", "chain-1"), ("chain-1", "chain-2")]));
    let l = lineage(store, "chain-0", Direction::Descendants, None).await;
    assert_eq!(l.nodes.len(), 10);
    let l = lineage(store, "chain-4", Direction::Ancestors, Some(0)).await;
    assert_eq!(node_ids(&l), ids_depths(&[("chain-4", 0)]));
    assert!(l.edges.is_empty());
}

pub async fn lineage_fan_in_of_five(store: &dyn Store) {
    // Parents created with decreasing timestamps: depth-1 order is by timestamp, not by ID.
    create_all(store, &[("p0", &[], 50), ("p1", &[], 40), ("p2", &[], 30), ("p3", &[], 20), ("p4", &[], 20)]).await;
    write(store, vec![created(creation("fan", &["p0", "p1", "p2", "p3", "p4"], 100))]).await;
    let l = lineage(store, "fan", Direction::Ancestors, None).await;
    assert_eq!(
        node_ids(&l),
        ids_depths(&[("fan", 0), ("p3", 1), ("p4", 1), ("p2", 1), ("p1", 1), ("p0", 1)]),
        "depth, then timestamp, then ID"
    );
    assert_eq!(edge_set(&l.edges), edges(&[("p0", "fan"), ("p1", "fan"), ("p2", "fan"), ("p3", "fan"), ("p4", "fan")]));
    assert_eq!(l.edges.len(), 5);
    let l = lineage(store, "p2", Direction::Descendants, None).await;
    assert_eq!(node_ids(&l), ids_depths(&[("p2", 0), ("fan", 1)]));
    assert_eq!(edge_set(&l.edges), edges(&[("p2", "fan")]));
}

pub async fn lineage_diamond_depths(store: &dyn Store) {
    create_all(store, &[("a", &[], 0), ("b", &["a"], 1), ("c", &["a"], 2), ("d", &["b", "c"], 3)]).await;
    let l = lineage(store, "d", Direction::Ancestors, None).await;
    assert_eq!(node_ids(&l), ids_depths(&[("d", 0), ("b", 1), ("c", 1), ("a", 2)]));
    assert_eq!(edge_set(&l.edges), edges(&[("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]));
    assert_eq!(l.edges.len(), 4, "edges are unique");
    let l = lineage(store, "a", Direction::Descendants, None).await;
    assert_eq!(node_ids(&l), ids_depths(&[("a", 0), ("b", 1), ("c", 1), ("d", 2)]));
    assert_eq!(edge_set(&l.edges), edges(&[("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]));
}

pub async fn lineage_child_before_parent(store: &dyn Store) {
    write(store, vec![created(creation("kid", &["mum"], 10))]).await;
    let l = lineage(store, "kid", Direction::Ancestors, None).await;
    assert_eq!(node_ids(&l), ids_depths(&[("kid", 0)]));
    assert!(l.edges.is_empty());
    write(store, vec![created(creation("mum", &[], 0))]).await;
    let l = lineage(store, "kid", Direction::Ancestors, None).await;
    assert_eq!(node_ids(&l), ids_depths(&[("kid", 0), ("mum", 1)]));
    assert_eq!(edge_set(&l.edges), edges(&[("mum", "kid")]));
    let l = lineage(store, "mum", Direction::Descendants, None).await;
    assert_eq!(node_ids(&l), ids_depths(&[("mum", 0), ("kid", 1)]));
    let g = store.graph("mum", &GraphQuery::default()).await.unwrap().unwrap();
    assert_eq!(g.edges, vec![Edge { source: "mum".into(), target: "kid".into() }]);
}

pub async fn lineage_parent_that_never_arrives(store: &dyn Store) {
    create_all(store, &[("real", &[], 0), ("orphan", &["ghost", "real"], 5)]).await;
    let e = get(store, "orphan").await;
    assert_eq!(e.parent_ids, strings(&["ghost", "real"]), "the missing parent stays listed");
    let l = lineage(store, "orphan", Direction::Ancestors, None).await;
    assert_eq!(node_ids(&l), ids_depths(&[("orphan", 0), ("real", 1)]), "a missing parent is not a node");
    assert_eq!(edge_set(&l.edges), edges(&[("real", "orphan")]));
    let g = store.graph("orphan", &GraphQuery::default()).await.unwrap().unwrap();
    assert_eq!(g.nodes.len(), 2);
    assert_eq!(g.edges, vec![Edge { source: "real".into(), target: "orphan".into() }]);
    assert!(store
        .lineage(&LineageQuery {
            root: "ghost".into(),
            direction: Direction::Descendants,
            max_depth: None,
            limit: 10,
            cursor: None
        })
        .await
        .unwrap()
        .is_none());
}

pub async fn lineage_cycles_terminate(store: &dyn Store) {
    // A cycle can only come from bad data (a child named as its ancestor's parent); walks
    // must still end, with each node once.
    create_all(store, &[("x", &["z"], 0), ("y", &["x"], 1), ("z", &["y"], 2), ("self", &["self"], 3)]).await;
    let l = lineage(store, "x", Direction::Ancestors, None).await;
    assert_eq!(node_ids(&l), ids_depths(&[("x", 0), ("z", 1), ("y", 2)]));
    assert_eq!(edge_set(&l.edges), edges(&[("z", "x"), ("y", "z"), ("x", "y")]));
    let l = lineage(store, "x", Direction::Descendants, None).await;
    assert_eq!(node_ids(&l), ids_depths(&[("x", 0), ("y", 1), ("z", 2)]));
    let l = lineage(store, "self", Direction::Ancestors, None).await;
    assert_eq!(node_ids(&l), ids_depths(&[("self", 0)]));
    let l = lineage(store, "self", Direction::Descendants, None).await;
    assert_eq!(node_ids(&l), ids_depths(&[("self", 0)]));
    let g = store.graph("y", &GraphQuery::default()).await.unwrap().unwrap();
    let unique: HashSet<&str> = g.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(unique.len(), g.nodes.len());
    assert_eq!(g.nodes.len(), 3);
}

pub async fn lineage_paging_walks_all(store: &dyn Store) {
    // A tree of fan-out 3 and depth 3 below "t" (40 nodes) plus cross edges making a DAG.
    let mut records = vec![created(creation("t", &[], 0))];
    let mut level = vec!["t".to_owned()];
    let mut n = 0;
    for _ in 0..3 {
        let mut next = Vec::new();
        for (pi, parent) in level.iter().enumerate() {
            for k in 0..3 {
                n += 1;
                let id = format!("t-{n:03}");
                let mut parents = vec![parent.as_str()];
                // Every third child also names its parent's left neighbour.
                let cross = level.get(pi.wrapping_sub(1));
                if k == 2 {
                    if let Some(c) = cross {
                        parents.push(c.as_str());
                    }
                }
                records.push(created(creation(&id, &parents, (n % 7) as i64)));
                next.push(id);
            }
        }
        level = next;
    }
    write(store, records).await;
    let full = lineage(store, "t", Direction::Descendants, None).await;
    assert_eq!(full.nodes.len(), 40, "the root and 39 descendants");
    assert!(!full.partial);

    let mut nodes = Vec::new();
    let mut all_edges = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = store
            .lineage(&LineageQuery {
                root: "t".into(),
                direction: Direction::Descendants,
                max_depth: None,
                limit: 6,
                cursor: cursor.clone(),
            })
            .await
            .unwrap()
            .unwrap();
        pages += 1;
        assert!(page.nodes.len() <= 7, "root plus at most `limit` nodes");
        assert_eq!(page.partial, page.next_cursor.is_some());
        nodes.extend(page.nodes);
        all_edges.extend(page.edges);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(pages < 100, "paging must end");
    }
    assert_eq!(node_ids(&Lineage { nodes, ..full.clone() }), node_ids(&full), "pages concatenate to the full walk");
    assert_eq!(all_edges.len(), full.edges.len(), "each edge on exactly one page");
    assert_eq!(edge_set(&all_edges), edge_set(&full.edges));

    // A budget that cuts the walk says so (39 nodes below the root).
    let cut = store
        .lineage(&LineageQuery {
            root: "t".into(),
            direction: Direction::Descendants,
            max_depth: None,
            limit: 38,
            cursor: None,
        })
        .await
        .unwrap()
        .unwrap();
    assert!(cut.partial);
    let exact = store
        .lineage(&LineageQuery {
            root: "t".into(),
            direction: Direction::Descendants,
            max_depth: None,
            limit: 39,
            cursor: None,
        })
        .await
        .unwrap()
        .unwrap();
    assert!(!exact.partial);
    assert!(exact.next_cursor.is_none());
}

pub async fn lineage_wide_level_is_cut_in_order(store: &dyn Store) {
    // 300 children of one block and 300 parents of one merge: wider than any small budget.
    // Timestamps run against the IDs, with ties, so a cut must follow (timestamp, ID).
    let offset = |i: usize| 1_000 - (i as i64 / 2);
    let mut records = vec![created(creation("w-block", &[], 0))];
    let mut mums = Vec::new();
    for i in 0..300 {
        records.push(created(creation(&format!("w-kid-{i:03}"), &["w-block"], offset(i))));
        records.push(created(creation(&format!("w-mum-{i:03}"), &[], offset(i))));
        mums.push(format!("w-mum-{i:03}"));
    }
    let mum_refs: Vec<&str> = mums.iter().map(String::as_str).collect();
    records.push(created(creation("w-merge", &mum_refs, 2_000)));
    write(store, records).await;

    let mut order: Vec<(i64, usize)> = (0..300).map(|i| (offset(i), i)).collect();
    order.sort();
    for (root, direction, prefix) in
        [("w-block", Direction::Descendants, "w-kid"), ("w-merge", Direction::Ancestors, "w-mum")]
    {
        let want: Vec<String> = order.iter().map(|(_, i)| format!("{prefix}-{i:03}")).collect();
        let q = |limit: usize, cursor: Option<String>| LineageQuery {
            root: root.into(),
            direction,
            max_depth: None,
            limit,
            cursor,
        };
        let first = store.lineage(&q(10, None)).await.unwrap().unwrap();
        assert!(first.partial);
        let got: Vec<String> = first.nodes.iter().skip(1).map(|n| n.id.clone()).collect();
        assert_eq!(got, want[..10].to_vec(), "{root}: the first nodes of the level");
        assert_eq!(first.edges.len(), 10);
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.lineage(&q(70, cursor)).await.unwrap().unwrap();
            all.extend(page.nodes.into_iter().filter(|n| n.depth == 1).map(|n| n.id));
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(all, want, "{root}: pages walk the whole level in order");
    }
}

pub async fn lineage_unknown_root_is_none(store: &dyn Store) {
    for direction in [Direction::Ancestors, Direction::Descendants] {
        let q = LineageQuery { root: "missing".into(), direction, max_depth: None, limit: 10, cursor: None };
        assert!(store.lineage(&q).await.unwrap().is_none());
    }
    assert!(store.graph("missing", &GraphQuery::default()).await.unwrap().is_none());
}

pub async fn descendants_are_the_lineage_walk_each_once(store: &dyn Store) {
    // A tree of fan-out 3 and depth 3 below "i" with cross edges (diamonds reached at two
    // depths), a cycle back to the root, an error entity, another instrument, a child that
    // arrives before its parent, a parent that never arrives, and a placeholder parent.
    let mut records = vec![created(creation("i", &["i-039"], 0))];
    let mut level = vec!["i".to_owned()];
    let mut n = 0;
    for _ in 0..3 {
        let mut next = Vec::new();
        for (pi, parent) in level.iter().enumerate() {
            for k in 0..3 {
                n += 1;
                let id = format!("i-{n:03}");
                let mut parents = vec![parent.clone()];
                if k == 2 {
                    // Also a child of a node one level up: reached at two depths.
                    parents.push(level[(pi + 1) % level.len()].clone());
                    parents.push("never-arrives".to_owned());
                }
                let refs: Vec<&str> = parents.iter().map(String::as_str).collect();
                let mut c = creation(&id, &refs, (n % 5) as i64);
                c.0.name = ["search", "cluster", "classify"][n % 3].to_owned();
                if n % 7 == 0 {
                    c.0.status = Status::Error;
                }
                if n % 11 == 0 {
                    c.0.instrument_id = "OTHER".to_owned();
                }
                records.push(created(c));
                next.push(id);
            }
        }
        level = next;
    }
    records.push(created(creation("i-kid", &["i-late", "ph"], 100)));
    write(store, records).await;
    create_all(store, &[("i-late", &["i-005"], 90)]).await;
    write(store, vec![op(operation("ph", "calibrate", "ph-op", 95))]).await;
    create_all(store, &[("ph-kid", &["ph"], 96)]).await;

    let light = |n: &crate::LineageNode| {
        (n.id.clone(), n.depth, n.instrument_id.clone(), n.stage.clone(), n.status, n.timestamp_ns, n.placeholder)
    };
    for root in ["i", "i-001", "i-005", "i-039", "ph", "never-arrives", "missing"] {
        for depth in [None, Some(1), Some(2), Some(3)] {
            let got = store.descendants(root, depth, 10_000).await.expect("descendants");
            let want = store
                .lineage(&LineageQuery {
                    root: root.to_owned(),
                    direction: Direction::Descendants,
                    max_depth: depth,
                    limit: 10_000,
                    cursor: None,
                })
                .await
                .expect("lineage");
            let (Some(got), Some(want)) = (got, want) else {
                assert!(root == "missing" || root == "never-arrives", "{root}: unknown to one walk only");
                continue;
            };
            assert!(!got.partial);
            let want: Vec<_> = want.nodes.iter().skip(1).map(light).collect();
            let got: Vec<_> = got
                .nodes
                .iter()
                .map(|d| {
                    (
                        d.id.clone(),
                        d.depth,
                        d.instrument_id.clone(),
                        d.stage.clone(),
                        d.status,
                        d.timestamp_ns,
                        d.placeholder,
                    )
                })
                .collect();
            assert_eq!(got, want, "{root} to depth {depth:?}: the descendants walk, in order, each once");
        }
    }
    let all = store.descendants("i", None, 10_000).await.unwrap().unwrap().nodes;
    assert_eq!(all.len(), 41, "39 in the tree, i-late and i-kid; the root itself not (it is in its own cycle)");
    assert!(all.iter().any(|d| d.status == Status::Error) && all.iter().any(|d| d.instrument_id == "OTHER"));
    let ph = store.descendants("ph", None, 10).await.unwrap().unwrap().nodes;
    assert_eq!(ph.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["ph-kid", "i-kid"]);

    // More than `cap`: the complete levels that fit, marked partial.
    let exact = store.descendants("i", None, 41).await.unwrap().unwrap();
    assert!(!exact.partial && exact.nodes.len() == 41);
    let cut = store.descendants("i", None, 40).await.unwrap().unwrap();
    assert!(cut.partial);
    assert!(cut.nodes.len() <= 40);
    assert_eq!(cut.nodes[..], all[..cut.nodes.len()], "a prefix of the walk");
    assert!(cut.nodes.len() == all.len() || all[cut.nodes.len()].depth > cut.nodes.last().map_or(0, |d| d.depth));
}

pub async fn graph_default_view_and_limits(store: &dyn Store) {
    // g-0 ← g-1 ← … ← g-15 (chain), root g-12: 12 ancestors, 3 descendants.
    let mut records = Vec::new();
    for i in 0..16 {
        let id = format!("g-{i:02}");
        let parent = format!("g-{:02}", i.max(1) - 1);
        let parents: Vec<&str> = if i == 0 { vec![] } else { vec![parent.as_str()] };
        let mut c = creation(&id, &parents, i);
        c.metadata = md(&[("i", &i.to_string())]);
        if i == 11 {
            c.status = Status::Error;
        }
        records.push(created(c));
    }
    write(store, records).await;
    let g = store.graph("g-12", &GraphQuery::default()).await.unwrap().unwrap();
    let ids: Vec<&str> = g.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["g-12", "g-11", "g-10", "g-09", "g-08", "g-07", "g-06", "g-05", "g-04", "g-03", "g-02", "g-13", "g-14"],
        "root, 10 ancestor levels, 2 descendant levels"
    );
    let root = &g.nodes[0];
    assert_eq!(root.instrument_id, INST);
    assert_eq!(root.trace_id.as_deref(), Some(trace_of("g-12").as_str()));
    assert_eq!(root.timestamp_ns, T0 + 12);
    assert_eq!(root.parent_ids, strings(&["g-11"]));
    assert_eq!(root.metadata, md(&[("i", "12")]));
    assert!(!root.has_error);
    assert!(g.nodes[1].has_error);
    assert_eq!(g.edges.len(), 12);
    let returned: HashSet<&str> = ids.iter().copied().collect();
    assert!(g.edges.iter().all(|e| returned.contains(e.source.as_str()) && returned.contains(e.target.as_str())));
    assert_eq!(store.graph("g-12", &GraphQuery::default()).await.unwrap().unwrap(), g, "deterministic");

    let small = store.graph("g-12", &GraphQuery { up: 10, down: 2, limit: 4 }).await.unwrap().unwrap();
    assert_eq!(small.nodes.len(), 4);
    let kept: HashSet<&str> = small.nodes.iter().map(|n| n.id.as_str()).collect();
    assert!(kept.contains("g-12"));
    assert!(small.edges.iter().all(|e| kept.contains(e.source.as_str()) && kept.contains(e.target.as_str())));
    assert_eq!(small.edges.len(), 3);

    let alone = store.graph("g-12", &GraphQuery { up: 0, down: 0, limit: 500 }).await.unwrap().unwrap();
    assert_eq!(alone.nodes.len(), 1);
    assert!(alone.edges.is_empty());
    let down = store.graph("g-00", &GraphQuery { up: 10, down: 3, limit: 500 }).await.unwrap().unwrap();
    let ids: Vec<&str> = down.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, vec!["g-00", "g-01", "g-02", "g-03"]);
}

pub async fn search_filters_combine(store: &dyn Store) {
    let mut records = Vec::new();
    for i in 0..12i64 {
        let mut c = creation(&format!("s-{i:02}"), &[], i * 10);
        c.instrument_id = if i % 2 == 0 { INST.to_owned() } else { "OTHER".to_owned() };
        c.name = if i % 3 == 0 { "detect".to_owned() } else { "ingest".to_owned() };
        c.status = if i % 4 == 0 { Status::Error } else { Status::Ok };
        c.metadata =
            md(&[("beam", &(i % 5).to_string()), ("odd key.with \"quotes\"", if i == 7 { "yes" } else { "no" })]);
        records.push(created(c));
    }
    records.push(op(operation("s-ph", "touch", "s-ph-op", 55)));
    write(store, records).await;
    async fn ids(store: &dyn Store, f: EntityFilter) -> Vec<String> {
        let page = store.search(&f, &PageRequest::first(100)).await.unwrap();
        assert!(page.next_cursor.is_none());
        page.items.into_iter().map(|e| e.id).collect()
    }
    let all = ids(store, EntityFilter::default()).await;
    assert_eq!(all.len(), 13, "placeholders are entities too");
    assert_eq!(all[0], "s-11", "newest first");
    assert_eq!(
        ids(store, EntityFilter { instrument_id: Some(INST.into()), ..Default::default() }).await,
        strings(&["s-10", "s-08", "s-06", "s-ph", "s-04", "s-02", "s-00"])
    );
    assert_eq!(
        ids(store, EntityFilter { stage: Some("detect".into()), ..Default::default() }).await,
        strings(&["s-09", "s-06", "s-03", "s-00"])
    );
    assert_eq!(
        ids(store, EntityFilter { status: Some(Status::Error), ..Default::default() }).await,
        strings(&["s-08", "s-04", "s-00"])
    );
    assert_eq!(
        ids(store, EntityFilter { from_ns: Some(T0 + 30), to_ns: Some(T0 + 60), ..Default::default() }).await,
        strings(&["s-ph", "s-05", "s-04", "s-03"]),
        "from inclusive, to exclusive"
    );
    assert_eq!(
        ids(store, EntityFilter { metadata: vec![("beam".into(), "2".into())], ..Default::default() }).await,
        strings(&["s-07", "s-02"])
    );
    assert_eq!(
        ids(
            store,
            EntityFilter {
                metadata: vec![("beam".into(), "2".into()), ("odd key.with \"quotes\"".into(), "yes".into())],
                ..Default::default()
            }
        )
        .await,
        strings(&["s-07"])
    );
    assert_eq!(
        ids(
            store,
            EntityFilter {
                instrument_id: Some(INST.into()),
                stage: Some("detect".into()),
                status: Some(Status::Error),
                ..Default::default()
            }
        )
        .await,
        strings(&["s-00"])
    );
    assert!(ids(store, EntityFilter { instrument_id: Some("NONE".into()), ..Default::default() }).await.is_empty());
    assert!(ids(store, EntityFilter { metadata: vec![("beam".into(), "9".into())], ..Default::default() })
        .await
        .is_empty());
}

pub async fn search_prefix_is_literal(store: &dyn Store) {
    create_all(
        store,
        &[
            ("a%b-1", &[], 0),
            ("a_b-2", &[], 1),
            ("axb-3", &[], 2),
            ("a%", &[], 3),
            ("b", &[], 4),
            ("a\u{10FFFF}z", &[], 5),
        ],
    )
    .await;
    async fn prefix(store: &dyn Store, p: &str) -> Vec<String> {
        let f = EntityFilter { id_prefix: Some(p.into()), ..Default::default() };
        let mut v: Vec<String> =
            store.search(&f, &PageRequest::first(100)).await.unwrap().items.into_iter().map(|e| e.id).collect();
        v.sort();
        v
    }
    assert_eq!(prefix(store, "a%").await, strings(&["a%", "a%b-1"]));
    assert_eq!(prefix(store, "a_").await, strings(&["a_b-2"]));
    assert_eq!(prefix(store, "axb-3").await, strings(&["axb-3"]), "an exact ID is its own prefix");
    assert_eq!(prefix(store, "a\u{10FFFF}").await, strings(&["a\u{10FFFF}z"]));
    assert_eq!(prefix(store, "a").await.len(), 5);
    assert!(prefix(store, "c").await.is_empty());
}

pub async fn search_paging_newest_first(store: &dyn Store) {
    // Timestamps repeat in threes so that the ID tie-breaker matters for paging.
    let specs: Vec<(String, i64)> = (0..23).map(|i| (format!("pg-{i:02}"), i64::from(i / 3))).collect();
    let records = specs.iter().map(|(id, off)| created(creation(id, &[], *off))).collect();
    write(store, records).await;
    let full = store.search(&EntityFilter::default(), &PageRequest::first(100)).await.unwrap().items;
    assert_eq!(full.len(), 23);
    assert!(full.windows(2).all(
        |w| w[0].timestamp_ns > w[1].timestamp_ns || (w[0].timestamp_ns == w[1].timestamp_ns && w[0].id < w[1].id)
    ));
    let mut walked = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.search(&EntityFilter::default(), &PageRequest { limit: 4, cursor }).await.unwrap();
        assert!(page.items.len() <= 4);
        walked.extend(page.items);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(walked, full);
    // Paging with a filter keeps the filter.
    let f = EntityFilter { from_ns: Some(T0 + 3), ..Default::default() };
    let first = store.search(&f, &PageRequest::first(5)).await.unwrap();
    let rest = store.search(&f, &PageRequest { limit: 100, cursor: first.next_cursor }).await.unwrap();
    assert_eq!(first.items.len() + rest.items.len(), 14);
}

pub async fn instruments_are_listed_sorted(store: &dyn Store) {
    let mut a = creation("i-1", &[], 0);
    a.instrument_id = "ZED".into();
    let mut b = operation("i-2", "x", "i-op", 0);
    b.instrument_id = "ALPHA".into();
    write(store, vec![created(a), op(b), created(creation("i-3", &[], 0)), created(creation("i-4", &[], 0))]).await;
    assert_eq!(store.instruments().await.unwrap(), strings(&["ALPHA", INST, "ZED"]));
}

pub async fn stages_summarise_non_placeholders(store: &dyn Store) {
    let mut records = Vec::new();
    for i in 0..6i64 {
        let mut c = creation(&format!("st-{i}"), &[], i * 100);
        c.name = if i < 4 { "detect".into() } else { "classify".into() };
        c.status = if i == 1 || i == 2 { Status::Error } else { Status::Ok };
        records.push(created(c));
    }
    let mut foreign = creation("st-x", &[], 9_999);
    foreign.instrument_id = "OTHER".into();
    records.push(created(foreign));
    records.push(op(operation("st-ph", "x", "st-op", 50_000)));
    write(store, records).await;
    let s = store.stages(INST).await.unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!((s[0].stage.as_str(), s[0].count, s[0].error_count, s[0].last_seen_ns), ("classify", 2, 0, T0 + 500));
    assert_eq!((s[1].stage.as_str(), s[1].count, s[1].error_count, s[1].last_seen_ns), ("detect", 4, 2, T0 + 300));
    assert!(store.stages("NONE").await.unwrap().is_empty());
}

pub async fn logs_correlate_by_entity_and_traces(store: &dyn Store) {
    let c = creation("lg", &[], 0);
    let o = operation("lg", "archive", "lg-op", 10);
    let records = vec![
        created(c.clone()),
        op(o.clone()),
        WriteRecord::Log(log(40, "by entity attribute", None, Some("lg"))),
        WriteRecord::Log(log(20, "in creation trace", Some(&c.trace_id), None)),
        WriteRecord::Log(log(30, "in operation trace", Some(&o.trace_id), Some("someone-else"))),
        WriteRecord::Log(log(25, "unrelated", Some(&trace_of("elsewhere")), Some("other"))),
        // Same body and time as an earlier record but another trace: a different record.
        WriteRecord::Log(log(20, "in creation trace", Some(&o.trace_id), None)),
    ];
    let out = write(store, records.clone()).await;
    assert_eq!(out.logs_inserted, 5);
    assert_eq!(write(store, records).await.logs_inserted, 0, "re-sent logs are not duplicated");
    let page = store.logs("lg", &PageRequest::first(100)).await.unwrap();
    let bodies: Vec<(i64, &str)> = page.items.iter().map(|l| (l.timestamp_ns - T0, l.body.as_str())).collect();
    assert_eq!(bodies.len(), 4);
    assert_eq!(bodies[0].0, 20);
    assert_eq!(bodies[1].0, 20);
    assert_eq!(&bodies[2..], &[(30, "in operation trace"), (40, "by entity attribute")]);
    let l = &page.items[3];
    assert_eq!(l.severity, "INFO");
    assert_eq!(l.entity_id.as_deref(), Some("lg"));
    assert_eq!(l.source.as_deref(), Some("python"));
    assert_eq!(l.attributes, md(&[("logger", "x")]));
    let mut walked = Vec::new();
    let mut cursor = None;
    loop {
        let p = store.logs("lg", &PageRequest { limit: 1, cursor }).await.unwrap();
        walked.extend(p.items);
        cursor = p.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(walked, page.items);
    assert!(store.logs("nobody", &PageRequest::first(10)).await.unwrap().items.is_empty());
}

/// Bodies of a log search's page, in order.
async fn log_bodies(store: &dyn Store, f: &LogFilter) -> Vec<String> {
    store.log_search(f, &PageRequest::first(1000)).await.unwrap().items.into_iter().map(|l| l.body).collect()
}

pub async fn log_search_by_each_filter(store: &dyn Store) {
    let c = creation("ls", &[], 0);
    let mut warn = log(30, "WARN disk 90% full on beam-3", Some(&c.trace_id), None);
    warn.severity = "WARNING".to_owned();
    warn.severity_number = 13;
    warn.span_id = Some(c.span_id.clone());
    warn.service_name = Some("ingest".to_owned());
    warn.process_name = Some("P/ingest".to_owned());
    let mut err = log(40, "Traceback: block_7 failed", None, Some("ls"));
    err.severity = "ERROR".to_owned();
    err.severity_number = 17;
    err.service_name = Some("search".to_owned());
    err.instrument_id = Some("OTHER".to_owned());
    // A word in the middle of a 64 KiB body.
    let long = format!("{}needle-in-the-middle{}", "x".repeat(32 * 1024), "y".repeat(32 * 1024));
    let records = vec![
        created(c.clone()),
        WriteRecord::Log(log(10, "plain line, no IDs", None, None)),
        WriteRecord::Log(log(20, "Info about ls", Some(&c.trace_id), None)),
        WriteRecord::Log(warn),
        WriteRecord::Log(err),
        WriteRecord::Log(log(50, &long, None, None)),
        WriteRecord::Log(log(60, "under_score and 50% literal", None, None)),
    ];
    assert_eq!(write(store, records).await.logs_inserted, 6);
    let all = LogFilter::default();
    assert_eq!(log_bodies(store, &all).await.len(), 6);
    let by = |f: LogFilter| async move { log_bodies(store, &f).await };
    assert_eq!(
        by(LogFilter { trace_id: Some(c.trace_id.clone()), ..all.clone() }).await,
        ["Info about ls", "WARN disk 90% full on beam-3"]
    );
    assert_eq!(
        by(LogFilter { span_id: Some(c.span_id.clone()), ..all.clone() }).await,
        ["WARN disk 90% full on beam-3"]
    );
    assert_eq!(
        by(LogFilter { entity_id: Some("ls".into()), ..all.clone() }).await,
        ["Info about ls", "WARN disk 90% full on beam-3", "Traceback: block_7 failed"],
        "the entity's own lines and its trace's lines"
    );
    assert_eq!(
        by(LogFilter { instrument_id: Some("OTHER".into()), ..all.clone() }).await,
        ["Traceback: block_7 failed"]
    );
    assert_eq!(
        by(LogFilter { service_name: Some("ingest".into()), ..all.clone() }).await,
        ["WARN disk 90% full on beam-3"]
    );
    assert_eq!(
        by(LogFilter { process_name: Some("P/ingest".into()), ..all.clone() }).await,
        ["WARN disk 90% full on beam-3"]
    );
    assert_eq!(
        by(LogFilter { min_severity: Some(13), ..all.clone() }).await,
        ["WARN disk 90% full on beam-3", "Traceback: block_7 failed"]
    );
    assert_eq!(by(LogFilter { min_severity: Some(17), ..all.clone() }).await, ["Traceback: block_7 failed"]);
    assert_eq!(
        by(LogFilter { from_ns: Some(T0 + 20), to_ns: Some(T0 + 40), ..all.clone() }).await,
        ["Info about ls", "WARN disk 90% full on beam-3"]
    );
    // Text: case-insensitive substrings, short ones too; wildcards are literal.
    let text = |t: &str| LogFilter { text: Some(t.to_owned()), ..LogFilter::default() };
    assert_eq!(by(text("traceback")).await, ["Traceback: block_7 failed"]);
    assert_eq!(by(text("BEAM-3")).await, ["WARN disk 90% full on beam-3"]);
    assert_eq!(by(text("needle-in-the-middle")).await.len(), 1);
    assert_eq!(by(text("LS")).await, ["Info about ls"]);
    assert_eq!(by(text("50%")).await, ["under_score and 50% literal"]);
    assert_eq!(by(text("_")).await, ["Traceback: block_7 failed", "under_score and 50% literal"]);
    assert_eq!(by(text("0% f")).await, ["WARN disk 90% full on beam-3"]);
    assert!(by(text("absent words")).await.is_empty());
    assert_eq!(
        by(LogFilter { text: Some("block".into()), min_severity: Some(17), ..all.clone() }).await,
        ["Traceback: block_7 failed"]
    );
    // Everything the record carried comes back.
    let got =
        store.log_search(&LogFilter { min_severity: Some(13), ..all.clone() }, &PageRequest::first(1)).await.unwrap();
    let l = &got.items[0];
    assert_eq!((l.severity.as_str(), l.severity_number, l.observed_ns - T0), ("WARNING", 13, 31));
    assert_eq!(l.resource, md(&[("service.name", "conf")]));
    let services = store.log_values(LogField::Service, T0, T0 + 100, 10).await.unwrap();
    assert_eq!(services, ["ingest", "search"]);
    assert_eq!(store.log_values(LogField::Instrument, T0, T0 + 100, 10).await.unwrap(), [INST, "OTHER"]);
    assert_eq!(store.log_values(LogField::Service, T0 + 35, T0 + 100, 10).await.unwrap(), ["search"]);
}

pub async fn log_search_by_level(store: &dyn Store) {
    let at = |offset: i64, severity: &str| {
        let mut l = log(offset, &format!("{offset}: {severity}"), None, None);
        l.severity = severity.to_owned();
        WriteRecord::Log(l)
    };
    let records = vec![
        at(10, "ERROR"),
        at(20, "error"),
        at(30, " Error "),
        at(40, "WARNING"),
        at(50, "INFO"),
        at(60, "errors"),
        at(70, "\u{00c9}RROR"),
    ];
    write(store, records).await;
    let level = |l: &str| LogFilter { level: Some(l.to_owned()), ..LogFilter::default() };
    // Exact on printable ASCII, as Loki's `level` label reads the severity; a severity
    // with any other character is left to the caller (the Loki layer checks every label).
    assert_eq!(log_bodies(store, &level("error")).await, ["10: ERROR", "20: error", "30:  Error ", "70: \u{00c9}RROR"]);
    assert_eq!(log_bodies(store, &level("warning")).await, ["40: WARNING", "70: \u{00c9}RROR"]);
    assert_eq!(log_bodies(store, &level("ERROR")).await, ["70: \u{00c9}RROR"]);
    assert_eq!(
        log_bodies(store, &LogFilter { text: Some("error".into()), ..level("error") }).await,
        ["10: ERROR", "20: error", "30:  Error "]
    );
}

pub async fn log_search_pages_both_ways(store: &dyn Store) {
    // Ties on the timestamp keep arrival order.
    let records: Vec<WriteRecord> =
        (0..25).map(|i| WriteRecord::Log(log(i / 2, &format!("line {i:02}"), None, None))).collect();
    write(store, records).await;
    for order in [LogOrder::Asc, LogOrder::Desc] {
        let f = LogFilter { order, ..LogFilter::default() };
        let mut walked = Vec::new();
        let mut cursor = None;
        loop {
            let p = store.log_search(&f, &PageRequest { limit: 4, cursor }).await.unwrap();
            assert!(p.items.len() <= 4);
            walked.extend(p.items.into_iter().map(|l| l.body));
            cursor = p.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        let mut expected: Vec<String> = (0..25).map(|i| format!("line {i:02}")).collect();
        if order == LogOrder::Desc {
            expected.reverse();
        }
        assert_eq!(walked, expected, "{order:?}: every line once, in order");
    }
    let asc = store.log_search(&LogFilter::default(), &PageRequest::first(2)).await.unwrap();
    let desc = LogFilter { order: LogOrder::Desc, ..LogFilter::default() };
    assert!(
        matches!(
            store.log_search(&desc, &PageRequest { limit: 2, cursor: asc.next_cursor }).await,
            Err(StoreError::BadCursor(_))
        ),
        "a cursor keeps the order it was made for"
    );
}

pub async fn log_retention_removes_old_records_only(store: &dyn Store) {
    let c = creation("lr", &[], 0);
    let mut records = vec![created(c.clone())];
    records
        .extend((0..12).map(|i| WriteRecord::Log(log(i * 10, &format!("aged line {i:02}"), Some(&c.trace_id), None))));
    write(store, records).await;
    // As of T0 + 200 with a 145 ns limit: the lines before T0 + 55 go.
    let removed = store.prune_logs(std::time::Duration::from_nanos(145), T0 + 200).await.unwrap();
    assert_eq!(removed, 6);
    let left = log_bodies(store, &LogFilter::default()).await;
    assert_eq!(left, (6..12).map(|i| format!("aged line {i:02}")).collect::<Vec<_>>());
    assert_eq!(
        log_bodies(store, &LogFilter { text: Some("aged line 03".into()), ..LogFilter::default() }).await.len(),
        0
    );
    assert!(store.entity("lr").await.unwrap().is_some(), "entities are not touched");
    assert_eq!(store.prune_logs(std::time::Duration::from_nanos(145), T0 + 200).await.unwrap(), 0);
}

/// IDs the API must carry unchanged: separators, quotes, markup, non-ASCII, SQL wildcards, long.
pub fn hostile_ids() -> Vec<String> {
    vec![
        "a/b/c".to_owned(),
        "quote\"s and 'single'".to_owned(),
        "<script>alert(1)</script>".to_owned(),
        "emoji 🧬🔭 ünïcødé".to_owned(),
        "100%_done".to_owned(),
        "semi;colon -- DROP TABLE entities".to_owned(),
        "x".repeat(4096),
    ]
}

pub async fn hostile_ids_round_trip(store: &dyn Store) {
    let ids = hostile_ids();
    let mut records = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let parents: Vec<&str> = if i == 0 { vec![] } else { vec![ids[i - 1].as_str()] };
        let mut c = creation(id, &parents, i as i64);
        c.metadata = md(&[(id.as_str(), id.as_str())]);
        c.events = vec![event_on_creation(&c, "helix.event.x", 0, 1)];
        records.push(created(c));
        records.push(op(operation(id, "touch", &format!("hostile-{i}"), 2)));
    }
    write(store, records).await;
    for (i, id) in ids.iter().enumerate() {
        let e = get(store, id).await;
        assert_eq!(&e.id, id);
        assert_eq!(e.metadata.get(id), Some(id));
        if i > 0 {
            assert_eq!(e.parent_ids, vec![ids[i - 1].clone()]);
        }
        assert_eq!(store.events(id, &PageRequest::first(10)).await.unwrap().items[0].entity_id, *id);
        assert_eq!(store.operations(id, &PageRequest::first(10)).await.unwrap().items[0].entity_id, *id);
        let f = EntityFilter { id_prefix: Some(id.clone()), ..Default::default() };
        let found = store.search(&f, &PageRequest::first(10)).await.unwrap().items;
        assert_eq!(found.len(), 1, "prefix search for {id:?}");
        assert_eq!(&found[0].id, id);
        let f = EntityFilter { metadata: vec![(id.clone(), id.clone())], ..Default::default() };
        assert_eq!(store.search(&f, &PageRequest::first(10)).await.unwrap().items.len(), 1);
    }
    let last = ids.last().map(String::as_str).unwrap_or_default();
    let l = lineage(store, last, Direction::Ancestors, None).await;
    let got: Vec<String> = l.nodes.iter().map(|n| n.id.clone()).collect();
    let mut want = ids.clone();
    want.reverse();
    assert_eq!(got, want);
    let refs = store.span_refs(&ids).await.unwrap();
    assert_eq!(refs.len(), ids.len());
    // Cursors carry hostile sort keys too.
    let first = store.search(&EntityFilter::default(), &PageRequest::first(3)).await.unwrap();
    let rest =
        store.search(&EntityFilter::default(), &PageRequest { limit: 100, cursor: first.next_cursor }).await.unwrap();
    assert_eq!(first.items.len() + rest.items.len(), ids.len());
}

pub async fn malformed_cursors_are_rejected(store: &dyn Store) {
    write(store, vec![created(creation("mc", &[], 0)), created(creation("mc2", &["mc"], 1))]).await;
    let search_cursor = store
        .search(&EntityFilter::default(), &PageRequest::first(1))
        .await
        .unwrap()
        .next_cursor
        .expect("two entities, page of one");
    let bad = ["garbage", "", "7b7d", "%%%", search_cursor.as_str()];
    for cursor in bad {
        let page = PageRequest { limit: 10, cursor: Some(cursor.to_owned()) };
        let is_search_cursor = cursor == search_cursor;
        assert!(matches!(store.events("mc", &page).await, Err(StoreError::BadCursor(_))), "events {cursor:?}");
        assert!(matches!(store.operations("mc", &page).await, Err(StoreError::BadCursor(_))), "ops {cursor:?}");
        assert!(matches!(store.logs("mc", &page).await, Err(StoreError::BadCursor(_))), "logs {cursor:?}");
        if !is_search_cursor {
            assert!(
                matches!(store.search(&EntityFilter::default(), &page).await, Err(StoreError::BadCursor(_))),
                "search {cursor:?}"
            );
        }
        let q = LineageQuery {
            root: "mc".into(),
            direction: Direction::Descendants,
            max_depth: None,
            limit: 10,
            cursor: Some(cursor.to_owned()),
        };
        assert!(matches!(store.lineage(&q).await, Err(StoreError::BadCursor(_))), "lineage {cursor:?}");
    }
    let e = store.events("mc", &PageRequest { limit: 10, cursor: Some("zz".into()) }).await.unwrap_err();
    assert!(!e.is_transient());
}

// ---- reads for the Entity Inspector -------------------------------------------------------

pub async fn instrument_events_newest_first_filtered_and_paged(store: &dyn Store) {
    let mut records = Vec::new();
    for i in 0..5i64 {
        let mut c = creation(&format!("ie-{i}"), &[], i * 1_000);
        let name = if i % 2 == 0 { ERROR_EVENT } else { "helix.event.classified" };
        let e = event_on_creation(&c, name, 0, i * 1_000 + 10);
        c.events.push(e);
        records.push(created(c));
    }
    let mut foreign = creation("ie-x", &[], 500);
    foreign.instrument_id = "OTHER".into();
    let mut e = event_on_creation(&foreign, ERROR_EVENT, 0, 600);
    e.instrument_id = "OTHER".into();
    foreign.events.push(e);
    records.push(created(foreign));
    write(store, records).await;

    let errors =
        EventQuery { instrument_id: Some(INST.into()), event_name: Some(ERROR_EVENT.into()), ..Default::default() };
    let page = store.instrument_events(&errors, &PageRequest::first(100)).await.unwrap();
    let ids: Vec<&str> = page.items.iter().map(|e| e.entity_id.as_str()).collect();
    assert_eq!(ids, ["ie-4", "ie-2", "ie-0"]);
    assert_eq!(page.next_cursor, None);
    assert_eq!(page.items[0].timestamp_ns, T0 + 4_010);
    assert_eq!(page.items[0].metadata.get("message").map(String::as_str), Some("boom"));

    // Window on the event's own time: [T0+1_010, T0+4_010) holds ie-2 only.
    let windowed = EventQuery { from_ns: Some(T0 + 1_010), to_ns: Some(T0 + 4_010), ..errors.clone() };
    let page = store.instrument_events(&windowed, &PageRequest::first(100)).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].entity_id, "ie-2");

    // Every instrument and name, paged one by one: all six, newest first, each once.
    let mut seen = Vec::new();
    let mut request = PageRequest::first(1);
    loop {
        let page = store.instrument_events(&EventQuery::default(), &request).await.unwrap();
        seen.extend(page.items.iter().map(|e| e.entity_id.clone()));
        match page.next_cursor {
            Some(c) => request.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, strings(&["ie-4", "ie-3", "ie-2", "ie-1", "ie-x", "ie-0"]));
    let bad =
        store.instrument_events(&EventQuery::default(), &PageRequest { limit: 1, cursor: Some("zz".into()) }).await;
    assert!(matches!(bad, Err(StoreError::BadCursor(_))));
}

pub async fn numeric_fields_lists_keys_with_numeric_values(store: &dyn Store) {
    let mut a = creation("nf-a", &[], 0);
    a.metadata = md(&[("snr", "12.5"), ("beam", "3"), ("name", "x")]);
    let mut b = creation("nf-b", &[], 100);
    b.metadata = md(&[("dm", "-1e3"), ("flag", "true"), ("name", "7")]);
    let mut old = creation("nf-old", &[], -10_000);
    old.metadata = md(&[("ancient", "1")]);
    let mut foreign = creation("nf-x", &[], 50);
    foreign.instrument_id = "OTHER".into();
    foreign.metadata = md(&[("other", "1")]);
    write(store, vec![created(a), created(b), created(old), created(foreign)]).await;
    let fields = store.numeric_fields(INST, T0, T0 + 1_000, 1_000).await.unwrap();
    assert_eq!(fields, strings(&["beam", "dm", "name", "snr"]));
    // The sample is the newest entities: with one, only nf-b's keys.
    let fields = store.numeric_fields(INST, T0, T0 + 1_000, 1).await.unwrap();
    assert_eq!(fields, strings(&["dm", "name"]));
    assert!(store.numeric_fields("NONE", T0, T0 + 1_000, 10).await.unwrap().is_empty());
}

pub async fn monitor_points_numeric_only_newest_first(store: &dyn Store) {
    let mut records = Vec::new();
    for (i, (snr, weight)) in [("10", "1"), ("abc", "2"), ("30.5", "x"), ("40", "4")].iter().enumerate() {
        let mut c = creation(&format!("mp-{i}"), &[], i as i64 * 100);
        c.metadata = md(&[("snr", snr), ("w", weight)]);
        records.push(created(c));
    }
    let mut without = creation("mp-none", &[], 150);
    without.metadata = md(&[("dm", "5")]);
    records.push(created(without));
    let mut late = creation("mp-late", &[], 5_000);
    late.metadata = md(&[("snr", "1")]);
    records.push(created(late));
    write(store, records).await;
    let query = MonitorQuery {
        instrument_id: INST.into(),
        y_field: "snr".into(),
        weight_field: Some("w".into()),
        from_ns: T0,
        to_ns: T0 + 1_000,
        limit: 100,
    };
    let got = store.monitor_points(&query).await.unwrap();
    let rows: Vec<(&str, i64, f64, Option<f64>)> =
        got.points.iter().map(|p| (p.id.as_str(), p.timestamp_ns, p.y, p.weight)).collect();
    assert_eq!(
        rows,
        [("mp-3", T0 + 300, 40.0, Some(4.0)), ("mp-2", T0 + 200, 30.5, None), ("mp-0", T0, 10.0, Some(1.0)),]
    );
    assert!(!got.truncated);
    assert_eq!(got.points[0].metadata.get("w").map(String::as_str), Some("4"));
    let cut = store.monitor_points(&MonitorQuery { limit: 2, ..query.clone() }).await.unwrap();
    assert_eq!(cut.points.len(), 2);
    assert!(cut.truncated);
    let unknown = store.monitor_points(&MonitorQuery { y_field: "nope".into(), ..query }).await.unwrap();
    assert!(unknown.points.is_empty());
}

pub async fn stage_histogram_counts_per_stage_and_bucket(store: &dyn Store) {
    let mut records = Vec::new();
    for (i, (stage, offset, error)) in [
        ("detect", 0, false),
        ("detect", 50, true),
        ("detect", 150, false),
        ("classify", 120, true),
        ("classify", 999, false),
        ("classify", 1_000, false),
    ]
    .iter()
    .enumerate()
    {
        let mut c = creation(&format!("sh-{i}"), &[], *offset);
        c.name = (*stage).into();
        if *error {
            c.status = Status::Error;
        }
        records.push(created(c));
    }
    records.push(op(operation("sh-ph", "x", "sh-op", 10)));
    write(store, records).await;
    let got = store
        .stage_histogram(&StageHistogramQuery {
            instrument_id: INST.into(),
            from_ns: T0,
            to_ns: T0 + 1_000,
            bucket_ns: 100,
        })
        .await
        .unwrap();
    let bucket = |stage: &str, bucket: u32, count: u64, error_count: u64| StageBucket {
        stage: stage.into(),
        bucket,
        count,
        error_count,
    };
    assert_eq!(
        got,
        [
            bucket("classify", 1, 1, 1),
            bucket("classify", 9, 1, 0),
            bucket("detect", 0, 2, 1),
            bucket("detect", 1, 1, 0),
        ]
    );
}

/// Atomicity of a failed commit, for a store whose database has been made to reject every
/// operation named `boom`: nothing of a batch holding one is visible afterwards, and the same
/// records without it commit.
pub async fn failed_batch_leaves_no_partial_rows(store: &dyn Store) {
    let mut failing = creation("a1", &["p"], 0);
    failing.status = Status::Error;
    let batch = WriteBatch::of(vec![
        WriteRecord::Created(failing),
        WriteRecord::Created(creation("a2", &["a1"], 1)),
        span_rec(span("a-trace", "a-span", None, "root", 0)),
        WriteRecord::Operation(operation("a2", "boom", "boom-op", 2)),
    ]);
    let err = store.write(&batch).await.unwrap_err();
    assert!(matches!(err, StoreError::Internal { .. }), "{err:?}");
    assert!(store.entity("a1").await.unwrap().is_none());
    assert!(store.entity("a2").await.unwrap().is_none());
    assert_eq!(store.children_count("a1").await.unwrap(), 0);
    assert!(store.instruments().await.unwrap().is_empty());
    assert_eq!(store.trace(&trace_of("a-trace"), 10).await.unwrap(), None, "no span of a failed batch");
    assert!(store.traces(&TraceFilter::default(), &PageRequest::first(10)).await.unwrap().items.is_empty());
    // The writer is still usable, and the same records without the rejected one go in.
    let ok = WriteBatch::of(batch.records[..3].to_vec());
    let out = store.write(&ok).await.unwrap();
    assert_eq!((out.entities_created.len(), out.spans_inserted), (2, 1));
    assert_eq!(store.trace(&trace_of("a-trace"), 10).await.unwrap().expect("stored").spans.len(), 1);
}

// ---- the span store ---------------------------------------------------------------------------

pub async fn spans_round_trip_byte_exact_in_order(store: &dyn Store) {
    let root = span("rt", "rt-root", None, "process", 0);
    let mut child_b = span("rt", "rt-b", Some("rt-root"), "filter", 100);
    child_b.status_code = 2;
    child_b.status_message = "bad 'input' \"ü\" %_".into();
    child_b.kind = 3;
    let child_a = SpanRecorded { span_id: span_of("rt-a"), name: "write".into(), ..child_b.clone() };
    let mut creation_span = span("rt", "rt-c", Some("rt-root"), "detect", 50);
    creation_span.role = SpanRole::Creation;
    creation_span.entity_id = Some("cand-rt".into());
    creation_span.service_name = None;
    creation_span.process_name = None;
    creation_span.instrument_id = None;
    creation_span.resource_proto = Vec::new();
    let mut op_span = span("rt", "rt-o", None, "archive", 200);
    op_span.role = SpanRole::Operation;
    op_span.entity_id = Some("cand-rt".into());
    op_span.scope_name = String::new();
    op_span.scope_version = String::new();
    let other = span("rt-other", "rt-x", None, "elsewhere", 10);
    // Out of order and over two batches; child_a and child_b start at the same time.
    let first = write(store, vec![span_rec(op_span.clone()), span_rec(child_b.clone()), span_rec(other.clone())]).await;
    assert_eq!(first.spans_inserted, 3);
    let second =
        write(store, vec![span_rec(child_a.clone()), span_rec(root.clone()), span_rec(creation_span.clone())]).await;
    assert_eq!(second.spans_inserted, 3);
    assert_eq!(second, WriteOutcome { spans_inserted: 3, ..Default::default() }, "spans alone make no entity rows");

    let mut want = vec![root, creation_span, child_a, child_b, op_span];
    // Same start: by span ID.
    if want[2].span_id > want[3].span_id {
        want.swap(2, 3);
    }
    let got = store.trace(&trace_of("rt"), 100).await.unwrap().expect("stored trace");
    assert!(!got.partial);
    assert_eq!(got.spans, want, "byte-exact, ordered by start then span ID");
    let cut = store.trace(&trace_of("rt"), 2).await.unwrap().expect("stored trace");
    assert!(cut.partial);
    assert_eq!(cut.spans, want[..2].to_vec());
    assert_eq!(store.trace(&trace_of("rt-other"), 10).await.unwrap().expect("other").spans, vec![other]);
    assert_eq!(store.trace(&trace_of("never"), 10).await.unwrap(), None);
    assert_eq!(store.trace("not-hex", 10).await.unwrap(), None);
}

pub async fn spans_rewritten_add_nothing(store: &dyn Store) {
    let spans: Vec<WriteRecord> =
        (0..4).map(|i| span_rec(span("rw", &format!("rw-{i}"), None, "step", i * 10))).collect();
    let mut records = spans.clone();
    // The same span twice in one batch counts once.
    records.push(spans[0].clone());
    assert_eq!(write(store, records).await.spans_inserted, 4);
    assert_eq!(write(store, spans.clone()).await, WriteOutcome::default(), "a re-sent export adds nothing");
    // A retry together with one new span adds that span only.
    let mut retry = spans;
    retry.push(span_rec(span("rw", "rw-new", None, "late", 500)));
    assert_eq!(write(store, retry).await.spans_inserted, 1);
    assert_eq!(store.trace(&trace_of("rw"), 100).await.unwrap().expect("trace").spans.len(), 5);
    let summary = &store.traces(&TraceFilter::default(), &PageRequest::first(10)).await.unwrap().items;
    assert_eq!(summary.len(), 1);
    assert_eq!((summary[0].span_count, summary[0].duration_ns), (5, 1_500));
}

async fn trace_ids(store: &dyn Store, filter: TraceFilter) -> Vec<String> {
    let page = store.traces(&filter, &PageRequest::first(100)).await.expect("traces");
    assert!(page.next_cursor.is_none());
    page.items.into_iter().map(|t| t.trace_id).collect()
}

pub async fn traces_search_by_each_filter(store: &dyn Store) {
    // t1: a creation trace at 0 with a failing child, 3 µs long.
    let mut c1 = span("t1", "t1-c", None, "detect", 0);
    c1.role = SpanRole::Creation;
    c1.entity_id = Some("cand-1".into());
    let mut f1 = span("t1", "t1-f", Some("t1-c"), "filter", 2_000);
    f1.status_code = 2;
    // t2: a plain trace at 10 µs from another service and instrument.
    let mut p2 = span("t2", "t2-p", None, "process-request", 10_000);
    p2.service_name = Some("web".into());
    p2.instrument_id = Some("OTHER".into());
    // t3: an operation on cand-1 at 20 µs whose earliest span has a parent outside the export.
    let mut early = span("t3", "t3-e", Some("t3-remote"), "upload", 20_000);
    early.service_name = Some("web".into());
    let mut o3 = span("t3", "t3-o", None, "archive", 20_500);
    o3.role = SpanRole::Operation;
    o3.entity_id = Some("cand-1".into());
    let mut c3 = span("t3", "t3-c", Some("t3-o"), "checksum", 21_000);
    c3.role = SpanRole::Creation;
    c3.entity_id = Some("cand-0".into());
    write(store, vec![span_rec(f1), span_rec(p2), span_rec(early), span_rec(c3)]).await;
    write(store, vec![span_rec(c1), span_rec(o3)]).await;
    let (t1, t2, t3) = (trace_of("t1"), trace_of("t2"), trace_of("t3"));

    let all = store.traces(&TraceFilter::default(), &PageRequest::first(100)).await.unwrap().items;
    let want = |trace_id: &str,
                root: &str,
                service: &str,
                start: i64,
                duration: i64,
                spans: u64,
                errors: u64,
                entities: &[&str]| TraceSummary {
        trace_id: trace_id.to_owned(),
        root_name: root.to_owned(),
        root_service: Some(service.to_owned()),
        start_ns: T0 + start,
        duration_ns: duration,
        span_count: spans,
        error_count: errors,
        entity_ids: strings(entities),
    };
    assert_eq!(
        all,
        [
            want(&t3, "archive", "svc", 20_000, 2_000, 3, 0, &["cand-0", "cand-1"]),
            want(&t2, "process-request", "web", 10_000, 1_000, 1, 0, &[]),
            want(&t1, "detect", "svc", 0, 3_000, 2, 1, &["cand-1"]),
        ],
        "newest first; the root is the earliest parentless span"
    );

    let f = TraceFilter::default;
    assert_eq!(
        trace_ids(store, TraceFilter { service_name: Some("web".into()), ..f() }).await,
        [t3.clone(), t2.clone()]
    );
    assert_eq!(
        trace_ids(store, TraceFilter { span_name: Some("filter".into()), ..f() }).await,
        std::slice::from_ref(&t1)
    );
    assert_eq!(
        trace_ids(store, TraceFilter { instrument_id: Some("OTHER".into()), ..f() }).await,
        std::slice::from_ref(&t2)
    );
    assert_eq!(
        trace_ids(store, TraceFilter { entity_id: Some("cand-1".into()), ..f() }).await,
        [t3.clone(), t1.clone()]
    );
    assert_eq!(
        trace_ids(store, TraceFilter { entity_id: Some("cand-0".into()), ..f() }).await,
        std::slice::from_ref(&t3)
    );
    assert!(trace_ids(store, TraceFilter { entity_id: Some("nobody".into()), ..f() }).await.is_empty());
    assert_eq!(trace_ids(store, TraceFilter { errors_only: true, ..f() }).await, std::slice::from_ref(&t1));
    assert_eq!(trace_ids(store, TraceFilter { min_duration_ns: Some(2_000), ..f() }).await, [t3.clone(), t1.clone()]);
    assert_eq!(trace_ids(store, TraceFilter { max_duration_ns: Some(2_000), ..f() }).await, [t3.clone(), t2.clone()]);
    assert_eq!(
        trace_ids(store, TraceFilter { from_ns: Some(T0 + 10_000), to_ns: Some(T0 + 20_000), ..f() }).await,
        std::slice::from_ref(&t2)
    );
    // Span-level filters must hold on one span: t3 has a "web" span and a cand-1 span, not one that is both.
    assert!(trace_ids(
        store,
        TraceFilter { service_name: Some("web".into()), entity_id: Some("cand-1".into()), ..f() }
    )
    .await
    .is_empty());
    assert_eq!(
        trace_ids(store, TraceFilter { service_name: Some("svc".into()), entity_id: Some("cand-1".into()), ..f() })
            .await,
        [t3.clone(), t1.clone()]
    );
    assert_eq!(
        trace_ids(store, TraceFilter { span_name: Some("upload".into()), service_name: Some("web".into()), ..f() })
            .await,
        std::slice::from_ref(&t3)
    );
}

pub async fn traces_paging_walks_all(store: &dyn Store) {
    let mut records = Vec::new();
    for i in 0..7i64 {
        // Two traces share each start time: the trace ID breaks the tie.
        let seed = format!("pg-{i}");
        records.push(span_rec(span(&seed, &seed, None, "step", (i / 2) * 1_000)));
        records.push(span_rec(span(&seed, &format!("{seed}-child"), Some(&seed), "child", (i / 2) * 1_000 + 10)));
    }
    write(store, records).await;
    let all = store.traces(&TraceFilter::default(), &PageRequest::first(100)).await.unwrap().items;
    assert_eq!(all.len(), 7);
    let mut keys: Vec<(i64, String)> = all.iter().map(|t| (-t.start_ns, t.trace_id.clone())).collect();
    keys.sort();
    assert_eq!(
        keys,
        all.iter().map(|t| (-t.start_ns, t.trace_id.clone())).collect::<Vec<_>>(),
        "newest first, then ID"
    );
    for size in [1, 2, 3] {
        let mut seen = Vec::new();
        let mut request = PageRequest::first(size);
        loop {
            let page = store.traces(&TraceFilter::default(), &request).await.unwrap();
            assert!(page.items.len() <= size);
            seen.extend(page.items);
            match page.next_cursor {
                Some(c) => request.cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, all, "pages of {size} walk every trace once, in order");
    }
    let bad = store.traces(&TraceFilter::default(), &PageRequest { limit: 2, cursor: Some("zz".into()) }).await;
    assert!(matches!(bad, Err(StoreError::BadCursor(_))));
    let search_cursor = store.search(&EntityFilter::default(), &PageRequest::first(1)).await.unwrap().next_cursor;
    assert!(search_cursor.is_none(), "spans make no entities");
}

/// A span as `span_records` makes it (a real OTLP encoding): stored without its column fields
/// and joined back, it must come back as the same bytes; a name with a NUL (not a query column
/// value) or a clamped end makes the store keep the span whole, with the same result.
pub async fn spans_split_and_joined_exactly(store: &dyn Store) {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::{span, Span, Status as OtlpStatus};
    use prost::Message;
    let otlp = |name: &str, seed: &str, parent: Option<&str>, end: u64, status: Option<OtlpStatus>| Span {
        trace_id: helix_model::ids::from_hex(&trace_of("sj")).unwrap(),
        span_id: helix_model::ids::from_hex(&span_of(seed)).unwrap(),
        parent_span_id: parent.map(|p| helix_model::ids::from_hex(&span_of(p)).unwrap()).unwrap_or_default(),
        trace_state: "k=v".into(),
        name: name.into(),
        kind: 2,
        start_time_unix_nano: T0 as u64 + 10,
        end_time_unix_nano: end,
        attributes: vec![KeyValue {
            key: "a".into(),
            value: Some(AnyValue { value: Some(any_value::Value::IntValue(7)) }),
            ..Default::default()
        }],
        events: vec![span::Event { name: "e".into(), time_unix_nano: T0 as u64 + 11, ..Default::default() }],
        status,
        flags: 0x301,
        ..Default::default()
    };
    let record = |span: &Span, name: &str, end_ns: i64| {
        let mut r = self::span("sj", "unused", None, name, 10);
        r.span_id = helix_model::ids::to_hex(&span.span_id);
        r.parent_span_id = (!span.parent_span_id.is_empty()).then(|| helix_model::ids::to_hex(&span.parent_span_id));
        r.kind = span.kind;
        r.end_ns = end_ns;
        r.status_code = span.status.as_ref().map_or(0, |s| s.code);
        r.status_message = span.status.as_ref().map(|s| s.message.clone()).unwrap_or_default();
        r.span_proto = span.encode_to_vec();
        r
    };
    let ok = otlp("split", "sj-1", None, T0 as u64 + 20, Some(OtlpStatus { code: 2, message: "bad".into() }));
    let default_status = otlp("split", "sj-2", Some("sj-1"), T0 as u64 + 20, Some(OtlpStatus::default()));
    let no_status = otlp("split", "sj-3", Some("sj-1"), T0 as u64 + 20, None);
    let nul = otlp("a\0b", "sj-4", None, T0 as u64 + 20, None);
    let backwards = otlp("back", "sj-5", None, 5, None);
    let records = vec![
        record(&ok, "split", T0 + 20),
        record(&default_status, "split", T0 + 20),
        record(&no_status, "split", T0 + 20),
        record(&nul, "a\u{FFFD}b", T0 + 20),
        record(&backwards, "back", T0 + 10),
    ];
    write(store, records.iter().cloned().map(span_rec).collect()).await;
    let got = store.trace(&trace_of("sj"), 10).await.unwrap().expect("stored").spans;
    for want in &records {
        let g = got.iter().find(|g| g.span_id == want.span_id).expect("every span stored");
        assert_eq!(g, want, "span {} comes back exactly", want.span_id);
    }
}

pub async fn span_retention_removes_old_traces_only(store: &dyn Store) {
    const DAY: i64 = 86_400_000_000_000;
    let c = creation("ret-e", &[], 0);
    let mut op = operation("ret-e", "archive", "ret-op", 100);
    op.events = vec![event("ret-e", &op.trace_id, &op.span_id, "helix.event.x", 0, 150)];
    let old_root = span("ret-old", "ret-old-1", None, "old-step", 0);
    let old_child = span("ret-old", "ret-old-2", Some("ret-old-1"), "old-child", 10);
    let young = span("ret-young", "ret-young-1", None, "young-step", 10 * DAY);
    write(
        store,
        vec![
            WriteRecord::Created(c),
            WriteRecord::Operation(op),
            span_rec(old_root),
            span_rec(old_child),
            span_rec(young.clone()),
        ],
    )
    .await;
    let limits = SpanRetention { max_age: Some(std::time::Duration::from_secs(7 * 86_400)), max_bytes: None };
    let now = T0 + 10 * DAY + 1;
    assert_eq!(store.prune_spans(&limits, now).await.unwrap(), 2, "the old trace's two spans");
    assert_eq!(store.trace(&trace_of("ret-old"), 10).await.unwrap(), None);
    assert_eq!(store.trace(&trace_of("ret-young"), 10).await.unwrap().expect("young stays").spans, vec![young]);
    assert_eq!(trace_ids(store, TraceFilter::default()).await, [trace_of("ret-young")]);
    assert!(trace_ids(store, TraceFilter { span_name: Some("old-step".into()), ..Default::default() })
        .await
        .is_empty());
    assert_eq!(store.prune_spans(&limits, now).await.unwrap(), 0, "nothing left to remove");
    // Entity, operation and event rows are not span retention's.
    let e = store.entity("ret-e").await.unwrap().expect("entity kept");
    assert_eq!(e.timestamp_ns, T0);
    let ops = store.operations("ret-e", &PageRequest::first(10)).await.unwrap().items;
    assert_eq!(ops.len(), 1);
    assert_eq!(store.events("ret-e", &PageRequest::first(10)).await.unwrap().items.len(), 1);
}

pub async fn span_budget_removes_oldest_first(store: &dyn Store) {
    let big = |seed: &str, offset: i64| {
        let mut s = span(seed, seed, None, "step", offset);
        s.span_proto = vec![7; 10_000];
        s
    };
    write(store, vec![span_rec(big("bud-a", 0)), span_rec(big("bud-b", 1_000)), span_rec(big("bud-c", 2_000))]).await;
    let none = SpanRetention { max_age: None, max_bytes: Some(100_000) };
    assert_eq!(store.prune_spans(&none, T0).await.unwrap(), 0, "under the budget");
    // Three traces of about 10 kB each over a 25 kB budget: the oldest goes, no more.
    let limits = SpanRetention { max_age: None, max_bytes: Some(25_000) };
    assert_eq!(store.prune_spans(&limits, T0).await.unwrap(), 1);
    assert_eq!(trace_ids(store, TraceFilter::default()).await, [trace_of("bud-c"), trace_of("bud-b")]);
}

/// The entity of a log line's place: its own span's when that is an entity span, else the
/// trace's earliest entity span's; nothing for traces without one, unknown or non-hex IDs.
pub async fn span_entities_resolve_log_places(store: &dyn Store) {
    let root = span("se", "se-root", None, "ingest", 0);
    let mut outer = span("se", "se-outer", Some("se-root"), "search", 10);
    outer.role = SpanRole::Creation;
    outer.entity_id = Some("block-se".into());
    let mut inner = span("se", "se-inner", Some("se-outer"), "cluster", 20);
    inner.role = SpanRole::Creation;
    inner.entity_id = Some("cand-se".into());
    let child = span("se", "se-child", Some("se-inner"), "fit", 30);
    let mut op_span = span("se-op", "se-op", None, "archive", 40);
    op_span.role = SpanRole::Operation;
    op_span.entity_id = Some("cand-se".into());
    let plain = span("se-plain", "se-plain", None, "other", 50);
    write(store, [root, outer, inner, child, op_span, plain].into_iter().map(span_rec).collect()).await;

    let key = |trace: &str, span: Option<&str>| (trace_of(trace), span.map(span_of));
    let keys = vec![
        key("se", Some("se-inner")),
        key("se", Some("se-outer")),
        key("se", Some("se-child")),
        key("se", None),
        key("se", Some("se-unknown")),
        key("se-op", Some("se-op")),
        key("se-op", None),
        key("se-plain", Some("se-plain")),
        key("se-never", None),
        ("not hex".to_owned(), Some("nothex".to_owned())),
        (trace_of("se"), Some("nothex".to_owned())),
    ];
    let got = store.span_entities(&keys).await.expect("span_entities");
    let want: Vec<Option<String>> = [
        Some("cand-se"),
        Some("block-se"),
        Some("block-se"),
        Some("block-se"),
        Some("block-se"),
        Some("cand-se"),
        Some("cand-se"),
        None,
        None,
        None,
        Some("block-se"),
    ]
    .into_iter()
    .map(|e| e.map(str::to_owned))
    .collect();
    assert_eq!(got, want);
    assert!(store.span_entities(&[]).await.expect("no keys").is_empty());
}

// ---- flags and suspicion ----------------------------------------------------------------------

fn new_flag(flag_id: &str, entity_id: &str, reason: &str) -> NewFlag {
    NewFlag {
        flag_id: flag_id.to_owned(),
        entity_id: entity_id.to_owned(),
        severity: Severity::Bad,
        reason: reason.to_owned(),
        flagged_by: "operator <ops@example.org>".to_owned(),
        principal: Some("CHIME".to_owned()),
    }
}

async fn flag(store: &dyn Store, flag_id: &str, entity_id: &str) -> Flag {
    match store.add_flag(&new_flag(flag_id, entity_id, "corrupt block")).await.expect("add_flag") {
        FlagAdded::Added(f) => f,
        other => panic!("flag on {entity_id:?} not added: {other:?}"),
    }
}

/// `(flag_id, path)` of each reason `id` is suspect, nearest first.
async fn reasons(store: &dyn Store, id: &str) -> Vec<(String, Vec<String>)> {
    let s = store.suspicion(id).await.expect("suspicion");
    assert!(!s.partial);
    s.because.into_iter().map(|b| (b.flag_id, b.path)).collect()
}

fn path(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|i| i.to_string()).collect()
}

pub async fn flags_are_kept_with_their_history(store: &dyn Store) {
    create_all(store, &[("blk", &[], 0)]).await;
    let hostile = "<script>alert(1)</script> \"'; DROP TABLE entity_flags; --";
    let added = match store.add_flag(&new_flag("f1", "blk", hostile)).await.expect("add") {
        FlagAdded::Added(f) => f,
        other => panic!("{other:?}"),
    };
    assert_eq!((added.flag_id.as_str(), added.entity_id.as_str(), added.reason.as_str()), ("f1", "blk", hostile));
    assert_eq!((added.severity, added.principal.as_deref()), (Severity::Bad, Some("CHIME")));
    assert_eq!(added.flagged_by, "operator <ops@example.org>");
    assert!(added.created_at.ends_with('Z') && added.created_at.len() == 24, "{}", added.created_at);
    assert!(added.is_active());
    assert_eq!(store.add_flag(&new_flag("f2", "nope", "r")).await.expect("add"), FlagAdded::UnknownEntity);
    assert_eq!(store.clear_flag("other", "f1", "me").await.expect("clear"), Cleared::Unknown, "not its flag");
    assert_eq!(store.clear_flag("blk", "f9", "me").await.expect("clear"), Cleared::Unknown);
    let Cleared::Now(cleared) = store.clear_flag("blk", "f1", "shift lead").await.expect("clear") else {
        panic!("not cleared")
    };
    assert_eq!(cleared.cleared_by.as_deref(), Some("shift lead"));
    assert!(cleared.cleared_at.as_deref().is_some_and(|t| t >= added.created_at.as_str()));
    assert_eq!(store.clear_flag("blk", "f1", "again").await.expect("clear"), Cleared::Already(cleared.clone()));
    flag(store, "f3", "blk").await;
    let history = store.flags(&["blk".to_owned()], false).await.expect("flags");
    assert_eq!(history.iter().map(|f| f.flag_id.as_str()).collect::<Vec<_>>(), ["f1", "f3"]);
    assert_eq!(history[0], cleared, "a cleared flag stays as history");
    let active = store.flags(&["blk".to_owned()], true).await.expect("flags");
    assert_eq!(active.iter().map(|f| f.flag_id.as_str()).collect::<Vec<_>>(), ["f3"]);
}

pub async fn suspicion_reaches_every_descendant_and_clears_per_flag(store: &dyn Store) {
    // raw1 → c1 → e, raw1 → c2 → e (a diamond), raw2 → c2; e → x of another instrument.
    create_all(store, &[("raw1", &[], 0), ("raw2", &[], 1), ("c1", &["raw1"], 10), ("c2", &["raw1", "raw2"], 11)])
        .await;
    create_all(store, &[("e", &["c1", "c2"], 20)]).await;
    let mut x = creation("x", &["e"], 30);
    x.0.instrument_id = "OTHER".to_owned();
    write(store, vec![created(x)]).await;
    assert!(reasons(store, "x").await.is_empty());
    flag(store, "f1", "raw1").await;
    assert_eq!(reasons(store, "raw1").await, [("f1".to_owned(), path(&["raw1"]))]);
    assert_eq!(reasons(store, "c2").await, [("f1".to_owned(), path(&["raw1", "c2"]))]);
    assert_eq!(reasons(store, "e").await, [("f1".to_owned(), path(&["raw1", "c1", "e"]))], "the diamond counts once");
    assert_eq!(reasons(store, "x").await, [("f1".to_owned(), path(&["raw1", "c1", "e", "x"]))], "across instruments");
    assert!(reasons(store, "raw2").await.is_empty());
    // Written after the flag: suspect from its first read on.
    create_all(store, &[("late", &["x"], 40)]).await;
    assert_eq!(reasons(store, "late").await, [("f1".to_owned(), path(&["raw1", "c1", "e", "x", "late"]))]);
    // A parent that arrives after its child joins the DAG with the child.
    create_all(store, &[("orphan", &["later-parent"], 50)]).await;
    assert!(reasons(store, "orphan").await.is_empty());
    create_all(store, &[("later-parent", &["e"], 60)]).await;
    assert_eq!(reasons(store, "orphan").await.len(), 1);

    flag(store, "f2", "raw2").await;
    let e: Vec<String> = reasons(store, "e").await.into_iter().map(|(f, _)| f).collect();
    assert_eq!(e.len(), 2);
    assert!(e.contains(&"f1".to_owned()) && e.contains(&"f2".to_owned()), "{e:?}");
    assert!(matches!(store.clear_flag("raw1", "f1", "me").await.expect("clear"), Cleared::Now(_)));
    assert!(reasons(store, "c1").await.is_empty(), "cleared with its only flag");
    assert_eq!(reasons(store, "e").await, [("f2".to_owned(), path(&["raw2", "c2", "e"]))], "still suspect through f2");
    assert!(matches!(store.clear_flag("raw2", "f2", "me").await.expect("clear"), Cleared::Now(_)));
    for id in ["raw1", "raw2", "c1", "c2", "e", "x", "late"] {
        assert!(reasons(store, id).await.is_empty(), "{id} restored");
    }
    assert!(store.suspicion("unknown").await.expect("suspicion").because.is_empty());
}

pub async fn search_filters_suspect_entities(store: &dyn Store) {
    create_all(store, &[("a", &[], 0), ("b", &["a"], 1), ("c", &["b"], 2), ("d", &["a", "b"], 3), ("z", &[], 4)]).await;
    let ids = |suspect: Option<bool>| async move {
        let f = EntityFilter { suspect, ..EntityFilter::default() };
        let page = store.search(&f, &PageRequest::first(100)).await.expect("search");
        let mut ids: Vec<String> = page.items.into_iter().map(|e| e.id).collect();
        ids.sort();
        ids
    };
    assert!(ids(Some(true)).await.is_empty());
    assert_eq!(ids(Some(false)).await.len(), 5);
    let f = flag(store, "f1", "b").await;
    assert_eq!(ids(Some(true)).await, ["b", "c", "d"]);
    assert_eq!(ids(Some(false)).await, ["a", "z"]);
    let both = EntityFilter { suspect: Some(true), id_prefix: Some("c".into()), ..EntityFilter::default() };
    assert_eq!(store.search(&both, &PageRequest::first(10)).await.expect("search").items.len(), 1);
    store.clear_flag("b", &f.flag_id, "me").await.expect("clear");
    assert!(ids(Some(true)).await.is_empty());
}

pub async fn entities_by_id_returns_the_existing_ones(store: &dyn Store) {
    create_all(store, &[("e1", &[], 0), ("e2", &["e1"], 1)]).await;
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut got = store.entities(&ids(&["e2", "missing", "e1", "e2"])).await.expect("entities");
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(got.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["e1", "e2"]);
    assert_eq!(got[1], get(store, "e2").await, "whole rows");
    assert!(store.entities(&[]).await.expect("entities").is_empty());
}

/// A batch whose `helix.error` events of `INST` notify.
pub fn notifying(records: Vec<WriteRecord>) -> WriteBatch {
    let pairs = HashSet::from([(INST.to_owned(), ERROR_EVENT.to_owned())]);
    WriteBatch { records, refuse_conflicts: false, notify: crate::notify::NotifySet::new(pairs) }
}

/// A creation of `id` with one `helix.error`.
pub fn failing(id: &str, offset_ns: i64) -> EntityCreated {
    let mut c = creation(id, &[], offset_ns);
    c.events = vec![event_on_creation(&c, ERROR_EVENT, 0, offset_ns + 1)];
    c
}

pub const LEASE_NS: i64 = 60_000_000_000;

fn finish(ids: &[i64]) -> crate::notify::RoundWrites {
    let settle = ids.iter().map(|&id| crate::notify::Settle::Finish { id }).collect();
    crate::notify::RoundWrites { settle, ..Default::default() }
}

pub async fn a_notifying_event_is_recorded_once_however_often_it_arrives(store: &dyn Store) {
    let Some(notify) = store.notify() else { return };
    let now = crate::notify::now_ns();
    let c = failing("n1", 0);
    let first = store.write(&notifying(vec![created(c.clone())])).await.unwrap();
    assert_eq!(first.notifications_recorded, 1);
    let again = store.write(&notifying(vec![created(c.clone())])).await.unwrap();
    assert_eq!(again.notifications_recorded, 0, "a retried export is no second notification");
    assert_eq!(notify.outbox_depth().await.unwrap(), 1);
    let items = notify.claim_outbox("d", now, LEASE_NS, 10).await.unwrap();
    assert_eq!(items.iter().map(|i| i.entity_id.as_str()).collect::<Vec<_>>(), ["n1"]);
    notify.write_round("d", now, &finish(&[items[0].id])).await.unwrap();
    assert_eq!(notify.outbox_depth().await.unwrap(), 0, "delivered");
    // After its row left the outbox: the same export again, and another entity's creation
    // reusing its span ID (a buggy client; the event under that span and ordinal is stored).
    let mut reused = failing("n2", 10);
    reused.span_id = c.span_id.clone();
    reused.events[0].span_id = c.span_id.clone();
    let late = store.write(&notifying(vec![created(c), created(reused)])).await.unwrap();
    assert_eq!(late.entities_created.len(), 1, "n2 is stored");
    assert_eq!(late.notifications_recorded, 0, "its event is not, so it is not notified");
    assert_eq!(notify.outbox_depth().await.unwrap(), 0);
    // A new event still is.
    let next = store.write(&notifying(vec![created(failing("n3", 20))])).await.unwrap();
    assert_eq!(next.notifications_recorded, 1);
}

pub async fn outbox_rows_are_claimed_in_arrival_order_and_a_stale_settle_touches_no_new_row(store: &dyn Store) {
    let Some(notify) = store.notify() else { return };
    let now = crate::notify::now_ns();
    // One batch each: within a batch the order is the store's (all arrived at once).
    for (n, id) in ["a", "b", "c"].into_iter().enumerate() {
        store.write(&notifying(vec![created(failing(id, n as i64))])).await.unwrap();
    }
    let old = notify.claim_outbox("old", now, LEASE_NS, 10).await.unwrap();
    assert_eq!(old.iter().map(|i| i.entity_id.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    // The newest row finished: a row written after it may take its id.
    notify.write_round("old", now, &finish(&[old[2].id])).await.unwrap();
    store.write(&notifying(vec![created(failing("d", 3))])).await.unwrap();
    // The same settle again (a stale one): the row now under that id is no row "old" holds.
    notify.write_round("old", now, &finish(&[old[2].id])).await.unwrap();
    assert_eq!(notify.outbox_depth().await.unwrap(), 3, "a, b and d wait");
    // a and b handed back: the next claim takes them and d in the order they came.
    let back = old[..2]
        .iter()
        .map(|i| crate::notify::Settle::Retry {
            id: i.id,
            attempts: 1,
            next_ns: now,
            error: "handed back".into(),
            progress: i.progress.clone(),
        })
        .collect();
    notify.write_round("old", now, &crate::notify::RoundWrites { settle: back, ..Default::default() }).await.unwrap();
    let new = notify.claim_outbox("new", now, LEASE_NS, 10).await.unwrap();
    assert_eq!(new.iter().map(|i| i.entity_id.as_str()).collect::<Vec<_>>(), ["a", "b", "d"]);
}

pub async fn a_claimed_notification_carries_its_event_and_its_class(store: &dyn Store) {
    let Some(notify) = store.notify() else { return };
    let now = crate::notify::now_ns();
    // An event naming its stage, and one taking its entity's (the creation span's name).
    let mut staged = failing("m1", 0);
    staged.events[0].metadata = md(&[("message", "disk full on node 3"), ("stage", "archiver"), ("node", "3")]);
    let mut plain = failing("m2", 10);
    plain.events[0].metadata = md(&[("message", "disk full on node 7")]);
    let out = store.write(&notifying(vec![created(staged.clone()), created(plain.clone())])).await.unwrap();
    assert_eq!(out.notifications_recorded, 2);
    let mut items = notify.claim_outbox("d", now, LEASE_NS, 10).await.unwrap();
    // One batch: its rows come in the store's order.
    items.sort_by(|a, b| a.entity_id.cmp(&b.entity_id));
    assert_eq!(items.len(), 2);
    for (item, c, stage) in [(&items[0], &staged, "archiver"), (&items[1], &plain, "ingest")] {
        let e = &c.events[0];
        assert_eq!(item.kind, crate::notify::OutboxKind::Event);
        assert_eq!((item.instrument_id.as_str(), item.event_name.as_str()), (INST, ERROR_EVENT));
        assert_eq!((item.entity_id.as_str(), item.stage.as_str()), (c.entity_id.as_str(), stage));
        assert_eq!(item.timestamp_ns, e.timestamp_ns, "the event's own time");
        assert_eq!(item.metadata, e.metadata, "the event's metadata, as stored with it");
        let message = crate::notify::message_of(e);
        assert_eq!(item.fingerprint, helix_model::fingerprint::fingerprint(INST, ERROR_EVENT, message, stage));
        assert_eq!(item.progress, crate::notify::Progress::default());
    }
    // Node 3 and node 7 are one message class, but the stages differ: two classes.
    assert_ne!(items[0].fingerprint, items[1].fingerprint);
    // A retry keeps the steps done and comes back with the same event.
    let progress = crate::notify::Progress { github_done: true, ..Default::default() };
    let retry = crate::notify::Settle::Retry {
        id: items[1].id,
        attempts: 1,
        next_ns: now,
        error: "HTTP 500".into(),
        progress: progress.clone(),
    };
    let writes = crate::notify::RoundWrites {
        settle: vec![retry, crate::notify::Settle::Finish { id: items[0].id }],
        ..Default::default()
    };
    notify.write_round("d", now, &writes).await.unwrap();
    let again = notify.claim_outbox("d", now, LEASE_NS, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].attempts, &again[0].progress), (1, &progress));
    assert_eq!((&again[0].metadata, again[0].timestamp_ns), (&plain.events[0].metadata, plain.events[0].timestamp_ns));
}
