//! Wire identity with the Python client: each scenario of the published 0.5.3 Python client's
//! captures (testdata/published-client-0.5.3 at the repository root), written with the Rust
//! client and exported through the real OTLP exporter to a capture receiver, must produce the
//! same spans: names, kinds, attribute keys, attribute values as the herald renders them, events,
//! link counts, parentage, status, and the resource keys the herald reads. The differences are
//! the ones the spec allows, exactly as clients/python/tests/test_published_compat.py allows
//! them: typed metadata (the published client stringified it — the herald renders both the
//! same), the process name on operations, and no operation marker on an operation that never
//! got an entity ID.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use helix_model::render::render_value;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue as ProtoKeyValue;
use prost::Message;
use support::capture::Receiver;
use tracing_subscriber::layer::SubscriberExt;

const OPERATION: &str = "helix.entity.is_operation";

fn data_dir(scenario: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/published-client-0.5.3").join(scenario)
}

fn published<T: Message + Default>(scenario: &str, kind: &str) -> Vec<T> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir(scenario))
        .unwrap_or_else(|e| panic!("{scenario}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(&format!("-{kind}.binpb")))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{scenario}: no {kind} capture");
    files.iter().map(|f| T::decode(std::fs::read(f).unwrap().as_slice()).unwrap()).collect()
}

fn attrs(kvs: &[ProtoKeyValue]) -> BTreeMap<String, String> {
    kvs.iter().map(|kv| (kv.key.clone(), render_value(kv.value.as_ref()))).collect()
}

/// One span, as far as the comparison goes.
#[derive(Debug, Clone)]
struct Shape {
    name: String,
    kind: i32,
    attributes: BTreeMap<String, String>,
    events: Vec<(String, BTreeMap<String, String>)>,
    links: usize,
    has_parent: bool,
    status: i32,
    resource: BTreeMap<String, String>,
    scope: String,
}

impl Shape {
    fn entity(&self) -> Option<&String> {
        self.attributes.get("helix.entity.id")
    }
}

fn shapes(requests: &[ExportTraceServiceRequest]) -> Vec<Shape> {
    let mut out = Vec::new();
    for request in requests {
        for rs in &request.resource_spans {
            let resource = attrs(rs.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default());
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    out.push(Shape {
                        name: span.name.clone(),
                        kind: span.kind,
                        attributes: attrs(&span.attributes),
                        events: span.events.iter().map(|e| (e.name.clone(), attrs(&e.attributes))).collect(),
                        links: span.links.len(),
                        has_parent: !span.parent_span_id.is_empty(),
                        status: span.status.as_ref().map(|s| s.code).unwrap_or(0),
                        resource: resource.clone(),
                        scope: ss.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
                    });
                }
            }
        }
    }
    out
}

fn instrument(receiver: &Receiver, service: &str, process: Option<&str>) -> helixobs::Instrument {
    let mut builder =
        helixobs::Instrument::builder(service).instrument_id("MY_INST").endpoint(format!("http://{}", receiver.addr));
    if let Some(p) = process {
        builder = builder.process_name(p);
    }
    builder.build().unwrap()
}

fn compare(scenario: &str, ours: Vec<Shape>) {
    let expected = shapes(&published::<ExportTraceServiceRequest>(scenario, "traces"));
    assert_eq!(ours.len(), expected.len(), "{scenario}: span count; ours: {ours:#?}");
    let mut ours = ours;
    for pubspan in &expected {
        let eid = pubspan.entity();
        let at = ours
            .iter()
            .position(|s| s.name == pubspan.name && s.entity() == eid && s.links == pubspan.links)
            .unwrap_or_else(|| {
                panic!("{scenario}: no span like {}/{eid:?} with {} links in {ours:#?}", pubspan.name, pubspan.links)
            });
        let mine = ours.remove(at);
        let what = format!("{scenario}: {}/{eid:?}", pubspan.name);
        let mut pub_keys: Vec<&String> = pubspan.attributes.keys().collect();
        let mut my_keys: Vec<&String> = mine.attributes.keys().collect();
        if pubspan.attributes.contains_key(OPERATION) || mine.attributes.contains_key(OPERATION) {
            // Fix: we also stamp the process name on operations ...
            if !pubspan.attributes.contains_key("helix.process.name") {
                my_keys.retain(|k| *k != "helix.process.name");
            }
            // ... and an operation that never got an entity ID is a plain span.
            if eid.is_none() {
                pub_keys.retain(|k| *k != OPERATION);
            }
        }
        assert_eq!(my_keys, pub_keys, "{what}: attribute keys");
        for key in pub_keys {
            assert_eq!(mine.attributes[key], pubspan.attributes[key], "{what}: {key} as the herald renders it");
        }
        assert_eq!(mine.kind, pubspan.kind, "{what}: kind");
        assert_eq!(mine.has_parent, pubspan.has_parent, "{what}: parent");
        assert_eq!(mine.status, pubspan.status, "{what}: status");
        assert_eq!(mine.scope, pubspan.scope, "{what}: scope");
        let my_events: Vec<_> = mine.events.iter().filter(|(n, _)| n != "exception").collect();
        let pub_events: Vec<_> = pubspan.events.iter().filter(|(n, _)| n != "exception").collect();
        assert_eq!(
            my_events.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            pub_events.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            "{what}: events"
        );
        for ((_, mine), (name, theirs)) in my_events.iter().zip(&pub_events) {
            for (key, value) in theirs {
                assert_eq!(mine.get(key), Some(value), "{what}: event {name}: {key}");
            }
        }
        for key in ["service.name", "helix.instrument.id", "helix.process.name"] {
            assert_eq!(mine.resource.get(key), pubspan.resource.get(key), "{what}: resource {key}");
        }
    }
}

/// Run a scenario with one instrument against a fresh receiver; its spans as exported.
fn run(service: &str, process: Option<&str>, scenario: impl FnOnce(&helixobs::Instrument)) -> Vec<Shape> {
    let receiver = Receiver::start();
    let tel = instrument(&receiver, service, process);
    scenario(&tel);
    tel.shutdown().unwrap();
    shapes(&receiver.trace_requests())
}

#[test]
fn s01_linear_chain() {
    let ours = run("my-pipeline", Some("MY_INST/ingest"), |t| {
        {
            let _block = t.create("ingest", "block-001").start();
        }
        let tok = t.create("search", "candidate-42").parents(["block-001"]).start();
        tok.set_attribute("score", 0.97);
    });
    compare("s01_linear_chain", ours);
}

#[test]
fn s02_fan_in() {
    let ours = run("my-pipeline", None, |t| {
        for p in ["result-001", "result-002", "result-003"] {
            let _partial = t.create("partial", p).start();
        }
        let _event = t.create("aggregate", "event-7").parents(["result-001", "result-002", "result-003"]).start();
    });
    compare("s02_fan_in", ours);
}

#[test]
fn s03_cross_process() {
    let a = run("process-a", Some("MY_INST/a"), |t| {
        let _block = t.create("ingest", "block-001").start();
    });
    compare("s03a_cross_process_parent", a);
    // Another instrument (another process): block-001 is not known to it, so no client link.
    let b = run("process-b", Some("MY_INST/b"), |t| {
        let _cand = t.create("search", "candidate-42").parents(["block-001"]).start();
    });
    compare("s03b_cross_process_child", b);
}

#[test]
fn s04_operate() {
    let ours = run("my-pipeline", None, |t| {
        {
            let tok = t.operate("archive", "event-7").start();
            tok.set_attribute("path", "/data/event-7.h5");
        }
        let tok = t.operate("archive", "event-8").start();
        tok.complete_with([("path", helixobs::IntoValue::into_value("/data/event-8.h5")), ("size_mb", 12.5.into())]);
    });
    compare("s04_operate", ours);
}

#[test]
fn s05_errors() {
    let ours = run("my-pipeline", None, |t| {
        let tok = t.create("search", "candidate-43").parents(["block-001"]).start();
        tok.error([("message", "score_below_threshold"), ("score", "0.3")]);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _event = t.create("classify", "event-9").parents(["candidate-43"]).start();
            panic!("boom 123");
        }));
        let op = t.operate("write-header", "event-7").start();
        op.add_error([("stage", "dump_header"), ("message", "nfs_timeout")]);
    });
    compare("s05_errors", ours);
}

#[test]
fn s06_events() {
    let ours = run("my-pipeline", None, |t| {
        let tok = t.create("classify", "event-10").parents(["candidate-42"]).start();
        tok.add_event("helix.event.classified", [("label", "FRB"), ("confidence", "0.97")]);
        use helixobs::IntoValue;
        tok.add_event(
            "helix.event.typed",
            [
                ("n", 42.into_value()),
                ("ratio", 0.5.into_value()),
                ("ok", true.into_value()),
                ("tags", ["a", "b"].into_value()),
            ],
        );
        tok.add_event("classified", [("label", "FRB")]);
    });
    compare("s06_events", ours);
}

#[test]
fn s07_child_span_and_trace() {
    let ours = run("my-pipeline", None, |t| {
        {
            let _block = t.create("process", "block-002").start();
            {
                let filter = t.child_span("filter");
                filter.set_attribute("filter.type", "bandpass");
            }
            let _transform = t.child_span("transform");
        }
        let _request = t.trace_with("process-request", [("endpoint", "/api/status")]);
        {
            let _auth = t.child_span("auth-check");
        }
        let _db = t.child_span("db-query");
    });
    compare("s07_child_span_and_trace", ours);
}

#[test]
fn s08_deferred() {
    let ours = run("my-pipeline", None, |t| {
        {
            let op = t.operate_deferred("stage-deletion").start();
            op.set_entity_id("dataset-x");
            op.add_event("helix.event.deletion-staged", [("num_replicas", "3")]);
        }
        let _op = t.operate_deferred("stage-deletion").start();
    });
    compare("s08_deferred", ours);
}

#[helixobs::create(stage = "search", id = block_id, tel = tel)]
fn search_block(tel: &helixobs::Instrument, block_id: &str) -> i32 {
    let _ = (tel, block_id);
    1
}

#[helixobs::operate(operation = "daily-report", entity_id = "report-2026-05-20", tel = tel)]
fn generate_report(tel: &helixobs::Instrument) -> i32 {
    let _ = tel;
    2
}

#[test]
fn s09_decorator() {
    let ours = run("my-pipeline", None, |t| {
        assert_eq!(search_block(t, "candidate-44"), 1);
        assert_eq!(generate_report(t), 2);
    });
    compare("s09_decorator", ours);
}

#[test]
fn s10_logs() {
    let receiver = Receiver::start();
    let tel = instrument(&receiver, "my-pipeline", Some("MY_INST/ingest"));
    let subscriber = tracing_subscriber::registry().with(tel.tracing_layer());
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!("outside any block");
        {
            let _cand = tel.create("search", "candidate-45").parents(["block-001"]).start();
            tracing::info!("inside the block");
        }
        let op = tel.operate_deferred("stage-deletion").start();
        tracing::info!("before the entity is known");
        op.set_entity_id("dataset-y");
        tracing::warn!("after the entity is known");
    });
    tel.shutdown().unwrap();
    compare("s10_logs", shapes(&receiver.trace_requests()));

    let records = |requests: &[ExportLogsServiceRequest]| -> Vec<(String, bool, BTreeMap<String, String>)> {
        requests
            .iter()
            .flat_map(|r| &r.resource_logs)
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .map(|r| (render_value(r.body.as_ref()), !r.trace_id.is_empty(), attrs(&r.attributes)))
            .collect()
    };
    let expected = records(&published::<ExportLogsServiceRequest>("s10_logs", "logs"));
    let ours = records(&receiver.log_requests());
    assert_eq!(ours.len(), expected.len(), "{ours:#?}");
    for ((body, has_trace, mine), (pub_body, pub_trace, theirs)) in ours.iter().zip(&expected) {
        // Fix: the message is not rewritten (the published client appended "  src=…").
        assert_eq!(body, pub_body.split("  src=").next().unwrap());
        assert_eq!(has_trace, pub_trace, "{body}");
        for key in ["helix_entity_id", "otel_trace_id", "otel_span_id", "helix_instrument_id"] {
            assert_eq!(mine[key].is_empty(), theirs[key].is_empty(), "{body}: {key}");
        }
        assert_eq!(mine["helix_entity_id"], theirs["helix_entity_id"], "{body}");
        if *pub_trace {
            assert_eq!(mine["helix_process_name"], theirs["helix_process_name"], "{body}");
        }
        assert!(mine["helix_source"].contains("wire_identity.rs#L"), "{body}: {}", mine["helix_source"]);
    }
}
