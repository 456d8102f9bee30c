//! The part of Grafana Tempo's HTTP read API that Grafana's Tempo data source uses, so the herald
//! can be added to Grafana as a Tempo data source: trace by ID (`/api/traces/{traceID}`,
//! `/api/v2/traces/{traceID}`; protobuf canonical JSON, or protobuf with
//! `Accept: application/protobuf`), search by tags (`/api/search`, with a small TraceQL subset in
//! `q`), the searchable tag names, and `/api/echo`. docs/api.md states the subset.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use helix_store::{PageRequest, TraceFilter};
use prost::Message;
use serde_json::{json, Value};

use super::otlp_json;
use super::params::QueryParams;
use super::traces::{corrupt, require_spans, unknown_trace, MAX_TRACE_SPANS};
use super::{ApiError, ApiResult, ApiState, Route};

const TRACE_PARAMS: &[&str] = &["start", "end"];
const SEARCH_PARAMS: &[&str] = &["q", "tags", "minDuration", "maxDuration", "limit", "start", "end", "spss"];
const DEFAULT_SEARCH_LIMIT: u64 = 20;
const MAX_SEARCH_LIMIT: u64 = 1_000;
const NS_PER_S: i64 = 1_000_000_000;
const PROTOBUF: &str = "application/protobuf";

/// The tags search understands: (tag, what it filters).
pub const SEARCH_TAGS: &[&str] = &["service.name", "name", "status", "helix.instrument.id", "helix.entity.id"];

pub fn routes() -> Vec<Route> {
    vec![
        Route { method: Method::GET, path: "/api/echo", query: &[], handler: get(echo) },
        Route { method: Method::GET, path: "/api/traces/{traceID}", query: TRACE_PARAMS, handler: get(trace_v1) },
        Route { method: Method::GET, path: "/api/v2/traces/{traceID}", query: TRACE_PARAMS, handler: get(trace_v2) },
        Route { method: Method::GET, path: "/api/search", query: SEARCH_PARAMS, handler: get(search) },
        Route { method: Method::GET, path: "/api/search/tags", query: &["scope", "start", "end"], handler: get(tags) },
    ]
}

/// Grafana's data-source test.
async fn echo() -> &'static str {
    "echo"
}

/// A trace ID as Tempo takes it: up to 32 hex digits, left-padded with zeros to 32; lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempoTraceId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for TempoTraceId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::bad("traceID", rejection.body_text()))?;
        parse_trace_id(&raw).map(TempoTraceId)
    }
}

pub fn parse_trace_id(raw: &str) -> ApiResult<String> {
    if raw.is_empty() || raw.len() > 32 || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        let shown: String = raw.chars().take(40).collect();
        return Err(ApiError::bad("traceID", format!("`{shown}` is not a trace ID (1 to 32 hex digits)")));
    }
    Ok(format!("{:0>32}", raw.to_ascii_lowercase()))
}

/// True when the client asks for protobuf (Grafana sends `Accept: application/protobuf`).
pub fn wants_protobuf(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|range| {
        let media = range.split(';').next().unwrap_or("").trim();
        media.eq_ignore_ascii_case(PROTOBUF) || media.eq_ignore_ascii_case("application/x-protobuf")
    })
}

fn protobuf_response(bytes: Vec<u8>) -> Response {
    let mut response = bytes.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
    response
}

/// The stored spans of a trace regrouped into OTLP `TracesData`, and whether the span cap cut it.
async fn load(
    state: &ApiState,
    trace_id: &str,
) -> ApiResult<(opentelemetry_proto::tonic::trace::v1::TracesData, bool)> {
    require_spans(state)?;
    let stored = state.store.trace(trace_id, MAX_TRACE_SPANS).await?.ok_or_else(|| unknown_trace(trace_id))?;
    let data = otlp_json::traces_data(&stored.spans).map_err(corrupt)?;
    Ok((data, stored.partial))
}

/// `{"batches": [ResourceSpans…]}` (Tempo's `Trace` message; the protobuf form has the same
/// layout as OTLP `TracesData`). `start`/`end` are accepted and ignored: the ID is the key.
async fn trace_v1(
    State(state): State<ApiState>,
    TempoTraceId(trace_id): TempoTraceId,
    headers: HeaderMap,
    params: QueryParams,
) -> ApiResult<Response> {
    params.allow_extra(TRACE_PARAMS)?;
    let (data, _partial) = load(&state, &trace_id).await?;
    if wants_protobuf(&headers) {
        return Ok(protobuf_response(data.encode_to_vec()));
    }
    Ok(Json(json!({ "batches": otlp_json::resource_spans_list_json(&data) })).into_response())
}

/// `{"trace": {"resourceSpans": […]}}`, plus `"status": "PARTIAL"` and a message when the span
/// cap cut the trace. The protobuf form is the response message with the trace as field 1.
async fn trace_v2(
    State(state): State<ApiState>,
    TempoTraceId(trace_id): TempoTraceId,
    headers: HeaderMap,
    params: QueryParams,
) -> ApiResult<Response> {
    params.allow_extra(TRACE_PARAMS)?;
    let (data, partial) = load(&state, &trace_id).await?;
    if wants_protobuf(&headers) {
        let mut buf = Vec::with_capacity(data.encoded_len() + 8);
        prost::encoding::message::encode(1, &data, &mut buf);
        return Ok(protobuf_response(buf));
    }
    let mut body = json!({ "trace": otlp_json::traces_data_json(&data) });
    if partial {
        body["status"] = json!("PARTIAL");
        body["message"] = json!(format!("the trace has more than {MAX_TRACE_SPANS} spans; the first are shown"));
    }
    Ok(Json(body).into_response())
}

/// A Go duration (`300ms`, `1.5s`, `2h45m`, `0`) in nanoseconds; negative durations are refused.
pub fn parse_go_duration(raw: &str) -> Result<i64, String> {
    let bad = || format!("`{raw}` is not a duration (e.g. 100ms, 1.5s, 2m, 1h30m; units ns, us, ms, s, m, h)");
    let text = raw.strip_prefix('+').unwrap_or(raw);
    if text.starts_with('-') {
        return Err(format!("`{raw}` is negative"));
    }
    if text == "0" {
        return Ok(0);
    }
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let whole_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (whole, after) = rest.split_at(whole_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(after) => {
                let len = after.bytes().take_while(u8::is_ascii_digit).count();
                after.split_at(len)
            }
            None => ("", after),
        };
        if whole.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        // At most 19 digits are kept of each part; more cannot change an i64 result's validity.
        let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
        let mut value = whole.checked_mul(scale).ok_or_else(bad)?;
        if !frac.is_empty() {
            let frac = &frac[..frac.len().min(18)];
            let digits: u128 = frac.parse().map_err(|_| bad())?;
            value += digits * scale / 10u128.pow(frac.len() as u32);
        }
        total = total.checked_add(value).ok_or_else(bad)?;
        if total > i64::MAX as u128 {
            return Err(format!("`{raw}` is too long a duration"));
        }
        rest = after;
    }
    i64::try_from(total).map_err(|_| bad())
}

/// `key=value` pairs of a logfmt string; values may be double-quoted with `\"` and `\\` escapes.
pub fn parse_logfmt(raw: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = raw.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(format!("`{key}` has no value (write key=value)"));
        }
        if key.is_empty() {
            return Err("a tag has an empty name (write key=value)".to_owned());
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("the quoted value of `{key}` is not closed")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some('t') => value.push('\t'),
                        Some(c) => value.push(c),
                        None => return Err(format!("the quoted value of `{key}` is not closed")),
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        pairs.push((key, value));
    }
}

/// Where one searchable tag goes in the store's filter.
fn apply_tag(filter: &mut TraceFilter, key: &str, value: &str, param: &str) -> ApiResult<()> {
    let unsupported = || {
        let supported = if param == "q" {
            TRACEQL_SUBSET.to_owned()
        } else {
            format!("the searchable tags are {}", SEARCH_TAGS.join(", "))
        };
        ApiError::bad(param, format!("`{key}` cannot be searched; {supported}"))
    };
    let slot = match key {
        "service.name" | "resource.service.name" | ".service.name" => &mut filter.service_name,
        "name" | "span.name" => &mut filter.span_name,
        "helix.instrument.id"
        | "span.helix.instrument.id"
        | "resource.helix.instrument.id"
        | ".helix.instrument.id" => &mut filter.instrument_id,
        "helix.entity.id" | "span.helix.entity.id" | ".helix.entity.id" => &mut filter.entity_id,
        "status" | "status.code" => {
            if value != "error" {
                return Err(ApiError::bad(param, format!("`{key}={value}` is not supported; only `{key}=error` is")));
            }
            filter.errors_only = true;
            return Ok(());
        }
        "error" => {
            if value != "true" {
                return Err(ApiError::bad(param, format!("`error={value}` is not supported; only `error=true` is")));
            }
            filter.errors_only = true;
            return Ok(());
        }
        _ => return Err(unsupported()),
    };
    if slot.is_some() {
        return Err(ApiError::bad(param, format!("`{key}` is given more than once")));
    }
    *slot = Some(value.to_owned());
    Ok(())
}

const TRACEQL_SUBSET: &str = "TraceQL is supported only as one span set of conditions joined by &&: \
    `{ resource.service.name = \"x\" && name = \"y\" && status = error && duration > 100ms }` \
    (fields resource.service.name, name, status, duration, span.helix.instrument.id, span.helix.entity.id; \
    = for text, >, >=, <, <= for duration); or use `tags` (logfmt)";

/// The TraceQL subset of `q`: `{}` or `{ cond && cond … }`.
pub fn apply_traceql(filter: &mut TraceFilter, raw: &str) -> ApiResult<()> {
    let unsupported = |why: &str| ApiError::bad("q", format!("{why}; {TRACEQL_SUBSET}"));
    let body = raw
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or_else(|| unsupported("the query is not one span set `{ … }`"))?;
    if body.contains(['{', '}', '|']) || body.contains("||") {
        return Err(unsupported("pipelines, `||` and several span sets are not supported"));
    }
    if body.trim().is_empty() {
        return Ok(());
    }
    for condition in body.split("&&") {
        let condition = condition.trim();
        let op_at =
            condition.find(['=', '>', '<', '!', '~']).ok_or_else(|| unsupported("a condition has no operator"))?;
        let (field, rest) = condition.split_at(op_at);
        let op_len = rest.bytes().take_while(|b| b"=<>!~".contains(b)).count();
        let (op, value) = rest.split_at(op_len);
        let (field, value) = (field.trim(), value.trim());
        if field == "duration" {
            let ns = parse_go_duration(value).map_err(|why| ApiError::bad("q", why))?;
            match op {
                ">" => filter.min_duration_ns = Some(ns.saturating_add(1)),
                ">=" => filter.min_duration_ns = Some(ns),
                "<" => filter.max_duration_ns = Some(ns.saturating_sub(1)),
                "<=" => filter.max_duration_ns = Some(ns),
                _ => return Err(unsupported(&format!("`duration {op}` is not supported"))),
            }
            continue;
        }
        if op != "=" {
            return Err(unsupported(&format!("`{field} {op}` is not supported")));
        }
        let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            Some(quoted) => quoted.replace("\\\"", "\"").replace("\\\\", "\\"),
            None if field == "status" => value.to_owned(),
            None => return Err(unsupported(&format!("the value of `{field}` is not a quoted string"))),
        };
        apply_tag(filter, field, &value, "q")?;
    }
    Ok(())
}

/// `start` and `end` (unix seconds, as Tempo takes them) in ns, checked in order.
fn window(params: &QueryParams) -> ApiResult<(Option<i64>, Option<i64>)> {
    let seconds = |name: &str| -> ApiResult<Option<i64>> {
        match params.i64(name)? {
            Some(s) if s < 0 => Err(ApiError::bad(name, "must not be negative (unix seconds)")),
            Some(s) => s
                .checked_mul(NS_PER_S)
                .map(Some)
                .ok_or_else(|| ApiError::bad(name, format!("at most {} (unix seconds)", i64::MAX / NS_PER_S))),
            None => Ok(None),
        }
    };
    let (start, end) = (seconds("start")?, seconds("end")?);
    if let (Some(start), Some(end)) = (start, end) {
        if start > end {
            return Err(ApiError::bad("start", "must not be after `end`"));
        }
    }
    Ok((start, end))
}

/// Tempo's search parameters as the store's filter and a page size.
pub fn search_request(params: &QueryParams) -> ApiResult<(TraceFilter, usize)> {
    let mut filter = TraceFilter::default();
    if let Some(q) = params.text("q") {
        apply_traceql(&mut filter, q)?;
    }
    if let Some(tags) = params.text("tags") {
        for (key, value) in parse_logfmt(tags).map_err(|why| ApiError::bad("tags", why))? {
            apply_tag(&mut filter, &key, &value, "tags")?;
        }
    }
    let duration = |name: &str| {
        params.text(name).map(|raw| parse_go_duration(raw).map_err(|why| ApiError::bad(name, why))).transpose()
    };
    if let Some(min) = duration("minDuration")? {
        filter.min_duration_ns = Some(min);
    }
    if let Some(max) = duration("maxDuration")? {
        filter.max_duration_ns = Some(max);
    }
    if let (Some(min), Some(max)) = (filter.min_duration_ns, filter.max_duration_ns) {
        if min > max {
            return Err(ApiError::bad("minDuration", "must not be above `maxDuration`"));
        }
    }
    let (start, end) = window(params)?;
    // Grafana sends spans-per-span-set; every span of a trace is returned, but a value that
    // is not a count is still an error.
    params.count("spss", 0, u64::MAX >> 1)?;
    filter.from_ns = start;
    // `end` is a whole second and inclusive: the window runs to the end of that second.
    filter.to_ns = end.map(|end| end.saturating_add(NS_PER_S));
    // Tempo reads 0 as "the default".
    let limit = match params.count("limit", 0, MAX_SEARCH_LIMIT)? {
        None | Some(0) => DEFAULT_SEARCH_LIMIT,
        Some(limit) => limit,
    };
    Ok((filter, usize::try_from(limit).unwrap_or(20)))
}

/// `{"traces": [{"traceID", "rootServiceName", "rootTraceName", "startTimeUnixNano", "durationMs"}]}`,
/// newest first.
async fn search(State(state): State<ApiState>, params: QueryParams) -> ApiResult<Json<Value>> {
    require_spans(&state)?;
    let params = params.allow_extra(SEARCH_PARAMS)?;
    let (filter, limit) = search_request(&params)?;
    let page = state.store.traces(&filter, &PageRequest::first(limit)).await?;
    let traces: Vec<Value> = page
        .items
        .iter()
        .map(|t| {
            json!({
                "traceID": t.trace_id,
                "rootServiceName": t.root_service.as_deref().unwrap_or("<unknown service>"),
                "rootTraceName": t.root_name,
                "startTimeUnixNano": t.start_ns.to_string(),
                "durationMs": t.duration_ns / 1_000_000,
            })
        })
        .collect();
    Ok(Json(json!({ "traces": traces })))
}

/// `{"tagNames": [...]}`: the tags `/api/search` understands (Grafana's tag autocompletion).
async fn tags(params: QueryParams) -> ApiResult<Json<Value>> {
    let params = params.allow_extra(&["scope", "start", "end"])?;
    // The tag names do not depend on the window, but a malformed one is still refused.
    window(&params)?;
    Ok(Json(json!({ "tagNames": SEARCH_TAGS })))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{HeaderValue, Request, StatusCode};

    use super::*;

    async fn get(uri: &str) -> (StatusCode, String) {
        use tower::ServiceExt;
        let app = super::super::app(super::super::fake::FakeStore::empty().state());
        let request = Request::builder().uri(uri).body(Body::empty()).expect("request");
        let response = app.oneshot(request).await.expect("infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn the_routes_answer_like_tempo() {
        assert_eq!(get("/api/echo").await, (StatusCode::OK, "echo".to_owned()));
        for uri in ["/api/traces/4bf92f3577b34da6a3ce929d0e0e4736", "/api/v2/traces/abc?start=1&end=2"] {
            let (status, body) = get(uri).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
            assert!(body.contains("not found"), "{body}");
        }
        let (status, body) = get("/api/traces/nothex").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("`traceID`"), "{body}");
        let (status, body) = get("/api/search?q=%7B%20span.http.status_code%20%3D%20500%20%7D").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("TraceQL is supported only as"), "{body}");
        assert_eq!(
            get("/api/search?tags=service.name%3Dx&cachebuster=1").await,
            (StatusCode::OK, r#"{"traces":[]}"#.to_owned())
        );
        // The window of the tag names and spans-per-span-set are checked like search's.
        for (uri, named) in [
            ("/api/search/tags?start=9223372036854775807", "`start`: at most 9223372036 (unix seconds)"),
            ("/api/search/tags?start=5&end=4", "`start`: must not be after `end`"),
            ("/api/search?spss=AAA", "`spss`"),
        ] {
            let (status, body) = get(uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert!(body.contains(named), "{uri}: {body}");
        }
        assert_eq!(get("/api/search/tags?start=1&end=2&spss=3").await.0, StatusCode::OK);
        let (status, body) = get("/api/v1/trace/xyz").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("`trace_id`"), "{body}");
        let (status, body) = get("/api/v1/trace/4bf92f3577b34da6a3ce929d0e0e4736").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("trace `4bf92f3577b34da6a3ce929d0e0e4736` not found"), "{body}");
        let (status, body) = get("/api/v1/traces?limt=5").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("`limt`"), "{body}");
        assert_eq!(get("/api/v1/traces").await, (StatusCode::OK, r#"{"next_cursor":null,"traces":[]}"#.to_owned()));
    }

    #[test]
    fn go_durations_parse_to_nanoseconds() {
        for (raw, ns) in [
            ("0", 0),
            ("100ms", 100_000_000),
            ("1s", NS_PER_S),
            ("1.5s", 1_500_000_000),
            ("2h45m", (2 * 3600 + 45 * 60) * NS_PER_S),
            ("10us", 10_000),
            ("10\u{b5}s", 10_000),
            ("7ns", 7),
            (".5m", 30 * NS_PER_S),
            ("+3s", 3 * NS_PER_S),
        ] {
            assert_eq!(parse_go_duration(raw), Ok(ns), "{raw}");
        }
        for bad in ["", "5", "1x", "ms", "1.s.", "-1s", "99999999999h", "1e3s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn logfmt_pairs_with_quotes_and_escapes() {
        let pairs = parse_logfmt(r#" service.name=ingest  name="process request" x="a\"b" "#).expect("parses");
        assert_eq!(
            pairs,
            [
                ("service.name".to_owned(), "ingest".to_owned()),
                ("name".to_owned(), "process request".to_owned()),
                ("x".to_owned(), "a\"b".to_owned())
            ]
        );
        assert!(parse_logfmt("bare").is_err());
        assert!(parse_logfmt("k=\"open").is_err());
        assert_eq!(parse_logfmt("").ok(), Some(vec![]));
    }

    #[test]
    fn search_parameters_become_the_store_filter() {
        let params = QueryParams::from_pairs(&[
            ("tags", "service.name=search name=process-request status=error helix.entity.id=cand-1"),
            ("minDuration", "100ms"),
            ("maxDuration", "2s"),
            ("start", "1700000000"),
            ("end", "1700000060"),
            ("limit", "5"),
        ]);
        let (filter, limit) = search_request(&params).expect("valid");
        assert_eq!(
            filter,
            TraceFilter {
                service_name: Some("search".into()),
                span_name: Some("process-request".into()),
                instrument_id: None,
                entity_id: Some("cand-1".into()),
                errors_only: true,
                min_duration_ns: Some(100_000_000),
                max_duration_ns: Some(2 * NS_PER_S),
                from_ns: Some(1_700_000_000 * NS_PER_S),
                to_ns: Some(1_700_000_061 * NS_PER_S),
            }
        );
        assert_eq!(limit, 5);
        assert_eq!(search_request(&QueryParams::from_pairs(&[("limit", "0")])).map(|r| r.1).ok(), Some(20));
    }

    #[test]
    fn bad_search_parameters_name_theirs() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("tags", "http.status_code=500")], "`tags`"),
            (&[("tags", "service.name=a service.name=b")], "`tags`"),
            (&[("tags", "status=ok")], "`tags`"),
            (&[("minDuration", "fast")], "`minDuration`"),
            (&[("maxDuration", "-1s")], "`maxDuration`"),
            (&[("minDuration", "2s"), ("maxDuration", "1s")], "`minDuration`"),
            (&[("start", "20"), ("end", "10")], "`start`"),
            (&[("end", "-1")], "`end`"),
            (&[("limit", "1001")], "`limit`"),
            (&[("q", "{ span.http.status_code = 500 }")], "`q`"),
            (&[("q", "{ name = \"a\" } | count() > 2")], "`q`"),
            (&[("q", "name = \"a\"")], "`q`"),
        ];
        for (pairs, named) in cases {
            let err = search_request(&QueryParams::from_pairs(pairs)).expect_err(named);
            assert!(err.to_string().contains(named), "{pairs:?}: {err}");
        }
        let err = search_request(&QueryParams::from_pairs(&[("q", "{ span.x = \"1\" }")])).expect_err("q");
        assert!(err.to_string().contains("resource.service.name"), "{err}");
    }

    #[test]
    fn the_traceql_subset_maps_to_the_filter() {
        let mut filter = TraceFilter::default();
        apply_traceql(
            &mut filter,
            r#"{ resource.service.name = "search" && name="process-request" && status = error && duration > 100ms && duration <= 1s }"#,
        )
        .expect("supported");
        assert_eq!(filter.service_name.as_deref(), Some("search"));
        assert_eq!(filter.span_name.as_deref(), Some("process-request"));
        assert!(filter.errors_only);
        assert_eq!((filter.min_duration_ns, filter.max_duration_ns), (Some(100_000_001), Some(NS_PER_S)));
        let mut empty = TraceFilter::default();
        apply_traceql(&mut empty, "{}").expect("every trace");
        assert_eq!(empty, TraceFilter::default());
    }

    #[test]
    fn tempo_trace_ids_are_left_padded_hex() {
        assert_eq!(parse_trace_id("ABC").ok(), Some(format!("{}abc", "0".repeat(29))));
        assert_eq!(parse_trace_id(&"f".repeat(32)).ok(), Some("f".repeat(32)));
        for bad in ["", "xyz", &"a".repeat(33)] {
            assert!(parse_trace_id(bad).expect_err(bad).to_string().contains("`traceID`"));
        }
    }

    #[test]
    fn protobuf_is_chosen_by_the_accept_header() {
        let with = |accept: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_str(accept).expect("header"));
            wants_protobuf(&headers)
        };
        assert!(with("application/protobuf"));
        assert!(with("application/json, application/protobuf;q=0.9"));
        assert!(with("application/x-protobuf"));
        assert!(!with("application/json"));
        assert!(!wants_protobuf(&HeaderMap::new()));
    }
}
