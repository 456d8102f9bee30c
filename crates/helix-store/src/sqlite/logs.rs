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
    let mut query = Query::new(format!("SELECT {LOG_COLUMNS} FROM logs WHERE 1 = 1"));
    for (clause, params) in log_clauses(f, page.cursor.as_deref())? {
        query.and(clause, params.into_iter().map(sql_value).collect());
    }
    if let Some(text) = f.text.as_deref().filter(|t| !t.is_empty()) {
        if indexable(text) && rare(conn, text)? {
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
