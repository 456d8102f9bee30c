//! Flags on the 1 000 000-entity DAG of the lineage benchmark plus one raw block with 100 000
//! descendants: flagging it, the suspect banner of its descendants, its impact walk, and ingest
//! with 100 active flags against none (interleaved rounds). SQLite, or PostgreSQL with `--pg-url`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use helix_store::{
    Cleared, Direction, FlagAdded, LineageQuery, NewFlag, Severity, SqliteStore, Store, WriteBatch, WriteRecord,
};
use rand::{Rng, SeedableRng};

use crate::load::{load_average, percentile, rate};

fn created(id: String, stage: &str, parents: Vec<String>, t: i64) -> WriteRecord {
    crate::load::created(id, stage, parents, t + 7_000_000_000, 1_700_000_100_000_000_000 + t)
}

fn flag(id: usize, entity: &str) -> NewFlag {
    NewFlag {
        flag_id: format!("bench-flag-{id}"),
        entity_id: entity.to_owned(),
        severity: Severity::Bad,
        reason: "bench".into(),
        flagged_by: "bench".into(),
        principal: None,
    }
}

/// Batches of 1 000 new entities per ingest round (about 3 s on SQLite).
const BATCHES_PER_ROUND: usize = 50;
const PG_DATABASE: &str = "helix_bench_flags";

pub async fn run(n: usize, queries: usize, rounds: usize, impact_rounds: usize, pg_url: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = match &pg_url {
        None => Arc::new(SqliteStore::open(&dir.path().join("flags.db"), Default::default()).unwrap()),
        Some(server) => Arc::new(crate::postgres::store_in(server, PG_DATABASE).await.1),
    };
    let (batches, products, blocks) = crate::dag(n);
    for b in batches {
        store.write(&WriteBatch::of(b)).await.unwrap();
    }
    // The wide block: 1 000 candidates, each with 99 events: 100 000 descendants.
    let mut wide = vec![created("wide-blk".into(), "ingest", vec![], 0)];
    let mut leaves = Vec::new();
    for c in 0..1000 {
        let cand = format!("wide-cand-{c:04}");
        wide.push(created(cand.clone(), "search", vec!["wide-blk".into()], 1 + c));
        for e in 0..99 {
            let id = format!("wide-evt-{c:04}-{e:02}");
            wide.push(created(id.clone(), "cluster", vec![cand.clone()], 2_000 + c * 100 + e));
            leaves.push(id);
        }
    }
    for b in wide.chunks(10_000) {
        store.write(&WriteBatch::of(b.to_vec())).await.unwrap();
    }
    if let Some(server) = &pg_url {
        // What autovacuum would have done by now on a running server: planner statistics.
        let url = crate::postgres::with_database(server, PG_DATABASE);
        let client = crate::postgres::connect(&url).await;
        client.batch_execute("VACUUM ANALYZE entities").await.unwrap();
        client.batch_execute("VACUUM ANALYZE entity_parents").await.unwrap();
    }
    let mut rng = rand::rngs::SmallRng::seed_from_u64(11);
    let load_before = load_average();

    // Flagging: one row, whatever the descendants (20 flag/clear cycles).
    let mut flagging = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        assert!(matches!(store.add_flag(&flag(i, "wide-blk")).await.unwrap(), FlagAdded::Added(_)));
        flagging.push(t.elapsed());
        if i < 19 {
            assert!(matches!(
                store.clear_flag("wide-blk", &format!("bench-flag-{i}"), "b").await.unwrap(),
                Cleared::Now(_)
            ));
        }
    }
    flagging.sort();

    // The banner: suspicion (ancestors walk + active flags among them) and the entity's flags.
    let mut banner = Vec::new();
    let mut banner_products = Vec::new();
    for _ in 0..queries {
        for (pool, out) in [(&leaves, &mut banner), (&products, &mut banner_products)] {
            let id = pool[rng.random_range(0..pool.len())].clone();
            let t = Instant::now();
            let s = store.suspicion(&id).await.unwrap();
            let _ = store.flags(std::slice::from_ref(&id), false).await.unwrap();
            out.push(t.elapsed());
            if pool.len() == leaves.len() {
                assert_eq!(s.because.len(), 1, "a leaf of the wide block is suspect");
            }
        }
    }
    banner.sort();
    banner_products.sort();

    // Impact of the wide block, rounds interleaved: the baseline is the full-row lineage walk
    // /impact made before (what `/lineage?direction=descendants` still does), then the
    // count walk alone, the endpoint (counts and the first page of 1 000) and the whole CSV.
    let app = crate::load::api_app(store.clone());
    let (mut walk_rows, mut walk_counts, mut impact, mut impact_csv) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..impact_rounds {
        let q = LineageQuery {
            root: "wide-blk".into(),
            direction: Direction::Descendants,
            max_depth: None,
            limit: 200_000,
            cursor: None,
        };
        let t = Instant::now();
        let l = store.lineage(&q).await.unwrap().unwrap();
        walk_rows.push(t.elapsed());
        assert_eq!(l.nodes.len(), 100_001);
        let t = Instant::now();
        let d = store.descendants("wide-blk", None, 200_000).await.unwrap().unwrap();
        walk_counts.push(t.elapsed());
        assert_eq!(d.nodes.len(), 100_000);
        let t = Instant::now();
        let body = crate::load::get_bytes(&app, "/api/v1/entity/wide-blk/impact").await;
        impact.push(t.elapsed());
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((v["total"].as_u64(), v["entities"].as_array().map(Vec::len)), (Some(100_000), Some(1_000)));
        let t = Instant::now();
        let csv = crate::load::get_bytes(&app, "/api/v1/entity/wide-blk/impact?format=csv").await;
        impact_csv.push(t.elapsed());
        assert_eq!(csv.iter().filter(|b| **b == b'\n').count(), 100_001);
    }
    for v in [&mut walk_rows, &mut walk_counts, &mut impact, &mut impact_csv] {
        v.sort();
    }

    // Ingest: rounds of `BATCHES_PER_ROUND` batches of 1 000 new entities under random products, with no flag
    // and with 100 active flags on random raw blocks, in pairs whose order alternates (ABBA)
    // so the growth of the database between rounds favours neither.
    let clear_all = |store: &Arc<dyn Store>, ids: Vec<(String, String)>| {
        let store = store.clone();
        async move {
            for (entity, f) in ids {
                store.clear_flag(&entity, &f, "bench").await.unwrap();
            }
        }
    };
    store.clear_flag("wide-blk", "bench-flag-19", "b").await.unwrap();
    let (mut none, mut hundred) = (Vec::new(), Vec::new());
    let mut next = 0usize;
    for round in 0..rounds * 2 {
        let flagged = (round % 2 == 1) != (round / 2 % 2 == 1);
        let mut active = Vec::new();
        if flagged {
            for k in 0..100 {
                let b = blocks[rng.random_range(0..blocks.len())].clone();
                let id = 1_000 + round * 100 + k;
                store.add_flag(&flag(id, &b)).await.unwrap();
                active.push((b, format!("bench-flag-{id}")));
            }
        }
        let t = Instant::now();
        let mut written = 0;
        for _ in 0..BATCHES_PER_ROUND {
            let batch: Vec<WriteRecord> = (0..1000)
                .map(|_| {
                    next += 1;
                    let parent = products[rng.random_range(0..products.len())].clone();
                    created(format!("new-{next:08}"), "archive", vec![parent], 20_000_000 + next as i64)
                })
                .collect();
            written += batch.len();
            store.write(&WriteBatch::of(batch)).await.unwrap();
        }
        let r = rate(written, t.elapsed());
        if flagged {
            hundred.push(r);
        } else {
            none.push(r);
        }
        clear_all(&store, active).await;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut pairs: Vec<f64> = none.iter().zip(&hundred).map(|(a, b)| b / a).collect();
    let listed: Vec<String> = pairs.iter().map(|r| format!("{r:.2}")).collect();
    pairs.sort_by(f64::total_cmp);
    let (m0, m100) = (median(&mut none), median(&mut hundred));

    println!(
        "### Flags on the {n}-entity DAG plus a block with 100 000 descendants ({})\n",
        if pg_url.is_some() { "PostgreSQL" } else { "SQLite" }
    );
    println!("Load before: {load_before}; after: {}. {queries} banner reads per pool; {rounds} rounds each of ingest with and without flags, interleaved; medians.\n", load_average());
    println!("| measure | p50 | p95 |\n|---|---:|---:|");
    let row =
        |name: &str, d: &[Duration]| println!("| {name} | {:.2?} | {:.2?} |", percentile(d, 0.5), percentile(d, 0.95));
    row("flag the block with 100 000 descendants (`Store::add_flag`)", &flagging);
    row("banner of one of its descendants (suspicion + flags)", &banner);
    row("banner of a product of the DAG (6–8 levels of ancestors)", &banner_products);
    row("baseline: full-row descendants walk of the block (`Store::lineage`, 100 000 nodes)", &walk_rows);
    row("count walk of the block (`Store::descendants`)", &walk_counts);
    row("`GET /impact` of the block (counts + first page of 1 000)", &impact);
    row("`GET /impact?format=csv` of the block, whole body read (100 001 lines)", &impact_csv);
    println!();
    println!(
        "Impact p95 / baseline walk p95: {:.3} ({impact_rounds} interleaved rounds).\n",
        percentile(&impact, 0.95).as_secs_f64() / percentile(&walk_rows, 0.95).as_secs_f64()
    );
    println!("| ingest ({BATCHES_PER_ROUND} 000 entities per round) | entities/s (median) |\n|---|---:|");
    println!("| no active flag | {m0:.0} |\n| 100 active flags | {m100:.0} |\n");
    println!(
        "Ratio with 100 flags / none: {:.3} (medians of the rates); per pair of rounds, in order: {} (median {:.3}).\n",
        m100 / m0,
        listed.join(", "),
        pairs[pairs.len() / 2]
    );
    if let Some(server) = &pg_url {
        drop(app);
        drop(store);
        crate::postgres::drop_db(server, PG_DATABASE).await;
    }
}
