//! The SQLite reads of the span store: one trace (its row found through the directory, its
//! packed spans read back into OTLP spans), and the newest-first trace search over the trace
//! rows (`crate::filter::trace_clauses`), started from a rare value's postings when the
//! filter has one; span-level filters are checked on the packed spans (`helix_span_match`).

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

use helix_model::span::stored;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension};

use super::blocks::Directory;
use super::pack::{postings, Pack, Sources};
use super::read::Query;
use crate::cursor::{self, fetch_limit, page_limit, split_page};
use crate::filter::{choose_driver, trace_clauses, trace_terms, TraceDriver, TraceParam, RARE};
use crate::plan::{term_hash, TERM_ENTITY};
use crate::{Page, PageRequest, StoreError, StoreResult, StoredTrace, TraceFilter, TraceSummary};

/// The stored trace `key`: its trace number, block and spans. The directory's candidates are
/// checked against the row's trace ID.
pub(super) fn find_trace(
    conn: &Connection,
    directory: &RwLock<Directory>,
    key: &[u8],
) -> StoreResult<Option<(i64, i64, Pack)>> {
    let candidates = {
        let dir = directory.read().unwrap_or_else(|p| p.into_inner());
        dir.candidates(dir.fingerprint(key))
    };
    let mut stmt = conn.prepare_cached("SELECT trace_id, block, spans FROM span_traces WHERE id = ?1")?;
    for id in candidates {
        let row: Option<(Vec<u8>, i64, Vec<u8>)> =
            stmt.query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()?;
        if let Some((_, block, blob)) = row.filter(|r| r.0 == key) {
            return Ok(Some((id, block, Pack::decode_blob(&blob)?)));
        }
    }
    Ok(None)
}

pub(super) fn trace(
    conn: &Connection,
    directory: &RwLock<Directory>,
    trace_id: &str,
    max_spans: usize,
) -> StoreResult<Option<StoredTrace>> {
    let Some(key) = stored::id_bytes(trace_id, 16) else { return Ok(None) };
    let Some((_, _, pack)) = find_trace(conn, directory, &key)? else { return Ok(None) };
    let hex = stored::id_hex(&key);
    let ordered = pack.ordered();
    let partial = ordered.len() > max_spans;
    let mut sources = Sources::default();
    let mut spans = Vec::with_capacity(ordered.len().min(max_spans));
    for s in ordered.into_iter().take(max_spans) {
        let src = sources.get(conn, s.source_id)?.ok_or_else(|| StoreError::corrupt("a span's source is missing"))?;
        spans.push(s.record(&pack, &hex, src)?);
    }
    if spans.is_empty() {
        return Ok(None);
    }
    Ok(Some(StoredTrace { spans, partial }))
}

fn value(p: TraceParam) -> SqlValue {
    match p {
        TraceParam::Text(t) => SqlValue::Text(t),
        TraceParam::Int(i) => SqlValue::Integer(i),
        TraceParam::Bytes(b) => SqlValue::Blob(b),
    }
}

/// How many traces have `term`, counted no further than it takes to call it common (each
/// postings row lists at least one); one seek per block.
fn term_count(conn: &Connection, term: i64) -> StoreResult<i64> {
    let mut stmt = conn.prepare_cached(
        "SELECT coalesce(sum(n), 0) FROM (SELECT k.n FROM span_blocks AS b CROSS JOIN span_terms AS k
             ON k.block = b.block AND k.term = ?1 LIMIT ?2)",
    )?;
    Ok(stmt.query_row(rusqlite::params![term, RARE], |r| r.get(0))?)
}

/// The trace numbers listed for `term` (a rare one: fewer than `RARE` postings).
fn term_ids(conn: &Connection, term: i64) -> StoreResult<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT k.first, k.ids FROM span_blocks AS b CROSS JOIN span_terms AS k ON k.block = b.block AND k.term = ?1",
    )?;
    let mut rows = stmt.query([term])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.extend(postings(r.get(0)?, &r.get::<_, Vec<u8>>(1)?));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

pub(super) fn traces(conn: &Connection, f: &TraceFilter, page: &PageRequest) -> StoreResult<Page<TraceSummary>> {
    let limit = page_limit(page);
    // The span-level filters, checked on each candidate's spans: the sources (service and
    // instrument) they allow, none at all meaning no trace matches.
    let sources: Option<Vec<u8>> = if f.service_name.is_some() || f.instrument_id.is_some() {
        let ids: Vec<i64> = conn
            .prepare_cached(
                "SELECT id FROM span_sources WHERE (?1 IS NULL OR service_name = ?1)
                     AND (?2 IS NULL OR instrument_id = ?2) ORDER BY id",
            )?
            .query_map(rusqlite::params![f.service_name, f.instrument_id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if ids.is_empty() {
            return Ok(split_page(Vec::new(), limit, cursor::after_trace));
        }
        Some(ids.iter().flat_map(|i| i.to_le_bytes()).collect())
    } else {
        None
    };
    let span_level = sources.is_some() || f.span_name.is_some() || f.entity_id.is_some();
    // How common each term is (the entity's too: its postings find its traces).
    let mut counts = Vec::new();
    let mut terms = trace_terms(f);
    terms.extend(f.entity_id.as_deref().map(|e| term_hash(TERM_ENTITY, e)));
    for term in terms {
        counts.push((term, term_count(conn, term)?));
    }
    let long = match f.min_duration_ns {
        Some(min) => Some(
            conn.prepare_cached(
                "SELECT count(*) FROM (SELECT 1 FROM span_blocks AS b CROSS JOIN span_traces AS t
                     INDEXED BY span_traces_duration ON t.block = b.block AND t.end_ns - t.start_ns >= ?1 LIMIT ?2)",
            )?
            .query_row(rusqlite::params![min, RARE], |r| r.get::<_, i64>(0))?,
        ),
        None => None,
    };
    // The entity is one more term here: its exact check is the span-level one.
    let by_terms = TraceFilter { entity_id: None, ..f.clone() };
    let driver = choose_driver(&by_terms, &counts, long);
    let mut q = Query::new(String::new());
    let select = "SELECT t.trace_id, t.start_ns, t.end_ns - t.start_ns, t.span_count, t.error_count, t.spans FROM";
    // CROSS JOIN: SQLite keeps the written order, so a rare value's rows drive the search.
    match &driver {
        TraceDriver::Term(term) => {
            let ids = serde_json::to_string(&term_ids(conn, *term)?).map_err(|e| StoreError::bug(e.to_string()))?;
            q.then(
                &format!("{select} json_each(?) AS m CROSS JOIN span_traces AS t ON t.id = m.value WHERE 1 = 1"),
                vec![SqlValue::Text(ids)],
            );
        }
        TraceDriver::Long(min) => q.then(
            &format!(
                "{select} (SELECT d.id FROM span_blocks AS b CROSS JOIN span_traces AS d INDEXED BY span_traces_duration
                     ON d.block = b.block AND d.end_ns - d.start_ns >= ?) AS m
                 CROSS JOIN span_traces AS t ON t.id = m.id WHERE 1 = 1"
            ),
            vec![SqlValue::Integer(*min)],
        ),
        TraceDriver::Newest | TraceDriver::Entity(_) => {
            q.then(&format!("{select} span_traces AS t WHERE 1 = 1"), vec![]);
        }
    }
    for (clause, params) in trace_clauses(f, &driver, None, page.cursor.as_deref())? {
        q.and(&clause, params.into_iter().map(value).collect());
    }
    if span_level {
        q.and(
            "helix_span_match(t.spans, ?, ?, ?)",
            vec![
                f.span_name.clone().map_or(SqlValue::Null, SqlValue::Text),
                f.entity_id.clone().map_or(SqlValue::Null, SqlValue::Text),
                sources.map_or(SqlValue::Null, SqlValue::Blob),
            ],
        );
    }
    q.then(" ORDER BY t.start_ns DESC, t.trace_id ASC LIMIT ?", vec![SqlValue::Integer(fetch_limit(limit))]);
    // (trace ID, start, duration, spans, error spans, pack) of each trace found.
    type Found = (Vec<u8>, i64, i64, i64, i64, Vec<u8>);
    let rows: Vec<Found> = conn
        .prepare_cached(&q.sql)?
        .query_map(rusqlite::params_from_iter(q.args), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut sources = Sources::default();
    let mut out = Vec::with_capacity(rows.len());
    for (key, start_ns, duration_ns, span_count, error_count, blob) in rows {
        let pack = Pack::decode_blob(&blob)?;
        let hex = stored::id_hex(&key);
        let root = pack.summary(&hex).ok_or_else(|| StoreError::corrupt("a stored trace without spans"))?;
        let entity_ids: BTreeSet<String> = pack.spans.iter().filter_map(|s| s.entity_id.clone()).collect();
        out.push(TraceSummary {
            trace_id: hex,
            root_name: root.root_name,
            root_service: sources.get(conn, root.root_source)?.and_then(|s| s.service_name.clone()),
            start_ns,
            duration_ns,
            // Counts are never negative.
            span_count: span_count.max(0) as u64,
            error_count: error_count.max(0) as u64,
            entity_ids: entity_ids.into_iter().collect(),
        });
    }
    Ok(split_page(out, limit, cursor::after_trace))
}

/// `Store::span_entities`: per line place, the entity of the span itself, else the trace's
/// earliest entity span's (its row read once per trace).
pub(super) fn span_entities(
    conn: &Connection,
    directory: &RwLock<Directory>,
    keys: &[(String, Option<String>)],
) -> StoreResult<Vec<Option<String>>> {
    // Per trace: its spans' (span ID, entity) and its earliest entity.
    type Known = Option<(HashMap<u64, Option<String>>, Option<String>)>;
    let mut of_trace: HashMap<Vec<u8>, Known> = HashMap::new();
    let mut out = Vec::with_capacity(keys.len());
    for (trace_id, span_id) in keys {
        let Some(trace) = stored::id_bytes(trace_id, 16) else {
            out.push(None);
            continue;
        };
        if !of_trace.contains_key(&trace) {
            let known = find_trace(conn, directory, &trace)?.map(|(_, _, pack)| {
                let first = pack.ordered().into_iter().find_map(|s| s.entity_id.clone());
                (pack.spans.into_iter().map(|s| (s.span_id, s.entity_id)).collect(), first)
            });
            of_trace.insert(trace.clone(), known);
        }
        let Some(Some((spans, first))) = of_trace.get(&trace) else {
            out.push(None);
            continue;
        };
        let own = span_id
            .as_deref()
            .and_then(stored::id_array::<8>)
            .and_then(|s| spans.get(&super::pack::id_u64(s)))
            .and_then(Clone::clone);
        out.push(own.or_else(|| first.clone()));
    }
    Ok(out)
}
