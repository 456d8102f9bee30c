//! The trace store's read APIs against a real herald: spans sent by the OpenTelemetry SDK's OTLP
//! exporter come back from `/api/v1/trace/{id}`, `/api/v1/traces` and the Tempo-compatible
//! `/api/traces/{id}` (protobuf and canonical JSON) as they were sent.

mod support;

use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_proto::tonic::trace::v1::{Span, TracesData};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use prost::Message;
use serde_json::Value;
use support::*;

/// An SDK tracer exporting over gRPC to the herald and, when given, to a second collector too
/// (so a test can compare what the herald gives back with exactly what the SDK sent).
struct Sdk {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

fn processor(endpoint: String) -> impl opentelemetry_sdk::trace::SpanProcessor {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .expect("building the OTLP exporter");
    opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
        exporter,
        opentelemetry_sdk::runtime::Tokio,
    )
    .build()
}

impl Sdk {
    fn new(herald: &Herald, service: &str, instrument: &str, tee: Option<&str>) -> Sdk {
        let resource = Resource::builder()
            .with_service_name(service.to_owned())
            .with_attribute(KeyValue::new("helix.instrument.id", instrument.to_owned()))
            .build();
        let mut builder =
            SdkTracerProvider::builder().with_resource(resource).with_span_processor(processor(herald.grpc_url()));
        if let Some(tee) = tee {
            builder = builder.with_span_processor(processor(tee.to_owned()));
        }
        let provider = builder.build();
        let tracer = provider.tracer("helix-trace-test");
        Sdk { provider, tracer }
    }

    async fn flush(&self) {
        let provider = self.provider.clone();
        tokio::task::spawn_blocking(move || provider.force_flush())
            .await
            .expect("join")
            .expect("force_flush: export acknowledged");
    }
}

/// The guide's child-span example: a creation `process` span with `filter` and `transform`
/// children. Returns (trace ID, process span ID, filter span ID, transform span ID) in hex.
fn child_span_example(sdk: &Sdk, entity: &str) -> (String, String, String, String) {
    let tracer = &sdk.tracer;
    let process = tracer
        .span_builder("process")
        .with_kind(SpanKind::Internal)
        .with_attributes(vec![KeyValue::new("helix.entity.id", entity.to_owned())])
        .start_with_context(tracer, &Context::new());
    let cx = Context::current_with_span(process);
    let mut filter = tracer.start_with_context("filter", &cx);
    filter.set_attribute(KeyValue::new("rows", 128_i64));
    let filter_id = filter.span_context().span_id().to_string();
    filter.end();
    let mut transform = tracer.start_with_context("transform", &cx);
    let transform_id = transform.span_context().span_id().to_string();
    transform.end();
    let sc = cx.span().span_context().clone();
    cx.span().end();
    (sc.trace_id().to_string(), sc.span_id().to_string(), filter_id, transform_id)
}

/// A plain `process-request` trace with `auth-check` and `db-query` children; the root has a
/// non-helix `classified` event. Returns the trace ID in hex.
fn process_request(sdk: &Sdk) -> String {
    let tracer = &sdk.tracer;
    let root = tracer
        .span_builder("process-request")
        .with_kind(SpanKind::Server)
        .with_attributes(vec![KeyValue::new("http.route", "/submit"), KeyValue::new("attempt", 2_i64)])
        .start_with_context(tracer, &Context::new());
    let cx = Context::current_with_span(root);
    cx.span().add_event("classified", vec![KeyValue::new("label", "frb"), KeyValue::new("score", 0.93)]);
    tracer.start_with_context("auth-check", &cx).end();
    let mut db = tracer.start_with_context("db-query", &cx);
    db.set_attribute(KeyValue::new("db.system", "sqlite"));
    db.end();
    let trace_id = cx.span().span_context().trace_id().to_string();
    cx.span().end();
    trace_id
}

fn spans_by_name<'a>(trace: &'a Value, name: &str) -> Vec<&'a Value> {
    trace["spans"].as_array().expect("spans").iter().filter(|s| s["name"] == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_spans_are_kept_as_spans_of_the_creation_trace() {
    let herald = Herald::start();
    let sdk = Sdk::new(&herald, "reduce", "CHIME", None);
    let (trace_id, process_id, filter_id, transform_id) = child_span_example(&sdk, "frame-7");
    sdk.flush().await;

    let trace = herald.get_ok(&format!("/api/v1/trace/{trace_id}")).await;
    assert_eq!(trace["trace_id"], trace_id);
    assert_eq!(trace["partial"], false);
    assert_eq!(trace["entities"], serde_json::json!(["frame-7"]));
    assert_eq!(trace["spans"].as_array().map(Vec::len), Some(3), "{trace}");
    let process = spans_by_name(&trace, "process")[0];
    assert_eq!(process["span_id"], process_id);
    assert_eq!(process["parent_span_id"], Value::Null);
    assert_eq!(process["role"], "creation");
    assert_eq!(process["entity_id"], "frame-7");
    assert_eq!(process["service_name"], "reduce");
    assert_eq!(process["instrument_id"], "CHIME");
    assert_eq!(process["resource"]["service.name"], "reduce");
    for (name, id) in [("filter", &filter_id), ("transform", &transform_id)] {
        let child = spans_by_name(&trace, name)[0];
        assert_eq!(child["span_id"], *id);
        assert_eq!(child["parent_span_id"], process_id, "{name}");
        assert_eq!(child["role"], "span", "{name}");
        assert_eq!(child["entity_id"], Value::Null, "{name}");
    }
    assert_eq!(spans_by_name(&trace, "filter")[0]["attributes"]["rows"], 128);
    // Spans are ordered by start time: the parent started first.
    assert_eq!(trace["spans"][0]["name"], "process");

    // The children made no entity rows and no operations.
    let entities = herald.get_ok("/api/v1/entities?instrument=CHIME").await;
    let ids: Vec<&str> = entities["entities"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["frame-7"]);
    let operations = herald.get_ok("/api/v1/entity/frame-7/operations").await;
    assert_eq!(operations.as_array().map(Vec::len), Some(1), "only the creation: {operations}");

    // The trace search finds it by entity and by span name.
    let found = herald.get_ok("/api/v1/traces?entity_id=frame-7").await;
    assert_eq!(found["traces"][0]["trace_id"], trace_id);
    assert_eq!(found["traces"][0]["root_name"], "process");
    assert_eq!(found["traces"][0]["span_count"], 3);
    assert_eq!(found["traces"][0]["entity_ids"], serde_json::json!(["frame-7"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_traces_are_searchable_and_make_no_entities() {
    let herald = Herald::start();
    let sdk = Sdk::new(&herald, "gateway", "CHIME", None);
    let trace_id = process_request(&sdk);
    sdk.flush().await;

    let found = herald.get_ok("/api/v1/traces?name=process-request").await;
    let traces = found["traces"].as_array().expect("traces");
    assert_eq!(traces.len(), 1, "{found}");
    let summary = &traces[0];
    assert_eq!(summary["trace_id"], trace_id);
    assert_eq!(summary["root_name"], "process-request");
    assert_eq!(summary["root_service"], "gateway");
    assert_eq!(summary["span_count"], 3);
    assert_eq!(summary["error_count"], 0);
    assert_eq!(summary["entity_ids"], serde_json::json!([]));
    assert_eq!(found["next_cursor"], Value::Null);
    // A child's name finds the trace too; another name does not.
    let by_child = herald.get_ok("/api/v1/traces?name=db-query&service=gateway").await;
    assert_eq!(by_child["traces"][0]["trace_id"], trace_id);
    let none = herald.get_ok("/api/v1/traces?name=process&status=error").await;
    assert_eq!(none["traces"], serde_json::json!([]));

    let entities = herald.get_ok("/api/v1/entities").await;
    assert_eq!(entities["entities"], serde_json::json!([]));

    // The non-helix event is on the span, with its attributes as JSON values.
    let trace = herald.get_ok(&format!("/api/v1/trace/{trace_id}")).await;
    let root = spans_by_name(&trace, "process-request")[0];
    assert_eq!(root["kind"], "server");
    assert_eq!(root["attributes"]["attempt"], 2);
    assert_eq!(root["attributes"]["http.route"], "/submit");
    let events = root["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{root}");
    assert_eq!(events[0]["name"], "classified");
    assert_eq!(events[0]["attributes"]["label"], "frb");
    assert_eq!(events[0]["attributes"]["score"], 0.93);
    assert!(events[0]["timestamp_ns"].as_i64().is_some_and(|t| t >= root["start_ns"].as_i64().unwrap()));
    assert_eq!(root["role"], "span");

    // Grafana's search: tags and a TraceQL subset.
    let search = herald.get_ok("/api/search?tags=service.name%3Dgateway%20name%3Dprocess-request&limit=5").await;
    assert_eq!(search["traces"][0]["traceID"], trace_id);
    assert_eq!(search["traces"][0]["rootServiceName"], "gateway");
    assert_eq!(search["traces"][0]["rootTraceName"], "process-request");
    assert!(search["traces"][0]["startTimeUnixNano"].as_str().is_some_and(|s| s.parse::<u64>().is_ok()));
    let q = "%7B%20resource.service.name%20%3D%20%22gateway%22%20%26%26%20name%20%3D%20%22auth-check%22%20%7D";
    let search = herald.get_ok(&format!("/api/search?q={q}")).await;
    assert_eq!(search["traces"][0]["traceID"], trace_id);
    let (status, body) = herald.get("/api/search?q=%7B%20span.http.route%20%3D%20%22%2Fsubmit%22%20%7D").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("TraceQL is supported only as")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_process_child_carries_the_resolved_link_to_its_parent() {
    let herald = Herald::start();
    let ingest = Pipeline::new(&herald, Transport::Grpc, "ingest", "CHIME");
    let parent = ingest.create("ingest", "block-001", &[]);
    ingest.flush().await;
    let search = Pipeline::new(&herald, Transport::Grpc, "search", "CHIME");
    let child = search.create("search", "candidate-42", &["block-001"]);
    search.flush().await;
    let (parent_trace, parent_span) = hex(&parent);
    let (child_trace, child_span) = hex(&child);
    assert_ne!(parent_trace, child_trace, "two processes, two traces");

    let trace = herald.get_ok(&format!("/api/v1/trace/{child_trace}")).await;
    let span = spans_by_name(&trace, "search")[0];
    assert_eq!(span["span_id"], child_span);
    let links = span["links"].as_array().expect("links");
    assert!(
        links.iter().any(|l| l["trace_id"] == parent_trace && l["span_id"] == parent_span),
        "no link to the parent's creation span: {span}"
    );
}

/// Base64 (standard alphabet, padded) decoded independently of the herald's encoder.
fn unbase64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {text}"),
        }
    };
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').collect();
        let n = data.iter().enumerate().fold(0u32, |n, (i, &c)| n | (value(c) << (18 - 6 * i)));
        for i in 0..data.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sorted(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_by(|a, b| a.span_id.cmp(&b.span_id));
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tempo_api_gives_back_exactly_the_spans_sent() {
    let herald = Herald::start();
    let (capture, endpoint, _task) = CaptureCollector::start().await;
    let sdk = Sdk::new(&herald, "gateway", "CHIME", Some(&endpoint));
    let trace_id = process_request(&sdk);
    sdk.flush().await;
    let sent = sorted(capture.spans().into_iter().filter(|s| hex_of(&s.trace_id) == trace_id).collect());
    assert_eq!(sent.len(), 3);

    let client = reqwest::Client::new();
    let url = herald.api_url(&format!("/api/traces/{trace_id}"));
    let response = client.get(&url).header("Accept", "application/protobuf").send().await.expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/protobuf");
    let data = TracesData::decode(response.bytes().await.expect("body")).expect("TracesData");
    assert_eq!(data.resource_spans.len(), 1, "one resource");
    let resource = data.resource_spans[0].resource.as_ref().expect("resource");
    assert!(resource.attributes.iter().any(|kv| kv.key == "service.name"));
    assert_eq!(data.resource_spans[0].scope_spans.len(), 1, "one scope");
    assert_eq!(data.resource_spans[0].scope_spans[0].scope.as_ref().map(|s| s.name.as_str()), Some("helix-trace-test"));
    let got = sorted(data.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| s.spans.clone()).collect());
    assert_eq!(got, sent, "the stored spans are the spans sent");

    // The canonical JSON form: base64 IDs, 64-bit integers as strings, lowerCamelCase names.
    let json: Value = client.get(&url).send().await.expect("request").json().await.expect("JSON");
    let spans = json["batches"][0]["scopeSpans"][0]["spans"].as_array().expect("spans").clone();
    assert_eq!(spans.len(), 3);
    for span in &spans {
        let span_id = unbase64(span["spanId"].as_str().expect("spanId"));
        let original = sent.iter().find(|s| s.span_id == span_id).expect("a sent span");
        assert_eq!(unbase64(span["traceId"].as_str().expect("traceId")), original.trace_id);
        assert_eq!(span["name"], original.name.as_str());
        assert_eq!(span["startTimeUnixNano"], original.start_time_unix_nano.to_string());
        assert_eq!(span["endTimeUnixNano"], original.end_time_unix_nano.to_string());
        if !original.parent_span_id.is_empty() {
            assert_eq!(unbase64(span["parentSpanId"].as_str().expect("parentSpanId")), original.parent_span_id);
        }
    }
    let root = spans.iter().find(|s| s["name"] == "process-request").expect("root");
    assert_eq!(root["kind"], "SPAN_KIND_SERVER");
    let attempt = root["attributes"].as_array().unwrap().iter().find(|a| a["key"] == "attempt").expect("attempt");
    assert_eq!(attempt["value"]["intValue"], "2");
    assert_eq!(root["events"][0]["name"], "classified");
    assert!(root["events"][0]["timeUnixNano"].as_str().is_some_and(|t| t.parse::<u64>().is_ok()));

    let v2 = herald.get_ok(&format!("/api/v2/traces/{trace_id}")).await;
    assert_eq!(v2["trace"]["resourceSpans"], json["batches"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_traces() {
    let herald = Herald::start();
    let unknown = "4bf92f3577b34da6a3ce929d0e0e4736";
    for path in
        [format!("/api/v1/trace/{unknown}"), format!("/api/traces/{unknown}"), format!("/api/v2/traces/{unknown}")]
    {
        let (status, body) = herald.get(&path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains("not found")), "{path}: {body}");
    }
    let (status, body) = herald.get("/api/v1/trace/not-a-trace").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("`trace_id`")), "{body}");
    let (status, body) = herald.get("/api/v1/traces?min_duration_ns=-5").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("`min_duration_ns`")), "{body}");
    let (status, text) = herald.get_text("/api/echo").await;
    assert_eq!((status, text.as_str()), (200, "echo"));
}
