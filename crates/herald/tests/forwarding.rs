//! Forwarding to COLLECTOR_ENDPOINT: a capture collector stands in for Tempo and must see
//! every span exactly once, with the parent links of wire.md and no duplicated link.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use helix_model::ids::to_hex;
use support::*;

fn herald_forwarding_to(endpoint: &str) -> Herald {
    Herald::start_with(HeraldOptions { env: vec![("COLLECTOR_ENDPOINT".into(), endpoint.into())], ..Default::default() })
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
