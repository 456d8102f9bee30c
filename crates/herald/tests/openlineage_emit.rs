//! OpenLineage emission (`OPENLINEAGE_URL`) from a real herald to a loopback HTTP consumer:
//! each first creation is delivered as its run events exactly once, and events of creations
//! made while the consumer is down for 30 s arrive after it comes back.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::header;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;
use support::*;

type Received = Arc<Mutex<Vec<Value>>>;

/// An OpenLineage consumer on `addr` recording every event; each response closes its
/// connection, so stopping the server really makes the endpoint unreachable.
async fn consumer(addr: SocketAddr, received: Received) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind consumer");
    let app = Router::new().route(
        "/api/v1/lineage",
        post(move |Json(event): Json<Value>| {
            let received = received.clone();
            async move {
                received.lock().unwrap().push(event);
                ([(header::CONNECTION, "close")], "")
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

/// `(run ID, event type) → count` and the output entity of each run, once `want` events came.
async fn wait_for(received: &Received, want: usize, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let got = received.lock().unwrap().clone();
        if got.len() >= want || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn runs(events: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut by_entity: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in events {
        let entity = e["outputs"][0]["name"].as_str().unwrap().to_owned();
        by_entity.entry(entity).or_default().push(e["eventType"].as_str().unwrap().to_owned());
    }
    by_entity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_creation_is_emitted_once_and_survives_a_30_s_outage_of_the_consumer() {
    // A free loopback port for the consumer, kept across its restart.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let received: Received = Arc::default();
    let server = consumer(addr, received.clone()).await;
    let herald = Herald::start_with(HeraldOptions {
        env: vec![("OPENLINEAGE_URL".into(), format!("http://{addr}"))],
        ..Default::default()
    });
    let pipeline = Pipeline::new(&herald, Transport::Grpc, "telescope", "CHIME");
    pipeline.create("raw", "blk-1", &[]);
    pipeline.create("beam", "beam-1", &["blk-1"]);
    pipeline.flush().await;
    herald.get_ok(&format!("/api/v1/entity/{}", enc("beam-1"))).await;
    let first = wait_for(&received, 4, Duration::from_secs(30)).await;
    let expected: BTreeMap<String, Vec<String>> = [
        ("blk-1".to_owned(), vec!["START".to_owned(), "COMPLETE".to_owned()]),
        ("beam-1".to_owned(), vec!["START".to_owned(), "COMPLETE".to_owned()]),
    ]
    .into();
    assert_eq!(runs(&first), expected);
    let beam = first.iter().find(|e| e["outputs"][0]["name"] == "beam-1").unwrap();
    assert_eq!(beam["inputs"][0]["name"], "blk-1");
    assert_eq!(beam["job"]["namespace"], "CHIME");
    // The emitted events are the export's.
    let exported = herald.get_ok(&format!("/api/v1/entity/{}/openlineage", enc("beam-1"))).await;
    let exported: Vec<Value> =
        exported.as_array().unwrap().iter().filter(|e| e["outputs"][0]["name"] == "beam-1").cloned().collect();
    let emitted: Vec<Value> = first.iter().filter(|e| e["outputs"][0]["name"] == "beam-1").cloned().collect();
    assert_eq!(emitted, exported);

    // Outage: the consumer goes away for 30 s while the pipeline keeps creating; ingest is
    // not held up (the creations are acknowledged and stored at once).
    server.abort();
    let _ = server.await;
    let before = received.lock().unwrap().len();
    pipeline.create("beam", "beam-2", &["blk-1"]);
    pipeline.create("candidate", "cand-1", &["beam-1", "beam-2"]);
    pipeline.flush().await;
    herald.get_ok(&format!("/api/v1/entity/{}", enc("cand-1"))).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(received.lock().unwrap().len(), before, "nothing can arrive while the consumer is down");
    let _server = consumer(addr, received.clone()).await;
    let all = wait_for(&received, 8, Duration::from_secs(60)).await;
    // Give a duplicate time to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all_now = received.lock().unwrap().clone();
    assert_eq!(all.len(), all_now.len());
    let mut expected = expected;
    expected.insert("beam-2".into(), vec!["START".into(), "COMPLETE".into()]);
    expected.insert("cand-1".into(), vec!["START".into(), "COMPLETE".into()]);
    assert_eq!(runs(&all_now), expected, "every creation's run events exactly once");
    pipeline.shutdown().await;
}
