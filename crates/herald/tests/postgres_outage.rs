//! Outages on PostgreSQL: with the database stopped the herald stays up, `/readyz` says why,
//! ingest answers retryable errors, and after the database returns every acknowledged span is
//! there; a replica SIGKILLed mid-stream and a 30-second database stop mid-stream lose no
//! acknowledged span (client-side record of acknowledged requests compared with the database).
//! The tests that stop the server run a throw-away cluster of their own (test binaries run in
//! parallel: stopping the shared server would break other tests).

mod postgres_support;
mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use helix_model::builders::{pipeline_resource, traces, SpanBuilder};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use postgres_support::*;
use support::{eventually, Herald};

const PER_REQUEST: u64 = 250;

fn request(batch: u64) -> ExportTraceServiceRequest {
    let spans = (0..PER_REQUEST)
        .map(|i| {
            let n = batch * PER_REQUEST + i;
            let b = SpanBuilder::creation("search", &format!("e-{n}"), n);
            if n > 0 { b.parents(&format!("e-{}", n - 1)) } else { b }.build()
        })
        .collect();
    traces(pipeline_resource("svc", "CHIME"), spans)
}

/// Entity IDs of `batches` that are missing from the database.
async fn missing(db_url: &str, batches: &[u64]) -> Vec<String> {
    let client = connect(db_url).await;
    let ids: Vec<String> =
        batches.iter().flat_map(|b| (0..PER_REQUEST).map(move |i| format!("e-{}", b * PER_REQUEST + i))).collect();
    let found: HashSet<String> = client
        .query("SELECT id FROM entities WHERE id = ANY($1) AND NOT placeholder", &[&ids])
        .await
        .expect("query acknowledged entities")
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    ids.into_iter().filter(|id| !found.contains(id)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_keeps_herald_up_not_ready_and_retryable() {
    let cluster = Cluster::start();
    let db = TestDb::create(&cluster.url("postgres"), "down").await;
    let mut herald = Herald::on_database(&db.url, &[]);
    let mut client = TraceServiceClient::connect(herald.grpc_url()).await.unwrap();
    client.export(request(0)).await.expect("accepted while the database is up");

    cluster.pg_ctl_stop();
    let (status, _) = herald.get_text("/healthz").await;
    assert_eq!(status, 200, "liveness does not depend on the database");
    let (status, body) = herald.get_text("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("database unreachable"), "/readyz says why: {body}");
    assert!(!body.contains("password"), "{body}");
    let err = client.export(request(1)).await.expect_err("nothing is acknowledged without the database");
    assert_eq!(err.code(), tonic::Code::Unavailable, "retryable: {err:?}");
    assert!(herald.is_running(), "the herald stays up:\n{}", herald.log());

    cluster.pg_ctl_start();
    eventually(Duration::from_secs(30), async || (herald.get_text("/readyz").await.0 == 200).then_some(())).await;
    // The exporter's retry of the refused request now succeeds (the pool replaced its broken
    // connections).
    client.export(request(1)).await.expect("accepted after the database returned");
    assert!(missing(&db.url, &[0, 1]).await.is_empty());
}

/// Stream `batches` requests over four lanes to `targets` (lane i uses target i % len),
/// retrying refused requests and failing over to the next target when one is gone; records
/// what was acknowledged. Stops at `deadline`.
fn stream(
    targets: Arc<Mutex<Vec<String>>>,
    batches: u64,
    acked: Arc<Mutex<Vec<u64>>>,
    deadline: Instant,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..4u64)
        .map(|lane| {
            let (targets, acked) = (targets.clone(), acked.clone());
            tokio::spawn(async move {
                let mut pick = lane as usize;
                let mut client: Option<TraceServiceClient<tonic::transport::Channel>> = None;
                for batch in (lane..batches).step_by(4) {
                    loop {
                        assert!(Instant::now() < deadline, "lane {lane} could not deliver batch {batch} in time");
                        if client.is_none() {
                            let urls = targets.lock().unwrap().clone();
                            let url = urls[pick % urls.len()].clone();
                            client = TraceServiceClient::connect(url).await.ok();
                        }
                        let Some(c) = client.as_mut() else {
                            pick += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        };
                        match c.export(request(batch)).await {
                            Ok(_) => {
                                acked.lock().unwrap().push(batch);
                                break;
                            }
                            Err(status)
                                if status.code() == tonic::Code::Unavailable && status.message().contains("retry") =>
                            {
                                // The herald refused (database down): retry the same request.
                                tokio::time::sleep(Duration::from_millis(250)).await;
                            }
                            Err(_) => {
                                // Transport failure (the replica died): fail over.
                                client = None;
                                pick += 1;
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_replica_mid_stream_loses_no_acknowledged_span() {
    let db = TestDb::create(&pg_url(), "kill").await;
    let mut a = Herald::on_database(&db.url, &[]);
    let b = Herald::on_database(&db.url, &[]);
    let batches = 160;
    let targets = Arc::new(Mutex::new(vec![a.grpc_url(), b.grpc_url()]));
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let lanes = stream(targets.clone(), batches, acked.clone(), Instant::now() + Duration::from_secs(180));
    eventually(Duration::from_secs(120), async || (acked.lock().unwrap().len() as u64 >= batches / 3).then_some(()))
        .await;
    a.kill9();
    let at_kill = acked.lock().unwrap().len() as u64;
    assert!(at_kill < batches, "the kill happened mid-stream");
    targets.lock().unwrap().retain(|u| *u != a.grpc_url());
    for l in lanes {
        l.await.expect("lane");
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len() as u64, batches, "every batch was delivered in the end");
    let lost = missing(&db.url, &acked).await;
    assert!(lost.is_empty(), "{} acknowledged spans lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    assert_eq!(
        db.count("SELECT count(*) FROM entities").await,
        (batches * PER_REQUEST) as i64,
        "no duplicates from retries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_second_database_stop_mid_stream_loses_no_acknowledged_span() {
    let cluster = Cluster::start();
    let db = TestDb::create(&cluster.url("postgres"), "stop").await;
    let a = Herald::on_database(&db.url, &[]);
    let b = Herald::on_database(&db.url, &[]);
    let batches = 160;
    let targets = Arc::new(Mutex::new(vec![a.grpc_url(), b.grpc_url()]));
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let lanes = stream(targets, batches, acked.clone(), Instant::now() + Duration::from_secs(240));
    eventually(Duration::from_secs(120), async || (acked.lock().unwrap().len() as u64 >= batches / 3).then_some(()))
        .await;

    cluster.pg_ctl_stop();
    let at_stop = acked.lock().unwrap().len() as u64;
    assert!(at_stop < batches, "the stop happened mid-stream");
    tokio::time::sleep(Duration::from_secs(5)).await;
    for h in [&a, &b] {
        let (status, body) = h.get_text("/readyz").await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("database unreachable"), "{body}");
    }
    let during = acked.lock().unwrap().len() as u64;
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(acked.lock().unwrap().len() as u64, during, "nothing is acknowledged while the database is down");
    cluster.pg_ctl_start();

    for l in lanes {
        l.await.expect("lane");
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len() as u64, batches, "every batch was delivered after the database returned");
    let lost = missing(&db.url, &acked).await;
    assert!(lost.is_empty(), "{} acknowledged spans lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    assert_eq!(db.count("SELECT count(*) FROM entities").await, (batches * PER_REQUEST) as i64);
}
