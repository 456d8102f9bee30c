//! The PostgreSQL write path. One batch = one transaction with a fixed, small number of
//! set-wise statements whatever its size (never one per span):
//!
//! 1. lock the rows of every entity the batch names (`SELECT … FOR UPDATE`, in ID order) and
//!    read which of its operation spans and re-creation spans are already stored;
//! 2. hand that picture to the shared write plan (`crate::plan`: placeholders, upgrades,
//!    re-creations, instrument ownership, idempotency), which yields the rows to write;
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

use std::pin::pin;
use std::time::Duration;

use deadpool_postgres::{Object, Transaction};
use std::collections::HashSet;

use helix_model::span::stored;

use helix_model::{EntityEvent, LogRecorded, OperationRecorded};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{Json, Type};

use super::map_pg;
use super::read::{entity_columns, entity_from_row};
use crate::plan::{self, NewEdge, Stored, Touched, TraceRow, WritePlan};
use crate::rows::{log_hash, to_json};
use crate::{DbCause, Entity, StoreError, StoreResult, WriteBatch, WriteOutcome};

/// Attempts of one batch before giving up with `Unavailable`.
const MAX_ATTEMPTS: u32 = 8;

pub(super) enum TxError {
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
            return Err(StoreError::Unavailable {
                op: "write",
                cause: DbCause::Postgres {
                    sqlstate: None,
                    message: format!("batch not applied after {attempt} attempts ({why})"),
                },
            });
        }
        tracing::debug!(attempt, why, "replanning a batch");
        // A short, growing pause lets the other writer commit before we look again.
        tokio::time::sleep(Duration::from_millis(2 << attempt.min(6))).await;
    }
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

/// The stored rows the batch touches; entity rows are locked (in ID order) until the commit.
async fn load(tx: &Transaction<'_>, batch: &WriteBatch) -> Result<Stored, TxError> {
    let touched = Touched::of(batch);
    let mut stored = Stored::default();
    if !touched.entity_ids.is_empty() {
        let sql =
            format!("SELECT {} FROM entities WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE", entity_columns());
        let stmt = tx.prepare_cached(&sql).await?;
        for r in tx.query(&stmt, &[&touched.entity_ids]).await? {
            let e = entity_from_row(&r)?;
            stored.entities.insert(e.id.clone(), e);
        }
    }
    if !touched.operation_spans.is_empty() {
        let stmt = tx.prepare_cached("SELECT span_id FROM entity_operations WHERE span_id = ANY($1::text[])").await?;
        for r in tx.query(&stmt, &[&touched.operation_spans]).await? {
            stored.operation_spans.insert(r.get(0));
        }
    }
    let recreated = Touched::recreated(batch, &stored.entities);
    if !recreated.is_empty() {
        let stmt = tx
            .prepare_cached("SELECT entity_id, span_id FROM entity_creations WHERE entity_id = ANY($1::text[])")
            .await?;
        for r in tx.query(&stmt, &[&recreated]).await? {
            stored.creations.insert((r.get(0), r.get(1)));
        }
    }
    Ok(stored)
}

/// One attempt; `Ok(None)` when a concurrent writer made the plan stale (rolled back).
async fn try_apply(client: &mut Object, batch: &WriteBatch) -> Result<Option<WriteOutcome>, TxError> {
    let tx = client.transaction().await?;
    // An acknowledged batch must not fail for taking long (lock waits behind another replica):
    // the read budget of the sessions (statement_timeout) does not apply to writes.
    tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    let stored = load(&tx, batch).await?;
    let mut plan = plan::plan(batch, stored);
    if let Some(conflict) = plan.refused.take() {
        // Dropping the transaction rolls it back (and releases the row locks).
        return Err(TxError::Store(StoreError::InstrumentConflict(conflict)));
    }
    // Spans first: nothing else depends on them, and a later failure must take them back too.
    match write_spans(&tx, &plan).await? {
        Some(n) => plan.outcome.spans_inserted = n,
        None => return Ok(None),
    }
    write_entities(&tx, &plan).await?;
    if !write_creations(&tx, &plan).await? {
        return Ok(None);
    }
    write_edges(&tx, &plan.new_edges).await?;
    if !write_operations(&tx, &plan.new_operations).await? {
        return Ok(None);
    }
    let inserted = write_events(&tx, &plan.new_events, !plan.outbox.is_empty()).await?;
    // Only events inserted now notify (one stored before, e.g. under a reused span ID, did then).
    let mut outbox = std::mem::take(&mut plan.outbox);
    outbox
        .retain(|o| inserted.contains(&(o.event.span_id.clone(), i32::try_from(o.event.ordinal).unwrap_or(i32::MAX))));
    let (recorded, coalesced) = super::notify::write_outbox(&tx, &outbox, batch.notify.outbox_max()).await?;
    plan.outcome.notifications_recorded = recorded;
    plan.outcome.notifications_coalesced = coalesced;
    plan.outcome.logs_inserted = write_logs(&tx, &plan.logs).await?;
    if !plan.instruments.is_empty() {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO instruments (instrument_id) SELECT * FROM unnest($1::text[])
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        tx.execute(&stmt, &[&plan.instruments]).await?;
    }
    tx.commit().await?;
    Ok(Some(plan.outcome))
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
    fn push(&mut self, r: &'a Entity) -> StoreResult<()> {
        self.id.push(&r.id);
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
async fn copy_new_entities(tx: &Transaction<'_>, rows: &[Entity]) -> Result<(), TxError> {
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
    for r in rows {
        w.as_mut()
            .write(&[
                &r.id,
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
async fn write_entities(tx: &Transaction<'_>, plan: &WritePlan<'_>) -> Result<(), TxError> {
    if !plan.new_entities.is_empty() {
        copy_new_entities(tx, &plan.new_entities).await?;
    }
    let mut changed = EntityColumns::default();
    for r in &plan.changed_entities {
        changed.push(r)?;
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

async fn write_creations(tx: &Transaction<'_>, plan: &WritePlan<'_>) -> Result<bool, TxError> {
    if plan.new_creations.is_empty() {
        return Ok(true);
    }
    let ids: Vec<&str> = plan.new_creations.iter().map(|p| p.0.as_str()).collect();
    let spans: Vec<&str> = plan.new_creations.iter().map(|p| p.1.as_str()).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO entity_creations (entity_id, span_id)
             SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
        )
        .await?;
    let n = tx.execute(&stmt, &[&ids, &spans]).await?;
    Ok(n == plan.new_creations.len() as u64)
}

/// New edges only (a new child, or parents appended to parent_ids): COPY, like entities.
async fn write_edges(tx: &Transaction<'_>, edges: &[NewEdge]) -> Result<(), TxError> {
    if edges.is_empty() {
        return Ok(());
    }
    let sink = tx.copy_in("COPY entity_parents (child_id, parent_id, position) FROM STDIN BINARY").await?;
    let mut w = pin!(BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::TEXT, Type::INT4]));
    for e in edges {
        w.as_mut().write(&[&e.child, &e.parent, &e.position]).await?;
    }
    w.finish().await?;
    Ok(())
}

/// `false` when a concurrent writer inserted one of the operations first.
async fn write_operations(tx: &Transaction<'_>, ops: &[&OperationRecorded]) -> Result<bool, TxError> {
    if ops.is_empty() {
        return Ok(true);
    }
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
                &o.name,
                &o.trace_id,
                &o.start_ns,
                &o.duration_ns(),
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

/// Insert the events of the spans applied now. `ON CONFLICT DO NOTHING`: the key is made of
/// client-chosen span IDs, which a buggy client may reuse across spans. With `inserted`, the
/// (span, ordinal) of the rows inserted now (for the outbox: an event stored before is not
/// notified again).
async fn write_events(
    tx: &Transaction<'_>,
    sorted: &[&EntityEvent],
    inserted: bool,
) -> Result<HashSet<(String, i32)>, TxError> {
    if sorted.is_empty() {
        return Ok(HashSet::new());
    }
    let mut instrument_id = Vec::with_capacity(sorted.len());
    let mut entity_id = Vec::with_capacity(sorted.len());
    let mut name = Vec::with_capacity(sorted.len());
    let mut ts = Vec::with_capacity(sorted.len());
    let mut metadata = Vec::with_capacity(sorted.len());
    let mut trace_id = Vec::with_capacity(sorted.len());
    let mut span_id = Vec::with_capacity(sorted.len());
    let mut ordinal = Vec::with_capacity(sorted.len());
    for e in sorted {
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
    const INSERT: &str = "INSERT INTO entity_events (instrument_id, entity_id, event_name, timestamp_ns, metadata,
             trace_id, span_id, ordinal)
         SELECT instrument_id, entity_id, event_name, timestamp_ns, metadata::jsonb, trace_id,
             span_id, ordinal
         FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[],
                     $7::text[], $8::int4[])
              AS u(instrument_id, entity_id, event_name, timestamp_ns, metadata, trace_id,
                   span_id, ordinal)
         ON CONFLICT DO NOTHING";
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] =
        [&instrument_id, &entity_id, &name, &ts, &metadata, &trace_id, &span_id, &ordinal];
    if !inserted {
        tx.execute(&tx.prepare_cached(INSERT).await?, &params).await?;
        return Ok(HashSet::new());
    }
    let stmt = tx.prepare_cached(&format!("{INSERT} RETURNING span_id, ordinal")).await?;
    let rows = tx.query(&stmt, &params).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Insert logs; returns how many were new.
async fn write_logs(tx: &Transaction<'_>, logs: &[&LogRecorded]) -> Result<u64, TxError> {
    if logs.is_empty() {
        return Ok(0);
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
    let mut severity_number = Vec::with_capacity(n);
    let mut observed = Vec::with_capacity(n);
    let mut resource: Vec<String> = Vec::with_capacity(n);
    let mut last_resource: Option<&helix_model::Metadata> = None;
    for l in logs {
        let attrs = to_json(&l.attributes)?;
        // A process sends one resource for many records: rendered once per run of them.
        match (last_resource, resource.last()) {
            (Some(r), Some(json)) if r == &l.resource => resource.push(json.clone()),
            _ => resource.push(to_json(&l.resource)?),
        }
        last_resource = Some(&l.resource);
        severity_number.push(l.severity_number);
        observed.push(l.observed_ns);
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
                 process_name, service_name, source, attributes, dedup_hash, severity_number, observed_ns, resource)
             SELECT timestamp_ns, severity, body, trace_id, span_id, entity_id, instrument_id,
                 process_name, service_name, source, attributes::jsonb, dedup_hash, severity_number, observed_ns,
                 resource::jsonb
             FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::int8[],
                         $13::int4[], $14::int8[], $15::text[])
                  AS u(timestamp_ns, severity, body, trace_id, span_id, entity_id, instrument_id,
                       process_name, service_name, source, attributes, dedup_hash, severity_number,
                       observed_ns, resource)
             ON CONFLICT DO NOTHING",
        )
        .await?;
    let n = tx
        .execute(
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
                &severity_number,
                &observed,
                &resource,
            ],
        )
        .await?;
    Ok(n)
}

/// Spans (idempotent by their key), their sources, and the summaries and search terms of the
/// traces that got new spans: a fixed number of statements whatever the batch size. Returns
/// how many spans were new (`Some` always: the summaries are upserted, so a concurrent
/// writer of the same trace waits for us instead of making the plan stale).
async fn write_spans(tx: &Transaction<'_>, plan: &WritePlan<'_>) -> Result<Option<u64>, TxError> {
    if plan.spans.is_empty() {
        return Ok(Some(0));
    }
    let sources = &plan.span_sources;
    let ids: Vec<i64> = sources.iter().map(|r| r.0).collect();
    let service: Vec<Option<&str>> = sources.iter().map(|r| r.1.service_name.as_deref()).collect();
    let process: Vec<Option<&str>> = sources.iter().map(|r| r.1.process_name.as_deref()).collect();
    let instrument: Vec<Option<&str>> = sources.iter().map(|r| r.1.instrument_id.as_deref()).collect();
    let scope_name: Vec<&str> = sources.iter().map(|r| r.1.scope_name.as_str()).collect();
    let scope_version: Vec<&str> = sources.iter().map(|r| r.1.scope_version.as_str()).collect();
    let resource: Vec<&[u8]> = sources.iter().map(|r| r.1.resource_proto.as_slice()).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO span_sources (id, service_name, process_name, instrument_id, scope_name, scope_version,
                 resource)
             SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                 $7::bytea[])
             ON CONFLICT DO NOTHING",
        )
        .await?;
    tx.execute(&stmt, &[&ids, &service, &process, &instrument, &scope_name, &scope_version, &resource]).await?;

    let n = plan.spans.len();
    let bad_key = || TxError::Store(StoreError::bug("a span key is not hex of the OTLP length"));
    // Keys and remainders of every span in two buffers, sliced below: no allocation per span.
    let mut keys: Vec<SpanKey> = Vec::with_capacity(n);
    let mut arena: Vec<u8> = Vec::with_capacity(n * 256);
    let mut ends = Vec::with_capacity(n);
    let mut form = Vec::with_capacity(n);
    for s in &plan.spans {
        let parent = match &s.parent_span_id {
            Some(p) => Some(stored::id_array(p).ok_or_else(bad_key)?),
            None => None,
        };
        keys.push((
            stored::id_array(&s.trace_id).ok_or_else(bad_key)?,
            stored::id_array(&s.span_id).ok_or_else(bad_key)?,
            parent,
        ));
        // Form bits fit 32 bits (role, flags, two 8-bit attribute positions).
        form.push(stored::split_into(s, &mut arena) as i32);
        ends.push(arena.len());
    }
    let rest: Vec<&[u8]> = ends.iter().scan(0, |at, &end| Some(&arena[std::mem::replace(at, end)..end])).collect();
    let trace_id: Vec<&[u8]> = keys.iter().map(|k| &k.0[..]).collect();
    let span_id: Vec<&[u8]> = keys.iter().map(|k| &k.1[..]).collect();
    let parent: Vec<Option<&[u8]>> = keys.iter().map(|k| k.2.as_ref().map(|p| &p[..])).collect();
    let start: Vec<i64> = plan.spans.iter().map(|s| s.start_ns).collect();
    let duration: Vec<i64> = plan.spans.iter().map(|s| s.duration_ns()).collect();
    // OTLP kinds and status codes are small enums; anything else is clamped into the column.
    let kind: Vec<i16> = plan.spans.iter().map(|s| s.kind.clamp(0, i16::MAX.into()) as i16).collect();
    let code: Vec<i16> = plan.spans.iter().map(|s| s.status_code.clamp(0, i16::MAX.into()) as i16).collect();
    let name: Vec<&str> = plan.spans.iter().map(|s| s.name.as_str()).collect();
    let message: Vec<&str> = plan.spans.iter().map(|s| s.status_message.as_str()).collect();
    let entity: Vec<Option<&str>> = plan.spans.iter().map(|s| s.entity_id.as_deref()).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO spans (trace_id, span_id, start_ns, duration_ns, source_id, kind, status_code, form,
                 parent_span_id, name, status_message, entity_id, span_rest)
             SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::int8[], $4::int8[], $5::int8[], $6::int2[],
                 $7::int2[], $8::int4[], $9::bytea[], $10::text[], $11::text[], $12::text[], $13::bytea[])
             ON CONFLICT DO NOTHING
             RETURNING trace_id, span_id",
        )
        .await?;
    let rows = tx
        .query(
            &stmt,
            &[
                &trace_id,
                &span_id,
                &start,
                &duration,
                &plan.span_source_ids,
                &kind,
                &code,
                &form,
                &parent,
                &name,
                &message,
                &entity,
                &rest,
            ],
        )
        .await?;
    let new_keys: HashSet<(&[u8], &[u8])> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let inserted: Vec<plan::Inserted<'_>> = plan
        .spans
        .iter()
        .zip(&keys)
        .zip(&rest)
        .zip(&plan.span_source_ids)
        .filter(|(((_, k), _), _)| new_keys.contains(&(&k.0[..], &k.1[..])))
        .map(|(((s, _), r), source)| (*s, plan::row_bytes(s, r.len()), *source))
        .collect();
    if inserted.is_empty() {
        return Ok(Some(0));
    }

    let traces = plan::merge_traces(&inserted);
    let mut trace_keys = Vec::with_capacity(traces.len());
    for t in &traces {
        let key: [u8; 16] = stored::id_array(&t.trace_id).ok_or_else(bad_key)?;
        let root: [u8; 8] = stored::id_array(&t.root_span_id).ok_or_else(bad_key)?;
        trace_keys.push((key, root));
    }
    let c = TraceColumns::of(&traces, &trace_keys);
    // The merge of `TraceRow::merge`: the proposed row is `excluded`.
    let pick = |column: &str| {
        format!(
            "{column} = CASE WHEN (excluded.root_rank, excluded.root_start_ns, excluded.root_span_id)
                 < (t.root_rank, t.root_start_ns, t.root_span_id) THEN excluded.{column} ELSE t.{column} END"
        )
    };
    let sql = format!(
        "INSERT INTO traces AS t ({TRACE_COLUMNS}) SELECT * FROM {UNNEST_TRACES}
         ON CONFLICT (trace_id) DO UPDATE SET start_ns = least(t.start_ns, excluded.start_ns),
             end_ns = greatest(t.end_ns, excluded.end_ns), span_count = t.span_count + excluded.span_count,
             error_count = t.error_count + excluded.error_count, bytes = t.bytes + excluded.bytes, {}",
        ["root_rank", "root_start_ns", "root_span_id", "root_name", "root_service"].map(pick).join(", ")
    );
    let stmt = tx.prepare_cached(&sql).await?;
    tx.execute(&stmt, &c.params()).await?;

    let terms = plan::trace_terms(&inserted);
    let term: Vec<i64> = terms.iter().map(|t| t.0).collect();
    let mut term_keys: Vec<[u8; 16]> = Vec::with_capacity(terms.len());
    for (_, id) in &terms {
        term_keys.push(stored::id_array(id).ok_or_else(bad_key)?);
    }
    let term_trace: Vec<&[u8]> = term_keys.iter().map(|k| &k[..]).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO trace_terms (term, trace_id) SELECT * FROM unnest($1::int8[], $2::bytea[])
             ON CONFLICT DO NOTHING",
        )
        .await?;
    tx.execute(&stmt, &[&term, &term_trace]).await?;
    Ok(Some(inserted.len() as u64))
}

/// A span's trace, span and parent IDs as raw bytes.
type SpanKey = ([u8; 16], [u8; 8], Option<[u8; 8]>);

const TRACE_COLUMNS: &str = "trace_id, start_ns, end_ns, span_count, error_count, root_rank, root_start_ns, \
     root_span_id, root_name, root_service, bytes";

const UNNEST_TRACES: &str = "unnest($1::bytea[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::int4[],
            $7::int8[], $8::bytea[], $9::text[], $10::text[], $11::int8[])
     AS u(trace_id, start_ns, end_ns, span_count, error_count, root_rank, root_start_ns, root_span_id,
          root_name, root_service, bytes)";

/// Columns of one `traces` write, as parallel arrays.
struct TraceColumns<'a> {
    trace_id: Vec<&'a [u8]>,
    start_ns: Vec<i64>,
    end_ns: Vec<i64>,
    span_count: Vec<i64>,
    error_count: Vec<i64>,
    root_rank: Vec<i32>,
    root_start_ns: Vec<i64>,
    root_span_id: Vec<&'a [u8]>,
    root_name: Vec<&'a str>,
    root_service: Vec<Option<&'a str>>,
    bytes: Vec<i64>,
}

impl<'a> TraceColumns<'a> {
    fn of(rows: &'a [TraceRow], keys: &'a [([u8; 16], [u8; 8])]) -> TraceColumns<'a> {
        TraceColumns {
            trace_id: keys.iter().map(|k| &k.0[..]).collect(),
            start_ns: rows.iter().map(|t| t.start_ns).collect(),
            end_ns: rows.iter().map(|t| t.end_ns).collect(),
            span_count: rows.iter().map(|t| t.span_count).collect(),
            error_count: rows.iter().map(|t| t.error_count).collect(),
            root_rank: rows.iter().map(|t| t.root_rank).collect(),
            root_start_ns: rows.iter().map(|t| t.root_start_ns).collect(),
            root_span_id: keys.iter().map(|k| &k.1[..]).collect(),
            root_name: rows.iter().map(|t| t.root_name.as_str()).collect(),
            root_service: rows.iter().map(|t| t.root_service.as_deref()).collect(),
            bytes: rows.iter().map(|t| t.bytes).collect(),
        }
    }

    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 11] {
        [
            &self.trace_id,
            &self.start_ns,
            &self.end_ns,
            &self.span_count,
            &self.error_count,
            &self.root_rank,
            &self.root_start_ns,
            &self.root_span_id,
            &self.root_name,
            &self.root_service,
            &self.bytes,
        ]
    }
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
