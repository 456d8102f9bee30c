//! SQLite reads over an instrument's time window: its events, monitor points and stage
//! histogram (`crate::window` has the types).

use std::collections::BTreeSet;

use helix_model::EntityEvent;
use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;

use super::read::{event_row, sql_value, with_metadata, Query};
use crate::cursor::{fetch_limit, page_limit, split_page};
use crate::filter::event_clauses;
use crate::rows::parse_metadata;
use crate::{
    cursor, numeric_value, EventQuery, MonitorPoint, MonitorPoints, MonitorQuery, Page, PageRequest, StageBucket,
    StageHistogramQuery, StoreResult,
};

pub(super) fn instrument_events(
    conn: &Connection,
    q: &EventQuery,
    page: &PageRequest,
) -> StoreResult<Page<EntityEvent>> {
    let limit = page_limit(page);
    let mut query = Query::new(
        "SELECT instrument_id, entity_id, event_name, timestamp_ns, metadata, trace_id, span_id, ordinal
         FROM entity_events WHERE 1 = 1"
            .to_owned(),
    );
    for (clause, params) in event_clauses(q, page.cursor.as_deref())? {
        query.and(clause, params.into_iter().map(sql_value).collect());
    }
    query.then(
        " ORDER BY timestamp_ns DESC, span_id DESC, ordinal DESC LIMIT ?",
        vec![SqlValue::Integer(fetch_limit(limit))],
    );
    let raw: Vec<(EntityEvent, String)> = conn
        .prepare_cached(&query.sql)?
        .query_map(rusqlite::params_from_iter(query.args), event_row)?
        .collect::<Result<_, _>>()?;
    let rows = with_metadata(raw)?;
    Ok(split_page(rows, limit, |e| cursor::after_event(cursor::INSTRUMENT_EVENTS, e)))
}

pub(super) fn numeric_fields(
    conn: &Connection,
    instrument_id: &str,
    from_ns: i64,
    to_ns: i64,
    sample: usize,
) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT metadata FROM entities
         WHERE instrument_id = ?1 AND placeholder = 0 AND timestamp_ns >= ?2 AND timestamp_ns < ?3
         ORDER BY timestamp_ns DESC LIMIT ?4",
    )?;
    let rows =
        stmt.query_map(rusqlite::params![instrument_id, from_ns, to_ns, sample as i64], |r| r.get::<_, String>(0))?;
    let mut keys = BTreeSet::new();
    for text in rows {
        let metadata = parse_metadata(&text?)?;
        for (k, v) in metadata {
            if numeric_value(&v).is_some() {
                keys.insert(k);
            }
        }
    }
    Ok(keys.into_iter().collect())
}

pub(super) fn monitor_points(conn: &Connection, q: &MonitorQuery) -> StoreResult<MonitorPoints> {
    let limit = q.limit.max(1);
    // Rows without the key are skipped in SQL; non-numeric values are skipped here.
    let mut stmt = conn.prepare_cached(
        "SELECT id, timestamp_ns, metadata FROM entities
         WHERE instrument_id = ?1 AND placeholder = 0 AND timestamp_ns >= ?2 AND timestamp_ns < ?3
           AND EXISTS (SELECT 1 FROM json_each(entities.metadata) AS m WHERE m.key = ?4)
         ORDER BY timestamp_ns DESC, id ASC",
    )?;
    let mut rows = stmt.query(rusqlite::params![q.instrument_id, q.from_ns, q.to_ns, q.y_field])?;
    let mut out = MonitorPoints::default();
    while let Some(row) = rows.next()? {
        let metadata = parse_metadata(&row.get::<_, String>(2)?)?;
        let Some(y) = metadata.get(&q.y_field).and_then(|v| numeric_value(v)) else {
            continue;
        };
        if out.points.len() == limit {
            out.truncated = true;
            break;
        }
        let weight = q.weight_field.as_ref().and_then(|w| metadata.get(w)).and_then(|v| numeric_value(v));
        out.points.push(MonitorPoint { id: row.get(0)?, timestamp_ns: row.get(1)?, y, weight, metadata });
    }
    Ok(out)
}

pub(super) fn stage_histogram(conn: &Connection, q: &StageHistogramQuery) -> StoreResult<Vec<StageBucket>> {
    let bucket_ns = q.bucket_ns.max(1);
    let rows = conn
        .prepare_cached(
            "SELECT stage, (timestamp_ns - ?2) / ?4 AS b, count(*), sum(status = 'error')
             FROM entities
             WHERE instrument_id = ?1 AND placeholder = 0 AND stage IS NOT NULL
               AND timestamp_ns >= ?2 AND timestamp_ns < ?3
             GROUP BY stage, b ORDER BY stage, b",
        )?
        .query_map(rusqlite::params![q.instrument_id, q.from_ns, q.to_ns, bucket_ns], |r| {
            Ok(StageBucket {
                stage: r.get(0)?,
                // In-window rows give 0 <= b < (to - from) / bucket, which callers keep small.
                bucket: u32::try_from(r.get::<_, i64>(1)?.max(0)).unwrap_or(u32::MAX),
                count: r.get::<_, i64>(2)?.max(0) as u64,
                error_count: r.get::<_, i64>(3)?.max(0) as u64,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}
