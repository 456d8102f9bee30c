//! Several herald replicas on one PostgreSQL database behave as one: parent links resolve when
//! parent and child reach different replicas (through the store's creation-span lookup), and
//! concurrent identical exports to different replicas leave exactly one row per entity,
//! operation and event.

mod postgres_support;
mod support;

use std::time::Duration;

use helix_model::builders::{kv, pipeline_resource, span_id, string, trace_id, traces, SpanBuilder};
use helix_model::ids::to_hex;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use postgres_support::*;
use support::{eventually, CaptureCollector, Herald};

fn one(span: SpanBuilder) -> ExportTraceServiceRequest {
    traces(pipeline_resource("svc", "CHIME"), vec![span.build()])
}

async fn send(herald: &Herald, request: ExportTraceServiceRequest) {
    let mut client = TraceServiceClient::connect(herald.grpc_url()).await.expect("connect");
    client.export(request).await.expect("export acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_replica_chain_resolves_links_and_graph() {
    let db = TestDb::create(&pg_url(), "chain").await;
    let (collector, endpoint, _task) = CaptureCollector::start().await;
    let env = [("COLLECTOR_ENDPOINT", endpoint.as_str())];
    let replicas: Vec<Herald> = (0..3).map(|_| Herald::on_database(&db.url, &env)).collect();

    // Each span to a different replica: no replica has the parent in its in-memory TraceStore.
    send(&replicas[0], one(SpanBuilder::creation("ingest", "blk-1", 1))).await;
    send(&replicas[1], one(SpanBuilder::creation("search", "cand-1", 2).parents("blk-1"))).await;
    send(&replicas[2], one(SpanBuilder::creation("classify", "evt-1", 3).parents("cand-1"))).await;

    let spans = eventually(Duration::from_secs(20), async || {
        let spans = collector.spans();
        (spans.len() >= 3).then_some(spans)
    })
    .await;
    let links_of = |name: &str| -> Vec<(String, String)> {
        let s = spans.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("{name} forwarded"));
        s.links.iter().map(|l| (to_hex(&l.trace_id), to_hex(&l.span_id))).collect()
    };
    assert_eq!(
        links_of("search"),
        vec![(to_hex(&trace_id(1)), to_hex(&span_id(1)))],
        "candidate → block's creation span"
    );
    assert_eq!(
        links_of("classify"),
        vec![(to_hex(&trace_id(2)), to_hex(&span_id(2)))],
        "event → candidate's creation span"
    );
    assert!(links_of("ingest").is_empty());

    // Every replica reads the same graph.
    for r in &replicas {
        let (status, body) = r.get_text("/api/v1/entity/evt-1/lineage?direction=ancestors").await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let ids: Vec<&str> = v["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["evt-1", "cand-1", "blk-1"], "{body}");
        let (status, body) = r.get_text("/api/v1/entity/blk-1/lineage?direction=descendants").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"evt-1\"") && body.contains("\"cand-1\""), "{body}");
    }
    assert_eq!(db.count("SELECT count(*) FROM entities WHERE NOT placeholder").await, 3);
    assert_eq!(db.count("SELECT count(*) FROM entity_parents").await, 2);
}

const SPANS: u64 = 10_000;
const PER_REQUEST: u64 = 500;

/// The shared workload: a chain of creations (every 10th with a helix event), and an
/// operation with an event after every third creation.
fn workload() -> (Vec<ExportTraceServiceRequest>, i64, i64, i64) {
    let (mut entities, mut ops, mut events) = (0, 0, 0);
    let mut spans = Vec::new();
    for n in 0..SPANS {
        let span = if n % 4 == 3 {
            ops += 1;
            events += 1;
            SpanBuilder::operation("calibrate", &format!("dup-{}", n - 1), n).event(
                "helix.event.calibrated",
                1_700_000_000_000_000_000 + n * 1_000 + 10,
                vec![kv("message", string("ok"))],
            )
        } else {
            entities += 1;
            let mut b = SpanBuilder::creation("ingest", &format!("dup-{n}"), n);
            if n > 0 {
                b = b.parents(&format!("dup-{}", n - 1 - u64::from(n % 4 == 0)));
            }
            if n % 10 == 0 {
                events += 1;
                b = b.event("helix.event.checked", 1_700_000_000_000_000_000 + n * 1_000 + 5, vec![]);
            }
            b
        };
        spans.push(span.build());
    }
    let requests =
        spans.chunks(PER_REQUEST as usize).map(|c| traces(pipeline_resource("svc", "CHIME"), c.to_vec())).collect();
    (requests, entities, ops, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_concurrent_exports_to_different_replicas_write_each_row_once() {
    let db = TestDb::create(&pg_url(), "dup").await;
    let replicas: Vec<Herald> = (0..3).map(|_| Herald::on_database(&db.url, &[])).collect();
    let (requests, entities, ops, events) = workload();
    let n = requests.len();
    let mut clients = Vec::new();
    for c in 0..4usize {
        let url = replicas[c % 3].grpc_url();
        let requests = requests.clone();
        clients.push(tokio::spawn(async move {
            let mut client = TraceServiceClient::connect(url).await.expect("connect");
            // Each client starts elsewhere in the stream so the replicas collide all the time.
            for i in 0..n {
                let request = requests[(i + c * n / 4) % n].clone();
                let mut tries = 0;
                loop {
                    match client.export(request.clone()).await {
                        Ok(_) => break,
                        Err(status) if status.code() == tonic::Code::Unavailable && tries < 50 => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(status) => panic!("export refused: {status}"),
                    }
                }
            }
        }));
    }
    for c in clients {
        c.await.expect("client");
    }
    assert_eq!(db.count("SELECT count(*) FROM entities").await, entities);
    assert_eq!(db.count("SELECT count(*) FROM entities WHERE placeholder").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM entity_operations").await, ops);
    assert_eq!(db.count("SELECT count(*) FROM entity_events").await, events);
    assert_eq!(db.count("SELECT count(*) FROM entity_parents").await, entities - 1);
    assert_eq!(db.count("SELECT count(*) FROM entity_creations").await, 0, "no creation was taken for a re-creation");
    assert_eq!(db.count("SELECT count(*) FROM instruments").await, 1);
    for r in &replicas {
        let (status, body) = r.get_text("/readyz").await;
        assert_eq!(status, 200, "{body}");
    }
}
