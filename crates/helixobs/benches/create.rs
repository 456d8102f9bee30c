//! Caller-side cost of a tracked step — `tel.create(..).parents(..).start()` then drop — against
//! a bare OpenTelemetry span with the same attributes, through the same SDK pipeline (the same
//! tracer provider and batch processor, a no-op exporter), measured in the same run.
//!
//! `cargo bench -p helixobs --bench create`; results in docs/benchmarks.md ("Rust client cost").

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::trace::{SpanKind, Tracer, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::SpanData;

/// Accepts every batch and does nothing: only the caller's side is measured.
#[derive(Debug)]
struct NoopExporter;

impl opentelemetry_sdk::trace::SpanExporter for NoopExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

fn bench(c: &mut Criterion) {
    let tel = helixobs::Instrument::builder("bench")
        .instrument_id("BENCH")
        .process_name("BENCH/search")
        .span_exporter(NoopExporter)
        .build()
        .expect("instrument");
    let tracer = tel.tracer_provider().tracer("bare");
    let mut group = c.benchmark_group("create_start_drop");
    // Interleaved by criterion's own order within one process: same machine state for both.
    group.bench_function("bare_otel_span", |b| {
        b.iter(|| {
            let span = tracer
                .span_builder("search")
                .with_kind(SpanKind::Internal)
                .with_attributes(vec![
                    KeyValue::new("helix.entity.id", "candidate-42"),
                    KeyValue::new("helix.instrument.id", "BENCH"),
                    KeyValue::new("helix.parent.ids", "block-001"),
                    KeyValue::new("helix.process.name", "BENCH/search"),
                ])
                .start(&tracer);
            drop(black_box(span));
        })
    });
    group.bench_function("helixobs_create", |b| {
        b.iter(|| {
            let token = tel.create("search", "candidate-42").parents(["block-001"]).start();
            drop(black_box(token));
        })
    });
    group.finish();
    tel.shutdown().expect("shutdown");
}

criterion_group!(benches, bench);
criterion_main!(benches);
