//! The SQLite write path, I/O only: one batch = one IMMEDIATE transaction that loads the rows
//! the batch touches (three set-wise lookups), asks the shared write plan (`crate::plan`) what
//! to write, and writes it with cached prepared statements.

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::read::{entity_rows_where, json_keys};
use std::collections::HashMap;

use helix_model::SpanRecorded;

use crate::plan::{self, Stored, Touched, TraceRow, WritePlan};
use crate::rows::{log_hash, to_json};
use crate::{StoreResult, WriteBatch, WriteOutcome};

/// Apply `batch` atomically. On any error the transaction is dropped, i.e. rolled back, so no
/// partial batch is ever visible.
pub(super) fn apply_batch(conn: &mut Connection, batch: &WriteBatch) -> StoreResult<WriteOutcome> {
    // IMMEDIATE takes the write lock up front: the loaded picture cannot go stale before the
    // plan is written, and a busy database fails here (transient), not half-way through.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // One ingest time for the whole batch, in the RFC 3339 form `created_at` uses.
    let now: String = tx.query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", [], |r| r.get(0))?;
    let stored = load(&tx, batch)?;
    let mut plan = plan::plan(batch, stored);
    write(&tx, &mut plan, &now)?;
    tx.commit()?;
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
fn write(tx: &Transaction<'_>, plan: &mut WritePlan<'_>, now: &str) -> StoreResult<()> {
    if !plan.spans.is_empty() {
        plan.outcome.spans_inserted = write_spans(tx, plan)?;
    }
    if !plan.new_entities.is_empty() {
        // Plain INSERT (entities and operations): under the write lock the plan's "new" is exact,
        // so a conflict is a bug worth failing on. Edges, creations and events are keyed by
        // client-chosen span IDs that a buggy client may reuse: those ignore a duplicate.
        let mut stmt = tx.prepare_cached(
            "INSERT INTO entities (id, instrument_id, trace_id, timestamp_ns, parent_ids, metadata,
                 created_at, span_id, stage, service_name, process_name, end_ns, status, placeholder)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?;
        for e in &plan.new_entities {
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
    if !plan.changed_entities.is_empty() {
        let mut stmt = tx.prepare_cached(
            "UPDATE entities SET trace_id = ?2, timestamp_ns = ?3, parent_ids = ?4, metadata = ?5,
                 span_id = ?6, stage = ?7, service_name = ?8, process_name = ?9, end_ns = ?10,
                 status = ?11, placeholder = ?12
             WHERE id = ?1",
        )?;
        for e in &plan.changed_entities {
            stmt.execute(rusqlite::params![
                e.id,
                e.trace_id,
                e.timestamp_ns,
                to_json(&e.parent_ids)?,
                to_json(&e.metadata)?,
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
        for e in &plan.new_events {
            stmt.execute(rusqlite::params![
                e.instrument_id,
                e.entity_id,
                e.event_name,
                e.timestamp_ns,
                to_json(&e.metadata)?,
                now,
                e.trace_id,
                e.span_id,
                e.ordinal,
            ])?;
        }
    }
    if !plan.logs.is_empty() {
        let mut stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO logs (timestamp_ns, severity, body, trace_id, span_id, entity_id,
                 instrument_id, process_name, service_name, source, attributes, created_at, dedup_hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        for l in &plan.logs {
            let attributes = to_json(&l.attributes)?;
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

const TRACE_COLUMNS: &str = "trace_id, start_ns, end_ns, span_count, error_count, root_rank, root_start_ns, \
     root_span_id, root_name, root_service";

/// Spans (idempotent by their unique key), their resources, and the summaries of the traces
/// that got new spans. Returns how many spans were new.
fn write_spans(tx: &Transaction<'_>, plan: &WritePlan<'_>) -> StoreResult<u64> {
    let mut stmt = tx.prepare_cached("INSERT OR IGNORE INTO span_resources (id, resource) VALUES (?1, ?2)")?;
    for (id, resource) in &plan.span_resources {
        stmt.execute((id, resource))?;
    }
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO spans (trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns,
             status_code, status_message, service_name, process_name, instrument_id, entity_id, role,
             resource_id, scope_name, scope_version, span_proto)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
    )?;
    let mut inserted: Vec<&SpanRecorded> = Vec::with_capacity(plan.spans.len());
    for (s, resource_id) in plan.spans.iter().zip(&plan.span_resource_ids) {
        let n = stmt.execute(rusqlite::params![
            s.trace_id,
            s.span_id,
            s.parent_span_id,
            s.name,
            s.kind,
            s.start_ns,
            s.end_ns,
            s.status_code,
            s.status_message,
            s.service_name,
            s.process_name,
            s.instrument_id,
            s.entity_id,
            s.role.as_str(),
            resource_id,
            s.scope_name,
            s.scope_version,
            s.span_proto,
        ])?;
        if n == 1 {
            inserted.push(s);
        }
    }
    if inserted.is_empty() {
        return Ok(0);
    }
    let ids = plan::trace_ids(&inserted);
    let sql = format!("SELECT {TRACE_COLUMNS} FROM traces WHERE trace_id IN (SELECT value FROM json_each(?1))");
    let stored: HashMap<String, TraceRow> = tx
        .prepare_cached(&sql)?
        .query_map([json_keys(&ids)?], trace_row)?
        .map(|r| r.map(|t| (t.trace_id.clone(), t)))
        .collect::<rusqlite::Result<_>>()?;
    let traces = plan::merge_traces(stored, &inserted);
    let sql =
        format!("INSERT OR REPLACE INTO traces ({TRACE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
    let mut stmt = tx.prepare_cached(&sql)?;
    for t in traces.new.iter().chain(&traces.changed) {
        stmt.execute(rusqlite::params![
            t.trace_id,
            t.start_ns,
            t.end_ns,
            t.span_count,
            t.error_count,
            t.root_rank,
            t.root_start_ns,
            t.root_span_id,
            t.root_name,
            t.root_service,
        ])?;
    }
    Ok(inserted.len() as u64)
}

/// A `traces` row selected as `TRACE_COLUMNS`.
pub(super) fn trace_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TraceRow> {
    Ok(TraceRow {
        trace_id: r.get(0)?,
        start_ns: r.get(1)?,
        end_ns: r.get(2)?,
        span_count: r.get(3)?,
        error_count: r.get(4)?,
        root_rank: r.get(5)?,
        root_start_ns: r.get(6)?,
        root_span_id: r.get(7)?,
        root_name: r.get(8)?,
        root_service: r.get(9)?,
    })
}
