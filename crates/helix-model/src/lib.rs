//! The helixobs wire contract (docs/wire.md) as a pure library: decoded OTLP requests in,
//! typed provenance records out. No sockets, no SQL, no async runtime.

pub mod attribution;
#[cfg(any(test, feature = "builders"))]
pub mod builders;
pub mod fingerprint;
pub mod ids;
pub mod interpret;
pub mod keys;
pub mod records;
pub mod render;
pub mod shape;
pub mod span;

pub use attribution::{attribute_logs, attribute_traces, ForeignInstrument};
pub use interpret::{
    check_entity_id, interpret_logs, interpret_traces, log_count, severity_name, severity_number, span_count,
    Interpretation, SpanAt, SpanClass, ERROR_EVENT, MAX_ENTITY_ID_BYTES,
};
pub use records::*;
pub use span::{span_records, SpanRecorded, SpanRole};
