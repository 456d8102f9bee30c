//! The SQLite reads of the span store: one trace (its row found through the directory, its
//! packed spans read back into OTLP spans), and the newest-first trace search over the trace
//! rows (`crate::filter::trace_clauses`), started from a rare value's postings when the
//! filter has one; span-level filters are checked on the packed spans (`helix_span_match`).

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

use helix_model::span::stored;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension};

use super::blocks::{blob_candidates, Directory};
use super::pack::{postings, Pack, Sources};
use super::read::Query;
use crate::cursor::{self, fetch_limit, page_limit, split_page};
use crate::filter::{choose_driver, trace_clauses, trace_terms, TraceDriver, TraceParam, RARE};
use crate::plan::{entity_term, term_hash, TERM_ENTITY};
use crate::{Page, PageRequest, StoreError, StoreResult, StoredTrace, TraceFilter, TraceSummary};

/// The stored trace `key`: its spans, from every row it has (a span that came after its
/// trace's block left the directory starts a second row; docs/storage.md "Span directory").
/// The directory's candidates, and those of the evicted blocks' entries on disk, are checked
/// against the row's trace ID.
pub(super) fn find_trace(conn: &Connection, directory: &RwLock<Directory>, key: &[u8]) -> StoreResult<Option<Pack>> {
    let (mut ids, filtered, bare, print) = {
        let dir = directory.read().unwrap_or_else(|p| p.into_inner());
        let print = dir.fingerprint(key);
        let (filtered, bare) = dir.evicted(print);
        (dir.candidates(print), filtered, bare, print)
    };
    let mut block_entries = conn.prepare_cached("SELECT traces FROM span_blocks WHERE block = ?1")?;
    for block in filtered {
        let blob: Option<Option<Vec<u8>>> = block_entries.query_row([block], |r| r.get(0)).optional()?;
        ids.extend(blob.flatten().map(|b| blob_candidates(&b, print)).unwrap_or_default());
    }
    if let Some(through) = bare {
        let mut stmt = conn
            .prepare_cached("SELECT traces FROM span_blocks WHERE sealed = 1 AND block <= ?1 AND traces IS NOT NULL")?;
        let mut rows = stmt.query([through])?;
        while let Some(r) = rows.next()? {
            ids.extend(blob_candidates(&r.get::<_, Vec<u8>>(0)?, print));
        }
    }
    ids.sort_unstable();
    ids.dedup();
    let mut stmt = conn.prepare_cached("SELECT trace_id, spans, start_ns FROM span_traces WHERE id = ?1")?;
    let mut found: Option<Pack> = None;
    for id in ids {
        let row: Option<(Vec<u8>, Vec<u8>, i64)> =
            stmt.query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()?;
        if let Some((_, blob, start)) = row.filter(|r| r.0 == key) {
            let pack = Pack::decode_blob(&blob, start)?;
            match &mut found {
                None => found = Some(pack),
                Some(first) => first.absorb(pack),
            }
        }
    }
    Ok(found)
}

pub(super) fn trace(
    conn: &Connection,
    directory: &RwLock<Directory>,
    trace_id: &str,
    max_spans: usize,
) -> StoreResult<Option<StoredTrace>> {
    let Some(key) = stored::id_bytes(trace_id, 16) else { return Ok(None) };
    let Some(pack) = find_trace(conn, directory, &key)? else { return Ok(None) };
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
fn term_count(conn: &Connection, term: Term) -> StoreResult<i64> {
    let mut stmt = conn.prepare_cached(
        "SELECT coalesce(sum(n), 0) FROM (SELECT k.n FROM span_blocks AS b CROSS JOIN span_terms AS k
             ON k.block = b.block AND k.term IN (?1, ?2) LIMIT ?3)",
    )?;
    Ok(stmt.query_row(rusqlite::params![term.0, term.1, RARE], |r| r.get(0))?)
}

/// A term as the postings may hold it: its current form, and the one rows written earlier
/// hold (the same for every term but an entity's, `entity_term`).
#[derive(Clone, Copy)]
struct Term(i64, i64);

/// The trace numbers listed for `term` (a rare one: fewer than `RARE` postings).
fn term_ids(conn: &Connection, term: Term) -> StoreResult<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT k.first, k.ids FROM span_blocks AS b CROSS JOIN span_terms AS k
             ON k.block = b.block AND k.term IN (?1, ?2)",
    )?;
    let mut rows = stmt.query([term.0, term.1])?;
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
    let mut terms: Vec<Term> = trace_terms(f).into_iter().map(|t| Term(t, t)).collect();
    terms.extend(f.entity_id.as_deref().map(|e| Term(entity_term(e), term_hash(TERM_ENTITY, e))));
    for term in &terms {
        counts.push((term.0, term_count(conn, *term)?));
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
    let select = "SELECT t.trace_id, t.spans, t.start_ns FROM";
    // CROSS JOIN: SQLite keeps the written order, so a rare value's rows drive the search.
    match &driver {
        TraceDriver::Term(term) => {
            let term = terms.iter().find(|t| t.0 == *term).copied().unwrap_or(Term(*term, *term));
            let ids = serde_json::to_string(&term_ids(conn, term)?).map_err(|e| StoreError::bug(e.to_string()))?;
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
    // (trace ID, pack, start) of each trace row found.
    let rows: Vec<(Vec<u8>, Vec<u8>, i64)> = conn
        .prepare_cached(&q.sql)?
        .query_map(rusqlite::params_from_iter(q.args), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut sources = Sources::default();
    let mut out: Vec<(TraceSummary, Pack)> = Vec::with_capacity(rows.len());
    for (key, blob, start) in rows {
        let pack = Pack::decode_blob(&blob, start)?;
        out.push((summary(conn, &mut sources, &key, &pack)?, pack));
    }
    // The page and its cursor are the rows'; then the rows of one trace on it (its spans came
    // in after its first row left the directory) are listed once, their spans together.
    let more = out.len() > limit;
    out.truncate(limit);
    let next_cursor = if more { out.last().map(|(t, _)| cursor::after_trace(t)) } else { None };
    let mut items: Vec<(TraceSummary, Pack)> = Vec::with_capacity(out.len());
    let mut at: HashMap<String, usize> = HashMap::new();
    for (t, pack) in out {
        match at.get(&t.trace_id) {
            Some(&i) => {
                let (first, merged) = &mut items[i];
                merged.absorb(pack);
                let key = stored::id_bytes(&t.trace_id, 16).unwrap_or_default();
                *first = summary(conn, &mut sources, &key, merged)?;
            }
            None => {
                at.insert(t.trace_id.clone(), items.len());
                items.push((t, pack));
            }
        }
    }
    Ok(Page { items: items.into_iter().map(|(t, _)| t).collect(), next_cursor })
}

/// A trace's summary from its spans.
fn summary(conn: &Connection, sources: &mut Sources, key: &[u8], pack: &Pack) -> StoreResult<TraceSummary> {
    let hex = stored::id_hex(key);
    let root = pack.summary(&hex).ok_or_else(|| StoreError::corrupt("a stored trace without spans"))?;
    let totals = pack.totals();
    let entity_ids: BTreeSet<String> = pack.spans.iter().filter_map(|s| s.entity_id.clone()).collect();
    Ok(TraceSummary {
        trace_id: hex,
        root_name: root.root_name,
        root_service: sources.get(conn, root.root_source)?.and_then(|s| s.service_name.clone()),
        start_ns: totals.start_ns,
        duration_ns: totals.end_ns.saturating_sub(totals.start_ns),
        // Counts are never negative.
        span_count: totals.span_count.max(0) as u64,
        error_count: totals.error_count.max(0) as u64,
        entity_ids: entity_ids.into_iter().collect(),
    })
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
            let known = find_trace(conn, directory, &trace)?.map(|pack| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{span, trace_of};
    use crate::{SqliteOptions, SqliteStore, Store, WriteBatch, WriteRecord};

    fn entity_span(trace: &str, entity: &str) -> WriteRecord {
        let mut s = span(trace, &format!("{trace}-s"), None, "classify", 0);
        s.entity_id = Some(entity.to_owned());
        WriteRecord::Span(s)
    }

    /// A trace whose entity posting was written with the whole 64-bit hash (before entity
    /// terms took 4 bytes) is found beside one written since.
    #[tokio::test]
    async fn entity_search_finds_postings_of_both_term_forms() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        for (trace, entity) in [("et-old", "cand-1"), ("et-new", "cand-1"), ("et-other", "cand-2")] {
            store.write(&WriteBatch::of(vec![entity_span(trace, entity)])).await.unwrap();
        }
        let conn = Connection::open(&path).unwrap();
        let short = entity_term("cand-1");
        assert!(i32::try_from(short).is_ok(), "an entity term fits SQLite's 4-byte integers");
        let old_row: i64 = conn
            .query_row(
                "SELECT id FROM span_traces WHERE trace_id = ?1",
                [stored::id_bytes(&trace_of("et-old"), 16)],
                |r| r.get(0),
            )
            .unwrap();
        let changed = conn
            .execute(
                "UPDATE span_terms SET term = ?1 WHERE term = ?2 AND first = ?3",
                rusqlite::params![term_hash(TERM_ENTITY, "cand-1"), short, old_row],
            )
            .unwrap();
        assert_eq!(changed, 1, "the old trace's entity posting now has the earlier form");
        let found = |entity: &str| {
            let filter = TraceFilter { entity_id: Some(entity.to_owned()), ..TraceFilter::default() };
            let page = PageRequest { limit: 10, cursor: None };
            let store = &store;
            async move {
                let mut ids: Vec<String> =
                    store.traces(&filter, &page).await.unwrap().items.into_iter().map(|t| t.trace_id).collect();
                ids.sort();
                ids
            }
        };
        let mut want = vec![trace_of("et-old"), trace_of("et-new")];
        want.sort();
        assert_eq!(found("cand-1").await, want);
        assert_eq!(found("cand-2").await, [trace_of("et-other")]);
        assert!(found("cand-3").await.is_empty());
    }
}
