//! Root-cause hints over a day of telescope traffic (SQLite): the benchmark mix of
//! `herald::simulate::Telescope` laid out over 24 hours with its error events, then
//! `GET /api/v1/errors/{class}/causes` for the most frequent error classes over the whole day,
//! through the API router (the handler and every store call it makes), classes interleaved.

use std::sync::Arc;
use std::time::{Duration, Instant};

use helix_store::{SqliteStore, Store, WriteBatch};
use herald::simulate::{Telescope, INSTRUMENT};

use crate::load::{api_app, encode, get_bytes, load_average, now_ns, percentile, rate, records_of};

const DAY_NS: i64 = 24 * 3_600 * 1_000_000_000;

pub async fn run(ticks: usize, classes: usize, queries: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("causes.db"), Default::default()).unwrap();
    let to_ns = now_ns();
    let from_ns = to_ns - DAY_NS;
    let spacing = DAY_NS / ticks.max(1) as i64;
    let mut telescope = Telescope::new(8, 17);
    let t = Instant::now();
    let (mut records, mut batch) = (0usize, Vec::new());
    for i in 0..ticks {
        // A tick's work ends a few seconds before its clock: the first one still falls in the day.
        let clock = from_ns + (i as i64 + 1) * spacing;
        for r in telescope.tick_at(clock as u64) {
            batch.extend(records_of(&r));
        }
        if batch.len() >= 20_000 || i + 1 == ticks {
            records += batch.len();
            store.write(&WriteBatch::of(std::mem::take(&mut batch))).await.unwrap();
            eprint!("\rloaded {records} records…");
        }
    }
    eprintln!(" ({:.0} records/s)", rate(records, t.elapsed()));
    let stages = store.stages(INSTRUMENT).await.unwrap();
    let entities: u64 = stages.iter().map(|s| s.count).sum();

    let app = api_app(Arc::new(store.clone()));
    let window = format!("instrument={INSTRUMENT}&from_ns={from_ns}&to_ns={to_ns}");
    let errors: serde_json::Value =
        serde_json::from_slice(&get_bytes(&app, &format!("/api/v1/errors?{window}&limit={classes}")).await).unwrap();
    let groups = errors["groups"].as_array().unwrap();
    assert!(!groups.is_empty(), "the telescope mix has error events");
    let picked: Vec<(String, u64, u64)> = groups
        .iter()
        .map(|g| {
            (
                g["class"].as_str().unwrap().to_owned(),
                g["occurrences"].as_u64().unwrap(),
                g["entities_affected"].as_u64().unwrap(),
            )
        })
        .collect();
    let uris: Vec<String> =
        picked.iter().map(|(c, _, _)| format!("/api/v1/errors/{}/causes?{window}", encode(c))).collect();

    let load_before = load_average();
    // One warm-up round (a running herald's page cache), then the timed rounds.
    let mut answers = Vec::new();
    for uri in &uris {
        answers.push(serde_json::from_slice::<serde_json::Value>(&get_bytes(&app, uri).await).unwrap());
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); uris.len()];
    for _ in 0..queries {
        for (k, uri) in uris.iter().enumerate() {
            let t = Instant::now();
            std::hint::black_box(get_bytes(&app, uri).await);
            times[k].push(t.elapsed());
        }
    }
    let mut all: Vec<Duration> = times.iter().flatten().copied().collect();
    all.sort();
    for v in &mut times {
        v.sort();
    }

    println!("### Root-cause hints over 24 h of telescope traffic (SQLite)\n");
    println!(
        "{ticks} ticks of the benchmark mix (8 beams) spread over 24 h: {records} records, {entities} entities of \
         `{INSTRUMENT}`. Load before: {load_before}; after: {}. {queries} rounds, the {} most frequent error \
         classes interleaved in each, after one warm-up round; each request is the whole 24 h window.\n",
        load_average(),
        uris.len()
    );
    println!("| error class | errors | failing entities | compared (failing / baseline) | top cause | p50 | p95 |");
    println!("|---|---:|---:|---|---|---:|---:|");
    for (k, (class, occurrences, affected)) in picked.iter().enumerate() {
        let a = &answers[k];
        let top = &a["causes"][0];
        let cause = if top.is_null() {
            "(none)".to_owned()
        } else {
            format!("{} `{}`", top["kind"].as_str().unwrap_or(""), top["value"].as_str().unwrap_or(""))
        };
        println!(
            "| `{}` | {occurrences} | {affected} | {} / {} | {cause} | {:.0?} | {:.0?} |",
            class.replace('|', "\\|"),
            a["failing_compared"],
            a["baseline_compared"],
            percentile(&times[k], 0.5),
            percentile(&times[k], 0.95)
        );
    }
    println!(
        "\nAll {} requests: p50 {:.0?}, p95 {:.0?}, max {:.0?}.\n",
        all.len(),
        percentile(&all, 0.5),
        percentile(&all, 0.95),
        all.last().copied().unwrap_or_default()
    );
}
