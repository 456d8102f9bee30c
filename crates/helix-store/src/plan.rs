//! The write plan: every rule of the write semantics (`docs/storage.md`) as one pure function
//! from a batch and the rows it touches, as stored, to the rows to write and the outcome.
//! Backends only load (`Touched`) and write (`WritePlan`); no rule lives in their I/O code.

use std::collections::{BTreeSet, HashMap, HashSet};

use helix_model::{EntityCreated, EntityEvent, LogRecorded, Metadata, OperationRecorded, SpanRecorded, Status};

use crate::rows::{append_new_parents, unique_in_order, worst};
use crate::{Entity, EntityCount, EventCount, InstrumentConflict, WriteBatch, WriteOutcome, WriteRecord};

/// The keys of the stored rows a batch touches: what a backend loads before planning.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Touched<'b> {
    /// Entities named by a creation or an operation, sorted, unique (the lock order on PostgreSQL).
    pub entity_ids: Vec<&'b str>,
    /// Operation spans of the batch, sorted, unique.
    pub operation_spans: Vec<&'b str>,
}

impl<'b> Touched<'b> {
    pub(crate) fn of(batch: &'b WriteBatch) -> Touched<'b> {
        let mut t = Touched::default();
        for r in &batch.records {
            match r {
                WriteRecord::Created(c) => t.entity_ids.push(&c.entity_id),
                WriteRecord::Operation(o) => {
                    t.entity_ids.push(&o.entity_id);
                    t.operation_spans.push(&o.span_id);
                }
                WriteRecord::Log(_) | WriteRecord::Span(_) => {}
            }
        }
        for keys in [&mut t.entity_ids, &mut t.operation_spans] {
            keys.sort_unstable();
            keys.dedup();
        }
        t
    }

    /// Entities whose stored creation spans must be known: the created ones that exist.
    pub(crate) fn recreated<'s>(batch: &'b WriteBatch, entities: &'s HashMap<String, Entity>) -> Vec<&'b str> {
        let mut ids: Vec<&str> = batch
            .records
            .iter()
            .filter_map(|r| match r {
                WriteRecord::Created(c) if entities.contains_key(&c.entity_id) => Some(c.entity_id.as_str()),
                _ => None,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// The touched rows as they are stored before the batch.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Stored {
    /// Stored entities among `Touched::entity_ids`.
    pub entities: HashMap<String, Entity>,
    /// Stored operation spans among `Touched::operation_spans`.
    pub operation_spans: HashSet<String>,
    /// Stored later creation spans `(entity, span)` of the entities of `Touched::recreated`.
    pub creations: HashSet<(String, String)>,
}

/// A provenance edge to insert.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct NewEdge {
    pub child: String,
    pub parent: String,
    /// Index into the child's `parent_ids`.
    pub position: i32,
}

/// What the batch writes. Every list is sorted by its key (concurrent PostgreSQL writers then
/// take row locks in the same order) and holds only rows that are new or changed.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct WritePlan<'b> {
    /// Entities to insert (`created_at` is left for the backend to set).
    pub new_entities: Vec<Entity>,
    /// Stored entities the batch changed, with their final values.
    pub changed_entities: Vec<Entity>,
    /// Later creation spans `(entity, span)` to remember, so their retries are no-ops.
    pub new_creations: Vec<(String, String)>,
    pub new_edges: Vec<NewEdge>,
    pub new_operations: Vec<&'b OperationRecorded>,
    /// Events of the spans applied now, unique by (span, ordinal).
    pub new_events: Vec<&'b EntityEvent>,
    /// Logs are idempotent by the store's unique key (no row of theirs is loaded), so all are
    /// offered and the backend counts `outcome.logs_inserted`.
    pub logs: Vec<&'b LogRecorded>,
    /// Spans for the span store, unique by (trace, span) (the first of a batch wins), sorted by
    /// that key. Like logs they are idempotent by the store's unique key: all are offered, and
    /// the backend counts `outcome.spans_inserted` and folds the inserted ones into the trace
    /// summaries with [`merge_traces`].
    pub spans: Vec<&'b SpanRecorded>,
    /// The `span_sources` key of each of `spans` (same index).
    pub span_source_ids: Vec<i64>,
    /// The distinct sources of `spans`, by key, sorted, each with a span that has it: one row
    /// each, not one per span.
    pub span_sources: Vec<(i64, &'b SpanRecorded)>,
    /// Instruments that sent applied data (the empty fallback `""` excluded), sorted.
    pub instruments: Vec<String>,
    /// New events that notify (`WriteBatch::notify`), for the outbox, in `new_events` order.
    pub outbox: Vec<crate::notify::OutboxEvent<'b>>,
    pub outcome: WriteOutcome,
    /// In a batch that refuses conflicts, the first record on another instrument's entity:
    /// the backend writes nothing of the plan then.
    pub refused: Option<InstrumentConflict>,
}

/// Apply the records of `batch`, in order, to the stored picture.
pub(crate) fn plan<'b>(batch: &'b WriteBatch, stored: Stored) -> WritePlan<'b> {
    let mut p = Planner {
        stored_ids: stored.entities.keys().cloned().collect(),
        rows: stored.entities,
        changed: HashSet::new(),
        operation_spans: stored.operation_spans,
        creations: stored.creations,
        events_seen: HashSet::new(),
        instruments: BTreeSet::new(),
        refuse_conflicts: batch.refuse_conflicts,
        notify: &batch.notify,
        out: WritePlan::default(),
    };
    for r in &batch.records {
        match r {
            WriteRecord::Created(c) => p.created(c),
            WriteRecord::Operation(o) => p.operation(o),
            WriteRecord::Log(l) => {
                p.note_instrument(l.instrument_id.as_deref().unwrap_or(""));
                p.out.logs.push(l);
            }
            WriteRecord::Span(s) => p.out.spans.push(s),
        }
    }
    p.finish()
}

/// The row a creation of an unknown ID inserts (`parents`: its parents without repeats);
/// `created_at` is left for the backend to set.
pub(crate) fn created_row(c: &EntityCreated, parents: Vec<String>) -> Entity {
    Entity {
        id: c.entity_id.clone(),
        instrument_id: c.instrument_id.clone(),
        trace_id: Some(c.trace_id.clone()),
        span_id: Some(c.span_id.clone()),
        timestamp_ns: c.start_ns,
        end_ns: Some(c.end_ns),
        stage: Some(c.name.clone()),
        service_name: c.service_name.clone(),
        process_name: c.process_name.clone(),
        status: c.status,
        placeholder: false,
        parent_ids: parents,
        metadata: c.metadata.clone(),
        created_at: String::new(),
    }
}

/// The placeholder an operation on an unknown entity inserts: no trace, span or parents,
/// owned by the operation's instrument.
pub(crate) fn placeholder_row(o: &OperationRecorded, status: Status) -> Entity {
    Entity {
        id: o.entity_id.clone(),
        instrument_id: o.instrument_id.clone(),
        trace_id: None,
        span_id: None,
        timestamp_ns: o.start_ns,
        end_ns: None,
        stage: None,
        service_name: o.service_name.clone(),
        process_name: o.process_name.clone(),
        status,
        placeholder: true,
        parent_ids: Vec::new(),
        metadata: Metadata::new(),
        created_at: String::new(),
    }
}

struct Planner<'b> {
    rows: HashMap<String, Entity>,
    /// Entities that were stored before the batch (the others are inserted).
    stored_ids: HashSet<String>,
    /// Stored entities the batch changed.
    changed: HashSet<String>,
    operation_spans: HashSet<String>,
    creations: HashSet<(String, String)>,
    events_seen: HashSet<(&'b str, u32)>,
    instruments: BTreeSet<String>,
    refuse_conflicts: bool,
    notify: &'b crate::notify::NotifySet,
    out: WritePlan<'b>,
}

impl<'b> Planner<'b> {
    /// Rule: ownership. A record on an entity of another instrument is not applied; in a
    /// batch that refuses conflicts, the first one refuses the batch.
    fn conflict(&mut self, entity_id: &str, owner: &str, instrument: &str) {
        self.out.outcome.instrument_conflicts += 1;
        if self.refuse_conflicts && self.out.refused.is_none() {
            self.out.refused = Some(InstrumentConflict {
                entity_id: entity_id.to_owned(),
                owner: owner.to_owned(),
                instrument: instrument.to_owned(),
            });
        }
    }

    fn note_instrument(&mut self, id: &str) {
        // "" is the wire fallback for "no instrument": not worth listing.
        if !id.is_empty() && !self.instruments.contains(id) {
            self.instruments.insert(id.to_owned());
        }
    }

    fn mark_changed(&mut self, id: &str) {
        if self.stored_ids.contains(id) && !self.changed.contains(id) {
            self.changed.insert(id.to_owned());
        }
    }

    fn add_edges(&mut self, child: &str, parents: &[String], first_position: usize) {
        for (i, p) in parents.iter().enumerate() {
            // Positions index parent_ids: far below i32::MAX for any entity that fits a request.
            let position = i32::try_from(first_position + i).unwrap_or(i32::MAX);
            self.out.new_edges.push(NewEdge { child: child.to_owned(), parent: p.clone(), position });
        }
    }

    /// Events of a span applied now; counted in record order for the metrics.
    /// `stage`: the span's name, the stage of events that do not name one.
    fn add_events(&mut self, events: &'b [EntityEvent], stage: &str) {
        for e in events {
            if self.events_seen.insert((e.span_id.as_str(), e.ordinal)) {
                if self.notify.contains(&e.instrument_id, &e.event_name) {
                    // The entity's stage (as the alerts read it back), else the span's name.
                    let entity_stage = self.rows.get(&e.entity_id).and_then(|r| r.stage.as_deref());
                    self.out.outbox.push(crate::notify::OutboxEvent::of(e, entity_stage.unwrap_or(stage)));
                }
                self.out.new_events.push(e);
                self.out.outcome.events_inserted.push(EventCount::new(&e.instrument_id, &e.event_name));
            }
        }
    }

    fn created(&mut self, c: &'b EntityCreated) {
        let Some(row) = self.rows.get_mut(&c.entity_id) else {
            // Rule: a brand-new entity is inserted with its creation.
            let parents = unique_in_order(&c.parent_ids);
            self.add_edges(&c.entity_id, &parents, 0);
            self.rows.insert(c.entity_id.clone(), created_row(c, parents));
            self.note_instrument(&c.instrument_id);
            self.out.outcome.entities_created.push(EntityCount {
                entity_id: c.entity_id.clone(),
                instrument_id: c.instrument_id.clone(),
                stage: c.name.clone(),
                status: c.status,
            });
            self.add_events(&c.events, &c.name);
            return;
        };
        if row.instrument_id != c.instrument_id {
            // Not applied, and not remembered as an applied creation.
            let owner = row.instrument_id.clone();
            self.conflict(&c.entity_id, &owner, &c.instrument_id);
            return;
        }
        if row.span_id.as_deref() == Some(c.span_id.as_str()) {
            // Rule: idempotency. The entity's own creation span again (an exporter retry).
            return;
        }
        let key = (c.entity_id.clone(), c.span_id.clone());
        if self.creations.contains(&key) {
            // A later creation span already applied: its retry is a no-op too.
            return;
        }
        let start = append_new_parents(&mut row.parent_ids, &c.parent_ids);
        let added: Vec<String> = row.parent_ids[start..].to_vec();
        row.status = worst(row.status, c.status);
        let upgraded = row.placeholder;
        if upgraded {
            // Rule: placeholder upgrade in place. The creation supplies everything a
            // placeholder lacks; an error already recorded by an operation stays, and so do
            // metadata keys it had.
            let mut metadata: Metadata = c.metadata.clone();
            for (k, v) in std::mem::take(&mut row.metadata) {
                metadata.entry(k).or_insert(v);
            }
            row.metadata = metadata;
            row.trace_id = Some(c.trace_id.clone());
            row.span_id = Some(c.span_id.clone());
            row.timestamp_ns = c.start_ns;
            row.end_ns = Some(c.end_ns);
            row.stage = Some(c.name.clone());
            row.service_name = c.service_name.clone();
            row.process_name = c.process_name.clone();
            row.placeholder = false;
        } else {
            // Rule: re-creation. The first creation's trace, span, timestamp and stage stay;
            // parents are a union in arrival order; only missing metadata keys are added.
            for (k, v) in &c.metadata {
                row.metadata.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let status = row.status;
        self.creations.insert(key.clone());
        self.out.new_creations.push(key);
        self.mark_changed(&c.entity_id);
        self.add_edges(&c.entity_id, &added, start);
        self.note_instrument(&c.instrument_id);
        if upgraded {
            self.out.outcome.entities_created.push(EntityCount {
                entity_id: c.entity_id.clone(),
                instrument_id: c.instrument_id.clone(),
                stage: c.name.clone(),
                status,
            });
        } else {
            self.out.outcome.recreations += 1;
        }
        self.add_events(&c.events, &c.name);
    }

    fn operation(&mut self, o: &'b OperationRecorded) {
        let owner = self.rows.get(&o.entity_id).map(|r| r.instrument_id.as_str());
        if let Some(owner) = owner.filter(|i| *i != o.instrument_id) {
            let owner = owner.to_owned();
            self.conflict(&o.entity_id, &owner, &o.instrument_id);
            return;
        }
        if !self.operation_spans.insert(o.span_id.clone()) {
            // Rule: idempotency. Same operation span again: its placeholder and events were
            // applied the first time.
            return;
        }
        self.out.new_operations.push(o);
        self.out.outcome.operations_inserted += 1;
        self.note_instrument(&o.instrument_id);
        // Rule: only a helix.error event marks the entity; an ERROR span status fails the
        // operation row alone.
        let entity_status = if o.marks_entity_error() { Status::Error } else { Status::Ok };
        match self.rows.get_mut(&o.entity_id) {
            None => {
                // Rule: an operation on an unknown entity creates a placeholder, owned by the
                // operation's instrument.
                self.rows.insert(o.entity_id.clone(), placeholder_row(o, entity_status));
                self.out.outcome.placeholders_created += 1;
            }
            Some(row) => {
                if entity_status == Status::Error && row.status != Status::Error {
                    row.status = Status::Error;
                    self.mark_changed(&o.entity_id);
                }
            }
        }
        self.add_events(&o.events, &o.name);
    }

    fn finish(mut self) -> WritePlan<'b> {
        let mut out = self.out;
        for (id, row) in self.rows {
            if !self.stored_ids.contains(&id) {
                out.new_entities.push(row);
            } else if self.changed.contains(&id) {
                out.changed_entities.push(row);
            }
        }
        out.new_entities.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        out.changed_entities.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        out.new_creations.sort_unstable();
        out.new_edges.sort_unstable();
        out.new_edges.dedup_by(|a, b| a.child == b.child && a.parent == b.parent);
        out.new_operations.sort_unstable_by(|a, b| a.span_id.cmp(&b.span_id));
        out.new_events.sort_unstable_by(|a, b| (&a.span_id, a.ordinal).cmp(&(&b.span_id, b.ordinal)));
        out.outbox
            .sort_unstable_by(|a, b| (&a.event.span_id, a.event.ordinal).cmp(&(&b.event.span_id, b.event.ordinal)));
        out.instruments = std::mem::take(&mut self.instruments).into_iter().collect();
        // Sources are keyed in record order, where a span's source is nearly always the one
        // before it (one export, one process): an equal source reuses its key unhashed.
        let mut keyed: Vec<(&SpanRecorded, i64)> = Vec::with_capacity(out.spans.len());
        for s in out.spans.drain(..) {
            let id = match keyed.last() {
                Some((prev, id)) if helix_model::span::stored::same_source(prev, s) => *id,
                _ => helix_model::span::stored::source_id(s),
            };
            keyed.push((s, id));
        }
        // Stable sort: the first of two records of one span stays first and is the one kept.
        keyed.sort_by(|(a, _), (b, _)| (&a.trace_id, &a.span_id).cmp(&(&b.trace_id, &b.span_id)));
        keyed.dedup_by(|(a, _), (b, _)| a.trace_id == b.trace_id && a.span_id == b.span_id);
        let mut sources = std::collections::BTreeMap::new();
        out.span_source_ids.reserve(keyed.len());
        for (s, id) in keyed {
            sources.entry(id).or_insert(s);
            out.spans.push(s);
            out.span_source_ids.push(id);
        }
        out.span_sources = sources.into_iter().collect();
        out
    }
}

/// A `traces` row: the summary of one trace, kept up to date as its spans arrive. The
/// backends upsert the batch's rows with the same merge ([`TraceRow::merge`]) spelled in SQL.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TraceRow {
    pub trace_id: String,
    /// Earliest start and latest end over the trace's spans.
    pub start_ns: i64,
    pub end_ns: i64,
    pub span_count: i64,
    pub error_count: i64,
    /// The root span is the least (rank, start, span ID): rank 0 for a span without a parent,
    /// so the earliest parentless span wins, and the earliest span when there is none.
    pub root_rank: i32,
    pub root_start_ns: i64,
    pub root_span_id: String,
    pub root_name: String,
    pub root_service: Option<String>,
    /// The root span's `span_sources` key.
    pub root_source: i64,
    /// Stored bytes of the trace's spans (the backend's estimate of each row).
    pub bytes: i64,
}

impl TraceRow {
    pub(crate) fn of(s: &SpanRecorded, bytes: i64, source: i64) -> TraceRow {
        TraceRow {
            trace_id: s.trace_id.clone(),
            start_ns: s.start_ns,
            end_ns: s.end_ns,
            span_count: 1,
            error_count: i64::from(s.is_error()),
            root_rank: i32::from(s.parent_span_id.is_some()),
            root_start_ns: s.start_ns,
            root_span_id: s.span_id.clone(),
            root_name: s.name.clone(),
            root_service: s.service_name.clone(),
            root_source: source,
            bytes,
        }
    }

    fn root(&self) -> (i32, i64, &str) {
        (self.root_rank, self.root_start_ns, &self.root_span_id)
    }

    /// Fold another summary of the same trace (spans not counted in `self`) into this one.
    pub(crate) fn merge(&mut self, other: TraceRow) {
        self.start_ns = self.start_ns.min(other.start_ns);
        self.end_ns = self.end_ns.max(other.end_ns);
        self.span_count += other.span_count;
        self.error_count += other.error_count;
        self.bytes += other.bytes;
        if other.root() < self.root() {
            self.root_rank = other.root_rank;
            self.root_start_ns = other.root_start_ns;
            self.root_span_id = other.root_span_id;
            self.root_name = other.root_name;
            self.root_service = other.root_service;
            self.root_source = other.root_source;
        }
    }
}

/// A newly inserted span, its stored bytes and its `span_sources` key.
pub(crate) type Inserted<'s> = (&'s SpanRecorded, i64, i64);

/// The summaries of the spans the database reported as newly inserted (a retried span is not
/// among them, so nothing is counted twice), one per trace, sorted by trace ID (the lock
/// order): what the backend upserts into `traces` with [`TraceRow::merge`]'s rule.
pub(crate) fn merge_traces(inserted: &[Inserted<'_>]) -> Vec<TraceRow> {
    let mut by_trace: std::collections::BTreeMap<&str, TraceRow> = std::collections::BTreeMap::new();
    for (s, bytes, source) in inserted {
        let row = TraceRow::of(s, *bytes, *source);
        match by_trace.get_mut(s.trace_id.as_str()) {
            Some(t) => t.merge(row),
            None => {
                by_trace.insert(&s.trace_id, row);
            }
        }
    }
    by_trace.into_values().collect()
}

/// What a span row takes on disk, roughly: its values, the record and cell headers, and its
/// entity index entry. The unit of a trace's `bytes` (exact enough for a budget, and cheap).
pub(crate) fn row_bytes(s: &SpanRecorded, rest_len: usize) -> i64 {
    let entity = s.entity_id.as_ref().map_or(0, |e| 2 * e.len() + 40);
    (70 + s.name.len() + s.status_message.len() + rest_len + entity) as i64
}

/// Search term kinds of `trace_terms`.
pub(crate) const TERM_SERVICE: u8 = 1;
pub(crate) const TERM_NAME: u8 = 2;
pub(crate) const TERM_INSTRUMENT: u8 = 3;
/// SQLite's postings also list the entities a trace's spans name.
pub(crate) const TERM_ENTITY: u8 = 4;

/// An entity's term in SQLite's postings: the upper half of its [`term_hash`], which SQLite
/// keeps in 4 bytes instead of 8 (an entity term is about one posting row per entity span).
/// A collision only adds a candidate that the exact span check turns down. Rows written before
/// it hold the whole hash ([`term_hash`]); lookups ask for both. Stored: a fixed function.
pub(crate) fn entity_term(entity_id: &str) -> i64 {
    i64::from((term_hash(TERM_ENTITY, entity_id) >> 32) as i32)
}

/// Stable 64-bit FNV-1a of a search term: its kind, then its text. Stored: a fixed function.
pub(crate) fn term_hash(kind: u8, value: &str) -> i64 {
    let h = std::iter::once(kind)
        .chain(value.bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    h as i64
}

/// The (term, trace) pairs of newly inserted spans, sorted, unique: every service, span name
/// and instrument a trace's spans have, for the trace search's term lookups.
pub(crate) fn trace_terms<'s>(inserted: &[Inserted<'s>]) -> Vec<(i64, &'s str)> {
    let mut out = Vec::with_capacity(inserted.len() * 2);
    for (s, _, _) in inserted {
        out.push((term_hash(TERM_NAME, &s.name), s.trace_id.as_str()));
        if let Some(v) = &s.service_name {
            out.push((term_hash(TERM_SERVICE, v), s.trace_id.as_str()));
        }
        if let Some(v) = &s.instrument_id {
            out.push((term_hash(TERM_INSTRUMENT, v), s.trace_id.as_str()));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests;
