//! The simulated telescope: telescope-shaped OTLP traffic for `herald demo` and the
//! benchmarks. Beam processes turn raw blocks into candidates, a clustering process turns
//! candidates of several beams into events, an archiver operates on events (sometimes
//! before they exist); errors, classification events and passthrough children included.
//!
//! Every span has its own interval: a tick's work is laid out on a time axis that ends a few
//! seconds before the wall clock (spans are exported after they end), children nest inside
//! their parent, and an entity is only worked on after its parents ended. [`Telescope::demo`]
//! tells the whole story — child spans under creations and operations, plain infrastructure
//! traces, and the log lines each span would write, correlated as the client's logging
//! integration does. [`Telescope::new`] keeps the benchmarks' mix: the same entity spans and
//! timing, two child spans per block, no infrastructure traces and no logs.

use helix_model::{log_count, span_count, ERROR_EVENT};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use helix_model::ids::to_hex;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, ResourceSpans, ScopeSpans, Span, Status};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

pub const INSTRUMENT: &str = "SIMTEL";

const MS: u64 = 1_000_000;
/// How far behind the wall clock a tick's work is laid out, so that (with up to 8 beams)
/// every span has ended by the time it is exported, as with a batching exporter.
const LAG_NS: u64 = 5_000 * MS;
/// A pulsar in the field of view: a cluster of candidates at one dispersion measure.
const PULSAR_DM: f64 = 56.77;

pub(crate) fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}
fn s(v: impl Into<String>) -> Value {
    Value::StringValue(v.into())
}
fn round_to(v: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (v * scale).round() / scale
}

/// What one simulated process exports in one tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessExport {
    pub traces: ExportTraceServiceRequest,
    /// Empty (no resource) when the process logged nothing.
    pub logs: ExportLogsServiceRequest,
}

/// A candidate waiting to be clustered.
struct Candidate {
    id: String,
    beam: usize,
    end_ns: u64,
    snr: f64,
    dm: f64,
}

/// Generates the traffic of one telescope, one tick at a time, deterministically from a seed.
pub struct Telescope {
    rng: SmallRng,
    beams: usize,
    tick: u64,
    events: u64,
    /// Child spans beyond the benchmark mix, infrastructure traces and logs.
    story: bool,
    /// Candidates not yet clustered.
    pending: Vec<Candidate>,
    /// Events created so far, for operations: (id, end of the creation span).
    recent_events: Vec<(String, u64)>,
}

/// Log severities the simulated pipelines use, named as Python's logging names them.
#[derive(Debug, Clone, Copy)]
enum Level {
    Debug,
    Info,
    Warning,
    Error,
}

impl Level {
    fn otlp(self) -> (SeverityNumber, &'static str) {
        match self {
            Level::Debug => (SeverityNumber::Debug, "DEBUG"),
            Level::Info => (SeverityNumber::Info, "INFO"),
            Level::Warning => (SeverityNumber::Warn, "WARNING"),
            Level::Error => (SeverityNumber::Error, "ERROR"),
        }
    }
}

/// The spans and log records of one process in one tick.
struct Process {
    service: String,
    name: String,
    /// Logger name, sent as the log scope.
    logger: &'static str,
    story: bool,
    spans: Vec<Span>,
    logs: Vec<LogRecord>,
}

impl Process {
    fn new(service: String, name: String, logger: &'static str, story: bool) -> Self {
        Process { service, name, logger, story, spans: Vec::new(), logs: Vec::new() }
    }

    /// A log line written while `span` is active, with the fields the client's logging
    /// integration adds (entity from the span or its `helix.log.entity_id`, `""` when none).
    fn log(&mut self, span: &Span, at_ns: u64, level: Level, source: &str, body: String) {
        if !self.story {
            return;
        }
        let (number, text) = level.otlp();
        self.logs.push(LogRecord {
            time_unix_nano: at_ns,
            observed_time_unix_nano: at_ns,
            severity_number: number as i32,
            severity_text: text.to_owned(),
            body: Some(AnyValue { value: Some(s(body)) }),
            attributes: vec![
                kv("helix_entity_id", s(entity_of(span).unwrap_or_default())),
                kv("helix_instrument_id", s(INSTRUMENT)),
                kv("helix_process_name", s(self.name.clone())),
                kv("otel_trace_id", s(to_hex(&span.trace_id))),
                kv("otel_span_id", s(to_hex(&span.span_id))),
                kv("helix_source", s(source)),
            ],
            flags: 1,
            trace_id: span.trace_id.clone(),
            span_id: span.span_id.clone(),
            ..Default::default()
        });
    }

    fn finish(self) -> ProcessExport {
        let resource = Resource {
            attributes: vec![
                kv("service.name", s(self.service.clone())),
                kv("helix.instrument.id", s(INSTRUMENT)),
                kv("helix.process.name", s(self.name.clone())),
            ],
            ..Default::default()
        };
        let logs = if self.logs.is_empty() {
            ExportLogsServiceRequest::default()
        } else {
            ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: Some(resource.clone()),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(InstrumentationScope { name: self.logger.to_owned(), ..Default::default() }),
                        log_records: self.logs,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }
        };
        let traces = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource),
                scope_spans: vec![ScopeSpans { spans: self.spans, ..Default::default() }],
                ..Default::default()
            }],
        };
        ProcessExport { traces, logs }
    }
}

impl Telescope {
    /// The benchmark mix: entity spans and two child spans per block, no logs.
    pub fn new(beams: usize, seed: u64) -> Self {
        Telescope {
            rng: SmallRng::seed_from_u64(seed),
            beams: beams.max(2),
            tick: 0,
            events: 0,
            story: false,
            pending: Vec::new(),
            recent_events: Vec::new(),
        }
    }

    /// The whole story, for `herald demo`: child spans under creations and operations,
    /// plain infrastructure traces now and then, and log lines inside the spans.
    pub fn demo(beams: usize, seed: u64) -> Self {
        Telescope { story: true, ..Telescope::new(beams, seed) }
    }

    /// How many processes each tick exports for (the length of [`Telescope::step`]).
    pub fn process_count(&self) -> usize {
        self.beams + if self.story { 3 } else { 2 }
    }

    fn ids(&mut self) -> (Vec<u8>, Vec<u8>) {
        let mut trace = vec![0u8; 16];
        self.rng.fill(&mut trace[..]);
        trace[0] |= 1;
        (trace, self.span_id())
    }

    fn span_id(&mut self) -> Vec<u8> {
        let mut span = vec![0u8; 8];
        self.rng.fill(&mut span[..]);
        span[0] |= 1;
        span
    }

    /// A random duration between `lo` and `hi` milliseconds, in nanoseconds.
    fn ms(&mut self, lo: f64, hi: f64) -> u64 {
        (self.rng.random_range(lo..hi) * MS as f64) as u64
    }

    /// A child span of `parent` (same trace, parent span ID set), tagged for log correlation
    /// with the parent's entity as the client's `child_span()` does.
    fn child(&mut self, parent: &Span, name: &str, start_ns: u64, duration_ns: u64) -> Span {
        let id = self.span_id();
        let mut span = plain_span(name, &parent.trace_id, &id, start_ns, start_ns + duration_ns);
        span.parent_span_id = parent.span_id.clone();
        if let Some(entity) = entity_of(parent) {
            span.attributes.push(kv("helix.log.entity_id", s(entity)));
        }
        span
    }

    /// One tick: one export request per simulated process (beams, clusterer, archiver, and
    /// in the demo the status API).
    pub fn tick(&mut self) -> Vec<ExportTraceServiceRequest> {
        self.step().into_iter().map(|p| p.traces).collect()
    }

    /// One tick laid out as if the wall clock read `now_ns`: benchmarks spread a day of
    /// traffic over its hours with it.
    pub fn tick_at(&mut self, now_ns: u64) -> Vec<ExportTraceServiceRequest> {
        self.step_at(now_ns).into_iter().map(|p| p.traces).collect()
    }

    /// One tick with logs: one export per simulated process.
    pub fn step(&mut self) -> Vec<ProcessExport> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_nanos() as u64;
        self.step_at(now)
    }

    fn step_at(&mut self, now_ns: u64) -> Vec<ProcessExport> {
        self.tick += 1;
        let base = now_ns.saturating_sub(LAG_NS);
        let mut out = Vec::with_capacity(self.process_count());
        for beam in 0..self.beams {
            out.push(self.beam(beam, base));
        }
        out.push(self.cluster(base));
        out.push(self.archive(base));
        if self.story {
            out.push(self.status_api(base));
        }
        out
    }

    /// Signal-to-noise, dispersion measure and width of a candidate: terrestrial RFI at zero
    /// DM, a pulsar at one DM, and a wide spread of everything else; an exponential S/N tail
    /// above the detection threshold with the odd bright one.
    fn candidate_properties(&mut self) -> (f64, f64, f64) {
        let rng = &mut self.rng;
        let kind: f64 = rng.random();
        let dm = if kind < 0.25 {
            rng.random_range(0.0..25.0)
        } else if kind < 0.45 {
            PULSAR_DM + rng.random_range(-0.8..0.8) + rng.random_range(-0.8..0.8)
        } else {
            100.0 + 1400.0 * rng.random::<f64>().powf(1.5)
        };
        let mut snr = 6.0 - 4.0 * (1.0 - rng.random::<f64>()).ln();
        if rng.random_bool(0.04) {
            snr *= 4.0;
        }
        let width_ms = 10f64.powf(rng.random_range(-1.0..1.3));
        (round_to(snr, 2), round_to(dm, 1), round_to(width_ms, 2))
    }

    fn beam(&mut self, beam: usize, base: u64) -> ProcessExport {
        let mut p = Process::new(
            format!("beam-search-{beam:02}"),
            format!("{INSTRUMENT}/search/beam-{beam:02}"),
            "simtel.search",
            self.story,
        );
        let block = format!("blk-{beam:02}-{:06}", self.tick);
        let (trace, block_span) = self.ids();
        let start = base + self.ms(0.0, 150.0);
        let n_samples = 1i64 << 20;
        let rfi_fraction = round_to(0.5 * self.rng.random::<f64>().powi(3), 3);
        let mut span = entity_span(
            "ingest",
            &block,
            &trace,
            &block_span,
            start,
            &[],
            vec![
                kv("beam", Value::IntValue(beam as i64)),
                kv("n_samples", Value::IntValue(n_samples)),
                kv("rfi_fraction", Value::DoubleValue(rfi_fraction)),
            ],
        );
        let at = start + self.ms(0.05, 0.5);
        p.log(&span, at, Level::Info, "simtel/ingest.py#L48", format!("ingesting {block}: {n_samples} samples"));

        // The block's sub-steps, one after another inside the ingest span.
        let steps: &[&str] = if self.story { &["filter", "transform", "write"] } else { &["filter", "transform"] };
        let mut cursor = start + self.ms(0.5, 3.0);
        for &step in steps {
            let duration = match step {
                "filter" => self.ms(20.0, 120.0),
                "transform" => self.ms(40.0, 250.0),
                _ => self.ms(10.0, 80.0),
            };
            let mut child = self.child(&span, step, cursor, duration);
            let at = cursor + duration / 2;
            match step {
                "filter" => {
                    child.attributes.push(kv("filter.type", s("bandpass")));
                    let masked = (rfi_fraction * 4096.0) as i64;
                    p.log(
                        &child,
                        at,
                        Level::Debug,
                        "simtel/ingest.py#L71",
                        format!("masked {masked} of 4096 channels"),
                    );
                }
                "transform" => {
                    p.log(&child, at, Level::Debug, "simtel/ingest.py#L84", "channelised to 1024 sub-bands".into())
                }
                _ => {
                    let path = format!("/data/raw/{block}.fil");
                    child.attributes.push(kv("path", s(path.clone())));
                    p.log(&child, at, Level::Info, "simtel/ingest.py#L97", format!("wrote {path}"));
                }
            }
            p.spans.push(child);
            cursor += duration + self.ms(0.2, 2.0);
        }
        if rfi_fraction > 0.3 {
            span.events.push(Event {
                name: "helix.event.rfi_flagged".into(),
                time_unix_nano: cursor,
                attributes: vec![kv("fraction", Value::DoubleValue(rfi_fraction))],
                ..Default::default()
            });
            let body = format!("RFI in {:.0}% of channels; block flagged", rfi_fraction * 100.0);
            p.log(&span, cursor, Level::Warning, "simtel/ingest.py#L103", body);
            cursor += self.ms(0.05, 0.5);
        }
        // A block that lost packets is dropped: no candidates come from it.
        let lost = self.rng.random_bool(0.01);
        if lost {
            let detail = "packet loss 4.2% above the 2% threshold";
            raise(&mut span, cursor, "PacketLossError", "ingest", detail);
            p.log(&span, cursor, Level::Error, "simtel/ingest.py#L112", format!("ingest of {block} failed: {detail}"));
            cursor += self.ms(0.05, 0.5);
        }
        span.end_time_unix_nano = cursor + self.ms(0.1, 1.0);
        let block_end = span.end_time_unix_nano;
        p.spans.push(span);
        if lost {
            return p.finish();
        }

        let candidates = self.rng.random_range(1..=3);
        for k in 0..candidates {
            let id = format!("cand-{beam:02}-{:06}-{k}", self.tick);
            let (ctrace, cspan) = self.ids();
            let mut parents = vec![block.clone()];
            if self.tick > 1 && self.rng.random_bool(0.3) {
                parents.push(format!("blk-{beam:02}-{:06}", self.tick - 1));
            }
            let (snr, dm, width_ms) = self.candidate_properties();
            // Candidates of a block are searched in parallel once the block is written.
            let start = block_end + self.ms(0.5, 10.0) + k * self.ms(0.1, 3.0);
            let mut span = entity_span(
                "search",
                &id,
                &ctrace,
                &cspan,
                start,
                &parents,
                vec![
                    kv("snr", Value::DoubleValue(snr)),
                    kv("dm", Value::DoubleValue(dm)),
                    kv("width_ms", Value::DoubleValue(width_ms)),
                    kv("beam", Value::IntValue(beam as i64)),
                ],
            );
            let mut cursor = start + self.ms(0.2, 2.0);
            if self.story {
                for (step, lo, hi) in [("dedisperse", 30.0, 200.0), ("fft", 10.0, 60.0)] {
                    let duration = self.ms(lo, hi);
                    let mut child = self.child(&span, step, cursor, duration);
                    if step == "dedisperse" {
                        child.attributes.push(kv("dm_trials", Value::IntValue(2048)));
                        let at = cursor + duration / 3;
                        p.log(&child, at, Level::Debug, "simtel/search.py#L64", "2048 DM trials, 0-2000 pc/cm3".into());
                    }
                    p.spans.push(child);
                    cursor += duration + self.ms(0.1, 1.0);
                }
            } else {
                cursor += self.ms(40.0, 260.0);
            }
            // A first-pass classifier's verdict: a plain span event, kept on the span only.
            let (label, confidence) = if dm < 25.0 { ("rfi", 0.9) } else { ("astrophysical", 0.6) };
            span.events.push(Event {
                name: "classified".into(),
                time_unix_nano: cursor,
                attributes: vec![
                    kv("label", s(label)),
                    kv("confidence", s(format!("{:.2}", confidence + self.rng.random_range(0.0..0.09)))),
                ],
                ..Default::default()
            });
            let body = format!("{id}: S/N {snr} at DM {dm} pc/cm3, width {width_ms} ms");
            p.log(&span, cursor, Level::Info, "simtel/search.py#L131", body);
            cursor += self.ms(0.05, 0.5);
            if self.rng.random_bool(0.02) {
                fail(&mut span, cursor, "low_snr_mask", "search", "S/N mask rejected the peak");
                p.log(
                    &span,
                    cursor,
                    Level::Error,
                    "simtel/search.py#L140",
                    format!("{id}: S/N mask rejected the peak"),
                );
                cursor += self.ms(0.05, 0.5);
            }
            span.end_time_unix_nano = cursor + self.ms(0.1, 1.0);
            self.pending.push(Candidate { id, beam, end_ns: span.end_time_unix_nano, snr, dm });
            p.spans.push(span);
        }
        p.finish()
    }

    fn cluster(&mut self, base: u64) -> ProcessExport {
        let mut p = Process::new("cluster".into(), format!("{INSTRUMENT}/cluster/l2"), "simtel.cluster", self.story);
        // The clusterer works through its queue one event at a time.
        let mut cursor = base + self.ms(900.0, 1000.0);
        // Group pending candidates from different beams into events.
        self.pending.sort_by_key(|c| c.beam);
        while self.pending.len() >= 3 {
            let take = self.rng.random_range(1..=3).min(self.pending.len());
            // Spread picks over beams: first, middle and last of the sorted list.
            let mut group = Vec::new();
            for i in 0..take {
                let idx = match i {
                    0 => 0,
                    1 => self.pending.len() - 1,
                    _ => self.pending.len() / 2,
                };
                group.push(self.pending.remove(idx));
            }
            self.events += 1;
            let id = format!("evt-{:07}", self.events);
            let (trace, span_id) = self.ids();
            let parents: Vec<String> = group.iter().map(|c| c.id.clone()).collect();
            let ready = group.iter().map(|c| c.end_ns).max().unwrap_or(cursor);
            let start = cursor.max(ready) + self.ms(2.0, 30.0);
            let snr = group.iter().map(|c| c.snr).fold(0.0, f64::max);
            let dm = round_to(group.iter().map(|c| c.dm).sum::<f64>() / group.len() as f64, 1);
            let mut beams: Vec<usize> = group.iter().map(|c| c.beam).collect();
            beams.sort_unstable();
            beams.dedup();
            let beams: Vec<String> = beams.iter().map(usize::to_string).collect();
            let mut span = entity_span(
                "cluster",
                &id,
                &trace,
                &span_id,
                start,
                &parents,
                vec![
                    kv("n_candidates", Value::IntValue(take as i64)),
                    kv("snr", Value::DoubleValue(snr)),
                    kv("dm", Value::DoubleValue(dm)),
                ],
            );
            let mut cursor_in = start + self.ms(0.1, 1.0);
            if self.story {
                let duration = self.ms(2.0, 15.0);
                let child = self.child(&span, "associate", cursor_in, duration);
                let body = format!("associated {} from beams {}", candidates(take), beams.join(","));
                p.log(&child, cursor_in + duration / 2, Level::Debug, "simtel/cluster.py#L58", body);
                p.spans.push(child);
                cursor_in += duration + self.ms(0.1, 1.0);
            }
            let classify = self.ms(5.0, 40.0);
            let label = if dm < 25.0 {
                "RFI"
            } else if (dm - PULSAR_DM).abs() < 2.0 {
                "pulsar"
            } else if snr > 12.0 {
                "FRB"
            } else {
                "noise"
            };
            let confidence = round_to(self.rng.random_range(0.5..1.0), 2);
            if self.story {
                let mut child = self.child(&span, "classify", cursor_in, classify);
                child.attributes.push(kv("model", s("frbnet-v3")));
                p.spans.push(child);
            }
            cursor_in += classify + self.ms(0.1, 1.0);
            span.events.push(Event {
                name: "helix.event.classified".into(),
                time_unix_nano: cursor_in,
                attributes: vec![kv("label", s(label)), kv("confidence", Value::DoubleValue(confidence))],
                ..Default::default()
            });
            let body = format!("{id}: {label} (confidence {confidence}) from {}", candidates(take));
            p.log(&span, cursor_in, Level::Info, "simtel/cluster.py#L92", body);
            span.end_time_unix_nano = cursor_in + self.ms(0.1, 1.0);
            cursor = span.end_time_unix_nano;
            p.spans.push(span);
            self.recent_events.push((id, cursor));
        }
        p.finish()
    }

    /// One operation span on `event` from `start`, with its sub-steps (name, lo, hi ms)
    /// inside it; `failure` (exception type, failing step, detail) makes that step raise.
    /// Returns the operation's end.
    fn operation(
        &mut self,
        p: &mut Process,
        op: &str,
        event: &str,
        start: u64,
        steps: &[(&str, f64, f64)],
        failure: Option<(&str, &str, &str)>,
    ) -> u64 {
        let (trace, span_id) = self.ids();
        let path = format!("/archive/{event}.h5");
        let mut span = entity_span(op, event, &trace, &span_id, start, &[], vec![kv("path", s(path.clone()))]);
        span.attributes.push(kv("helix.entity.is_operation", s("true")));
        let source = match op {
            "archive" => "simtel/archive.py#L41",
            "convert" => "simtel/convert.py#L27",
            _ => "simtel/replicate.py#L35",
        };
        p.log(&span, start + self.ms(0.05, 0.5), Level::Info, source, format!("{op} {event} → {path}"));
        let mut cursor = start + self.ms(0.5, 3.0);
        let mut failed = false;
        if self.story {
            for &(step, lo, hi) in steps {
                let duration = self.ms(lo, hi);
                let mut child = self.child(&span, step, cursor, duration);
                if matches!(step, "upload" | "transfer") {
                    child.kind = SpanKind::Client as i32;
                    child.attributes.push(kv("destination", s("nas-02:/archive")));
                }
                let at = cursor + duration / 2;
                if let Some((exc, _, detail)) = failure.filter(|(_, failing, _)| *failing == step) {
                    child.status = Some(Status { code: StatusCode::Error as i32, message: format!("{exc}: {detail}") });
                    p.log(&child, at, Level::Error, source, format!("{step} failed: {detail}"));
                    p.spans.push(child);
                    cursor += duration + self.ms(0.1, 1.0);
                    failed = true;
                    break;
                }
                let body = match step {
                    "checksum" => format!("sha256 {}", to_hex(&self.span_id())),
                    "upload" | "transfer" => format!("{step} of {} MB done", self.rng.random_range(40..400)),
                    _ => format!("{step} done"),
                };
                p.log(&child, at, Level::Debug, source, body);
                p.spans.push(child);
                cursor += duration + self.ms(0.1, 1.0);
            }
        } else {
            cursor += steps.iter().map(|&(_, lo, hi)| self.ms(lo, hi)).sum::<u64>();
            failed = failure.is_some();
        }
        if let (true, Some((exc, _, detail))) = (failed, failure) {
            raise(&mut span, cursor, exc, op, detail);
            cursor += self.ms(0.05, 0.5);
        }
        span.end_time_unix_nano = cursor + self.ms(0.1, 1.0);
        let end = span.end_time_unix_nano;
        p.spans.push(span);
        end
    }

    fn archive(&mut self, base: u64) -> ProcessExport {
        let mut p = Process::new("archiver".into(), format!("{INSTRUMENT}/archive/main"), "simtel.archive", self.story);
        let events: Vec<(String, u64)> = self.recent_events.drain(..).collect();
        for (event, created) in events {
            // Queued after the event was created; convert and replicate start once it is archived.
            let start = created + self.ms(20.0, 300.0);
            let failure = self.rng.random_bool(0.05).then(|| {
                if self.rng.random_bool(0.7) {
                    ("TimeoutError", "upload", "NFS server nas-02 not responding after 30 s")
                } else {
                    ("ChecksumMismatch", "checksum", "checksum differs from the beam's record")
                }
            });
            let archived = self.operation(
                &mut p,
                "archive",
                &event,
                start,
                &[("checksum", 10.0, 80.0), ("upload", 50.0, 600.0)],
                failure,
            );
            if self.rng.random_bool(0.5) {
                let failure = self.rng.random_bool(0.05).then_some(("OSError", "write", "no space left on /scratch"));
                let start = archived + self.ms(1.0, 20.0);
                let steps = [("read", 5.0, 40.0), ("write", 20.0, 200.0)];
                self.operation(&mut p, "convert", &event, start, &steps, failure);
            }
            if self.rng.random_bool(0.5) {
                let failure =
                    self.rng.random_bool(0.05).then_some(("TimeoutError", "transfer", "site-b unreachable for 60 s"));
                let start = archived + self.ms(1.0, 20.0);
                self.operation(&mut p, "replicate", &event, start, &[("transfer", 100.0, 800.0)], failure);
            }
        }
        // Sometimes storage is allocated for an event the clusterer has not reported yet.
        if self.rng.random_bool(0.2) {
            let future = format!("evt-{:07}", self.events + 1);
            let (trace, span_id) = self.ids();
            let start = base + self.ms(500.0, 1500.0);
            let mut span = entity_span("allocate-storage", &future, &trace, &span_id, start, &[], vec![]);
            span.attributes.push(kv("helix.entity.is_operation", s("true")));
            let gb = self.rng.random_range(2..20);
            span.attributes.push(kv("size_gb", Value::IntValue(gb)));
            let duration = self.ms(2.0, 20.0);
            span.end_time_unix_nano = start + duration;
            let body = format!("reserved {gb} GB for {future}");
            p.log(&span, start + duration / 2, Level::Info, "simtel/archive.py#L22", body);
            p.spans.push(span);
        }
        p.finish()
    }

    /// Plain traces of the pipeline's status API (the client's `tel.trace()`): no entity.
    fn status_api(&mut self, base: u64) -> ProcessExport {
        let mut p =
            Process::new("simtel-status-api".into(), format!("{INSTRUMENT}/ops/status-api"), "simtel.api", self.story);
        let requests = if self.rng.random_bool(0.4) { self.rng.random_range(1..=2) } else { 0 };
        for _ in 0..requests {
            let (trace, root_id) = self.ids();
            let start = base + self.ms(0.0, 3000.0);
            let route = ["/api/status", "/api/queue", "/api/beams"][self.rng.random_range(0..3)];
            let mut root = plain_span("process-request", &trace, &root_id, start, start);
            root.kind = SpanKind::Server as i32;
            root.attributes.push(kv("endpoint", s(route)));
            let mut cursor = start + self.ms(0.1, 1.0);
            let auth = self.ms(0.5, 8.0);
            let child = self.child(&root, "auth-check", cursor, auth);
            p.log(&child, cursor + auth / 2, Level::Debug, "simtel/api.py#L31", "token ok".into());
            p.spans.push(child);
            cursor += auth + self.ms(0.05, 0.5);
            let query = self.ms(2.0, 60.0);
            let mut child = self.child(&root, "db-query", cursor, query);
            child.kind = SpanKind::Client as i32;
            child.attributes.push(kv("db.system", s("postgresql")));
            let timed_out = self.rng.random_bool(0.05);
            if timed_out {
                let message = "TimeoutError: statement timeout";
                child.status = Some(Status { code: StatusCode::Error as i32, message: message.into() });
                child.events.push(Event {
                    name: "exception".into(),
                    time_unix_nano: cursor + query - query / 10,
                    attributes: vec![
                        kv("exception.type", s("TimeoutError")),
                        kv("exception.message", s("statement timeout")),
                    ],
                    ..Default::default()
                });
                root.status = Some(Status { code: StatusCode::Error as i32, message: message.into() });
            }
            p.spans.push(child);
            cursor += query + self.ms(0.05, 0.5);
            let code = if timed_out { 503 } else { 200 };
            root.attributes.push(kv("http.status_code", Value::IntValue(code)));
            let took = (cursor - start) as f64 / MS as f64;
            let (level, body) = if timed_out {
                (Level::Error, format!("GET {route} {code} in {took:.1} ms: database timed out"))
            } else {
                (Level::Info, format!("GET {route} {code} in {took:.1} ms"))
            };
            p.log(&root, cursor, level, "simtel/api.py#L52", body);
            root.end_time_unix_nano = cursor + self.ms(0.05, 0.5);
            p.spans.push(root);
        }
        p.finish()
    }
}

fn candidates(n: usize) -> String {
    if n == 1 {
        "1 candidate".to_owned()
    } else {
        format!("{n} candidates")
    }
}

/// The entity a span's logs belong to: its own, or the one a child span names for logs.
fn entity_of(span: &Span) -> Option<String> {
    ["helix.entity.id", "helix.log.entity_id"].iter().find_map(|key| {
        span.attributes.iter().find(|a| a.key == *key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            Value::StringValue(v) => Some(v.clone()),
            _ => None,
        })
    })
}

fn plain_span(name: &str, trace: &[u8], span: &[u8], start_ns: u64, end_ns: u64) -> Span {
    Span {
        name: name.to_owned(),
        trace_id: trace.to_vec(),
        span_id: span.to_vec(),
        start_time_unix_nano: start_ns,
        end_time_unix_nano: end_ns,
        kind: SpanKind::Internal as i32,
        ..Default::default()
    }
}

/// An entity span starting at `start_ns`; the caller sets its end once its work is laid out.
fn entity_span(
    name: &str,
    id: &str,
    trace: &[u8],
    span: &[u8],
    start_ns: u64,
    parents: &[String],
    mut extra: Vec<KeyValue>,
) -> Span {
    let mut out = plain_span(name, trace, span, start_ns, start_ns);
    out.attributes.push(kv("helix.entity.id", s(id)));
    out.attributes.push(kv("helix.instrument.id", s(INSTRUMENT)));
    if !parents.is_empty() {
        out.attributes.push(kv("helix.parent.ids", s(parents.join(","))));
    }
    out.attributes.append(&mut extra);
    out
}

/// An error the code reports itself (`token.error({...})`): `helix.error`, status ERROR.
fn fail(span: &mut Span, at_ns: u64, message: &str, stage: &str, detail: &str) {
    span.events.push(Event {
        name: ERROR_EVENT.into(),
        time_unix_nano: at_ns,
        attributes: vec![kv("message", s(message)), kv("stage", s(stage)), kv("detail", s(detail))],
        ..Default::default()
    });
    span.status = Some(Status { code: StatusCode::Error as i32, message: message.to_owned() });
}

/// An exception escaping the with-block: the SDK's `exception` event, then `helix.error`
/// classed by the exception type, status ERROR.
fn raise(span: &mut Span, at_ns: u64, exception: &str, stage: &str, detail: &str) {
    span.events.push(Event {
        name: "exception".into(),
        time_unix_nano: at_ns,
        attributes: vec![
            kv("exception.type", s(exception)),
            kv("exception.message", s(detail)),
            kv("exception.escaped", s("True")),
        ],
        ..Default::default()
    });
    span.events.push(Event {
        name: ERROR_EVENT.into(),
        time_unix_nano: at_ns,
        attributes: vec![kv("message", s(exception)), kv("exception.message", s(detail)), kv("stage", s(stage))],
        ..Default::default()
    });
    span.status = Some(Status { code: StatusCode::Error as i32, message: format!("{exception}: {detail}") });
}

/// Count of entity spans (creations and operations) in a request.
pub fn entity_span_count(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .filter(|span| span.attributes.iter().any(|a| a.key == "helix.entity.id"))
        .count()
}

/// Count of log records in a request.
/// Drive a herald with the demo telescope at about `entity_spans_per_second` entity spans
/// (child spans, infrastructure traces and logs come on top) until `stop` fires, each
/// simulated process over its own connection, traces then logs. Returns the number of spans
/// acknowledged.
pub async fn drive(
    endpoint: String,
    beams: usize,
    entity_spans_per_second: u32,
    stop: tokio_util::sync::CancellationToken,
) -> Result<u64, tonic::transport::Error> {
    let mut telescope = Telescope::demo(beams, 42);
    let mut clients = Vec::new();
    for _ in 0..telescope.process_count() {
        let channel = tonic::transport::Endpoint::new(endpoint.clone())?.connect().await?;
        clients.push((TraceServiceClient::new(channel.clone()), LogsServiceClient::new(channel)));
    }
    let (mut sent, mut paced) = (0u64, 0u64);
    let started = tokio::time::Instant::now();
    while !stop.is_cancelled() {
        for ((traces, logs), export) in clients.iter_mut().zip(telescope.step()) {
            let n = span_count(&export.traces) as u64;
            if n > 0 {
                paced += entity_span_count(&export.traces) as u64;
                match traces.export(export.traces).await {
                    Ok(_) => sent += n,
                    Err(status) => {
                        tracing::warn!(code = ?status.code(), message = status.message(), "simulated export refused")
                    }
                }
            }
            if log_count(&export.logs) > 0 {
                if let Err(status) = logs.export(export.logs).await {
                    tracing::warn!(code = ?status.code(), message = status.message(), "simulated log export refused")
                }
            }
        }
        // Pace to the requested rate.
        let due = started + Duration::from_secs_f64(paced as f64 / f64::from(entity_spans_per_second.max(1)));
        tokio::select! {
            () = tokio::time::sleep_until(due) => {}
            () = stop.cancelled() => {}
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use helix_model::interpret::{interpret_logs, interpret_traces, SpanClass};
    use std::collections::{HashMap, HashSet};

    #[test]
    fn telescope_traffic_has_every_kind_of_span() {
        for mut t in [Telescope::new(4, 1), Telescope::demo(4, 1)] {
            let (mut creations, mut ops, mut passthrough, mut cross_beam_events) = (0, 0, 0, 0);
            for _ in 0..20 {
                for req in t.tick() {
                    for at in interpret_traces(&req).spans {
                        match at.class {
                            SpanClass::Creation(c) => {
                                creations += 1;
                                let beams: HashSet<&str> =
                                    c.parent_ids.iter().filter(|p| p.starts_with("cand-")).map(|p| &p[5..7]).collect();
                                if beams.len() > 1 {
                                    cross_beam_events += 1;
                                }
                            }
                            SpanClass::Operation(_) => ops += 1,
                            SpanClass::Passthrough => passthrough += 1,
                            SpanClass::Rejected(r) => panic!("simulator made a bad span: {r}"),
                        }
                    }
                }
            }
            assert!(
                creations > 100 && ops > 5 && passthrough > 100 && cross_beam_events > 5,
                "creations {creations}, ops {ops}, passthrough {passthrough}, cross-beam events {cross_beam_events}"
            );
        }
    }

    #[test]
    fn benchmark_mix_has_no_logs_and_two_children_per_block() {
        let mut t = Telescope::new(4, 3);
        for _ in 0..10 {
            let exports = t.step_at(1_800_000_000_000_000_000);
            assert_eq!(exports.len(), 6);
            for e in &exports {
                assert_eq!(log_count(&e.logs), 0);
            }
            for beam in &exports[..4] {
                let spans = &beam.traces.resource_spans[0].scope_spans[0].spans;
                let children = spans.iter().filter(|s| !s.parent_span_id.is_empty()).count();
                assert_eq!(children, 2);
            }
        }
    }

    fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
        attrs.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            Value::StringValue(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// Children sit in their parent's trace and interval, times are distinct and in the past,
    /// every log line names a span of its process at a time inside it, with that span's entity.
    #[test]
    fn demo_spans_nest_and_logs_correlate() {
        let now = 1_800_000_000_000_000_000u64;
        let mut t = Telescope::demo(4, 9);
        let (mut infra_roots, mut plain_events, mut errors, mut entity_logs, mut infra_logs) = (0, 0, 0, 0, 0);
        let mut op_children = HashSet::new();
        for tick in 0..30u64 {
            let tick_now = now + tick * 400 * MS;
            let exports = t.step_at(tick_now);
            let mut starts = HashSet::new();
            for export in &exports {
                let spans: Vec<&Span> =
                    export.traces.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans).collect();
                let by_id: HashMap<&[u8], &Span> = spans.iter().map(|s| (s.span_id.as_slice(), *s)).collect();
                assert_eq!(by_id.len(), spans.len(), "span IDs are unique");
                for span in &spans {
                    assert!(span.start_time_unix_nano < span.end_time_unix_nano, "{} has a duration", span.name);
                    assert!(span.end_time_unix_nano <= tick_now, "{} ended before export", span.name);
                    assert!(starts.insert(span.start_time_unix_nano), "{} shares its start time", span.name);
                    for e in &span.events {
                        assert!(
                            (span.start_time_unix_nano..=span.end_time_unix_nano).contains(&e.time_unix_nano),
                            "event {} of {} is inside the span",
                            e.name,
                            span.name
                        );
                        if !e.name.starts_with("helix.") {
                            plain_events += 1;
                        }
                        if e.name == ERROR_EVENT {
                            errors += 1;
                        }
                    }
                    if span.parent_span_id.is_empty() {
                        if attr(&span.attributes, "helix.entity.id").is_none() {
                            assert_eq!(span.name, "process-request", "only infrastructure roots lack an entity");
                            assert!(span.attributes.iter().all(|a| !a.key.starts_with("helix.")));
                            infra_roots += 1;
                        }
                        continue;
                    }
                    let parent = by_id.get(span.parent_span_id.as_slice()).expect("the parent is in the same export");
                    assert_eq!(span.trace_id, parent.trace_id, "{} is in its parent's trace", span.name);
                    assert!(
                        parent.start_time_unix_nano < span.start_time_unix_nano
                            && span.end_time_unix_nano < parent.end_time_unix_nano,
                        "{} lies inside {}",
                        span.name,
                        parent.name
                    );
                    assert_eq!(
                        attr(&span.attributes, "helix.log.entity_id"),
                        attr(&parent.attributes, "helix.entity.id"),
                        "{} names its parent's entity for logs",
                        span.name
                    );
                    assert!(attr(&span.attributes, "helix.entity.id").is_none(), "children make no entity");
                    if attr(&parent.attributes, "helix.entity.is_operation").is_some() {
                        op_children.insert(span.name.clone());
                    }
                }
                let records = export.logs.resource_logs.iter().flat_map(|r| &r.scope_logs).flat_map(|s| &s.log_records);
                for (record, seen) in records.zip(interpret_logs(&export.logs)) {
                    let span = by_id.get(record.span_id.as_slice()).expect("a log names a span of its process");
                    assert_eq!(record.trace_id, span.trace_id);
                    assert!((span.start_time_unix_nano..=span.end_time_unix_nano).contains(&record.time_unix_nano));
                    assert_eq!(seen.trace_id.as_deref(), Some(to_hex(&span.trace_id).as_str()));
                    assert_eq!(seen.instrument_id.as_deref(), Some(INSTRUMENT));
                    assert_eq!(seen.entity_id, entity_of(span));
                    if seen.entity_id.is_some() {
                        entity_logs += 1;
                    } else {
                        infra_logs += 1;
                    }
                }
            }
        }
        for name in ["checksum", "upload"] {
            assert!(op_children.contains(name), "operations have {name} children: {op_children:?}");
        }
        assert!(
            infra_roots > 3 && plain_events > 30 && errors > 2 && entity_logs > 300 && infra_logs > 3,
            "infra {infra_roots}, plain events {plain_events}, errors {errors}, logs {entity_logs}/{infra_logs}"
        );
    }
}
