//! What the herald stores for each kind of span (docs/wire.md, docs/storage.md "Write semantics"),
//! end to end through a real herald: SDK exporters for ordinary traffic, the raw OTLP client
//! where a test needs to send the very same request twice.

mod support;

use helix_model::builders::{pipeline_resource, traces, SpanBuilder};
use opentelemetry::KeyValue;
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_spans_create_no_rows_and_are_counted() {
    let herald = Herald::start();
    let p = Pipeline::new(&herald, Transport::Grpc, "svc", "CHIME");
    let entity = p.create("process", "block-002", &[]);
    p.plain("filter", Some(&entity));
    p.plain("process-request", None);
    p.flush().await;

    let page = herald.get_ok("/api/v1/entities?instrument=CHIME").await;
    let listed: Vec<&str> = page["entities"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(listed, vec!["block-002"], "only the entity span made a row");
    assert_eq!(herald.metric("helix_spans_passthrough_total", &[]).await, 2.0);
    assert_eq!(herald.metric("helix_spans_received_total", &[]).await, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_keep_order_and_own_timestamps_exception_is_not_an_event() {
    let herald = Herald::start();
    let p = Pipeline::new(&herald, Transport::Grpc, "svc", "CHIME");
    let t1 = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(1_800_000_000_000_000_111);
    let t2 = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(1_800_000_000_000_000_222);
    p.create_with("classify", "event-10", &[], |span| {
        span.add_event_with_timestamp("helix.event.classified", t1, vec![KeyValue::new("label", "FRB")]);
        span.add_event("exception", vec![KeyValue::new("exception.message", "not an entity event")]);
        span.add_event_with_timestamp(
            "helix.event.typed",
            t2,
            vec![KeyValue::new("n", 42), KeyValue::new("ratio", 0.5)],
        );
    });
    p.flush().await;

    let events = herald.get_ok("/api/v1/entity/event-10/events").await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "exception is not stored as an entity event: {events:?}");
    assert_eq!(events[0]["event_name"], "helix.event.classified");
    assert_eq!(events[0]["timestamp_ns"], 1_800_000_000_000_000_111i64);
    assert_eq!(events[0]["metadata"], json!({"label": "FRB"}));
    assert_eq!(events[1]["event_name"], "helix.event.typed");
    assert_eq!(events[1]["timestamp_ns"], 1_800_000_000_000_000_222i64);
    assert_eq!(events[1]["metadata"], json!({"n": "42", "ratio": "0.5"}));
    let graph = herald.get_ok("/api/v1/entity/event-10/graph").await;
    assert_eq!(graph["nodes"][0]["has_error"], false);
    assert_eq!(herald.metric("helix_events_total", &[("instrument_id", "CHIME")]).await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helix_error_sets_has_error_in_the_graph() {
    let herald = Herald::start();
    let p = Pipeline::new(&herald, Transport::HttpProtobuf, "svc", "CHIME");
    p.create("ingest", "block-1", &[]);
    p.create_with("search", "candidate-43", &["block-1"], |span| fail(span, "low_snr"));
    p.flush().await;

    let graph = herald.get_ok("/api/v1/entity/block-1/graph").await;
    let has_error =
        |id: &str| graph["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap()["has_error"].clone();
    assert_eq!(has_error("candidate-43"), true);
    assert_eq!(has_error("block-1"), false);
    let entity = herald.get_ok("/api/v1/entity/candidate-43").await;
    assert_eq!(entity["entity"]["status"], "error");
    assert_eq!(entity["events"][0]["event_name"], "helix.error");
    assert_eq!(herald.metric("helix_errors_total", &[("instrument_id", "CHIME")]).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_on_existing_entity_adds_a_row_not_an_entity() {
    let herald = Herald::start();
    let p = Pipeline::new(&herald, Transport::Grpc, "svc", "CHIME");
    p.create("classify", "event-7", &[]);
    p.flush().await;
    p.operate_with("archive", "event-7", |span| span.set_attribute(KeyValue::new("path", "/data/event-7.h5")));
    p.flush().await;

    let ops = herald.get_ok("/api/v1/entity/event-7/operations").await;
    let names: Vec<&str> = ops.as_array().unwrap().iter().map(|o| o["operation"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["creation", "archive"]);
    assert_eq!(ops[1]["metadata"], json!({"path": "/data/event-7.h5"}));
    let page = herald.get_ok("/api/v1/entities?instrument=CHIME").await;
    assert_eq!(page["entities"].as_array().unwrap().len(), 1, "no new entity");
    assert_eq!(page["entities"][0]["placeholder"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_on_unknown_entity_makes_a_placeholder_later_upgraded() {
    let herald = Herald::start();
    let p = Pipeline::new(&herald, Transport::Grpc, "svc", "CHIME");
    p.operate("archive", "event-8");
    p.flush().await;
    let before = herald.get_ok("/api/v1/entity/event-8").await;
    assert_eq!(before["entity"]["placeholder"], true);
    assert_eq!(before["entity"]["trace_id"], serde_json::Value::Null);

    p.create("ingest", "block-8", &[]);
    let creation = p.create("classify", "event-8", &["block-8"]);
    p.flush().await;
    let after = herald.get_ok("/api/v1/entity/event-8").await;
    assert_eq!(after["entity"]["placeholder"], false, "upgraded in place");
    assert_eq!(after["entity"]["trace_id"], hex(&creation).0);
    assert_eq!(after["entity"]["stage"], "classify");
    assert_eq!(after["entity"]["parent_ids"], json!(["block-8"]));
    assert_eq!(after["operations"].as_array().unwrap().len(), 1, "the operation is kept");
    let graph = herald.get_ok("/api/v1/entity/event-8/graph").await;
    assert_eq!(graph["edges"], json!([{"source": "block-8", "target": "event-8"}]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operations_in_one_trace_are_two_rows() {
    let herald = Herald::start();
    let mut client = raw_client(&herald).await;
    let trace = helix_model::builders::trace_id(77);
    let request = traces(
        pipeline_resource("svc", "CHIME"),
        vec![
            SpanBuilder::operation("convert", "event-5", 1).trace(trace.clone()).build(),
            SpanBuilder::operation("convert", "event-5", 2).trace(trace).build(),
        ],
    );
    client.export(request).await.expect("acknowledged");
    let ops = herald.get_ok("/api/v1/entity/event-5/operations").await;
    assert_eq!(ops.as_array().unwrap().len(), 2, "the older herald deduplicated by trace and lost one: {ops}");
}

/// A mixed export: creations with parents, operations, events, errors and passthrough.
fn mixed_export() -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    let mut spans = Vec::new();
    for i in 0..50u64 {
        spans.push(SpanBuilder::creation("ingest", &format!("blk-{i}"), i).build());
        spans.push(
            SpanBuilder::creation("search", &format!("cand-{i}"), 1000 + i)
                .parents(&format!("blk-{i},blk-{}", (i + 1) % 50))
                .event("helix.event.scored", 5, vec![])
                .event("helix.error", 6, vec![])
                .build(),
        );
        spans.push(SpanBuilder::operation("archive", &format!("cand-{i}"), 2000 + i).build());
        spans.push(SpanBuilder::new("child", 3000 + i).build());
    }
    traces(pipeline_resource("svc", "CHIME"), spans)
}

async fn row_counts(herald: &Herald) -> (usize, usize, usize) {
    let mut entities = 0;
    let mut ops = 0;
    let mut events = 0;
    let page = herald.get_ok("/api/v1/entities?instrument=CHIME&limit=1000").await;
    for e in page["entities"].as_array().unwrap() {
        entities += 1;
        let id = e["id"].as_str().unwrap();
        let detail = herald.get_ok(&format!("/api/v1/entity/{}", enc(id))).await;
        ops += detail["operations"].as_array().unwrap().len();
        events += detail["events"].as_array().unwrap().len();
    }
    (entities, ops, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_export_twice_and_concurrently_creates_no_duplicates() {
    let herald = Herald::start();
    let request = mixed_export();
    let mut a = raw_client(&herald).await;
    a.export(request.clone()).await.expect("first");
    let once = row_counts(&herald).await;
    assert_eq!(once, (100, 50, 100));

    a.export(request.clone()).await.expect("retry");
    let (mut b, mut c) = (raw_client(&herald).await, raw_client(&herald).await);
    let (rb, rc) = tokio::join!(b.export(request.clone()), c.export(request.clone()));
    rb.expect("concurrent 1");
    rc.expect("concurrent 2");
    assert_eq!(row_counts(&herald).await, once, "re-sending created rows");
    let cand = herald.get_ok("/api/v1/entity/cand-3").await;
    assert_eq!(cand["entity"]["parent_ids"], json!(["blk-3", "blk-4"]));
    assert_eq!(herald.metric("helix_entities_total", &[]).await, 100.0, "entities counted once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instrument_cannot_take_over_an_entity() {
    let herald = Herald::start();
    let owner = Pipeline::new(&herald, Transport::Grpc, "svc", "CHIME");
    let intruder = Pipeline::new(&herald, Transport::Grpc, "svc", "OTHER");
    owner.create("ingest", "block-1", &[]);
    owner.flush().await;
    intruder.create("ingest", "block-1", &["x"]);
    intruder.operate("archive", "block-1");
    intruder.flush().await;
    let e = herald.get_ok("/api/v1/entity/block-1").await;
    assert_eq!(e["entity"]["instrument_id"], "CHIME");
    assert_eq!(e["entity"]["parent_ids"], json!([]));
    assert_eq!(e["operations"], json!([]));
    assert_eq!(herald.metric("helix_instrument_conflicts_total", &[]).await, 2.0);
}
