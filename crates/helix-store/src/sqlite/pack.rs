//! Span packs on SQLite (docs/storage.md "Span packs"): a trace's spans as one protobuf
//! message in its `span_traces` row, the search-term postings of `span_terms`, the SQL
//! function that matches a pack's spans against a search's span-level filters, and the
//! conversion of the span store of schema 5.

use std::collections::{BTreeMap, HashMap};

use helix_model::span::stored;
use helix_model::{SpanRecorded, SpanRole};
use prost::Message;
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OptionalExtension, Transaction};

use crate::plan::{entity_term, term_hash, TraceRow, TERM_INSTRUMENT, TERM_NAME, TERM_SERVICE};
use crate::{StoreError, StoreResult};

/// The spans of one trace, in the order they were stored.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Pack {
    /// Span starts are stored relative to this (the first stored span's start): small varints.
    /// Absolute in memory; on disk 0 (left out) when `from_start` is there.
    #[prost(sint64, tag = "1")]
    pub base_ns: i64,
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<PackedSpan>,
    /// On disk since 2026-12-03: `base_ns` less the row's `start_ns`, the trace's earliest start,
    /// which the row holds anyway (usually 0: two bytes where the base took ten). Absent in
    /// older packs, whose `base_ns` is absolute.
    #[prost(sint64, optional, tag = "3")]
    pub from_start: Option<i64>,
}

/// One stored span: the query fields of a span row of schema 5 and `rest`, the OTLP span less
/// those fields (`stored::split_into`); the trace ID is the row's.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct PackedSpan {
    /// The 8 ID bytes, big-endian (never 0: OTLP calls an all-zero span ID invalid).
    #[prost(fixed64, tag = "1")]
    pub span_id: u64,
    #[prost(fixed64, optional, tag = "2")]
    pub parent_span_id: Option<u64>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(int32, tag = "4")]
    pub kind: i32,
    /// Start - `Pack::base_ns`.
    #[prost(sint64, tag = "5")]
    pub start: i64,
    #[prost(int64, tag = "6")]
    pub duration_ns: i64,
    #[prost(int32, tag = "7")]
    pub status_code: i32,
    #[prost(string, tag = "8")]
    pub status_message: String,
    /// Its `span_sources` key.
    #[prost(sfixed64, tag = "9")]
    pub source_id: i64,
    /// `stored::split_into`'s form bits (role, whole span kept, status, attribute places).
    #[prost(int64, tag = "10")]
    pub form: i64,
    #[prost(string, optional, tag = "11")]
    pub entity_id: Option<String>,
    #[prost(bytes = "vec", tag = "12")]
    pub rest: Vec<u8>,
}

/// The source columns a stored span is read back with (a `span_sources` row).
#[derive(Debug, Clone)]
pub(super) struct Source {
    pub service_name: Option<String>,
    pub process_name: Option<String>,
    pub instrument_id: Option<String>,
    pub scope_name: String,
    pub scope_version: String,
    pub resource: Vec<u8>,
}

pub(super) fn id_u64(id: [u8; 8]) -> u64 {
    u64::from_be_bytes(id)
}

fn id_hex(id: u64) -> String {
    stored::id_hex(&id.to_be_bytes())
}

fn bad_key(hex: &str) -> StoreError {
    StoreError::bug(format!("span key {hex:?} is not hex of the OTLP length"))
}

impl PackedSpan {
    pub(super) fn start_ns(&self, pack: &Pack) -> i64 {
        pack.base_ns.saturating_add(self.start)
    }

    /// A span of the batch, packed relative to `base_ns`.
    pub(super) fn of(s: &SpanRecorded, source_id: i64, base_ns: i64) -> StoreResult<PackedSpan> {
        let span: [u8; 8] = stored::id_array(&s.span_id).ok_or_else(|| bad_key(&s.span_id))?;
        let parent = match &s.parent_span_id {
            Some(p) => Some(id_u64(stored::id_array(p).ok_or_else(|| bad_key(p))?)),
            None => None,
        };
        let mut rest = Vec::new();
        let form = stored::split_into(s, &mut rest);
        Ok(PackedSpan {
            span_id: id_u64(span),
            parent_span_id: parent,
            name: s.name.clone(),
            kind: s.kind,
            start: s.start_ns.wrapping_sub(base_ns),
            duration_ns: s.duration_ns(),
            status_code: s.status_code,
            status_message: s.status_message.clone(),
            source_id,
            form,
            entity_id: s.entity_id.clone(),
            rest,
        })
    }

    /// The summary of this span alone (`TraceRow::merge` folds them into the trace's).
    fn summary(&self, pack: &Pack, trace_hex: &str) -> TraceRow {
        let start = self.start_ns(pack);
        TraceRow {
            trace_id: trace_hex.to_owned(),
            start_ns: start,
            end_ns: start.saturating_add(self.duration_ns),
            span_count: 1,
            error_count: i64::from(self.status_code == 2),
            root_rank: i32::from(self.parent_span_id.is_some()),
            root_start_ns: start,
            root_span_id: id_hex(self.span_id),
            root_name: self.name.clone(),
            root_service: None,
            root_source: self.source_id,
            bytes: 0,
        }
    }

    /// The stored span read back: the record with its OTLP span joined again.
    pub(super) fn record(&self, pack: &Pack, trace_hex: &str, src: &Source) -> StoreResult<SpanRecorded> {
        let start_ns = self.start_ns(pack);
        let mut s = SpanRecorded {
            trace_id: trace_hex.to_owned(),
            span_id: id_hex(self.span_id),
            parent_span_id: self.parent_span_id.map(id_hex),
            name: self.name.clone(),
            kind: self.kind,
            start_ns,
            end_ns: start_ns.saturating_add(self.duration_ns),
            status_code: self.status_code,
            status_message: self.status_message.clone(),
            service_name: src.service_name.clone(),
            process_name: src.process_name.clone(),
            instrument_id: src.instrument_id.clone(),
            entity_id: self.entity_id.clone(),
            role: SpanRole::Span,
            span_proto: Vec::new(),
            resource_proto: src.resource.clone(),
            scope_name: src.scope_name.clone(),
            scope_version: src.scope_version.clone(),
        };
        s.role = stored::role_of(self.form).ok_or_else(|| StoreError::corrupt(format!("span form {}", self.form)))?;
        s.span_proto =
            stored::join(&s, self.form, &self.rest).map_err(|e| StoreError::corrupt(format!("stored span: {e}")))?;
        Ok(s)
    }
}

impl Pack {
    /// The pack of a row whose `start_ns` is `row_start_ns`.
    pub(super) fn decode_blob(blob: &[u8], row_start_ns: i64) -> StoreResult<Pack> {
        let mut pack = Pack::decode(blob).map_err(|e| StoreError::corrupt(format!("stored span pack: {e}")))?;
        if let Some(offset) = pack.from_start.take() {
            pack.base_ns = row_start_ns.wrapping_add(offset);
        }
        Ok(pack)
    }

    /// The bytes of the pack in a row whose `start_ns` is `row_start_ns` (`decode_blob`'s).
    pub(super) fn encode_for_row(&mut self, row_start_ns: i64) -> Vec<u8> {
        let base = self.base_ns;
        (self.base_ns, self.from_start) = (0, Some(base.wrapping_sub(row_start_ns)));
        let blob = self.encode_to_vec();
        (self.base_ns, self.from_start) = (base, None);
        blob
    }

    /// The trace's summary over all its spans (`TraceRow::merge`, the rule of both backends).
    pub(super) fn summary(&self, trace_hex: &str) -> Option<TraceRow> {
        let mut rows = self.spans.iter().map(|s| s.summary(self, trace_hex));
        let mut first = rows.next()?;
        for r in rows {
            first.merge(r);
        }
        Some(first)
    }

    /// The summary columns of the trace's row: earliest start, latest end, spans, error spans
    /// (what `summary` gives, without its root).
    pub(super) fn totals(&self) -> Totals {
        let mut t = Totals { start_ns: i64::MAX, end_ns: i64::MIN, span_count: 0, error_count: 0 };
        for s in &self.spans {
            let start = s.start_ns(self);
            t.start_ns = t.start_ns.min(start);
            t.end_ns = t.end_ns.max(start.saturating_add(s.duration_ns));
            t.span_count += 1;
            t.error_count += i64::from(s.status_code == 2);
        }
        t
    }

    /// Add the spans of another row of the same trace that this one does not have (by span
    /// ID), their starts made relative to this pack's base.
    pub(super) fn absorb(&mut self, other: Pack) {
        let known: std::collections::HashSet<u64> = self.spans.iter().map(|s| s.span_id).collect();
        for mut s in other.spans {
            if known.contains(&s.span_id) {
                continue;
            }
            s.start = other.base_ns.saturating_add(s.start).saturating_sub(self.base_ns);
            self.spans.push(s);
        }
    }

    /// Spans by start, then span ID: the order a trace is read in.
    pub(super) fn ordered(&self) -> Vec<&PackedSpan> {
        let mut spans: Vec<&PackedSpan> = self.spans.iter().collect();
        spans.sort_by_key(|s| (s.start_ns(self), s.span_id));
        spans
    }
}

/// The summary columns of a trace row.
pub(super) struct Totals {
    pub start_ns: i64,
    pub end_ns: i64,
    pub span_count: i64,
    pub error_count: i64,
}

/// The search terms of a span: its name, its source's service and instrument, its entity.
pub(super) fn span_terms(name: &str, source: Option<&Source>, entity: Option<&str>, out: &mut Vec<i64>) {
    out.push(term_hash(TERM_NAME, name));
    if let Some(src) = source {
        out.extend(src.service_name.as_deref().map(|v| term_hash(TERM_SERVICE, v)));
        out.extend(src.instrument_id.as_deref().map(|v| term_hash(TERM_INSTRUMENT, v)));
    }
    out.extend(entity.map(entity_term));
}

/// `span_sources` rows by key, read once per key.
#[derive(Default)]
pub(super) struct Sources(HashMap<i64, Option<Source>>);

impl Sources {
    pub(super) fn get(&mut self, conn: &Connection, id: i64) -> StoreResult<Option<&Source>> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.0.entry(id) {
            let src = conn
                .prepare_cached(
                    "SELECT service_name, process_name, instrument_id, scope_name, scope_version, resource
                     FROM span_sources WHERE id = ?1",
                )?
                .query_row([id], |r| {
                    Ok(Source {
                        service_name: r.get(0)?,
                        process_name: r.get(1)?,
                        instrument_id: r.get(2)?,
                        scope_name: r.get(3)?,
                        scope_version: r.get(4)?,
                        resource: r.get(5)?,
                    })
                })
                .optional()?;
            slot.insert(src);
        }
        Ok(self.0.get(&id).and_then(Option::as_ref))
    }

    /// A source the batch writes, known without reading it back.
    pub(super) fn known(&mut self, id: i64, s: &SpanRecorded) {
        self.0.entry(id).or_insert_with(|| {
            Some(Source {
                service_name: s.service_name.clone(),
                process_name: s.process_name.clone(),
                instrument_id: s.instrument_id.clone(),
                scope_name: s.scope_name.clone(),
                scope_version: s.scope_version.clone(),
                resource: Vec::new(),
            })
        });
    }
}

fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Trace numbers of a postings row (`span_terms.ids`).
pub(super) fn postings(first: i64, blob: &[u8]) -> Vec<i64> {
    let mut out = Vec::new();
    let (mut v, mut shift) = (0u64, 0u32);
    for b in blob {
        v |= u64::from(b & 0x7f) << shift.min(63);
        shift += 7;
        if b & 0x80 == 0 {
            out.push(first.saturating_add(v as i64));
            (v, shift) = (0, 0);
        }
    }
    out
}

/// Write the postings of a commit: per (block, term), the trace numbers that gained the term
/// (any order, no repeats).
pub(super) fn write_postings(tx: &Transaction<'_>, terms: BTreeMap<(i64, i64), Vec<i64>>) -> StoreResult<()> {
    // A row's key cannot be taken: `first` is a trace that gets the term now, and a trace gets
    // a term once. Should it ever be, the two rows' offsets share `first` and append.
    let mut stmt = tx.prepare_cached(
        "INSERT INTO span_terms (block, term, first, n, ids) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (block, term, first) DO UPDATE SET n = n + excluded.n, ids = ids || excluded.ids",
    )?;
    let mut blob = Vec::new();
    for ((block, term), mut ids) in terms {
        ids.sort_unstable();
        ids.dedup();
        let Some(&first) = ids.first() else { continue };
        blob.clear();
        for id in &ids {
            put_varint((id - first) as u64, &mut blob);
        }
        stmt.execute(rusqlite::params![block, term, first, ids.len() as i64, blob])?;
    }
    Ok(())
}

/// `helix_span_match(spans, name, entity, sources)`: whether one span of the pack has the
/// name (NULL: any), the entity (NULL: any) and a source among `sources` (sorted little-endian
/// i64 keys; NULL: any). The trace search's exact span-level check.
pub(super) fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "helix_span_match",
        4,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let blob = ctx.get_raw(0).as_blob().map_err(|e| rusqlite::Error::UserFunctionError(e.into()))?;
            let name: Option<String> = ctx.get(1)?;
            let entity: Option<String> = ctx.get(2)?;
            let sources: Option<Vec<u8>> = ctx.get(3)?;
            let sources: Option<Vec<i64>> = sources
                .map(|b| b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect());
            let pack = Pack::decode(blob).map_err(|e| rusqlite::Error::UserFunctionError(e.into()))?;
            Ok(pack.spans.iter().any(|s| {
                name.as_deref().is_none_or(|n| n == s.name)
                    && entity.as_deref().is_none_or(|e| s.entity_id.as_deref() == Some(e))
                    && sources.as_ref().is_none_or(|ids| ids.binary_search(&s.source_id).is_ok())
            }))
        },
    )
}

/// Pack the spans of schema 5 (`spans_005`, `trace_terms_005`, left by migration 10) into
/// trace rows, one transaction: each old block becomes a sealed block of the same traces.
pub(super) fn convert_schema_5(conn: &mut Connection, key: &[u8; 16]) -> StoreResult<()> {
    let exists: Option<i64> = conn
        .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'spans_005'", [], |r| r.get(0))
        .optional()?;
    if exists.is_none() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let now = super::retention::now_ns();
    let mut sources = Sources::default();
    let mut traces = 0u64;
    {
        let mut read = tx.prepare(
            "SELECT block, trace_id, span_id, parent_span_id, start_ns, duration_ns, name, kind, status_code,
                 status_message, source_id, form, entity_id, span_rest
             FROM spans_005 WHERE span_id > x'0000000000000000' ORDER BY block, trace_id, span_id",
        )?;
        let mut rows = read.query([])?;
        let mut current: Option<(i64, Vec<u8>, Pack)> = None;
        let mut block = BlockFill::default();
        let mut terms: BTreeMap<(i64, i64), Vec<i64>> = BTreeMap::new();
        loop {
            let row = rows.next()?;
            let next = match row {
                Some(r) => {
                    let (b, t): (i64, Vec<u8>) = (r.get(0)?, r.get(1)?);
                    let span: Vec<u8> = r.get(2)?;
                    let parent: Option<Vec<u8>> = r.get(3)?;
                    let to_u64 = |v: &[u8]| -> StoreResult<u64> {
                        Ok(id_u64(v.try_into().map_err(|_| StoreError::corrupt("a stored span ID is not 8 bytes"))?))
                    };
                    let start: i64 = r.get(4)?;
                    let p = PackedSpan {
                        span_id: to_u64(&span)?,
                        parent_span_id: parent.as_deref().map(to_u64).transpose()?,
                        name: r.get(6)?,
                        kind: r.get(7)?,
                        start,
                        duration_ns: r.get(5)?,
                        status_code: r.get(8)?,
                        status_message: r.get(9)?,
                        source_id: r.get(10)?,
                        form: r.get(11)?,
                        entity_id: r.get(12)?,
                        rest: r.get(13)?,
                    };
                    Some((b, t, p))
                }
                None => None,
            };
            let same = match (&current, &next) {
                (Some((b, t, _)), Some((nb, nt, _))) => b == nb && t == nt,
                _ => false,
            };
            if !same {
                if let Some((b, t, mut pack)) = current.take() {
                    // Starts were read absolute: relative to the first span's.
                    pack.base_ns = pack.spans.first().map_or(0, |s| s.start);
                    for s in &mut pack.spans {
                        s.start -= pack.base_ns;
                    }
                    if block.block != b {
                        block.finish(&tx, now)?;
                        write_postings(&tx, std::mem::take(&mut terms))?;
                        block = BlockFill { block: b, ..Default::default() };
                    }
                    let (id, stored) = insert_trace(&tx, b, &t, &mut pack)?;
                    let mut found = Vec::new();
                    for s in &pack.spans {
                        let src = sources.get(&tx, s.source_id)?;
                        span_terms(&s.name, src, s.entity_id.as_deref(), &mut found);
                    }
                    found.sort_unstable();
                    found.dedup();
                    for term in found {
                        terms.entry((b, term)).or_default().push(id);
                    }
                    block.add(id, &t, &pack, key, stored);
                    traces += 1;
                }
                match next {
                    Some((b, t, p)) => current = Some((b, t, Pack { base_ns: 0, spans: vec![p], from_start: None })),
                    None => break,
                }
            } else if let (Some((_, _, pack)), Some((_, _, p))) = (&mut current, next) {
                pack.spans.push(p);
            }
        }
        block.finish(&tx, now)?;
        write_postings(&tx, terms)?;
    }
    tx.execute_batch("DROP TABLE spans_005; DROP TABLE trace_terms_005;")?;
    tx.commit()?;
    tracing::info!(traces, elapsed = ?started.elapsed(), "span store: packed the spans of schema 5");
    Ok(())
}

/// Insert a new trace row; returns its trace number and the stored pack's length.
pub(super) fn insert_trace(
    tx: &Transaction<'_>,
    block: i64,
    trace: &[u8],
    pack: &mut Pack,
) -> StoreResult<(i64, usize)> {
    if pack.spans.is_empty() {
        return Err(StoreError::bug("a trace without spans"));
    }
    let sum = pack.totals();
    let blob = pack.encode_for_row(sum.start_ns);
    tx.prepare_cached(
        "INSERT INTO span_traces (block, trace_id, start_ns, end_ns, span_count, error_count, spans)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(rusqlite::params![block, trace, sum.start_ns, sum.end_ns, sum.span_count, sum.error_count, &blob])?;
    Ok((tx.last_insert_rowid(), blob.len()))
}

/// What a trace row takes on disk, roughly: its pack and the row's other columns and index
/// entries. The unit of a block's `bytes` (exact enough for a budget, and cheap).
pub(super) fn trace_bytes(pack_len: usize) -> i64 {
    pack_len as i64 + 60
}

/// A converted block being filled.
#[derive(Default)]
struct BlockFill {
    block: i64,
    first: Option<i64>,
    last: i64,
    min_start: i64,
    max_start: i64,
    spans: i64,
    bytes: i64,
    entries: Vec<u64>,
}

impl BlockFill {
    /// A trace row of the block: `stored`, its pack's length on disk (`insert_trace`'s).
    fn add(&mut self, id: i64, trace: &[u8], pack: &Pack, key: &[u8; 16], stored: usize) {
        let start = pack.totals().start_ns;
        if self.first.is_none() {
            (self.min_start, self.max_start) = (start, start);
        }
        self.first.get_or_insert(id);
        self.last = id;
        self.min_start = self.min_start.min(start);
        self.max_start = self.max_start.max(start);
        self.spans += pack.spans.len() as i64;
        self.bytes += trace_bytes(stored);
        self.entries.push(super::blocks::entry(super::blocks::fingerprint(key, trace), id));
    }

    fn finish(&mut self, tx: &Transaction<'_>, now: i64) -> StoreResult<()> {
        let Some(first) = self.first else { return Ok(()) };
        self.entries.sort_unstable();
        tx.execute(
            "INSERT INTO span_blocks (block, sealed, opened_ns, first_id, last_id, min_start_ns, max_start_ns,
                 span_count, bytes, traces)
             VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            rusqlite::params![
                self.block,
                now,
                first,
                self.last,
                self.min_start,
                self.max_start,
                self.spans,
                self.bytes,
                super::blocks::encode(&self.entries)
            ],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pack_stores_its_base_from_the_rows_start_and_older_packs_still_read() {
        let span = |start| PackedSpan { span_id: 7, name: "s".into(), start, ..Default::default() };
        let base = 1_764_000_000_000_000_000i64;
        let mut pack = Pack { base_ns: base, spans: vec![span(0), span(-40)], from_start: None };
        let row_start = pack.totals().start_ns;
        assert_eq!(row_start, base - 40);
        let blob = pack.encode_for_row(row_start);
        assert_eq!((pack.base_ns, pack.from_start), (base, None), "the pack in memory is as it was");
        assert!(blob.len() + 7 < pack.encoded_len(), "{} bytes against {}", blob.len(), pack.encoded_len());
        assert_eq!(Pack::decode_blob(&blob, row_start).unwrap(), pack);
        // A pack written before: its base absolute, whatever the row says.
        let old = pack.encode_to_vec();
        assert_eq!(Pack::decode_blob(&old, 12345).unwrap(), pack);
    }

    #[test]
    fn postings_round_trip_and_append() {
        let mut blob = Vec::new();
        for id in [100, 101, 300, 70_000] {
            put_varint(id - 100, &mut blob);
        }
        assert_eq!(postings(100, &blob), vec![100, 101, 300, 70_000]);
        let mut more = blob.clone();
        put_varint(5, &mut more);
        assert_eq!(postings(100, &more).last(), Some(&105), "rows of one first append");
    }
}
