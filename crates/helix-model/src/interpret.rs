//! Classification of spans and log records (docs/wire.md): one decoded export request → typed
//! records. All of the wire contract lives here; it does no I/O and never fails on input:
//! a span that cannot be used is a value (`SpanClass::Rejected`), not an error.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::Link, status::StatusCode, Span};

use crate::ids::to_hex;
use crate::records::{EntityCreated, EntityEvent, EntitySpan, LogRecorded, OperationRecorded, SpanRef, Status};
use crate::render::{render_attributes, render_value};

use crate::keys::{log, HELIX_EVENT_PREFIX};
pub use crate::keys::{ENTITY_ID, ERROR_EVENT, INSTRUMENT_ID, IS_OPERATION, PARENT_IDS, PROCESS_NAME, SERVICE_NAME};

/// Keys that steer interpretation and therefore are not metadata.
const NOT_METADATA: [&str; 4] = [ENTITY_ID, INSTRUMENT_ID, PARENT_IDS, IS_OPERATION];

/// Longest entity ID accepted, in bytes: IDs are primary keys and URL path segments. The one
/// limit for both ways in: spans at ingest and `{id}` path segments of the API.
pub const MAX_ENTITY_ID_BYTES: usize = 16 * 1024;

/// What the herald makes of one span.
#[derive(Debug, Clone, PartialEq)]
pub enum SpanClass {
    /// No entity ID: no rows, forwarded unchanged.
    Passthrough,
    Creation(EntityCreated),
    Operation(OperationRecorded),
    /// An entity span that cannot be stored; the reason is told to the client.
    Rejected(String),
}

/// One span's class and its position in the request, so resolution can add links in place.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanAt {
    pub resource: usize,
    pub scope: usize,
    pub span: usize,
    pub class: SpanClass,
}

/// Every span of one export request, in request order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Interpretation {
    pub spans: Vec<SpanAt>,
}

impl Interpretation {
    /// Reasons of rejected spans, in request order.
    pub fn rejections(&self) -> impl Iterator<Item = &str> {
        self.spans.iter().filter_map(|s| match &s.class {
            SpanClass::Rejected(why) => Some(why.as_str()),
            _ => None,
        })
    }
}

/// Resource-level fallbacks shared by every span (or log record) under one resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ResourceContext {
    pub(crate) service_name: Option<String>,
    pub(crate) instrument_id: Option<String>,
    pub(crate) process_name: Option<String>,
}

impl ResourceContext {
    pub(crate) fn of(resource: Option<&Resource>) -> Self {
        let attrs = resource.map(|r| r.attributes.as_slice()).unwrap_or_default();
        ResourceContext {
            service_name: string_attr(attrs, SERVICE_NAME).map(str::to_owned),
            instrument_id: string_attr(attrs, INSTRUMENT_ID).map(str::to_owned),
            process_name: string_attr(attrs, PROCESS_NAME).map(str::to_owned),
        }
    }
}

/// How many spans a trace export holds, entity spans or not.
pub fn span_count(request: &ExportTraceServiceRequest) -> usize {
    request.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum()
}

/// How many log records a log export holds.
pub fn log_count(request: &ExportLogsServiceRequest) -> usize {
    request.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum()
}

/// Classify every span of a trace export.
pub fn interpret_traces(request: &ExportTraceServiceRequest) -> Interpretation {
    let mut spans = Vec::new();
    for (r, resource_spans) in request.resource_spans.iter().enumerate() {
        let context = ResourceContext::of(resource_spans.resource.as_ref());
        for (s, scope_spans) in resource_spans.scope_spans.iter().enumerate() {
            for (i, span) in scope_spans.spans.iter().enumerate() {
                spans.push(SpanAt { resource: r, scope: s, span: i, class: classify(&context, span) });
            }
        }
    }
    Interpretation { spans }
}

fn classify(context: &ResourceContext, span: &Span) -> SpanClass {
    let attrs = span.attributes.as_slice();
    // Only a non-empty string ID makes an entity span; an operation whose deferred ID was
    // never set carries none and is an ordinary span.
    let Some(entity_id) = string_attr(attrs, ENTITY_ID).filter(|id| !id.is_empty()) else {
        return SpanClass::Passthrough;
    };
    if let Err(why) = check_entity_id(entity_id) {
        return SpanClass::Rejected(format!("span {:?}: {why}", span.name));
    }
    if span.trace_id.len() != 16 || span.trace_id.iter().all(|b| *b == 0) {
        return SpanClass::Rejected(format!(
            "span {:?} of entity {entity_id:?}: trace_id must be 16 non-zero bytes, got {}",
            span.name,
            span.trace_id.len()
        ));
    }
    if span.span_id.len() != 8 || span.span_id.iter().all(|b| *b == 0) {
        return SpanClass::Rejected(format!(
            "span {:?} of entity {entity_id:?}: span_id must be 8 non-zero bytes, got {}",
            span.name,
            span.span_id.len()
        ));
    }

    let instrument_id = string_attr(attrs, INSTRUMENT_ID)
        .map(str::to_owned)
        .or_else(|| context.instrument_id.clone())
        .unwrap_or_default();
    let process_name = string_attr(attrs, PROCESS_NAME).map(str::to_owned).or_else(|| context.process_name.clone());
    let trace_id = to_hex(&span.trace_id);
    let span_id = to_hex(&span.span_id);
    let start_ns = clamp_ns(span.start_time_unix_nano);
    let end_ns = clamp_ns(span.end_time_unix_nano).max(start_ns);
    let events = entity_events(span, entity_id, &instrument_id, &trace_id, &span_id, start_ns);
    let failed = span.status.as_ref().is_some_and(|s| s.code == StatusCode::Error as i32)
        || events.iter().any(EntityEvent::is_error);
    let status = if failed { Status::Error } else { Status::Ok };

    let common_metadata = render_attributes(attrs, &NOT_METADATA);
    let parent_ids = parent_ids(find_attr(attrs, PARENT_IDS));
    let fields = EntitySpan {
        entity_id: entity_id.to_owned(),
        instrument_id,
        name: span.name.clone(),
        trace_id,
        span_id,
        start_ns,
        end_ns,
        parent_ids,
        metadata: common_metadata,
        service_name: context.service_name.clone(),
        process_name,
        status,
        events,
    };
    if is_operation(find_attr(attrs, IS_OPERATION)) {
        SpanClass::Operation(OperationRecorded(fields))
    } else {
        SpanClass::Creation(EntityCreated(fields))
    }
}

/// Entity IDs are caller-chosen text; control characters would break URLs, logs and the UI.
/// The reason names the ID (quoted, so control characters show as escapes) and the rule.
pub fn check_entity_id(id: &str) -> Result<(), String> {
    if id.len() > MAX_ENTITY_ID_BYTES {
        return Err(format!("entity id is {} bytes, more than the {MAX_ENTITY_ID_BYTES} allowed", id.len()));
    }
    if id.chars().any(char::is_control) {
        return Err(format!("entity id {id:?} contains control characters"));
    }
    Ok(())
}

/// `helix.*` span events, each with its own timestamp and its position among the span's events.
fn entity_events(
    span: &Span,
    entity_id: &str,
    instrument_id: &str,
    trace_id: &str,
    span_id: &str,
    span_start_ns: i64,
) -> Vec<EntityEvent> {
    span.events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.name.starts_with(HELIX_EVENT_PREFIX))
        .map(|(ordinal, e)| EntityEvent {
            entity_id: entity_id.to_owned(),
            instrument_id: instrument_id.to_owned(),
            event_name: e.name.clone(),
            // An event without a time happened, at the latest, when the span started.
            timestamp_ns: if e.time_unix_nano == 0 { span_start_ns } else { clamp_ns(e.time_unix_nano) },
            metadata: render_attributes(&e.attributes, &[]),
            trace_id: trace_id.to_owned(),
            span_id: span_id.to_owned(),
            ordinal: u32::try_from(ordinal).unwrap_or(u32::MAX),
        })
        .collect()
}

/// `helix.parent.ids`: comma-joined string or string array; trimmed, no empties, first occurrence kept.
pub fn parent_ids(value: Option<&AnyValue>) -> Vec<String> {
    let raw: Vec<String> = match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.split(',').map(str::to_owned).collect(),
        Some(Value::ArrayValue(a)) => a
            .values
            .iter()
            .flat_map(|v| match &v.value {
                // A client may send each element as "a,b" too; treat it like the joined form.
                Some(Value::StringValue(s)) => s.split(',').map(str::to_owned).collect::<Vec<_>>(),
                other => vec![render_value(Some(&AnyValue { value: other.clone() }))],
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut seen = std::collections::HashSet::with_capacity(raw.len());
    raw.into_iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty() && check_entity_id(p).is_ok())
        .filter(|p| seen.insert(p.clone()))
        .collect()
}

/// The operation marker: string `"true"` (the older client) or boolean `true`.
pub fn is_operation(value: Option<&AnyValue>) -> bool {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.trim().eq_ignore_ascii_case("true"),
        Some(Value::BoolValue(b)) => *b,
        _ => false,
    }
}

/// The value of `key`; the last occurrence wins, as in the OpenTelemetry SDKs.
fn find_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs.iter().rev().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref())
}

pub(crate) fn string_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match find_attr(attrs, key).and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => Some(s.as_str()),
        _ => None,
    }
}

/// OTLP times are u64 ns; the tables hold i64 (valid until 2262).
pub(crate) fn clamp_ns(ns: u64) -> i64 {
    i64::try_from(ns).unwrap_or(i64::MAX)
}

/// The link rule of docs/wire.md: add a link to each parent's creation span unless the span
/// already links to it (or is it). Returns how many links were added.
pub fn append_parent_links(span: &mut Span, parents: &[SpanRef]) -> usize {
    let mut added = 0;
    for parent in parents {
        let already =
            span.links.iter().any(|l| to_hex(&l.span_id) == parent.span_id && to_hex(&l.trace_id) == parent.trace_id)
                || to_hex(&span.span_id) == parent.span_id;
        if already {
            continue;
        }
        let (Some(trace_id), Some(span_id)) =
            (crate::ids::from_hex(&parent.trace_id), crate::ids::from_hex(&parent.span_id))
        else {
            continue;
        };
        span.links.push(Link { trace_id, span_id, ..Default::default() });
        added += 1;
    }
    added
}

/// Correlated log records of a log export (docs/wire.md "Logs"): empty-string attributes are absent.
pub fn interpret_logs(request: &ExportLogsServiceRequest) -> Vec<LogRecorded> {
    let mut out = Vec::new();
    for resource_logs in &request.resource_logs {
        let context = ResourceContext::of(resource_logs.resource.as_ref());
        let resource = render_attributes(
            resource_logs.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default(),
            &[],
        );
        for scope_logs in &resource_logs.scope_logs {
            for record in &scope_logs.log_records {
                let attrs = record.attributes.as_slice();
                let field = |key: &str| string_attr(attrs, key).filter(|v| !v.is_empty()).map(str::to_owned);
                let id_or = |bytes: &[u8], key: &str| {
                    if bytes.is_empty() || bytes.iter().all(|b| *b == 0) {
                        field(key)
                    } else {
                        Some(to_hex(bytes))
                    }
                };
                let time =
                    if record.time_unix_nano != 0 { record.time_unix_nano } else { record.observed_time_unix_nano };
                let observed = if record.observed_time_unix_nano != 0 { record.observed_time_unix_nano } else { time };
                let severity_number = match record.severity_number {
                    n @ 1..=24 => n,
                    _ => severity_number(&record.severity_text),
                };
                out.push(LogRecorded {
                    timestamp_ns: clamp_ns(time),
                    observed_ns: clamp_ns(observed),
                    severity: if record.severity_text.is_empty() {
                        severity_name(record.severity_number).to_owned()
                    } else {
                        record.severity_text.clone()
                    },
                    severity_number,
                    body: render_value(record.body.as_ref()),
                    trace_id: id_or(&record.trace_id, log::TRACE_ID),
                    span_id: id_or(&record.span_id, log::SPAN_ID),
                    entity_id: field(log::ENTITY_ID),
                    instrument_id: field(log::INSTRUMENT_ID).or_else(|| context.instrument_id.clone()),
                    process_name: field(log::PROCESS_NAME).or_else(|| context.process_name.clone()),
                    service_name: context.service_name.clone(),
                    source: field(log::SOURCE),
                    attributes: render_attributes(attrs, &[]),
                    resource: resource.clone(),
                });
            }
        }
    }
    out
}

/// The OTLP severity number of a record that sent only a text (Python's and the common
/// spellings): the lowest number of the range, 0 when the text names none.
pub fn severity_number(text: &str) -> i32 {
    match text.trim().to_ascii_uppercase().as_str() {
        "TRACE" => 1,
        "DEBUG" => 5,
        "INFO" | "NOTICE" => 9,
        "WARN" | "WARNING" => 13,
        "ERROR" => 17,
        "FATAL" | "CRITICAL" | "EMERGENCY" | "ALERT" => 21,
        _ => 0,
    }
}

/// Severity text from the OTLP severity number ranges.
pub fn severity_name(number: i32) -> &'static str {
    match number {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        21..=24 => "FATAL",
        _ => "UNSPECIFIED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::{traces, SpanBuilder};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    #[test]
    fn span_count_counts_every_span_of_every_resource_and_scope() {
        let mut request = traces(vec![], vec![SpanBuilder::new("a", 1).build(), SpanBuilder::new("b", 2).build()]);
        request.resource_spans.push(ResourceSpans {
            scope_spans: vec![
                ScopeSpans::default(),
                ScopeSpans { spans: vec![SpanBuilder::new("c", 3).build()], ..Default::default() },
            ],
            ..Default::default()
        });
        assert_eq!(span_count(&request), 3);
        assert_eq!(span_count(&ExportTraceServiceRequest::default()), 0);
    }

    #[test]
    fn entity_ids_up_to_the_limit_pass_and_longer_ones_say_by_how_much() {
        assert!(check_entity_id(&"x".repeat(MAX_ENTITY_ID_BYTES)).is_ok());
        let why = check_entity_id(&"x".repeat(MAX_ENTITY_ID_BYTES + 1)).expect_err("too long");
        assert_eq!(why, "entity id is 16385 bytes, more than the 16384 allowed");
        assert!(check_entity_id("a\nb").expect_err("control").contains("control characters"));
    }
}
