//! The SQLite write path, I/O only: one batch = one IMMEDIATE transaction that loads the rows
//! the batch touches (three set-wise lookups), asks the shared write plan (`crate::plan`) what
//! to write, and writes it with cached prepared statements.

use std::sync::RwLock;

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior};

use std::collections::{BTreeMap, HashSet};

use super::blocks::{entry, BlockChange, Directory};
use super::pack::{id_u64, insert_trace, span_terms, trace_bytes, write_postings, Pack, PackedSpan, Sources};
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
    writer.checkpoints.committed();
    // Only a committed change moves the open block on, and ages the sealed one.
    if let Some(sealed) = change.sealed.take() {
        directory.write().unwrap_or_else(|p| p.into_inner()).sealed(sealed);
    }
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
        // span ID, was notified then), and points at that row.
        let mut outbox = std::mem::take(&mut plan.outbox).into_iter().peekable();
        let (mut notify, mut notify_rows) = (Vec::new(), Vec::new());
        for e in &plan.new_events {
            let inserted = stmt.execute(rusqlite::params![
                e.instrument_id,
                e.entity_id,
                e.event_name,
                e.timestamp_ns,
                to_json(&e.metadata)?,
                now,
                e.trace_id,
                e.span_id,
                e.ordinal,
            ])? > 0;
            if let Some(o) = outbox.next_if(|o| std::ptr::eq(o.event, *e)) {
                if inserted {
                    notify.push(o);
                    notify_rows.push(tx.last_insert_rowid());
                }
            }
        }
        if !notify.is_empty() {
            let (recorded, coalesced) = super::notify::write_outbox(tx, &notify, &notify_rows, outbox_max)?;
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
        let mut filters = super::grams::Pending::default();
        for l in &plan.logs {
            let attributes = to_json(&l.attributes)?;
            if resource.as_ref().is_none_or(|(r, _)| *r != &l.resource) {
                resource = Some((&l.resource, to_json(&l.resource)?));
            }
            let resource_json = resource.as_ref().map(|(_, j)| j.as_str()).unwrap_or("{}");
            let inserted = stmt.execute(rusqlite::params![
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
            ])?;
            // A retried line (ignored) is already in its block's filter.
            if inserted == 1 {
                filters.add(tx.last_insert_rowid(), l.timestamp_ns, &l.body);
            }
            plan.outcome.logs_inserted += inserted as u64;
        }
        filters.write(tx)?;
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

/// Spans into their trace's row (a new trace: a new row in the open block; a stored one: its
/// row, wherever it is, gets the spans it does not have yet), their sources, the postings of
/// the terms traces gained, and the blocks' counts. Returns how many spans were new and what
/// the commit changes in the open block.
fn write_spans(
    tx: &Transaction<'_>,
    open: &super::blocks::OpenBlock,
    directory: &RwLock<Directory>,
    plan: &WritePlan<'_>,
) -> StoreResult<(u64, BlockChange)> {
    let (open_block, mut change) = open.prepare(tx, super::retention::now_ns())?;
    let mut sources = Sources::default();
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
        sources.known(*id, s);
    }
    let key = |hex: &str| StoreError::bug(format!("span key {hex:?} is not hex of the OTLP length"));
    let mut found = tx.prepare_cached("SELECT trace_id, block, spans, start_ns FROM span_traces WHERE id = ?1")?;
    let mut update = tx.prepare_cached(
        "UPDATE span_traces SET start_ns = ?2, end_ns = ?3, span_count = ?4, error_count = ?5, spans = ?6
         WHERE id = ?1",
    )?;
    // Per (block, term), the traces that gained the term; per block, what the batch adds.
    let mut terms: BTreeMap<(i64, i64), Vec<i64>> = BTreeMap::new();
    let mut blocks: BTreeMap<i64, BlockAdd> = BTreeMap::new();
    let mut inserted = 0u64;
    let (spans, source_ids) = (&plan.spans, &plan.span_source_ids);
    let dir = directory.read().unwrap_or_else(|p| p.into_inner());
    let mut at = 0;
    // Spans are sorted by trace: one group per trace.
    while at < spans.len() {
        let begin = at;
        while at < spans.len() && spans[at].trace_id == spans[begin].trace_id {
            at += 1;
        }
        let group = begin..at;
        let trace: [u8; 16] = stored::id_array(&spans[begin].trace_id).ok_or_else(|| key(&spans[begin].trace_id))?;
        let print = dir.fingerprint(&trace);
        let mut stored_trace = None;
        for id in dir.candidates(print) {
            let row: Option<(Vec<u8>, i64, Vec<u8>, i64)> =
                found.query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).optional()?;
            if let Some((_, block, blob, start)) = row.filter(|r| r.0 == trace) {
                stored_trace = Some((id, block, Pack::decode_blob(&blob, start)?, start, blob.len()));
                break;
            }
        }
        let mut gained: Vec<i64> = Vec::new();
        match stored_trace {
            Some((id, block, mut pack, old_start, old_len)) => {
                let known: HashSet<u64> = pack.spans.iter().map(|s| s.span_id).collect();
                let mut had = Vec::new();
                for s in &pack.spans {
                    span_terms(&s.name, sources.get(tx, s.source_id)?, s.entity_id.as_deref(), &mut had);
                }
                let mut added = 0i64;
                for i in group {
                    let s = spans[i];
                    let span: [u8; 8] = stored::id_array(&s.span_id).ok_or_else(|| key(&s.span_id))?;
                    if known.contains(&id_u64(span)) {
                        // A retried span: the row has it.
                        continue;
                    }
                    span_terms(&s.name, sources.get(tx, source_ids[i])?, s.entity_id.as_deref(), &mut gained);
                    pack.spans.push(PackedSpan::of(s, source_ids[i], pack.base_ns)?);
                    added += 1;
                }
                if added == 0 {
                    continue;
                }
                had.sort_unstable();
                gained.retain(|t| had.binary_search(t).is_err());
                let sum = pack.totals();
                let blob = pack.encode_for_row(sum.start_ns);
                update.execute(rusqlite::params![
                    id,
                    sum.start_ns,
                    sum.end_ns,
                    sum.span_count,
                    sum.error_count,
                    blob
                ])?;
                let b = blocks.entry(block).or_default();
                b.add(sum.start_ns.min(old_start), added, blob.len() as i64 - old_len as i64, None);
                inserted += added as u64;
                add_terms(&mut terms, gained, block, id);
            }
            None => {
                let mut pack =
                    Pack { base_ns: spans[begin].start_ns, spans: Vec::with_capacity(group.len()), from_start: None };
                for i in group {
                    let s = spans[i];
                    span_terms(&s.name, sources.get(tx, source_ids[i])?, s.entity_id.as_deref(), &mut gained);
                    pack.spans.push(PackedSpan::of(s, source_ids[i], pack.base_ns)?);
                }
                let (id, stored) = insert_trace(tx, open_block, &trace, &mut pack)?;
                change.entries.push(entry(print, id));
                let start = pack.totals().start_ns;
                let n = pack.spans.len() as i64;
                blocks.entry(open_block).or_default().add(start, n, trace_bytes(stored), Some(id));
                inserted += n as u64;
                add_terms(&mut terms, gained, open_block, id);
            }
        }
    }
    drop(dir);
    write_postings(tx, terms)?;
    let mut stmt = tx.prepare_cached(
        "UPDATE span_blocks SET min_start_ns = min(coalesce(min_start_ns, ?2), ?2),
             max_start_ns = max(coalesce(max_start_ns, ?3), ?3), span_count = span_count + ?4, bytes = bytes + ?5,
             first_id = coalesce(first_id, ?6), last_id = coalesce(?7, last_id)
         WHERE block = ?1",
    )?;
    for (block, b) in &blocks {
        stmt.execute(rusqlite::params![block, b.min_start, b.max_start, b.spans, b.bytes, b.first_id, b.last_id])?;
        if *block == open_block {
            change.spans += b.spans;
        }
    }
    // Before the commit: the directory never misses a committed trace (an entry of a commit
    // that then fails is only a candidate that the row's trace ID turns down).
    let mut dir = directory.write().unwrap_or_else(|p| p.into_inner());
    for e in &change.entries {
        dir.insert_entry(*e);
    }
    Ok((inserted, change))
}

/// What a batch adds to one block.
#[derive(Default)]
struct BlockAdd {
    seen: bool,
    min_start: i64,
    max_start: i64,
    spans: i64,
    bytes: i64,
    first_id: Option<i64>,
    last_id: Option<i64>,
}

impl BlockAdd {
    fn add(&mut self, start: i64, spans: i64, bytes: i64, new_id: Option<i64>) {
        if !self.seen {
            (self.seen, self.min_start, self.max_start) = (true, start, start);
        }
        self.min_start = self.min_start.min(start);
        self.max_start = self.max_start.max(start);
        self.spans += spans;
        self.bytes += bytes;
        if let Some(id) = new_id {
            self.first_id.get_or_insert(id);
            self.last_id = Some(id);
        }
    }
}

fn add_terms(terms: &mut BTreeMap<(i64, i64), Vec<i64>>, mut gained: Vec<i64>, block: i64, id: i64) {
    gained.sort_unstable();
    gained.dedup();
    for t in gained {
        terms.entry((block, t)).or_default().push(id);
    }
}
