//! The typed records that interpretation produces and the store persists.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Flat string → string metadata, ordered so that rendering is deterministic.
pub type Metadata = BTreeMap<String, String>;

/// Outcome of a creation or operation span (`status` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Ok,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "ok" => Some(Status::Ok),
            "error" => Some(Status::Error),
            _ => None,
        }
    }
}

/// Where a span's creation lives: the TraceStore value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SpanRef {
    /// 32 lowercase hex characters.
    pub trace_id: String,
    /// 16 lowercase hex characters.
    pub span_id: String,
}

/// A `helix.*` span event, attached to the entity the span names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityEvent {
    pub entity_id: String,
    pub instrument_id: String,
    /// Full event name, e.g. `helix.error` or `helix.event.classified`.
    pub event_name: String,
    /// The event's own timestamp, not the span's.
    pub timestamp_ns: i64,
    pub metadata: Metadata,
    pub trace_id: String,
    pub span_id: String,
    /// Position of the event among the span's events; with `span_id` it makes the row idempotent.
    pub ordinal: u32,
}

impl EntityEvent {
    pub fn is_error(&self) -> bool {
        self.event_name == crate::interpret::ERROR_EVENT
    }
}

/// What a creation span and an operation span both say about the entity they name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntitySpan {
    pub entity_id: String,
    pub instrument_id: String,
    /// The span name: a creation's stage, an operation's name.
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub start_ns: i64,
    pub end_ns: i64,
    /// All parents in caller order, trimmed, de-duplicated, no empties. A creation's become
    /// provenance edges; an operation's are resolved to links only.
    pub parent_ids: Vec<String>,
    pub metadata: Metadata,
    pub service_name: Option<String>,
    pub process_name: Option<String>,
    /// `Error` when the span status is ERROR or any `helix.error` event is present.
    pub status: Status,
    pub events: Vec<EntityEvent>,
}

/// A creation span: brings an entity into existence (or upgrades/re-creates it). Reads its
/// fields through `Deref` to the shared [`EntitySpan`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EntityCreated(pub EntitySpan);

/// An operation span: work on an existing (or not yet known) entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OperationRecorded(pub EntitySpan);

impl std::ops::Deref for EntityCreated {
    type Target = EntitySpan;
    fn deref(&self) -> &EntitySpan {
        &self.0
    }
}

impl std::ops::DerefMut for EntityCreated {
    fn deref_mut(&mut self) -> &mut EntitySpan {
        &mut self.0
    }
}

impl std::ops::Deref for OperationRecorded {
    type Target = EntitySpan;
    fn deref(&self) -> &EntitySpan {
        &self.0
    }
}

impl std::ops::DerefMut for OperationRecorded {
    fn deref_mut(&mut self) -> &mut EntitySpan {
        &mut self.0
    }
}

impl EntityCreated {
    /// The stage: the creation span's name.
    pub fn stage(&self) -> &str {
        &self.name
    }
}

impl OperationRecorded {
    /// The operation: the span's name.
    pub fn operation(&self) -> &str {
        &self.name
    }

    pub fn duration_ns(&self) -> i64 {
        self.end_ns - self.start_ns
    }

    /// A `helix.error` event on an operation marks the operated entity as failed.
    pub fn marks_entity_error(&self) -> bool {
        self.events.iter().any(EntityEvent::is_error)
    }
}

/// One OTLP log record with the correlation fields docs/wire.md names (empty strings → `None`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecorded {
    pub timestamp_ns: i64,
    /// When the SDK observed the record (`observed_time_unix_nano`, the timestamp when unset).
    pub observed_ns: i64,
    pub severity: String,
    /// OTLP severity number (1–24; 0 unspecified): `WARN` and above are 13 and more.
    pub severity_number: i32,
    pub body: String,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub entity_id: Option<String>,
    pub instrument_id: Option<String>,
    pub process_name: Option<String>,
    pub service_name: Option<String>,
    pub source: Option<String>,
    pub attributes: Metadata,
    /// The exporting process's resource attributes, rendered like `attributes`.
    pub resource: Metadata,
}
