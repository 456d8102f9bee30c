//! The PostgreSQL write path. One batch = one transaction with a fixed, small number of
//! set-wise statements whatever its size (never one per span):
//!
//! 1. lock the rows of every entity the batch names (`SELECT … FOR UPDATE`, in ID order) and
//!    read which of its operation spans and re-creation spans are already stored;
//! 2. apply the records in order to that in-memory picture (the same rules as the SQLite
//!    backend: placeholders, upgrades, re-creations, instrument ownership, idempotency), which
//!    yields the final rows;
//! 3. write them set-wise, rows sorted by key so concurrent writers take locks in the same
//!    order: rows the locked picture says are new (entities, edges, operations) by one binary
//!    `COPY` per table — no per-row parsing, no speculative insertion; events, logs,
//!    re-creation spans and instruments by `INSERT … SELECT FROM unnest(…) ON CONFLICT DO
//!    NOTHING`; changed stored entities by one `UPDATE … FROM unnest(…)`.
//!
//! Another replica may insert a row the picture said was missing between steps 1 and 3: our
//! COPY/INSERT then waits for that replica's commit and fails with a unique violation (or an
//! affected-row count differs from the plan), and the batch is rolled back and planned again
//! (it then sees, and locks, the row). Deadlocks and serialization failures are retried the
//! same way; only when retries are exhausted does the caller get `Unavailable` (the client
//! retries the export).

use crate::rows::{append_new_parents, log_hash, to_json, unique_in_order, worst};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use std::pin::pin;

use deadpool_postgres::{Object, Transaction};
use helix_model::{EntityCreated, EntityEvent, LogRecorded, Metadata, OperationRecorded, Status};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{Json, Type};

use super::map_pg;
use crate::{EntityCount, StoreError, StoreResult, WriteBatch, WriteOutcome, WriteRecord};

/// Attempts of one batch before giving up with `Unavailable`.
const MAX_ATTEMPTS: u32 = 8;

enum TxError {
    Pg(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for TxError {
    fn from(e: tokio_postgres::Error) -> Self {
        TxError::Pg(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Store(e)
    }
}

/// Apply `batch` atomically; see the module comment.
pub(super) async fn apply_batch(client: &mut Object, batch: &WriteBatch) -> StoreResult<WriteOutcome> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let why = match try_apply(client, batch).await {
            Ok(Some(out)) => return Ok(out),
            Ok(None) => "a concurrent writer stored some of the same rows".to_owned(),
            Err(TxError::Store(e)) => return Err(e),
            Err(TxError::Pg(e)) => {
                // 23505: a row the plan saw missing was inserted by a concurrent writer (the
                // plain INSERTs below rely on the locked picture instead of ON CONFLICT, which
                // costs a speculative insertion per row); 40P01/40001: deadlock/serialization.
                let conflict = e.code().is_some_and(|c| matches!(c.code(), "23505" | "40P01" | "40001"));
                if !conflict {
                    return Err(map_pg(e));
                }
                e.to_string()
            }
        };
        if attempt >= MAX_ATTEMPTS {
            return Err(StoreError::Unavailable(format!(
                "batch not applied after {attempt} attempts ({why}); retry later"
            )));
        }
        tracing::debug!(attempt, why, "replanning a batch");
        // A short, growing pause lets the other writer commit before we look again.
        tokio::time::sleep(Duration::from_millis(2 << attempt.min(6))).await;
    }
}

/// The state of an entity row while a batch is applied to it.
#[derive(Debug, Clone)]
struct EntityRow {
    instrument_id: String,
    trace_id: Option<String>,
    span_id: Option<String>,
    timestamp_ns: i64,
    end_ns: Option<i64>,
    stage: Option<String>,
    service_name: Option<String>,
    process_name: Option<String>,
    status: Status,
    placeholder: bool,
    parent_ids: Vec<String>,
    metadata: Metadata,
    /// The row exists in the database (else it is inserted at the end).
    stored: bool,
    /// A stored row this batch changed (it is updated at the end).
    changed: bool,
}

/// A PostgreSQL array literal of `items` (each element quoted and escaped), cast to `text[]`
/// in SQL: a two-dimensional parameter cannot carry rows of different lengths.
fn text_array_literal(items: &[String]) -> String {
    let mut s = String::with_capacity(2 + items.iter().map(|i| i.len() + 3).sum::<usize>());
    s.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        for ch in item.chars() {
            if ch == '"' || ch == '\\' {
                s.push('\\');
            }
            s.push(ch);
        }
        s.push('"');
    }
    s.push('}');
    s
}

/// What the batch will write, built by applying its records to the locked rows.
#[derive(Default)]
struct Plan<'b> {
    rows: HashMap<String, EntityRow>,
    /// Operation spans stored or planned.
    op_spans: HashSet<String>,
    /// Re-creation spans (entity, span) stored or planned.
    creations: HashSet<(String, String)>,
    new_creations: Vec<(String, String)>,
    edges: Vec<(String, String, i32)>,
    ops: Vec<&'b OperationRecorded>,
    events: Vec<&'b EntityEvent>,
    logs: Vec<&'b LogRecorded>,
    instruments: BTreeSet<String>,
    out: WriteOutcome,
}

impl<'b> Plan<'b> {
    fn note_instrument(&mut self, id: &str) {
        // "" is the wire fallback for "no instrument": not worth listing.
        if !id.is_empty() && !self.instruments.contains(id) {
            self.instruments.insert(id.to_owned());
        }
    }

    fn add_edges(&mut self, child: &str, parents: &[String], first_position: usize) {
        for (i, p) in parents.iter().enumerate() {
            // Positions are indexes into parent_ids, far below i32::MAX for any real entity.
            let pos = i32::try_from(first_position + i).unwrap_or(i32::MAX);
            self.edges.push((child.to_owned(), p.clone(), pos));
        }
    }

    fn created(&mut self, c: &'b EntityCreated) {
        let Some(row) = self.rows.get_mut(&c.entity_id) else {
            // A brand-new entity.
            let parents = unique_in_order(&c.parent_ids);
            self.add_edges(&c.entity_id, &parents, 0);
            self.rows.insert(
                c.entity_id.clone(),
                EntityRow {
                    instrument_id: c.instrument_id.clone(),
                    trace_id: Some(c.trace_id.clone()),
                    span_id: Some(c.span_id.clone()),
                    timestamp_ns: c.start_ns,
                    end_ns: Some(c.end_ns),
                    stage: Some(c.stage.clone()),
                    service_name: c.service_name.clone(),
                    process_name: c.process_name.clone(),
                    status: c.status,
                    placeholder: false,
                    parent_ids: parents,
                    metadata: c.metadata.clone(),
                    stored: false,
                    changed: false,
                },
            );
            self.note_instrument(&c.instrument_id);
            self.out.entities_created.push(EntityCount {
                entity_id: c.entity_id.clone(),
                instrument_id: c.instrument_id.clone(),
                stage: c.stage.clone(),
                status: c.status,
            });
            self.events.extend(&c.events);
            return;
        };
        if row.instrument_id != c.instrument_id {
            // Ownership: not applied, and not remembered as an applied creation.
            self.out.instrument_conflicts += 1;
            return;
        }
        if row.span_id.as_deref() == Some(c.span_id.as_str()) {
            // The entity's own creation span again (an exporter retry).
            return;
        }
        let key = (c.entity_id.clone(), c.span_id.clone());
        if self.creations.contains(&key) {
            // A later creation span already applied: its retry is a no-op too.
            return;
        }
        self.creations.insert(key.clone());
        self.new_creations.push(key);
        let start = append_new_parents(&mut row.parent_ids, &c.parent_ids);
        let added: Vec<String> = row.parent_ids[start..].to_vec();
        row.status = worst(row.status, c.status);
        row.changed = row.stored;
        let upgraded = row.placeholder;
        if upgraded {
            // Upgrade in place: the creation supplies everything a placeholder lacks; an error
            // already recorded by an operation stays, and so do metadata keys it had.
            let mut metadata = c.metadata.clone();
            for (k, v) in std::mem::take(&mut row.metadata) {
                metadata.entry(k).or_insert(v);
            }
            row.metadata = metadata;
            row.trace_id = Some(c.trace_id.clone());
            row.span_id = Some(c.span_id.clone());
            row.timestamp_ns = c.start_ns;
            row.end_ns = Some(c.end_ns);
            row.stage = Some(c.stage.clone());
            row.service_name = c.service_name.clone();
            row.process_name = c.process_name.clone();
            row.placeholder = false;
        } else {
            // Re-creation: the first creation's trace, span, timestamp and stage stay; only
            // missing metadata keys are added.
            for (k, v) in &c.metadata {
                row.metadata.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let status = row.status;
        self.add_edges(&c.entity_id, &added, start);
        self.note_instrument(&c.instrument_id);
        if upgraded {
            self.out.entities_created.push(EntityCount {
                entity_id: c.entity_id.clone(),
                instrument_id: c.instrument_id.clone(),
                stage: c.stage.clone(),
                status,
            });
        } else {
            self.out.recreations += 1;
        }
        self.events.extend(&c.events);
    }

    fn operation(&mut self, o: &'b OperationRecorded) {
        let owner = self.rows.get(&o.entity_id).map(|r| r.instrument_id.as_str());
        if owner.is_some_and(|i| i != o.instrument_id) {
            self.out.instrument_conflicts += 1;
            return;
        }
        if !self.op_spans.insert(o.span_id.clone()) {
            // Same operation span again: its placeholder and events were applied the first time.
            return;
        }
        self.ops.push(o);
        self.out.operations_inserted += 1;
        self.note_instrument(&o.instrument_id);
        // Only a helix.error event marks the entity; an ERROR span status fails the operation row.
        let entity_status = if o.marks_entity_error() { Status::Error } else { Status::Ok };
        match self.rows.get_mut(&o.entity_id) {
            None => {
                self.rows.insert(
                    o.entity_id.clone(),
                    EntityRow {
                        instrument_id: o.instrument_id.clone(),
                        trace_id: None,
                        span_id: None,
                        timestamp_ns: o.start_ns,
                        end_ns: None,
                        stage: None,
                        service_name: o.service_name.clone(),
                        process_name: o.process_name.clone(),
                        status: entity_status,
                        placeholder: true,
                        parent_ids: Vec::new(),
                        metadata: Metadata::new(),
                        stored: false,
                        changed: false,
                    },
                );
                self.out.placeholders_created += 1;
            }
            Some(row) => {
                if entity_status == Status::Error && row.status != Status::Error {
                    row.status = Status::Error;
                    row.changed = row.stored;
                }
            }
        }
        self.events.extend(&o.events);
    }

    fn log(&mut self, l: &'b LogRecorded) {
        self.logs.push(l);
    }
}

/// Columns of `entities` read into an `EntityRow`, in `stored_row` order.
const LOCK_ENTITIES: &str = "SELECT id, instrument_id, trace_id, span_id, timestamp_ns, end_ns, stage, service_name,
        process_name, status, placeholder, parent_ids, metadata::text
 FROM entities WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE";

fn stored_row(r: &tokio_postgres::Row) -> StoreResult<(String, EntityRow)> {
    let status: String = r.get(9);
    let metadata: String = r.get(12);
    Ok((
        r.get(0),
        EntityRow {
            instrument_id: r.get(1),
            trace_id: r.get(2),
            span_id: r.get(3),
            timestamp_ns: r.get(4),
            end_ns: r.get(5),
            stage: r.get(6),
            service_name: r.get(7),
            process_name: r.get(8),
            status: Status::parse(&status)
                .ok_or_else(|| StoreError::Internal(format!("corrupt status {status:?} in database")))?,
            placeholder: r.get(10),
            parent_ids: r.get(11),
            metadata: serde_json::from_str(&metadata)
                .map_err(|e| StoreError::Internal(format!("corrupt metadata in database: {e}")))?,
            stored: true,
            changed: false,
        },
    ))
}

/// One attempt; `Ok(None)` when a concurrent writer made the plan stale (rolled back).
async fn try_apply(client: &mut Object, batch: &WriteBatch) -> Result<Option<WriteOutcome>, TxError> {
    let tx = client.transaction().await?;

    // ---- 1. what is stored already --------------------------------------------------------
    let mut entity_ids: Vec<&str> = Vec::new();
    let mut op_spans: Vec<&str> = Vec::new();
    let mut recreated: Vec<&str> = Vec::new();
    for r in &batch.records {
        match r {
            WriteRecord::Created(c) => entity_ids.push(&c.entity_id),
            WriteRecord::Operation(o) => {
                entity_ids.push(&o.entity_id);
                op_spans.push(&o.span_id);
            }
            WriteRecord::Log(_) => {}
        }
    }
    entity_ids.sort_unstable();
    entity_ids.dedup();
    let mut plan = Plan::default();
    if !entity_ids.is_empty() {
        let stmt = tx.prepare_cached(LOCK_ENTITIES).await?;
        for r in tx.query(&stmt, &[&entity_ids]).await? {
            let (id, row) = stored_row(&r)?;
            plan.rows.insert(id, row);
        }
    }
    if !op_spans.is_empty() {
        let stmt = tx.prepare_cached("SELECT span_id FROM entity_operations WHERE span_id = ANY($1::text[])").await?;
        for r in tx.query(&stmt, &[&op_spans]).await? {
            plan.op_spans.insert(r.get(0));
        }
    }
    for r in &batch.records {
        if let WriteRecord::Created(c) = r {
            if plan.rows.contains_key(&c.entity_id) {
                recreated.push(&c.entity_id);
            }
        }
    }
    if !recreated.is_empty() {
        recreated.sort_unstable();
        recreated.dedup();
        let stmt = tx
            .prepare_cached("SELECT entity_id, span_id FROM entity_creations WHERE entity_id = ANY($1::text[])")
            .await?;
        for r in tx.query(&stmt, &[&recreated]).await? {
            plan.creations.insert((r.get(0), r.get(1)));
        }
    }

    // ---- 2. apply the records in order ---------------------------------------------------------
    for r in &batch.records {
        match r {
            WriteRecord::Created(c) => plan.created(c),
            WriteRecord::Operation(o) => plan.operation(o),
            WriteRecord::Log(l) => plan.log(l),
        }
    }

    // ---- 3. write ----------------------------------------------------------------------------
    write_entities(&tx, &plan).await?;
    if !write_creations(&tx, &plan).await? {
        return Ok(None);
    }
    write_edges(&tx, &mut plan.edges).await?;
    if !write_operations(&tx, &mut plan.ops).await? {
        return Ok(None);
    }
    let inserted_events = write_events(&tx, &plan.events).await?;
    // Events are counted in record order, for the metrics; duplicates (retries) count nothing.
    let mut seen = HashSet::new();
    for e in &plan.events {
        if inserted_events.contains(&(e.span_id.as_str(), e.ordinal)) && seen.insert((e.span_id.as_str(), e.ordinal)) {
            plan.out.events_inserted.push((e.instrument_id.clone(), e.is_error()));
        }
    }
    let log_instruments = write_logs(&tx, &plan.logs).await?;
    plan.out.logs_inserted = log_instruments.len() as u64;
    for i in log_instruments.into_iter().flatten() {
        plan.note_instrument(&i);
    }
    if !plan.instruments.is_empty() {
        let ids: Vec<&String> = plan.instruments.iter().collect();
        let stmt = tx
            .prepare_cached(
                "INSERT INTO instruments (instrument_id) SELECT * FROM unnest($1::text[])
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        tx.execute(&stmt, &[&ids]).await?;
    }
    tx.commit().await?;
    Ok(Some(plan.out))
}

/// Columns of one `entities` write, as parallel arrays.
#[derive(Default)]
struct EntityColumns<'a> {
    id: Vec<&'a str>,
    instrument_id: Vec<&'a str>,
    trace_id: Vec<Option<&'a str>>,
    timestamp_ns: Vec<i64>,
    parent_ids: Vec<String>,
    metadata: Vec<String>,
    span_id: Vec<Option<&'a str>>,
    stage: Vec<Option<&'a str>>,
    service_name: Vec<Option<&'a str>>,
    process_name: Vec<Option<&'a str>>,
    end_ns: Vec<Option<i64>>,
    status: Vec<&'static str>,
    placeholder: Vec<bool>,
}

impl<'a> EntityColumns<'a> {
    fn push(&mut self, id: &'a str, r: &'a EntityRow) -> StoreResult<()> {
        self.id.push(id);
        self.instrument_id.push(&r.instrument_id);
        self.trace_id.push(r.trace_id.as_deref());
        self.timestamp_ns.push(r.timestamp_ns);
        self.parent_ids.push(text_array_literal(&r.parent_ids));
        self.metadata.push(to_json(&r.metadata)?);
        self.span_id.push(r.span_id.as_deref());
        self.stage.push(r.stage.as_deref());
        self.service_name.push(r.service_name.as_deref());
        self.process_name.push(r.process_name.as_deref());
        self.end_ns.push(r.end_ns);
        self.status.push(r.status.as_str());
        self.placeholder.push(r.placeholder);
        Ok(())
    }

    fn len(&self) -> usize {
        self.id.len()
    }
}

const UNNEST_ENTITIES: &str = "unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::text[], $11::int8[], $12::text[], $13::bool[])
     AS u(id, instrument_id, trace_id, timestamp_ns, parent_ids, metadata, span_id, stage,
          service_name, process_name, end_ns, status, placeholder)";

/// Binary COPY of rows the locked picture says are new: the fastest way in (no per-row
/// parsing, no speculative insertion). A concurrent writer that inserted one of them first
/// makes the COPY fail with a unique violation, and the batch is planned again.
async fn copy_new_entities(tx: &Transaction<'_>, rows: &[(&String, &EntityRow)]) -> Result<(), TxError> {
    let sink = tx
        .copy_in(
            "COPY entities (id, instrument_id, trace_id, timestamp_ns, parent_ids, metadata, span_id, stage,
                 service_name, process_name, end_ns, status, placeholder) FROM STDIN BINARY",
        )
        .await?;
    let types = [
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::TEXT_ARRAY,
        Type::JSONB,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::TEXT,
        Type::BOOL,
    ];
    let mut w = pin!(BinaryCopyInWriter::new(sink, &types));
    for (id, r) in rows {
        w.as_mut()
            .write(&[
                id,
                &r.instrument_id,
                &r.trace_id,
                &r.timestamp_ns,
                &r.parent_ids,
                &Json(&r.metadata),
                &r.span_id,
                &r.stage,
                &r.service_name,
                &r.process_name,
                &r.end_ns,
                &r.status.as_str(),
                &r.placeholder,
            ])
            .await?;
    }
    w.finish().await?;
    Ok(())
}

/// Insert new rows and update changed stored ones.
async fn write_entities(tx: &Transaction<'_>, plan: &Plan<'_>) -> Result<(), TxError> {
    let mut sorted: Vec<(&String, &EntityRow)> = plan.rows.iter().filter(|(_, r)| !r.stored || r.changed).collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut new_rows = Vec::new();
    let mut changed = EntityColumns::default();
    for (id, r) in sorted {
        if r.stored {
            changed.push(id, r)?;
        } else {
            new_rows.push((id, r));
        }
    }
    if !new_rows.is_empty() {
        copy_new_entities(tx, &new_rows).await?;
    }
    if changed.len() > 0 {
        let sql = format!(
            "UPDATE entities AS e SET trace_id = u.trace_id, timestamp_ns = u.timestamp_ns,
                 parent_ids = u.parent_ids::text[], metadata = u.metadata::jsonb, span_id = u.span_id,
                 stage = u.stage, service_name = u.service_name, process_name = u.process_name,
                 end_ns = u.end_ns, status = u.status, placeholder = u.placeholder
             FROM {UNNEST_ENTITIES}
             WHERE e.id = u.id"
        );
        let stmt = tx.prepare_cached(&sql).await?;
        tx.execute(
            &stmt,
            &[
                &changed.id,
                &changed.instrument_id,
                &changed.trace_id,
                &changed.timestamp_ns,
                &changed.parent_ids,
                &changed.metadata,
                &changed.span_id,
                &changed.stage,
                &changed.service_name,
                &changed.process_name,
                &changed.end_ns,
                &changed.status,
                &changed.placeholder,
            ],
        )
        .await?;
    }
    Ok(())
}

async fn write_creations(tx: &Transaction<'_>, plan: &Plan<'_>) -> Result<bool, TxError> {
    if plan.new_creations.is_empty() {
        return Ok(true);
    }
    let mut pairs: Vec<&(String, String)> = plan.new_creations.iter().collect();
    pairs.sort_unstable();
    let ids: Vec<&str> = pairs.iter().map(|p| p.0.as_str()).collect();
    let spans: Vec<&str> = pairs.iter().map(|p| p.1.as_str()).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO entity_creations (entity_id, span_id)
             SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
        )
        .await?;
    let n = tx.execute(&stmt, &[&ids, &spans]).await?;
    Ok(n == pairs.len() as u64)
}

async fn write_edges(tx: &Transaction<'_>, edges: &mut [(String, String, i32)]) -> Result<(), TxError> {
    if edges.is_empty() {
        return Ok(());
    }
    edges.sort_unstable();
    // New edges only (a new child, or parents appended to parent_ids): COPY, like entities.
    let sink = tx.copy_in("COPY entity_parents (child_id, parent_id, position) FROM STDIN BINARY").await?;
    let mut w = pin!(BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::TEXT, Type::INT4]));
    let mut last: Option<(&str, &str)> = None;
    for (child, parent, pos) in edges.iter() {
        if last == Some((child.as_str(), parent.as_str())) {
            continue;
        }
        last = Some((child.as_str(), parent.as_str()));
        w.as_mut().write(&[child, parent, pos]).await?;
    }
    w.finish().await?;
    Ok(())
}

/// `false` when a concurrent writer inserted one of the operations first.
async fn write_operations(tx: &Transaction<'_>, ops: &mut [&OperationRecorded]) -> Result<bool, TxError> {
    if ops.is_empty() {
        return Ok(true);
    }
    ops.sort_unstable_by(|a, b| a.span_id.cmp(&b.span_id));
    // Spans the locked picture says are new: COPY; a concurrent writer's insert of one of
    // them fails it with a unique violation and the batch is planned again.
    let sink = tx
        .copy_in(
            "COPY entity_operations (entity_id, instrument_id, operation, trace_id, timestamp_ns,
                 duration_ns, metadata, span_id, status, service_name) FROM STDIN BINARY",
        )
        .await?;
    let types = [
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::INT8,
        Type::JSONB,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
    ];
    let mut w = pin!(BinaryCopyInWriter::new(sink, &types));
    for o in ops.iter() {
        w.as_mut()
            .write(&[
                &o.entity_id,
                &o.instrument_id,
                &o.operation,
                &o.trace_id,
                &o.start_ns,
                &o.duration_ns,
                &Json(&o.metadata),
                &o.span_id,
                &o.status.as_str(),
                &o.service_name,
            ])
            .await?;
    }
    let n = w.finish().await?;
    Ok(n == ops.len() as u64)
}

/// Insert events; returns the (span, ordinal) keys actually inserted.
async fn write_events<'e>(
    tx: &Transaction<'_>,
    events: &[&'e EntityEvent],
) -> Result<HashSet<(&'e str, u32)>, TxError> {
    if events.is_empty() {
        return Ok(HashSet::new());
    }
    let mut sorted: Vec<&EntityEvent> = events.to_vec();
    sorted.sort_by(|a, b| (&a.span_id, a.ordinal).cmp(&(&b.span_id, b.ordinal)));
    sorted.dedup_by(|a, b| a.span_id == b.span_id && a.ordinal == b.ordinal);
    let mut instrument_id = Vec::with_capacity(sorted.len());
    let mut entity_id = Vec::with_capacity(sorted.len());
    let mut name = Vec::with_capacity(sorted.len());
    let mut ts = Vec::with_capacity(sorted.len());
    let mut metadata = Vec::with_capacity(sorted.len());
    let mut trace_id = Vec::with_capacity(sorted.len());
    let mut span_id = Vec::with_capacity(sorted.len());
    let mut ordinal = Vec::with_capacity(sorted.len());
    for e in &sorted {
        instrument_id.push(e.instrument_id.as_str());
        entity_id.push(e.entity_id.as_str());
        name.push(e.event_name.as_str());
        ts.push(e.timestamp_ns);
        metadata.push(to_json(&e.metadata)?);
        trace_id.push(e.trace_id.as_str());
        span_id.push(e.span_id.as_str());
        // Ordinals are small (events of one span); the column is INTEGER.
        ordinal.push(i32::try_from(e.ordinal).unwrap_or(i32::MAX));
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO entity_events (instrument_id, entity_id, event_name, timestamp_ns, metadata,
                 trace_id, span_id, ordinal)
             SELECT instrument_id, entity_id, event_name, timestamp_ns, metadata::jsonb, trace_id,
                 span_id, ordinal
             FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[],
                         $7::text[], $8::int4[])
                  AS u(instrument_id, entity_id, event_name, timestamp_ns, metadata, trace_id,
                       span_id, ordinal)
             ON CONFLICT DO NOTHING
             RETURNING span_id, ordinal",
        )
        .await?;
    let rows =
        tx.query(&stmt, &[&instrument_id, &entity_id, &name, &ts, &metadata, &trace_id, &span_id, &ordinal]).await?;
    // Map the returned keys back to borrowed ones so the caller can match without copies.
    let by_key: HashMap<(&str, i32), &'e EntityEvent> =
        sorted.iter().map(|e| ((e.span_id.as_str(), i32::try_from(e.ordinal).unwrap_or(i32::MAX)), *e)).collect();
    let mut out = HashSet::with_capacity(rows.len());
    for r in rows {
        let span: &str = r.get(0);
        let ord: i32 = r.get(1);
        if let Some(e) = by_key.get(&(span, ord)) {
            out.insert((e.span_id.as_str(), e.ordinal));
        }
    }
    Ok(out)
}

/// Insert logs; returns the instrument of each inserted record.
async fn write_logs(tx: &Transaction<'_>, logs: &[&LogRecorded]) -> Result<Vec<Option<String>>, TxError> {
    if logs.is_empty() {
        return Ok(Vec::new());
    }
    let n = logs.len();
    let mut ts = Vec::with_capacity(n);
    let mut severity = Vec::with_capacity(n);
    let mut body = Vec::with_capacity(n);
    let mut trace_id = Vec::with_capacity(n);
    let mut span_id = Vec::with_capacity(n);
    let mut entity_id = Vec::with_capacity(n);
    let mut instrument_id = Vec::with_capacity(n);
    let mut process = Vec::with_capacity(n);
    let mut service = Vec::with_capacity(n);
    let mut source = Vec::with_capacity(n);
    let mut attributes = Vec::with_capacity(n);
    let mut hash = Vec::with_capacity(n);
    for l in logs {
        let attrs = to_json(&l.attributes)?;
        hash.push(log_hash(l, &attrs));
        ts.push(l.timestamp_ns);
        severity.push(l.severity.as_str());
        body.push(l.body.as_str());
        trace_id.push(l.trace_id.as_deref());
        span_id.push(l.span_id.as_deref());
        entity_id.push(l.entity_id.as_deref());
        instrument_id.push(l.instrument_id.as_deref());
        process.push(l.process_name.as_deref());
        service.push(l.service_name.as_deref());
        source.push(l.source.as_deref());
        attributes.push(attrs);
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO logs (timestamp_ns, severity, body, trace_id, span_id, entity_id, instrument_id,
                 process_name, service_name, source, attributes, dedup_hash)
             SELECT timestamp_ns, severity, body, trace_id, span_id, entity_id, instrument_id,
                 process_name, service_name, source, attributes::jsonb, dedup_hash
             FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::int8[])
                  AS u(timestamp_ns, severity, body, trace_id, span_id, entity_id, instrument_id,
                       process_name, service_name, source, attributes, dedup_hash)
             ON CONFLICT DO NOTHING
             RETURNING instrument_id",
        )
        .await?;
    let rows = tx
        .query(
            &stmt,
            &[
                &ts,
                &severity,
                &body,
                &trace_id,
                &span_id,
                &entity_id,
                &instrument_id,
                &process,
                &service,
                &source,
                &attributes,
                &hash,
            ],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::text_array_literal;

    #[test]
    fn array_literals_escape_quotes_and_backslashes() {
        assert_eq!(text_array_literal(&[]), "{}");
        assert_eq!(
            text_array_literal(&["a".into(), "b\"c".into(), "d\\e".into(), "{x,y}".into(), "NULL".into()]),
            r#"{"a","b\"c","d\\e","{x,y}","NULL"}"#
        );
    }
}
