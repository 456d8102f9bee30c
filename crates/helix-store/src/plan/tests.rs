//! The write semantics of `docs/storage.md`, one table row per rule, checked on the plan alone
//! (no database): each case gives the stored rows, a batch, and what must be written.

use super::*;
use crate::conformance::{creation, event, log, operation, span_of, trace_of, INST, T0};
use helix_model::{EntityCreated, OperationRecorded, Status, ERROR_EVENT};

fn md(pairs: &[(&str, &str)]) -> Metadata {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The stored row a creation would have produced.
fn stored_entity(c: &EntityCreated) -> Entity {
    Entity { created_at: "2024-05-20T00:00:00.000Z".into(), ..created_row(c, c.parent_ids.clone()) }
}

/// The stored placeholder an operation would have produced.
fn stored_placeholder(o: &OperationRecorded) -> Entity {
    Entity { created_at: "2024-05-20T00:00:00.000Z".into(), ..placeholder_row(o, Status::Ok) }
}

fn stored(entities: Vec<Entity>, operation_spans: &[&str], creations: &[(&str, &str)]) -> Stored {
    Stored {
        entities: entities.into_iter().map(|e| (e.id.clone(), e)).collect(),
        operation_spans: operation_spans.iter().map(|s| s.to_string()).collect(),
        creations: creations.iter().map(|(e, s)| (e.to_string(), s.to_string())).collect(),
    }
}

fn with_parents(mut c: EntityCreated, parents: &[&str]) -> EntityCreated {
    c.parent_ids = parents.iter().map(|p| p.to_string()).collect();
    c
}

fn recreation(id: &str, seed: &str, parents: &[&str]) -> EntityCreated {
    let mut c = creation(id, parents, 1_000);
    c.span_id = span_of(seed);
    c.trace_id = trace_of(seed);
    c.name = "again".into();
    c
}

fn from_other_instrument<T>(mut r: T, set: impl FnOnce(&mut T)) -> T {
    set(&mut r);
    r
}

fn ids(rows: &[Entity]) -> Vec<&str> {
    rows.iter().map(|e| e.id.as_str()).collect()
}

fn edges<'a>(p: &'a WritePlan<'_>) -> Vec<(&'a str, &'a str, i32)> {
    p.new_edges.iter().map(|e| (e.child.as_str(), e.parent.as_str(), e.position)).collect()
}

struct Case {
    rule: &'static str,
    stored: Stored,
    records: Vec<WriteRecord>,
    check: fn(&WritePlan<'_>),
}

fn cases() -> Vec<Case> {
    use WriteRecord::{Created as C, Log as L, Operation as O};
    let block = creation("block", &[], 0);
    let cand = creation("cand", &["block", "other"], 10);
    let mut failed = creation("failed", &[], 20);
    failed.status = Status::Error;
    let archive = operation("cand", "archive", "op-1", 50);
    let mut failing_op = operation("cand", "archive", "op-err", 60);
    failing_op.events = vec![event("cand", &failing_op.trace_id, &failing_op.span_id, ERROR_EVENT, 0, 61)];
    let mut status_only_op = operation("cand", "archive", "op-status", 70);
    status_only_op.status = Status::Error;
    let mut evented = creation("evented", &[], 30);
    evented.events = vec![
        event("evented", &evented.trace_id, &evented.span_id, "helix.event.classified", 0, 31),
        event("evented", &evented.trace_id, &evented.span_id, ERROR_EVENT, 1, 32),
    ];
    let placeholder_op = operation("late", "archive", "op-late", 5);
    let mut late = with_parents(creation("late", &["p1"], 100), &["p1", "p2"]);
    late.metadata = md(&[("from", "creation"), ("shared", "creation")]);
    let mut late_placeholder = stored_placeholder(&placeholder_op);
    late_placeholder.status = Status::Error;
    late_placeholder.metadata = md(&[("shared", "placeholder"), ("kept", "yes")]);
    let mut first = with_parents(creation("re", &[], 0), &["a", "b"]);
    first.metadata = md(&[("k", "first")]);
    let mut second = recreation("re", "second", &["b", "c", "a", "d"]);
    second.metadata = md(&[("k", "second"), ("new", "yes")]);
    let foreign_create = from_other_instrument(creation("cand", &["x"], 0), |c| c.instrument_id = "OTHER".into());
    let foreign_op =
        from_other_instrument(operation("cand", "delete", "op-foreign", 0), |o| o.instrument_id = "OTHER".into());
    let unnamed = from_other_instrument(operation("anon", "archive", "op-anon", 0), |o| o.instrument_id = "".into());

    vec![
        Case {
            rule: "a new entity is inserted with its parents as edges, in caller order",
            stored: Stored::default(),
            records: vec![C(block.clone()), C(cand.clone())],
            check: |p| {
                assert_eq!(ids(&p.new_entities), ["block", "cand"]);
                assert!(p.changed_entities.is_empty());
                assert_eq!(edges(p), [("cand", "block", 0), ("cand", "other", 1)]);
                assert_eq!(p.new_entities[1].parent_ids, ["block", "other"]);
                assert_eq!(p.outcome.entities_created.len(), 2);
                assert_eq!(p.instruments, [INST]);
            },
        },
        Case {
            rule: "a creation keeps its status (error status → failed entity)",
            stored: Stored::default(),
            records: vec![C(failed)],
            check: |p| {
                assert_eq!(p.new_entities[0].status, Status::Error);
                assert_eq!(p.outcome.entities_created[0].status, Status::Error);
            },
        },
        Case {
            rule: "idempotency: the stored creation span again writes nothing",
            stored: stored(vec![stored_entity(&cand)], &[], &[]),
            records: vec![C(cand.clone())],
            check: |p| {
                assert_eq!(*p, WritePlan { logs: vec![], ..WritePlan::default() });
            },
        },
        Case {
            rule: "idempotency: the same creation twice in one batch is applied once",
            stored: Stored::default(),
            records: vec![C(evented.clone()), C(evented.clone())],
            check: |p| {
                assert_eq!(ids(&p.new_entities), ["evented"]);
                assert_eq!(p.new_events.len(), 2);
                assert_eq!(events_counted(p), [(INST.to_string(), false), (INST.to_string(), true)]);
            },
        },
        Case {
            rule: "idempotency: a stored operation span again writes nothing",
            stored: stored(vec![stored_entity(&cand)], &[&archive.span_id], &[]),
            records: vec![O(archive.clone())],
            check: |p| {
                assert!(p.new_operations.is_empty() && p.new_entities.is_empty() && p.changed_entities.is_empty());
                assert_eq!(p.outcome, WriteOutcome::default());
            },
        },
        Case {
            rule: "idempotency: a stored later creation span again writes nothing",
            stored: stored(vec![stored_entity(&first)], &[], &[("re", &span_of("second"))]),
            records: vec![C(second.clone())],
            check: |p| {
                assert!(p.changed_entities.is_empty() && p.new_creations.is_empty() && p.new_edges.is_empty());
                assert_eq!(p.outcome.recreations, 0);
            },
        },
        Case {
            rule: "events are written with the span that carries them, unique by (span, ordinal)",
            stored: Stored::default(),
            records: vec![C(evented)],
            check: |p| {
                let keys: Vec<u32> = p.new_events.iter().map(|e| e.ordinal).collect();
                assert_eq!(keys, [0, 1]);
            },
        },
        Case {
            rule: "placeholder: an operation on an unknown entity creates one, owned by its instrument",
            stored: Stored::default(),
            records: vec![O(placeholder_op.clone())],
            check: |p| {
                let e = &p.new_entities[0];
                assert!(e.placeholder && e.trace_id.is_none() && e.span_id.is_none() && e.parent_ids.is_empty());
                assert_eq!((e.instrument_id.as_str(), e.timestamp_ns), (INST, T0 + 5));
                assert_eq!(p.outcome.placeholders_created, 1);
                assert_eq!(p.outcome.operations_inserted, 1);
                assert!(p.outcome.entities_created.is_empty());
            },
        },
        Case {
            rule: "placeholder upgrade: the creation fills the row in place; errors and missing metadata keys stay",
            stored: stored(vec![late_placeholder], &[], &[]),
            records: vec![C(late)],
            check: |p| {
                assert!(p.new_entities.is_empty());
                let e = &p.changed_entities[0];
                assert!(!e.placeholder);
                assert_eq!(e.span_id.as_deref(), Some(span_of("late").as_str()));
                assert_eq!(e.stage.as_deref(), Some("ingest"));
                assert_eq!(e.timestamp_ns, T0 + 100);
                assert_eq!(e.status, Status::Error, "an operation's recorded error survives the upgrade");
                assert_eq!(e.metadata, md(&[("from", "creation"), ("shared", "creation"), ("kept", "yes")]));
                assert_eq!(edges(p), [("late", "p1", 0), ("late", "p2", 1)]);
                assert_eq!(p.new_creations, [("late".to_string(), span_of("late"))]);
                assert_eq!(p.outcome.entities_created.len(), 1);
                assert_eq!(p.outcome.recreations, 0);
            },
        },
        Case {
            rule: "placeholder then creation in one batch: one new row, already upgraded",
            stored: Stored::default(),
            records: vec![O(placeholder_op), C(creation("late", &["p1"], 100))],
            check: |p| {
                assert_eq!(ids(&p.new_entities), ["late"]);
                assert!(!p.new_entities[0].placeholder);
                assert_eq!(p.outcome.placeholders_created, 1);
                assert_eq!(p.outcome.entities_created.len(), 1);
            },
        },
        Case {
            rule: "re-creation: first trace/span/time/stage stay; parents are a union in arrival order; only new metadata keys",
            stored: stored(vec![stored_entity(&first)], &[], &[]),
            records: vec![C(second)],
            check: |p| {
                let e = &p.changed_entities[0];
                assert_eq!(e.span_id.as_deref(), Some(span_of("re").as_str()));
                assert_eq!(e.stage.as_deref(), Some("ingest"));
                assert_eq!(e.timestamp_ns, T0);
                assert_eq!(e.parent_ids, ["a", "b", "c", "d"]);
                assert_eq!(e.metadata, md(&[("k", "first"), ("new", "yes")]));
                assert_eq!(edges(p), [("re", "c", 2), ("re", "d", 3)]);
                assert_eq!(p.new_creations, [("re".to_string(), span_of("second"))]);
                assert_eq!(p.outcome.recreations, 1);
                assert!(p.outcome.entities_created.is_empty());
            },
        },
        Case {
            rule: "ownership: another instrument's creation or operation on an owned entity is not applied",
            stored: stored(vec![stored_entity(&cand)], &[], &[]),
            records: vec![C(foreign_create), O(foreign_op)],
            check: |p| {
                assert!(p.changed_entities.is_empty() && p.new_operations.is_empty() && p.new_creations.is_empty());
                assert!(p.instruments.is_empty(), "a conflict does not list its instrument");
                assert_eq!(p.outcome.instrument_conflicts, 2);
            },
        },
        Case {
            rule: "ownership: a placeholder belongs to the operation's instrument",
            stored: Stored::default(),
            records: vec![
                O(operation("late", "archive", "op-late", 5)),
                C(from_other_instrument(creation("late", &[], 9), |c| c.instrument_id = "OTHER".into())),
            ],
            check: |p| {
                assert_eq!(p.new_entities[0].instrument_id, INST);
                assert!(p.new_entities[0].placeholder);
                assert_eq!(p.outcome.instrument_conflicts, 1);
            },
        },
        Case {
            rule: "only a helix.error on an operation fails the entity; an ERROR status fails the operation alone",
            stored: stored(vec![stored_entity(&cand)], &[], &[]),
            records: vec![O(status_only_op), O(failing_op), O(archive)],
            check: |p| {
                assert_eq!(p.new_operations.len(), 3);
                assert_eq!(p.changed_entities.len(), 1);
                assert_eq!(p.changed_entities[0].status, Status::Error);
                assert_eq!(events_counted(p), [(INST.to_string(), true)]);
            },
        },
        Case {
            rule: "an operation without an error leaves the stored entity unchanged",
            stored: stored(vec![stored_entity(&cand)], &[], &[]),
            records: vec![O(operation("cand", "archive", "op-2", 80))],
            check: |p| {
                assert!(p.changed_entities.is_empty());
                assert_eq!(p.new_operations.len(), 1);
            },
        },
        Case {
            rule: "logs are all offered (the store's key dedups them); the empty instrument is not listed",
            stored: Stored::default(),
            records: vec![L(log(0, "a", None, None)), L(log(0, "a", None, None)), O(unnamed)],
            check: |p| {
                assert_eq!(p.logs.len(), 2);
                assert_eq!(p.instruments, [INST]);
                assert_eq!(p.outcome.logs_inserted, 0);
            },
        },
        Case {
            rule: "rows are sorted by key (the lock order of concurrent writers)",
            stored: Stored::default(),
            records: vec![
                C(creation("z", &["m", "a"], 0)),
                C(creation("b", &[], 0)),
                O(operation("q", "x", "s9", 0)),
                O(operation("c", "x", "s1", 0)),
            ],
            check: |p| {
                assert_eq!(ids(&p.new_entities), ["b", "c", "q", "z"]);
                assert_eq!(edges(p), [("z", "a", 1), ("z", "m", 0)]);
                let spans: Vec<&str> = p.new_operations.iter().map(|o| o.span_id.as_str()).collect();
                let mut sorted = spans.clone();
                sorted.sort_unstable();
                assert_eq!(spans, sorted);
            },
        },
    ]
}

#[test]
fn every_write_rule() {
    for case in cases() {
        let batch = WriteBatch::of(case.records);
        let plan = plan(&batch, case.stored);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (case.check)(&plan)));
        assert!(outcome.is_ok(), "rule failed: {}", case.rule);
    }
}

#[test]
fn a_batch_refusing_conflicts_names_its_first_conflict_and_a_skipping_one_names_none() {
    let owned = stored_entity(&creation("cand", &[], 0));
    let mut foreign = operation("cand", "steal", "op-x", 5);
    foreign.instrument_id = "OTHER".into();
    let records = vec![WriteRecord::Created(creation("fresh", &[], 1)), WriteRecord::Operation(foreign)];
    let skipping_batch = WriteBatch::of(records.clone());
    let skipping = plan(&skipping_batch, stored(vec![owned.clone()], &[], &[]));
    assert_eq!(skipping.refused, None);
    assert_eq!(skipping.outcome.instrument_conflicts, 1);
    let refusing_batch = WriteBatch { records, refuse_conflicts: true, notify: Default::default() };
    let refusing = plan(&refusing_batch, stored(vec![owned], &[], &[]));
    let conflict = refusing.refused.expect("refused");
    assert_eq!(
        (conflict.entity_id.as_str(), conflict.owner.as_str(), conflict.instrument.as_str()),
        ("cand", INST, "OTHER")
    );
}

#[test]
fn touched_keys_are_sorted_unique_and_recreated_ones_are_the_stored_created_ones() {
    let batch = WriteBatch::of(vec![
        WriteRecord::Created(creation("b", &[], 0)),
        WriteRecord::Operation(operation("a", "x", "s2", 0)),
        WriteRecord::Operation(operation("b", "x", "s1", 0)),
        WriteRecord::Created(creation("c", &[], 0)),
        WriteRecord::Log(log(0, "l", None, Some("z"))),
    ]);
    let t = Touched::of(&batch);
    assert_eq!(t.entity_ids, ["a", "b", "c"]);
    let mut spans = vec![span_of("s1"), span_of("s2")];
    spans.sort_unstable();
    assert_eq!(t.operation_spans, spans);
    let stored = stored(vec![stored_entity(&creation("c", &[], 0)), stored_entity(&creation("a", &[], 0))], &[], &[]);
    assert_eq!(Touched::recreated(&batch, &stored.entities), ["c"]);
}

// ---- the span store: trace summaries and search terms ------------------------------------------

fn trace_span(trace: &str, span: &str, parent: Option<&str>, name: &str, start: i64, end: i64) -> SpanRecorded {
    let mut s = crate::conformance::span(trace, span, parent, name, 0);
    s.start_ns = T0 + start;
    s.end_ns = T0 + end;
    s
}

#[test]
fn merge_traces_summarises_each_trace_once_sorted() {
    let child = trace_span("m-a", "a-child", Some("a-root"), "write", 10, 50);
    let mut failed = trace_span("m-a", "a-fail", Some("a-root"), "check", 5, 20);
    failed.status_code = 2;
    let root = trace_span("m-a", "a-root", None, "process", 20, 30);
    let other = trace_span("m-b", "b-1", None, "other", 0, 1);
    let inserted: Vec<Inserted<'_>> = vec![(&child, 100, 7), (&failed, 50, 7), (&root, 10, 9), (&other, 1, 3)];
    let rows = merge_traces(&inserted);
    let mut ids: Vec<String> = [trace_of("m-a"), trace_of("m-b")].into();
    ids.sort();
    assert_eq!(rows.iter().map(|r| r.trace_id.clone()).collect::<Vec<_>>(), ids, "one row per trace, by ID");
    let a = rows.iter().find(|r| r.trace_id == trace_of("m-a")).unwrap();
    assert_eq!((a.start_ns, a.end_ns), (T0 + 5, T0 + 50), "earliest start, latest end");
    assert_eq!((a.span_count, a.error_count, a.bytes), (3, 1, 160));
    // The parentless span is the root although others started earlier.
    assert_eq!(
        (a.root_rank, a.root_span_id.as_str(), a.root_name.as_str()),
        (0, span_of("a-root").as_str(), "process")
    );
    assert_eq!((a.root_start_ns, a.root_source), (T0 + 20, 9));
}

#[test]
fn trace_row_merge_is_the_rule_the_backends_spell_in_sql() {
    // Without a parentless span the earliest span is the root; on a tie the smaller span ID.
    let early = trace_span("m-c", "c-1", Some("elsewhere"), "early", 0, 10);
    let tie = trace_span("m-c", "c-2", Some("elsewhere"), "tie", 0, 10);
    let mut stored = TraceRow::of(&tie, 5, 1);
    stored.merge(TraceRow::of(&early, 5, 2));
    let want = if span_of("c-1") < span_of("c-2") { "early" } else { "tie" };
    assert_eq!(stored.root_name, want);
    assert_eq!((stored.root_rank, stored.span_count, stored.bytes), (1, 2, 10));
    // A later parentless span still wins over parented ones; counts and bounds add up.
    let late_root = trace_span("m-c", "c-3", None, "root", 100, 200);
    stored.merge(TraceRow::of(&late_root, 5, 3));
    assert_eq!((stored.root_name.as_str(), stored.root_rank, stored.root_source), ("root", 0, 3));
    assert_eq!((stored.start_ns, stored.end_ns, stored.span_count), (T0, T0 + 200, 3));
    // Merging an older row with a root that is not better keeps the root.
    stored.merge(TraceRow::of(&early, 1, 2));
    assert_eq!(stored.root_name, "root");
    assert!(merge_traces(&[]).is_empty());
}

#[test]
fn trace_terms_list_each_value_of_each_trace_once() {
    let a = trace_span("t-a", "a-1", None, "step", 0, 1);
    let b = trace_span("t-a", "a-2", Some("a-1"), "step", 0, 1);
    let mut c = trace_span("t-b", "b-1", None, "other", 0, 1);
    c.service_name = None;
    let inserted: Vec<Inserted<'_>> = vec![(&a, 1, 1), (&b, 1, 1), (&c, 1, 2)];
    let terms = trace_terms(&inserted);
    let ta = trace_of("t-a");
    let tb = trace_of("t-b");
    let mut want = vec![
        (term_hash(TERM_NAME, "step"), ta.as_str()),
        (term_hash(TERM_SERVICE, "svc"), ta.as_str()),
        (term_hash(TERM_INSTRUMENT, INST), ta.as_str()),
        (term_hash(TERM_NAME, "other"), tb.as_str()),
        (term_hash(TERM_INSTRUMENT, INST), tb.as_str()),
    ];
    want.sort();
    assert_eq!(terms, want, "no service term without a service; duplicates once");
    assert_ne!(term_hash(TERM_NAME, "x"), term_hash(TERM_SERVICE, "x"), "the kind is part of the term");
}

/// The plan's counted events as (instrument, is helix.error).
fn events_counted(p: &WritePlan<'_>) -> Vec<(String, bool)> {
    p.outcome.events_inserted.iter().map(|e| (e.instrument_id.clone(), e.is_error())).collect()
}

#[test]
fn each_span_gets_its_own_sources_key_when_sources_alternate() {
    // Records of two processes interleaved, then a run of one: the key each span is written
    // under must be its own source's, whichever span came before it.
    let mut spans = Vec::new();
    for (i, process) in ["a", "b", "b", "a", "a", "c", "a"].into_iter().enumerate() {
        let mut s = trace_span(&format!("src-{}", i % 3), &format!("s-{i}"), None, "step", 0, 1);
        s.process_name = Some(process.to_owned());
        if process == "c" {
            s.resource_proto = vec![1, 2, 3];
        }
        spans.push(s);
    }
    let batch = WriteBatch::of(spans.iter().cloned().map(WriteRecord::Span).collect());
    let p = plan(&batch, Stored::default());
    assert_eq!(p.spans.len(), spans.len());
    for (s, id) in p.spans.iter().zip(&p.span_source_ids) {
        assert_eq!(*id, helix_model::span::stored::source_id(s), "span {} under its own source", s.span_id);
    }
    let mut processes: Vec<_> = p.span_sources.iter().map(|(_, s)| s.process_name.clone().unwrap()).collect();
    processes.sort();
    assert_eq!(processes, ["a", "b", "c"], "one source row per process");
}
