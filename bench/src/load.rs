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

/// Now, in ns since the epoch.
pub fn now_ns() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The 1, 5 and 15 minute load averages, as `uptime` prints them (the benchmarks report them).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

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

/// A herald running in-process on loopback (its own listeners, the given store).
pub struct InProcessHerald {
    pub grpc: String,
    shutdown: tokio_util::sync::CancellationToken,
    server: tokio::task::JoinHandle<Result<(), herald::server::RunError>>,
}

impl InProcessHerald {
    pub async fn start(db_url: &str, extra_flags: &[&str]) -> InProcessHerald {
        let mut flags = vec!["herald"];
        flags.extend(herald::config::LOOPBACK_FLAGS);
        flags.extend(["--db-url", db_url]);
        flags.extend_from_slice(extra_flags);
        let args = herald::config::Cli::try_parse_from(flags).expect("static herald flags").serve;
        let listeners = herald::server::Listeners::bind(&args).await.expect("loopback ports");
        let grpc = format!("http://{}", listeners.grpc.local_addr().expect("bound"));
        let shutdown = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(herald::server::run(args, listeners, shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(500)).await;
        InProcessHerald { grpc, shutdown, server }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.server.await;
    }
}

/// `clients` concurrent exporters, each taking the next of `requests` and waiting for its
/// ack, until `deadline` or the requests run out. `export` sends one request on a client made
/// by `connect`; `items` counts what a request carries.
pub async fn drive<C, R>(
    clients: usize,
    requests: Arc<Vec<R>>,
    deadline: Instant,
    connect: impl Fn() -> C,
    export: impl Fn(C, R) -> std::pin::Pin<Box<dyn std::future::Future<Output = (C, bool)> + Send>>
        + Send
        + Sync
        + Clone
        + 'static,
    items: fn(&R) -> usize,
) -> HeraldRun
where
    C: Send + 'static,
    R: Clone + Send + Sync + 'static,
{
    drive_at(None, clients, requests, deadline, connect, export, items).await
}

/// [`drive`], the exporters together sending at most `rate` items per second when given (each
/// request waits for its turn before it is sent; the wait is not part of its ack latency).
pub async fn drive_at<C, R>(
    rate: Option<f64>,
    clients: usize,
    requests: Arc<Vec<R>>,
    deadline: Instant,
    connect: impl Fn() -> C,
    export: impl Fn(C, R) -> std::pin::Pin<Box<dyn std::future::Future<Output = (C, bool)> + Send>>
        + Send
        + Sync
        + Clone
        + 'static,
    items: fn(&R) -> usize,
) -> HeraldRun
where
    C: Send + 'static,
    R: Clone + Send + Sync + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let scheduled = Arc::new(AtomicUsize::new(0));
    let t0 = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (requests, next, export, scheduled) = (requests.clone(), next.clone(), export.clone(), scheduled.clone());
        let mut client = Some(connect());
        tasks.push(tokio::spawn(async move {
            let (mut acked, mut refused, mut latencies) = (0usize, 0usize, Vec::new());
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(req) = requests.get(i) else { break };
                if let Some(rate) = rate {
                    let due = scheduled.fetch_add(items(req), Ordering::Relaxed) as f64 / rate;
                    tokio::time::sleep_until(t0 + Duration::from_secs_f64(due)).await;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                let t = Instant::now();
                let (c, ok) = export(client.take().expect("client"), req.clone()).await;
                client = Some(c);
                if ok {
                    latencies.push(t.elapsed());
                    acked += items(req);
                } else {
                    refused += 1;
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
    run.latencies.sort();
    run
}

/// Trace exporters against `grpc` (lazily connected channels).
pub fn trace_client(grpc: &str) -> TraceServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(grpc.to_owned()).expect("loopback URL").connect_lazy();
    TraceServiceClient::new(channel)
}

/// Sends one trace export; `true` when acknowledged.
pub fn export_traces(
    mut client: TraceServiceClient<tonic::transport::Channel>,
    request: ExportTraceServiceRequest,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = (TraceServiceClient<tonic::transport::Channel>, bool)> + Send>>
{
    Box::pin(async move {
        let ok = client.export(request).await.is_ok();
        (client, ok)
    })
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
    let herald = InProcessHerald::start(db_url, extra_flags).await;
    let grpc = herald.grpc.clone();
    let run = drive(clients, requests, Instant::now() + limit, || trace_client(&grpc), export_traces, span_count).await;
    herald.stop().await;
    run
}

/// A creation of the synthetic DAGs (lineage, flags): instrument BENCH, span IDs from `seq`,
/// starting at `start_ns` and lasting 1 µs.
pub fn created(id: String, stage: &str, parents: Vec<String>, seq: i64, start_ns: i64) -> WriteRecord {
    WriteRecord::Created(helix_model::EntityCreated(helix_model::EntitySpan {
        entity_id: id,
        instrument_id: "BENCH".into(),
        name: stage.into(),
        trace_id: format!("{seq:032x}"),
        span_id: format!("{seq:016x}"),
        start_ns,
        end_ns: start_ns + 1000,
        parent_ids: parents,
        metadata: helix_model::Metadata::new(),
        service_name: None,
        process_name: None,
        status: helix_model::Status::Ok,
        events: vec![],
    }))
}

/// The herald's API router over `store` (auth off, default limits), driven in-process with
/// `tower::ServiceExt::oneshot`: the handlers' own work, without sockets.
pub fn api_app(store: Arc<dyn helix_store::Store>) -> axum::Router {
    let metrics = Arc::new(herald::metrics::Metrics::new());
    herald::api::app(herald::api::ApiState {
        store,
        auth: Arc::new(herald::auth::Auth::off(metrics.clone())),
        metrics,
        spans_stored: true,
        loki_scan_lines: herald::api::loki::DEFAULT_SCAN_LINES,
        prov_namespace: herald::export::DEFAULT_NAMESPACE.into(),
        platform: herald::canary::PlatformStatus::disabled(),
    })
}

/// GET `uri` through `app`, reading the whole body; panics unless 200.
pub async fn get_bytes(app: &axum::Router, uri: &str) -> axum::body::Bytes {
    use tower::ServiceExt;
    let request = axum::http::Request::builder().uri(uri).body(axum::body::Body::empty()).expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible router");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
    assert!(status.is_success(), "{uri}: {status} {}", String::from_utf8_lossy(&body));
    body
}

/// Percent-encode text for a URL path segment or query value: every byte but the unreserved
/// ones (RFC 3986).
pub fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, URL_COMPONENT).to_string()
}

const URL_COMPONENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
