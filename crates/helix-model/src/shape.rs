//! The shape of an OTLP export and the limits on it: what decoding an export will cost, counted
//! from its protobuf bytes with prost's wire decoding and nothing allocated (so the herald can
//! price an export before building it), and the per-span / per-record limits checked on the
//! decoded request (spans over them are rejected as a partial success).

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{skip_field, DecodeContext, WireType};
use prost::{DecodeError, Message};

/// Longest attribute key accepted anywhere (span, event, link, log record, nested maps), and
/// the longest `meta.KEY` the API searches for: keys are names, not data.
pub const MAX_KEY_BYTES: usize = 1024;

/// How many of each part one export holds (nested attribute values included).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub spans: u64,
    pub log_records: u64,
    pub events: u64,
    pub links: u64,
    /// Attribute key-values and array elements, at any depth.
    pub values: u64,
    /// Size of the encoded export.
    pub bytes: u64,
}

/// While an export is processed the herald holds its decoded form, the records interpreted from
/// it and the encoded spans it stores: about this many times the decoded structures (measured:
/// `tests/limits.rs`).
const PROCESSING_FACTOR: u64 = 3;

impl Counts {
    /// Estimated peak memory of decoding, interpreting and storing the export: every decoded
    /// structure at its in-memory size plus the text it copies, times [`PROCESSING_FACTOR`].
    pub fn estimated_bytes(&self) -> u64 {
        let size = |n: u64, bytes: usize| n.saturating_mul(bytes as u64);
        let structures = size(self.spans, size_of::<Span>())
            .saturating_add(size(self.log_records, size_of::<LogRecord>()))
            .saturating_add(size(self.events, size_of::<Event>()))
            .saturating_add(size(self.links, size_of::<Link>()))
            .saturating_add(size(self.values, size_of::<KeyValue>() + size_of::<AnyValue>()));
        structures.saturating_add(self.bytes).saturating_mul(PROCESSING_FACTOR)
    }
}

/// Count the parts of an encoded `ExportTraceServiceRequest`.
pub fn count_traces(body: &[u8]) -> Result<Counts, DecodeError> {
    count(Part::TracesRequest, body)
}

/// Count the parts of an encoded `ExportLogsServiceRequest`.
pub fn count_logs(body: &[u8]) -> Result<Counts, DecodeError> {
    count(Part::LogsRequest, body)
}

fn count(part: Part, body: &[u8]) -> Result<Counts, DecodeError> {
    let mut counts = Counts { bytes: body.len() as u64, ..Counts::default() };
    Counter { part, counts: &mut counts }.merge(body)?;
    Ok(counts)
}

/// The OTLP messages whose fields hold something counted (field numbers from the OTLP protos).
#[derive(Debug, Clone, Copy)]
enum Part {
    TracesRequest,
    ResourceSpans,
    ScopeSpans,
    Span,
    Event,
    Link,
    LogsRequest,
    ResourceLogs,
    ScopeLogs,
    LogRecord,
    Resource,
    Scope,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

/// A message being read for its counts only: known sub-messages are entered, everything else
/// is skipped by prost.
#[derive(Debug)]
struct Counter<'a> {
    part: Part,
    counts: &'a mut Counts,
}

impl Message for Counter<'_> {
    fn encode_raw(&self, _buf: &mut impl BufMut) {
        // Only ever decoded.
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        use Part as P;
        let child = match (self.part, tag) {
            (P::TracesRequest, 1) => P::ResourceSpans,
            (P::ResourceSpans, 1) | (P::ResourceLogs, 1) => P::Resource,
            (P::ResourceSpans, 2) => P::ScopeSpans,
            (P::ScopeSpans, 1) | (P::ScopeLogs, 1) => P::Scope,
            (P::ScopeSpans, 2) => {
                self.counts.spans += 1;
                P::Span
            }
            (P::Span, 11) => {
                self.counts.events += 1;
                P::Event
            }
            (P::Span, 13) => {
                self.counts.links += 1;
                P::Link
            }
            (P::LogsRequest, 1) => P::ResourceLogs,
            (P::ResourceLogs, 2) => P::ScopeLogs,
            (P::ScopeLogs, 2) => {
                self.counts.log_records += 1;
                P::LogRecord
            }
            (P::LogRecord, 5) => P::AnyValue,
            (P::Span, 9) | (P::Event, 3) | (P::Link, 4) | (P::LogRecord, 6) | (P::Resource, 1) | (P::Scope, 3) => {
                self.counts.values += 1;
                P::KeyValue
            }
            (P::KeyValueList, 1) => {
                self.counts.values += 1;
                P::KeyValue
            }
            (P::KeyValue, 2) => P::AnyValue,
            (P::AnyValue, 5) => P::ArrayValue,
            (P::AnyValue, 6) => P::KeyValueList,
            (P::ArrayValue, 1) => {
                self.counts.values += 1;
                P::AnyValue
            }
            _ => return skip_field(wire_type, tag, buf, ctx),
        };
        prost::encoding::message::merge(wire_type, &mut Counter { part: child, counts: self.counts }, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        0
    }

    fn clear(&mut self) {}
}

/// The limits on one span (its events and links included) or log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapeLimits {
    /// Attributes of a span, of one of its events or links, of a log record (and entries of
    /// one map value).
    pub attributes: usize,
    pub events: usize,
    pub links: usize,
    /// Longest string or bytes value (attribute values at any depth, span names, log bodies).
    pub value_bytes: usize,
    /// Keys and values of a span's attributes and its events' attributes together (the
    /// metadata stored for an entity), or of a log record's attributes.
    pub metadata_bytes: usize,
}

impl ShapeLimits {
    /// The defaults of the herald's flags: far above what the OpenTelemetry SDKs send (they cap
    /// attributes, events and links at 128 per span unless told otherwise).
    pub const DEFAULT: ShapeLimits =
        ShapeLimits { attributes: 1024, events: 1024, links: 1024, value_bytes: 4 << 20, metadata_bytes: 8 << 20 };
}

impl Default for ShapeLimits {
    fn default() -> Self {
        ShapeLimits::DEFAULT
    }
}

/// Remove every span over `limits` (all the spans of a resource or scope whose attributes are
/// over them); the reasons, in request order, for the partial-success answer.
pub fn drop_oversized_spans(request: &mut ExportTraceServiceRequest, limits: &ShapeLimits) -> Vec<String> {
    let mut reasons = Vec::new();
    for resource_spans in &mut request.resource_spans {
        let resource = resource_spans.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default();
        let resource_fault = check_attributes(resource, limits).err().map(|why| format!("resource: {why}"));
        for scope_spans in &mut resource_spans.scope_spans {
            let scope = scope_spans.scope.as_ref().map(|s| s.attributes.as_slice()).unwrap_or_default();
            let fault =
                resource_fault.clone().or_else(|| check_attributes(scope, limits).err().map(|w| format!("scope: {w}")));
            scope_spans.spans.retain(|span| match fault.clone().map_or_else(|| check_span(span, limits), Err) {
                Ok(()) => true,
                Err(why) => {
                    reasons.push(format!("span {}: {why}", shown(&span.name)));
                    false
                }
            });
        }
    }
    reasons
}

/// Remove every log record over `limits`; the reasons, in request order.
pub fn drop_oversized_logs(request: &mut ExportLogsServiceRequest, limits: &ShapeLimits) -> Vec<String> {
    let mut reasons = Vec::new();
    for resource_logs in &mut request.resource_logs {
        let resource = resource_logs.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default();
        let resource_fault = check_attributes(resource, limits).err().map(|why| format!("resource: {why}"));
        for scope_logs in &mut resource_logs.scope_logs {
            let scope = scope_logs.scope.as_ref().map(|s| s.attributes.as_slice()).unwrap_or_default();
            let fault =
                resource_fault.clone().or_else(|| check_attributes(scope, limits).err().map(|w| format!("scope: {w}")));
            scope_logs.log_records.retain(|record| {
                let checked = match &fault {
                    Some(why) => Err(why.clone()),
                    None => check_attributes(&record.attributes, limits)
                        .and_then(|_| value_bytes(record.body.as_ref(), limits).map(|_| ())),
                };
                match checked {
                    Ok(()) => true,
                    Err(why) => {
                        reasons.push(format!("log record: {why}"));
                        false
                    }
                }
            });
        }
    }
    reasons
}

/// One span against the limits: the first rule it breaks.
pub fn check_span(span: &Span, limits: &ShapeLimits) -> Result<(), String> {
    let over = |what: &str, n: usize, max: usize, flag: &str| {
        format!("{n} {what}, more than the {max} this herald accepts ({flag}); the span was not stored")
    };
    if span.attributes.len() > limits.attributes {
        return Err(over("attributes", span.attributes.len(), limits.attributes, "--max-span-attributes"));
    }
    if span.events.len() > limits.events {
        return Err(over("events", span.events.len(), limits.events, "--max-span-events"));
    }
    if span.links.len() > limits.links {
        return Err(over("links", span.links.len(), limits.links, "--max-span-links"));
    }
    if span.name.len() > limits.value_bytes {
        return Err(too_long("its name", span.name.len(), limits.value_bytes));
    }
    let mut metadata = check_attributes(&span.attributes, limits)?;
    for event in &span.events {
        if event.name.len() > limits.value_bytes {
            return Err(too_long("an event name", event.name.len(), limits.value_bytes));
        }
        metadata =
            metadata.saturating_add(check_attributes(&event.attributes, limits).map_err(|w| format!("event: {w}"))?);
    }
    for link in &span.links {
        check_attributes(&link.attributes, limits).map_err(|w| format!("link: {w}"))?;
    }
    if metadata > limits.metadata_bytes {
        return Err(format!(
            "{metadata} bytes of attributes, more than the {} this herald accepts (--max-metadata-bytes); the span was not stored",
            limits.metadata_bytes
        ));
    }
    Ok(())
}

/// The bytes of keys and text in `attributes`, or the first limit they break.
fn check_attributes(attributes: &[KeyValue], limits: &ShapeLimits) -> Result<usize, String> {
    if attributes.len() > limits.attributes {
        return Err(format!(
            "{} attributes, more than the {} this herald accepts (--max-span-attributes)",
            attributes.len(),
            limits.attributes
        ));
    }
    let mut total = 0usize;
    for kv in attributes {
        total = total.saturating_add(key_bytes(&kv.key)?).saturating_add(value_bytes(kv.value.as_ref(), limits)?);
        if total > limits.metadata_bytes {
            return Err(format!("more than {} bytes of attributes (--max-metadata-bytes)", limits.metadata_bytes));
        }
    }
    Ok(total)
}

fn key_bytes(key: &str) -> Result<usize, String> {
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "attribute key {} is {} bytes, more than the {MAX_KEY_BYTES} allowed",
            shown(key),
            key.len()
        ));
    }
    Ok(key.len())
}

/// The text bytes of a value at any depth, or the first limit it breaks.
fn value_bytes(value: Option<&AnyValue>, limits: &ShapeLimits) -> Result<usize, String> {
    let len = match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.len(),
        Some(Value::BytesValue(b)) => b.len(),
        // No count limit on arrays: a creation may name thousands of parents in one; their
        // memory is priced by the in-flight budget, their text by the metadata limit.
        Some(Value::ArrayValue(a)) => {
            let mut total = 0usize;
            for v in &a.values {
                total = total.saturating_add(value_bytes(Some(v), limits)?);
            }
            return Ok(total);
        }
        Some(Value::KvlistValue(list)) => return check_attributes(&list.values, limits),
        _ => 0,
    };
    if len > limits.value_bytes {
        return Err(too_long("a value", len, limits.value_bytes));
    }
    Ok(len)
}

fn too_long(what: &str, len: usize, max: usize) -> String {
    format!("{what} is {len} bytes, more than the {max} this herald accepts (--max-value-bytes)")
}

/// A name as a message shows it: quoted, and cut short when long.
fn shown(name: &str) -> String {
    const SHOWN: usize = 64;
    match name.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}…", &name[..cut]),
        None => format!("{name:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::{int, kv, logs, pipeline_resource, string, traces, SpanBuilder};

    #[test]
    fn counts_every_part_without_building_the_request() {
        let span = SpanBuilder::creation("ingest", "e-1", 1)
            .attr("list", AnyValue { value: Some(Value::ArrayValue(Default::default())) })
            .event("helix.event.x", 2, vec![kv("a", int(1)), kv("b", int(2))])
            .link(vec![1; 16], vec![2; 8])
            .build();
        let request = traces(pipeline_resource("svc", "I"), vec![span.clone(), span.clone()]);
        let counts = count_traces(&request.encode_to_vec()).expect("valid");
        assert_eq!((counts.spans, counts.events, counts.links), (2, 2, 2));
        let resource = request.resource_spans[0].resource.as_ref().map_or(0, |r| r.attributes.len()) as u64;
        let per_span = (span.attributes.len() + 2) as u64;
        assert_eq!(counts.values, resource + 2 * per_span);
        assert!(counts.estimated_bytes() > counts.bytes * PROCESSING_FACTOR);
        let log =
            logs(pipeline_resource("svc", "I"), vec![LogRecord { body: Some(string("x")), ..Default::default() }]);
        assert_eq!(count_logs(&log.encode_to_vec()).expect("valid").log_records, 1);
        assert!(count_traces(&[0xff, 0xff]).is_err(), "not protobuf");
    }

    #[test]
    fn spans_over_a_limit_are_removed_with_the_reason_and_the_rest_kept() {
        let limits = ShapeLimits { attributes: 4, events: 1, links: 1, value_bytes: 16, metadata_bytes: 64 };
        let fine = SpanBuilder::new("fine", 1).build();
        let mut many = SpanBuilder::new("many", 2);
        for i in 0..5 {
            many = many.attr(&format!("k{i}"), int(i));
        }
        let long = SpanBuilder::new("long", 3).attr("k", string(&"x".repeat(17))).build();
        let key = SpanBuilder::new("key", 4).attr(&"k".repeat(MAX_KEY_BYTES + 1), int(1)).build();
        let events = SpanBuilder::new("events", 5).event("a", 1, vec![]).event("b", 2, vec![]).build();
        let heavy = SpanBuilder::new("heavy", 6)
            .attr("a", string(&"x".repeat(16)))
            .event("e", 1, ["b", "c", "d"].iter().map(|k| kv(k, string(&"y".repeat(16)))).collect())
            .build();
        let mut request = traces(vec![], vec![fine.clone(), many.build(), long, key, events, heavy]);
        let reasons = drop_oversized_spans(&mut request, &limits);
        let kept: Vec<&str> = request.resource_spans[0].scope_spans[0].spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(kept, ["fine"]);
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(
            reasons[0].starts_with("span \"many\": 5 attributes, more than the 4")
                && reasons[0].contains("--max-span-attributes")
        );
        assert!(reasons[1].contains("17 bytes") && reasons[1].contains("--max-value-bytes"), "{}", reasons[1]);
        assert!(reasons[2].contains("more than the 1024 allowed"), "{}", reasons[2]);
        assert!(reasons[3].contains("2 events") && reasons[3].contains("--max-span-events"), "{}", reasons[3]);
        assert!(
            reasons[4].contains("68 bytes of attributes") && reasons[4].contains("--max-metadata-bytes"),
            "{}",
            reasons[4]
        );
    }

    #[test]
    fn log_records_over_a_limit_are_removed() {
        let limits = ShapeLimits { value_bytes: 8, ..ShapeLimits::default() };
        let record = |body: &str| LogRecord { body: Some(string(body)), ..Default::default() };
        let mut request = logs(vec![], vec![record("short"), record("much too long")]);
        let reasons = drop_oversized_logs(&mut request, &limits);
        assert_eq!(request.resource_logs[0].scope_logs[0].log_records.len(), 1);
        assert!(reasons[0].starts_with("log record: a value is 13 bytes"), "{reasons:?}");
    }
}
