//! Durable acknowledgement: what the herald acknowledged survives SIGKILL, and a saturated
//! writer answers "retry later" (which the SDK's retries turn into complete delivery).

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use helix_model::builders::{pipeline_resource, traces, SpanBuilder};
use helix_store::{SqliteStore, Store};
use support::*;

const TOTAL: u64 = 50_000;
const PER_REQUEST: u64 = 250;

fn request(batch: u64) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    let spans = (0..PER_REQUEST)
        .map(|i| {
            let n = batch * PER_REQUEST + i;
            let b = SpanBuilder::creation("search", &format!("e-{n}"), n);
            if n > 0 { b.parents(&format!("e-{}", n - 1)) } else { b }.build()
        })
        .collect();
    traces(pipeline_resource("svc", "CHIME"), spans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_no_acknowledged_span() {
    let herald = Herald::start();
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let batches = TOTAL / PER_REQUEST;
    let url = herald.grpc_url();
    // Four concurrent streams, each recording the batches the herald acknowledged.
    let mut senders = Vec::new();
    for lane in 0..4u64 {
        let acked = acked.clone();
        let url = url.clone();
        senders.push(tokio::spawn(async move {
            let Ok(mut client) =
                opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(
                    url,
                )
                .await
            else {
                return;
            };
            for batch in (lane..batches).step_by(4) {
                match client.export(request(batch)).await {
                    Ok(_) => acked.lock().unwrap().push(batch),
                    Err(_) => return, // the herald died: everything not acked is the client's to resend
                }
            }
        }));
    }
    // Kill once a good part of the stream is acknowledged.
    let mut herald = herald;
    eventually(Duration::from_secs(120), async || (acked.lock().unwrap().len() as u64 >= batches / 3).then_some(()))
        .await;
    herald.kill9();
    for s in senders {
        let _ = s.await;
    }
    let acked: Vec<u64> = acked.lock().unwrap().clone();
    assert!((acked.len() as u64) < batches, "the kill happened mid-stream");

    // Reopen the same database (as the restarted herald would) and check every acked span.
    let store = SqliteStore::open(&herald.db_path(), Default::default()).expect("reopen after SIGKILL");
    let mut missing = Vec::new();
    let mut spans_missing = Vec::new();
    let ids: Vec<String> =
        acked.iter().flat_map(|b| (0..PER_REQUEST).map(move |i| format!("e-{}", b * PER_REQUEST + i))).collect();
    for chunk in ids.chunks(500) {
        let found = store.span_refs(chunk).await.expect("query");
        missing.extend(chunk.iter().filter(|id| !found.contains_key(*id)).cloned());
        // The span store commits with the entity rows: every acknowledged span is there too.
        for (id, at) in &found {
            let trace = store.trace(&at.trace_id, 1_000).await.expect("trace query");
            if !trace.is_some_and(|t| t.spans.iter().any(|s| s.span_id == at.span_id)) {
                spans_missing.push(id.clone());
            }
        }
    }
    assert!(
        spans_missing.is_empty(),
        "{} acknowledged spans missing from the span store after SIGKILL, e.g. {:?}",
        spans_missing.len(),
        &spans_missing[..spans_missing.len().min(5)]
    );
    assert!(
        missing.is_empty(),
        "{} acknowledged spans lost after SIGKILL, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(acked.len() as u64 >= batches / 3, "the kill came after a third of the stream was acknowledged");

    // And a herald restarted on that database serves them.
    let herald = herald.respawn();
    let sample = &ids[ids.len() / 2];
    herald.get_ok(&format!("/api/v1/entity/{sample}")).await;
}

fn log_request(batch: u64) -> opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    let records = (0..PER_REQUEST)
        .map(|i| {
            let n = batch * PER_REQUEST + i;
            LogRecord {
                time_unix_nano: 1_700_000_000_000_000_000 + n,
                severity_number: 9,
                body: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("line-{n:06}"))) }),
                ..Default::default()
            }
        })
        .collect();
    opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_no_acknowledged_log_record() {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    let herald = Herald::start();
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let batches = TOTAL / PER_REQUEST;
    let mut senders = Vec::new();
    for lane in 0..4u64 {
        let (acked, url) = (acked.clone(), herald.grpc_url());
        senders.push(tokio::spawn(async move {
            let Ok(mut client) = LogsServiceClient::connect(url).await else { return };
            for batch in (lane..batches).step_by(4) {
                match client.export(log_request(batch)).await {
                    Ok(_) => acked.lock().unwrap().push(batch),
                    Err(_) => return,
                }
            }
        }));
    }
    let mut herald = herald;
    eventually(Duration::from_secs(120), async || (acked.lock().unwrap().len() as u64 >= batches / 3).then_some(()))
        .await;
    herald.kill9();
    for s in senders {
        let _ = s.await;
    }
    let acked: HashSet<u64> = acked.lock().unwrap().iter().copied().collect();
    assert!((acked.len() as u64) < batches, "the kill happened mid-stream");
    let store = SqliteStore::open(&herald.db_path(), Default::default()).expect("reopen after SIGKILL");
    let mut stored = HashSet::new();
    let mut cursor = None;
    loop {
        let page = store
            .log_search(&helix_store::LogFilter::default(), &helix_store::PageRequest { limit: 5_000, cursor })
            .await
            .expect("log query");
        stored.extend(page.items.into_iter().map(|l| l.body));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let missing: Vec<String> = acked
        .iter()
        .flat_map(|b| (0..PER_REQUEST).map(move |i| format!("line-{:06}", b * PER_REQUEST + i)))
        .filter(|body| !stored.contains(body))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged log records lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_writer_answers_retryable_errors_and_sdk_retries_deliver_everything() {
    // A tiny queue so that concurrent exporters overrun it.
    let herald = Herald::start_with(HeraldOptions {
        args: vec!["--write-queue-records".into(), "64".into(), "--batch-max-records".into(), "64".into()],
        ..Default::default()
    });
    let pipelines: Vec<Pipeline> = (0..6)
        .map(|i| {
            Pipeline::new(&herald, if i % 2 == 0 { Transport::Grpc } else { Transport::HttpProtobuf }, "svc", "CHIME")
        })
        .collect();
    let mut want = HashSet::new();
    for round in 0..20 {
        for (p, pipeline) in pipelines.iter().enumerate() {
            for i in 0..50 {
                let id = format!("s-{p}-{round}-{i}");
                pipeline.create("ingest", &id, &[]);
                want.insert(id);
            }
        }
        let flushes: Vec<_> = pipelines.iter().map(|p| p.flush()).collect();
        futures_util::future::join_all(flushes).await;
    }
    let refused = herald.metric("helix_exports_refused_total", &[("reason", "overloaded")]).await;
    assert!(refused > 0.0, "the queue never filled: the test did not exercise backpressure");

    let store = SqliteStore::open(&herald.db_path(), Default::default()).unwrap();
    let ids: Vec<String> = want.iter().cloned().collect();
    let mut found = 0;
    for chunk in ids.chunks(500) {
        found += store.span_refs(chunk).await.unwrap().len();
    }
    assert_eq!(found, want.len(), "all spans arrived after retries ({refused} exports were refused)");
    // Memory stays bounded: the queue gauge never exceeds its configured size.
    assert!(herald.metric("helix_write_queue_records", &[]).await <= 64.0);
}
