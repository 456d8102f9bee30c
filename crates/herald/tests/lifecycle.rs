//! Start-up and shutdown of the real herald binary: the ready signal programs wait for, one
//! report per task when it stops, and a downstream that never answers cannot hold the stop
//! past its deadline nor cost an acknowledged span.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::*;

/// The herald's JSON log events (other lines, e.g. the human-readable stdout ones, skipped).
fn json_events(log: &str) -> Vec<Value> {
    log.lines().filter(|l| l.starts_with('{')).filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// task name → outcomes reported, in order.
fn task_reports(log: &str) -> HashMap<String, Vec<Value>> {
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for event in json_events(log) {
        let fields = &event["fields"];
        if let (Some(task), Some(_)) = (fields["task"].as_str(), fields["outcome"].as_str()) {
            out.entry(task.to_owned()).or_default().push(fields.clone());
        }
    }
    out
}

fn json_herald(args: &[&str], env: Vec<(String, String)>) -> Herald {
    let mut all = vec!["--log-format".to_owned(), "json".to_owned()];
    all.extend(args.iter().map(|a| a.to_string()));
    Herald::start_with(HeraldOptions { args: all, env, ..Default::default() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ready_file_holds_the_ready_line_and_names_live_listeners() {
    let herald = Herald::start();
    let file = std::fs::read_to_string(herald.dir.path().join("ready.json")).expect("ready file");
    let from_file: Value = serde_json::from_str(&file).unwrap();
    let from_stderr: Value = herald
        .log()
        .lines()
        .filter(|l| l.contains(r#""event":"ready""#))
        .map(|l| serde_json::from_str(l).expect("the ready line is JSON"))
        .next()
        .expect("a ready line on stderr");
    assert_eq!(from_file, from_stderr);
    assert_eq!(from_file["event"], "ready");
    assert!(!herald.dir.path().join("ready.tmp").exists(), "written atomically, no temporary left");
    // The harness took its addresses from that file; they answer.
    let (status, _) = herald.get_text("/healthz").await;
    assert_eq!(status, 200);
    assert!(herald.metric("helix_spans_received_total", &[]).await >= 0.0);
    let mut client = raw_client(&herald).await;
    use helix_model::builders::{pipeline_resource, traces, SpanBuilder};
    client
        .export(traces(pipeline_resource("svc", "CHIME"), vec![SpanBuilder::creation("ingest", "r-1", 1).build()]))
        .await
        .expect("OTLP/gRPC at the announced address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_reports_every_task_once_as_ok() {
    let mut herald = json_herald(&[], vec![]);
    let p = Pipeline::new(&herald, Transport::Grpc, "svc", "CHIME");
    p.create("ingest", "c-1", &[]);
    p.flush().await;
    p.shutdown().await;
    let status = herald.stop_within(Duration::from_secs(60)).expect("the herald exits after SIGTERM");
    assert!(status.success(), "exit status {status}; log:\n{}", herald.log());
    let reports = task_reports(&herald.log());
    let mut names: Vec<&str> = reports.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "api",
            "instruments",
            "metrics",
            "notifications",
            "otlp-grpc",
            "otlp-http",
            "platform-check",
            "store",
            "writer"
        ],
        "{reports:?}"
    );
    for (task, events) in &reports {
        assert_eq!(events.len(), 1, "{task} reported once: {events:?}");
        assert_eq!(events[0]["outcome"], "ok", "{task}: {events:?}");
        assert!(events[0]["duration_ms"].is_u64(), "{task} reports its duration: {events:?}");
    }
}

/// A "collector" that accepts connections and never sends a byte (a hung Tempo, a black-holed
/// route). Connections are held open until the test ends.
async fn silent_collector() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let task = tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            held.lock().unwrap().push(conn);
        }
    });
    (format!("http://{addr}"), task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_cannot_hold_shutdown_and_no_acknowledged_span_is_lost() {
    let (endpoint, collector) = silent_collector().await;
    let mut herald = json_herald(&["--shutdown-timeout", "2s"], vec![("COLLECTOR_ENDPOINT".into(), endpoint)]);
    let p = Pipeline::new(&herald, Transport::Grpc, "svc", "CHIME");
    // Twenty exports, so twenty requests wait for the forwarder: flushed one attempt each
    // (10 s per unanswered attempt), they alone would hold the stop for minutes.
    let mut ids = Vec::new();
    for export in 0..20 {
        for i in 0..10 {
            let id = format!("s-{export}-{i}");
            p.create("ingest", &id, &[]);
            ids.push(id);
        }
        p.flush().await; // panics unless the herald acknowledged the export
    }
    p.shutdown().await;
    assert!(herald.metric("helix_forward_queue_requests", &[]).await >= 1.0, "requests wait for the forwarder");

    let status = herald
        .stop_within(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("still running 60 s after SIGTERM; log:\n{}", herald.log()));
    assert!(status.success(), "exit status {status}; log:\n{}", herald.log());
    let reports = task_reports(&herald.log());
    let outcome = |task: &str| reports.get(task).map(|r| r[0]["outcome"].as_str().unwrap_or("").to_owned());
    assert_eq!(outcome("forwarder").as_deref(), Some("timed-out"), "{reports:?}");
    assert_eq!(outcome("writer").as_deref(), Some("ok"), "{reports:?}");
    assert_eq!(outcome("store").as_deref(), Some("ok"), "{reports:?}");

    // A second herald on the same database serves every acknowledged span.
    let db_url = format!("sqlite://{}", herald.db_path().display());
    let second = Herald::start_with(HeraldOptions { db_url: Some(db_url), ..Default::default() });
    let page = second.get_ok("/api/v1/entities?instrument=CHIME&limit=1000").await;
    let mut stored: Vec<String> = page["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    stored.sort();
    ids.sort();
    assert_eq!(stored, ids);
    collector.abort();
}
