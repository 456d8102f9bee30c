//! The SQLite write path: one batch = one IMMEDIATE transaction applying records in order with
//! cached prepared statements, implementing storage.md's write semantics (idempotency,
//! placeholders, re-creation, instrument ownership).

use std::collections::HashSet;

use helix_model::{EntityCreated, EntityEvent, LogRecorded, Metadata, OperationRecorded, Status};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::rows::{
    append_new_parents, log_hash, parse_metadata, parse_status, parse_string_vec, to_json, unique_in_order, worst,
};
use crate::{EntityCount, StoreResult, WriteBatch, WriteOutcome, WriteRecord};

/// Apply `batch` atomically. On any error the transaction is dropped, i.e. rolled back, so no
/// partial batch is ever visible.
pub(super) fn apply_batch(conn: &mut Connection, batch: &WriteBatch) -> StoreResult<WriteOutcome> {
    // IMMEDIATE takes the write lock up front, so a busy database fails here (transient)
    // instead of half-way through the batch on a lock upgrade.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // One ingest time for the whole batch, in the RFC 3339 form `created_at` uses.
    let now: String = tx.query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", [], |r| r.get(0))?;
    let mut w = Writer { tx: &tx, now: &now, out: WriteOutcome::default(), instruments: HashSet::new() };
    for record in &batch.records {
        match record {
            WriteRecord::Created(c) => w.created(c)?,
            WriteRecord::Operation(o) => w.operation(o)?,
            WriteRecord::Log(l) => w.log(l)?,
        }
    }
    w.record_instruments()?;
    let out = w.out;
    tx.commit()?;
    Ok(out)
}

struct Writer<'a> {
    tx: &'a Transaction<'a>,
    now: &'a str,
    out: WriteOutcome,
    /// Instruments seen in this batch, inserted once at the end.
    instruments: HashSet<String>,
}

/// The stored row of an entity a creation names.
struct ExistingEntity {
    instrument_id: String,
    placeholder: bool,
    status: String,
    parent_ids: String,
    metadata: String,
    /// The entity's first creation span; NULL for a placeholder.
    span_id: Option<String>,
}

impl Writer<'_> {
    fn note_instrument(&mut self, id: &str) {
        // "" is the wire fallback for "no instrument": not worth listing.
        if !id.is_empty() && !self.instruments.contains(id) {
            self.instruments.insert(id.to_owned());
        }
    }

    fn record_instruments(&mut self) -> StoreResult<()> {
        let mut stmt =
            self.tx.prepare_cached("INSERT OR IGNORE INTO instruments (instrument_id, created_at) VALUES (?1, ?2)")?;
        for id in &self.instruments {
            stmt.execute((id, self.now))?;
        }
        Ok(())
    }

    fn created(&mut self, c: &EntityCreated) -> StoreResult<()> {
        // Fast path, the common case: a brand-new entity is one INSERT (no lookup first).
        let parents = unique_in_order(&c.parent_ids);
        let inserted = self
            .tx
            .prepare_cached(
                "INSERT INTO entities (id, instrument_id, trace_id, timestamp_ns, parent_ids, metadata,
                     created_at, span_id, stage, service_name, process_name, end_ns, status, placeholder)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 0)
                 ON CONFLICT (id) DO NOTHING",
            )?
            .execute(rusqlite::params![
                c.entity_id,
                c.instrument_id,
                c.trace_id,
                c.start_ns,
                to_json(&parents)?,
                to_json(&c.metadata)?,
                self.now,
                c.span_id,
                c.stage,
                c.service_name,
                c.process_name,
                c.end_ns,
                c.status.as_str(),
            ])?
            == 1;
        if inserted {
            self.note_instrument(&c.instrument_id);
            self.insert_edges(&c.entity_id, &parents, 0)?;
            self.out.entities_created.push(EntityCount {
                entity_id: c.entity_id.clone(),
                instrument_id: c.instrument_id.clone(),
                stage: c.stage.clone(),
                status: c.status,
            });
            return self.insert_events(&c.events);
        }

        let existing = self
            .tx
            .prepare_cached(
                "SELECT instrument_id, placeholder, status, parent_ids, metadata, span_id FROM entities WHERE id = ?1",
            )?
            .query_row([&c.entity_id], |r| {
                Ok(ExistingEntity {
                    instrument_id: r.get(0)?,
                    placeholder: r.get(1)?,
                    status: r.get(2)?,
                    parent_ids: r.get(3)?,
                    metadata: r.get(4)?,
                    span_id: r.get(5)?,
                })
            })?;
        if existing.instrument_id != c.instrument_id {
            // Ownership: checked before the span is recorded, so the conflict is not remembered
            // as an applied creation.
            self.out.instrument_conflicts += 1;
            return Ok(());
        }
        if existing.span_id.as_deref() == Some(c.span_id.as_str()) {
            // The entity's own creation span again (an exporter retry): nothing to do.
            return Ok(());
        }
        // Later creation spans (upgrades, re-creations) are remembered so their retries are no-ops too.
        let first_time = self
            .tx
            .prepare_cached("INSERT OR IGNORE INTO entity_creations (entity_id, span_id) VALUES (?1, ?2)")?
            .execute((&c.entity_id, &c.span_id))?
            == 1;
        if !first_time {
            return Ok(());
        }
        self.note_instrument(&c.instrument_id);
        let e = existing;
        match e.placeholder {
            true => {
                // Upgrade in place: the creation supplies everything a placeholder lacks; an
                // error already recorded by an operation stays.
                let status = worst(parse_status(&e.status)?, c.status);
                let mut metadata = c.metadata.clone();
                for (k, v) in parse_metadata(&e.metadata)? {
                    metadata.entry(k).or_insert(v);
                }
                let mut parents = parse_string_vec(&e.parent_ids)?;
                let start = append_new_parents(&mut parents, &c.parent_ids);
                self.tx
                    .prepare_cached(
                        "UPDATE entities SET trace_id = ?2, timestamp_ns = ?3, parent_ids = ?4, metadata = ?5,
                             span_id = ?6, stage = ?7, service_name = ?8, process_name = ?9, end_ns = ?10,
                             status = ?11, placeholder = 0
                         WHERE id = ?1",
                    )?
                    .execute(rusqlite::params![
                        c.entity_id,
                        c.trace_id,
                        c.start_ns,
                        to_json(&parents)?,
                        to_json(&metadata)?,
                        c.span_id,
                        c.stage,
                        c.service_name,
                        c.process_name,
                        c.end_ns,
                        status.as_str(),
                    ])?;
                self.insert_edges(&c.entity_id, &parents[start..], start)?;
                self.out.entities_created.push(EntityCount {
                    entity_id: c.entity_id.clone(),
                    instrument_id: c.instrument_id.clone(),
                    stage: c.stage.clone(),
                    status,
                });
            }
            false => {
                // Re-creation: the first creation's trace, span, timestamp and stage stay;
                // parents are a union in arrival order; only missing metadata keys are added.
                let status = worst(parse_status(&e.status)?, c.status);
                let mut metadata: Metadata = parse_metadata(&e.metadata)?;
                for (k, v) in &c.metadata {
                    metadata.entry(k.clone()).or_insert_with(|| v.clone());
                }
                let mut parents = parse_string_vec(&e.parent_ids)?;
                let start = append_new_parents(&mut parents, &c.parent_ids);
                self.tx
                    .prepare_cached("UPDATE entities SET parent_ids = ?2, metadata = ?3, status = ?4 WHERE id = ?1")?
                    .execute(rusqlite::params![
                        c.entity_id,
                        to_json(&parents)?,
                        to_json(&metadata)?,
                        status.as_str()
                    ])?;
                self.insert_edges(&c.entity_id, &parents[start..], start)?;
                self.out.recreations += 1;
            }
        }
        self.insert_events(&c.events)
    }

    fn insert_edges(&mut self, child: &str, parents: &[String], first_position: usize) -> StoreResult<()> {
        let mut stmt = self.tx.prepare_cached(
            "INSERT OR IGNORE INTO entity_parents (child_id, parent_id, position) VALUES (?1, ?2, ?3)",
        )?;
        for (i, p) in parents.iter().enumerate() {
            stmt.execute(rusqlite::params![child, p, (first_position + i) as i64])?;
        }
        Ok(())
    }

    fn insert_events(&mut self, events: &[EntityEvent]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut stmt = self.tx.prepare_cached(
            "INSERT OR IGNORE INTO entity_events (instrument_id, entity_id, event_name, timestamp_ns, metadata,
                 created_at, trace_id, span_id, ordinal)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for e in events {
            let inserted = stmt.execute(rusqlite::params![
                e.instrument_id,
                e.entity_id,
                e.event_name,
                e.timestamp_ns,
                to_json(&e.metadata)?,
                self.now,
                e.trace_id,
                e.span_id,
                e.ordinal,
            ])?;
            if inserted == 1 {
                self.out.events_inserted.push((e.instrument_id.clone(), e.is_error()));
            }
        }
        Ok(())
    }

    fn operation(&mut self, o: &OperationRecorded) -> StoreResult<()> {
        let owner: Option<String> = self
            .tx
            .prepare_cached("SELECT instrument_id FROM entities WHERE id = ?1")?
            .query_row([&o.entity_id], |r| r.get(0))
            .optional()?;
        if owner.as_ref().is_some_and(|i| *i != o.instrument_id) {
            self.out.instrument_conflicts += 1;
            return Ok(());
        }
        let inserted = self
            .tx
            .prepare_cached(
                "INSERT OR IGNORE INTO entity_operations (entity_id, instrument_id, operation, trace_id, timestamp_ns,
                     duration_ns, metadata, created_at, span_id, status, service_name)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(rusqlite::params![
                o.entity_id,
                o.instrument_id,
                o.operation,
                o.trace_id,
                o.start_ns,
                o.duration_ns,
                to_json(&o.metadata)?,
                self.now,
                o.span_id,
                o.status.as_str(),
                o.service_name,
            ])?;
        if inserted == 0 {
            // Same operation span again: its placeholder and events were applied the first time.
            return Ok(());
        }
        self.out.operations_inserted += 1;
        self.note_instrument(&o.instrument_id);
        // Only a helix.error event marks the entity; an ERROR span status fails the operation row.
        let entity_status = if o.marks_entity_error() { Status::Error } else { Status::Ok };
        if owner.is_none() {
            self.tx
                .prepare_cached(
                    "INSERT INTO entities (id, instrument_id, trace_id, timestamp_ns, created_at, service_name,
                         process_name, status, placeholder)
                     VALUES (?1, ?2, NULL, ?3, ?4, ?5, ?6, ?7, 1)",
                )?
                .execute(rusqlite::params![
                    o.entity_id,
                    o.instrument_id,
                    o.start_ns,
                    self.now,
                    o.service_name,
                    o.process_name,
                    entity_status.as_str(),
                ])?;
            self.out.placeholders_created += 1;
        } else if entity_status == Status::Error {
            self.tx.prepare_cached("UPDATE entities SET status = 'error' WHERE id = ?1")?.execute([&o.entity_id])?;
        }
        self.insert_events(&o.events)
    }

    fn log(&mut self, l: &LogRecorded) -> StoreResult<()> {
        let attributes = to_json(&l.attributes)?;
        let inserted = self
            .tx
            .prepare_cached(
                "INSERT OR IGNORE INTO logs (timestamp_ns, severity, body, trace_id, span_id, entity_id,
                     instrument_id, process_name, service_name, source, attributes, created_at, dedup_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?
            .execute(rusqlite::params![
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
                self.now,
                log_hash(l, &attributes),
            ])?;
        if inserted == 1 {
            self.out.logs_inserted += 1;
            if let Some(i) = &l.instrument_id {
                self.note_instrument(i);
            }
        }
        Ok(())
    }
}
