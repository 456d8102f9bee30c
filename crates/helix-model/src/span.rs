//! The stored form of every acknowledged span (the herald is also a trace store): the columns
//! queries filter on, plus the OTLP span itself so a trace read gives back exactly what was
//! sent (with the links the herald resolved).

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::ids::to_hex;
use crate::interpret::{
    clamp_ns, string_attr, Interpretation, ResourceContext, SpanClass, INSTRUMENT_ID, PROCESS_NAME,
};

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

/// The span records of one (link-resolved) trace export: one per span the herald keeps, in
/// request order. Rejected entity spans are not kept (the client was told they were not
/// accepted), and neither is a span whose trace or span ID cannot key it.
pub fn span_records(request: &ExportTraceServiceRequest, interpretation: &Interpretation) -> Vec<SpanRecorded> {
    // Resources are shared by every span under them: decode their fallbacks and encode them once.
    let mut resources: Vec<Option<(ResourceContext, Vec<u8>)>> = vec![None; request.resource_spans.len()];
    let mut out = Vec::with_capacity(interpretation.spans.len());
    for at in &interpretation.spans {
        let Some(resource_spans) = request.resource_spans.get(at.resource) else { continue };
        let Some(scope_spans) = resource_spans.scope_spans.get(at.scope) else { continue };
        let Some(span) = scope_spans.spans.get(at.span) else { continue };
        if !is_key(&span.trace_id, 16) || !is_key(&span.span_id, 8) {
            continue;
        }
        let (context, resource_proto) = resources[at.resource].get_or_insert_with(|| {
            let resource = resource_spans.resource.as_ref();
            (ResourceContext::of(resource), resource.map(Message::encode_to_vec).unwrap_or_default())
        });
        let attrs = span.attributes.as_slice();
        let (role, entity_id, instrument_id, process_name) = match &at.class {
            SpanClass::Rejected(_) => continue,
            SpanClass::Creation(c) => {
                (SpanRole::Creation, Some(c.entity_id.clone()), c.instrument_id.clone(), c.process_name.clone())
            }
            SpanClass::Operation(o) => {
                (SpanRole::Operation, Some(o.entity_id.clone()), o.instrument_id.clone(), o.process_name.clone())
            }
            // The same fallbacks an entity span gets: its own attribute, then its resource's.
            SpanClass::Passthrough => (
                SpanRole::Span,
                None,
                string_attr(attrs, INSTRUMENT_ID)
                    .map(str::to_owned)
                    .or_else(|| context.instrument_id.clone())
                    .unwrap_or_default(),
                string_attr(attrs, PROCESS_NAME).map(str::to_owned).or_else(|| context.process_name.clone()),
            ),
        };
        let start_ns = clamp_ns(span.start_time_unix_nano);
        let scope = scope_spans.scope.as_ref();
        out.push(SpanRecorded {
            trace_id: to_hex(&span.trace_id),
            span_id: to_hex(&span.span_id),
            parent_span_id: is_key(&span.parent_span_id, 8).then(|| to_hex(&span.parent_span_id)),
            name: column_text(&span.name),
            kind: span.kind,
            start_ns,
            end_ns: clamp_ns(span.end_time_unix_nano).max(start_ns),
            status_code: span.status.as_ref().map_or(0, |s| s.code),
            status_message: span.status.as_ref().map(|s| column_text(&s.message)).unwrap_or_default(),
            service_name: context.service_name.as_deref().map(column_text),
            process_name: process_name.as_deref().map(column_text),
            // "" is the wire fallback for "no instrument".
            instrument_id: Some(column_text(&instrument_id)).filter(|i| !i.is_empty()),
            entity_id,
            role,
            span_proto: span.encode_to_vec(),
            resource_proto: resource_proto.clone(),
            scope_name: scope.map(|s| column_text(&s.name)).unwrap_or_default(),
            scope_version: scope.map(|s| column_text(&s.version)).unwrap_or_default(),
        });
    }
    out
}

/// A query column's text: NUL, which PostgreSQL text cannot hold (and which would fail the
/// whole export there), becomes U+FFFD. The stored span keeps the original bytes.
fn column_text(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_owned()
    }
}

/// An ID of the expected length that is not all zeros (the OTLP "invalid" value).
fn is_key(id: &[u8], len: usize) -> bool {
    id.len() == len && id.iter().any(|b| *b != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::{pipeline_resource, string, traces, SpanBuilder};
    use crate::interpret::interpret_traces;
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::Span;

    fn records(request: &ExportTraceServiceRequest) -> Vec<SpanRecorded> {
        span_records(request, &interpret_traces(request))
    }

    #[test]
    fn every_kind_of_span_becomes_a_record_with_its_role_and_entity() {
        let creation = SpanBuilder::creation("detect", "cand-1", 1).error_status().build();
        let operation = SpanBuilder::operation("archive", "cand-1", 2).build();
        let mut child = SpanBuilder::new("filter", 3).trace(creation.trace_id.clone()).build();
        child.parent_span_id = creation.span_id.clone();
        let plain = SpanBuilder::new("process-request", 4).instrument("OTHER").build();
        let mut request = traces(
            pipeline_resource("svc", "CHIME"),
            vec![creation.clone(), operation.clone(), child.clone(), plain.clone()],
        );
        request.resource_spans[0].scope_spans[0].scope =
            Some(InstrumentationScope { name: "helix".into(), version: "1.2".into(), ..Default::default() });
        let got = records(&request);
        let roles: Vec<(SpanRole, Option<&str>, Option<&str>)> =
            got.iter().map(|r| (r.role, r.entity_id.as_deref(), r.instrument_id.as_deref())).collect();
        assert_eq!(
            roles,
            [
                (SpanRole::Creation, Some("cand-1"), Some("CHIME")),
                (SpanRole::Operation, Some("cand-1"), Some("CHIME")),
                (SpanRole::Span, None, Some("CHIME")),
                (SpanRole::Span, None, Some("OTHER")),
            ]
        );
        let c = &got[0];
        assert_eq!(c.trace_id, to_hex(&creation.trace_id));
        assert_eq!(c.span_id, to_hex(&creation.span_id));
        assert_eq!(c.parent_span_id, None);
        assert_eq!(
            (c.name.as_str(), c.start_ns, c.end_ns),
            ("detect", 1_700_000_000_000_001_000, 1_700_000_000_000_001_500)
        );
        assert_eq!((c.status_code, c.status_message.as_str()), (2, "failed"));
        assert!(c.is_error());
        assert_eq!(c.service_name.as_deref(), Some("svc"));
        assert_eq!((c.scope_name.as_str(), c.scope_version.as_str()), ("helix", "1.2"));
        assert_eq!(got[2].parent_span_id.as_deref(), Some(c.span_id.as_str()));
        // The span and resource round-trip exactly.
        assert_eq!(Span::decode(got[3].span_proto.as_slice()).unwrap(), plain);
        let resource = Resource::decode(got[1].resource_proto.as_slice()).unwrap();
        assert_eq!(Some(resource), request.resource_spans[0].resource);
    }

    #[test]
    fn links_added_by_resolution_are_in_the_stored_span() {
        let mut request = traces(pipeline_resource("svc", "CHIME"), vec![SpanBuilder::creation("s", "e", 1).build()]);
        let interpretation = interpret_traces(&request);
        let parent = crate::SpanRef { trace_id: "ab".repeat(16), span_id: "cd".repeat(8) };
        crate::interpret::append_parent_links(&mut request.resource_spans[0].scope_spans[0].spans[0], &[parent]);
        let got = span_records(&request, &interpretation);
        let span = Span::decode(got[0].span_proto.as_slice()).unwrap();
        assert_eq!(span.links.len(), 1);
        assert_eq!(to_hex(&span.links[0].span_id), "cd".repeat(8));
    }

    #[test]
    fn rejected_and_unkeyable_spans_are_not_kept() {
        let bad_entity = SpanBuilder::creation("s", "a\nb", 1).build();
        let mut no_span_id = SpanBuilder::new("x", 2).build();
        no_span_id.span_id = vec![0; 8];
        let mut short_trace = SpanBuilder::new("y", 3).build();
        short_trace.trace_id = vec![1; 4];
        let mut ok = SpanBuilder::new("z\0", 4).attr("helix.process.name", string("P")).build();
        ok.status = Some(opentelemetry_proto::tonic::trace::v1::Status { message: "a\0b".into(), code: 2 });
        let request = traces(vec![], vec![bad_entity, no_span_id, short_trace, ok]);
        let got = records(&request);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "z\u{FFFD}", "no NUL in a query column");
        assert_eq!(got[0].status_message, "a\u{FFFD}b");
        assert_eq!(Span::decode(got[0].span_proto.as_slice()).unwrap().name, "z\0", "the span keeps it");
        assert_eq!(got[0].process_name.as_deref(), Some("P"));
        assert_eq!((got[0].service_name.as_deref(), got[0].instrument_id.as_deref()), (None, None));
        assert!(got[0].resource_proto.is_empty() || Resource::decode(got[0].resource_proto.as_slice()).is_ok());
    }
}
