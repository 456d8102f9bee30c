//! Span retention on SQLite (docs/storage.md "Span retention"): whole traces are removed —
//! those that started before `now - max_age`, then, while the span store is over its byte
//! budget, the oldest ones — in small IMMEDIATE transactions with a pause between them, so an
//! ingest batch never waits for more than one of them. Entity, operation, event and log rows
//! are not touched; span sources stay (a few rows shared by every span of a process).

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, TransactionBehavior};

use super::{lock, Inner};
use crate::plan::{term_hash, TERM_INSTRUMENT, TERM_NAME, TERM_SERVICE};
use crate::{SpanRetention, StoreResult};

/// Traces removed per transaction (1–2 spans each in the telescope mix, more elsewhere).
const BATCH_TRACES: i64 = 200;
/// The writer is left to ingest this long between two batches.
const PAUSE: Duration = Duration::from_millis(50);
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

/// One pass: batches until nothing is left to remove. Returns the spans removed.
pub(super) fn pass(inner: &Inner, limits: &SpanRetention, now_ns: i64) -> StoreResult<u64> {
    let cutoff = limits.max_age.map(|age| now_ns.saturating_sub(i64::try_from(age.as_nanos()).unwrap_or(i64::MAX)));
    let mut removed = 0;
    if let Some(cutoff) = cutoff {
        loop {
            let (traces, spans, _) = {
                let mut conn = lock(&inner.writer);
                remove_batch(&mut conn, Victims::StartedBefore(cutoff))?
            };
            removed += spans;
            if traces < BATCH_TRACES as u64 {
                break;
            }
            std::thread::sleep(PAUSE);
        }
    }
    if let Some(budget) = limits.max_bytes {
        let budget = i64::try_from(budget).unwrap_or(i64::MAX);
        // Summed once (a read beside the writer); each batch then says what it freed.
        let sum = |c: &Connection| Ok(c.query_row("SELECT coalesce(sum(bytes), 0) FROM traces", [], |r| r.get(0))?);
        let mut total: i64 = inner.with_reader(sum)?;
        while total > budget {
            let (traces, spans, freed) = {
                let mut conn = lock(&inner.writer);
                remove_batch(&mut conn, Victims::Bytes(total - budget))?
            };
            removed += spans;
            total -= freed;
            if traces == 0 {
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

enum Victims {
    StartedBefore(i64),
    /// The oldest traces, as many as it takes to free this many bytes (at most a batch).
    Bytes(i64),
}

/// Remove one batch of victims, their spans and search terms, in one transaction.
/// Returns the traces, spans and bytes removed.
fn remove_batch(conn: &mut Connection, victims: Victims) -> StoreResult<(u64, u64, i64)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // (trace, bytes, start, end) of each victim.
    let mut chosen: Vec<(Vec<u8>, i64, i64, i64)> = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT trace_id, start_ns, bytes, start_ns + duration_ns FROM spans INDEXED BY traces_start
             WHERE span_id = x'0000000000000000' ORDER BY start_ns, trace_id DESC LIMIT ?1",
        )?;
        let mut rows = stmt.query([BATCH_TRACES])?;
        let mut freed = 0;
        while let Some(r) = rows.next()? {
            let (id, start, bytes, end): (Vec<u8>, i64, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            match victims {
                Victims::StartedBefore(cutoff) if start >= cutoff => break,
                Victims::Bytes(excess) if freed >= excess => break,
                _ => {}
            }
            freed += bytes;
            chosen.push((id, bytes, start, end));
        }
    }
    let mut spans = 0u64;
    {
        let mut terms = tx.prepare_cached(
            "SELECT DISTINCT s.name, src.service_name, src.instrument_id
             FROM spans AS s JOIN span_sources AS src ON src.id = s.source_id
             WHERE s.trace_id = ?1 AND s.span_id > x'0000000000000000'",
        )?;
        // A term's entry carries the trace's start as first written: within [start, end] now.
        let mut del_term = tx.prepare_cached(
            "DELETE FROM trace_terms WHERE term = ?1 AND start_ns BETWEEN ?2 AND ?3 AND trace_id = ?4",
        )?;
        let mut del_spans =
            tx.prepare_cached("DELETE FROM spans WHERE trace_id = ?1 AND span_id > x'0000000000000000'")?;
        let mut del_trace =
            tx.prepare_cached("DELETE FROM spans WHERE trace_id = ?1 AND span_id = x'0000000000000000'")?;
        for (id, _, start, end) in &chosen {
            let found: Vec<(String, Option<String>, Option<String>)> =
                terms.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?;
            let mut hashes: Vec<i64> = Vec::new();
            for (name, service, instrument) in &found {
                hashes.push(term_hash(TERM_NAME, name));
                hashes.extend(service.as_deref().map(|v| term_hash(TERM_SERVICE, v)));
                hashes.extend(instrument.as_deref().map(|v| term_hash(TERM_INSTRUMENT, v)));
            }
            hashes.sort_unstable();
            hashes.dedup();
            for h in hashes {
                del_term.execute(rusqlite::params![h, start, end, id])?;
            }
            spans += del_spans.execute([id])? as u64;
            del_trace.execute([id])?;
        }
    }
    tx.commit()?;
    Ok((chosen.len() as u64, spans, chosen.iter().map(|c| c.1).sum()))
}

/// The background job: a pass every interval, the first one an interval after opening (a
/// herald starting up first serves), for as long as the store is open: it holds no strong
/// reference, so closing the store ends it.
pub(super) fn spawn(inner: Weak<Inner>, limits: SpanRetention) {
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
        if let Err(e) = pass(&strong, &limits, now_ns()) {
            tracing::warn!(error = %e, "span retention pass failed; the next one tries again");
        }
    };
    if let Err(e) = std::thread::Builder::new().name("span-retention".into()).spawn(job) {
        tracing::warn!(error = %e, "span retention job not started");
    }
}
