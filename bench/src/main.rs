//! `helix-bench`: the herald's benchmarks, each measured against a baseline in the same run.
//! `interpret` — decode + interpret + resolve, per core, vs decode alone;
//! `ingest`    — sustained durable ingest through a real herald over loopback gRPC, vs the
//!               same records written straight into the store;
//! `lineage`   — ancestors/descendants on a 1 000 000-entity DAG, vs a recursive walk over
//!               `parent_ids` (the older herald's graph query).
//! `postgres …` — the same questions on PostgreSQL (see `postgres.rs`).
//! `auth`      — durable ingest with token auth on vs off, interleaved rounds (see `auth.rs`).
//! Results print as Markdown for `docs/benchmarks.md`.

mod auth;
mod causes;
mod flags;
mod load;
mod logs;
mod loki;
mod notify;
mod postgres;
mod traces;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use helix_model::interpret::{interpret_traces, SpanClass};
use helix_model::span_count;
use helix_store::{Direction, LineageQuery, SqliteStore, Store, WriteBatch, WriteRecord};
use herald::metrics::Metrics;
use herald::resolve::Resolver;
use herald::simulate::Telescope;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use rand::{Rng, SeedableRng};

use load::{now_ns, percentile, rate, records_of, telescope_requests, through_herald, HeraldRun};

// Ingest allocates many small strings per span; mimalloc halves the time glibc's malloc takes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "helixobs herald benchmarks (results as Markdown on stdout)")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Decode + interpret + resolve on one thread, vs decode alone.
    Interpret {
        #[arg(long, default_value_t = 400_000)]
        spans: usize,
    },
    /// Durable ingest through a real herald (SQLite) over loopback gRPC.
    Ingest {
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Concurrent exporters (a site runs many pipeline processes).
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// Telescope ticks per export request (≈ 8 spans per beam per tick).
        #[arg(long, default_value_t = 8)]
        ticks_per_request: usize,
    },
    /// Trace reads on a large span store (SQLite): one 100-span trace, and trace searches.
    /// The 10 M-span run of docs/benchmarks.md: `helix-bench traces --spans 10000000`.
    Traces {
        /// Spans to load (telescope mix) before the timed reads.
        #[arg(long, default_value_t = 1_000_000)]
        spans: usize,
        #[arg(long, default_value_t = 200)]
        queries: usize,
        /// Keep the database file here instead of a temporary directory.
        #[arg(long)]
        db: Option<std::path::PathBuf>,
    },
    /// The SQLite span directory under its cap: start-up (open) time, the directory's memory and
    /// trace-by-ID latency of the oldest and a recent trace, with the default cap (the
    /// baseline: every trace held) and with `--cap` (the old trace evicted), interleaved rounds.
    SpanDirectory {
        /// Spans to load (telescope mix).
        #[arg(long, default_value_t = 1_000_000)]
        spans: usize,
        /// The small cap, in bytes.
        #[arg(long, default_value_t = 1 << 20)]
        cap: usize,
        /// Opens per cap (alternating).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Reads of each trace per open.
        #[arg(long, default_value_t = 200)]
        queries: usize,
        /// Keep the database file here instead of a temporary directory.
        #[arg(long)]
        db: Option<std::path::PathBuf>,
    },
    /// Lineage queries on a large DAG in SQLite.
    Lineage {
        #[arg(long, default_value_t = 1_000_000)]
        entities: usize,
        #[arg(long, default_value_t = 500)]
        queries: usize,
    },
    /// Flags on the lineage DAG plus a block with 100 000 descendants: flagging, the banner,
    /// the impact walk, and ingest with 100 active flags vs none (interleaved rounds).
    Flags {
        #[arg(long, default_value_t = 1_000_000)]
        entities: usize,
        #[arg(long, default_value_t = 500)]
        queries: usize,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Rounds of the impact reads (baseline walk, count walk, endpoint, CSV), interleaved.
        #[arg(long, default_value_t = 20)]
        impact_rounds: usize,
        /// Run on PostgreSQL: a server URL where the benchmark creates (and drops) its database.
        #[arg(long)]
        pg_url: Option<String>,
    },
    /// Root-cause hints (`/api/v1/errors/{class}/causes`) over 24 h of telescope traffic with
    /// its error events, for the most frequent classes.
    Causes {
        /// Telescope ticks spread over the 24 hours (8 beams; about 32 entities each).
        #[arg(long, default_value_t = 30_000)]
        ticks: usize,
        /// Error classes timed (the most frequent first).
        #[arg(long, default_value_t = 4)]
        classes: usize,
        #[arg(long, default_value_t = 20)]
        queries: usize,
    },
    /// Log store: durable log ingest alone, spans alone and both at once; and log reads with
    /// `--lines` stored (5 000 000 in docs/benchmarks.md).
    Logs {
        #[command(subcommand)]
        what: LogBench,
    },
    /// Durable ingest with auth on (a verified token on every export) vs off, interleaved rounds.
    Auth {
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        #[arg(long, default_value_t = 32)]
        clients: usize,
        #[arg(long, default_value_t = 8)]
        ticks_per_request: usize,
    },
    /// A burst of error events across many classes with notifications on vs off (docs/benchmarks.md).
    Notifications {
        #[arg(long, default_value_t = 10_000)]
        events: usize,
        #[arg(long, default_value_t = 100)]
        classes: usize,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Runs after the rounds in which Slack fails (503) until 3 s after the burst is acknowledged.
        #[arg(long, default_value_t = 0)]
        outages: usize,
        /// Rounds of the same burst written straight into the SQLite store (no gRPC, no
        /// dispatcher): the writer's own cost of the outbox in CPU time and bytes written.
        #[arg(long, default_value_t = 0)]
        store_rounds: usize,
    },
    /// PostgreSQL: ingest vs bare COPY vs the older herald's writes; lineage vs GIN-indexed CTE.
    Postgres {
        #[command(subcommand)]
        what: postgres::PgBench,
    },
}

#[derive(Subcommand)]
enum LogBench {
    Ingest {
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        #[arg(long, default_value_t = 16)]
        log_clients: usize,
        #[arg(long, default_value_t = 16)]
        span_clients: usize,
        /// Spans per second in the paced "both at once" phase (the telescope's spans beside
        /// its logs: five lines per traced step make 50 000 lines/s about 10 000 spans/s).
        #[arg(long, default_value_t = 10_000.0)]
        span_rate: f64,
        /// Which paths to run, comma-separated: `logs` (logs alone), `spans` (spans alone),
        /// `both` (both unpaced), `paced` (spans at --span-rate beside logs). All by default;
        /// one path is what a profile or a quick before/after wants.
        #[arg(long, value_delimiter = ',', default_value = "logs,spans,both,paced")]
        paths: Vec<logs::IngestPath>,
    },
    /// The Loki-compatible API's reads (selector + line filter, entity label filter, log volume)
    /// at `--lines` stored lines, against a baseline at 1 % of that in the same run.
    Loki {
        #[arg(long, default_value_t = 5_000_000)]
        lines: usize,
        /// Interleaved rounds of every read.
        #[arg(long, default_value_t = 50)]
        rounds: usize,
        /// Keep the database file here instead of a temporary directory.
        #[arg(long)]
        db: Option<std::path::PathBuf>,
    },
    Reads {
        #[arg(long, default_value_t = 5_000_000)]
        lines: usize,
        #[arg(long, default_value_t = 200)]
        queries: usize,
        #[arg(long)]
        db: Option<std::path::PathBuf>,
    },
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match cli.bench {
        Bench::Interpret { spans } => rt.block_on(interpret(spans)),
        Bench::Ingest { seconds, clients, ticks_per_request } => {
            rt.block_on(ingest(seconds, clients, ticks_per_request))
        }
        Bench::Lineage { entities, queries } => rt.block_on(lineage(entities, queries)),
        Bench::Causes { ticks, classes, queries } => rt.block_on(causes::run(ticks, classes, queries)),
        Bench::Flags { entities, queries, rounds, impact_rounds, pg_url } => {
            rt.block_on(flags::run(entities, queries, rounds, impact_rounds, pg_url))
        }
        Bench::Traces { spans, queries, db } => rt.block_on(traces::run(spans, queries, db)),
        Bench::SpanDirectory { spans, cap, rounds, queries, db } => {
            rt.block_on(traces::directory(spans, cap, rounds, queries, db))
        }
        Bench::Auth { seconds, rounds, clients, ticks_per_request } => {
            rt.block_on(auth::run(seconds, rounds, clients, ticks_per_request))
        }
        Bench::Postgres { what } => rt.block_on(postgres::run(what)),
        Bench::Notifications { events, classes, rounds, clients, outages, store_rounds } => {
            rt.block_on(notify::run(events, classes, rounds, clients, outages));
            rt.block_on(notify::store_rounds(events, classes, store_rounds));
        }
        Bench::Logs { what: LogBench::Ingest { seconds, log_clients, span_clients, span_rate, paths } } => {
            rt.block_on(logs::ingest(seconds, log_clients, span_clients, span_rate, &paths))
        }
        Bench::Logs { what: LogBench::Reads { lines, queries, db } } => rt.block_on(logs::reads(lines, queries, db)),
        Bench::Logs { what: LogBench::Loki { lines, rounds, db } } => rt.block_on(loki::run(lines, rounds, db)),
    }
}

/// Telescope traffic encoded as the exporters would send it.
fn encoded_traffic(target_spans: usize) -> (Vec<Vec<u8>>, usize) {
    let mut telescope = Telescope::new(8, 7);
    let mut out = Vec::new();
    let mut spans = 0;
    while spans < target_spans {
        // Merge a few ticks per request, as a batching exporter would.
        let mut merged = ExportTraceServiceRequest::default();
        for _ in 0..4 {
            for r in telescope.tick() {
                spans += span_count(&r);
                merged.resource_spans.extend(r.resource_spans);
            }
        }
        out.push(merged.encode_to_vec());
    }
    (out, spans)
}

async fn interpret(target: usize) {
    let (bodies, spans) = encoded_traffic(target);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("b.db"), Default::default()).unwrap());
    let resolver = Resolver::new(1_000_000, store, Arc::new(Metrics::new()));

    // Baseline: protobuf decode only.
    let t = Instant::now();
    let mut n = 0;
    for b in &bodies {
        n += ExportTraceServiceRequest::decode(b.as_slice()).unwrap().resource_spans.len();
    }
    let decode = t.elapsed();
    assert!(n > 0);

    // Decode + interpret + resolve (links appended; TraceStore in memory, store fallback on misses).
    let t = Instant::now();
    let mut entity_spans = 0;
    for b in &bodies {
        let mut req = ExportTraceServiceRequest::decode(b.as_slice()).unwrap();
        let interpretation = interpret_traces(&req);
        resolver.link_parents(&mut req, &interpretation).await.unwrap();
        resolver.remember(Resolver::creations(&interpretation));
        entity_spans += interpretation.spans.iter().filter(|s| !matches!(s.class, SpanClass::Passthrough)).count();
    }
    let full = t.elapsed();
    println!("### Decode + interpret + resolve (one thread, no store writes)\n");
    println!("{spans} telescope spans ({entity_spans} entity spans) in {} requests.\n", bodies.len());
    println!("| step | spans/s per core | time |\n|---|---:|---:|");
    println!("| baseline: protobuf decode only | {:.0} | {:.2?} |", rate(spans, decode), decode);
    println!("| decode + interpret + resolve | {:.0} | {:.2?} |", rate(spans, full), full);
    println!("\nRatio to decode alone: {:.2}×.\n", full.as_secs_f64() / decode.as_secs_f64());
}

async fn ingest(seconds: u64, clients: usize, ticks_per_request: usize) {
    // More traffic than any path can take in `seconds`.
    let requests = telescope_requests(120_000 * seconds as usize, ticks_per_request);

    // Baseline: the same records written straight into a fresh store, batched, one writer.
    let records: Vec<Vec<WriteRecord>> = requests.iter().map(records_of).collect();
    let dir = tempfile::tempdir().unwrap();
    let direct = SqliteStore::open(&dir.path().join("direct.db"), Default::default()).unwrap();
    let t = Instant::now();
    let mut direct_spans = 0;
    let mut i = 0;
    while t.elapsed() < Duration::from_secs(seconds) && i < requests.len() {
        let mut batch = WriteBatch::default();
        while batch.records.len() < 20_000 && i < requests.len() {
            batch.records.extend(records[i].iter().cloned());
            direct_spans += span_count(&requests[i]);
            i += 1;
        }
        direct.write(&batch).await.unwrap();
    }
    let direct_time = t.elapsed();
    drop(direct);

    // The herald, in-process, on loopback: spans not stored (the baseline), then stored.
    let requests = Arc::new(requests);
    let limit = Duration::from_secs(seconds);
    let off_dir = tempfile::tempdir().unwrap();
    let off_url = format!("sqlite://{}", off_dir.path().join("herald.db").display());
    let off = through_herald(&off_url, requests.clone(), clients, limit, &["--store-spans", "false"]).await;
    let dir = tempfile::tempdir().unwrap();
    let on_path = dir.path().join("herald.db");
    let db_url = format!("sqlite://{}", on_path.display());
    let on = through_herald(&db_url, requests.clone(), clients, limit, &[]).await;
    let (stored_spans, span_bytes) = span_store_bytes(&on_path);

    // Retention deleting while ingest runs: a store holding spans older than the age limit is
    // pruned by the herald's retention job (batch by batch) during a spans-stored run.
    let ret_dir = tempfile::tempdir().unwrap();
    let ret_path = ret_dir.path().join("herald.db");
    let old = prefill_old_spans(&ret_path, &requests).await;
    let ret_url = format!("sqlite://{}", ret_path.display());
    // The herald's own retention job (default 7 days), its first pass one second after start.
    std::env::set_var("HELIX_RETENTION_INTERVAL_SECS", "1");
    let ret = through_herald(&ret_url, requests.clone(), clients, limit, &[]).await;
    std::env::remove_var("HELIX_RETENTION_INTERVAL_SECS");
    let left: i64 = rusqlite::Connection::open(&ret_path)
        .unwrap()
        .query_row(
            "SELECT coalesce(sum(span_count), 0) FROM span_traces WHERE start_ns < ?1",
            [now_ns() - 7 * 86_400_000_000_000],
            |r| r.get(0),
        )
        .unwrap();
    let pruned = old as i64 - left;
    println!("### Sustained durable ingest into SQLite (telescope mix)\n");
    println!(
        "{clients} concurrent gRPC exporters on loopback, {ticks_per_request} telescope ticks per request \
         (≈ {} spans/request: entity spans with 1–3 parents, events, operations, passthrough children); \
         acknowledged = committed with `synchronous=FULL`.\n",
        span_count(&requests[0])
    );
    let row = |name: &str, r: &HeraldRun| {
        println!(
            "| {name} | {:.0} | {} spans acked in {:.2?}, {} requests refused (retryable); ack p50 {:.2?}, p99 {:.2?} |",
            rate(r.acked_spans, r.elapsed),
            r.acked_spans,
            r.elapsed,
            r.refused_requests,
            percentile(&r.latencies, 0.5),
            percentile(&r.latencies, 0.99)
        )
    };
    println!("| path | spans/s | notes |\n|---|---:|---|");
    println!(
        "| baseline: same entity records straight into the store (one writer, 20 000-record batches, no network) | {:.0} | {direct_spans} spans in {direct_time:.2?} |",
        rate(direct_spans, direct_time)
    );
    row("herald over gRPC, `--store-spans=false` (decode, interpret, resolve, batch, commit, ack)", &off);
    row("herald over gRPC, spans stored (every span in the span store, same transaction)", &on);
    row("herald, spans stored, while retention removes older spans", &ret);
    println!(
        "\nRatio spans stored / spans not stored: {:.2}. Ratio spans not stored / direct store: {:.2}.",
        rate(on.acked_spans, on.elapsed) / rate(off.acked_spans, off.elapsed),
        rate(off.acked_spans, off.elapsed) / rate(direct_spans, direct_time),
    );
    println!(
        "Span store on disk: {stored_spans} spans, {span_bytes} bytes (tables and indexes, after VACUUM) = {:.0} bytes/span.",
        span_bytes as f64 / stored_spans.max(1) as f64
    );
    println!(
        "Retention during ingest: {pruned} of {old} prefilled spans older than 7 days removed while the exporters ran \
         ({:.0} spans/s); ack p99 {:.2?} vs {:.2?} without retention.\n",
        rate(pruned.max(0) as usize, ret.elapsed),
        percentile(&ret.latencies, 0.99),
        percentile(&on.latencies, 0.99)
    );
}

/// Spans stored in the database at `path` and the bytes the span store's tables and indexes
/// take after VACUUM (SQLite's `dbstat`).
fn span_store_bytes(path: &std::path::Path) -> (i64, i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let spans: i64 = conn.query_row("SELECT coalesce(sum(span_count), 0) FROM span_traces", [], |r| r.get(0)).unwrap();
    conn.execute_batch("VACUUM").unwrap();
    let bytes: i64 = conn
        .query_row(
            "SELECT sum(pgsize) FROM dbstat WHERE name IN ('span_traces', 'span_sources', 'span_terms',
                 'span_traces_start', 'span_traces_errors', 'span_traces_duration', 'span_blocks')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    // Where the bytes are, per table and index.
    let mut stmt = conn
        .prepare(
            "SELECT name, sum(pgsize) FROM dbstat WHERE name IN ('span_traces', 'span_sources', 'span_terms',
                 'span_traces_start', 'span_traces_errors', 'span_traces_duration', 'span_blocks')
             GROUP BY name ORDER BY 2 DESC",
        )
        .unwrap();
    let parts: Vec<String> = stmt
        .query_map([], |r| Ok(format!("{} {:.0}", r.get::<_, String>(0)?, r.get::<_, f64>(1)? / spans.max(1) as f64)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    println!("Bytes per span by table and index: {}.", parts.join(", "));
    (spans, bytes)
}

/// Store the spans of a tenth of `requests`, 8 days in the past (for
/// the retention run). Returns the spans stored.
async fn prefill_old_spans(path: &std::path::Path, requests: &[ExportTraceServiceRequest]) -> usize {
    const SHIFT: u64 = 8 * 86_400 * 1_000_000_000;
    let store = SqliteStore::open(path, Default::default()).unwrap();
    let mut n = 0;
    let mut batch = WriteBatch::default();
    for r in &requests[..requests.len() / 10] {
        let mut r = r.clone();
        for rs in &mut r.resource_spans {
            for ss in &mut rs.scope_spans {
                for s in &mut ss.spans {
                    s.start_time_unix_nano -= SHIFT;
                    s.end_time_unix_nano -= SHIFT;
                    // Other IDs than the live traffic's, which the run sends again.
                    s.trace_id[0] ^= 0x80;
                    if !s.parent_span_id.is_empty() {
                        s.parent_span_id[0] ^= 0x80;
                    }
                    s.span_id[0] ^= 0x80;
                }
            }
        }
        let spans = helix_model::span_records(&r, &interpret_traces(&r));
        n += spans.len();
        batch.records.extend(spans.into_iter().map(WriteRecord::Span));
        if batch.records.len() >= 20_000 {
            store.write(&std::mem::take(&mut batch)).await.unwrap();
        }
    }
    store.write(&batch).await.unwrap();
    n
}

/// A telescope-shaped DAG of about `n` entities and 2 edges per entity: blocks → candidates
/// (their block and usually the previous one) → events (2–3 candidates, often of an earlier
/// group, i.e. another beam) → a chain of 6 derived products, each also naming the calibration
/// solution shared by 50 groups. Returns the batches, the last product of each group and the blocks.
pub fn dag(n: usize) -> (Vec<Vec<WriteRecord>>, Vec<String>, Vec<String>) {
    const GROUPS_PER_CALIBRATION: usize = 50;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
    let per_group = 1 + 3 + 1 + 6; // block, candidates, event, products
    let groups = n / per_group;
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    let mut products = Vec::new();
    let mut blocks = Vec::new();
    let make = |id: String, stage: &str, parents: Vec<String>, t: i64| {
        load::created(id, stage, parents, t + 1, 1_700_000_000_000_000_000 + t)
    };
    for g in 0..groups {
        let t0 = (g * (per_group + 1)) as i64;
        let calibration = format!("calsol-{:05}", g / GROUPS_PER_CALIBRATION);
        if g % GROUPS_PER_CALIBRATION == 0 {
            batch.push(make(calibration.clone(), "calibration-solution", vec![], t0));
        }
        let block = format!("blk-{g:07}");
        batch.push(make(block.clone(), "ingest", vec![], t0 + 1));
        blocks.push(block.clone());
        let mut cands = Vec::new();
        for k in 0..3 {
            let id = format!("cand-{g:07}-{k}");
            let mut parents = vec![block.clone()];
            if g > 0 && rng.random_bool(0.8) {
                parents.push(format!("blk-{:07}", g - 1));
            }
            batch.push(make(id.clone(), "search", parents, t0 + 2 + k as i64));
            cands.push(id);
        }
        // Events take candidates of this group and, often, of an earlier group (another beam).
        let first = rng.random_range(0..3);
        let mut parents = vec![cands[first].clone(), cands[(first + 1) % 3].clone()];
        if g > 10 && rng.random_bool(0.7) {
            parents.push(format!("cand-{:07}-{}", g - rng.random_range(1..10), rng.random_range(0..3)));
        }
        let event = format!("evt-{g:07}");
        batch.push(make(event.clone(), "cluster", parents, t0 + 5));
        let mut prev = event;
        for (k, stage) in ["classify", "calibrate", "convert", "image", "catalog", "publish"].iter().enumerate() {
            let id = format!("prod-{g:07}-{k}");
            batch.push(make(id.clone(), stage, vec![prev.clone(), calibration.clone()], t0 + 6 + k as i64));
            prev = id;
        }
        products.push(prev);
        if batch.len() >= 10_000 {
            batches.push(std::mem::take(&mut batch));
        }
    }
    batches.push(batch);
    (batches, products, blocks)
}

/// Provenance edges in a DAG's batches.
pub fn edge_count(batches: &[Vec<WriteRecord>]) -> usize {
    batches
        .iter()
        .flatten()
        .map(|r| match r {
            WriteRecord::Created(c) => c.parent_ids.len(),
            _ => 0,
        })
        .sum()
}

async fn lineage(n: usize, queries: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lineage.db");
    let store = SqliteStore::open(&path, Default::default()).unwrap();
    let (batches, products, blocks) = dag(n);
    let total: usize = batches.iter().map(Vec::len).sum();
    let edges = edge_count(&batches);
    let t = Instant::now();
    for (i, b) in batches.into_iter().enumerate() {
        store.write(&WriteBatch::of(b)).await.unwrap();
        if i % 20 == 0 {
            eprint!("\rloading {}/{total} entities…", (i + 1) * 10_000);
        }
    }
    eprintln!();
    let load = t.elapsed();

    let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
    let pick = |v: &Vec<String>, rng: &mut rand::rngs::SmallRng| v[rng.random_range(0..v.len())].clone();
    let mut results: HashMap<&str, (Vec<Duration>, usize)> = HashMap::new();
    for _ in 0..queries {
        for (name, direction, depth, pool) in [
            ("ancestors, full depth", Direction::Ancestors, None, &products),
            ("ancestors, depth ≤ 3", Direction::Ancestors, Some(3), &products),
            ("descendants of a raw block, full depth", Direction::Descendants, None, &blocks),
        ] {
            let root = pick(pool, &mut rng);
            let q = LineageQuery { root, direction, max_depth: depth, limit: 10_000, cursor: None };
            let t = Instant::now();
            let l = store.lineage(&q).await.unwrap().expect("root exists");
            let e = results.entry(name).or_default();
            e.0.push(t.elapsed());
            e.1 += l.nodes.len();
        }
    }

    // Baseline: the older herald's graph query shape — a recursive walk over `parent_ids`
    // (here the JSON array, unnested with json_each; PostgreSQL used a GIN-indexed array).
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mut stmt = conn
        .prepare(
            "WITH RECURSIVE anc(id, depth) AS (SELECT ?1, 0 UNION \
             SELECT j.value, anc.depth + 1 FROM anc JOIN entities e ON e.id = anc.id, json_each(e.parent_ids) j \
             WHERE anc.depth < 10) SELECT count(DISTINCT id) FROM anc",
        )
        .unwrap();
    let mut baseline = Vec::new();
    for _ in 0..queries {
        let root = pick(&products, &mut rng);
        let t = Instant::now();
        let _: i64 = stmt.query_row([root], |r| r.get(0)).unwrap();
        baseline.push(t.elapsed());
    }
    baseline.sort();

    println!("### Lineage on a {total}-entity DAG (SQLite)\n");
    println!(
        "Telescope-shaped DAG, {total} entities and {edges} edges (blocks → candidates → events with cross-group parents → \
         6-step product chains sharing calibration solutions), loaded through `Store::write` in 10 000-record batches \
         in {load:.1?} ({:.0} entities/s). {queries} random roots per query.\n",
        rate(total, load)
    );
    println!("| query | p50 | p95 | mean nodes |\n|---|---:|---:|---:|");
    for name in ["ancestors, full depth", "ancestors, depth ≤ 3", "descendants of a raw block, full depth"] {
        let (mut d, nodes) = results.remove(name).unwrap();
        d.sort();
        println!(
            "| {name} | {:.2?} | {:.2?} | {:.1} |",
            percentile(&d, 0.5),
            percentile(&d, 0.95),
            nodes as f64 / d.len() as f64
        );
    }
    println!(
        "| baseline: recursive CTE over `parent_ids` (older herald's walk), ancestors depth ≤ 10 | {:.2?} | {:.2?} | |",
        percentile(&baseline, 0.5),
        percentile(&baseline, 0.95)
    );
    println!();
}
