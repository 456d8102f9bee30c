//! The PostgreSQL reads of the span store: one trace's spans (a key-prefix scan, the stored
//! remainders joined back into OTLP spans), and the newest-first trace search over the
//! `traces` summaries (`crate::filter::trace_clauses`), started from a rare value's index
//! when the filter has one.

use std::collections::{BTreeSet, HashMap};

use deadpool_postgres::Object;
use helix_model::span::stored;
use helix_model::SpanRecorded;
use tokio_postgres::Row;

use super::map_pg;
use super::read::{Arg, Query};
use crate::cursor::{self, fetch_limit, page_limit, split_page};
use crate::filter::{choose_driver, trace_clauses, trace_from, trace_terms, TraceParam, TraceSql, RARE};
use crate::{Page, PageRequest, StoreError, StoreResult, StoredTrace, TraceFilter, TraceSummary};

fn span_from_row(r: &Row) -> StoreResult<SpanRecorded> {
    let form = i64::from(r.get::<_, i32>(13));
    let start_ns: i64 = r.get(5);
    let parent: Option<&[u8]> = r.get(2);
    let mut s = SpanRecorded {
        trace_id: stored::id_hex(r.get(0)),
        span_id: stored::id_hex(r.get(1)),
        parent_span_id: parent.map(stored::id_hex),
        name: r.get(3),
        kind: r.get::<_, i16>(4).into(),
        start_ns,
        end_ns: start_ns.saturating_add(r.get(6)),
        status_code: r.get::<_, i16>(7).into(),
        status_message: r.get(8),
        service_name: r.get(9),
        process_name: r.get(10),
        instrument_id: r.get(11),
        entity_id: r.get(12),
        role: stored::role_of(form).ok_or_else(|| StoreError::corrupt(format!("span form {form}")))?,
        span_proto: Vec::new(),
        resource_proto: r.get(15),
        scope_name: r.get(16),
        scope_version: r.get(17),
    };
    s.span_proto = stored::join(&s, form, r.get(14)).map_err(|e| StoreError::corrupt(format!("stored span: {e}")))?;
    Ok(s)
}

pub(super) async fn trace(c: &Object, trace_id: &str, max_spans: usize) -> StoreResult<Option<StoredTrace>> {
    let Some(key) = stored::id_bytes(trace_id, 16) else { return Ok(None) };
    let stmt = c
        .prepare_cached(
            "SELECT s.trace_id, s.span_id, s.parent_span_id, s.name, s.kind, s.start_ns, s.duration_ns,
                 s.status_code, s.status_message, src.service_name, src.process_name, src.instrument_id,
                 s.entity_id, s.form, s.span_rest, src.resource, src.scope_name, src.scope_version
             FROM spans AS s JOIN span_sources AS src ON src.id = s.source_id
             WHERE s.trace_id = $1 ORDER BY s.start_ns, s.span_id LIMIT $2",
        )
        .await
        .map_err(map_pg)?;
    let rows = c.query(&stmt, &[&key, &fetch_limit(max_spans)]).await.map_err(map_pg)?;
    if rows.is_empty() {
        return Ok(None);
    }
    let partial = rows.len() > max_spans;
    let spans = rows.iter().take(max_spans).map(span_from_row).collect::<StoreResult<Vec<_>>>()?;
    Ok(Some(StoredTrace { spans, partial }))
}

const SQL: TraceSql = TraceSql {
    term_probe: "EXISTS (SELECT 1 FROM trace_terms AS k WHERE k.term = ? AND k.trace_id = t.trace_id)",
    // Not a driver here (no duration index): the long traces are found walking the newest.
    long_traces: "traces AS t",
    term_traces:
        "(SELECT DISTINCT trace_id FROM trace_terms WHERE term = ?) AS m JOIN traces AS t ON t.trace_id = m.trace_id",
    entity_traces:
        "(SELECT DISTINCT trace_id FROM spans WHERE entity_id = ?) AS m JOIN traces AS t ON t.trace_id = m.trace_id",
    same_trace: "s.trace_id = t.trace_id",
};

fn value(p: TraceParam) -> Arg {
    match p {
        TraceParam::Text(t) => Box::new(t),
        TraceParam::Int(i) => Box::new(i),
        TraceParam::Bytes(b) => Box::new(b),
    }
}

pub(super) async fn traces(c: &Object, f: &TraceFilter, page: &PageRequest) -> StoreResult<Page<TraceSummary>> {
    let limit = page_limit(page);
    let mut counts = Vec::new();
    if f.entity_id.is_none() {
        let stmt = c
            .prepare_cached("SELECT count(*) FROM (SELECT 1 FROM trace_terms WHERE term = $1 LIMIT $2) AS m")
            .await
            .map_err(map_pg)?;
        for term in trace_terms(f) {
            let n: i64 = c.query_one(&stmt, &[&term, &RARE]).await.map_err(map_pg)?.get(0);
            counts.push((term, n));
        }
    }
    let driver = choose_driver(f, &counts, None);
    let (from, from_params) = trace_from(&driver, &SQL);
    let mut q = Query::new(String::new());
    q.then(
        &format!(
            "SELECT t.trace_id, t.root_name, t.root_service, t.start_ns, t.end_ns - t.start_ns, t.span_count,
                 t.error_count
             FROM {from} WHERE true"
        ),
        from_params.into_iter().map(value).collect(),
    );
    for (clause, params) in trace_clauses(f, &driver, Some(&SQL), page.cursor.as_deref())? {
        q.and(&clause, params.into_iter().map(value).collect());
    }
    q.then(" ORDER BY t.start_ns DESC, t.trace_id ASC LIMIT ?", vec![Box::new(fetch_limit(limit))]);
    let found = q.run(c).await?;
    let keys: Vec<&[u8]> = found.iter().map(|r| r.get(0)).collect();
    let mut entities: HashMap<Vec<u8>, BTreeSet<String>> = HashMap::new();
    if !keys.is_empty() {
        let stmt = c
            .prepare_cached(
                "SELECT trace_id, entity_id FROM spans
                 WHERE trace_id = ANY($1::bytea[]) AND entity_id IS NOT NULL",
            )
            .await
            .map_err(map_pg)?;
        for r in c.query(&stmt, &[&keys]).await.map_err(map_pg)? {
            entities.entry(r.get(0)).or_default().insert(r.get(1));
        }
    }
    let rows: Vec<TraceSummary> = found
        .iter()
        .map(|r| {
            let key: &[u8] = r.get(0);
            TraceSummary {
                trace_id: stored::id_hex(key),
                root_name: r.get(1),
                root_service: r.get(2),
                start_ns: r.get(3),
                duration_ns: r.get(4),
                // Counts are never negative.
                span_count: r.get::<_, i64>(5).max(0) as u64,
                error_count: r.get::<_, i64>(6).max(0) as u64,
                entity_ids: entities.remove(key).map(|s| s.into_iter().collect()).unwrap_or_default(),
            }
        })
        .collect();
    Ok(split_page(rows, limit, cursor::after_trace))
}

/// `Store::span_entities`: per line place, the span itself, else the trace's earliest entity
/// span (key lookups of `spans`), in one statement over the unnested keys.
pub(super) async fn span_entities(c: &Object, keys: &[(String, Option<String>)]) -> StoreResult<Vec<Option<String>>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    // IDs that are not hex match nothing: an empty key.
    let traces: Vec<Vec<u8>> = keys.iter().map(|(t, _)| stored::id_bytes(t, 16).unwrap_or_default()).collect();
    let spans: Vec<Vec<u8>> =
        keys.iter().map(|(_, s)| s.as_deref().and_then(|s| stored::id_bytes(s, 8)).unwrap_or_default()).collect();
    let stmt = c
        .prepare_cached(
            "SELECT COALESCE(
                 (SELECT s.entity_id FROM spans AS s WHERE s.trace_id = k.t AND s.span_id = k.s LIMIT 1),
                 (SELECT s.entity_id FROM spans AS s WHERE s.trace_id = k.t AND s.entity_id IS NOT NULL
                  ORDER BY s.start_ns, s.span_id LIMIT 1))
             FROM unnest($1::bytea[], $2::bytea[]) WITH ORDINALITY AS k(t, s, n) ORDER BY k.n",
        )
        .await
        .map_err(map_pg)?;
    let rows = c.query(&stmt, &[&traces, &spans]).await.map_err(map_pg)?;
    Ok(rows.iter().map(|r| r.get::<_, Option<String>>(0)).collect())
}
