//! The SQLite reads of the span store: one trace's spans (a key-prefix scan of `spans`, the
//! stored remainders joined back into OTLP spans), and the newest-first trace search over the
//! `traces` summaries (`crate::filter::trace_clauses`), started from a rare value's index
//! when the filter has one.

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

use helix_model::span::stored;
use helix_model::SpanRecorded;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row};

use super::blocks::{Directory, SUMMARY};
use super::read::Query;
use crate::cursor::{self, fetch_limit, page_limit, split_page};
use crate::filter::{choose_driver, trace_clauses, trace_from, trace_terms, TraceParam, TraceSql, RARE};
use crate::{Page, PageRequest, StoreError, StoreResult, StoredTrace, TraceFilter, TraceSummary};

/// `spans AS s` joined to its source, in the order `span_row` reads.
const SPAN_SELECT: &str = "SELECT s.trace_id, s.span_id, s.parent_span_id, s.name, s.kind, s.start_ns, s.duration_ns,
         s.status_code, s.status_message, src.service_name, src.process_name, src.instrument_id, s.entity_id,
         s.form, s.span_rest, src.resource, src.scope_name, src.scope_version
     FROM spans AS s JOIN span_sources AS src ON src.id = s.source_id";

/// A span row as stored: the record with its span not yet joined, its form and remainder.
fn span_row(r: &Row<'_>) -> rusqlite::Result<(SpanRecorded, i64, Vec<u8>)> {
    let start_ns: i64 = r.get(5)?;
    let parent: Option<Vec<u8>> = r.get(2)?;
    Ok((
        SpanRecorded {
            trace_id: stored::id_hex(&r.get::<_, Vec<u8>>(0)?),
            span_id: stored::id_hex(&r.get::<_, Vec<u8>>(1)?),
            parent_span_id: parent.map(|p| stored::id_hex(&p)),
            name: r.get(3)?,
            kind: r.get(4)?,
            start_ns,
            end_ns: start_ns.saturating_add(r.get(6)?),
            status_code: r.get(7)?,
            status_message: r.get(8)?,
            service_name: r.get(9)?,
            process_name: r.get(10)?,
            instrument_id: r.get(11)?,
            entity_id: r.get(12)?,
            role: helix_model::SpanRole::Span,
            span_proto: Vec::new(),
            resource_proto: r.get(15)?,
            scope_name: r.get(16)?,
            scope_version: r.get(17)?,
        },
        r.get(13)?,
        r.get(14)?,
    ))
}

/// The record a stored row stands for: role from its form, the span joined back.
pub(super) fn finish_span((mut s, form, rest): (SpanRecorded, i64, Vec<u8>)) -> StoreResult<SpanRecorded> {
    s.role = stored::role_of(form).ok_or_else(|| StoreError::corrupt(format!("span form {form}")))?;
    s.span_proto = stored::join(&s, form, &rest).map_err(|e| StoreError::corrupt(format!("stored span: {e}")))?;
    Ok(s)
}

pub(super) fn trace(
    conn: &Connection,
    directory: &RwLock<Directory>,
    trace_id: &str,
    max_spans: usize,
) -> StoreResult<Option<StoredTrace>> {
    let Some(key) = stored::id_bytes(trace_id, 16) else { return Ok(None) };
    let Some(block) = trace_block(conn, directory, &key)? else { return Ok(None) };
    // The summary row (span ID all zeros) is not a span.
    let sql = format!(
        "{SPAN_SELECT} WHERE s.block = ?1 AND s.trace_id = ?2 AND s.span_id > x'0000000000000000'
         ORDER BY s.start_ns, s.span_id LIMIT ?3"
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(rusqlite::params![block, key, fetch_limit(max_spans)], span_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if rows.is_empty() {
        return Ok(None);
    }
    let partial = rows.len() > max_spans;
    let spans = rows.into_iter().take(max_spans).map(finish_span).collect::<StoreResult<Vec<_>>>()?;
    Ok(Some(StoredTrace { spans, partial }))
}

/// Every key leads with the block: a driver visits each block's range (few blocks), a probe
/// is one exact seek.
const SQL: TraceSql = TraceSql {
    term_probe: "EXISTS (SELECT 1 FROM trace_terms AS k WHERE k.block = t.block AND k.term = ? AND k.trace_id = t.trace_id)",
    long_traces: "(SELECT s.block, s.trace_id FROM span_blocks AS b CROSS JOIN spans AS s INDEXED BY traces_duration
         ON s.block = b.block AND s.span_id = x'0000000000000000' AND s.duration_ns >= ?) AS m
         JOIN traces AS t ON t.block = m.block AND t.trace_id = m.trace_id",
    term_traces: "(SELECT k.block, k.trace_id FROM span_blocks AS b CROSS JOIN trace_terms AS k
         ON k.block = b.block AND k.term = ?) AS m JOIN traces AS t ON t.block = m.block AND t.trace_id = m.trace_id",
    entity_traces: "(SELECT DISTINCT s.block, s.trace_id FROM span_blocks AS b CROSS JOIN spans AS s
         ON s.block = b.block AND s.entity_id = ?) AS m JOIN traces AS t ON t.block = m.block AND t.trace_id = m.trace_id",
    same_trace: "s.block = t.block AND s.trace_id = t.trace_id",
};

fn value(p: TraceParam) -> SqlValue {
    match p {
        TraceParam::Text(t) => SqlValue::Text(t),
        TraceParam::Int(i) => SqlValue::Integer(i),
        TraceParam::Bytes(b) => SqlValue::Blob(b),
    }
}

pub(super) fn traces(conn: &Connection, f: &TraceFilter, page: &PageRequest) -> StoreResult<Page<TraceSummary>> {
    let limit = page_limit(page);
    // How common each term is, counted no further than it takes to call it common.
    let mut counts = Vec::new();
    if f.entity_id.is_none() {
        let mut stmt = conn.prepare_cached(
            "SELECT count(*) FROM (SELECT 1 FROM span_blocks AS b CROSS JOIN trace_terms AS k
                 ON k.block = b.block AND k.term = ?1 LIMIT ?2)",
        )?;
        for term in trace_terms(f) {
            counts.push((term, stmt.query_row(rusqlite::params![term, RARE], |r| r.get::<_, i64>(0))?));
        }
    }
    let long = match f.min_duration_ns {
        Some(min) if f.entity_id.is_none() => Some(
            conn.prepare_cached(
                "SELECT count(*) FROM (SELECT 1 FROM span_blocks AS b CROSS JOIN spans AS s INDEXED BY traces_duration
                 ON s.block = b.block AND s.span_id = x'0000000000000000' AND s.duration_ns >= ?1 LIMIT ?2)",
            )?
            .query_row(rusqlite::params![min, RARE], |r| r.get::<_, i64>(0))?,
        ),
        _ => None,
    };
    let driver = choose_driver(f, &counts, long);
    let (from, from_params) = trace_from(&driver, &SQL);
    // CROSS JOIN: SQLite keeps the written order, so a rare value's index drives the search.
    let mut q = Query::new(String::new());
    q.then(
        &format!(
            "SELECT t.trace_id, t.block, t.root_name, (SELECT service_name FROM span_sources WHERE id = t.root_source),
                 t.start_ns, t.end_ns - t.start_ns, t.span_count, t.error_count
             FROM {} WHERE 1 = 1",
            from.replace(" JOIN traces", " CROSS JOIN traces")
        ),
        from_params.into_iter().map(value).collect(),
    );
    for (clause, params) in trace_clauses(f, &driver, &SQL, page.cursor.as_deref())? {
        q.and(&clause, params.into_iter().map(value).collect());
    }
    q.then(" ORDER BY t.start_ns DESC, t.trace_id ASC LIMIT ?", vec![SqlValue::Integer(fetch_limit(limit))]);
    let mut rows: Vec<((Vec<u8>, i64), TraceSummary)> = conn
        .prepare_cached(&q.sql)?
        .query_map(rusqlite::params_from_iter(q.args), |r| {
            let key: Vec<u8> = r.get(0)?;
            Ok((
                (key.clone(), r.get(1)?),
                TraceSummary {
                    trace_id: stored::id_hex(&key),
                    root_name: r.get(2)?,
                    root_service: r.get(3)?,
                    start_ns: r.get(4)?,
                    duration_ns: r.get(5)?,
                    // Counts are never negative.
                    span_count: r.get::<_, i64>(6)?.max(0) as u64,
                    error_count: r.get::<_, i64>(7)?.max(0) as u64,
                    entity_ids: Vec::new(),
                },
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    // No `entity_id IS NOT NULL` here: it would let the planner walk the block's entity index.
    let mut stmt = conn.prepare_cached("SELECT entity_id FROM spans WHERE block = ?2 AND trace_id = ?1")?;
    for ((key, block), t) in &mut rows {
        let ids: BTreeSet<String> = stmt
            .query_map(rusqlite::params![&*key, *block], |r| r.get::<_, Option<String>>(0))?
            .filter_map(Result::transpose)
            .collect::<rusqlite::Result<_>>()?;
        t.entity_ids = ids.into_iter().collect();
    }
    Ok(split_page(rows.into_iter().map(|(_, t)| t).collect(), limit, cursor::after_trace))
}

/// The block the stored trace `key` lives in: the directory's first candidate holding its
/// summary row.
fn trace_block(conn: &Connection, directory: &RwLock<Directory>, key: &[u8]) -> StoreResult<Option<i64>> {
    let candidates = {
        let dir = directory.read().unwrap_or_else(|p| p.into_inner());
        dir.candidates(dir.fingerprint(key))
    };
    let mut stmt = conn.prepare_cached("SELECT 1 FROM spans WHERE block = ?1 AND trace_id = ?2 AND span_id = ?3")?;
    for block in candidates {
        if stmt.exists(rusqlite::params![block, key, &SUMMARY[..]])? {
            return Ok(Some(block));
        }
    }
    Ok(None)
}

/// `Store::span_entities`: two key lookups of `spans` per line place — the span itself, else
/// the trace's earliest entity span (a scan of that trace's keys, once per trace).
pub(super) fn span_entities(
    conn: &Connection,
    directory: &RwLock<Directory>,
    keys: &[(String, Option<String>)],
) -> StoreResult<Vec<Option<String>>> {
    let mut own =
        conn.prepare_cached("SELECT entity_id FROM spans WHERE block = ?1 AND trace_id = ?2 AND span_id = ?3")?;
    // No `entity_id IS NOT NULL`: it would let the planner walk the block's entity index.
    let mut first = conn
        .prepare_cached("SELECT entity_id FROM spans WHERE block = ?1 AND trace_id = ?2 ORDER BY start_ns, span_id")?;
    let mut of_trace: HashMap<Vec<u8>, (Option<i64>, Option<String>)> = HashMap::new();
    let mut out = Vec::with_capacity(keys.len());
    for (trace_id, span_id) in keys {
        let Some(trace) = stored::id_bytes(trace_id, 16) else {
            out.push(None);
            continue;
        };
        let (block, entity) = match of_trace.get(&trace) {
            Some(known) => known.clone(),
            None => {
                let block = trace_block(conn, directory, &trace)?;
                let mut found = None;
                if let Some(b) = block {
                    let mut rows = first.query(rusqlite::params![b, trace])?;
                    while let Some(r) = rows.next()? {
                        if let Some(e) = r.get::<_, Option<String>>(0)? {
                            found = Some(e);
                            break;
                        }
                    }
                }
                of_trace.insert(trace.clone(), (block, found.clone()));
                (block, found)
            }
        };
        let Some(block) = block else {
            out.push(None);
            continue;
        };
        if let Some(span) = span_id.as_deref().and_then(|s| stored::id_bytes(s, 8)) {
            let found: Option<Option<String>> =
                own.query_row(rusqlite::params![block, trace, span], |r| r.get(0)).optional()?;
            if let Some(Some(entity)) = found {
                out.push(Some(entity));
                continue;
            }
        }
        out.push(entity);
    }
    Ok(out)
}
