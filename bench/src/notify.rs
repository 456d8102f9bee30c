//! `helix-bench notifications`: a burst of error events across many classes ingested with
//! notifications on (every event is also an outbox row in its transaction; a dispatcher sends
//! to a loopback Slack) and off, in interleaved rounds on fresh stores, then how long the
//! outbox takes to drain once the burst is acknowledged.

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use helix_store::{SqliteOptions, SqliteStore, Store};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};

use crate::load::{drive, export_traces, load_average, now_ns, trace_client, InProcessHerald};

const INSTRUMENT: &str = "BENCHNOTIFY";
const SPANS_PER_REQUEST: usize = 100;
/// How long Slack keeps failing after the burst's acknowledgement in an outage run.
const OUTAGE_AFTER_ACK: Duration = Duration::from_secs(3);

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_owned())) }),
        ..Default::default()
    }
}

/// A class name without digits (digits are normalised away): `aa`, `ab`, …
fn class_word(k: usize) -> String {
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    format!("{}{}", letters[k / 26 % 26] as char, letters[k % 26] as char)
}

/// `events` creation spans of one helix.error each, round-robin over `classes` classes.
fn burst(events: usize, classes: usize, round: usize) -> Vec<ExportTraceServiceRequest> {
    let now = u64::try_from(now_ns()).unwrap_or(0);
    let spans: Vec<Span> = (0..events)
        .map(|i| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(round as u64).to_be_bytes());
            id[8..].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            Span {
                trace_id: id.to_vec(),
                span_id: id[8..].to_vec(),
                name: "search".into(),
                start_time_unix_nano: now,
                end_time_unix_nano: now + 1_000,
                attributes: vec![kv("helix.entity.id", &format!("r{round}-cand-{i}"))],
                events: vec![span::Event {
                    name: "helix.error".into(),
                    time_unix_nano: now + 500,
                    attributes: vec![kv("message", &format!("beam {i} failed: {}", class_word(i % classes)))],
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    spans
        .chunks(SPANS_PER_REQUEST)
        .map(|chunk| ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "bench"), kv("helix.instrument.id", INSTRUMENT)],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans { spans: chunk.to_vec(), ..Default::default() }],
                ..Default::default()
            }],
        })
        .collect()
}

/// A Slack webhook on loopback answering `status`, counting the messages it accepted.
struct Slack {
    accepted: Arc<AtomicUsize>,
    status: Arc<AtomicU16>,
    url: String,
}

async fn slack() -> Slack {
    let accepted = Arc::new(AtomicUsize::new(0));
    let status = Arc::new(AtomicU16::new(200));
    let (counter, answer) = (accepted.clone(), status.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |_: axum::body::Bytes| {
            let (counter, answer) = (counter.clone(), answer.clone());
            async move {
                let code = answer.load(Ordering::SeqCst);
                if code == 200 {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::OK)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("loopback port");
    let url = format!("http://{}/hook", listener.local_addr().expect("bound"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Slack { accepted, status, url }
}

struct Run {
    ingest: Duration,
    /// From the last acknowledgement to an empty outbox; `None` with notifications off.
    drain: Option<Duration>,
    messages: usize,
}

/// `outage`: Slack answers 503 until `OUTAGE_AFTER_ACK` after the burst is acknowledged, then
/// 200; the drain is then counted from that moment.
#[allow(clippy::too_many_arguments)]
async fn one_run(
    on: bool,
    events: usize,
    classes: usize,
    round: usize,
    clients: usize,
    hook_var: &str,
    outage: Option<&AtomicU16>,
) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("herald.db");
    let db_url = format!("sqlite://{}", path.display());
    let instruments = dir.path().join("instruments");
    std::fs::create_dir(&instruments).expect("instruments dir");
    if on {
        std::fs::write(
            instruments.join("bench.yml"),
            format!(
                "instrument_id: {INSTRUMENT}\nnotifications:\n  slack_webhook_env: {hook_var}\n  events:\n    \
                 helix.error:\n      slack: {{channel: \"#bench\", sample_window_seconds: 600, max_per_window: 1}}\n"
            ),
        )
        .expect("instrument file");
    }
    let dir_flag = instruments.display().to_string();
    if let Some(status) = outage {
        status.store(503, Ordering::SeqCst);
    }
    let herald = InProcessHerald::start(&db_url, &["--instruments-dir", &dir_flag, "--notify-poll", "20ms"]).await;
    let grpc = herald.grpc.clone();
    let requests = Arc::new(burst(events, classes, round));
    let started = Instant::now();
    let run = drive(
        clients,
        requests,
        Instant::now() + Duration::from_secs(600),
        || trace_client(&grpc),
        export_traces,
        |r| r.resource_spans.iter().flat_map(|rs| &rs.scope_spans).map(|s| s.spans.len()).sum(),
    )
    .await;
    let ingest = started.elapsed();
    if let Some(status) = outage {
        // Long enough for the dispatcher (which gave way during the burst) to meet the
        // failures and schedule its retries.
        tokio::time::sleep(OUTAGE_AFTER_ACK).await;
        status.store(200, Ordering::SeqCst);
    }
    assert_eq!(run.refused_requests, 0, "exports were refused; the comparison would be meaningless");
    assert_eq!(run.acked_spans, events);
    let drain = if on {
        let store = SqliteStore::open(&path, SqliteOptions::default()).expect("the bench store");
        let notify = store.notify().expect("SQLite keeps notifications");
        let acked = Instant::now();
        loop {
            if notify.outbox_depth().await.expect("outbox depth") == 0 {
                break Some(acked.elapsed());
            }
            assert!(acked.elapsed() < Duration::from_secs(120), "the outbox did not drain in 120 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    } else {
        None
    };
    herald.stop().await;
    Run { ingest, drain, messages: 0 }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub async fn run(events: usize, classes: usize, rounds: usize, clients: usize, outages: usize) {
    if rounds == 0 && outages == 0 {
        return;
    }
    let load_before = load_average();
    let slack = slack().await;
    let count = slack.accepted.clone();
    let hook_var = "HELIX_BENCH_SLACK_WEBHOOK";
    // SAFETY (edition 2021: safe): set before any herald starts, read by its instrument loader.
    std::env::set_var(hook_var, &slack.url);
    println!("### Notifications: a burst of {events} error events across {classes} classes, notifications on vs off\n");
    println!(
        "SQLite, an in-process herald per run on a fresh store, {clients} concurrent gRPC exporters on loopback, \
         {SPANS_PER_REQUEST} creation spans of one `helix.error` each per request. On: the instrument's file sends \
         `helix.error` to a loopback Slack webhook with `max_per_window: 1` (window 600 s), so every event is an \
         outbox row written in its transaction and each class is notified once. Ingest is from the first export \
         to the last acknowledgement; drain from then to an empty outbox. {rounds} rounds alternating which side \
         goes first.\n"
    );
    println!("| round | notifications | ingest events/s | drain after the last ack | Slack messages |\n|---:|---|---:|---:|---:|");
    let (mut ratios, mut on_rates, mut off_rates, mut drains) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let order = if round % 2 == 1 { [false, true] } else { [true, false] };
        let mut pair = [0.0; 2];
        for on in order {
            let before = count.load(Ordering::SeqCst);
            let mut r = one_run(on, events, classes, round * 2 + usize::from(on), clients, hook_var, None).await;
            r.messages = count.load(Ordering::SeqCst) - before;
            let rate = events as f64 / r.ingest.as_secs_f64();
            println!(
                "| {round} | {} | {rate:.0} | {} | {} |",
                if on { "on" } else { "off" },
                r.drain.map_or("–".into(), |d| format!("{:.2} s", d.as_secs_f64())),
                if on { r.messages.to_string() } else { "–".into() }
            );
            if on {
                assert_eq!(r.messages, classes, "each class once per window");
                drains.push(r.drain.unwrap_or_default().as_secs_f64());
            }
            pair[usize::from(on)] = rate;
        }
        off_rates.push(pair[0]);
        on_rates.push(pair[1]);
        ratios.push(pair[1] / pair[0]);
    }
    println!(
        "\nMedians: off {:.0} events/s, on {:.0} events/s, **on/off {:.2}** (per-round ratios {}); outbox drained \
         {:.2} s (median; max {:.2} s) after the burst was acknowledged. Load average before {load_before}, after {}.\n",
        median(off_rates),
        median(on_rates),
        median(ratios.clone()),
        ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", "),
        median(drains.clone()),
        drains.iter().cloned().fold(0.0, f64::max),
        load_average()
    );
    if outages == 0 {
        return;
    }
    println!(
        "### Notifications: the same burst while Slack answers 503, then 200\n\nSlack fails every request until \
         {} s after the burst is acknowledged, then answers 200 (retries after 2, 4, 8, 16 s); drain from that \
         moment to an empty outbox.\n",
        OUTAGE_AFTER_ACK.as_secs()
    );
    println!("| run | ingest events/s | drain after Slack answers | Slack messages |\n|---:|---:|---:|---:|");
    let mut drains = Vec::new();
    for n in 1..=outages {
        let before = count.load(Ordering::SeqCst);
        let r = one_run(true, events, classes, 1000 + n, clients, hook_var, Some(&slack.status)).await;
        let messages = count.load(Ordering::SeqCst) - before;
        let drain = r.drain.unwrap_or_default().as_secs_f64();
        println!("| {n} | {:.0} | {drain:.2} s | {messages} |", events as f64 / r.ingest.as_secs_f64());
        assert_eq!(messages, classes, "each class once per window, after the outage too");
        drains.push(drain);
    }
    println!(
        "\nDrain after Slack answers: median {:.2} s, max {:.2} s. Load average after {}.\n",
        median(drains.clone()),
        drains.iter().cloned().fold(0.0, f64::max),
        load_average()
    );
}

/// CPU time of every thread of this process (ns, from `/proc/self/task/*/schedstat`) and the
/// bytes it has written (`wchar` of `/proc/self/io`: the WAL and database file writes).
fn usage() -> (u64, u64) {
    let mut cpu = 0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            cpu += stat.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let written = io.lines().find_map(|l| l.strip_prefix("wchar:")).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
    (cpu, written)
}

/// The burst as the writer gets it: `SPANS_PER_REQUEST` creations per batch, each with one
/// `helix.error` of one of `classes` messages; notifying when `on`.
fn store_burst(events: usize, classes: usize, round: usize, on: bool) -> Vec<helix_store::WriteBatch> {
    use helix_model::{EntityCreated, EntityEvent, EntitySpan, Status, ERROR_EVENT};
    let notify = if on {
        helix_store::notify::NotifySet::new([(INSTRUMENT.to_owned(), ERROR_EVENT.to_owned())].into())
    } else {
        helix_store::notify::NotifySet::default()
    };
    let now = now_ns();
    let records: Vec<_> = (0..events)
        .map(|i| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(round as u64 * 2 + u64::from(on)).to_be_bytes());
            id[8..].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            let (trace_id, span_id) = (helix_model::ids::to_hex(&id), helix_model::ids::to_hex(&id[8..]));
            let entity_id = format!("r{round}-cand-{i}");
            let event = EntityEvent {
                entity_id: entity_id.clone(),
                instrument_id: INSTRUMENT.to_owned(),
                event_name: ERROR_EVENT.to_owned(),
                timestamp_ns: now + 500,
                metadata: [("message".to_owned(), format!("beam {i} failed: {}", class_word(i % classes)))].into(),
                trace_id: trace_id.clone(),
                span_id: span_id.clone(),
                ordinal: 0,
            };
            helix_store::WriteRecord::Created(EntityCreated(EntitySpan {
                entity_id,
                instrument_id: INSTRUMENT.to_owned(),
                name: "search".to_owned(),
                trace_id,
                span_id,
                start_ns: now,
                end_ns: now + 1_000,
                parent_ids: Vec::new(),
                metadata: Default::default(),
                service_name: Some("bench".to_owned()),
                process_name: None,
                status: Status::Ok,
                events: vec![event],
            }))
        })
        .collect();
    records
        .chunks(SPANS_PER_REQUEST)
        .map(|chunk| helix_store::WriteBatch {
            records: chunk.to_vec(),
            refuse_conflicts: false,
            notify: notify.clone(),
        })
        .collect()
}

/// `rounds` interleaved on/off writes of the burst into fresh SQLite stores, one batch after
/// the other: wall time (mostly the commits' fsyncs), the process's CPU time and bytes written.
pub async fn store_rounds(events: usize, classes: usize, rounds: usize) {
    if rounds == 0 {
        return;
    }
    let load_before = load_average();
    println!(
        "### Notifications, the writer alone: {events} error events in batches of {SPANS_PER_REQUEST}, \
         straight into the SQLite store, on vs off\n"
    );
    println!("| round | notifications | wall | CPU (all threads) | bytes written |\n|---:|---|---:|---:|---:|");
    let (mut cpu_extra, mut byte_ratios, mut wall_ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let order = if round % 2 == 1 { [false, true] } else { [true, false] };
        let mut m = [(0.0, 0.0, 0.0); 2];
        for on in order {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = SqliteStore::open(&dir.path().join("herald.db"), SqliteOptions::default()).expect("store");
            let batches = store_burst(events, classes, round, on);
            let (cpu0, written0) = usage();
            let started = Instant::now();
            for b in &batches {
                store.write(b).await.expect("write");
            }
            let wall = started.elapsed().as_secs_f64();
            let (cpu1, written1) = usage();
            let (cpu, written) = ((cpu1 - cpu0) as f64 / 1e9, (written1 - written0) as f64);
            println!(
                "| {round} | {} | {wall:.3} s | {:.1} ms | {:.2} MB |",
                if on { "on" } else { "off" },
                cpu * 1e3,
                written / 1e6
            );
            m[usize::from(on)] = (wall, cpu, written);
        }
        let [off, on] = m;
        cpu_extra.push((on.1 - off.1) * 1e9 / events as f64);
        byte_ratios.push(on.2 / off.2);
        wall_ratios.push(off.0 / on.0);
    }
    println!(
        "\nMedians: CPU with notifications on {:.2} µs more per event (per-round {}); bytes written on/off {:.3}; \
         write rate on/off {:.2} (per-round {}). Load average before {load_before}, after {}.\n",
        median(cpu_extra.clone()) / 1e3,
        cpu_extra.iter().map(|c| format!("{:.2}", c / 1e3)).collect::<Vec<_>>().join(", "),
        median(byte_ratios),
        median(wall_ratios.clone()),
        wall_ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", "),
        load_average()
    );
}
