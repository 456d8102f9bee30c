//! Caller-side cost of a tracked step — `tel.create(..).parents(..).start()` then drop — against
//! a bare OpenTelemetry span with the same attributes, through the same SDK pipeline (the same
//! tracer provider and batch processor, a no-op exporter), measured in the same run.
//!
//! `cargo bench -p helixobs --bench create`; results in docs/benchmarks.md ("Rust client cost").

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, Criterion};
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracer, SpanData};

/// Accepts every batch and does nothing: only the caller's side is measured.
#[derive(Debug)]
struct NoopExporter;

impl opentelemetry_sdk::trace::SpanExporter for NoopExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

fn instrument() -> helixobs::Instrument {
    helixobs::Instrument::builder("bench")
        .instrument_id("BENCH")
        .process_name("BENCH/search")
        .span_exporter(NoopExporter)
        .build()
        .expect("instrument")
}

/// What a pipeline writes by hand to get the same span: the IDs are runtime values (owned
/// strings), the span is made current for the step's body (as the Python benchmark's
/// `start_as_current_span`), and ends when the step does.
#[inline(never)]
fn bare_current(tracer: &SdkTracer) {
    let (id, parents) = (black_box("candidate-42"), black_box("block-001"));
    let span = tracer
        .span_builder("search")
        .with_kind(SpanKind::Internal)
        .with_attributes(vec![
            KeyValue::new("helix.entity.id", id.to_owned()),
            KeyValue::new("helix.instrument.id", "BENCH"),
            KeyValue::new("helix.parent.ids", parents.to_owned()),
            KeyValue::new("helix.process.name", "BENCH/search"),
        ])
        .start(tracer);
    let guard = Context::current_with_span(span).attach();
    drop(black_box(guard)); // detaches; the span ends when its context is dropped
}

#[inline(never)]
fn helixobs_create(tel: &helixobs::Instrument) {
    let (id, parents) = (black_box("candidate-42"), black_box("block-001"));
    let token = tel.create("search", id).parents([parents]).start();
    drop(black_box(token));
}

/// The cheapest possible span, for scale: static attribute values, never current.
#[inline(never)]
fn bare_static(tracer: &SdkTracer) {
    let span = tracer
        .span_builder("search")
        .with_kind(SpanKind::Internal)
        .with_attributes(vec![
            KeyValue::new("helix.entity.id", "candidate-42"),
            KeyValue::new("helix.instrument.id", "BENCH"),
            KeyValue::new("helix.parent.ids", "block-001"),
            KeyValue::new("helix.process.name", "BENCH/search"),
        ])
        .start(tracer);
    drop(black_box(span));
}

fn bench(c: &mut Criterion) {
    let tel = instrument();
    let tracer = tel.tracer_provider().tracer("bare");
    let mut group = c.benchmark_group("create_start_drop");
    group.bench_function("bare_otel_current_span", |b| b.iter(|| bare_current(&tracer)));
    group.bench_function("helixobs_create", |b| b.iter(|| helixobs_create(&tel)));
    group.bench_function("bare_otel_span_static", |b| b.iter(|| bare_static(&tracer)));
    group.finish();
    tel.shutdown().expect("shutdown");
}

/// The same three cases in paired, interleaved batches (A, B, C, A, B, C, …): on a shared,
/// loaded machine the load drifts between criterion's consecutive 4-second runs, but hardly
/// within one 3-batch round, so the per-round ratios are what the comparison uses. Prints one
/// summary line per case and the median ratios (parsed by bench/rust-client-cost.sh).
fn paired(_: &mut Criterion) {
    const ROUNDS: usize = 300;
    const BATCH: u32 = 2_000;
    let tel = instrument();
    let tracer = tel.tracer_provider().tracer("bare");
    let time = |f: &dyn Fn()| {
        let start = Instant::now();
        for _ in 0..BATCH {
            f();
        }
        start.elapsed().as_nanos() as f64 / f64::from(BATCH)
    };
    for _ in 0..20 {
        time(&|| bare_current(&tracer));
        time(&|| helixobs_create(&tel));
    }
    let (mut a, mut b, mut c, mut ratio, mut ratio_static) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let x = time(&|| bare_current(&tracer));
        let y = time(&|| helixobs_create(&tel));
        let z = time(&|| bare_static(&tracer));
        a.push(x);
        b.push(y);
        c.push(z);
        ratio.push(y / x);
        ratio_static.push(y / z);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "paired: bare_otel_current_span {:.0} ns, helixobs_create {:.0} ns, bare_otel_span_static {:.0} ns, \
         ratio {:.3} (vs static {:.3}), {ROUNDS} rounds of {BATCH}",
        median(&mut a),
        median(&mut b),
        median(&mut c),
        median(&mut ratio),
        median(&mut ratio_static)
    );
    tel.shutdown().expect("shutdown");
}

/// `HELIXOBS_BENCH_PROFILE=N`: run each case N times and exit, without criterion — for a
/// profiler (`valgrind --tool=callgrind --toggle-collect='create::helixobs_create'`, `perf`);
/// the cases are not inlined, so each one is a function of its own in the profile.
fn profile(n: u32) {
    let tel = instrument();
    let tracer = tel.tracer_provider().tracer("bare");
    for _ in 0..n {
        bare_current(&tracer);
        helixobs_create(&tel);
        bare_static(&tracer);
    }
    tel.shutdown().expect("shutdown");
}

criterion_group!(benches, bench, paired);

fn main() {
    if let Some(n) = std::env::var("HELIXOBS_BENCH_PROFILE").ok().and_then(|n| n.parse().ok()) {
        return profile(n);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
