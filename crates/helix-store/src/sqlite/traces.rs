//! The SQLite reads of the span store: one trace's spans, and the newest-first trace search
//! over the `traces` summaries (`crate::filter::trace_clauses`).

use std::collections::{BTreeSet, HashMap};

use helix_model::{SpanRecorded, SpanRole};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, Row};

use super::read::{json_keys, sql_value, Query};
use crate::cursor::{self, fetch_limit, page_limit, split_page};
use crate::filter::trace_clauses;
use crate::{Page, PageRequest, StoreError, StoreResult, StoredTrace, TraceFilter, TraceSummary};

/// `spans AS s` joined to its resource, in the order `span_row` reads.
const SPAN_SELECT: &str = "SELECT s.trace_id, s.span_id, s.parent_span_id, s.name, s.kind, s.start_ns, s.end_ns,
         s.status_code, s.status_message, s.service_name, s.process_name, s.instrument_id, s.entity_id,
         s.role, s.span_proto, r.resource, s.scope_name, s.scope_version
     FROM spans AS s JOIN span_resources AS r ON r.id = s.resource_id";

/// A span row with its role still as stored text (row closures cannot fail with our error).
fn span_row(r: &Row<'_>) -> rusqlite::Result<(SpanRecorded, String)> {
    Ok((
        SpanRecorded {
            trace_id: r.get(0)?,
            span_id: r.get(1)?,
            parent_span_id: r.get(2)?,
            name: r.get(3)?,
            kind: r.get(4)?,
            start_ns: r.get(5)?,
            end_ns: r.get(6)?,
            status_code: r.get(7)?,
            status_message: r.get(8)?,
            service_name: r.get(9)?,
            process_name: r.get(10)?,
            instrument_id: r.get(11)?,
            entity_id: r.get(12)?,
            role: SpanRole::Span,
            span_proto: r.get(14)?,
            resource_proto: r.get(15)?,
            scope_name: r.get(16)?,
            scope_version: r.get(17)?,
        },
        r.get(13)?,
    ))
}

fn with_role((mut s, role): (SpanRecorded, String)) -> StoreResult<SpanRecorded> {
    s.role = SpanRole::parse(&role).ok_or_else(|| StoreError::corrupt(format!("span role {role:?}")))?;
    Ok(s)
}

pub(super) fn trace(conn: &Connection, trace_id: &str, max_spans: usize) -> StoreResult<Option<StoredTrace>> {
    let sql = format!("{SPAN_SELECT} WHERE s.trace_id = ?1 ORDER BY s.start_ns, s.span_id LIMIT ?2");
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(rusqlite::params![trace_id, fetch_limit(max_spans)], span_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if rows.is_empty() {
        return Ok(None);
    }
    let partial = rows.len() > max_spans;
    let spans = rows.into_iter().take(max_spans).map(with_role).collect::<StoreResult<Vec<_>>>()?;
    Ok(Some(StoredTrace { spans, partial }))
}

pub(super) fn traces(conn: &Connection, f: &TraceFilter, page: &PageRequest) -> StoreResult<Page<TraceSummary>> {
    let limit = page_limit(page);
    let mut q = Query::new(
        "SELECT t.trace_id, t.root_name, t.root_service, t.start_ns, t.end_ns - t.start_ns, t.span_count,
             t.error_count
         FROM traces AS t WHERE 1 = 1"
            .to_owned(),
    );
    for (clause, params) in trace_clauses(f, page.cursor.as_deref())? {
        q.and(&clause, params.into_iter().map(sql_value).collect());
    }
    q.then(" ORDER BY t.start_ns DESC, t.trace_id ASC LIMIT ?", vec![SqlValue::Integer(fetch_limit(limit))]);
    let mut rows: Vec<TraceSummary> = conn
        .prepare_cached(&q.sql)?
        .query_map(rusqlite::params_from_iter(q.args), |r| {
            Ok(TraceSummary {
                trace_id: r.get(0)?,
                root_name: r.get(1)?,
                root_service: r.get(2)?,
                start_ns: r.get(3)?,
                duration_ns: r.get(4)?,
                // Counts are never negative.
                span_count: r.get::<_, i64>(5)?.max(0) as u64,
                error_count: r.get::<_, i64>(6)?.max(0) as u64,
                entity_ids: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let ids: Vec<&str> = rows.iter().map(|t| t.trace_id.as_str()).collect();
    let mut entities: HashMap<String, BTreeSet<String>> = HashMap::new();
    if !ids.is_empty() {
        let mut stmt = conn.prepare_cached(
            "SELECT trace_id, entity_id FROM spans
             WHERE trace_id IN (SELECT value FROM json_each(?1)) AND entity_id IS NOT NULL",
        )?;
        let pairs = stmt.query_map([json_keys(&ids)?], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for pair in pairs {
            let (trace, entity) = pair?;
            entities.entry(trace).or_default().insert(entity);
        }
    }
    for t in &mut rows {
        t.entity_ids = entities.remove(&t.trace_id).map(|s| s.into_iter().collect()).unwrap_or_default();
    }
    Ok(split_page(rows, limit, cursor::after_trace))
}
