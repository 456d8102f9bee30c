//! PostgreSQL reads over an instrument's time window: its events, monitor points and stage
//! histogram (same results as `sqlite/window.rs`; the conformance suite checks both).

use crate::rows::parse_metadata;
use std::collections::BTreeSet;

use deadpool_postgres::Object;
use helix_model::EntityEvent;
use tokio_postgres::types::ToSql;

use super::map_pg;
use super::read::{event_from_row, pg_value, Query};
use crate::cursor::{fetch_limit, page_limit, split_page};
use crate::filter::event_clauses;
use crate::{
    cursor, numeric_value, EventQuery, MonitorPoint, MonitorPoints, MonitorQuery, Page, PageRequest, StageBucket,
    StageHistogramQuery, StoreResult,
};

async fn q(c: &Object, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Vec<tokio_postgres::Row>> {
    let stmt = c.prepare_cached(sql).await.map_err(map_pg)?;
    c.query(&stmt, params).await.map_err(map_pg)
}

pub(super) async fn instrument_events(
    c: &Object,
    query: &EventQuery,
    page: &PageRequest,
) -> StoreResult<Page<EntityEvent>> {
    let limit = page_limit(page);
    let mut sql = Query::new(
        "SELECT instrument_id, entity_id, event_name, timestamp_ns, metadata::text, trace_id, span_id, ordinal
         FROM entity_events WHERE true"
            .to_owned(),
    );
    for (clause, params) in event_clauses(query, page.cursor.as_deref())? {
        sql.and(clause, params.into_iter().map(pg_value).collect());
    }
    sql.then(" ORDER BY timestamp_ns DESC, span_id DESC, ordinal DESC LIMIT ?", vec![Box::new(fetch_limit(limit))]);
    let rows = sql.run(c).await?;
    let items = rows.iter().map(event_from_row).collect::<StoreResult<Vec<_>>>()?;
    Ok(split_page(items, limit, |e| cursor::after_event(cursor::INSTRUMENT_EVENTS, e)))
}

pub(super) async fn numeric_fields(
    c: &Object,
    instrument_id: &str,
    from_ns: i64,
    to_ns: i64,
    sample: usize,
) -> StoreResult<Vec<String>> {
    let sample = i64::try_from(sample).unwrap_or(i64::MAX);
    let rows = q(
        c,
        "SELECT metadata::text FROM entities
         WHERE instrument_id = $1 AND NOT placeholder AND timestamp_ns >= $2 AND timestamp_ns < $3
         ORDER BY timestamp_ns DESC LIMIT $4",
        &[&instrument_id, &from_ns, &to_ns, &sample],
    )
    .await?;
    let mut keys = BTreeSet::new();
    for r in rows {
        let md: String = r.get(0);
        for (k, v) in parse_metadata(&md)? {
            if numeric_value(&v).is_some() {
                keys.insert(k);
            }
        }
    }
    Ok(keys.into_iter().collect())
}

/// Rows read per round trip while looking for numeric points.
const MONITOR_CHUNK: i64 = 2_000;

pub(super) async fn monitor_points(c: &Object, query: &MonitorQuery) -> StoreResult<MonitorPoints> {
    let limit = query.limit.max(1);
    let mut out = MonitorPoints::default();
    // Keyset paging in the result order: rows without the key are skipped in SQL, values that
    // are not numbers here (the numeric rule is Rust's, shared with SQLite), so the number of
    // rows needed is not known up front.
    let mut after: Option<(i64, String)> = None;
    loop {
        let (ts, id) = after.clone().unwrap_or((i64::MAX, String::new()));
        let first = after.is_none();
        let rows = q(
            c,
            "SELECT id, timestamp_ns, metadata::text FROM entities
             WHERE instrument_id = $1 AND NOT placeholder AND timestamp_ns >= $2 AND timestamp_ns < $3
               AND jsonb_exists(metadata, $4)
               AND ($7 OR timestamp_ns < $5 OR (timestamp_ns = $5 AND id > $6))
             ORDER BY timestamp_ns DESC, id ASC LIMIT $8",
            &[&query.instrument_id, &query.from_ns, &query.to_ns, &query.y_field, &ts, &id, &first, &MONITOR_CHUNK],
        )
        .await?;
        let fetched = rows.len();
        for r in rows {
            let md: String = r.get(2);
            let metadata = parse_metadata(&md)?;
            let id: String = r.get(0);
            let timestamp_ns: i64 = r.get(1);
            after = Some((timestamp_ns, id.clone()));
            let Some(y) = metadata.get(&query.y_field).and_then(|v| numeric_value(v)) else {
                continue;
            };
            if out.points.len() == limit {
                out.truncated = true;
                return Ok(out);
            }
            let weight = query.weight_field.as_ref().and_then(|w| metadata.get(w)).and_then(|v| numeric_value(v));
            out.points.push(MonitorPoint { id, timestamp_ns, y, weight, metadata });
        }
        if (fetched as i64) < MONITOR_CHUNK {
            return Ok(out);
        }
    }
}

pub(super) async fn stage_histogram(c: &Object, query: &StageHistogramQuery) -> StoreResult<Vec<StageBucket>> {
    let bucket_ns = query.bucket_ns.max(1);
    let rows = q(
        c,
        "SELECT stage, (timestamp_ns - $2) / $4 AS b, count(*), count(*) FILTER (WHERE status = 'error')
         FROM entities
         WHERE instrument_id = $1 AND NOT placeholder AND stage IS NOT NULL
           AND timestamp_ns >= $2 AND timestamp_ns < $3
         GROUP BY stage, b ORDER BY stage, b",
        &[&query.instrument_id, &query.from_ns, &query.to_ns, &bucket_ns],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| StageBucket {
            stage: r.get(0),
            // In-window rows give 0 <= b < (to - from) / bucket, which callers keep small.
            bucket: u32::try_from(r.get::<_, i64>(1).max(0)).unwrap_or(u32::MAX),
            count: r.get::<_, i64>(2).max(0) as u64,
            error_count: r.get::<_, i64>(3).max(0) as u64,
        })
        .collect())
}
