//! The attribute and event names of the wire contract (docs/wire.md): the one place they are
//! spelled, shared by the herald's interpreter and the Rust client.

/// Span attribute whose string value makes the span an entity span.
pub const ENTITY_ID: &str = "helix.entity.id";
/// The instrument owning the entity (span attribute; resource attribute as fallback).
pub const INSTRUMENT_ID: &str = "helix.instrument.id";
/// All parents of a creation, comma-joined in caller order.
pub const PARENT_IDS: &str = "helix.parent.ids";
/// `"true"` on operation spans.
pub const IS_OPERATION: &str = "helix.entity.is_operation";
/// The process name (span attribute; resource attribute as fallback).
pub const PROCESS_NAME: &str = "helix.process.name";
/// Set by clients on child spans for log correlation only; never makes an entity.
pub const LOG_ENTITY_ID: &str = "helix.log.entity_id";
/// The OTel resource attribute with the service name.
pub const SERVICE_NAME: &str = "service.name";
/// The event that marks a span (and the entity it names) failed; the one spelling of the name.
pub const ERROR_EVENT: &str = "helix.error";
/// Events with names under this prefix are stored as entity events.
pub const HELIX_EVENT_PREFIX: &str = "helix.";

/// Log record attributes a client's logging integration adds (empty string = absent).
pub mod log {
    /// The entity the line was written for.
    pub const ENTITY_ID: &str = "helix_entity_id";
    /// The instrument of the writing process.
    pub const INSTRUMENT_ID: &str = "helix_instrument_id";
    /// The process name of the writing process.
    pub const PROCESS_NAME: &str = "helix_process_name";
    /// The trace the line was written in (32 hex digits).
    pub const TRACE_ID: &str = "otel_trace_id";
    /// The span the line was written in (16 hex digits).
    pub const SPAN_ID: &str = "otel_span_id";
    /// Where in the code the line was written (`path#Lline` or a permalink).
    pub const SOURCE: &str = "helix_source";
}
