//! Span retention on SQLite (docs/storage.md "Span retention"): whole traces are removed —
//! those that started before `now - max_age`, then, while the span store is over its byte
//! budget, the oldest ones. A block whose every trace is to go is deleted whole (contiguous
//! key ranges); in the block where old and young traces meet, old traces go a batch at a
//! time. Each block or batch is its own short IMMEDIATE transaction with a pause after it, so
//! an ingest batch never waits for more than one. Entity, operation, event and log rows are
//! not touched; span sources stay (a few rows shared by every span of a process).

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::{lock, Inner};
use crate::{SpanRetention, StoreResult};

/// Traces removed per transaction inside a block (1–2 spans each in the telescope mix).
const BATCH_TRACES: i64 = 500;
/// The writer is left to ingest this long between two transactions.
const PAUSE: Duration = Duration::from_millis(20);
/// Time between two passes of the background job, unless `HELIX_RETENTION_INTERVAL_SECS`
/// (the PostgreSQL job's setting) says otherwise.
const INTERVAL: Duration = Duration::from_secs(60);

pub(super) fn interval() -> Duration {
    std::env::var("HELIX_RETENTION_INTERVAL_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(INTERVAL, |s| Duration::from_secs(s.max(1)))
}

pub(super) fn now_ns() -> i64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// What one step removed.
#[derive(Default)]
struct Removed {
    traces: u64,
    spans: u64,
    bytes: i64,
}

/// One pass: steps until nothing is left to remove. Returns the spans removed.
pub(super) fn pass(inner: &Inner, limits: &SpanRetention, now_ns: i64) -> StoreResult<u64> {
    let cutoff = limits.max_age.map(|age| now_ns.saturating_sub(i64::try_from(age.as_nanos()).unwrap_or(i64::MAX)));
    let mut removed = 0;
    if let Some(cutoff) = cutoff {
        loop {
            let step = step(inner, Goal::StartedBefore(cutoff))?;
            removed += step.spans;
            if step.traces == 0 {
                break;
            }
            std::thread::sleep(PAUSE);
        }
    }
    if let Some(budget) = limits.max_bytes {
        let budget = i64::try_from(budget).unwrap_or(i64::MAX);
        // Summed once (a read beside the writer); each step then says what it freed.
        let sum =
            |c: &Connection| Ok(c.query_row("SELECT coalesce(sum(bytes), 0) FROM span_blocks", [], |r| r.get(0))?);
        let mut total: i64 = inner.with_reader(sum)?;
        while total > budget {
            let step = step(inner, Goal::Free(total - budget))?;
            removed += step.spans;
            total -= step.bytes;
            if step.traces == 0 {
                break;
            }
            std::thread::sleep(PAUSE);
        }
    }
    if removed > 0 {
        tracing::info!(spans = removed, "span retention: removed old traces");
    }
    Ok(removed)
}

#[derive(Clone, Copy)]
enum Goal {
    StartedBefore(i64),
    /// The oldest traces, as many as it takes to free this many bytes.
    Free(i64),
}

/// One transaction: the oldest block with something to remove, whole if all of it goes,
/// else a batch of its oldest traces.
fn step(inner: &Inner, goal: Goal) -> StoreResult<Removed> {
    let mut writer = lock(&inner.writer);
    let open_block = writer.open.block;
    let tx = writer.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let sql = match goal {
        Goal::StartedBefore(_) => {
            "SELECT block, max_start_ns, bytes, first_id, last_id, span_count FROM span_blocks
             WHERE min_start_ns < ?1 ORDER BY min_start_ns LIMIT 1"
        }
        Goal::Free(_) => {
            "SELECT block, max_start_ns, bytes, first_id, last_id, span_count FROM span_blocks
             WHERE span_count > 0 AND ?1 = ?1 ORDER BY min_start_ns LIMIT 1"
        }
    };
    let arg = match goal {
        Goal::StartedBefore(c) => c,
        Goal::Free(_) => 0,
    };
    type Found = (i64, i64, i64, Option<i64>, Option<i64>, i64);
    let found: Option<Found> = tx
        .query_row(sql, [arg], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .optional()?;
    let Some((block, max_start, bytes, first, last, spans)) = found else { return Ok(Removed::default()) };
    let (first, last) = (first.unwrap_or(0), last.unwrap_or(-1));
    let whole = match goal {
        Goal::StartedBefore(cutoff) => max_start < cutoff,
        Goal::Free(excess) => bytes <= excess,
    };
    let removed = if whole {
        // The block's trace numbers are one range of the table's key.
        let traces = tx.execute("DELETE FROM span_traces WHERE id BETWEEN ?1 AND ?2", [first, last])? as u64;
        // Its postings with it (those of the partly removed block keep listing the removed
        // traces, which then find no row).
        tx.execute("DELETE FROM span_terms WHERE block = ?1", [block])?;
        if block == open_block {
            tx.execute(
                "UPDATE span_blocks SET min_start_ns = NULL, max_start_ns = NULL, span_count = 0, bytes = 0
                 WHERE block = ?1",
                [block],
            )?;
        } else {
            tx.execute("DELETE FROM span_blocks WHERE block = ?1", [block])?;
        }
        Removed { traces: traces.max(1), spans: spans.max(0) as u64, bytes }
    } else {
        oldest_traces(&tx, block, first, last, goal)?
    };
    tx.commit()?;
    if whole {
        let traces = usize::try_from(removed.traces).unwrap_or(usize::MAX);
        if block == open_block {
            // Its traces are gone: new spans of them start over in the open block.
            writer.open.spans = 0;
        } else {
            inner.directory.write().unwrap_or_else(|p| p.into_inner()).remove_block(block, first, last, traces);
        }
    } else if block == open_block {
        writer.open.spans -= i64::try_from(removed.spans).unwrap_or(0);
    }
    Ok(removed)
}

/// Remove a batch of the oldest traces of `block` (trace numbers `first..=last`) that `goal`
/// wants gone, and bring the block's row up to date.
fn oldest_traces(
    tx: &rusqlite::Transaction<'_>,
    block: i64,
    first: i64,
    last: i64,
    goal: Goal,
) -> StoreResult<Removed> {
    // (trace number, spans, bytes) of each victim.
    let mut chosen: Vec<(i64, i64, i64)> = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT id, start_ns, span_count, length(spans) FROM span_traces
             WHERE id BETWEEN ?1 AND ?2 ORDER BY start_ns, id LIMIT ?3",
        )?;
        let mut rows = stmt.query(rusqlite::params![first, last, BATCH_TRACES])?;
        let mut freed = 0;
        while let Some(r) = rows.next()? {
            let (id, start, spans, len): (i64, i64, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            match goal {
                Goal::StartedBefore(cutoff) if start >= cutoff => break,
                Goal::Free(excess) if freed >= excess => break,
                _ => {}
            }
            let bytes = super::pack::trace_bytes(usize::try_from(len).unwrap_or(0));
            freed += bytes;
            chosen.push((id, spans, bytes));
        }
    }
    let mut delete = tx.prepare_cached("DELETE FROM span_traces WHERE id = ?1")?;
    for (id, _, _) in &chosen {
        delete.execute([id])?;
    }
    let spans: i64 = chosen.iter().map(|c| c.1).sum();
    let bytes: i64 = chosen.iter().map(|c| c.2).sum();
    // The remaining traces' earliest start (the latest stays an upper bound).
    tx.prepare_cached(
        "UPDATE span_blocks SET span_count = span_count - ?2, bytes = bytes - ?3,
             min_start_ns = (SELECT min(start_ns) FROM span_traces WHERE id BETWEEN ?4 AND ?5),
             max_start_ns = iif(span_count - ?2 > 0, max_start_ns, NULL)
         WHERE block = ?1",
    )?
    .execute(rusqlite::params![block, spans, bytes, first, last])?;
    Ok(Removed { traces: chosen.len() as u64, spans: spans.max(0) as u64, bytes })
}

/// The background job: a pass every interval, the first one an interval after opening (a
/// herald starting up first serves), for as long as the store is open: it holds no strong
/// reference, so closing the store ends it.
pub(super) fn spawn(inner: Weak<Inner>, limits: SpanRetention) {
    every_interval(inner, "span-retention", move |i, now| pass(i, &limits, now));
}

/// Run `pass(store, now_ns)` on a thread named `name` every retention interval (the first one
/// an interval after opening) until the store closes; a failed pass is logged and the next
/// one tries again. Both retention jobs (spans, logs) run this way.
pub(super) fn every_interval(
    inner: Weak<Inner>,
    name: &'static str,
    pass: impl Fn(&Inner, i64) -> StoreResult<u64> + Send + 'static,
) {
    let every = interval();
    let job = move || loop {
        let mut slept = Duration::ZERO;
        while slept < every {
            std::thread::sleep(Duration::from_millis(200));
            slept += Duration::from_millis(200);
            if inner.strong_count() == 0 {
                return;
            }
        }
        let Some(strong): Option<Arc<Inner>> = inner.upgrade() else { return };
        let result = pass(&strong, now_ns());
        strong.retention.record(&result, now_ns());
        if let Err(e) = result {
            tracing::warn!(job = name, error = %e, "retention pass failed; the next one tries again");
        }
    };
    if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(job) {
        tracing::warn!(job = name, error = %e, "retention job not started");
    }
}
