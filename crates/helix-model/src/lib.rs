//! The helixobs wire contract (`wire.md`) as a pure library: decoded OTLP requests in,
//! typed provenance records out. No sockets, no SQL, no async runtime.

#[cfg(any(test, feature = "builders"))]
pub mod builders;
pub mod ids;
pub mod interpret;
pub mod records;
pub mod render;

pub use interpret::{interpret_logs, interpret_traces, Interpretation, SpanAt, SpanClass};
pub use records::*;
