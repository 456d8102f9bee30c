//! The trace store's own API: `GET /api/v1/trace/{trace_id}` (every stored span of a trace, with
//! its attributes, events, resolved links and what it is to the provenance model) and
//! `GET /api/v1/traces` (trace search, newest first, paged).

use std::collections::BTreeSet;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::routing::get;
use axum::Json;
use helix_model::SpanRecorded;
use helix_store::{StoreError, StoredTrace, TraceFilter};
use serde_json::{json, Value};

use super::entity::list_page;
use super::otlp_json::{self, CorruptSpan};
use super::params::QueryParams;
use super::{ApiError, ApiResult, ApiState, Route};

/// Most spans one trace read returns; a longer trace is answered with its first spans (by start
/// time) and `partial: true`.
pub const MAX_TRACE_SPANS: usize = 10_000;
const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 1_000;

const TRACES_PARAMS: &[&str] = &[
    "service",
    "name",
    "instrument",
    "entity_id",
    "status",
    "min_duration_ns",
    "max_duration_ns",
    "from_ns",
    "to_ns",
    "limit",
    "cursor",
];

pub fn routes() -> Vec<Route> {
    vec![
        Route { method: Method::GET, path: "/api/v1/trace/{trace_id}", query: &[], handler: get(trace) },
        Route { method: Method::GET, path: "/api/v1/traces", query: TRACES_PARAMS, handler: get(traces) },
    ]
}

/// A trace ID from the `{trace_id}` path segment: 32 hex digits, not all zero; lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for TraceId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::bad("trace_id", rejection.body_text()))?;
        parse_trace_id(&raw).map(TraceId)
    }
}

/// The OTLP rule for a trace ID in its hex form: 16 bytes, not all zero.
pub fn parse_trace_id(raw: &str) -> ApiResult<String> {
    const HOW: &str = "a trace ID is 32 hex digits, e.g. 4bf92f3577b34da6a3ce929d0e0e4736";
    if raw.len() != 32 || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        let shown: String = raw.chars().take(40).collect();
        return Err(ApiError::bad("trace_id", format!("`{shown}` is not a trace ID; {HOW}")));
    }
    if raw.bytes().all(|b| b == b'0') {
        return Err(ApiError::bad("trace_id", format!("the all-zero trace ID is invalid; {HOW}")));
    }
    Ok(raw.to_ascii_lowercase())
}

/// A stored row that does not decode is the store's data going bad: a 500, logged with the row.
pub(super) fn corrupt(err: CorruptSpan) -> ApiError {
    ApiError::Internal(StoreError::internal(err.to_string()))
}

/// One span of the trace read.
pub fn span_view(record: &SpanRecorded) -> Result<Value, CorruptSpan> {
    let (span, resource) = otlp_json::decode(record)?;
    let events: Vec<Value> = span
        .events
        .iter()
        .map(|event| {
            json!({
                "name": event.name,
                "timestamp_ns": i64::try_from(event.time_unix_nano).unwrap_or(i64::MAX),
                "attributes": otlp_json::plain_attributes(&event.attributes),
            })
        })
        .collect();
    let links: Vec<Value> = span
        .links
        .iter()
        .map(|link| {
            json!({
                "trace_id": otlp_json::hex(&link.trace_id),
                "span_id": otlp_json::hex(&link.span_id),
                "attributes": otlp_json::plain_attributes(&link.attributes),
            })
        })
        .collect();
    Ok(json!({
        "span_id": record.span_id,
        "parent_span_id": record.parent_span_id,
        "name": record.name,
        "kind": otlp_json::kind_name(record.kind),
        "service_name": record.service_name,
        "process_name": record.process_name,
        "instrument_id": record.instrument_id,
        "start_ns": record.start_ns,
        "end_ns": record.end_ns,
        "duration_ns": record.duration_ns(),
        "status": {"code": otlp_json::status_name(record.status_code), "message": record.status_message},
        "attributes": otlp_json::plain_attributes(&span.attributes),
        "resource": otlp_json::plain_attributes(&resource.attributes),
        "events": events,
        "links": links,
        "entity_id": record.entity_id,
        "role": record.role.as_str(),
    }))
}

/// The body of `GET /api/v1/trace/{trace_id}`.
pub fn trace_view(trace_id: &str, trace: &StoredTrace) -> Result<Value, CorruptSpan> {
    let spans = trace.spans.iter().map(span_view).collect::<Result<Vec<_>, _>>()?;
    let entities: BTreeSet<&str> = trace.spans.iter().filter_map(|s| s.entity_id.as_deref()).collect();
    Ok(json!({
        "trace_id": trace_id,
        "spans": spans,
        "entities": entities,
        "partial": trace.partial,
    }))
}

/// The message of an unknown trace (shared with the Tempo API).
pub(super) fn unknown_trace(trace_id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "trace `{trace_id}` not found: the herald stores no span of it (spans sent before the trace store existed are not kept)"
    ))
}

/// A herald started with `--store-spans=false` keeps no spans: every trace read says so
/// instead of answering "unknown trace".
pub(super) fn require_spans(state: &ApiState) -> ApiResult<()> {
    if state.spans_stored {
        return Ok(());
    }
    Err(ApiError::NotFound(
        "spans are not stored by this herald (it runs with --store-spans=false): open the trace in the \
         site's Tempo or Grafana, where the herald forwards them"
            .into(),
    ))
}

async fn trace(
    State(state): State<ApiState>,
    TraceId(trace_id): TraceId,
    params: QueryParams,
) -> ApiResult<Json<Value>> {
    require_spans(&state)?;
    params.allow(&[])?;
    let stored = state.store.trace(&trace_id, MAX_TRACE_SPANS).await?.ok_or_else(|| unknown_trace(&trace_id))?;
    Ok(Json(trace_view(&trace_id, &stored).map_err(corrupt)?))
}

/// Turns the checked query into the store's filter.
fn filter(params: &QueryParams) -> ApiResult<TraceFilter> {
    let errors_only = match params.text("status") {
        None => false,
        Some("error") => true,
        Some(other) => {
            return Err(ApiError::bad(
                "status",
                format!("`{other}` is not supported; the only status filter is `error`"),
            ))
        }
    };
    let non_negative = |name: &str| -> ApiResult<Option<i64>> {
        match params.i64(name)? {
            Some(v) if v < 0 => Err(ApiError::bad(name, "must not be negative")),
            v => Ok(v),
        }
    };
    let min_duration_ns = non_negative("min_duration_ns")?;
    let max_duration_ns = non_negative("max_duration_ns")?;
    if let (Some(min), Some(max)) = (min_duration_ns, max_duration_ns) {
        if min > max {
            return Err(ApiError::bad("min_duration_ns", "must not be above `max_duration_ns`"));
        }
    }
    let from_ns = params.i64("from_ns")?;
    let to_ns = params.i64("to_ns")?;
    if let (Some(from), Some(to)) = (from_ns, to_ns) {
        if from > to {
            return Err(ApiError::bad("from_ns", "must not be after `to_ns`"));
        }
    }
    Ok(TraceFilter {
        service_name: params.text("service").map(str::to_owned),
        span_name: params.text("name").map(str::to_owned),
        instrument_id: params.text("instrument").map(str::to_owned),
        entity_id: params.text("entity_id").map(str::to_owned),
        errors_only,
        min_duration_ns,
        max_duration_ns,
        from_ns,
        to_ns,
    })
}

/// `{"traces": [...], "next_cursor": "…" | null}`, newest first.
async fn traces(State(state): State<ApiState>, params: QueryParams) -> ApiResult<Json<Value>> {
    require_spans(&state)?;
    let params = params.allow(TRACES_PARAMS)?;
    let filter = filter(&params)?;
    let page_request = params.page(DEFAULT_PAGE, MAX_PAGE)?;
    let page = state.store.traces(&filter, &page_request).await?;
    list_page("traces", &page)
}

#[cfg(test)]
mod tests {
    use helix_model::SpanRole;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message;

    use super::*;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(AnyValueKind::StringValue(value.into())) }),
            key_strindex: 0,
        }
    }

    fn record() -> SpanRecorded {
        let span = Span {
            trace_id: vec![0xab; 16],
            span_id: vec![0xcd; 8],
            name: "classify".into(),
            attributes: vec![kv("helix.entity.id", "cand-1")],
            events: vec![Event {
                time_unix_nano: 42,
                name: "classified".into(),
                attributes: vec![kv("label", "frb")],
                dropped_attributes_count: 0,
            }],
            links: vec![Link { trace_id: vec![1; 16], span_id: vec![2; 8], ..Default::default() }],
            ..Default::default()
        };
        SpanRecorded {
            trace_id: "ab".repeat(16),
            span_id: "cd".repeat(8),
            parent_span_id: Some("ef".repeat(8)),
            name: "classify".into(),
            kind: 1,
            start_ns: 10,
            end_ns: 25,
            status_code: 2,
            status_message: "boom".into(),
            service_name: Some("search".into()),
            process_name: None,
            instrument_id: Some("CHIME".into()),
            entity_id: Some("cand-1".into()),
            role: SpanRole::Creation,
            span_proto: span.encode_to_vec(),
            resource_proto: Resource { attributes: vec![kv("service.name", "search")], ..Default::default() }
                .encode_to_vec(),
            scope_name: "helix".into(),
            scope_version: String::new(),
        }
    }

    #[test]
    fn trace_ids_are_32_hex_digits_and_not_zero() {
        assert_eq!(parse_trace_id(&"AB".repeat(16)).ok(), Some("ab".repeat(16)));
        for bad in ["", "abc", &"g".repeat(32), &"0".repeat(32), &"a".repeat(33), "a%2Fb"] {
            let err = parse_trace_id(bad).expect_err(bad);
            assert!(err.to_string().contains("`trace_id`"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_span_shows_its_columns_attributes_events_and_links() {
        let view = span_view(&record()).expect("decodes");
        assert_eq!(view["span_id"], "cd".repeat(8));
        assert_eq!(view["parent_span_id"], "ef".repeat(8));
        assert_eq!(view["kind"], "internal");
        assert_eq!(view["duration_ns"], 15);
        assert_eq!(view["status"], json!({"code": "error", "message": "boom"}));
        assert_eq!(view["attributes"], json!({"helix.entity.id": "cand-1"}));
        assert_eq!(view["resource"], json!({"service.name": "search"}));
        assert_eq!(view["events"], json!([{"name": "classified", "timestamp_ns": 42, "attributes": {"label": "frb"}}]));
        assert_eq!(view["links"], json!([{"trace_id": "01".repeat(16), "span_id": "02".repeat(8), "attributes": {}}]));
        assert_eq!(view["role"], "creation");
        assert_eq!(view["entity_id"], "cand-1");
        let trace = trace_view(&"ab".repeat(16), &StoredTrace { spans: vec![record(), record()], partial: true })
            .expect("decodes");
        assert_eq!(trace["entities"], json!(["cand-1"]));
        assert_eq!(trace["partial"], true);
        assert_eq!(trace["spans"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn filter_maps_every_parameter() {
        let params = QueryParams::from_pairs(&[
            ("service", "search"),
            ("name", "process-request"),
            ("instrument", "CHIME"),
            ("entity_id", "cand-1"),
            ("status", "error"),
            ("min_duration_ns", "5"),
            ("max_duration_ns", "9"),
            ("from_ns", "1"),
            ("to_ns", "2"),
        ]);
        assert_eq!(
            filter(&params).expect("valid"),
            TraceFilter {
                service_name: Some("search".into()),
                span_name: Some("process-request".into()),
                instrument_id: Some("CHIME".into()),
                entity_id: Some("cand-1".into()),
                errors_only: true,
                min_duration_ns: Some(5),
                max_duration_ns: Some(9),
                from_ns: Some(1),
                to_ns: Some(2),
            }
        );
        assert_eq!(filter(&QueryParams::default()).expect("empty"), TraceFilter::default());
    }

    #[test]
    fn bad_filters_name_their_parameter() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("status", "ok")], "`status`"),
            (&[("min_duration_ns", "-1")], "`min_duration_ns`"),
            (&[("max_duration_ns", "1s")], "`max_duration_ns`"),
            (&[("min_duration_ns", "9"), ("max_duration_ns", "5")], "`min_duration_ns`"),
            (&[("from_ns", "5"), ("to_ns", "4")], "`from_ns`"),
        ];
        for (pairs, named) in cases {
            let err = filter(&QueryParams::from_pairs(pairs)).expect_err(named);
            assert!(err.to_string().contains(named), "{err}");
        }
    }
}
