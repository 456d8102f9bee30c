//! `helix-bench logs`: the log store's figures for docs/benchmarks.md.
//! Ingest: durable log ingest through a real herald (SQLite, loopback gRPC) on its own, spans
//! on their own, and both at once (the same herald taking telescope spans and log records).
//! Reads: with `--lines` records stored (5 M in docs/benchmarks.md), the logs of one trace,
//! a text search over 24 h (a rare word, a common word) and a service + text search.

use std::sync::Arc;
use std::time::{Duration, Instant};

use helix_model::ids::to_hex;
use helix_store::{LogFilter, LogOrder, PageRequest, SqliteStore, Store, WriteBatch, WriteRecord};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

use crate::load::{
    drive, drive_at, export_traces, load_average, now_ns, percentile, rate, telescope_requests, trace_client,
    HeraldRun, InProcessHerald,
};

const PROCESSES: usize = 24;
/// Lines per trace: a tracked step logs a few.
const LINES_PER_TRACE: usize = 5;
/// Lines per export: the OpenTelemetry SDKs' batch log processor (which `clients/python` uses)
/// sends up to 512 per export when lines come faster than its 1 s schedule.
const LINES_PER_REQUEST: usize = 500;
/// The word only one trace's lines carry (the rare search).
const RARE: &str = "checksum-mismatch";

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_owned())) }),
        ..Default::default()
    }
}

/// Pipeline-like log lines: per process a resource; per trace a few lines with the client's
/// correlation attributes; bodies from templates with varying numbers and IDs.
struct LogTraffic {
    rng: rand::rngs::StdRng,
    n: u64,
    t0: u64,
}

impl LogTraffic {
    fn new(seed: u64, t0: u64) -> Self {
        LogTraffic { rng: rand::rngs::StdRng::seed_from_u64(seed), n: 0, t0 }
    }

    fn line(&mut self, trace: &[u8; 16], span: &[u8; 8], entity: &str, process: usize) -> LogRecord {
        self.n += 1;
        let r: f64 = self.rng.random();
        let (severity, text) = match self.rng.random_range(0..6) {
            0 => (9, format!("read block {entity} from beam {} in {:.1} ms", process % 8, r * 40.0)),
            1 => (5, format!("dedispersion trial {} of 2048 at DM {:.2} pc/cm3", self.n % 2048, r * 2000.0)),
            2 => (9, format!("candidate {entity}: S/N {:.2}, width {:.2} ms", 6.0 + r * 30.0, r * 10.0)),
            3 => (13, format!("disk {}% full on /data/beam-{}", 80 + (self.n % 20), process % 8)),
            4 => (9, format!("wrote /archive/{entity}.h5 ({} MB)", 50 + self.n % 400)),
            _ => (17, format!("retrying upload of {entity}: connection reset after {} bytes", self.n * 37 % 100_000)),
        };
        LogRecord {
            time_unix_nano: self.t0 + self.n * 10_000,
            observed_time_unix_nano: self.t0 + self.n * 10_000 + 500,
            severity_number: severity,
            severity_text: helix_model::severity_name(severity).to_owned(),
            body: Some(AnyValue { value: Some(any_value::Value::StringValue(text)) }),
            attributes: vec![
                kv("helix_entity_id", entity),
                kv("helix_source", "pipeline/search.py#L120"),
                kv("otel_trace_id", &to_hex(trace)),
                kv("otel_span_id", &to_hex(span)),
            ],
            trace_id: trace.to_vec(),
            span_id: span.to_vec(),
            ..Default::default()
        }
    }

    /// One export of a process: `traces` traces of `LINES_PER_TRACE` lines.
    fn request(&mut self, traces: usize, rare_trace: bool) -> ExportLogsServiceRequest {
        let process = self.rng.random_range(0..PROCESSES);
        let mut records = Vec::with_capacity(traces * LINES_PER_TRACE);
        for t in 0..traces {
            let trace: [u8; 16] = self.rng.random();
            let span: [u8; 8] = self.rng.random();
            let entity = format!("cand-{process:02}-{:08}", self.n);
            for _ in 0..LINES_PER_TRACE {
                let mut line = self.line(&trace, &span, &entity, process);
                if rare_trace && t == 0 {
                    line.body = Some(AnyValue {
                        value: Some(any_value::Value::StringValue(format!("{RARE} in {entity}: reprocessing"))),
                    });
                }
                records.push(line);
            }
        }
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", &format!("beam-search-{:02}", process % 8)),
                        kv("helix.instrument.id", "BENCH"),
                        kv("helix.process.name", &format!("BENCH/search/p{process:02}")),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
                ..Default::default()
            }],
        }
    }
}

fn log_client(grpc: &str) -> LogsServiceClient<Channel> {
    LogsServiceClient::new(
        tonic::transport::Endpoint::from_shared(grpc.to_owned()).expect("loopback URL").connect_lazy(),
    )
}

fn export_logs(
    mut client: LogsServiceClient<Channel>,
    request: ExportLogsServiceRequest,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = (LogsServiceClient<Channel>, bool)> + Send>> {
    Box::pin(async move {
        let ok = client.export(request).await.is_ok();
        (client, ok)
    })
}

/// Now in ns, as the unsigned OTLP timestamps want it.
fn now_u64() -> u64 {
    u64::try_from(now_ns()).unwrap_or_default()
}

fn line(name: &str, run: &HeraldRun, what: &str) -> String {
    format!(
        "| {name} | {:.0} {what}/s | {} acked in {:.1} s | p50 {:.0} ms, p99 {:.0} ms | {} |",
        rate(run.acked_spans, run.elapsed),
        run.acked_spans,
        run.elapsed.as_secs_f64(),
        percentile(&run.latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&run.latencies, 0.99).as_secs_f64() * 1e3,
        run.refused_requests
    )
}

/// One path of the ingest benchmark (`--paths`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IngestPath {
    /// Logs alone.
    Logs,
    /// Spans alone.
    Spans,
    /// Logs and spans at once, both at full speed.
    Both,
    /// Logs at full speed beside spans at `--span-rate`.
    Paced,
}

pub async fn ingest(seconds: u64, log_clients: usize, span_clients: usize, span_rate: f64, paths: &[IngestPath]) {
    let limit = Duration::from_secs(seconds);
    let wants = |p: IngestPath| paths.contains(&p);
    let mut traffic = LogTraffic::new(7, now_u64() - 3_600_000_000_000);
    // More lines (spans) than any path takes in `seconds`, made only when a path sends them.
    let (needs_logs, needs_spans) =
        (paths.iter().any(|p| *p != IngestPath::Spans), paths.iter().any(|p| *p != IngestPath::Logs));
    let requests = if needs_logs { 150_000 * seconds as usize / LINES_PER_REQUEST } else { 0 };
    let logs: Arc<Vec<ExportLogsServiceRequest>> =
        Arc::new((0..requests).map(|_| traffic.request(LINES_PER_REQUEST / LINES_PER_TRACE, false)).collect());
    let spans = Arc::new(if needs_spans { telescope_requests(80_000 * seconds as usize, 8) } else { Vec::new() });
    println!("Load average before: {}\n", load_average());

    // One path into a fresh herald: logs at full speed when `with_logs`; spans when
    // `span_rate` is given, at full speed (`Some(None)`) or at a steady rate (a pipeline's
    // traffic, where log lines come with the traced steps).
    let phase = |with_logs: bool, span_rate: Option<Option<f64>>| {
        let (logs, spans) = (logs.clone(), spans.clone());
        async move {
            let dir = tempfile::tempdir().unwrap();
            let h = InProcessHerald::start(&format!("sqlite://{}", dir.path().join("herald.db").display()), &[]).await;
            let (g1, g2) = (h.grpc.clone(), h.grpc.clone());
            let deadline = Instant::now() + limit;
            let runs = tokio::join!(
                async move {
                    let run = drive(
                        log_clients,
                        logs,
                        deadline,
                        move || log_client(&g1),
                        export_logs,
                        helix_model::log_count,
                    );
                    if with_logs {
                        Some(run.await)
                    } else {
                        None
                    }
                },
                async move {
                    let rate = span_rate?;
                    let count = helix_model::span_count;
                    Some(
                        drive_at(rate, span_clients, spans, deadline, move || trace_client(&g2), export_traces, count)
                            .await,
                    )
                },
            );
            h.stop().await;
            runs
        }
    };
    let logs_alone = if wants(IngestPath::Logs) { phase(true, None).await.0 } else { None };
    let spans_alone = if wants(IngestPath::Spans) { phase(false, Some(None)).await.1 } else { None };
    // Both floods at once (how the one writer splits between them), then spans paced.
    let pair = |(l, s): (Option<HeraldRun>, Option<HeraldRun>)| l.zip(s);
    let unpaced = if wants(IngestPath::Both) { pair(phase(true, Some(None)).await) } else { None };
    let paced = if wants(IngestPath::Paced) { pair(phase(true, Some(Some(span_rate))).await) } else { None };

    println!("### Durable log ingest (SQLite)\n");
    println!(
        "{log_clients} log exporters ({LINES_PER_REQUEST} records/request, {LINES_PER_TRACE} lines per trace, trace/span IDs and the \
         client's correlation attributes) and {span_clients} trace exporters (telescope mix) on loopback gRPC, \
         {seconds} s per path, every acknowledged record committed (`synchronous=FULL`, spans stored).\n"
    );
    println!("| path | rate | acknowledged | ack latency | refused (retryable) |\n|---|---:|---:|---|---:|");
    if let Some(run) = &logs_alone {
        println!("{}", line("logs alone", run, "records"));
    }
    if let Some(run) = &spans_alone {
        println!("{}", line("spans alone", run, "spans"));
    }
    if let Some((l, s)) = &unpaced {
        println!("{}", line("both at once: logs", l, "records"));
        println!("{}", line("both at once: spans", s, "spans"));
    }
    if let Some((l, s)) = &paced {
        println!("{}", line(&format!("spans paced at {span_rate:.0}/s: logs"), l, "records"));
        println!("{}", line(&format!("spans paced at {span_rate:.0}/s: spans"), s, "spans"));
    }
    if let (Some(alone), Some(spans_alone), Some((l, s))) = (&logs_alone, &spans_alone, &unpaced) {
        println!(
            "\nWith spans flowing, logs reach {:.2} of their rate alone; spans {:.2} of theirs.",
            rate(l.acked_spans, l.elapsed) / rate(alone.acked_spans, alone.elapsed),
            rate(s.acked_spans, s.elapsed) / rate(spans_alone.acked_spans, spans_alone.elapsed)
        );
    }
    println!("\nLoad average after: {}", load_average());
}

/// The filter of the i-th query of a case.
type FilterOf = Box<dyn Fn(usize) -> LogFilter>;

fn p95_ms(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    (percentile(&samples, 0.5).as_secs_f64() * 1e3, percentile(&samples, 0.95).as_secs_f64() * 1e3)
}

pub async fn reads(lines: usize, queries: usize, db: Option<std::path::PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let path = db.unwrap_or_else(|| dir.path().join("logs.db"));
    let store = SqliteStore::open(&path, Default::default()).expect("store");
    // Spread over the last 24 h, oldest first, as ingest writes them.
    let t0 = now_u64() - 86_000_000_000_000;
    let mut traffic = LogTraffic::new(11, t0);
    let per_request = 400;
    let requests = lines / per_request;
    let step = 86_000_000_000_000 / lines.max(1) as u64;
    let mut sample_traces: Vec<String> = Vec::new();
    let started = Instant::now();
    let mut written = 0usize;
    let mut batch = WriteBatch::default();
    for i in 0..requests {
        let mut req = traffic.request(per_request / LINES_PER_TRACE, i == requests / 2);
        for rl in &mut req.resource_logs {
            for sl in &mut rl.scope_logs {
                for (k, rec) in sl.log_records.iter_mut().enumerate() {
                    let at = t0 + ((i * per_request + k) as u64) * step;
                    rec.time_unix_nano = at;
                    rec.observed_time_unix_nano = at + 500;
                }
            }
        }
        let records = helix_model::interpret::interpret_logs(&req);
        if i % (requests / 50).max(1) == 0 {
            sample_traces.extend(records.first().and_then(|l| l.trace_id.clone()));
        }
        written += records.len();
        batch.records.extend(records.into_iter().map(WriteRecord::Log));
        if batch.records.len() >= 20_000 {
            store.write(&std::mem::take(&mut batch)).await.expect("write");
        }
        if i % (requests / 10).max(1) == 0 && i > 0 {
            eprintln!("loaded {written} lines ({:.0}/s)", rate(written, started.elapsed()));
        }
    }
    store.write(&batch).await.expect("write");
    let load_time = started.elapsed();
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!("### Log reads at {} lines (SQLite)\n", written);
    println!(
        "Loaded through `Store::write` in 20 000-record transactions: {:.0} records/s, {:.0} bytes per line on disk \
         (table, indexes and search filters). Load average: {}. {queries} queries each.\n",
        rate(written, load_time),
        bytes as f64 / written as f64,
        load_average()
    );
    let day = LogFilter { from_ns: Some(now_ns() - 86_400_000_000_000), order: LogOrder::Desc, ..Default::default() };
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let cases: Vec<(&str, FilterOf)> = vec![
        ("logs of one trace (5 lines), oldest first", {
            let traces = sample_traces.clone();
            Box::new(move |i| LogFilter { trace_id: Some(traces[i % traces.len()].clone()), ..Default::default() })
        }),
        ("`q=` a rare word over 24 h, newest first, 100 lines", {
            let day = day.clone();
            Box::new(move |_| LogFilter { text: Some(RARE.to_owned()), ..day.clone() })
        }),
        ("`q=` a common word (`retrying upload`) over 24 h, 100 lines", {
            let day = day.clone();
            Box::new(move |_| LogFilter { text: Some("retrying upload".to_owned()), ..day.clone() })
        }),
        ("service + severity ≥ WARN + `q=full` over 24 h, 100 lines", {
            let day = day.clone();
            Box::new(move |i| LogFilter {
                service_name: Some(format!("beam-search-{:02}", i % 8)),
                min_severity: Some(13),
                text: Some("full".to_owned()),
                ..day.clone()
            })
        }),
        ("newest 100 lines of one process (tail)", {
            let day = day.clone();
            Box::new(move |i| LogFilter {
                process_name: Some(format!("BENCH/search/p{:02}", i % PROCESSES)),
                ..day.clone()
            })
        }),
    ];
    println!("| query | median | p95 | lines returned (first query) |\n|---|---:|---:|---:|");
    for (name, make) in &cases {
        let mut samples = Vec::with_capacity(queries);
        let mut first = None;
        for i in 0..queries {
            let f = make(i + rng.random_range(0..3));
            let t = Instant::now();
            let page = store.log_search(&f, &PageRequest::first(100)).await.expect("query");
            samples.push(t.elapsed());
            first.get_or_insert(page.items.len());
        }
        let (p50, p95) = p95_ms(samples);
        println!("| {name} | {p50:.2} ms | {p95:.2} ms | {} |", first.unwrap_or(0));
    }
}
