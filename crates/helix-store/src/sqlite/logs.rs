//! The SQLite log search: the shared clauses (`crate::filter::log_clauses`) over `logs`, in
//! either time order, with the body match narrowed by the block filters (`super::grams`) when
//! few blocks may hold the text and checked row by row along the time index otherwise.
//!
//! Between the two, which is cheaper depends on how many lines the other filters keep, which
//! only the walk finds out: a text that may be in more than `RARE` blocks is first looked for
//! along the time index within `WALK_STEPS`, and a walk that has not filled its page by then
//! scans the candidate blocks instead; a text that more than `BLOCKS_MAX` blocks may hold is
//! walked for, to the end if need be. Either path gives the same lines in the same order.

use helix_model::LogRecorded;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, Row};

use super::grams;
use super::read::{sql_value, Query};
use crate::cursor::{self, fetch_limit, page_limit, split_page};
use crate::filter::{like_anywhere, log_clauses, log_order, SQLITE_LOGS};
use crate::rows::parse_metadata;
use crate::{LogField, LogFilter, Page, PageRequest, StoreResult};

const LOG_COLUMNS: &str = "timestamp_ns, observed_ns, severity, severity_number, body, trace_id, span_id, entity_id,
     instrument_id, process_name, service_name, source, attributes, resource, id";

/// A `logs` row with its JSON columns still text, and its row ID.
type RawLog = (LogRecorded, String, String, i64);

fn log_row(r: &Row<'_>) -> rusqlite::Result<RawLog> {
    let timestamp_ns: i64 = r.get(0)?;
    Ok((
        LogRecorded {
            timestamp_ns,
            observed_ns: r.get::<_, Option<i64>>(1)?.unwrap_or(timestamp_ns),
            severity: r.get(2)?,
            severity_number: r.get(3)?,
            body: r.get(4)?,
            trace_id: r.get(5)?,
            span_id: r.get(6)?,
            entity_id: r.get(7)?,
            instrument_id: r.get(8)?,
            process_name: r.get(9)?,
            service_name: r.get(10)?,
            source: r.get(11)?,
            attributes: Default::default(),
            resource: Default::default(),
        },
        r.get(12)?,
        r.get(13)?,
        r.get(14)?,
    ))
}

/// Candidate blocks below which the blocks drive the search from the start (a block scan
/// costs about a quarter of a walked row per row: 32 blocks ≈ 30 000 walked rows).
const RARE: usize = 32;
/// SQLite VM steps a walk along the time index may take before the search switches to
/// scanning the candidate blocks: about 100 000 rows walked (a walked row tested against the
/// body takes about ten steps).
const WALK_STEPS: i64 = 1_000_000;
/// At most this many candidate blocks (≈ 500 000 rows) are scanned, by a walk that ran out of
/// `WALK_STEPS`; a text that more may hold is walked for without a bound (nothing cheaper is
/// left to hand over to, so a bounded first walk would only be repeated).
const BLOCKS_MAX: usize = 128;

pub(super) fn search(
    conn: &Connection,
    f: &LogFilter,
    page: &PageRequest,
    steps: &super::ReadSteps,
) -> StoreResult<Page<LogRecorded>> {
    search_with(conn, f, page, steps, (RARE, WALK_STEPS, BLOCKS_MAX)).map(|(page, _)| page)
}

/// How a search found its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Through the candidate blocks from the start (a rare text).
    Text,
    /// Along the time index: no indexable text, a text that more than `BLOCKS_MAX` blocks may
    /// hold, or a walk that filled its page within `WALK_STEPS`.
    Walk,
    /// A walk within `WALK_STEPS`, then (it ran out) the candidate blocks.
    WalkThen,
}

/// [`search`] with its thresholds (`RARE`, `WALK_STEPS`, `BLOCKS_MAX`), saying how it went.
fn search_with(
    conn: &Connection,
    f: &LogFilter,
    page: &PageRequest,
    steps: &super::ReadSteps,
    (rare, walk_steps, blocks_max): (usize, i64, usize),
) -> StoreResult<(Page<LogRecorded>, Plan)> {
    let Some(text) = f.text.as_deref().filter(|t| grams::indexable(t)) else {
        return Ok((run(conn, f, page, None)?, Plan::Walk));
    };
    let needle = grams::Needle::new(text);
    let Some(blocks) = grams::candidates(conn, &needle, f.from_ns, f.to_ns, blocks_max)? else {
        // Too many blocks may hold the text for scanning them to pay: walk, to the end if need be.
        return Ok((run(conn, f, page, None)?, Plan::Walk));
    };
    if blocks.len() < rare {
        return Ok((run(conn, f, page, Some(&blocks))?, Plan::Text));
    }
    match steps.bounded(walk_steps, || run(conn, f, page, None)) {
        (Err(_), true) => Ok((run(conn, f, page, Some(&blocks))?, Plan::WalkThen)),
        (walked, _) => Ok((walked?, Plan::Walk)),
    }
}

/// One page of the search, the rows read from the candidate `blocks` only (the text's block
/// filters) or along the time index, the body checked on each.
fn run(conn: &Connection, f: &LogFilter, page: &PageRequest, blocks: Option<&[i64]>) -> StoreResult<Page<LogRecorded>> {
    let limit = page_limit(page);
    let text = f.text.as_deref().filter(|t| !t.is_empty());
    if blocks.is_some_and(|b| b.is_empty()) {
        return Ok(Page { items: Vec::new(), next_cursor: None });
    }
    // Candidate blocks are read by row ID; left to itself the planner would walk a service's
    // or process's index (`logs_service_time`) testing each row against the ranges. A trace's
    // or span's few lines are still found through their own index.
    // A trace's lines: its index, which the planner would otherwise pass over for a service's
    // time index when both are filtered (the epoch IN list hides how few rows it holds).
    let narrow = f.trace_id.is_some() || f.span_id.is_some();
    let from = if f.trace_id.is_some() {
        "logs INDEXED BY logs_trace_epoch"
    } else if blocks.is_some() && !narrow {
        "logs NOT INDEXED"
    } else {
        "logs"
    };
    let mut query = Query::new(format!("SELECT {LOG_COLUMNS} FROM {from} WHERE 1 = 1"));
    for (clause, params) in log_clauses(f, page.cursor.as_deref(), &SQLITE_LOGS)? {
        query.and(clause, params.into_iter().map(sql_value).collect());
    }
    if let Some(blocks) = blocks {
        let ranges = grams::ranges(blocks);
        let clause = vec!["id BETWEEN ? AND ?"; ranges.len()].join(" OR ");
        let params = ranges.iter().flat_map(|&(a, b)| [SqlValue::Integer(a), SqlValue::Integer(b)]).collect();
        query.and(&format!("({clause})"), params);
    }
    if let Some(text) = text {
        query.and("body LIKE ? ESCAPE '\\'", vec![SqlValue::Text(like_anywhere(text))]);
    }
    query.then(&format!("{} LIMIT ?", log_order(f.order)), vec![SqlValue::Integer(fetch_limit(limit))]);
    let raw = conn
        .prepare_cached(&query.sql)?
        .query_map(rusqlite::params_from_iter(query.args), log_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let rows = raw
        .into_iter()
        .map(|(mut l, attrs, resource, id)| {
            l.attributes = parse_metadata(&attrs)?;
            l.resource = parse_metadata(&resource)?;
            Ok((l, id))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let page = split_page(rows, limit, |(l, id)| cursor::after_log(f.order, l.timestamp_ns, *id));
    Ok(Page { items: page.items.into_iter().map(|(l, _)| l).collect(), next_cursor: page.next_cursor })
}

pub(super) fn values(
    conn: &Connection,
    field: LogField,
    from_ns: i64,
    to_ns: i64,
    limit: usize,
) -> StoreResult<Vec<String>> {
    let column = crate::filter::log_column(field);
    let sql = format!(
        "SELECT DISTINCT {column} FROM logs WHERE timestamp_ns >= ?1 AND timestamp_ns < ?2 AND {column} IS NOT NULL
         ORDER BY 1 LIMIT ?3"
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(rusqlite::params![from_ns, to_ns, limit as i64], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Log rows removed per transaction by retention (with the filters of the blocks emptied).
const PRUNE_BATCH: i64 = 5_000;
/// The writer is left to ingest this long between two retention batches.
const PRUNE_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// One log retention pass: records older than `now_ns - max_age`, oldest first, in small
/// IMMEDIATE transactions with a pause between them. Returns the records removed.
pub(super) fn prune(inner: &super::Inner, max_age: std::time::Duration, now_ns: i64) -> StoreResult<u64> {
    let cutoff = now_ns.saturating_sub(i64::try_from(max_age.as_nanos()).unwrap_or(i64::MAX));
    let mut removed = 0u64;
    loop {
        let n = {
            let mut writer = super::lock(&inner.writer);
            let tx = writer.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let n = tx
                .prepare_cached(
                    "DELETE FROM logs WHERE id IN
                         (SELECT id FROM logs WHERE timestamp_ns < ?1 ORDER BY timestamp_ns LIMIT ?2)",
                )?
                .execute(rusqlite::params![cutoff, PRUNE_BATCH])?;
            // Blocks whose every row is gone (all of them when no line is left).
            tx.prepare_cached(
                "DELETE FROM log_blocks WHERE block < coalesce((SELECT min(id) FROM logs) >> ?1, 1 << 62)",
            )?
            .execute([grams::BLOCK_SHIFT])?;
            tx.commit()?;
            n as u64
        };
        removed += n;
        if n < PRUNE_BATCH as u64 {
            break;
        }
        std::thread::sleep(PRUNE_PAUSE);
    }
    if removed > 0 {
        tracing::info!(removed, "log retention: removed records older than the limit");
    }
    Ok(removed)
}

/// The background job: a pass every retention interval, for as long as the store is open.
pub(super) fn spawn(inner: std::sync::Weak<super::Inner>, max_age: std::time::Duration) {
    super::retention::every_interval(inner, "log-retention", move |i, now| prune(i, max_age, now));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SqliteOptions, SqliteStore, Store, WriteBatch, WriteRecord};

    fn line(i: i64) -> LogRecorded {
        LogRecorded {
            timestamp_ns: 1_700_000_000_000_000_000 + i,
            observed_ns: 1_700_000_000_000_000_000 + i,
            severity: if i % 3 == 0 { "ERROR" } else { "INFO" }.to_owned(),
            severity_number: if i % 3 == 0 { 17 } else { 9 },
            body: if i % 1000 == 7 { format!("line {i}: lost lock on beam") } else { format!("line {i}: ok") },
            trace_id: None,
            span_id: None,
            entity_id: None,
            instrument_id: Some("I".to_owned()),
            process_name: None,
            service_name: Some(if i % 2 == 0 { "search" } else { "ingest" }.to_owned()),
            source: None,
            attributes: Default::default(),
            resource: Default::default(),
        }
    }

    /// Every path gives the same pages, cursors included; the thresholds pick the path.
    #[tokio::test]
    async fn each_plan_returns_the_same_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let records = (0..20_000).map(|i| WriteRecord::Log(line(i))).collect();
        store.write(&WriteBatch::of(records)).await.unwrap();
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let steps = std::sync::Arc::new(super::super::ReadSteps::new());
        let handler = steps.clone();
        conn.progress_handler(super::super::CANCEL_CHECK_STEPS, Some(move || handler.stop()));
        let filter = LogFilter {
            service_name: Some("ingest".into()),
            level: Some("info".into()),
            text: Some("LOST LOCK".into()),
            order: crate::LogOrder::Desc,
            ..LogFilter::default()
        };
        let pages = |thresholds: (usize, i64, usize)| {
            let mut all = Vec::new();
            let mut plans = Vec::new();
            let mut cursor = None;
            loop {
                let page = PageRequest { limit: 7, cursor };
                let (p, plan) = search_with(&conn, &filter, &page, &steps, thresholds).unwrap();
                plans.push(plan);
                all.extend(p.items.into_iter().map(|l| l.body));
                cursor = p.next_cursor;
                if cursor.is_none() {
                    break (all, plans);
                }
            }
        };
        // Lines 7 + 1000k of the ingest service (odd) at INFO (not a multiple of 3), newest first.
        let want: Vec<String> = (0..20_000)
            .rev()
            .filter(|i| i % 1000 == 7 && i % 2 == 1 && i % 3 != 0)
            .map(|i| format!("line {i}: lost lock on beam"))
            .collect();
        assert!(want.len() > 10, "{}", want.len());
        let (text, plans) = pages((1_000, i64::MAX, 1_000));
        assert_eq!((text, plans[0]), (want.clone(), Plan::Text));
        let (walk, plans) = pages((2, i64::MAX, 1_000));
        assert_eq!((walk, plans[0]), (want.clone(), Plan::Walk));
        let (handed, plans) = pages((2, 1, 1_000));
        assert_eq!((handed, plans[0]), (want.clone(), Plan::WalkThen));
        // More candidate blocks than may be scanned: a walk without a bound, however small.
        let (walked_on, plans) = pages((2, 1, 2));
        assert_eq!((walked_on, plans[0]), (want, Plan::Walk));
        // The allowance is the walk's only: the next statement runs unbounded.
        let n: i64 = conn.query_row("SELECT count(*) FROM logs WHERE body LIKE '%o%'", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 20_000);
    }
}
