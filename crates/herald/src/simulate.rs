//! The simulated telescope: telescope-shaped OTLP traffic for `herald demo` and the
//! benchmarks. Beam processes turn raw blocks into candidates, a clustering process turns
//! candidates of several beams into events, an archiver operates on events (sometimes
//! before they exist); errors, classification events and passthrough children included.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::Event, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

pub const INSTRUMENT: &str = "SIMTEL";

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}
fn s(v: impl Into<String>) -> Value {
    Value::StringValue(v.into())
}

/// Generates the traffic of one telescope, one tick at a time, deterministically from a seed.
pub struct Telescope {
    rng: SmallRng,
    beams: usize,
    tick: u64,
    events: u64,
    /// Candidates not yet clustered: (id, beam).
    pending: Vec<(String, usize)>,
    /// Events created so far, for operations.
    recent_events: Vec<String>,
}

impl Telescope {
    pub fn new(beams: usize, seed: u64) -> Self {
        Telescope {
            rng: SmallRng::seed_from_u64(seed),
            beams: beams.max(2),
            tick: 0,
            events: 0,
            pending: Vec::new(),
            recent_events: Vec::new(),
        }
    }

    fn ids(&mut self) -> (Vec<u8>, Vec<u8>) {
        let mut trace = vec![0u8; 16];
        let mut span = vec![0u8; 8];
        self.rng.fill(&mut trace[..]);
        self.rng.fill(&mut span[..]);
        trace[0] |= 1;
        span[0] |= 1;
        (trace, span)
    }

    fn span_id(&mut self) -> Vec<u8> {
        let mut span = vec![0u8; 8];
        self.rng.fill(&mut span[..]);
        span[0] |= 1;
        span
    }

    /// One tick: one export request per simulated process (beams, clusterer, archiver).
    pub fn tick(&mut self) -> Vec<ExportTraceServiceRequest> {
        self.tick += 1;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_nanos() as u64;
        let mut out = Vec::with_capacity(self.beams + 2);
        for beam in 0..self.beams {
            out.push(self.beam(beam, now));
        }
        out.push(self.cluster(now));
        out.push(self.archive(now));
        out
    }

    fn beam(&mut self, beam: usize, now: u64) -> ExportTraceServiceRequest {
        let block = format!("blk-{beam:02}-{:06}", self.tick);
        let (trace, block_span) = self.ids();
        let mut spans = vec![entity_span("ingest", &block, &trace, &block_span, now, &[], vec![])];
        // Passthrough children: the sub-steps of the search.
        for step in ["dedisperse", "fft"] {
            let id = self.span_id();
            let mut child = plain_span(step, &trace, &id, now);
            child.parent_span_id = block_span.clone();
            child.attributes.push(kv("helix.log.entity_id", s(block.clone())));
            spans.push(child);
        }
        let candidates = self.rng.random_range(1..=3);
        for k in 0..candidates {
            let id = format!("cand-{beam:02}-{:06}-{k}", self.tick);
            let (ctrace, cspan) = self.ids();
            let mut parents = vec![block.clone()];
            if self.tick > 1 && self.rng.random_bool(0.3) {
                parents.push(format!("blk-{beam:02}-{:06}", self.tick - 1));
            }
            let snr = (self.rng.random_range(6.0..40.0f64) * 100.0).round() / 100.0;
            let dm = (self.rng.random_range(50.0..1500.0f64) * 10.0).round() / 10.0;
            let mut span = entity_span(
                "search",
                &id,
                &ctrace,
                &cspan,
                now,
                &parents,
                vec![
                    kv("snr", Value::DoubleValue(snr)),
                    kv("dm", Value::DoubleValue(dm)),
                    kv("beam", Value::IntValue(beam as i64)),
                ],
            );
            if self.rng.random_bool(0.02) {
                fail(&mut span, now, "low_snr_mask", "search");
            }
            spans.push(span);
            self.pending.push((id, beam));
        }
        request(&format!("beam-search-{beam:02}"), &format!("{INSTRUMENT}/search/beam-{beam:02}"), spans)
    }

    fn cluster(&mut self, now: u64) -> ExportTraceServiceRequest {
        let mut spans = Vec::new();
        // Group pending candidates from different beams into events.
        self.pending.sort_by_key(|(_, beam)| *beam);
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
                group.push(self.pending.remove(idx).0);
            }
            self.events += 1;
            let id = format!("evt-{:07}", self.events);
            let (trace, span_id) = self.ids();
            let label = ["FRB", "RFI", "pulsar", "noise"][self.rng.random_range(0..4)];
            let mut span = entity_span(
                "cluster",
                &id,
                &trace,
                &span_id,
                now,
                &group,
                vec![kv("n_candidates", Value::IntValue(take as i64))],
            );
            span.events.push(Event {
                name: "helix.event.classified".into(),
                time_unix_nano: now + 200,
                attributes: vec![
                    kv("label", s(label)),
                    kv("confidence", Value::DoubleValue(self.rng.random_range(0.5..1.0))),
                ],
                ..Default::default()
            });
            spans.push(span);
            self.recent_events.push(id);
        }
        request("cluster", &format!("{INSTRUMENT}/cluster/l2"), spans)
    }

    fn archive(&mut self, now: u64) -> ExportTraceServiceRequest {
        let mut spans = Vec::new();
        let events: Vec<String> = self.recent_events.drain(..).collect();
        for event in events {
            for op in ["archive", "convert", "replicate"] {
                if op != "archive" && !self.rng.random_bool(0.5) {
                    continue;
                }
                let (trace, span_id) = self.ids();
                let mut span = entity_span(
                    op,
                    &event,
                    &trace,
                    &span_id,
                    now,
                    &[],
                    vec![kv("path", s(format!("/archive/{event}.h5")))],
                );
                span.attributes.push(kv("helix.entity.is_operation", s("true")));
                if self.rng.random_bool(0.05) {
                    fail(&mut span, now, "nfs_timeout", op);
                }
                spans.push(span);
            }
        }
        // Sometimes storage is allocated for an event the clusterer has not reported yet.
        if self.rng.random_bool(0.2) {
            let future = format!("evt-{:07}", self.events + 1);
            let (trace, span_id) = self.ids();
            let mut span = entity_span("allocate-storage", &future, &trace, &span_id, now, &[], vec![]);
            span.attributes.push(kv("helix.entity.is_operation", s("true")));
            spans.push(span);
        }
        request("archiver", &format!("{INSTRUMENT}/archive/main"), spans)
    }
}

fn plain_span(name: &str, trace: &[u8], span: &[u8], now: u64) -> Span {
    Span {
        name: name.to_owned(),
        trace_id: trace.to_vec(),
        span_id: span.to_vec(),
        start_time_unix_nano: now,
        end_time_unix_nano: now + 50_000,
        kind: 1,
        ..Default::default()
    }
}

fn entity_span(
    name: &str,
    id: &str,
    trace: &[u8],
    span: &[u8],
    now: u64,
    parents: &[String],
    mut extra: Vec<KeyValue>,
) -> Span {
    let mut out = plain_span(name, trace, span, now);
    out.attributes.push(kv("helix.entity.id", s(id)));
    out.attributes.push(kv("helix.instrument.id", s(INSTRUMENT)));
    if !parents.is_empty() {
        out.attributes.push(kv("helix.parent.ids", s(parents.join(","))));
    }
    out.attributes.append(&mut extra);
    out
}

fn fail(span: &mut Span, now: u64, message: &str, stage: &str) {
    span.events.push(Event {
        name: "helix.error".into(),
        time_unix_nano: now + 100,
        attributes: vec![kv("message", s(message)), kv("stage", s(stage))],
        ..Default::default()
    });
    span.status = Some(Status { code: StatusCode::Error as i32, message: message.to_owned() });
}

fn request(service: &str, process: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s(service)),
                    kv("helix.instrument.id", s(INSTRUMENT)),
                    kv("helix.process.name", s(process)),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// Count of spans in a request.
pub fn span_count(request: &ExportTraceServiceRequest) -> usize {
    request.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum()
}

/// Drive a herald at about `spans_per_second` until `stop` fires, each simulated process
/// over its own connection. Returns the number of spans acknowledged.
pub async fn drive(
    endpoint: String,
    beams: usize,
    spans_per_second: u32,
    stop: tokio_util::sync::CancellationToken,
) -> Result<u64, tonic::transport::Error> {
    let mut telescope = Telescope::new(beams, 42);
    let mut clients = Vec::new();
    for _ in 0..beams + 2 {
        clients.push(TraceServiceClient::connect(endpoint.clone()).await?);
    }
    let mut sent = 0u64;
    let started = tokio::time::Instant::now();
    while !stop.is_cancelled() {
        for (client, req) in clients.iter_mut().zip(telescope.tick()) {
            let n = span_count(&req) as u64;
            if n == 0 {
                continue;
            }
            match client.export(req).await {
                Ok(_) => sent += n,
                Err(status) => {
                    tracing::warn!(code = ?status.code(), message = status.message(), "simulated export refused")
                }
            }
        }
        // Pace to the requested rate.
        let due = started + Duration::from_secs_f64(sent as f64 / f64::from(spans_per_second.max(1)));
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
    use helix_model::interpret::{interpret_traces, SpanClass};

    #[test]
    fn telescope_traffic_has_every_kind_of_span() {
        let mut t = Telescope::new(4, 1);
        let (mut creations, mut ops, mut passthrough, mut cross_beam_events) = (0, 0, 0, 0);
        for _ in 0..20 {
            for req in t.tick() {
                for at in interpret_traces(&req).spans {
                    match at.class {
                        SpanClass::Creation(c) => {
                            creations += 1;
                            let beams: std::collections::HashSet<&str> =
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
