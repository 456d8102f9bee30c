//! The SQLite log search: the shared clauses (`crate::filter::log_clauses`) over `logs`, in
//! either time order, with the body match driven by the trigram index (`logs_text`) when the
//! text is rare and checked row by row along the time index when it is common.

use helix_model::LogRecorded;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, Row};

use super::read::{sql_value, Query};
use crate::cursor::{self, fetch_limit, page_limit, split_page};
use crate::filter::{like_anywhere, log_clauses, log_order, RARE};
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

/// The trigram index answers a LIKE of three characters or more (without ESCAPE, so `%` and
/// `_` in the text widen it; the exact match on the row narrows it again).
fn indexable(text: &str) -> bool {
    text.chars().count() >= 3
}

/// Fewer than `RARE` rows contain the text: the index then drives the search.
fn rare(conn: &Connection, text: &str) -> StoreResult<bool> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM (SELECT 1 FROM logs_text WHERE body LIKE ?1 LIMIT ?2)")?
        .query_row(rusqlite::params![format!("%{text}%"), RARE], |r| r.get(0))?;
    Ok(n < RARE)
}

pub(super) fn search(conn: &Connection, f: &LogFilter, page: &PageRequest) -> StoreResult<Page<LogRecorded>> {
    let limit = page_limit(page);
    let text = f.text.as_deref().filter(|t| !t.is_empty());
    let rare_text = match text {
        Some(t) if indexable(t) => rare(conn, t)?,
        _ => false,
    };
    // A rare text drives through its rowids; left to itself the planner would walk a
    // service's or process's index (`logs_service_time`) testing each row against them. A
    // trace's or span's few lines are still found through their own index.
    let narrow = f.trace_id.is_some() || f.span_id.is_some();
    let from = if rare_text && !narrow { "logs NOT INDEXED" } else { "logs" };
    let mut query = Query::new(format!("SELECT {LOG_COLUMNS} FROM {from} WHERE 1 = 1"));
    for (clause, params) in log_clauses(f, page.cursor.as_deref())? {
        query.and(clause, params.into_iter().map(sql_value).collect());
    }
    if let Some(text) = text {
        if rare_text {
            query.and(
                "id IN (SELECT rowid FROM logs_text WHERE body LIKE ?)",
                vec![SqlValue::Text(format!("%{text}%"))],
            );
        }
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

/// Log rows removed per transaction by retention (the trigram index entries go with them).
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
