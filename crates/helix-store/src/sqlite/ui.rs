//! SQLite reads for the Entity Inspector: an instrument's events in a window, numeric
//! metadata for the data monitor, and per-stage counts over time.

use std::collections::BTreeSet;

use helix_model::EntityEvent;
use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;
use serde_json::Value;

use super::read::{event_row, with_metadata};
use crate::rows::parse_metadata;
use crate::{
    cursor, numeric_value, EventQuery, MonitorPoint, MonitorPoints, MonitorQuery, Page, PageRequest, StageBucket,
    StageHistogramQuery, StoreResult,
};

const INSTRUMENT_EVENTS_CURSOR: &str = "instrument_events";

pub(super) fn instrument_events(
    conn: &Connection,
    q: &EventQuery,
    page: &PageRequest,
) -> StoreResult<Page<EntityEvent>> {
    let limit = page.limit.max(1);
    let mut sql = String::from(
        "SELECT instrument_id, entity_id, event_name, timestamp_ns, metadata, trace_id, span_id, ordinal
         FROM entity_events WHERE 1 = 1",
    );
    let mut args: Vec<SqlValue> = Vec::new();
    let mut clause = |sql: &mut String, text: &str, value: SqlValue| {
        args.push(value);
        sql.push_str(&text.replace('?', &format!("?{}", args.len())));
    };
    if let Some(i) = &q.instrument_id {
        clause(&mut sql, " AND instrument_id = ?", SqlValue::Text(i.clone()));
    }
    if let Some(n) = &q.event_name {
        clause(&mut sql, " AND event_name = ?", SqlValue::Text(n.clone()));
    }
    if let Some(from) = q.from_ns {
        clause(&mut sql, " AND timestamp_ns >= ?", SqlValue::Integer(from));
    }
    if let Some(to) = q.to_ns {
        clause(&mut sql, " AND timestamp_ns < ?", SqlValue::Integer(to));
    }
    if let Some(c) = &page.cursor {
        let p = cursor::decode(INSTRUMENT_EVENTS_CURSOR, c, 3)?;
        let (ts, span, ord) = (cursor::part_i64(&p, 0)?, cursor::part_str(&p, 1)?, cursor::part_i64(&p, 2)?);
        clause(&mut sql, " AND (timestamp_ns, span_id, ordinal) < (?", SqlValue::Integer(ts));
        clause(&mut sql, ", ?", SqlValue::Text(span));
        clause(&mut sql, ", ?)", SqlValue::Integer(ord));
    }
    clause(
        &mut sql,
        " ORDER BY timestamp_ns DESC, span_id DESC, ordinal DESC LIMIT ?",
        SqlValue::Integer((limit + 1) as i64),
    );
    let raw: Vec<(EntityEvent, String)> =
        conn.prepare_cached(&sql)?.query_map(rusqlite::params_from_iter(args), event_row)?.collect::<Result<_, _>>()?;
    let mut rows = with_metadata(raw)?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if more {
        rows.last().map(|e| {
            cursor::encode(
                INSTRUMENT_EVENTS_CURSOR,
                vec![Value::from(e.timestamp_ns), Value::from(e.span_id.clone()), Value::from(e.ordinal)],
            )
        })
    } else {
        None
    };
    Ok(Page { items: rows, next_cursor })
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
