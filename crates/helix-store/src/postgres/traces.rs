//! The PostgreSQL reads of the span store: one trace's spans, and the newest-first trace
//! search over the `traces` summaries (`crate::filter::trace_clauses`).

use std::collections::{BTreeSet, HashMap};

use deadpool_postgres::Object;
use helix_model::{SpanRecorded, SpanRole};
use tokio_postgres::Row;

use super::map_pg;
use super::read::{pg_value, Query};
use crate::cursor::{self, fetch_limit, page_limit, split_page};
use crate::filter::trace_clauses;
use crate::{Page, PageRequest, StoreError, StoreResult, StoredTrace, TraceFilter, TraceSummary};

fn span_from_row(r: &Row) -> StoreResult<SpanRecorded> {
    let role: String = r.get(13);
    Ok(SpanRecorded {
        trace_id: r.get(0),
        span_id: r.get(1),
        parent_span_id: r.get(2),
        name: r.get(3),
        kind: r.get(4),
        start_ns: r.get(5),
        end_ns: r.get(6),
        status_code: r.get(7),
        status_message: r.get(8),
        service_name: r.get(9),
        process_name: r.get(10),
        instrument_id: r.get(11),
        entity_id: r.get(12),
        role: SpanRole::parse(&role).ok_or_else(|| StoreError::corrupt(format!("span role {role:?}")))?,
        span_proto: r.get(14),
        resource_proto: r.get(15),
        scope_name: r.get(16),
        scope_version: r.get(17),
    })
}

pub(super) async fn trace(c: &Object, trace_id: &str, max_spans: usize) -> StoreResult<Option<StoredTrace>> {
    let stmt = c
        .prepare_cached(
            "SELECT s.trace_id, s.span_id, s.parent_span_id, s.name, s.kind, s.start_ns, s.end_ns,
                 s.status_code, s.status_message, s.service_name, s.process_name, s.instrument_id,
                 s.entity_id, s.role, s.span_proto, r.resource, s.scope_name, s.scope_version
             FROM spans AS s JOIN span_resources AS r ON r.id = s.resource_id
             WHERE s.trace_id = $1 ORDER BY s.start_ns, s.span_id LIMIT $2",
        )
        .await
        .map_err(map_pg)?;
    let rows = c.query(&stmt, &[&trace_id, &fetch_limit(max_spans)]).await.map_err(map_pg)?;
    if rows.is_empty() {
        return Ok(None);
    }
    let partial = rows.len() > max_spans;
    let spans = rows.iter().take(max_spans).map(span_from_row).collect::<StoreResult<Vec<_>>>()?;
    Ok(Some(StoredTrace { spans, partial }))
}

pub(super) async fn traces(c: &Object, f: &TraceFilter, page: &PageRequest) -> StoreResult<Page<TraceSummary>> {
    let limit = page_limit(page);
    let mut q = Query::new(
        "SELECT t.trace_id, t.root_name, t.root_service, t.start_ns, t.end_ns - t.start_ns, t.span_count,
             t.error_count
         FROM traces AS t WHERE true"
            .to_owned(),
    );
    for (clause, params) in trace_clauses(f, page.cursor.as_deref())? {
        q.and(&clause, params.into_iter().map(pg_value).collect());
    }
    q.then(" ORDER BY t.start_ns DESC, t.trace_id ASC LIMIT ?", vec![Box::new(fetch_limit(limit))]);
    let mut rows: Vec<TraceSummary> = q
        .run(c)
        .await?
        .iter()
        .map(|r| TraceSummary {
            trace_id: r.get(0),
            root_name: r.get(1),
            root_service: r.get(2),
            start_ns: r.get(3),
            duration_ns: r.get(4),
            // Counts are never negative.
            span_count: r.get::<_, i64>(5).max(0) as u64,
            error_count: r.get::<_, i64>(6).max(0) as u64,
            entity_ids: Vec::new(),
        })
        .collect();
    let ids: Vec<&str> = rows.iter().map(|t| t.trace_id.as_str()).collect();
    let mut entities: HashMap<String, BTreeSet<String>> = HashMap::new();
    if !ids.is_empty() {
        let stmt = c
            .prepare_cached(
                "SELECT trace_id, entity_id FROM spans
                 WHERE trace_id = ANY($1::text[]) AND entity_id IS NOT NULL",
            )
            .await
            .map_err(map_pg)?;
        for r in c.query(&stmt, &[&ids]).await.map_err(map_pg)? {
            entities.entry(r.get(0)).or_default().insert(r.get(1));
        }
    }
    for t in &mut rows {
        t.entity_ids = entities.remove(&t.trace_id).map(|s| s.into_iter().collect()).unwrap_or_default();
    }
    Ok(split_page(rows, limit, cursor::after_trace))
}
