//! The log search: `GET /api/v1/logs` (every filter of the store's `LogFilter`, either order,
//! paged) and `GET /api/v1/trace/{trace_id}/logs` (one trace's lines, oldest first).

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use axum::Json;
use helix_store::{LogFilter, LogOrder};
use serde_json::Value;

use super::entity::list_page;
use super::params::QueryParams;
use super::traces::TraceId;
use super::{ApiError, ApiResult, ApiState, Route};

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 5_000;
/// Longest `q`: a search text, not a document.
const MAX_TEXT_CHARS: usize = 1_024;

const LOGS_PARAMS: &[&str] = &[
    "trace_id",
    "span_id",
    "entity_id",
    "instrument",
    "service",
    "process",
    "severity",
    "q",
    "from_ns",
    "to_ns",
    "limit",
    "cursor",
    "order",
];

pub fn routes() -> Vec<Route> {
    vec![
        Route { method: Method::GET, path: "/api/v1/logs", query: LOGS_PARAMS, handler: get(logs) },
        Route {
            method: Method::GET,
            path: "/api/v1/trace/{trace_id}/logs",
            query: &LOGS_PARAMS[1..],
            handler: get(trace_logs),
        },
    ]
}

/// A minimum severity: an OTLP severity number (1–24) or a level name (`WARN` means ≥ 13).
pub fn parse_severity(raw: &str) -> ApiResult<i32> {
    const HOW: &str = "give a level (TRACE, DEBUG, INFO, WARN, ERROR, FATAL) or an OTLP severity number 1-24";
    if let Ok(n) = raw.parse::<i32>() {
        return if (1..=24).contains(&n) {
            Ok(n)
        } else {
            Err(ApiError::bad("severity", format!("{n} is not an OTLP severity number; {HOW}")))
        };
    }
    match helix_model::severity_number(raw) {
        0 => {
            let shown: String = raw.chars().take(40).collect();
            Err(ApiError::bad("severity", format!("`{shown}` is not a severity; {HOW}")))
        }
        n => Ok(n),
    }
}

/// The store filter of a checked query (`trace_id` from the path when given there).
fn filter(params: &QueryParams, trace_id: Option<String>) -> ApiResult<LogFilter> {
    let owned = |name: &str| params.text(name).map(str::to_owned);
    let trace_id = match trace_id {
        Some(t) => Some(t),
        None => params.text("trace_id").map(super::traces::parse_trace_id).transpose()?,
    };
    let span_id = match params.text("span_id") {
        Some(s) if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            return Err(ApiError::bad("span_id", "a span ID is 16 hex digits, e.g. 00f067aa0ba902b7"))
        }
        s => s.map(str::to_ascii_lowercase),
    };
    let text = owned("q");
    if text.as_ref().is_some_and(|t| t.chars().count() > MAX_TEXT_CHARS) {
        return Err(ApiError::bad("q", format!("longer than {MAX_TEXT_CHARS} characters")));
    }
    let from_ns = params.i64("from_ns")?;
    let to_ns = params.i64("to_ns")?;
    if let (Some(from), Some(to)) = (from_ns, to_ns) {
        if from > to {
            return Err(ApiError::bad("from_ns", "must not be after `to_ns`"));
        }
    }
    let order = match params.text("order") {
        None | Some("asc") => LogOrder::Asc,
        Some("desc") => LogOrder::Desc,
        Some(other) => {
            let shown: String = other.chars().take(40).collect();
            return Err(ApiError::bad(
                "order",
                format!("`{shown}` is not an order; use `asc` (oldest first) or `desc`"),
            ));
        }
    };
    Ok(LogFilter {
        trace_id,
        span_id,
        entity_id: owned("entity_id"),
        instrument_id: owned("instrument"),
        service_name: owned("service"),
        process_name: owned("process"),
        min_severity: params.text("severity").map(parse_severity).transpose()?,
        level: None,
        text,
        from_ns,
        to_ns,
        order,
    })
}

/// `GET /api/v1/logs`: `{"logs": [...], "next_cursor": ...}`, oldest first unless `order=desc`.
async fn logs(State(state): State<ApiState>, params: QueryParams) -> ApiResult<Json<Value>> {
    let params = params.allow(LOGS_PARAMS)?;
    let filter = filter(&params, None)?;
    let page = state.store.log_search(&filter, &params.page(DEFAULT_PAGE, MAX_PAGE)?).await?;
    list_page("logs", &page)
}

/// `GET /api/v1/trace/{trace_id}/logs`: the trace's lines, with the same filters.
async fn trace_logs(
    State(state): State<ApiState>,
    TraceId(trace_id): TraceId,
    params: QueryParams,
) -> ApiResult<Json<Value>> {
    let params = params.allow(&LOGS_PARAMS[1..])?;
    let filter = filter(&params, Some(trace_id))?;
    let page = state.store.log_search(&filter, &params.page(DEFAULT_PAGE, MAX_PAGE)?).await?;
    list_page("logs", &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_by_name_or_number() {
        assert_eq!(parse_severity("WARN").unwrap(), 13);
        assert_eq!(parse_severity("warning").unwrap(), 13);
        assert_eq!(parse_severity("error").unwrap(), 17);
        assert_eq!(parse_severity("21").unwrap(), 21);
        assert!(parse_severity("0").is_err());
        assert!(parse_severity("25").is_err());
        assert!(parse_severity("loud").is_err());
    }

    #[test]
    fn filters_are_checked() {
        let f = |pairs: &[(&str, &str)]| filter(&QueryParams::from_pairs(pairs), None);
        let ok = f(&[("severity", "WARN"), ("q", "disk"), ("order", "desc"), ("service", "ingest")]).unwrap();
        assert_eq!((ok.min_severity, ok.text.as_deref(), ok.order), (Some(13), Some("disk"), LogOrder::Desc));
        assert_eq!(ok.service_name.as_deref(), Some("ingest"));
        assert!(f(&[("trace_id", "xyz")]).is_err());
        assert!(f(&[("span_id", "123")]).is_err());
        assert!(f(&[("order", "sideways")]).is_err());
        assert!(f(&[("from_ns", "5"), ("to_ns", "4")]).is_err());
        assert!(f(&[("q", &"x".repeat(MAX_TEXT_CHARS + 1))]).is_err());
        let t = f(&[("trace_id", "4BF92F3577B34DA6A3CE929D0E0E4736")]).unwrap();
        assert_eq!(t.trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    }
}
