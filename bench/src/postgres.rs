//! `helix-bench postgres …`: the PostgreSQL benchmarks, each with its baselines in the same run
//! on the same server.
//! `ingest`  — sustained durable ingest of the telescope mix through a real herald, vs a bare
//!             binary COPY of the same rows into the same tables, vs the older herald's way of
//!             writing (a statement per entity row with a NOT EXISTS guard; claim + insert +
//!             prune per operation; a statement per event; autocommit, many connections);
//! `lineage` — ancestors/descendants on a 1 000 000-entity DAG through `Store::lineage`, vs the
//!             older herald's recursive walk over `parent_ids` with a GIN index.
//! Each run creates its own databases on the server of `--url` and drops them at the end.

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Subcommand;
use helix_model::span_count;
use helix_store::postgres::tokio_postgres::{self, binary_copy::BinaryCopyInWriter, types::Type, Client, NoTls};
use helix_store::{Direction, LineageQuery, PostgresOptions, PostgresStore, Store, WriteBatch, WriteRecord};
use rand::{Rng, SeedableRng};

use crate::dag;
use crate::load::{percentile, rate, records_of, telescope_requests, through_herald, HeraldRun};

#[derive(Subcommand)]
pub enum PgBench {
    /// Durable ingest through a real herald on PostgreSQL vs bare COPY vs the older herald's writes.
    Ingest {
        /// A PostgreSQL server URL; the benchmark creates and drops its own databases there.
        #[arg(long, env = "HELIX_TEST_PG_URL")]
        url: String,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 32)]
        clients: usize,
        #[arg(long, default_value_t = 8)]
        ticks_per_request: usize,
    },
    /// Lineage queries on a large DAG in PostgreSQL vs a recursive CTE over GIN-indexed parent_ids.
    Lineage {
        #[arg(long, env = "HELIX_TEST_PG_URL")]
        url: String,
        #[arg(long, default_value_t = 1_000_000)]
        entities: usize,
        #[arg(long, default_value_t = 500)]
        queries: usize,
    },
}

pub async fn run(what: PgBench) {
    match what {
        PgBench::Ingest { url, seconds, clients, ticks_per_request } => {
            ingest(&url, seconds, clients, ticks_per_request).await
        }
        PgBench::Lineage { url, entities, queries } => lineage(&url, entities, queries).await,
    }
}

pub(crate) async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(conn);
    client
}

/// `url` with its database replaced by `db`.
pub(crate) fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map(|(b, q)| (b, Some(q))).unwrap_or((url, None));
    let start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host = base[start..].find('/').map(|i| &base[..start + i]).unwrap_or(base);
    match query {
        Some(q) => format!("{host}/{db}?{q}"),
        None => format!("{host}/{db}"),
    }
}

/// A fresh database on the server; its URL.
async fn fresh_db(server: &str, name: &str) -> String {
    let admin = connect(server).await;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .expect("drop old bench database");
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create bench database");
    with_database(server, name)
}

pub(crate) async fn drop_db(server: &str, name: &str) {
    let _ = connect(server).await.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

/// A migrated, empty store (no retention job) in database `name`.
pub(crate) async fn store_in(server: &str, name: &str) -> (String, PostgresStore) {
    let url = fresh_db(server, name).await;
    let store =
        PostgresStore::open(&url, PostgresOptions { retention: None, ..Default::default() }).await.expect("open store");
    (url, store)
}

fn json(m: &helix_model::Metadata) -> serde_json::Value {
    serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect())
}

/// Bare binary COPY of `records` into the four tables, one transaction: the ceiling.
async fn copy_batch(client: &mut Client, records: &[WriteRecord]) {
    let tx = client.transaction().await.unwrap();
    {
        let sink = tx
            .copy_in(
                "COPY entities (id, instrument_id, trace_id, timestamp_ns, parent_ids, metadata, span_id, stage, \
                 service_name, process_name, end_ns, status, placeholder) FROM STDIN BINARY",
            )
            .await
            .unwrap();
        let types = [
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::TEXT_ARRAY,
            Type::JSONB,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
            Type::BOOL,
        ];
        let mut w = pin!(BinaryCopyInWriter::new(sink, &types));
        for r in records {
            if let WriteRecord::Created(c) = r {
                w.as_mut()
                    .write(&[
                        &c.entity_id,
                        &c.instrument_id,
                        &c.trace_id,
                        &c.start_ns,
                        &c.parent_ids,
                        &json(&c.metadata),
                        &c.span_id,
                        &c.name,
                        &c.service_name,
                        &c.process_name,
                        &c.end_ns,
                        &c.status.as_str(),
                        &false,
                    ])
                    .await
                    .unwrap();
            }
        }
        w.finish().await.unwrap();
    }
    {
        let sink = tx.copy_in("COPY entity_parents (child_id, parent_id, position) FROM STDIN BINARY").await.unwrap();
        let mut w = pin!(BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::TEXT, Type::INT4]));
        for r in records {
            if let WriteRecord::Created(c) = r {
                for (i, p) in c.parent_ids.iter().enumerate() {
                    w.as_mut().write(&[&c.entity_id, p, &(i as i32)]).await.unwrap();
                }
            }
        }
        w.finish().await.unwrap();
    }
    {
        let sink = tx
            .copy_in(
                "COPY entity_operations (entity_id, instrument_id, operation, trace_id, timestamp_ns, duration_ns, \
                 metadata, span_id, status, service_name) FROM STDIN BINARY",
            )
            .await
            .unwrap();
        let types = [
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::INT8,
            Type::JSONB,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
        ];
        let mut w = pin!(BinaryCopyInWriter::new(sink, &types));
        for r in records {
            if let WriteRecord::Operation(o) = r {
                w.as_mut()
                    .write(&[
                        &o.entity_id,
                        &o.instrument_id,
                        &o.name,
                        &o.trace_id,
                        &o.start_ns,
                        &o.duration_ns(),
                        &json(&o.metadata),
                        &o.span_id,
                        &o.status.as_str(),
                        &o.service_name,
                    ])
                    .await
                    .unwrap();
            }
        }
        w.finish().await.unwrap();
    }
    {
        let sink = tx
            .copy_in(
                "COPY entity_events (instrument_id, entity_id, event_name, timestamp_ns, metadata, trace_id, span_id, \
                 ordinal) FROM STDIN BINARY",
            )
            .await
            .unwrap();
        let types = [Type::TEXT, Type::TEXT, Type::TEXT, Type::INT8, Type::JSONB, Type::TEXT, Type::TEXT, Type::INT4];
        let mut w = pin!(BinaryCopyInWriter::new(sink, &types));
        for r in records {
            let events = match r {
                WriteRecord::Created(c) => &c.events,
                WriteRecord::Operation(o) => &o.events,
                WriteRecord::Log(_) | WriteRecord::Span(_) => continue,
            };
            for e in events {
                w.as_mut()
                    .write(&[
                        &e.instrument_id,
                        &e.entity_id,
                        &e.event_name,
                        &e.timestamp_ns,
                        &json(&e.metadata),
                        &e.trace_id,
                        &e.span_id,
                        &(e.ordinal as i32),
                    ])
                    .await
                    .unwrap();
            }
        }
        w.finish().await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// The older herald's write pattern for one record: autocommit statements on a shared
/// connection, 1–4 per span (a NOT EXISTS-guarded insert per entity, claim + insert + prune per
/// operation, an insert per event).
async fn old_herald_record(client: &Client, r: &WriteRecord) {
    match r {
        WriteRecord::Created(c) => {
            client
                .execute(
                    "INSERT INTO entities (id, instrument_id, trace_id, timestamp_ns, parent_ids, metadata)
                     SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS (SELECT 1 FROM entities WHERE id = $1)",
                    &[&c.entity_id, &c.instrument_id, &c.trace_id, &c.start_ns, &c.parent_ids, &json(&c.metadata)],
                )
                .await
                .unwrap();
            for e in &c.events {
                old_event(client, e).await;
            }
        }
        WriteRecord::Operation(o) => {
            // Claim: the older herald deduplicated operations by trace ID.
            let claimed = client
                .query_opt(
                    "SELECT 1 FROM entity_operations WHERE entity_id = $1 AND operation = $2 AND trace_id = $3",
                    &[&o.entity_id, &o.name, &o.trace_id],
                )
                .await
                .unwrap();
            if claimed.is_none() {
                client
                    .execute(
                        "INSERT INTO entity_operations (entity_id, instrument_id, operation, trace_id, timestamp_ns,
                             duration_ns, metadata, span_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                         ON CONFLICT DO NOTHING",
                        &[
                            &o.entity_id,
                            &o.instrument_id,
                            &o.name,
                            &o.trace_id,
                            &o.start_ns,
                            &o.duration_ns(),
                            &json(&o.metadata),
                            &o.span_id,
                        ],
                    )
                    .await
                    .unwrap();
                // Prune to the 10 newest per entity and operation name.
                client
                    .execute(
                        "DELETE FROM entity_operations WHERE entity_id = $1 AND operation = $2 AND span_id NOT IN (
                             SELECT span_id FROM entity_operations WHERE entity_id = $1 AND operation = $2
                             ORDER BY timestamp_ns DESC LIMIT 10)",
                        &[&o.entity_id, &o.name],
                    )
                    .await
                    .unwrap();
            }
            for e in &o.events {
                old_event(client, e).await;
            }
        }
        // The older herald kept no spans (it only forwarded them).
        WriteRecord::Log(_) | WriteRecord::Span(_) => {}
    }
}

async fn old_event(client: &Client, e: &helix_model::EntityEvent) {
    client
        .execute(
            "INSERT INTO entity_events (instrument_id, entity_id, event_name, timestamp_ns, metadata, trace_id, span_id, ordinal)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            &[
                &e.instrument_id, &e.entity_id, &e.event_name, &e.timestamp_ns, &json(&e.metadata), &e.trace_id,
                &e.span_id, &(e.ordinal as i32),
            ],
        )
        .await
        .unwrap();
}

async fn ingest(server: &str, seconds: u64, clients: usize, ticks_per_request: usize) {
    // More than any of the paths can take in `seconds`.
    let requests = telescope_requests(90_000 * seconds as usize, ticks_per_request);
    let records: Vec<Vec<WriteRecord>> = requests.iter().map(records_of).collect();
    let spans_per_request: Vec<usize> = requests.iter().map(span_count).collect();
    let limit = Duration::from_secs(seconds);

    // 1. Bare COPY of the same rows into the same (indexed) tables, 20 000-record transactions.
    let (copy_url, copy_store) = store_in(server, "helix_bench_copy").await;
    drop(copy_store);
    let mut client = connect(&copy_url).await;
    let (mut copy_spans, mut i) = (0, 0);
    let t = Instant::now();
    while t.elapsed() < limit && i < records.len() {
        let mut batch = Vec::new();
        while batch.len() < 20_000 && i < records.len() {
            batch.extend(records[i].iter().cloned());
            copy_spans += spans_per_request[i];
            i += 1;
        }
        copy_batch(&mut client, &batch).await;
    }
    let copy_time = t.elapsed();
    drop(client);
    drop_db(server, "helix_bench_copy").await;

    // 1b. The store alone: the same records through `Store::write` (set-wise, idempotent),
    // one writer, 20 000-record batches — what the herald's writer does minus the network,
    // decoding and resolution.
    let (_, direct) = store_in(server, "helix_bench_store").await;
    let (mut store_spans, mut i) = (0, 0);
    let t = Instant::now();
    while t.elapsed() < limit && i < records.len() {
        let mut batch = WriteBatch::default();
        while batch.records.len() < 20_000 && i < records.len() {
            batch.records.extend(records[i].iter().cloned());
            store_spans += spans_per_request[i];
            i += 1;
        }
        direct.write(&batch).await.unwrap();
    }
    let store_time = t.elapsed();
    drop(direct);
    drop_db(server, "helix_bench_store").await;

    // 2. The older herald's way: statements per record from many concurrent connections.
    let (old_url, old_store) = store_in(server, "helix_bench_old").await;
    drop(old_store);
    let records = Arc::new(records);
    let spans_per_request = Arc::new(spans_per_request);
    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (records, spans, next, url) = (records.clone(), spans_per_request.clone(), next.clone(), old_url.clone());
        tasks.push(tokio::spawn(async move {
            let client = connect(&url).await;
            let mut done = 0;
            while t.elapsed() < limit {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(rs) = records.get(i) else { break };
                for r in rs {
                    old_herald_record(&client, r).await;
                }
                done += spans[i];
            }
            done
        }));
    }
    let mut old_spans = 0;
    for task in tasks {
        old_spans += task.await.unwrap();
    }
    let old_time = t.elapsed();
    drop_db(server, "helix_bench_old").await;

    // 3. The herald, in-process, over loopback gRPC, on its own database.
    //    First with spans not stored (the span store's baseline), then stored.
    let requests = Arc::new(requests);
    let off_url = fresh_db(server, "helix_bench_herald_nospans").await;
    let off = through_herald(&off_url, requests.clone(), clients, limit, &["--store-spans", "false"]).await;
    drop_db(server, "helix_bench_herald_nospans").await;
    let herald_url = fresh_db(server, "helix_bench_herald").await;
    let HeraldRun { acked_spans: acked, refused_requests: refused, latencies, elapsed } =
        through_herald(&herald_url, requests.clone(), clients, limit, &[]).await;
    let span_bytes: i64 = connect(&herald_url)
        .await
        .query_one(
            "SELECT (pg_total_relation_size('spans') + pg_total_relation_size('traces')
                 + pg_total_relation_size('trace_terms') + pg_total_relation_size('span_sources'))::int8
                 / greatest(count(*), 1) FROM spans",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or_default();
    drop_db(server, "helix_bench_herald").await;

    let herald_rate = rate(acked, elapsed);
    let copy_rate = rate(copy_spans, copy_time);
    let old_rate = rate(old_spans, old_time);
    println!("### Sustained durable ingest into PostgreSQL (telescope mix)\n");
    println!(
        "PostgreSQL {} on the same machine (`synchronous_commit=on`, fsync on). {clients} concurrent gRPC exporters on \
         loopback, {ticks_per_request} telescope ticks per request (≈ {} spans/request). All three paths write the same \
         rows into the same tables and indexes, each into its own fresh database, for {seconds} s.\n",
        server_version(server).await,
        span_count(&requests[0])
    );
    println!("| path | spans/s | notes |\n|---|---:|---|");
    println!(
        "| ceiling: bare binary COPY of the rows (one connection, 20 000-record transactions, no checks, no network hop for spans) | {copy_rate:.0} | {copy_spans} spans in {copy_time:.2?} |"
    );
    println!(
        "| `Store::write` alone (same records, one writer, 20 000-record batches, no network) | {:.0} | {store_spans} spans in {store_time:.2?} |",
        rate(store_spans, store_time)
    );
    println!(
        "| **herald over gRPC** (decode, interpret, resolve, batch, set-wise idempotent write, commit, ack) | **{herald_rate:.0}** | {acked} spans acked in {elapsed:.2?}, {refused} requests refused (retryable) |"
    );
    println!(
        "| herald over gRPC, `--store-spans=false` | {:.0} | {} spans acked in {:.2?}, ack p99 {:.2?} |",
        rate(off.acked_spans, off.elapsed),
        off.acked_spans,
        off.elapsed,
        percentile(&off.latencies, 0.99)
    );
    println!(
        "| baseline: older herald's writes (NOT EXISTS insert per entity, claim + insert + prune per operation, insert per event; autocommit, 16 connections) | {old_rate:.0} | {old_spans} spans in {old_time:.2?} |"
    );
    println!(
        "\nHerald / bare COPY: {:.0} %. Speed-up over the older herald's writes: {:.1}×. Ack latency per request: p50 {:.2?}, p99 {:.2?}, max {:.2?}.\n",
        100.0 * herald_rate / copy_rate,
        herald_rate / old_rate,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    println!(
        "Spans stored / spans not stored: {:.2}. Span store on disk: {span_bytes} bytes/span (tables, indexes, TOAST).\n",
        herald_rate / rate(off.acked_spans, off.elapsed)
    );
}

async fn server_version(server: &str) -> String {
    connect(server).await.query_one("SHOW server_version", &[]).await.map(|r| r.get::<_, String>(0)).unwrap_or_default()
}

async fn lineage(server: &str, n: usize, queries: usize) {
    let (url, store) = store_in(server, "helix_bench_lineage").await;
    let (batches, products, blocks) = dag(n);
    let total: usize = batches.iter().map(Vec::len).sum();
    let t = Instant::now();
    for (i, b) in batches.into_iter().enumerate() {
        store.write(&WriteBatch::of(b)).await.unwrap();
        if i % 10 == 0 {
            eprint!("\rloading {}/{total} entities…", (i + 1) * 10_000);
        }
    }
    eprintln!();
    let load = t.elapsed();
    let client = connect(&url).await;
    // VACUUM cannot run in the implicit transaction of a multi-statement string.
    client.batch_execute("VACUUM ANALYZE entities").await.unwrap();
    client.batch_execute("VACUUM ANALYZE entity_parents").await.unwrap();
    let edges: i64 = client.query_one("SELECT count(*) FROM entity_parents", &[]).await.unwrap().get(0);

    let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
    let pick = |v: &Vec<String>, rng: &mut rand::rngs::SmallRng| v[rng.random_range(0..v.len())].clone();
    let cases = [
        ("ancestors, depth ≤ 3", Direction::Ancestors, Some(3), &products),
        ("ancestors, full depth", Direction::Ancestors, None, &products),
        ("descendants of a raw block, full depth", Direction::Descendants, None, &blocks),
    ];
    let mut ours: Vec<(Vec<Duration>, usize)> = vec![Default::default(); cases.len()];
    for _ in 0..queries {
        for (k, (_, direction, depth, pool)) in cases.iter().enumerate() {
            let q = LineageQuery {
                root: pick(pool, &mut rng),
                direction: *direction,
                max_depth: *depth,
                limit: 10_000,
                cursor: None,
            };
            let t = Instant::now();
            let l = store.lineage(&q).await.unwrap().expect("root exists");
            ours[k].0.push(t.elapsed());
            ours[k].1 += l.nodes.len();
        }
    }

    // Baseline: the older herald's graph query — a recursive walk over `parent_ids`, with a GIN
    // index on the array for the descendant direction.
    client.batch_execute("CREATE INDEX entities_parent_ids_gin ON entities USING gin (parent_ids)").await.unwrap();
    client.batch_execute("ANALYZE entities").await.unwrap();
    let up = client
        .prepare(
            "WITH RECURSIVE anc(id, parent_ids, depth) AS (
                 SELECT id, parent_ids, 0 FROM entities WHERE id = $1
                 UNION SELECT e.id, e.parent_ids, a.depth + 1 FROM anc a JOIN entities e ON e.id = ANY (a.parent_ids)
                 WHERE a.depth < $2)
             SELECT count(DISTINCT id) FROM anc",
        )
        .await
        .unwrap();
    let down = client
        .prepare(
            "WITH RECURSIVE des(id, depth) AS (
                 SELECT id, 0 FROM entities WHERE id = $1
                 UNION SELECT e.id, d.depth + 1 FROM des d JOIN entities e ON e.parent_ids @> ARRAY[d.id]
                 WHERE d.depth < $2)
             SELECT count(DISTINCT id) FROM des",
        )
        .await
        .unwrap();
    let mut theirs: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    // The older descendant walk probes the GIN index once per visited node and takes seconds
    // per query at this size: a few samples of it are enough to compare.
    const SLOW_BASELINE_SAMPLES: usize = 10;
    for q in 0..queries {
        for (k, (_, direction, depth, pool)) in cases.iter().enumerate() {
            if *direction == Direction::Descendants && q >= SLOW_BASELINE_SAMPLES {
                continue;
            }
            let root = pick(pool, &mut rng);
            let d: i32 = depth.map(|d| d as i32).unwrap_or(100);
            let stmt = if *direction == Direction::Ancestors { &up } else { &down };
            let t = Instant::now();
            let _: i64 = client.query_one(stmt, &[&root, &d]).await.unwrap().get(0);
            theirs[k].push(t.elapsed());
        }
    }
    drop(store);
    drop(client);
    drop_db(server, "helix_bench_lineage").await;

    println!("### Lineage on a {total}-entity DAG (PostgreSQL)\n");
    println!(
        "The telescope-shaped DAG of the SQLite benchmark ({total} entities, {edges} edges), loaded through \
         `Store::write` in 10 000-record batches in {load:.1?} ({:.0} entities/s). {queries} random roots per query; \
         `Store::lineage` walks breadth-first with one `= ANY($1)` query per level on the `entity_parents` indexes. \
         Baseline: the older herald's recursive CTE over `parent_ids` (`= ANY(parent_ids)` upwards, GIN `@>` downwards) \
         on the same data.\n",
        rate(total, load)
    );
    println!("| query | p50 | p95 | mean nodes | baseline p50 | baseline p95 |\n|---|---:|---:|---:|---:|---:|");
    for (k, (name, ..)) in cases.iter().enumerate() {
        let (d, nodes) = &mut ours[k];
        d.sort();
        theirs[k].sort();
        println!(
            "| {name} | {:.2?} | {:.2?} | {:.1} | {:.2?} | {:.2?} |",
            percentile(d, 0.5),
            percentile(d, 0.95),
            *nodes as f64 / d.len() as f64,
            percentile(&theirs[k], 0.5),
            percentile(&theirs[k], 0.95)
        );
    }
    println!();
}
