//! Every row of every table of docs/wire.md, as a test of `interpret_traces` / `interpret_logs`.

use helix_model::builders::*;
use helix_model::interpret::{append_parent_links, interpret_logs, interpret_traces, SpanClass};
use helix_model::{EntityCreated, OperationRecorded, SpanRef, Status};
use opentelemetry_proto::tonic::logs::v1::LogRecord;

fn one(span: SpanBuilder, resource: Vec<opentelemetry_proto::tonic::common::v1::KeyValue>) -> SpanClass {
    let req = traces(resource, vec![span.build()]);
    let mut out = interpret_traces(&req);
    assert_eq!(out.spans.len(), 1);
    out.spans.remove(0).class
}

fn creation(span: SpanBuilder) -> EntityCreated {
    match one(span, pipeline_resource("svc", "RES_INST")) {
        SpanClass::Creation(c) => c,
        other => panic!("expected a creation, got {other:?}"),
    }
}

fn operation(span: SpanBuilder) -> OperationRecorded {
    match one(span, pipeline_resource("svc", "RES_INST")) {
        SpanClass::Operation(o) => o,
        other => panic!("expected an operation, got {other:?}"),
    }
}

// ---- Resource attributes ----

#[test]
fn resource_service_name_is_stored_with_entity_and_operation() {
    assert_eq!(creation(SpanBuilder::creation("ingest", "b1", 1)).service_name.as_deref(), Some("svc"));
    assert_eq!(operation(SpanBuilder::operation("archive", "b1", 2)).service_name.as_deref(), Some("svc"));
}

#[test]
fn resource_instrument_is_the_fallback_and_span_attribute_wins() {
    assert_eq!(creation(SpanBuilder::creation("ingest", "b1", 1)).instrument_id, "RES_INST");
    assert_eq!(creation(SpanBuilder::creation("ingest", "b1", 1).instrument("SPAN_INST")).instrument_id, "SPAN_INST");
    // Neither: empty string.
    match one(SpanBuilder::creation("ingest", "b1", 1), vec![]) {
        SpanClass::Creation(c) => assert_eq!(c.instrument_id, ""),
        other => panic!("{other:?}"),
    }
}

#[test]
fn process_name_falls_back_to_resource() {
    let res = vec![kv("helix.process.name", string("INST/pipe/res"))];
    match one(SpanBuilder::creation("ingest", "b1", 1), res.clone()) {
        SpanClass::Creation(c) => assert_eq!(c.process_name.as_deref(), Some("INST/pipe/res")),
        other => panic!("{other:?}"),
    }
    match one(SpanBuilder::creation("ingest", "b1", 1).attr("helix.process.name", string("INST/pipe/span")), res) {
        SpanClass::Creation(c) => assert_eq!(c.process_name.as_deref(), Some("INST/pipe/span")),
        other => panic!("{other:?}"),
    }
}

// ---- Span attributes and classification ----

#[test]
fn span_without_entity_id_is_passthrough() {
    assert_eq!(one(SpanBuilder::new("plain", 1).attr("foo", string("bar")), vec![]), SpanClass::Passthrough);
}

#[test]
fn non_string_or_empty_entity_id_is_passthrough() {
    assert_eq!(one(SpanBuilder::new("x", 1).attr("helix.entity.id", int(7)), vec![]), SpanClass::Passthrough);
    assert_eq!(one(SpanBuilder::new("x", 1).attr("helix.entity.id", string("")), vec![]), SpanClass::Passthrough);
}

#[test]
fn log_entity_id_never_makes_an_entity() {
    let span = SpanBuilder::new("filter", 1).attr("helix.log.entity_id", string("block-001"));
    assert_eq!(one(span, vec![]), SpanClass::Passthrough);
}

#[test]
fn deferred_operation_without_id_is_passthrough() {
    let span = SpanBuilder::new("stage-deletion", 1).attr("helix.entity.is_operation", string("true"));
    assert_eq!(one(span, vec![]), SpanClass::Passthrough);
}

#[test]
fn creation_carries_stage_ids_times_and_hex_ids() {
    let c = creation(SpanBuilder::creation("search", "cand-1", 3).times(100, 250));
    assert_eq!(c.entity_id, "cand-1");
    assert_eq!(c.stage(), "search");
    assert_eq!((c.start_ns, c.end_ns), (100, 250));
    assert_eq!(c.trace_id.len(), 32);
    assert_eq!(c.span_id, "0000000000000004");
    assert_eq!(c.status, Status::Ok);
}

#[test]
fn parent_ids_are_split_trimmed_deduplicated_in_caller_order() {
    let c = creation(SpanBuilder::creation("agg", "e", 1).parents(" b , a,,b, c ,a"));
    assert_eq!(c.parent_ids, vec!["b", "a", "c"]);
}

#[test]
fn parent_ids_accept_a_string_array() {
    let c = creation(
        SpanBuilder::creation("agg", "e", 1)
            .attr("helix.parent.ids", array(vec![string("r2"), string(" r1 "), string("r2"), string("")])),
    );
    assert_eq!(c.parent_ids, vec!["r2", "r1"]);
}

#[test]
fn no_parents_is_an_empty_list() {
    assert!(creation(SpanBuilder::creation("ingest", "b", 1)).parent_ids.is_empty());
}

#[test]
fn operation_marker_accepts_string_true_and_boolean_true() {
    let by_string = SpanBuilder::operation("archive", "e", 1);
    assert_eq!(operation(by_string).operation(), "archive");
    let by_bool = SpanBuilder::creation("archive", "e", 1).attr("helix.entity.is_operation", boolean(true));
    assert_eq!(operation(by_bool).entity_id, "e");
    // Anything else is a creation.
    let not_op = SpanBuilder::creation("ingest", "e", 1).attr("helix.entity.is_operation", string("false"));
    assert_eq!(creation(not_op).stage(), "ingest");
}

#[test]
fn operation_keeps_parents_for_links_and_its_duration() {
    let o = operation(SpanBuilder::operation("convert", "e", 1).parents("p1,p2").times(1_000, 4_500));
    assert_eq!(o.parent_ids, vec!["p1", "p2"]);
    assert_eq!(o.duration_ns(), 3_500);
    assert_eq!(o.start_ns, 1_000);
}

#[test]
fn metadata_holds_every_other_attribute_rendered() {
    let c = creation(
        SpanBuilder::creation("search", "c", 1)
            .instrument("I")
            .parents("p")
            .attr("helix.process.name", string("I/p/s"))
            .attr("helix.log.entity_id", string("c"))
            .attr("score", double(0.97))
            .attr("n", int(42))
            .attr("ok", boolean(false))
            .attr("tags", array(vec![string("a"), string("b")])),
    );
    let keys: Vec<&str> = c.metadata.keys().map(String::as_str).collect();
    assert_eq!(keys, vec!["helix.log.entity_id", "helix.process.name", "n", "ok", "score", "tags"]);
    assert_eq!(c.metadata["score"], "0.97");
    assert_eq!(c.metadata["n"], "42");
    assert_eq!(c.metadata["ok"], "false");
    assert_eq!(c.metadata["tags"], r#"["a","b"]"#);
    let op = operation(SpanBuilder::operation("archive", "c", 2));
    assert!(op.metadata.is_empty(), "the operation marker is not metadata");
}

#[test]
fn invalid_ids_on_entity_spans_are_rejected_with_a_reason() {
    let mut span = SpanBuilder::creation("s", "e", 1).build();
    span.trace_id = vec![1, 2, 3];
    let out = interpret_traces(&traces(vec![], vec![span]));
    let reasons: Vec<&str> = out.rejections().collect();
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].contains("trace_id must be 16"), "{}", reasons[0]);
    let bad_id = SpanBuilder::creation("s", "bad\u{7}id", 1);
    assert!(matches!(one(bad_id, vec![]), SpanClass::Rejected(r) if r.contains("control")));
}

// ---- Span events ----

#[test]
fn helix_events_keep_their_own_timestamps_order_and_attributes() {
    let c = creation(
        SpanBuilder::creation("classify", "e", 1)
            .event("helix.event.classified", 111, vec![kv("label", string("FRB"))])
            .event("exception", 112, vec![kv("exception.message", string("x"))])
            .event("classified", 113, vec![])
            .event("helix.event.typed", 114, vec![kv("n", int(42)), kv("ratio", double(0.5))]),
    );
    assert_eq!(c.events.len(), 2, "only helix.* events are entity events");
    assert_eq!(c.events[0].event_name, "helix.event.classified");
    assert_eq!(c.events[0].timestamp_ns, 111);
    assert_eq!(c.events[0].metadata["label"], "FRB");
    assert_eq!(c.events[1].event_name, "helix.event.typed");
    assert_eq!(c.events[1].timestamp_ns, 114);
    assert_eq!(c.events[1].metadata["n"], "42");
    assert_eq!(c.events[1].metadata["ratio"], "0.5");
    assert!(c.events[1].ordinal > c.events[0].ordinal);
    assert_eq!(c.status, Status::Ok, "helix.event.* does not fail the entity");
}

#[test]
fn helix_error_marks_creation_failed() {
    let c =
        creation(SpanBuilder::creation("search", "c", 1).event("helix.error", 5, vec![kv("message", string("boom"))]));
    assert_eq!(c.status, Status::Error);
    assert!(c.events[0].is_error());
}

#[test]
fn helix_error_on_operation_marks_the_operated_entity() {
    let o = operation(SpanBuilder::operation("write-header", "e", 1).event("helix.error", 5, vec![]));
    assert_eq!(o.status, Status::Error);
    assert!(o.marks_entity_error());
    assert_eq!(o.events[0].entity_id, "e");
}

#[test]
fn error_status_without_helix_error_still_fails() {
    assert_eq!(creation(SpanBuilder::creation("s", "c", 1).error_status()).status, Status::Error);
    let o = operation(SpanBuilder::operation("archive", "c", 2).error_status());
    assert_eq!(o.status, Status::Error);
    assert!(!o.marks_entity_error(), "only helix.error marks the operated entity");
}

#[test]
fn exception_event_alone_is_not_an_entity_event() {
    let c = creation(SpanBuilder::creation("s", "c", 1).event("exception", 5, vec![]));
    assert!(c.events.is_empty());
}

// ---- Parent resolution and links ----

#[test]
fn links_are_appended_once_and_never_duplicated() {
    let parent = SpanRef { trace_id: "7a7a7a7a7a7a7a7a0000000000000064".into(), span_id: "0000000000000064".into() };
    let other = SpanRef { trace_id: "7a7a7a7a7a7a7a7a00000000000000c8".into(), span_id: "00000000000000c8".into() };
    let mut span = SpanBuilder::creation("s", "c", 1).link(trace_id(99), span_id(99)).build();
    assert_eq!(
        append_parent_links(&mut span, &[parent.clone(), other.clone()]),
        1,
        "client link to parent kept, other added"
    );
    assert_eq!(span.links.len(), 2);
    assert_eq!(append_parent_links(&mut span, &[parent, other]), 0, "idempotent");
    assert_eq!(span.links.len(), 2);
}

// ---- Logs ----

#[test]
fn log_records_carry_correlation_fields_and_empty_means_absent() {
    let inside = LogRecord {
        time_unix_nano: 10,
        severity_number: 9,
        body: Some(string("inside")),
        trace_id: trace_id(5),
        span_id: span_id(5),
        attributes: vec![
            kv("helix_entity_id", string("cand-45")),
            kv("helix_instrument_id", string("MY_INST")),
            kv("helix_source", string("x.py#L3")),
        ],
        ..Default::default()
    };
    let outside = LogRecord {
        observed_time_unix_nano: 20,
        severity_text: "WARNING".into(),
        body: Some(string("outside")),
        attributes: vec![kv("helix_entity_id", string("")), kv("otel_trace_id", string(""))],
        ..Default::default()
    };
    let out = interpret_logs(&logs(vec![kv("service.name", string("svc"))], vec![inside, outside]));
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].entity_id.as_deref(), Some("cand-45"));
    assert_eq!(out[0].trace_id.as_deref().map(str::len), Some(32));
    assert_eq!(out[0].severity, "INFO");
    assert_eq!(out[0].source.as_deref(), Some("x.py#L3"));
    assert_eq!(out[1].entity_id, None);
    assert_eq!(out[1].trace_id, None);
    assert_eq!(out[1].timestamp_ns, 20);
    assert_eq!(out[1].severity, "WARNING");
    assert_eq!(out[1].service_name.as_deref(), Some("svc"));
}
