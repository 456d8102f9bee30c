//! `helix-bench auth`: durable ingest with auth on (every export carries a bearer token that
//! the herald verifies, and every record is attributed to the token's instrument and checked
//! for ownership in the commit) against the same herald with auth off, in interleaved rounds
//! on fresh stores, so a slow minute on a shared machine hits both sides.

use std::sync::Arc;
use std::time::{Duration, Instant};

use helix_model::span_count;
use herald::auth::KeySet;
use herald::simulate::INSTRUMENT;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::load::{
    drive, load_average, percentile, rate, telescope_requests, trace_client, HeraldRun, InProcessHerald,
};

/// A benchmark key (≥ 32 bytes, so the herald does not warn about it).
const KEY: &str = "bench-key-6c1f0e9d8b7a69584736251403f2e1d0";

type Client = TraceServiceClient<tonic::transport::Channel>;

fn export_with_token(
    token: Arc<str>,
) -> impl Fn(
    Client,
    ExportTraceServiceRequest,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = (Client, bool)> + Send>>
       + Send
       + Sync
       + Clone
       + 'static {
    move |mut client, request| {
        let token = token.clone();
        Box::pin(async move {
            let mut request = tonic::Request::new(request);
            let value = format!("Bearer {token}").parse().expect("a token is ASCII");
            request.metadata_mut().insert("authorization", value);
            let ok = client.export(request).await.is_ok();
            (client, ok)
        })
    }
}

/// CPU time this process has used (user + system, all threads): the herald runs in-process,
/// so CPU per acknowledged span is what auth costs, whatever else the machine is doing.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(fields.iter().sum::<u64>() * 10)
}

async fn one_run(
    auth: bool,
    requests: Arc<Vec<ExportTraceServiceRequest>>,
    clients: usize,
    limit: Duration,
    token: &Arc<str>,
) -> (HeraldRun, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("herald.db").display());
    let instruments = dir.path().join("instruments");
    std::fs::create_dir(&instruments).unwrap();
    // The instrument signs in with a secret; the bench skips the sign-in and signs its token
    // with the herald's key directly (what POST /auth/token would return).
    std::fs::write(
        instruments.join("simtel.yml"),
        format!("instrument_id: {INSTRUMENT}\nauth:\n  type: secret\n  api_key_hash: \"sha256:{}\"\n", "ab".repeat(32)),
    )
    .unwrap();
    let dir_flag = instruments.display().to_string();
    let flags: Vec<&str> = if auth {
        vec!["--jwt-secret", KEY, "--instruments-dir", &dir_flag]
    } else {
        vec!["--instruments-dir", &dir_flag]
    };
    let herald = InProcessHerald::start(&db_url, &flags).await;
    let grpc = herald.grpc.clone();
    let deadline = Instant::now() + limit;
    let cpu = process_cpu();
    let run = if auth {
        drive(clients, requests, deadline, || trace_client(&grpc), export_with_token(token.clone()), span_count).await
    } else {
        drive(clients, requests, deadline, || trace_client(&grpc), crate::load::export_traces, span_count).await
    };
    let cpu = process_cpu().saturating_sub(cpu);
    herald.stop().await;
    assert_eq!(run.refused_requests, 0, "auth {auth}: exports were refused; the comparison would be meaningless");
    (run, cpu)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub async fn run(seconds: u64, rounds: usize, clients: usize, ticks_per_request: usize) {
    let load_before = load_average();
    let requests = Arc::new(telescope_requests(60_000 * seconds as usize, ticks_per_request));
    let keys = KeySet::parse(KEY).expect("one key");
    let token: Arc<str> = keys.issue(INSTRUMENT, None, Duration::from_secs(86_400)).expect("signs").0.into();
    let limit = Duration::from_secs(seconds);

    println!("### Auth overhead: durable ingest with auth on vs off (SQLite, spans stored)\n");
    println!(
        "{clients} concurrent gRPC exporters on loopback, {ticks_per_request} telescope ticks per request \
         (≈ {} spans/request), {seconds} s per run, {rounds} rounds alternating which side goes first, each run \
         on a fresh store. With auth on every export carries `authorization: Bearer <token>` (HS256, signed with \
         the first `JWT_SECRET` key for instrument {INSTRUMENT}); the herald verifies it, attributes every record \
         to the token's instrument and checks entity ownership in the commit.\n",
        span_count(&requests[0])
    );
    println!("| round | auth | spans/s | CPU µs/span | ack p50 | ack p99 |\n|---:|---|---:|---:|---:|---:|");
    let (mut off, mut on, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cpu_off, mut cpu_on, mut cpu_ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let order = if round % 2 == 1 { [false, true] } else { [true, false] };
        let (mut pair, mut cpu_pair) = ([0.0; 2], [0.0; 2]);
        for auth in order {
            let (r, cpu) = one_run(auth, requests.clone(), clients, limit, &token).await;
            let spans_per_s = rate(r.acked_spans, r.elapsed);
            let cpu_per_span = cpu.as_secs_f64() * 1e6 / r.acked_spans.max(1) as f64;
            println!(
                "| {round} | {} | {spans_per_s:.0} | {cpu_per_span:.2} | {:.2?} | {:.2?} |",
                if auth { "on" } else { "off" },
                percentile(&r.latencies, 0.5),
                percentile(&r.latencies, 0.99)
            );
            pair[auth as usize] = spans_per_s;
            cpu_pair[auth as usize] = cpu_per_span;
        }
        off.push(pair[0]);
        on.push(pair[1]);
        ratios.push(pair[1] / pair[0]);
        cpu_off.push(cpu_pair[0]);
        cpu_on.push(cpu_pair[1]);
        // Throughput-equivalent: spans per CPU-second with auth on, over the same with it off.
        cpu_ratios.push(cpu_pair[0] / cpu_pair[1]);
    }
    let (m_off, m_on) = (median(off), median(on));
    let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ratios.iter().copied().fold(0.0, f64::max);
    println!(
        "\nMedian spans/s: auth off {m_off:.0}, auth on {m_on:.0}; ratio of the medians on/off **{:.3}**; \
         median of the per-round ratios {:.3} (min {min:.3}, max {max:.3}).",
        m_on / m_off,
        median(ratios)
    );
    let (c_off, c_on) = (median(cpu_off), median(cpu_on));
    println!(
        "Median CPU per acknowledged span (the whole process: herald and exporters): auth off {c_off:.2} µs, \
         auth on {c_on:.2} µs; spans per CPU-second on/off **{:.3}**; median of the per-round ratios {:.3}.",
        c_off / c_on,
        median(cpu_ratios)
    );

    // The per-export work auth adds, alone on one thread: verify the token, attribute records.
    let n = 20_000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(keys.verify(&token).expect("valid"));
    }
    let verify = t.elapsed() / n;
    let mut sample: Vec<ExportTraceServiceRequest> = requests.iter().take(200).cloned().collect();
    let t = Instant::now();
    for r in &mut sample {
        helix_model::attribution::attribute_traces(r, INSTRUMENT).expect("own records");
    }
    let attribute = t.elapsed() / sample.len() as u32;
    std::hint::black_box(sample);
    println!(
        "Per export, alone on one thread: token verification {verify:.2?}, attribution of its records {attribute:.2?}.\nLoad average (1, 5, 15 min) before: {load_before}; after: {}.\n",
        load_average()
    );
}
