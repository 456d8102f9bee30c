//! OTLP request builders for tests: the one place tests make spans, resources and log records.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::{Event, Link},
    status::StatusCode,
    ResourceSpans, ScopeSpans, Span, Status,
};

pub fn string(s: &str) -> AnyValue {
    AnyValue { value: Some(Value::StringValue(s.to_owned())) }
}
pub fn int(i: i64) -> AnyValue {
    AnyValue { value: Some(Value::IntValue(i)) }
}
pub fn double(d: f64) -> AnyValue {
    AnyValue { value: Some(Value::DoubleValue(d)) }
}
pub fn boolean(b: bool) -> AnyValue {
    AnyValue { value: Some(Value::BoolValue(b)) }
}
pub fn array(values: Vec<AnyValue>) -> AnyValue {
    AnyValue { value: Some(Value::ArrayValue(ArrayValue { values })) }
}
pub fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(value), ..Default::default() }
}

/// A deterministic 16-byte trace ID distinct for each `n`.
pub fn trace_id(n: u64) -> Vec<u8> {
    let mut id = vec![0x7au8; 8];
    id.extend_from_slice(&(n + 1).to_be_bytes());
    id
}
/// A deterministic 8-byte span ID distinct for each `n`.
pub fn span_id(n: u64) -> Vec<u8> {
    (n + 1).to_be_bytes().to_vec()
}

/// Builds one span; `n` seeds its trace and span IDs.
#[derive(Debug, Clone)]
pub struct SpanBuilder(Span);

impl SpanBuilder {
    pub fn new(name: &str, n: u64) -> Self {
        SpanBuilder(Span {
            name: name.to_owned(),
            trace_id: trace_id(n),
            span_id: span_id(n),
            start_time_unix_nano: 1_700_000_000_000_000_000 + n * 1_000,
            end_time_unix_nano: 1_700_000_000_000_000_000 + n * 1_000 + 500,
            ..Default::default()
        })
    }
    /// A creation span of `entity` at stage `stage`.
    pub fn creation(stage: &str, entity: &str, n: u64) -> Self {
        Self::new(stage, n).attr("helix.entity.id", string(entity))
    }
    /// An operation span on `entity`.
    pub fn operation(op: &str, entity: &str, n: u64) -> Self {
        Self::new(op, n).attr("helix.entity.id", string(entity)).attr("helix.entity.is_operation", string("true"))
    }
    pub fn attr(mut self, key: &str, value: AnyValue) -> Self {
        self.0.attributes.push(kv(key, value));
        self
    }
    pub fn instrument(self, id: &str) -> Self {
        self.attr("helix.instrument.id", string(id))
    }
    pub fn parents(self, joined: &str) -> Self {
        self.attr("helix.parent.ids", string(joined))
    }
    pub fn trace(mut self, trace: Vec<u8>) -> Self {
        self.0.trace_id = trace;
        self
    }
    pub fn times(mut self, start: u64, end: u64) -> Self {
        self.0.start_time_unix_nano = start;
        self.0.end_time_unix_nano = end;
        self
    }
    pub fn event(mut self, name: &str, time: u64, attrs: Vec<KeyValue>) -> Self {
        self.0.events.push(Event {
            name: name.to_owned(),
            time_unix_nano: time,
            attributes: attrs,
            ..Default::default()
        });
        self
    }
    pub fn link(mut self, trace: Vec<u8>, span: Vec<u8>) -> Self {
        self.0.links.push(Link { trace_id: trace, span_id: span, ..Default::default() });
        self
    }
    pub fn error_status(mut self) -> Self {
        self.0.status = Some(Status { code: StatusCode::Error as i32, message: "failed".into() });
        self
    }
    pub fn build(self) -> Span {
        self.0
    }
}

/// One resource with one scope holding `spans`.
pub fn traces(resource_attrs: Vec<KeyValue>, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: resource_attrs, ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// The resource a pipeline process usually sends.
pub fn pipeline_resource(service: &str, instrument: &str) -> Vec<KeyValue> {
    vec![kv("service.name", string(service)), kv("helix.instrument.id", string(instrument))]
}

/// One resource with one scope holding `records`.
pub fn logs(resource_attrs: Vec<KeyValue>, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource { attributes: resource_attrs, ..Default::default() }),
            scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
            ..Default::default()
        }],
    }
}
