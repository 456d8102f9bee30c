//! `helix-bench logs loki`: the Loki-compatible API's reads at size (SQLite). Pipeline-like log lines (a dozen services, a
//! few processes each, lines in traces of eight with the entity named on most, a severity mix,
//! bodies from templates whose words range from common to rare) are written through
//! `Store::write` over 24 hours of timestamps, up to `--lines`. The reads go through the
//! herald's router in process (parsing, store, rendering; no socket): the Loki-compatible
//! `query_range` with a selector and a line filter (the target), a label filter on the entity
//! and the log volume query. Each is timed at 1 % of the size (the baseline, same run) and at
//! full size, rounds interleaved. (`helix-bench logs reads` times the store's own searches.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use helix_model::{LogRecorded, Metadata};
use helix_store::{SqliteStore, Store, WriteBatch, WriteRecord};
use herald::api;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::load::{encode, percentile, rate};

const SERVICES: [&str; 12] = [
    "acquire",
    "search",
    "cluster",
    "classify",
    "calibrate",
    "convert",
    "image",
    "catalog",
    "publish",
    "archive",
    "replicate",
    "monitor",
];
const DAY_NS: i64 = 86_400_000_000_000;
const GROUP: usize = 8;

/// One generated line; `group` numbers its trace of eight (entity `cand-{group}`).
fn line(rng: &mut StdRng, i: usize, ts: i64) -> LogRecorded {
    let group = i / GROUP;
    let service = SERVICES[group % SERVICES.len()];
    let traced = group % 10 < 7;
    let (severity, number) = match rng.random_range(0..100) {
        0..60 => ("INFO", 9),
        60..85 => ("DEBUG", 5),
        85..95 => ("WARNING", 13),
        95..99 => ("ERROR", 17),
        _ => ("CRITICAL", 21),
    };
    let blk: u32 = rng.random_range(0..100_000);
    let beam: u32 = rng.random_range(0..1024);
    let body = match rng.random_range(0..10_000) {
        0..4_000 => format!("processed block {blk} beam {beam} in {} ms", rng.random_range(1..900)),
        4_000..6_000 => format!(
            "candidate cand-{group} found at dm={:.1} snr={:.1}",
            rng.random_range(1.0..2000.0),
            rng.random_range(5.0..50.0)
        ),
        6_000..8_000 => format!("wrote {} bytes to /data/{service}/{blk}.h5", rng.random_range(1_000..90_000_000)),
        8_000..9_500 => format!("queue depth {}, {} workers busy", rng.random_range(0..500), rng.random_range(0..64)),
        9_500..9_900 => {
            format!("timeout contacting archive-{} after {} s, retrying", beam % 8, rng.random_range(1..30))
        }
        9_900..9_990 => format!(
            "checksum mismatch on /data/{blk}.h5: expected {:08x} got {:08x}",
            rng.random::<u32>(),
            rng.random::<u32>()
        ),
        _ => format!("calibrator lost lock on beam {beam}"),
    };
    // The first two lines of a trace come before the entity is named (set_entity_id()).
    let entity = (traced && i % GROUP >= 2).then(|| format!("cand-{group}"));
    let mut attributes = Metadata::new();
    attributes.insert("code.function".into(), "run".into());
    if let Some(e) = &entity {
        attributes.insert("helix_entity_id".into(), e.clone());
    }
    LogRecorded {
        timestamp_ns: ts,
        observed_ns: ts + 1_000,
        severity: severity.into(),
        severity_number: number,
        body,
        trace_id: traced.then(|| format!("{:032x}", 0x10_0000_0000_u128 + group as u128)),
        span_id: traced.then(|| format!("{:016x}", 0x20_0000_u64 + group as u64)),
        entity_id: entity,
        instrument_id: Some(if group % 10 == 9 { "HIRAX" } else { "CHIME" }.into()),
        process_name: Some(format!("CHIME/{service}/{}", group % 3)),
        service_name: Some(service.into()),
        source: Some("python".into()),
        attributes,
        resource: Metadata::from([("service.name".to_owned(), service.to_owned())]),
    }
}

struct Loader {
    rng: StdRng,
    loaded: usize,
    /// Lines are spread evenly over a day at the full size.
    spacing_ns: i64,
    first_ns: i64,
}

impl Loader {
    fn ts(&self, i: usize) -> i64 {
        self.first_ns + i as i64 * self.spacing_ns
    }

    async fn load_to(&mut self, store: &SqliteStore, target: usize) {
        let t = Instant::now();
        let start = self.loaded;
        while self.loaded < target {
            let n = (target - self.loaded).min(20_000);
            let records = (self.loaded..self.loaded + n)
                .map(|i| {
                    let ts = self.ts(i);
                    WriteRecord::Log(line(&mut self.rng, i, ts))
                })
                .collect();
            store.write(&WriteBatch::of(records)).await.expect("write");
            self.loaded += n;
            eprint!("\rloaded {} log lines…", self.loaded);
        }
        eprintln!(" ({:.0} lines/s)", rate(self.loaded - start, t.elapsed()));
    }
}

/// GET through the router; panics unless 200. Returns the body.
async fn get(app: &axum::Router, uri: &str) -> serde_json::Value {
    serde_json::from_slice(&crate::load::get_bytes(app, uri).await).unwrap()
}

/// How many entries (log lines or samples) an answer holds.
fn entries(body: &serde_json::Value) -> usize {
    if let Some(logs) = body["logs"].as_array() {
        return logs.len();
    }
    let result = body["data"]["result"].as_array().map(Vec::as_slice).unwrap_or_default();
    result.iter().map(|s| s["values"].as_array().map_or(1, Vec::len)).sum()
}

/// (name, request URI) of each timed read over the loaded window `[from, to)`.
fn reads(from: i64, to: i64, middle_group: usize) -> Vec<(&'static str, String)> {
    let range = |q: &str| format!("/loki/api/v1/query_range?query={}&start={from}&end={to}&limit=100", encode(q));
    let entity = format!("cand-{middle_group}");
    vec![
        (
            "Loki: `{service_name=\"search\"} |= \"timeout\"` (4 % of lines)",
            range(r#"{service_name="search"} |= "timeout""#),
        ),
        (
            "Loki: `{service_name=\"search\"} |= \"checksum mismatch\"` (0.9 %)",
            range(r#"{service_name="search"} |= "checksum mismatch""#),
        ),
        (
            "Loki: `{service_name=\"search\"} |= \"lost lock\"` (0.1 %)",
            range(r#"{service_name="search"} |= "lost lock""#),
        ),
        (
            "Loki: `{service_name=\"search\"} |= \"no such words\"` (none)",
            range(r#"{service_name="search"} |= "no such words""#),
        ),
        (
            "Loki: `{service_name=\"search\", level=\"error\"} |= \"timeout\"`",
            range(r#"{service_name="search", level="error"} |= "timeout""#),
        ),
        ("Loki: `{service_name=\"search\"}` (selector only)", range(r#"{service_name="search"}"#)),
        (
            "Loki: `{helix_instrument_id=\"CHIME\"} | helix_entity_id = \"…\"` (one entity)",
            range(&format!(r#"{{helix_instrument_id="CHIME"}} | helix_entity_id = "{entity}""#)),
        ),
        (
            "Loki: `sum by (level) (count_over_time({service_name=\"search\"}[1h]))` (instant, scan-bounded)",
            format!(
                "/loki/api/v1/query?query={}&time={to}",
                encode(r#"sum by (level) (count_over_time({service_name="search"}[1h]))"#)
            ),
        ),
    ]
}

type Timings = Vec<(&'static str, Vec<Duration>, usize)>;

async fn time_reads(app: &axum::Router, reads: &[(&'static str, String)], rounds: usize) -> Timings {
    let mut out: Timings = reads.iter().map(|(name, _)| (*name, Vec::new(), 0)).collect();
    for _ in 0..rounds {
        for (k, (_, uri)) in reads.iter().enumerate() {
            let t = Instant::now();
            let body = get(app, uri).await;
            out[k].1.push(t.elapsed());
            out[k].2 = entries(&body);
        }
    }
    out
}

pub async fn run(target: usize, rounds: usize, db: Option<std::path::PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let path = db.unwrap_or_else(|| dir.path().join("logs.db"));
    let store = Arc::new(SqliteStore::open(&path, helix_store::SqliteOptions::default()).unwrap());
    let now = crate::load::now_ns();
    let spacing_ns = (DAY_NS / target.max(1) as i64).max(1);
    let mut loader = Loader { rng: StdRng::seed_from_u64(10), loaded: 0, spacing_ns, first_ns: now - DAY_NS };
    let app = crate::load::api_app(store.clone());
    let window = |loader: &Loader| (loader.first_ns, loader.ts(loader.loaded));
    let middle = |loader: &Loader| loader.loaded / 2 / GROUP;

    let small = (target / 100).max(10_000);
    loader.load_to(&store, small).await;
    let (from, to) = window(&loader);
    let base_reads = reads(from, to, middle(&loader));
    let load_before = crate::load::load_average();
    let base = time_reads(&app, &base_reads, rounds).await;
    let t = Instant::now();
    loader.load_to(&store, target).await;
    let load_time = t.elapsed();
    let (from, to) = window(&loader);
    let full_reads = reads(from, to, middle(&loader));
    // Warm the page cache the way a running herald's is, then interleave the timed rounds.
    let _ = time_reads(&app, &full_reads, 1).await;
    let full = time_reads(&app, &full_reads, rounds).await;
    let load_after = crate::load::load_average();
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);

    println!("### Loki query_range at {} lines (SQLite)\n", loader.loaded);
    println!(
        "Lines written through `Store::write` in 20 000-line batches ({:.0} lines/s while loading), 24 h of \
         timestamps; database file {:.1} GB. Reads through the herald's router in process, {rounds} interleaved \
         rounds; Loki queries over the whole window, `limit=100`, newest first; scan budget {}. Baseline: the same \
         reads in the same run at {small} lines. Load average (1, 5, 15 min) before the baseline reads: {load_before}; \
         after the full-size reads: {load_after}.\n",
        rate(loader.loaded - small, load_time),
        bytes as f64 / 1e9,
        api::loki::DEFAULT_SCAN_LINES,
    );
    println!(
        "| read | entries | p50 | p95 | baseline p95 at {small} lines | p95 ratio |\n|---|---:|---:|---:|---:|---:|"
    );
    for ((name, mut d, n), (_, mut b, _)) in full.into_iter().zip(base) {
        d.sort();
        b.sort();
        let (p95, b95) = (percentile(&d, 0.95), percentile(&b, 0.95));
        println!(
            "| {} | {n} | {:.2?} | {p95:.2?} | {b95:.2?} | {:.1} |",
            // A `|` inside a table cell ends it.
            name.replace('|', "\\|"),
            percentile(&d, 0.5),
            p95.as_secs_f64() / b95.as_secs_f64().max(1e-9)
        );
    }
    println!();
}
