//! Wire captures of the published 0.5.3 Python client: both encodings decode to the same
//! request and interpret to what the fixtures README promises.

use std::path::PathBuf;

use helix_model::interpret::{interpret_logs, interpret_traces, SpanClass};
use helix_model::{EntityCreated, OperationRecorded, Status};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

fn fixture(scenario: &str, file: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/published-client-0.5.3")
        .join(scenario)
        .join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Decodes the protobuf capture, checks the JSON capture decodes to the same request.
fn traces(scenario: &str, stem: &str) -> ExportTraceServiceRequest {
    let binary = ExportTraceServiceRequest::decode(fixture(scenario, &format!("{stem}.binpb")).as_slice()).unwrap();
    let json: ExportTraceServiceRequest = serde_json::from_slice(&fixture(scenario, &format!("{stem}.json"))).unwrap();
    assert_eq!(binary, json, "protobuf and JSON captures of {scenario} differ after decoding");
    binary
}

fn classes(req: &ExportTraceServiceRequest) -> (Vec<EntityCreated>, Vec<OperationRecorded>, usize) {
    let mut created = Vec::new();
    let mut ops = Vec::new();
    let mut passthrough = 0;
    for s in interpret_traces(req).spans {
        match s.class {
            SpanClass::Creation(c) => created.push(c),
            SpanClass::Operation(o) => ops.push(o),
            SpanClass::Passthrough => passthrough += 1,
            SpanClass::Rejected(r) => panic!("fixture span rejected: {r}"),
        }
    }
    (created, ops, passthrough)
}

#[test]
fn s01_linear_chain() {
    let req = traces("s01_linear_chain", "000-traces");
    let (created, ops, _) = classes(&req);
    assert!(ops.is_empty());
    assert_eq!(created.len(), 2);
    let cand = created.iter().find(|c| c.entity_id == "candidate-42").unwrap();
    assert_eq!(cand.parent_ids, vec!["block-001"]);
    assert_eq!(cand.metadata["score"], "0.97");
    assert_eq!(cand.instrument_id, "MY_INST");
    let block = created.iter().find(|c| c.entity_id == "block-001").unwrap();
    assert_eq!(block.process_name.as_deref(), Some("MY_INST/ingest"));
}

#[test]
fn s02_fan_in() {
    let (created, _, _) = classes(&traces("s02_fan_in", "001-traces"));
    assert_eq!(created.len(), 4);
    let agg = created.iter().find(|c| c.entity_id == "event-7").unwrap();
    assert_eq!(agg.parent_ids, vec!["result-001", "result-002", "result-003"]);
}

#[test]
fn s03_cross_process() {
    let (a, _, _) = classes(&traces("s03a_cross_process_parent", "002-traces"));
    let (b, _, _) = classes(&traces("s03b_cross_process_child", "003-traces"));
    assert_eq!(a[0].entity_id, "block-001");
    assert_eq!(b[0].entity_id, "candidate-42");
    assert_eq!(b[0].parent_ids, vec!["block-001"]);
}

#[test]
fn s04_operate() {
    let (created, ops, _) = classes(&traces("s04_operate", "004-traces"));
    assert!(created.is_empty());
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0].operation(), "archive");
    let e8 = ops.iter().find(|o| o.entity_id == "event-8").unwrap();
    assert_eq!(e8.metadata["size_mb"], "12.5");
    assert!(e8.metadata.contains_key("path"));
}

#[test]
fn s05_errors() {
    let (created, ops, _) = classes(&traces("s05_errors", "005-traces"));
    let c43 = created.iter().find(|c| c.entity_id == "candidate-43").unwrap();
    assert_eq!(c43.status, Status::Error);
    assert!(c43.events.iter().any(|e| e.is_error() && e.metadata.contains_key("message")));
    let e9 = created.iter().find(|c| c.entity_id == "event-9").unwrap();
    assert_eq!(e9.status, Status::Error);
    assert_eq!(e9.events.iter().find(|e| e.is_error()).unwrap().metadata["exception.message"], "boom 123");
    let op = ops.iter().find(|o| o.operation() == "write-header").unwrap();
    assert_eq!(op.entity_id, "event-7");
    assert!(op.marks_entity_error());
    let err = &op.events[0];
    assert_eq!((err.metadata["stage"].as_str(), err.metadata["message"].as_str()), ("dump_header", "nfs_timeout"));
}

#[test]
fn s06_events() {
    let (created, _, _) = classes(&traces("s06_events", "006-traces"));
    let e10 = created.iter().find(|c| c.entity_id == "event-10").unwrap();
    assert_eq!(e10.events.len(), 2);
    let typed = e10.events.iter().find(|e| e.event_name == "helix.event.typed").unwrap();
    assert_eq!(typed.metadata["n"], "42");
    assert_eq!(typed.metadata["ratio"], "0.5");
    assert_eq!(typed.metadata["ok"], "true");
    assert_eq!(typed.metadata["tags"], r#"["a","b"]"#);
}

#[test]
fn s07_child_span_and_trace() {
    let (created, ops, passthrough) = classes(&traces("s07_child_span_and_trace", "007-traces"));
    assert_eq!(created.len(), 1);
    assert!(ops.is_empty());
    assert_eq!(passthrough, 5);
}

#[test]
fn s08_deferred() {
    let (created, ops, passthrough) = classes(&traces("s08_deferred", "008-traces"));
    assert!(created.is_empty());
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].entity_id, "dataset-x");
    assert_eq!(ops[0].events[0].event_name, "helix.event.deletion-staged");
    assert_eq!(passthrough, 1);
}

#[test]
fn s09_decorator() {
    let (created, ops, _) = classes(&traces("s09_decorator", "009-traces"));
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].entity_id, "candidate-44");
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].entity_id, "report-2026-05-20");
}

#[test]
fn s10_logs() {
    let binary = ExportLogsServiceRequest::decode(fixture("s10_logs", "011-logs.binpb").as_slice()).unwrap();
    let json: ExportLogsServiceRequest = serde_json::from_slice(&fixture("s10_logs", "011-logs.json")).unwrap();
    assert_eq!(binary, json);
    let records = interpret_logs(&binary);
    assert_eq!(records.len(), 4);
    assert_eq!(records[0].entity_id, None, "outside any block");
    assert_eq!(records[1].entity_id.as_deref(), Some("candidate-45"));
    let (before, after) = (&records[2], &records[3]);
    assert_eq!(before.trace_id, after.trace_id, "the operation's two records share its trace");
    assert!(before.trace_id.is_some());
    assert_eq!(before.entity_id, None);
    assert_eq!(after.entity_id.as_deref(), Some("dataset-y"));
}
