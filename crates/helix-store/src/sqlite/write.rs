//! The SQLite write path, I/O only: one batch = one IMMEDIATE transaction that loads the rows
//! the batch touches (three set-wise lookups), asks the shared write plan (`crate::plan`) what
//! to write, and writes it with cached prepared statements.

use std::sync::RwLock;

use rusqlite::{Transaction, TransactionBehavior};

use super::blocks::{BlockChange, Directory, SUMMARY};
use super::read::{entity_rows_where, json_keys};
use super::Writer;
use helix_model::span::stored;

use crate::plan::{self, Stored, Touched, WritePlan};
use crate::rows::{log_hash, to_json};
use crate::{StoreError, StoreResult, WriteBatch, WriteOutcome};

/// Apply `batch` atomically. On any error the transaction is dropped, i.e. rolled back, so no
/// partial batch is ever visible.
pub(super) fn apply_batch(
    writer: &mut Writer,
    directory: &RwLock<Directory>,
    batch: &WriteBatch,
) -> StoreResult<WriteOutcome> {
    // IMMEDIATE takes the write lock up front: the loaded picture cannot go stale before the
    // plan is written, and a busy database fails here (transient), not half-way through.
    let tx = writer.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // One ingest time for the whole batch, in the RFC 3339 form `created_at` uses.
    let now: String = tx.query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", [], |r| r.get(0))?;
    let stored = load(&tx, batch)?;
    let mut plan = plan::plan(batch, stored);
    if let Some(conflict) = plan.refused.take() {
        // Dropping the transaction rolls it back: nothing of the batch is written.
        return Err(StoreError::InstrumentConflict(conflict));
    }
    let mut change = BlockChange::default();
    if !plan.spans.is_empty() {
        let (n, c) = write_spans(&tx, &writer.open, directory, &plan)?;
        plan.outcome.spans_inserted = n;
        change = c;
    }
    write(&tx, &mut plan, &now, batch.notify.outbox_max())?;
    tx.commit()?;
    // Only a committed change moves the open block on.
    writer.open.apply(change);
    Ok(plan.outcome)
}

/// The stored rows the batch touches.
fn load(tx: &Transaction<'_>, batch: &WriteBatch) -> StoreResult<Stored> {
    let touched = Touched::of(batch);
    let mut stored = Stored::default();
    if !touched.entity_ids.is_empty() {
        let rows = entity_rows_where(tx, "id IN (SELECT value FROM json_each(?1))", &json_keys(&touched.entity_ids)?)?;
        stored.entities = rows.into_iter().map(|e| (e.id.clone(), e)).collect();
    }
    if !touched.operation_spans.is_empty() {
        let mut stmt = tx.prepare_cached(
            "SELECT span_id FROM entity_operations WHERE span_id IN (SELECT value FROM json_each(?1))",
        )?;
        let spans = stmt.query_map([json_keys(&touched.operation_spans)?], |r| r.get(0))?;
        stored.operation_spans = spans.collect::<rusqlite::Result<_>>()?;
    }
    let recreated = Touched::recreated(batch, &stored.entities);
    if !recreated.is_empty() {
        let mut stmt = tx.prepare_cached(
            "SELECT entity_id, span_id FROM entity_creations WHERE entity_id IN (SELECT value FROM json_each(?1))",
        )?;
        let pairs = stmt.query_map([json_keys(&recreated)?], |r| Ok((r.get(0)?, r.get(1)?)))?;
        stored.creations = pairs.collect::<rusqlite::Result<_>>()?;
    }
    Ok(stored)
}

/// Write the plan's rows; counts the logs and spans actually inserted into its outcome.
fn write(tx: &Transaction<'_>, plan: &mut WritePlan<'_>, now: &str, outbox_max: u64) -> StoreResult<()> {
    if !plan.new_entities.is_empty() || !plan.changed_entities.is_empty() {
        // One statement for new and changed rows: the plan has the final values of both, and
        // `created_at` (ingest time) is set only when the row is inserted. Edges, creations and
        // events are keyed by client-chosen span IDs that a buggy client may reuse: those
        // ignore a duplicate.
        let mut stmt = tx.prepare_cached(
            "INSERT INTO entities (id, instrument_id, trace_id, timestamp_ns, parent_ids, metadata,
                 created_at, span_id, stage, service_name, process_name, end_ns, status, placeholder)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT (id) DO UPDATE SET trace_id = excluded.trace_id, timestamp_ns = excluded.timestamp_ns,
                 parent_ids = excluded.parent_ids, metadata = excluded.metadata, span_id = excluded.span_id,
                 stage = excluded.stage, service_name = excluded.service_name,
                 process_name = excluded.process_name, end_ns = excluded.end_ns, status = excluded.status,
                 placeholder = excluded.placeholder",
        )?;
        for e in plan.new_entities.iter().chain(&plan.changed_entities) {
            stmt.execute(rusqlite::params![
                e.id,
                e.instrument_id,
                e.trace_id,
                e.timestamp_ns,
                to_json(&e.parent_ids)?,
                to_json(&e.metadata)?,
                now,
                e.span_id,
                e.stage,
                e.service_name,
                e.process_name,
                e.end_ns,
                e.status.as_str(),
                e.placeholder,
            ])?;
        }
    }
    if !plan.new_creations.is_empty() {
        let mut stmt =
            tx.prepare_cached("INSERT OR IGNORE INTO entity_creations (entity_id, span_id) VALUES (?1, ?2)")?;
        for (entity, span) in &plan.new_creations {
            stmt.execute((entity, span))?;
        }
    }
    if !plan.new_edges.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO entity_parents (child_id, parent_id, position) VALUES (?1, ?2, ?3)",
        )?;
        for e in &plan.new_edges {
            stmt.execute((&e.child, &e.parent, e.position))?;
        }
    }
    if !plan.new_operations.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO entity_operations (entity_id, instrument_id, operation, trace_id, timestamp_ns,
                 duration_ns, metadata, created_at, span_id, status, service_name)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        for o in &plan.new_operations {
            stmt.execute(rusqlite::params![
                o.entity_id,
                o.instrument_id,
                o.name,
                o.trace_id,
                o.start_ns,
                o.duration_ns(),
                to_json(&o.metadata)?,
                now,
                o.span_id,
                o.status.as_str(),
                o.service_name,
            ])?;
        }
    }
    if !plan.new_events.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO entity_events (instrument_id, entity_id, event_name, timestamp_ns, metadata,
                 created_at, trace_id, span_id, ordinal)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        // The outbox rows are the notifying ones of these events, in their order: each is kept
        // only if its event's row was inserted now (an event stored before, e.g. under a reused
        // span ID, was notified then), with the metadata JSON written for the event.
        let mut outbox = std::mem::take(&mut plan.outbox).into_iter().peekable();
        let (mut notify, mut notify_metadata) = (Vec::new(), Vec::new());
        for e in &plan.new_events {
            let metadata = to_json(&e.metadata)?;
            let inserted = stmt.execute(rusqlite::params![
                e.instrument_id,
                e.entity_id,
                e.event_name,
                e.timestamp_ns,
                metadata,
                now,
                e.trace_id,
                e.span_id,
                e.ordinal,
            ])? > 0;
            if let Some(o) = outbox.next_if(|o| std::ptr::eq(o.event, *e)) {
                if inserted {
                    notify.push(o);
                    notify_metadata.push(metadata);
                }
            }
        }
        if !notify.is_empty() {
            let (recorded, coalesced) = super::notify::write_outbox(tx, &notify, &notify_metadata, outbox_max)?;
            plan.outcome.notifications_recorded = recorded;
            plan.outcome.notifications_coalesced = coalesced;
        }
    }
    if !plan.logs.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO logs (timestamp_ns, severity, body, trace_id, span_id, entity_id,
                 instrument_id, process_name, service_name, source, attributes, created_at, dedup_hash,
                 severity_number, observed_ns, resource)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )?;
        // A process sends one resource for many records: render it once per run of them.
        let mut resource: Option<(&helix_model::Metadata, String)> = None;
        for l in &plan.logs {
            let attributes = to_json(&l.attributes)?;
            if resource.as_ref().is_none_or(|(r, _)| *r != &l.resource) {
                resource = Some((&l.resource, to_json(&l.resource)?));
            }
            let resource_json = resource.as_ref().map(|(_, j)| j.as_str()).unwrap_or("{}");
            plan.outcome.logs_inserted += stmt.execute(rusqlite::params![
                l.timestamp_ns,
                l.severity,
                l.body,
                l.trace_id,
                l.span_id,
                l.entity_id,
                l.instrument_id,
                l.process_name,
                l.service_name,
                l.source,
                attributes,
                now,
                log_hash(l, &attributes),
                l.severity_number,
                l.observed_ns,
                resource_json,
            ])? as u64;
        }
    }
    if !plan.instruments.is_empty() {
        let mut stmt =
            tx.prepare_cached("INSERT OR IGNORE INTO instruments (instrument_id, created_at) VALUES (?1, ?2)")?;
        for id in &plan.instruments {
            stmt.execute((id, now))?;
        }
    }
    Ok(())
}

/// Spans into the block their trace lives in (idempotent by their key), their sources, and
/// the summaries and search terms of the traces that got new spans. Returns how many spans
/// were new and what the commit changes in the open block.
fn write_spans(
    tx: &Transaction<'_>,
    open: &super::blocks::OpenBlock,
    directory: &RwLock<Directory>,
    plan: &WritePlan<'_>,
) -> StoreResult<(u64, BlockChange)> {
    let (open_block, mut change) = open.prepare(tx, super::retention::now_ns())?;
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO span_sources (id, service_name, process_name, instrument_id, scope_name,
             scope_version, resource)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (id, s) in &plan.span_sources {
        stmt.execute(rusqlite::params![
            id,
            s.service_name,
            s.process_name,
            s.instrument_id,
            s.scope_name,
            s.scope_version,
            s.resource_proto
        ])?;
    }
    let key = |hex: &str| StoreError::bug(format!("span key {hex:?} is not hex of the OTLP length"));
    // The block of each trace of the batch (spans are sorted by trace): where the directory's
    // candidates say it is, checked by an exact seek; a trace not stored yet goes to the open block.
    let mut trace_blocks: Vec<(&str, i64)> = Vec::new();
    {
        let mut exists =
            tx.prepare_cached("SELECT 1 FROM spans WHERE block = ?1 AND trace_id = ?2 AND span_id = ?3")?;
        let dir = directory.read().unwrap_or_else(|p| p.into_inner());
        for s in &plan.spans {
            if trace_blocks.last().is_some_and(|(t, _)| *t == s.trace_id) {
                continue;
            }
            let trace: [u8; 16] = stored::id_array(&s.trace_id).ok_or_else(|| key(&s.trace_id))?;
            let print = dir.fingerprint(&trace);
            let mut block = None;
            for b in dir.candidates(print) {
                if exists.exists(rusqlite::params![b, &trace[..], &SUMMARY[..]])? {
                    block = Some(b);
                    break;
                }
            }
            let block = block.unwrap_or_else(|| {
                change.fingerprints.push(print);
                open_block
            });
            trace_blocks.push((&s.trace_id, block));
        }
    }
    let block_of = |trace: &str| {
        trace_blocks
            .binary_search_by(|(t, _)| (*t).cmp(trace))
            .map(|i| trace_blocks[i].1)
            .map_err(|_| StoreError::bug("a span of a trace without a block"))
    };
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO spans (block, trace_id, span_id, parent_span_id, start_ns, duration_ns, name, kind,
             status_code, status_message, source_id, form, entity_id, span_rest)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    // One buffer for every span's stored remainder: no allocation per span.
    let mut rest = Vec::with_capacity(1024);
    let mut inserted: Vec<plan::Inserted<'_>> = Vec::with_capacity(plan.spans.len());
    let mut block: (&str, i64) = ("", 0);
    for (s, source_id) in plan.spans.iter().zip(&plan.span_source_ids) {
        if block.0 != s.trace_id {
            block = (&s.trace_id, block_of(&s.trace_id)?);
        }
        let trace: [u8; 16] = stored::id_array(&s.trace_id).ok_or_else(|| key(&s.trace_id))?;
        let span: [u8; 8] = stored::id_array(&s.span_id).ok_or_else(|| key(&s.span_id))?;
        let parent: Option<[u8; 8]> = match &s.parent_span_id {
            Some(p) => Some(stored::id_array(p).ok_or_else(|| key(p))?),
            None => None,
        };
        rest.clear();
        let form = stored::split_into(s, &mut rest);
        let n = stmt.execute(rusqlite::params![
            block.1,
            &trace[..],
            &span[..],
            parent.as_ref().map(|p| &p[..]),
            s.start_ns,
            s.duration_ns(),
            s.name,
            s.kind,
            s.status_code,
            s.status_message,
            source_id,
            form,
            s.entity_id,
            rest,
        ])?;
        if n == 1 {
            inserted.push((s, plan::row_bytes(s, rest.len()), *source_id));
        }
    }
    if inserted.is_empty() {
        return Ok((0, change));
    }
    // The summary row (span ID all zeros) beside the trace's spans; `TraceRow::merge` in SQL.
    let root_key = "(kind, root_start_ns, parent_span_id)";
    let new_root = "(excluded.kind, excluded.root_start_ns, excluded.parent_span_id)";
    let pick = |c: &str| format!("{c} = iif({new_root} < {root_key}, excluded.{c}, {c})");
    let sql = format!(
        "INSERT INTO spans (block, trace_id, span_id, parent_span_id, start_ns, duration_ns, name, kind, status_code,
             status_message, source_id, form, entity_id, span_rest, span_count, root_start_ns, bytes)
         VALUES (?12, ?1, x'0000000000000000', ?2, ?3, ?4, ?5, ?6, ?7, '', ?8, 16, NULL, x'', ?9, ?10, ?11)
         ON CONFLICT (block, trace_id, span_id) DO UPDATE SET
             start_ns = min(start_ns, excluded.start_ns),
             duration_ns = max(start_ns + duration_ns, excluded.start_ns + excluded.duration_ns)
                 - min(start_ns, excluded.start_ns),
             span_count = span_count + excluded.span_count,
             status_code = status_code + excluded.status_code,
             bytes = bytes + excluded.bytes,
             {}",
        ["kind", "root_start_ns", "parent_span_id", "name", "source_id"].map(pick).join(", ")
    );
    let mut stmt = tx.prepare_cached(&sql)?;
    let traces = plan::merge_traces(&inserted);
    // Per touched block: (earliest start, latest start, spans, bytes) the batch adds.
    let mut touched: std::collections::BTreeMap<i64, (i64, i64, i64, i64)> = std::collections::BTreeMap::new();
    for t in &traces {
        let (trace, root): ([u8; 16], [u8; 8]) =
            match (stored::id_array(&t.trace_id), stored::id_array(&t.root_span_id)) {
                (Some(a), Some(b)) => (a, b),
                _ => return Err(StoreError::bug("a stored span key is not hex")),
            };
        let block = block_of(&t.trace_id)?;
        stmt.execute(rusqlite::params![
            &trace[..],
            &root[..],
            t.start_ns,
            t.end_ns - t.start_ns,
            t.root_name,
            t.root_rank,
            t.error_count,
            t.root_source,
            t.span_count,
            t.root_start_ns,
            t.bytes,
            block,
        ])?;
        let e = touched.entry(block).or_insert((t.start_ns, t.start_ns, 0, 0));
        *e = (e.0.min(t.start_ns), e.1.max(t.start_ns), e.2 + t.span_count, e.3 + t.bytes);
    }
    let mut stmt = tx.prepare_cached(
        "UPDATE span_blocks SET min_start_ns = min(coalesce(min_start_ns, ?2), ?2),
             max_start_ns = max(coalesce(max_start_ns, ?3), ?3), span_count = span_count + ?4, bytes = bytes + ?5
         WHERE block = ?1",
    )?;
    for (block, (min, max, spans, bytes)) in &touched {
        stmt.execute(rusqlite::params![block, min, max, spans, bytes])?;
        if *block == open_block {
            change.spans += spans;
        }
    }
    let mut stmt =
        tx.prepare_cached("INSERT OR IGNORE INTO trace_terms (block, term, trace_id) VALUES (?1, ?2, ?3)")?;
    for (term, trace_id) in plan::trace_terms(&inserted) {
        let trace: [u8; 16] = stored::id_array(trace_id).ok_or_else(|| StoreError::bug("a span key is not hex"))?;
        stmt.execute(rusqlite::params![block_of(trace_id)?, term, &trace[..]])?;
    }
    // Before the commit: the directory never misses a committed trace (an entry of a commit
    // that then fails is only a candidate that the exact seek turns down).
    let mut dir = directory.write().unwrap_or_else(|p| p.into_inner());
    for print in &change.fingerprints {
        dir.insert(*print, open_block);
    }
    Ok((inserted.len() as u64, change))
}
