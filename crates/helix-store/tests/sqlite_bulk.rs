//! Hand-run load and lineage timing on a large DAG (ignored by default):
//! `HELIX_BULK_N=1000000 cargo test -p helix-store --release --test sqlite_bulk -- --ignored --nocapture`.
//! Entities come in groups of 100: a chain inside each group, every tenth entity also naming
//! two earlier group members (fan-in), and each group's second entity naming the previous
//! group's root, so full-depth ancestry reaches ~100 nodes and ~100 levels.

use std::time::{Duration, Instant};

use helix_store::conformance::creation;
use helix_store::{
    Direction, EntityFilter, GraphQuery, LineageQuery, PageRequest, SqliteOptions, SqliteStore,
    Store, WriteBatch, WriteRecord,
};

fn id(i: u64) -> String {
    format!("e{i:07}")
}

fn parents(i: u64) -> Vec<String> {
    let j = i % 100;
    let mut p = Vec::new();
    if j > 0 {
        p.push(id(i - 1));
    }
    if j >= 10 && j.is_multiple_of(10) {
        p.push(id(i - 5));
        p.push(id(i - 7));
    }
    if j == 1 && i >= 100 {
        p.push(id(i - 1 - 100));
    }
    p
}

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
    format!(
        "p50 {:?} p95 {:?} max {:?}",
        at(0.5),
        at(0.95),
        v[v.len() - 1]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "takes minutes; run by hand"]
async fn bulk_load_and_lineage_timings() {
    let n: u64 = std::env::var("HELIX_BULK_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bulk.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();

    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let end = (i + 5_000).min(n);
        let records = (i..end)
            .map(|k| {
                let ps = parents(k);
                let refs: Vec<&str> = ps.iter().map(String::as_str).collect();
                WriteRecord::Created(creation(&id(k), &refs, k as i64 * 1_000))
            })
            .collect();
        store.write(&WriteBatch { records }).await.unwrap();
        i = end;
    }
    let load = started.elapsed();
    println!(
        "loaded {n} entities in {load:?} ({:.0} entities/s)",
        n as f64 / load.as_secs_f64()
    );
    println!(
        "database size {} MB",
        std::fs::metadata(&path).unwrap().len() / 1_000_000
    );

    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut pick = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for (label, direction, depth) in [
        ("ancestors full depth", Direction::Ancestors, None),
        ("ancestors depth<=3", Direction::Ancestors, Some(3)),
        ("descendants full depth", Direction::Descendants, None),
        ("descendants depth<=3", Direction::Descendants, Some(3)),
    ] {
        let mut times = Vec::new();
        let mut nodes = 0;
        for _ in 0..1_000 {
            let q = LineageQuery {
                root: id(pick()),
                direction,
                max_depth: depth,
                limit: 10_000,
                cursor: None,
            };
            let t = Instant::now();
            let l = store.lineage(&q).await.unwrap().unwrap();
            times.push(t.elapsed());
            nodes += l.nodes.len();
        }
        println!(
            "{label}: {} (avg {} nodes)",
            percentiles(times),
            nodes / 1_000
        );
    }
    let mut times = Vec::new();
    for _ in 0..1_000 {
        let root = id(pick());
        let t = Instant::now();
        store
            .graph(&root, &GraphQuery::default())
            .await
            .unwrap()
            .unwrap();
        times.push(t.elapsed());
    }
    println!("graph default: {}", percentiles(times));

    let t = Instant::now();
    let stages = store.stages(helix_store::conformance::INST).await.unwrap();
    println!(
        "stages over {} entities: {:?}",
        stages[0].count,
        t.elapsed()
    );
    let mut times = Vec::new();
    let mut cursor = None;
    for _ in 0..100 {
        let filter = EntityFilter {
            instrument_id: Some(helix_store::conformance::INST.into()),
            ..Default::default()
        };
        let t = Instant::now();
        let page = store
            .search(
                &filter,
                &PageRequest {
                    limit: 50,
                    cursor: cursor.clone(),
                },
            )
            .await
            .unwrap();
        times.push(t.elapsed());
        cursor = page.next_cursor;
    }
    println!(
        "search by instrument, 100 successive pages of 50: {}",
        percentiles(times)
    );
    let t = Instant::now();
    let filter = EntityFilter {
        id_prefix: Some("e00042".into()),
        ..Default::default()
    };
    let found = store
        .search(&filter, &PageRequest::first(1_000))
        .await
        .unwrap()
        .items
        .len();
    println!("prefix search ({found} hits): {:?}", t.elapsed());
    let t = Instant::now();
    store.instruments().await.unwrap();
    println!("instruments: {:?}", t.elapsed());
}

/// A block with many direct children: the level is fetched whole before it is ordered, so this
/// measures the cost of a wide level under small node budgets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by hand"]
async fn wide_fan_out_timings() {
    let n: u64 = std::env::var("HELIX_WIDE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("wide.db"), SqliteOptions::default()).unwrap();
    let mut records = vec![WriteRecord::Created(creation("block", &[], 0))];
    records.extend((0..n).map(|i| WriteRecord::Created(creation(&id(i), &["block"], i as i64))));
    store.write(&WriteBatch { records }).await.unwrap();
    for limit in [100usize, 10_000] {
        let mut times = Vec::new();
        for _ in 0..50 {
            let q = LineageQuery {
                root: "block".into(),
                direction: Direction::Descendants,
                max_depth: None,
                limit,
                cursor: None,
            };
            let t = Instant::now();
            store.lineage(&q).await.unwrap().unwrap();
            times.push(t.elapsed());
        }
        println!(
            "{n} children, descendants limit {limit}: {}",
            percentiles(times)
        );
    }
    let mut times = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        store
            .graph("block", &GraphQuery::default())
            .await
            .unwrap()
            .unwrap();
        times.push(t.elapsed());
    }
    println!("{n} children, graph default: {}", percentiles(times));
}
