//! Forwarding to COLLECTOR_ENDPOINT: a capture collector stands in for Tempo and must see
//! every span exactly once, with the parent links of docs/wire.md and no duplicated link, and
//! every log record (a site's Loki behind a collector keeps its logs).

mod support;

use std::collections::HashMap;
use std::time::Duration;

use helix_model::ids::to_hex;
use support::*;

fn herald_forwarding_to(endpoint: &str) -> Herald {
    Herald::start_with(HeraldOptions {
        env: vec![("COLLECTOR_ENDPOINT".into(), endpoint.into())],
        ..Default::default()
    })
}

/// span name → (count, links as (trace hex, span hex)).
fn by_name(spans: &[opentelemetry_proto::tonic::trace::v1::Span]) -> HashMap<String, (usize, Vec<(String, String)>)> {
    let mut out: HashMap<String, (usize, Vec<(String, String)>)> = HashMap::new();
    for s in spans {
        let entry = out.entry(s.name.clone()).or_default();
        entry.0 += 1;
        entry.1 = s.links.iter().map(|l| (to_hex(&l.trace_id), to_hex(&l.span_id))).collect();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_span_forwarded_once_with_links_never_duplicated() {
    let (collector, endpoint, _task) = CaptureCollector::start().await;
    let herald = herald_forwarding_to(&endpoint);
    let a = Pipeline::new(&herald, Transport::Grpc, "ingest", "CHIME");
    let b = Pipeline::new(&herald, Transport::HttpProtobuf, "search", "CHIME");
    let block = a.create("ingest", "block-1", &[]);
    let other = a.create("ingest", "block-2", &[]);
    a.plain("passthrough-child", Some(&block));
    a.flush().await;
    // Cross-process: the child's process has no link to its parents; the herald adds them.
    b.create("search", "cand-1", &["block-1", "block-2", "never-seen"]);
    // A client that already linked its in-process parent must not get a second link to it.
    b.create_with("search-linked", "cand-2", &["block-1"], |span| {
        span.add_link(block.clone(), vec![]);
    });
    b.flush().await;

    eventually(Duration::from_secs(20), async || (collector.spans().len() >= 5).then_some(())).await;
    // Give a duplicate (if any) the chance to arrive before judging "exactly once".
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = by_name(&collector.spans());
    for name in ["ingest", "passthrough-child", "search", "search-linked"] {
        assert!(seen.contains_key(name), "{name} not forwarded: {seen:?}");
    }
    assert_eq!(seen["ingest"].0, 2);
    assert_eq!(seen["passthrough-child"].0, 1);
    assert_eq!(seen["search"].0, 1);
    assert_eq!(seen["search-linked"].0, 1);
    let mut links = seen["search"].1.clone();
    links.sort();
    let mut want = vec![hex(&block), hex(&other)];
    want.sort();
    assert_eq!(links, want, "one link per known parent");
    assert_eq!(seen["search-linked"].1, vec![hex(&block)], "the client's link kept, not duplicated");
    assert!(seen["passthrough-child"].1.is_empty(), "passthrough forwarded unchanged");
    assert_eq!(herald.metric("helix_forward_spans_total", &[("result", "sent")]).await, 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_resolved_for_a_parent_created_before_a_restart() {
    let (collector, endpoint, _task) = CaptureCollector::start().await;
    let herald = herald_forwarding_to(&endpoint);
    let a = Pipeline::new(&herald, Transport::Grpc, "ingest", "CHIME");
    let block = a.create("ingest", "block-r", &[]);
    a.flush().await;
    a.shutdown().await;

    let herald = herald.restart();
    let b = Pipeline::new(&herald, Transport::Grpc, "search", "CHIME");
    b.create("search", "cand-r", &["block-r"]);
    b.flush().await;
    let spans = eventually(Duration::from_secs(20), async || {
        let spans = collector.spans();
        spans.iter().any(|s| s.name == "search").then_some(spans)
    })
    .await;
    let child = spans.iter().find(|s| s.name == "search").unwrap();
    let links: Vec<(String, String)> = child.links.iter().map(|l| (to_hex(&l.trace_id), to_hex(&l.span_id))).collect();
    assert_eq!(links, vec![hex(&block)], "resolved through the store after the in-memory TraceStore was lost");
    assert_eq!(spans.iter().filter(|s| s.name == "ingest").count(), 1);
    assert!(herald.metric("helix_trace_store_lookups_total", &[("source", "database")]).await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_never_blocks_ingest() {
    // Nothing listens on this port: every forward fails, ingest must not notice.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let herald = herald_forwarding_to(&format!("http://{dead}"));
    let p = Pipeline::new(&herald, Transport::Grpc, "svc", "CHIME");
    for i in 0..200 {
        p.create("ingest", &format!("b-{i}"), &[]);
    }
    p.flush().await;
    let page = herald.get_ok("/api/v1/entities?instrument=CHIME&limit=1000").await;
    assert_eq!(page["entities"].as_array().unwrap().len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_point_at_the_first_creation_even_after_a_re_creation() {
    use helix_model::builders::{pipeline_resource, span_id, trace_id, traces, SpanBuilder};
    let (collector, endpoint, _task) = CaptureCollector::start().await;
    // A one-entry TraceStore, so the first creation is evicted before the re-creation arrives.
    let herald = Herald::start_with(HeraldOptions {
        args: vec!["--trace-store-size".into(), "1".into()],
        env: vec![("COLLECTOR_ENDPOINT".into(), endpoint)],
        ..Default::default()
    });
    let mut client = raw_client(&herald).await;
    let send = |spans| traces(pipeline_resource("svc", "CHIME"), spans);
    client.export(send(vec![SpanBuilder::creation("ingest", "block-1", 1).build()])).await.unwrap();
    client.export(send(vec![SpanBuilder::creation("ingest", "other", 2).build()])).await.unwrap();
    // The same entity created again by another span (e.g. a pipeline re-run).
    client.export(send(vec![SpanBuilder::creation("ingest", "block-1", 3).build()])).await.unwrap();
    client.export(send(vec![SpanBuilder::creation("search", "cand-1", 4).parents("block-1").build()])).await.unwrap();

    let spans = eventually(Duration::from_secs(20), async || {
        let spans = collector.spans();
        spans.iter().any(|s| s.name == "search").then_some(spans)
    })
    .await;
    let child = spans.iter().find(|s| s.name == "search").unwrap();
    let links: Vec<(String, String)> = child.links.iter().map(|l| (to_hex(&l.trace_id), to_hex(&l.span_id))).collect();
    assert_eq!(
        links,
        vec![(to_hex(&trace_id(1)), to_hex(&span_id(1)))],
        "the first creation's span, as the store resolves it"
    );
    assert_eq!(herald.metric("helix_entity_recreations_total", &[]).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_records_are_forwarded_once_and_stored() {
    let (collector, endpoint, _task) = CaptureCollector::start().await;
    let herald = herald_forwarding_to(&endpoint);
    let traces = Pipeline::new(&herald, Transport::Grpc, "fwd-logs", "FWD");
    let logs = LogPipeline::new(&herald, Transport::HttpProtobuf, "fwd-logs", "FWD");
    let block = traces.create("ingest", "fwd-block", &[]);
    for i in 0..20 {
        logs.log(opentelemetry::logs::Severity::Info, &format!("forwarded line {i:02}"), Some(&block), &[]);
    }
    traces.flush().await;
    logs.flush().await;
    let expected: Vec<String> = (0..20).map(|i| format!("forwarded line {i:02}")).collect();
    let got = eventually(Duration::from_secs(10), async || {
        let mut bodies = collector.log_bodies();
        bodies.sort();
        (bodies.len() >= 20).then_some(bodies)
    })
    .await;
    assert_eq!(got, expected, "each record once");
    let stored = herald.get_ok("/api/v1/logs?service=fwd-logs&limit=100").await;
    assert_eq!(stored["logs"].as_array().unwrap().len(), 20, "and stored here too");
    assert_eq!(herald.metric("helix_forward_logs_total", &[("result", "sent")]).await, 20.0);
    traces.shutdown().await;
    logs.shutdown().await;
}
