//! The seed document's provenance patterns, sent by the OpenTelemetry SDK's OTLP exporter
//! over gRPC, HTTP/protobuf and HTTP/JSON to a real herald, checked through its API.

mod support;

use std::collections::BTreeMap;

use serde_json::Value;
use support::*;

fn ids(nodes: &Value) -> Vec<String> {
    nodes.as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap().to_owned()).collect()
}

fn edges(graph: &Value) -> Vec<(String, String)> {
    let mut e: Vec<(String, String)> = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["source"].as_str().unwrap().to_owned(), e["target"].as_str().unwrap().to_owned()))
        .collect();
    e.sort();
    e
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

async fn linear_chain(transport: Transport) {
    let herald = Herald::start();
    let p = Pipeline::new(&herald, transport, "ingest", "CHIME");
    p.create("ingest", "block-001", &[]);
    p.create("search", "candidate-42", &["block-001"]);
    p.flush().await;

    let graph = herald.get_ok("/api/v1/entity/candidate-42/graph").await;
    assert_eq!(ids(&graph["nodes"]), vec!["candidate-42", "block-001"], "{transport:?}");
    assert_eq!(edges(&graph), vec![pair("block-001", "candidate-42")]);
    let node = &graph["nodes"][0];
    assert_eq!(node["instrument_id"], "CHIME");
    assert_eq!(node["parent_ids"], serde_json::json!(["block-001"]));
    assert_eq!(node["has_error"], false);
    assert_eq!(node["trace_id"].as_str().unwrap().len(), 32);
    let entity = herald.get_ok("/api/v1/entity/candidate-42").await;
    assert_eq!(entity["entity"]["stage"], "search");
    assert_eq!(entity["entity"]["service_name"], "ingest");
    assert_eq!(entity["entity"]["placeholder"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linear_chain_over_grpc() {
    linear_chain(Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linear_chain_over_http_protobuf() {
    linear_chain(Transport::HttpProtobuf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linear_chain_over_http_json() {
    linear_chain(Transport::HttpJson).await;
}

async fn fan_in_of_five(transport: Transport) {
    let herald = Herald::start();
    let p = Pipeline::new(&herald, transport, "agg", "CHIME");
    let parents: Vec<String> = (1..=5).map(|i| format!("result-{i:03}")).collect();
    for id in &parents {
        p.create("partial", id, &[]);
    }
    let refs: Vec<&str> = parents.iter().map(String::as_str).collect();
    p.create("aggregate", "event-7", &refs);
    p.flush().await;

    let lineage = herald.get_ok("/api/v1/entity/event-7/lineage?direction=ancestors").await;
    let mut got = ids(&lineage["nodes"]);
    got.sort();
    let mut want = parents.clone();
    want.push("event-7".into());
    want.sort();
    assert_eq!(got, want, "{transport:?}");
    assert_eq!(lineage["edges"].as_array().unwrap().len(), 5);
    let entity = herald.get_ok("/api/v1/entity/event-7").await;
    assert_eq!(entity["entity"]["parent_ids"], serde_json::json!(refs), "caller order kept");
    let child = herald.get_ok("/api/v1/entity/result-003/lineage?direction=descendants").await;
    assert_eq!(ids(&child["nodes"]), vec!["result-003", "event-7"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_in_of_five_over_grpc() {
    fan_in_of_five(Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_in_of_five_over_http() {
    fan_in_of_five(Transport::HttpProtobuf).await;
}

async fn diamond(transport: Transport) {
    let herald = Herald::start();
    let p = Pipeline::new(&herald, transport, "dag", "CHIME");
    p.create("ingest", "raw", &[]);
    p.create("left", "l", &["raw"]);
    p.create("right", "r", &["raw"]);
    p.create("merge", "m", &["l", "r"]);
    p.flush().await;

    let lineage = herald.get_ok("/api/v1/entity/m/lineage?direction=ancestors").await;
    let depths: BTreeMap<String, u64> = lineage["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap().to_owned(), n["depth"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        depths,
        BTreeMap::from([("m".into(), 0), ("l".into(), 1), ("r".into(), 1), ("raw".into(), 2)]),
        "{transport:?}"
    );
    let mut d: Vec<u64> = depths.values().copied().collect();
    d.sort();
    assert_eq!(d, vec![0, 1, 1, 2]);
    assert_eq!(lineage["nodes"].as_array().unwrap().len(), 4, "raw appears once although reached twice");
    assert_eq!(edges(&lineage), vec![pair("l", "m"), pair("r", "m"), pair("raw", "l"), pair("raw", "r")]);
    assert_eq!(lineage["partial"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diamond_over_grpc() {
    diamond(Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diamond_over_http() {
    diamond(Transport::HttpJson).await;
}

async fn cross_process(transport: Transport) {
    let herald = Herald::start();
    let a = Pipeline::new(&herald, transport, "ingest", "CHIME");
    let b = Pipeline::new(&herald, transport, "search", "CHIME");
    let block = a.create("ingest", "block-001", &[]);
    a.flush().await;
    b.create("search", "candidate-42", &["block-001"]);
    b.flush().await;

    let graph = herald.get_ok("/api/v1/entity/candidate-42/graph").await;
    assert_eq!(edges(&graph), vec![pair("block-001", "candidate-42")], "{transport:?}");
    let block_node = graph["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "block-001").unwrap().clone();
    assert_eq!(block_node["trace_id"], hex(&block).0);
    assert!(herald.metric("helix_parent_resolution_total", &[("result", "success")]).await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_process_over_grpc() {
    cross_process(Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_process_over_http() {
    cross_process(Transport::HttpProtobuf).await;
}

async fn child_before_parent(transport: Transport) {
    let herald = Herald::start();
    let late = Pipeline::new(&herald, transport, "ingest", "CHIME");
    let early = Pipeline::new(&herald, transport, "search", "CHIME");
    early.create("search", "candidate-9", &["block-9"]);
    early.flush().await;
    let before = herald.get_ok("/api/v1/entity/candidate-9/graph").await;
    assert_eq!(ids(&before["nodes"]), vec!["candidate-9"], "{transport:?}: parent not known yet");
    assert!(edges(&before).is_empty());

    late.create("ingest", "block-9", &[]);
    late.flush().await;
    let after = herald.get_ok("/api/v1/entity/candidate-9/graph").await;
    assert_eq!(edges(&after), vec![pair("block-9", "candidate-9")]);
    let down = herald.get_ok("/api/v1/entity/block-9/graph").await;
    assert_eq!(edges(&down), vec![pair("block-9", "candidate-9")], "descendant visible from the parent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_before_parent_over_grpc() {
    child_before_parent(Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_before_parent_over_http() {
    child_before_parent(Transport::HttpProtobuf).await;
}

async fn parent_never_arrives(transport: Transport) {
    let herald = Herald::start();
    let p = Pipeline::new(&herald, transport, "search", "CHIME");
    p.create("search", "orphan-1", &["ghost-block"]);
    p.flush().await;
    let entity = herald.get_ok("/api/v1/entity/orphan-1").await;
    assert_eq!(entity["entity"]["parent_ids"], serde_json::json!(["ghost-block"]), "{transport:?}");
    let lineage = herald.get_ok("/api/v1/entity/orphan-1/lineage?direction=ancestors").await;
    assert_eq!(ids(&lineage["nodes"]), vec!["orphan-1"]);
    let (status, _) = herald.get("/api/v1/entity/ghost-block").await;
    assert_eq!(status, 404, "a parent that never arrived is not an entity");
    assert!(herald.metric("helix_parent_resolution_total", &[("result", "failed")]).await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_never_arrives_over_grpc() {
    parent_never_arrives(Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_never_arrives_over_http() {
    parent_never_arrives(Transport::HttpJson).await;
}
