//! `helix-bench traces`: reads of the span store at size. Telescope traffic is loaded through
//! `Store::write` (span records and entity rows, as the herald writes them) up to `--spans`;
//! a 100-span trace and a few traces with rare values are written early (the oldest data,
//! the worst case for a newest-first search). The same reads are timed twice in the run: at
//! 1 % of the size (the baseline) and at full size, so the table shows how they scale.

use std::time::{Duration, Instant};

use helix_model::interpret::interpret_traces;
use helix_model::{span_records, SpanRecorded};
use helix_store::{PageRequest, SqliteStore, Store, TraceFilter, WriteBatch, WriteRecord};
use herald::simulate::Telescope;

use crate::load::{percentile, rate, records_of};

const RARE_SERVICE: &str = "rare-service";
const RARE_NAME: &str = "rare-step";

/// The 100-span trace (a root and 99 children) and two traces with rare values, made from a
/// telescope span so they look like the rest.
fn special_spans(template: &SpanRecorded) -> (String, Vec<SpanRecorded>) {
    special_spans_of(template, 1)
}

fn special_spans_of(template: &SpanRecorded, n: u128) -> (String, Vec<SpanRecorded>) {
    let trace_id = format!("{:032x}", 0xfeed_u128 << 64 | n);
    let mut out = Vec::new();
    for i in 0..100u64 {
        let mut s = template.clone();
        s.trace_id = trace_id.clone();
        s.span_id = format!("{:016x}", 0xfeed_0000 + (n as u64) * 1_000 + i + 1);
        s.parent_span_id = (i > 0).then(|| format!("{:016x}", 0xfeed_0001_u64 + (n as u64) * 1_000));
        s.start_ns = template.start_ns + i as i64 * 1_000;
        s.end_ns = s.start_ns + 500;
        s.role = helix_model::SpanRole::Span;
        s.entity_id = None;
        out.push(s);
    }
    for (k, (service, name)) in [(RARE_SERVICE, "step"), ("svc", RARE_NAME)].into_iter().enumerate() {
        let mut s = template.clone();
        s.trace_id = format!("{:032x}", 0xbeef_u128 << 64 | k as u128);
        s.span_id = format!("{:016x}", 0xbeef_0000 + k as u64 + 1);
        s.parent_span_id = None;
        s.service_name = Some(service.into());
        s.name = name.into();
        s.role = helix_model::SpanRole::Span;
        s.entity_id = None;
        out.push(s);
    }
    (trace_id, out)
}

struct Loader {
    telescope: Telescope,
    loaded: usize,
    first_ns: i64,
    last_ns: i64,
}

impl Loader {
    /// Write telescope batches until `target` spans are stored.
    async fn load_to(&mut self, store: &SqliteStore, target: usize) {
        let t = Instant::now();
        let start = self.loaded;
        while self.loaded < target {
            let mut batch = WriteBatch::default();
            let mut spans = 0;
            while spans < 20_000 {
                for r in self.telescope.tick() {
                    let records = span_records(&r, &interpret_traces(&r));
                    spans += records.len();
                    for s in &records {
                        self.first_ns = self.first_ns.min(s.start_ns);
                        self.last_ns = self.last_ns.max(s.start_ns);
                    }
                    batch.records.extend(records_of(&r));
                    batch.records.extend(records.into_iter().map(WriteRecord::Span));
                }
            }
            store.write(&batch).await.unwrap();
            self.loaded += spans;
            eprint!("\rloaded {} spans…", self.loaded);
        }
        eprintln!(" ({:.0} spans/s)", rate(self.loaded - start, t.elapsed()));
    }
}

/// Named reads and their latencies.
type Timings = Vec<(String, Vec<Duration>)>;

async fn reads(store: &SqliteStore, trace_id: &str, window: (i64, i64), queries: usize) -> Timings {
    let mut out: Timings = Vec::new();
    let mut time = |name: &str, d: Duration| match out.iter_mut().find(|(n, _)| n == name) {
        Some((_, v)) => v.push(d),
        None => out.push((name.to_owned(), vec![d])),
    };
    let f = TraceFilter::default;
    let (from, to) = window;
    let mid = from + (to - from) / 2;
    let searches: Vec<(&str, TraceFilter)> = vec![
        ("search: newest traces, no filter", f()),
        ("search: common service (`cluster`)", TraceFilter { service_name: Some(common_service()), ..f() }),
        ("search: rare service (2 traces, the oldest)", TraceFilter { service_name: Some(RARE_SERVICE.into()), ..f() }),
        ("search: rare span name", TraceFilter { span_name: Some(RARE_NAME.into()), ..f() }),
        ("search: instrument", TraceFilter { instrument_id: Some(herald::simulate::INSTRUMENT.into()), ..f() }),
        ("search: errors only", TraceFilter { errors_only: true, ..f() }),
        ("search: min duration 1 s", TraceFilter { min_duration_ns: Some(1_000_000_000), ..f() }),
        (
            "search: time window (middle 10 %)",
            TraceFilter { from_ns: Some(mid), to_ns: Some(mid + (to - from) / 10), ..f() },
        ),
    ];
    for _ in 0..queries {
        let t = Instant::now();
        let got = store.trace(trace_id, 10_000).await.unwrap().expect("the 100-span trace");
        for s in &got.spans {
            herald::api::traces::span_view(s).expect("renders");
        }
        time("trace: 100 spans by ID, rendered as the API does", t.elapsed());
        assert_eq!(got.spans.len(), 100);
        for (name, filter) in &searches {
            let t = Instant::now();
            let page = store.traces(filter, &PageRequest::first(20)).await.unwrap();
            time(name, t.elapsed());
            std::hint::black_box(page);
        }
    }
    out
}

/// A service every tick has (the clusterer).
fn common_service() -> String {
    "cluster".into()
}

pub async fn run(target: usize, queries: usize, db: Option<std::path::PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let path = db.unwrap_or_else(|| dir.path().join("traces.db"));
    let opts = helix_store::SqliteOptions {
        span_retention: helix_store::SpanRetention { max_age: None, max_bytes: None },
        ..Default::default()
    };
    let store = SqliteStore::open(&path, opts).unwrap();
    let mut loader = Loader { telescope: Telescope::new(8, 13), loaded: 0, first_ns: i64::MAX, last_ns: 0 };
    // The special traces first: the oldest data.
    let first = loader.telescope.tick();
    let template = span_records(&first[0], &interpret_traces(&first[0])).remove(0);
    let (trace_id, special) = special_spans(&template);
    store.write(&WriteBatch::of(special.into_iter().map(WriteRecord::Span).collect())).await.unwrap();

    let small = (target / 100).max(20_000);
    loader.load_to(&store, small).await;
    let base = reads(&store, &trace_id, (loader.first_ns, loader.last_ns), queries).await;
    let t = Instant::now();
    loader.load_to(&store, target).await;
    let load_time = t.elapsed();
    let full = reads(&store, &trace_id, (loader.first_ns, loader.last_ns), queries).await;
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);

    println!("### Trace reads at {} spans (SQLite)\n", loader.loaded);
    println!(
        "Telescope traffic written through `Store::write` with its entity rows ({:.0} spans/s while loading); \
         database file {:.1} GB. {queries} runs of each read, through `Store` (the trace also rendered per span \
         as `/api/v1/trace/{{id}}` does); searches ask for the first page of 20. Baseline: the same reads in the \
         same run at {small} spans.\n",
        rate(loader.loaded - small, load_time),
        bytes as f64 / 1e9
    );
    println!("| read | p50 | p95 | baseline p95 at {small} spans | p95 ratio |\n|---|---:|---:|---:|---:|");
    for ((name, mut d), (_, mut b)) in full.into_iter().zip(base) {
        d.sort();
        b.sort();
        let (p95, b95) = (percentile(&d, 0.95), percentile(&b, 0.95));
        println!(
            "| {name} | {:.2?} | {p95:.2?} | {b95:.2?} | {:.1} |",
            percentile(&d, 0.5),
            p95.as_secs_f64() / b95.as_secs_f64().max(1e-9)
        );
    }
    println!();
    table_sizes(&path, loader.loaded);
}

/// Bytes per span of each span-store table and index (SQLite's `dbstat`, when compiled in).
pub fn table_sizes(path: &std::path::Path, spans: usize) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let Ok(mut stmt) = conn.prepare("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC") else {
        return;
    };
    let rows: Vec<(String, i64)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap();
    println!("| table or index | bytes/span |\n|---|---:|");
    for (name, bytes) in rows.iter().filter(|(n, _)| n.contains("span") || n.contains("trace")) {
        println!("| {name} | {:.1} |", *bytes as f64 / spans.max(1) as f64);
    }
    println!();
}

/// `helix-bench span-directory`: see `Bench::SpanDirectory`.
pub async fn directory(target: usize, cap: usize, rounds: usize, queries: usize, db: Option<std::path::PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let path = db.unwrap_or_else(|| dir.path().join("directory.db"));
    let opts = |cap: usize| helix_store::SqliteOptions {
        span_retention: helix_store::SpanRetention { max_age: None, max_bytes: None },
        span_directory_bytes: cap,
        ..Default::default()
    };
    let default_cap = helix_store::sqlite::DEFAULT_SPAN_DIRECTORY_BYTES;
    let (old, recent) = {
        let store = SqliteStore::open(&path, opts(default_cap)).unwrap();
        let mut loader = Loader { telescope: Telescope::new(8, 13), loaded: 0, first_ns: i64::MAX, last_ns: 0 };
        let first = loader.telescope.tick();
        let template = span_records(&first[0], &interpret_traces(&first[0])).remove(0);
        // Two 100-span traces: the oldest data, and the newest.
        let (old, spans) = special_spans_of(&template, 1);
        store.write(&WriteBatch::of(spans.into_iter().map(WriteRecord::Span).collect())).await.unwrap();
        loader.load_to(&store, target).await;
        let mut late = template.clone();
        late.start_ns = loader.last_ns;
        let (recent, spans) = special_spans_of(&late, 2);
        store.write(&WriteBatch::of(spans.into_iter().map(WriteRecord::Span).collect())).await.unwrap();
        (old, recent)
    };
    let traces: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT count(*) FROM span_traces", [], |r| r.get(0))
        .unwrap();
    // Per cap: open times, directory stats, by-ID latencies of the old and the recent trace.
    type Runs = (Vec<Duration>, Option<helix_store::SpanDirectoryStats>, Vec<Duration>, Vec<Duration>);
    let mut runs: Vec<(usize, Runs)> = vec![(default_cap, Default::default()), (cap, Default::default())];
    for round in 0..rounds {
        // Interleaved: the order alternates every round.
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (c, (opens, stats, olds, recents)) = &mut runs[i];
            let t = Instant::now();
            let store = SqliteStore::open(&path, opts(*c)).unwrap();
            opens.push(t.elapsed());
            *stats = store.span_directory();
            for _ in 0..queries {
                for (id, out) in [(&old, &mut *olds), (&recent, &mut *recents)] {
                    let t = Instant::now();
                    let got = store.trace(id, 10_000).await.unwrap().expect("the 100-span trace");
                    out.push(t.elapsed());
                    assert_eq!(got.spans.len(), 100);
                }
            }
        }
    }
    let mb = |b: u64| b as f64 / (1u64 << 20) as f64;
    println!("### Span directory at {target} spans ({traces} traces, SQLite)\n");
    println!(
        "{rounds} opens per cap, interleaved; after each open {queries} reads of each 100-span trace by ID \
         (`Store::trace`), the oldest one (written first) and the newest. Baseline: the default cap \
         ({:.0} MiB, every trace held).\n",
        mb(default_cap as u64)
    );
    println!(
        "| cap | open (median) | directory | entries held | filtered blocks | old trace p50 / p95 | recent trace p50 / p95 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut base: Option<(Duration, Duration, Duration)> = None;
    for (c, (mut opens, stats, mut olds, mut recents)) in runs {
        opens.sort();
        olds.sort();
        recents.sort();
        let s = stats.unwrap_or_default();
        let open = percentile(&opens, 0.5);
        let (o95, r95) = (percentile(&olds, 0.95), percentile(&recents, 0.95));
        println!(
            "| {:.2} MiB | {open:.2?} | {:.0} KiB | {} | {} | {:.2?} / {o95:.2?} | {:.2?} / {r95:.2?} |",
            mb(c as u64),
            s.bytes as f64 / 1024.0,
            s.entries,
            s.filtered_blocks,
            percentile(&olds, 0.5),
            percentile(&recents, 0.5),
        );
        match base {
            None => base = Some((open, o95, r95)),
            Some((b_open, b_o95, b_r95)) => {
                let r = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
                println!(
                    "\nRatios to the baseline: open {:.2}, old trace p95 {:.2}, recent trace p95 {:.2}; \
                     open times of the small cap, sorted: {:.2?}",
                    r(open, b_open),
                    r(o95, b_o95),
                    r(r95, b_r95),
                    opens
                );
            }
        }
    }
    println!();
}
