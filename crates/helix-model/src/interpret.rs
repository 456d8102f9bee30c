//! Classification of spans (wire.md): one decoded export request → typed records.
pub struct Interpretation;
pub struct SpanAt;
pub enum SpanClass {}
pub fn interpret_traces() {}
pub fn interpret_logs() {}
