//! Pure conversions of stored spans for the trace APIs: decoding the stored OTLP messages,
//! regrouping spans into `ResourceSpans`/`ScopeSpans`, the protobuf canonical JSON mapping of
//! the OTLP trace messages (what Tempo's trace-by-ID API answers and
//! `google.protobuf.json_format.Parse` reads), and plain JSON values of attributes for our own API.
//!
//! The canonical mapping differs from OTLP/JSON (the wire form the `with-serde` feature of
//! `opentelemetry-proto` speaks): `bytes` fields such as trace and span IDs are base64 (not hex),
//! enums are their names, and like `MessageToJson` fields at their default value are left out.
//! 64-bit integers are strings in both.

use std::collections::HashMap;

use helix_model::SpanRecorded;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, EntityRef, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, TracesData};
use prost::Message;
use serde_json::{Map, Number, Value};

/// A stored span whose OTLP messages do not decode (a corrupt row).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("stored span {span_id} of trace {trace_id}: {what} does not decode: {reason}")]
pub struct CorruptSpan {
    pub trace_id: String,
    pub span_id: String,
    pub what: &'static str,
    pub reason: String,
}

/// The stored span and its resource, decoded.
pub fn decode(record: &SpanRecorded) -> Result<(Span, Resource), CorruptSpan> {
    let corrupt = |what: &'static str, err: prost::DecodeError| CorruptSpan {
        trace_id: record.trace_id.clone(),
        span_id: record.span_id.clone(),
        what,
        reason: err.to_string(),
    };
    let span = Span::decode(record.span_proto.as_slice()).map_err(|e| corrupt("span", e))?;
    let resource = Resource::decode(record.resource_proto.as_slice()).map_err(|e| corrupt("resource", e))?;
    Ok((span, resource))
}

/// The spans regrouped the way OTLP sends them: one `ResourceSpans` per distinct resource, one
/// `ScopeSpans` per instrumentation scope within it; groups and spans keep the order of `records`
/// (first appearance).
pub fn traces_data(records: &[SpanRecorded]) -> Result<TracesData, CorruptSpan> {
    let mut data = TracesData::default();
    // Resource bytes → index in `data.resource_spans`; (resource index, scope) → scope index.
    let mut resources: HashMap<&[u8], usize> = HashMap::new();
    let mut scopes: HashMap<(usize, &str, &str), usize> = HashMap::new();
    for record in records {
        let (span, resource) = decode(record)?;
        let r = *resources.entry(record.resource_proto.as_slice()).or_insert_with(|| {
            data.resource_spans.push(ResourceSpans {
                resource: Some(resource),
                scope_spans: Vec::new(),
                schema_url: String::new(),
            });
            data.resource_spans.len() - 1
        });
        let scope_spans = &mut data.resource_spans[r].scope_spans;
        let s = *scopes.entry((r, record.scope_name.as_str(), record.scope_version.as_str())).or_insert_with(|| {
            scope_spans.push(ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: record.scope_name.clone(),
                    version: record.scope_version.clone(),
                    attributes: Vec::new(),
                    dropped_attributes_count: 0,
                }),
                spans: Vec::new(),
                schema_url: String::new(),
            });
            scope_spans.len() - 1
        });
        scope_spans[s].spans.push(span);
    }
    Ok(data)
}

/// Standard base64 with padding (RFC 4648 §4), protobuf JSON's form of `bytes`.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Lowercase hex, the form IDs take in our own API.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A JSON object under construction that, like `MessageToJson`, leaves out proto3 fields at
/// their default value (fields with presence — messages, oneof members — are always written).
#[derive(Default)]
struct Obj(Map<String, Value>);

impl Obj {
    fn string(mut self, key: &str, value: &str) -> Self {
        if !value.is_empty() {
            self.0.insert(key.to_owned(), Value::String(value.to_owned()));
        }
        self
    }

    fn bytes(mut self, key: &str, value: &[u8]) -> Self {
        if !value.is_empty() {
            self.0.insert(key.to_owned(), Value::String(base64(value)));
        }
        self
    }

    /// `uint32`/`fixed32`: a JSON number.
    fn u32(mut self, key: &str, value: u32) -> Self {
        if value != 0 {
            self.0.insert(key.to_owned(), Value::from(value));
        }
        self
    }

    /// `uint64`/`fixed64`: a decimal string.
    fn u64(mut self, key: &str, value: u64) -> Self {
        if value != 0 {
            self.0.insert(key.to_owned(), Value::String(value.to_string()));
        }
        self
    }

    /// An enum: its name when known, else its number (as `MessageToJson` does).
    fn enumeration(mut self, key: &str, value: i32, name: Option<&str>) -> Self {
        if value != 0 {
            let json = name.map_or_else(|| Value::from(value), |name| Value::String(name.to_owned()));
            self.0.insert(key.to_owned(), json);
        }
        self
    }

    fn message(mut self, key: &str, value: Option<Value>) -> Self {
        if let Some(value) = value {
            self.0.insert(key.to_owned(), value);
        }
        self
    }

    fn repeated(mut self, key: &str, values: Vec<Value>) -> Self {
        if !values.is_empty() {
            self.0.insert(key.to_owned(), Value::Array(values));
        }
        self
    }

    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

/// A `double` in protobuf JSON: a number, or `"NaN"`, `"Infinity"`, `"-Infinity"`.
fn double(value: f64) -> Value {
    match Number::from_f64(value) {
        Some(number) => Value::Number(number),
        None if value.is_nan() => Value::String("NaN".to_owned()),
        None if value > 0.0 => Value::String("Infinity".to_owned()),
        None => Value::String("-Infinity".to_owned()),
    }
}

/// The canonical JSON of a `TracesData` (`{"resourceSpans": [...]}`).
pub fn traces_data_json(data: &TracesData) -> Value {
    Obj::default().repeated("resourceSpans", data.resource_spans.iter().map(resource_spans_json).collect()).done()
}

/// The `resourceSpans` list alone, for responses that wrap it (Tempo's `batches`).
pub fn resource_spans_list_json(data: &TracesData) -> Value {
    Value::Array(data.resource_spans.iter().map(resource_spans_json).collect())
}

fn resource_spans_json(rs: &ResourceSpans) -> Value {
    Obj::default()
        .message("resource", rs.resource.as_ref().map(resource_json))
        .repeated("scopeSpans", rs.scope_spans.iter().map(scope_spans_json).collect())
        .string("schemaUrl", &rs.schema_url)
        .done()
}

fn resource_json(resource: &Resource) -> Value {
    Obj::default()
        .repeated("attributes", resource.attributes.iter().map(key_value_json).collect())
        .u32("droppedAttributesCount", resource.dropped_attributes_count)
        .repeated("entityRefs", resource.entity_refs.iter().map(entity_ref_json).collect())
        .done()
}

fn entity_ref_json(entity: &EntityRef) -> Value {
    let strings = |values: &[String]| values.iter().cloned().map(Value::String).collect();
    Obj::default()
        .string("schemaUrl", &entity.schema_url)
        .string("type", &entity.r#type)
        .repeated("idKeys", strings(&entity.id_keys))
        .repeated("descriptionKeys", strings(&entity.description_keys))
        .done()
}

fn scope_spans_json(ss: &ScopeSpans) -> Value {
    Obj::default()
        .message("scope", ss.scope.as_ref().map(scope_json))
        .repeated("spans", ss.spans.iter().map(span_json).collect())
        .string("schemaUrl", &ss.schema_url)
        .done()
}

fn scope_json(scope: &InstrumentationScope) -> Value {
    Obj::default()
        .string("name", &scope.name)
        .string("version", &scope.version)
        .repeated("attributes", scope.attributes.iter().map(key_value_json).collect())
        .u32("droppedAttributesCount", scope.dropped_attributes_count)
        .done()
}

/// The canonical JSON of one `Span`.
pub fn span_json(span: &Span) -> Value {
    let kind_name =
        opentelemetry_proto::tonic::trace::v1::span::SpanKind::try_from(span.kind).ok().map(|kind| kind.as_str_name());
    Obj::default()
        .bytes("traceId", &span.trace_id)
        .bytes("spanId", &span.span_id)
        .string("traceState", &span.trace_state)
        .bytes("parentSpanId", &span.parent_span_id)
        .u32("flags", span.flags)
        .string("name", &span.name)
        .enumeration("kind", span.kind, kind_name)
        .u64("startTimeUnixNano", span.start_time_unix_nano)
        .u64("endTimeUnixNano", span.end_time_unix_nano)
        .repeated("attributes", span.attributes.iter().map(key_value_json).collect())
        .u32("droppedAttributesCount", span.dropped_attributes_count)
        .repeated("events", span.events.iter().map(event_json).collect())
        .u32("droppedEventsCount", span.dropped_events_count)
        .repeated("links", span.links.iter().map(link_json).collect())
        .u32("droppedLinksCount", span.dropped_links_count)
        .message("status", span.status.as_ref().map(status_json))
        .done()
}

fn event_json(event: &Event) -> Value {
    Obj::default()
        .u64("timeUnixNano", event.time_unix_nano)
        .string("name", &event.name)
        .repeated("attributes", event.attributes.iter().map(key_value_json).collect())
        .u32("droppedAttributesCount", event.dropped_attributes_count)
        .done()
}

fn link_json(link: &Link) -> Value {
    Obj::default()
        .bytes("traceId", &link.trace_id)
        .bytes("spanId", &link.span_id)
        .string("traceState", &link.trace_state)
        .repeated("attributes", link.attributes.iter().map(key_value_json).collect())
        .u32("droppedAttributesCount", link.dropped_attributes_count)
        .u32("flags", link.flags)
        .done()
}

fn status_json(status: &Status) -> Value {
    let code_name =
        opentelemetry_proto::tonic::trace::v1::status::StatusCode::try_from(status.code).ok().map(|c| c.as_str_name());
    Obj::default().string("message", &status.message).enumeration("code", status.code, code_name).done()
}

fn key_value_json(kv: &KeyValue) -> Value {
    let mut obj = Obj::default().string("key", &kv.key).message("value", kv.value.as_ref().map(any_value_json));
    if kv.key_strindex != 0 {
        obj.0.insert("keyStrindex".to_owned(), Value::from(kv.key_strindex));
    }
    obj.done()
}

fn any_value_json(value: &AnyValue) -> Value {
    let mut obj = Map::new();
    let (key, json) = match &value.value {
        None => return Value::Object(obj),
        Some(AnyValueKind::StringValue(s)) => ("stringValue", Value::String(s.clone())),
        Some(AnyValueKind::BoolValue(b)) => ("boolValue", Value::Bool(*b)),
        Some(AnyValueKind::IntValue(i)) => ("intValue", Value::String(i.to_string())),
        Some(AnyValueKind::DoubleValue(d)) => ("doubleValue", double(*d)),
        Some(AnyValueKind::ArrayValue(array)) => {
            ("arrayValue", Obj::default().repeated("values", array.values.iter().map(any_value_json).collect()).done())
        }
        Some(AnyValueKind::KvlistValue(list)) => {
            ("kvlistValue", Obj::default().repeated("values", list.values.iter().map(key_value_json).collect()).done())
        }
        Some(AnyValueKind::BytesValue(bytes)) => ("bytesValue", Value::String(base64(bytes))),
        Some(AnyValueKind::StringValueStrindex(i)) => ("stringValueStrindex", Value::from(*i)),
    };
    obj.insert(key.to_owned(), json);
    Value::Object(obj)
}

/// An attribute value as plain JSON for our own API: strings, numbers, booleans, arrays, and
/// key/value lists as objects; bytes are base64; non-finite doubles are the strings `NaN`,
/// `Infinity`, `-Infinity`; an empty value is `null`.
pub fn plain_value(value: Option<&AnyValue>) -> Value {
    match value.and_then(|v| v.value.as_ref()) {
        None | Some(AnyValueKind::StringValueStrindex(_)) => Value::Null,
        Some(AnyValueKind::StringValue(s)) => Value::String(s.clone()),
        Some(AnyValueKind::BoolValue(b)) => Value::Bool(*b),
        Some(AnyValueKind::IntValue(i)) => Value::from(*i),
        Some(AnyValueKind::DoubleValue(d)) => double(*d),
        Some(AnyValueKind::ArrayValue(array)) => {
            Value::Array(array.values.iter().map(|v| plain_value(Some(v))).collect())
        }
        Some(AnyValueKind::KvlistValue(list)) => Value::Object(plain_attributes(&list.values)),
        Some(AnyValueKind::BytesValue(bytes)) => Value::String(base64(bytes)),
    }
}

/// Attributes as one JSON object; of repeated keys the last wins (as in OTLP's own rule that
/// keys are unique, a later duplicate is what a map-based SDK would have kept).
pub fn plain_attributes(attributes: &[KeyValue]) -> Map<String, Value> {
    attributes.iter().map(|kv| (kv.key.clone(), plain_value(kv.value.as_ref()))).collect()
}

/// `SpanKind` as a lowercase word for our API (`internal`, `server`, …); unknown numbers as
/// `kind_N`.
pub fn kind_name(kind: i32) -> String {
    match kind {
        0 => "unspecified".to_owned(),
        1 => "internal".to_owned(),
        2 => "server".to_owned(),
        3 => "client".to_owned(),
        4 => "producer".to_owned(),
        5 => "consumer".to_owned(),
        other => format!("kind_{other}"),
    }
}

/// Status code as a lowercase word for our API (`unset`, `ok`, `error`); unknown as `code_N`.
pub fn status_name(code: i32) -> String {
    match code {
        0 => "unset".to_owned(),
        1 => "ok".to_owned(),
        2 => "error".to_owned(),
        other => format!("code_{other}"),
    }
}

#[cfg(test)]
mod tests {
    use helix_model::SpanRole;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use serde_json::json;

    use super::*;

    fn kv(key: &str, value: AnyValueKind) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), key_strindex: 0 }
    }

    fn sample_span() -> Span {
        Span {
            trace_id: (0u8..16).collect(),
            span_id: vec![0xff, 0xee, 0, 1, 2, 3, 4, 5],
            parent_span_id: vec![1; 8],
            flags: 257,
            name: "filter".into(),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_123_456_789,
            end_time_unix_nano: 1_700_000_000_223_456_789,
            attributes: vec![
                kv("s", AnyValueKind::StringValue("x".into())),
                kv("i", AnyValueKind::IntValue(-3)),
                kv("d", AnyValueKind::DoubleValue(f64::NAN)),
                kv("b", AnyValueKind::BoolValue(false)),
                kv("raw", AnyValueKind::BytesValue(vec![0xff])),
                kv("arr", AnyValueKind::ArrayValue(ArrayValue { values: vec![] })),
                kv("map", AnyValueKind::KvlistValue(KeyValueList { values: vec![kv("k", AnyValueKind::IntValue(0))] })),
            ],
            events: vec![Event {
                time_unix_nano: 5,
                name: "classified".into(),
                attributes: vec![kv("label", AnyValueKind::StringValue("frb".into()))],
                dropped_attributes_count: 0,
            }],
            links: vec![Link {
                trace_id: vec![2; 16],
                span_id: vec![3; 8],
                trace_state: String::new(),
                attributes: vec![],
                dropped_attributes_count: 0,
                flags: 0,
            }],
            status: Some(Status { message: "boom".into(), code: 2 }),
            ..Default::default()
        }
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, want) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE=")]
        {
            assert_eq!(base64(input.as_bytes()), want, "{input}");
        }
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    /// The values checked here are what `json_format.MessageToJson` gives for the same message.
    #[test]
    fn span_json_is_the_canonical_mapping() {
        let json = span_json(&sample_span());
        assert_eq!(json["traceId"], "AAECAwQFBgcICQoLDA0ODw==");
        assert_eq!(json["spanId"], base64(&[0xff, 0xee, 0, 1, 2, 3, 4, 5]));
        assert_eq!(json["parentSpanId"], "AQEBAQEBAQE=");
        assert_eq!(json["flags"], 257);
        assert_eq!(json["kind"], "SPAN_KIND_SERVER");
        assert_eq!(json["startTimeUnixNano"], "1700000000123456789");
        assert_eq!(json["endTimeUnixNano"], "1700000000223456789");
        assert_eq!(json["status"], json!({"message": "boom", "code": "STATUS_CODE_ERROR"}));
        let attributes = &json["attributes"];
        assert_eq!(attributes[0], json!({"key": "s", "value": {"stringValue": "x"}}));
        assert_eq!(attributes[1], json!({"key": "i", "value": {"intValue": "-3"}}));
        assert_eq!(attributes[2], json!({"key": "d", "value": {"doubleValue": "NaN"}}));
        // A oneof member is written even at its default value.
        assert_eq!(attributes[3], json!({"key": "b", "value": {"boolValue": false}}));
        assert_eq!(attributes[4], json!({"key": "raw", "value": {"bytesValue": "/w=="}}));
        assert_eq!(attributes[5], json!({"key": "arr", "value": {"arrayValue": {}}}));
        assert_eq!(
            attributes[6],
            json!({"key": "map", "value": {"kvlistValue": {"values": [{"key": "k", "value": {"intValue": "0"}}]}}})
        );
        assert_eq!(
            json["events"],
            json!([{"timeUnixNano": "5", "name": "classified",
                    "attributes": [{"key": "label", "value": {"stringValue": "frb"}}]}])
        );
        assert_eq!(json["links"], json!([{"traceId": base64(&[2; 16]), "spanId": base64(&[3; 8])}]));
        // Defaults are left out.
        for absent in ["traceState", "droppedAttributesCount", "droppedEventsCount", "droppedLinksCount"] {
            assert!(json.get(absent).is_none(), "{absent}");
        }
    }

    #[test]
    fn unknown_enum_numbers_are_written_as_numbers_and_zero_is_left_out() {
        let span = Span { kind: 9, status: Some(Status { message: String::new(), code: 0 }), ..Default::default() };
        let json = span_json(&span);
        assert_eq!(json["kind"], 9);
        assert_eq!(json["status"], json!({}));
        assert_eq!(span_json(&Span::default()), json!({}));
    }

    fn record(span: &Span, resource: &Resource, scope: &str) -> SpanRecorded {
        SpanRecorded {
            trace_id: hex(&span.trace_id),
            span_id: hex(&span.span_id),
            parent_span_id: None,
            name: span.name.clone(),
            kind: span.kind,
            start_ns: 0,
            end_ns: 0,
            status_code: 0,
            status_message: String::new(),
            service_name: None,
            process_name: None,
            instrument_id: None,
            entity_id: None,
            role: SpanRole::Span,
            span_proto: span.encode_to_vec(),
            resource_proto: resource.encode_to_vec(),
            scope_name: scope.into(),
            scope_version: "1.0".into(),
        }
    }

    #[test]
    fn spans_are_regrouped_by_resource_then_scope_in_order() {
        let service = |name: &str| Resource {
            attributes: vec![kv("service.name", AnyValueKind::StringValue(name.into()))],
            ..Default::default()
        };
        let span = |n: u8| Span { span_id: vec![n; 8], name: format!("s{n}"), ..sample_span() };
        let records = vec![
            record(&span(1), &service("a"), "x"),
            record(&span(2), &service("b"), "x"),
            record(&span(3), &service("a"), "y"),
            record(&span(4), &service("a"), "x"),
        ];
        let data = traces_data(&records).expect("decodes");
        assert_eq!(data.resource_spans.len(), 2);
        let a = &data.resource_spans[0];
        assert_eq!(a.resource, Some(service("a")));
        let names = |ss: &ScopeSpans| ss.spans.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        assert_eq!(a.scope_spans.len(), 2);
        assert_eq!(a.scope_spans[0].scope.as_ref().map(|s| s.name.as_str()), Some("x"));
        assert_eq!(names(&a.scope_spans[0]), ["s1", "s4"]);
        assert_eq!(names(&a.scope_spans[1]), ["s3"]);
        assert_eq!(names(&data.resource_spans[1].scope_spans[0]), ["s2"]);
        // NaN attributes make `Span` unequal to itself, so compare the encodings.
        assert_eq!(data.resource_spans[1].scope_spans[0].spans[0].encode_to_vec(), span(2).encode_to_vec());
        let json = traces_data_json(&data);
        assert_eq!(json["resourceSpans"][0]["scopeSpans"][0]["scope"], json!({"name": "x", "version": "1.0"}));
        assert_eq!(
            json["resourceSpans"][1]["resource"],
            json!({"attributes": [{"key": "service.name", "value": {"stringValue": "b"}}]})
        );
    }

    #[test]
    fn a_corrupt_row_names_the_span() {
        let mut bad = record(&sample_span(), &Resource::default(), "x");
        bad.span_proto = vec![0xff, 0xff, 0xff];
        let err = traces_data(&[bad]).expect_err("corrupt");
        assert_eq!(err.what, "span");
        assert!(err.to_string().contains("ffee000102030405"), "{err}");
    }

    #[test]
    fn plain_values_are_ordinary_json() {
        let span = sample_span();
        let attributes = plain_attributes(&span.attributes);
        assert_eq!(
            Value::Object(attributes),
            json!({"s": "x", "i": -3, "d": "NaN", "b": false, "raw": "/w==", "arr": [], "map": {"k": 0}})
        );
        assert_eq!(plain_value(None), Value::Null);
        assert_eq!(plain_value(Some(&AnyValue { value: Some(AnyValueKind::DoubleValue(1.5)) })), json!(1.5));
        assert_eq!((kind_name(3), status_name(2), kind_name(7)), ("client".into(), "error".into(), "kind_7".into()));
    }
}
