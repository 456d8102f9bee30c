//! Fuzz target: arbitrary bytes and arbitrary well-formed requests through decode + interpret
//! + the link rule. Any panic is a bug: the herald must never panic on input.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use helix_model::interpret::{append_parent_links, interpret_logs, interpret_traces, SpanClass};
use helix_model::SpanRef;
use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, ArrayValue, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::Event, span::Link, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

/// Keys with meaning are drawn often, so structured inputs reach every branch of wire.md.
const KEYS: &[&str] = &[
    "helix.entity.id",
    "helix.instrument.id",
    "helix.parent.ids",
    "helix.entity.is_operation",
    "helix.process.name",
    "helix.log.entity_id",
    "service.name",
    "message",
    "exception.message",
    "score",
];
const EVENT_NAMES: &[&str] = &["helix.error", "helix.event.x", "exception", "helix.", "other"];

fn value(u: &mut Unstructured, depth: u8) -> arbitrary::Result<AnyValue> {
    let v = match u.int_in_range(0..=7)? {
        0 => Value::StringValue(String::arbitrary(u)?),
        1 => Value::IntValue(i64::arbitrary(u)?),
        2 => Value::DoubleValue(f64::arbitrary(u)?),
        3 => Value::BoolValue(bool::arbitrary(u)?),
        4 => Value::BytesValue(Vec::arbitrary(u)?),
        5 if depth < 3 => Value::ArrayValue(ArrayValue {
            values: (0..u.int_in_range(0..=4)?).map(|_| value(u, depth + 1)).collect::<Result<_, _>>()?,
        }),
        6 if depth < 3 => Value::KvlistValue(KeyValueList { values: attrs(u, depth + 1)? }),
        _ => Value::StringValue(["a,b", " x , ,y", "true", "", "p1,p1,p2"][u.int_in_range(0..=4)?].to_owned()),
    };
    Ok(AnyValue { value: if u.ratio(1, 20)? { None } else { Some(v) } })
}

fn attrs(u: &mut Unstructured, depth: u8) -> arbitrary::Result<Vec<KeyValue>> {
    (0..u.int_in_range(0..=6)?)
        .map(|_| {
            let key = if u.ratio(3, 4)? {
                KEYS[u.int_in_range(0..=KEYS.len() - 1)?].to_owned()
            } else {
                String::arbitrary(u)?
            };
            Ok(KeyValue { key, value: Some(value(u, depth)?), ..Default::default() })
        })
        .collect()
}

fn span(u: &mut Unstructured) -> arbitrary::Result<Span> {
    let id = |u: &mut Unstructured, n: usize| -> arbitrary::Result<Vec<u8>> {
        let len = if u.ratio(9, 10)? { n } else { u.int_in_range(0..=20)? };
        (0..len).map(|_| u8::arbitrary(u)).collect()
    };
    Ok(Span {
        name: String::arbitrary(u)?,
        trace_id: id(u, 16)?,
        span_id: id(u, 8)?,
        start_time_unix_nano: u64::arbitrary(u)?,
        end_time_unix_nano: u64::arbitrary(u)?,
        attributes: attrs(u, 0)?,
        events: (0..u.int_in_range(0..=4)?)
            .map(|_| {
                Ok(Event {
                    name: EVENT_NAMES[u.int_in_range(0..=EVENT_NAMES.len() - 1)?].to_owned(),
                    time_unix_nano: u64::arbitrary(u)?,
                    attributes: attrs(u, 0)?,
                    ..Default::default()
                })
            })
            .collect::<arbitrary::Result<_>>()?,
        links: (0..u.int_in_range(0..=2)?)
            .map(|_| Ok(Link { trace_id: id(u, 16)?, span_id: id(u, 8)?, ..Default::default() }))
            .collect::<arbitrary::Result<_>>()?,
        status: if bool::arbitrary(u)? {
            Some(Status { code: u.int_in_range(0..=3)?, message: String::new() })
        } else {
            None
        },
        ..Default::default()
    })
}

fn request(u: &mut Unstructured) -> arbitrary::Result<ExportTraceServiceRequest> {
    Ok(ExportTraceServiceRequest {
        resource_spans: (0..u.int_in_range(0..=2)?)
            .map(|_| {
                Ok(ResourceSpans {
                    resource: Some(Resource { attributes: attrs(u, 0)?, ..Default::default() }),
                    scope_spans: vec![ScopeSpans {
                        spans: (0..u.int_in_range(0..=5)?).map(|_| span(u)).collect::<Result<_, _>>()?,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
            })
            .collect::<arbitrary::Result<_>>()?,
    })
}

/// Interpret, then apply the link rule with every creation of the request as a known parent.
fn exercise(mut req: ExportTraceServiceRequest) {
    let interpretation = interpret_traces(&req);
    let known: Vec<SpanRef> = interpretation
        .spans
        .iter()
        .filter_map(|at| match &at.class {
            SpanClass::Creation(c) => Some(SpanRef { trace_id: c.trace_id.clone(), span_id: c.span_id.clone() }),
            _ => None,
        })
        .collect();
    for at in &interpretation.spans {
        let span = &mut req.resource_spans[at.resource].scope_spans[at.scope].spans[at.span];
        let before = span.links.len();
        let added = append_parent_links(span, &known);
        assert_eq!(span.links.len(), before + added);
        // The rule is idempotent: a second pass adds nothing.
        assert_eq!(append_parent_links(span, &known), 0);
    }
}

fuzz_target!(|data: &[u8]| {
    // 1. Raw bytes as each wire encoding the receivers accept.
    if let Ok(req) = ExportTraceServiceRequest::decode(data) {
        exercise(req);
    }
    if let Ok(req) = serde_json::from_slice::<ExportTraceServiceRequest>(data) {
        exercise(req);
    }
    if let Ok(req) = ExportLogsServiceRequest::decode(data) {
        let _ = interpret_logs(&req);
    }
    // 2. The same bytes as the seed of a well-formed request rich in helix attributes.
    let mut u = Unstructured::new(data);
    if let Ok(req) = request(&mut u) {
        // Round-trip through protobuf as a receiver would see it.
        let bytes = req.encode_to_vec();
        let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("our own encoding decodes");
        exercise(decoded);
    }
});
