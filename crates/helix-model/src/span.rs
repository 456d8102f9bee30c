//! The stored form of every acknowledged span (the herald is also a trace store): the columns
//! queries filter on, plus the OTLP span itself so a trace read gives back exactly what was
//! sent (with the links the herald resolved).

use serde::{Deserialize, Serialize};

/// What a span is to the provenance model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanRole {
    /// A creation span (`create(stage, id, parents)`).
    Creation,
    /// An operation span (`operate(op, entity_id)`).
    Operation,
    /// Any other span: a child span, a `trace()`, an instrumented library's span.
    Span,
}

impl SpanRole {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanRole::Creation => "creation",
            SpanRole::Operation => "operation",
            SpanRole::Span => "span",
        }
    }

    pub fn parse(s: &str) -> Option<SpanRole> {
        match s {
            "creation" => Some(SpanRole::Creation),
            "operation" => Some(SpanRole::Operation),
            "span" => Some(SpanRole::Span),
            _ => None,
        }
    }
}

/// One span as the span store keeps it; `(trace_id, span_id)` is its key (idempotent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanRecorded {
    /// 32 lowercase hex characters.
    pub trace_id: String,
    /// 16 lowercase hex characters.
    pub span_id: String,
    /// `None` for a root span.
    pub parent_span_id: Option<String>,
    pub name: String,
    /// OTLP `SpanKind` number.
    pub kind: i32,
    pub start_ns: i64,
    pub end_ns: i64,
    /// OTLP status code number (0 unset, 1 ok, 2 error).
    pub status_code: i32,
    pub status_message: String,
    pub service_name: Option<String>,
    pub process_name: Option<String>,
    pub instrument_id: Option<String>,
    /// The entity a creation or operation span names.
    pub entity_id: Option<String>,
    pub role: SpanRole,
    /// The span as received (attributes, events, links incl. the resolved ones), encoded as an
    /// OTLP protobuf `Span` message.
    pub span_proto: Vec<u8>,
    /// The span's resource, encoded as an OTLP protobuf `Resource` message.
    pub resource_proto: Vec<u8>,
    /// The instrumentation scope's name and version.
    pub scope_name: String,
    pub scope_version: String,
}

impl SpanRecorded {
    pub fn duration_ns(&self) -> i64 {
        self.end_ns.saturating_sub(self.start_ns)
    }

    pub fn is_error(&self) -> bool {
        self.status_code == 2
    }
}
