//! What every ingest benchmark shares: the pre-generated telescope traffic, its records, an
//! in-process herald on loopback driven by concurrent gRPC exporters, and the statistics.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use helix_model::interpret::{interpret_traces, SpanClass};
use helix_model::span_count;
use helix_store::WriteRecord;
use herald::simulate::Telescope;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

pub fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// At least `spans` spans of telescope traffic, `ticks_per_request` ticks merged per request
/// as a batching exporter would. Generated up front so it does not compete with the herald.
pub fn telescope_requests(spans: usize, ticks_per_request: usize) -> Vec<ExportTraceServiceRequest> {
    let mut telescope = Telescope::new(8, 11);
    let mut requests = Vec::new();
    let mut total = 0;
    while total < spans {
        let mut merged = ExportTraceServiceRequest::default();
        for _ in 0..ticks_per_request {
            for r in telescope.tick() {
                total += span_count(&r);
                merged.resource_spans.extend(r.resource_spans);
            }
        }
        requests.push(merged);
    }
    requests
}

/// The rows a request makes, for the paths that write without a herald.
pub fn records_of(request: &ExportTraceServiceRequest) -> Vec<WriteRecord> {
    interpret_traces(request)
        .spans
        .into_iter()
        .filter_map(|s| match s.class {
            SpanClass::Creation(c) => Some(WriteRecord::Created(c)),
            SpanClass::Operation(o) => Some(WriteRecord::Operation(o)),
            _ => None,
        })
        .collect()
}

/// What the exporters saw of one herald run.
pub struct HeraldRun {
    pub acked_spans: usize,
    pub refused_requests: usize,
    /// Per acknowledged request, sorted.
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

/// Start a herald in-process on loopback with `db_url`, send `requests` from `clients`
/// concurrent gRPC exporters (each waiting for its ack) for at most `limit`, then stop it.
pub async fn through_herald(
    db_url: &str,
    requests: Arc<Vec<ExportTraceServiceRequest>>,
    clients: usize,
    limit: Duration,
    extra_flags: &[&str],
) -> HeraldRun {
    let mut flags = vec![
        "herald",
        "--otlp-grpc-addr",
        "127.0.0.1:0",
        "--otlp-http-addr",
        "127.0.0.1:0",
        "--api-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
        "--db-url",
        db_url,
    ];
    flags.extend_from_slice(extra_flags);
    let args = herald::config::Cli::try_parse_from(flags).expect("static herald flags").serve;
    let listeners = herald::server::Listeners::bind(&args).await.expect("loopback ports");
    let grpc = format!("http://{}", listeners.grpc.local_addr().expect("bound"));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(herald::server::run(args, listeners, shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + limit;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (requests, next, grpc) = (requests.clone(), next.clone(), grpc.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = TraceServiceClient::connect(grpc).await.expect("connect to the herald");
            let (mut acked, mut refused, mut latencies) = (0usize, 0usize, Vec::new());
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(req) = requests.get(i) else { break };
                let t = Instant::now();
                match client.export(req.clone()).await {
                    Ok(_) => {
                        latencies.push(t.elapsed());
                        acked += span_count(req);
                    }
                    Err(_) => refused += 1,
                }
            }
            (acked, refused, latencies)
        }));
    }
    let started = Instant::now();
    let mut run = HeraldRun { acked_spans: 0, refused_requests: 0, latencies: Vec::new(), elapsed: Duration::ZERO };
    for t in tasks {
        let (a, r, l) = t.await.expect("exporter task");
        run.acked_spans += a;
        run.refused_requests += r;
        run.latencies.extend(l);
    }
    run.elapsed = started.elapsed();
    shutdown.cancel();
    let _ = server.await;
    run.latencies.sort();
    run
}
