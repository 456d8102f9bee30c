//! The part of Grafana Loki's HTTP read API that Grafana's Loki data source and the older
//! dashboards use, over the herald's stored logs: `query_range` (log queries → streams,
//! `count_over_time` → matrix), `query` (instant), `labels`, `label/{name}/values` and
//! `series`, with Loki's response shapes and error body. The query language is the subset
//! `logql.rs` parses; docs/api.md "Loki-compatible API" states it, the labels and the limits.
//!
//! Labels are the ones the older deployment's Loki indexed (`STREAM_LABELS`); everything else
//! about a line is structured metadata. Equality matchers the store has a column for, and the
//! longest `|=` text, narrow the store's search; the rest of the query is evaluated here over
//! the store's pages, at most `scan_lines` rows per request (then the answer is partial and
//! says so), so no query can keep the herald busy for long.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use helix_model::LogRecorded;
use helix_store::{LogField, LogFilter, LogOrder, PageRequest};
use serde_json::{json, Map, Value};

use super::logql::{self, CountQuery, Grouping, LogQuery, Query};
use super::params::QueryParams;
use super::{ApiError, ApiResult, ApiState, Route};

/// Rows a request may read from the store before it answers with what it found (the default
/// of `--loki-scan-lines`).
pub const DEFAULT_SCAN_LINES: usize = 100_000;
/// Entries of a log query when `limit` is absent (Loki's default), and the most allowed.
pub const DEFAULT_LIMIT: u64 = 100;
pub const MAX_LIMIT: u64 = 5_000;
/// Series of one metric query (Loki's default `max_query_series`).
pub const MAX_SERIES: usize = 500;
/// Points of one series (Loki's limit): `(end - start) / step` above it is refused.
pub const MAX_POINTS: i64 = 11_000;
/// Values one label-values answer lists, and distinct label sets one series answer lists.
pub const MAX_VALUES: usize = 10_000;
/// Rows fetched per store page while scanning.
const PAGE: usize = 1_000;
const NS_PER_S: i64 = 1_000_000_000;
const HOUR_NS: i64 = 3_600 * NS_PER_S;
/// The request header with which Loki ≥ 3 clients ask for labels and structured metadata apart.
const ENCODING_FLAGS: &str = "x-loki-response-encoding-flags";
const CATEGORIZE: &str = "categorize-labels";

/// The indexed labels of a line, as the older deployment's Loki had them.
pub const STREAM_LABELS: [&str; 5] = ["service_name", "helix_process_name", "helix_instrument_id", "level", "trace_id"];
/// Structured metadata taken from the record's own fields rather than its attributes.
const ENTITY_LABEL: &str = "helix_entity_id";
const SPAN_LABEL: &str = "otel_span_id";
/// Attributes the labels and the fields above already carry.
const MAPPED_ATTRIBUTES: [&str; 5] =
    ["helix_entity_id", "helix_instrument_id", "helix_process_name", "otel_trace_id", "otel_span_id"];

const RANGE_PARAMS: &[&str] = &["query", "start", "end", "since", "limit", "direction", "step", "interval"];
const INSTANT_PARAMS: &[&str] = &["query", "time", "limit", "direction"];
const LABEL_PARAMS: &[&str] = &["start", "end", "since", "query"];
const SERIES_PARAMS: &[&str] = &["match[]", "start", "end", "since"];

pub fn routes() -> Vec<Route> {
    vec![
        Route { method: Method::GET, path: "/loki/api/v1/query_range", query: RANGE_PARAMS, handler: get(query_range) },
        Route { method: Method::GET, path: "/loki/api/v1/query", query: INSTANT_PARAMS, handler: get(query_instant) },
        Route { method: Method::GET, path: "/loki/api/v1/labels", query: LABEL_PARAMS, handler: get(labels) },
        Route {
            method: Method::GET,
            path: "/loki/api/v1/label/{name}/values",
            query: LABEL_PARAMS,
            handler: get(label_values),
        },
        Route { method: Method::GET, path: "/loki/api/v1/series", query: SERIES_PARAMS, handler: get(series) },
    ]
}

// ---- errors -----------------------------------------------------------------------------------

/// An [`ApiError`] answered in Loki's error body, `{"code", "status": "error", "message"}`
/// (Grafana shows `message`).
#[derive(Debug)]
pub struct LokiError(ApiError);

impl From<ApiError> for LokiError {
    fn from(err: ApiError) -> Self {
        LokiError(err)
    }
}

impl From<helix_store::StoreError> for LokiError {
    fn from(err: helix_store::StoreError) -> Self {
        LokiError(err.into())
    }
}

impl IntoResponse for LokiError {
    fn into_response(self) -> Response {
        self.0.log_cause();
        let status = self.0.status();
        let body = json!({ "code": status.as_u16(), "status": "error", "message": self.0.to_string() });
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

type LokiResult<T> = Result<T, LokiError>;

// ---- parameters -------------------------------------------------------------------------------

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A time as Loki takes it: integer nanoseconds since the epoch (seconds when it has at most
/// 10 digits), decimal seconds (`1716200000.5`), or RFC 3339 in UTC (`2024-05-20T10:13:20Z`).
pub fn parse_time(name: &str, raw: &str) -> ApiResult<i64> {
    let bad = || {
        let shown: String = raw.chars().take(40).collect();
        ApiError::bad(
            name,
            format!(
                "`{shown}` is not a time; give nanoseconds since the epoch, seconds (1716200000 or \
                 1716200000.5) or RFC 3339 in UTC (2024-05-20T10:13:20Z)"
            ),
        )
    };
    let ns = if raw.contains('.') && !raw.contains(['T', 't']) {
        let seconds: f64 = raw.parse().map_err(|_| bad())?;
        let ns = (seconds * 1e9).round();
        // The bounds of i64 nanoseconds (about ±292 years).
        if !ns.is_finite() || ns.abs() >= 9.2e18 {
            return Err(bad());
        }
        ns as i64
    } else if let Ok(n) = raw.parse::<i64>() {
        if raw.trim_start_matches(['-', '+']).len() <= 10 {
            n.checked_mul(NS_PER_S).ok_or_else(bad)?
        } else {
            n
        }
    } else {
        let at = humantime::parse_rfc3339(raw).map_err(|_| bad())?;
        let since = at.duration_since(UNIX_EPOCH).map_err(|_| bad())?;
        i64::try_from(since.as_nanos()).map_err(|_| bad())?
    };
    if ns < 0 {
        return Err(ApiError::bad(name, "must not be before 1970"));
    }
    Ok(ns)
}

/// `[start, end)`: `end` defaults to now, `start` to `end - since` (`since` a duration,
/// default `default_since_ns`).
fn window(params: &QueryParams, default_since_ns: i64) -> ApiResult<(i64, i64)> {
    let time = |name: &str| params.text(name).map(|raw| parse_time(name, raw)).transpose();
    let end = time("end")?.unwrap_or_else(now_ns);
    let since = match params.text("since") {
        Some(raw) => logql::parse_prometheus_duration(raw).map_err(|why| ApiError::bad("since", why))?,
        None => default_since_ns,
    };
    let start = time("start")?.unwrap_or_else(|| end.saturating_sub(since).max(0));
    if start > end {
        return Err(ApiError::bad("end", "must not be before `start`"));
    }
    Ok((start, end))
}

fn query_text(params: &QueryParams) -> ApiResult<Query> {
    let text = params.required("query")?;
    logql::parse(text).map_err(|why| ApiError::bad("query", why))
}

/// `backward` (newest first, Loki's default) or `forward`.
fn direction(params: &QueryParams) -> ApiResult<LogOrder> {
    match params.text("direction") {
        None => Ok(LogOrder::Desc),
        Some(d) if d.eq_ignore_ascii_case("backward") => Ok(LogOrder::Desc),
        Some(d) if d.eq_ignore_ascii_case("forward") => Ok(LogOrder::Asc),
        Some(other) => {
            let shown: String = other.chars().take(40).collect();
            Err(ApiError::bad("direction", format!("`{shown}` is not a direction; use `backward` or `forward`")))
        }
    }
}

fn limit(params: &QueryParams) -> ApiResult<usize> {
    let limit = params
        .count("limit", 1, MAX_LIMIT)
        .map_err(|e| ApiError::bad("limit", format!("{e}; the herald returns 1 to {MAX_LIMIT} entries per query")))?;
    Ok(usize::try_from(limit.unwrap_or(DEFAULT_LIMIT)).unwrap_or(100))
}

/// `step`: decimal seconds or a duration; by default about 250 points over the window, at
/// least one second (Loki's default).
fn step(params: &QueryParams, start: i64, end: i64) -> ApiResult<i64> {
    let step = match params.text("step") {
        Some(raw) => match raw.parse::<f64>() {
            Ok(seconds) if seconds.is_finite() && seconds > 0.0 && seconds < 9.2e9 => (seconds * 1e9) as i64,
            Ok(_) => return Err(ApiError::bad("step", "must be a positive number of seconds or a duration")),
            Err(_) => logql::parse_prometheus_duration(raw).map_err(|why| ApiError::bad("step", why))?,
        },
        None => ((end - start) / 250 / NS_PER_S * NS_PER_S).max(NS_PER_S),
    };
    if step <= 0 {
        return Err(ApiError::bad("step", "must be positive"));
    }
    if (end - start) / step > MAX_POINTS {
        return Err(ApiError::bad(
            "step",
            format!("exceeded maximum resolution of {MAX_POINTS} points per timeseries; increase `step`"),
        ));
    }
    Ok(step)
}

fn categorize(headers: &HeaderMap) -> bool {
    headers
        .get_all(ENCODING_FLAGS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|flag| flag.trim().eq_ignore_ascii_case(CATEGORIZE))
}

// ---- the labels of a line ---------------------------------------------------------------------

/// A stored record with what its labels need: its level and the entity it belongs to.
#[derive(Debug, Clone)]
pub struct Line {
    pub record: LogRecorded,
    level: Option<String>,
    entity: Option<String>,
}

/// A Loki label name for an attribute key: characters outside `[A-Za-z0-9_]` become `_`, and a
/// leading digit gets a `_` before it (as Loki's OTLP ingestion names them).
fn label_name(key: &str) -> String {
    let mut name: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

impl Line {
    pub fn new(record: LogRecorded, entity: Option<String>) -> Line {
        let level = Some(record.severity.trim().to_lowercase()).filter(|l| !l.is_empty() && l != "unspecified");
        let entity = present(&record.entity_id).map(str::to_owned).or(entity);
        Line { record, level, entity }
    }

    /// Attributes that are structured metadata, as (label name, value), first key wins.
    fn attribute_labels(&self) -> impl Iterator<Item = (String, &str)> {
        let mut seen = BTreeSet::new();
        self.record.attributes.iter().filter_map(move |(key, value)| {
            if value.is_empty() || MAPPED_ATTRIBUTES.contains(&key.as_str()) {
                return None;
            }
            let name = label_name(key);
            let taken = STREAM_LABELS.contains(&name.as_str()) || name == ENTITY_LABEL || name == SPAN_LABEL;
            (!taken && seen.insert(name.clone())).then_some((name, value.as_str()))
        })
    }

    /// The value of a label or structured metadata field; None when the line has none.
    pub fn label(&self, name: &str) -> Option<&str> {
        let r = &self.record;
        match name {
            "service_name" => present(&r.service_name),
            "helix_process_name" => present(&r.process_name),
            "helix_instrument_id" => present(&r.instrument_id),
            "level" => self.level.as_deref(),
            "trace_id" => present(&r.trace_id),
            ENTITY_LABEL => self.entity.as_deref(),
            SPAN_LABEL => present(&r.span_id),
            other => self.attribute_labels().find(|(n, _)| n == other).map(|(_, v)| v),
        }
    }

    pub fn stream(&self) -> BTreeMap<String, String> {
        STREAM_LABELS.iter().filter_map(|name| self.label(name).map(|v| ((*name).to_owned(), v.to_owned()))).collect()
    }

    pub fn metadata(&self) -> BTreeMap<String, String> {
        let own =
            [ENTITY_LABEL, SPAN_LABEL].into_iter().filter_map(|n| self.label(n).map(|v| (n.to_owned(), v.to_owned())));
        own.chain(self.attribute_labels().map(|(n, v)| (n, v.to_owned()))).collect()
    }

    fn matches(&self, query: &LogQuery) -> bool {
        query.matches(&self.record.body, |name| self.label(name))
    }
}

// ---- the scan ---------------------------------------------------------------------------------

/// What the store is asked for a log query: the equalities it has columns for and the longest
/// `|=` text (its text match is case-insensitive, so the exact check happens here). The
/// entity matcher's value also names the entity of the trace-only lines the store returns.
pub fn store_filter(query: &LogQuery, from_ns: i64, to_ns: i64, order: LogOrder) -> LogFilter {
    let mut filter = LogFilter { from_ns: Some(from_ns), to_ns: Some(to_ns), order, ..LogFilter::default() };
    for matcher in query.matchers() {
        let Some(value) = matcher.equality() else { continue };
        let slot = match matcher.name.as_str() {
            // `level` is the severity lowercased: the store checks it too when it can do so
            // exactly (printable ASCII).
            "level" if value.bytes().all(|b| (b' '..=b'~').contains(&b)) => &mut filter.level,
            "service_name" => &mut filter.service_name,
            "helix_process_name" => &mut filter.process_name,
            "helix_instrument_id" => &mut filter.instrument_id,
            "trace_id" => &mut filter.trace_id,
            "otel_span_id" => &mut filter.span_id,
            ENTITY_LABEL => &mut filter.entity_id,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value.to_owned());
        }
    }
    filter.text =
        query.contained_texts().max_by_key(|t| t.chars().count()).filter(|t| !t.is_empty()).map(str::to_owned);
    filter
}

/// How much of the store one request read.
#[derive(Debug, Default)]
struct ScanStats {
    examined: usize,
    bytes: u64,
    /// The scan budget ran out with rows left to read: the answer is partial.
    truncated: bool,
}

/// One request's walk over the store's pages, within the scan budget.
struct Scan<'a> {
    state: &'a ApiState,
    budget: usize,
    stats: ScanStats,
    /// Entities resolved for (trace, span) places, across the request's pages.
    entities: HashMap<(String, Option<String>), Option<String>>,
}

impl<'a> Scan<'a> {
    fn new(state: &'a ApiState) -> Scan<'a> {
        Scan { state, budget: state.loki_scan_lines.max(1), stats: ScanStats::default(), entities: HashMap::new() }
    }

    /// The entity each record of a page belongs to: its own, else (`resolve`) its place's.
    async fn entities_of(
        &mut self,
        records: &[LogRecorded],
        pushed: Option<&str>,
        resolve: bool,
    ) -> ApiResult<Vec<Option<String>>> {
        let trace_only = |r: &LogRecorded| present(&r.entity_id).is_none() && present(&r.trace_id).is_some();
        if let Some(entity) = pushed {
            // The store returned these lines because they are in that entity's traces.
            return Ok(records.iter().map(|r| trace_only(r).then(|| entity.to_owned())).collect());
        }
        if !resolve {
            return Ok(vec![None; records.len()]);
        }
        let key = |r: &LogRecorded| (r.trace_id.clone().unwrap_or_default(), r.span_id.clone());
        let mut missing: Vec<(String, Option<String>)> =
            records.iter().filter(|r| trace_only(r)).map(key).filter(|k| !self.entities.contains_key(k)).collect();
        missing.sort();
        missing.dedup();
        if !missing.is_empty() {
            let found = self.state.store.span_entities(&missing).await?;
            self.entities.extend(missing.into_iter().zip(found));
        }
        Ok(records
            .iter()
            .map(|r| if trace_only(r) { self.entities.get(&key(r)).cloned().flatten() } else { None })
            .collect())
    }

    /// Visit every line of `query` in the filter's window and order until `visit` returns
    /// false, the lines run out, or the budget does. `want` (lines still wanted) sizes pages.
    async fn run(
        &mut self,
        query: &LogQuery,
        filter: &LogFilter,
        resolve: bool,
        mut want: Option<usize>,
        mut visit: impl FnMut(Line) -> bool,
    ) -> ApiResult<()> {
        let mut cursor = None;
        let mut page_size = want.map_or(PAGE, |w| w.clamp(16, PAGE));
        loop {
            let left = self.budget.saturating_sub(self.stats.examined);
            if left == 0 {
                self.stats.truncated = true;
                return Ok(());
            }
            let request = PageRequest { limit: page_size.min(left), cursor: cursor.take() };
            let page = self.state.store.log_search(filter, &request).await?;
            let entities = self.entities_of(&page.items, filter.entity_id.as_deref(), resolve).await?;
            for (record, entity) in page.items.into_iter().zip(entities) {
                self.stats.examined += 1;
                self.stats.bytes += record.body.len() as u64;
                let line = Line::new(record, entity);
                if !line.matches(query) {
                    continue;
                }
                if let Some(w) = want.as_mut() {
                    *w = w.saturating_sub(1);
                }
                if !visit(line) {
                    return Ok(());
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(()),
            }
            // Pages grow while the filters here keep rejecting what the store returns.
            page_size = (page_size * 2).min(PAGE).max(want.unwrap_or(0).min(PAGE));
        }
    }

    /// `{"summary": {…}, "helix": {…}}`: Loki's summary fields the herald can fill, and its own.
    fn stats(&self, started: Instant, returned: usize) -> Value {
        let secs = started.elapsed().as_secs_f64();
        let per_second = |n: f64| if secs > 0.0 { (n / secs) as u64 } else { 0 };
        json!({
            "summary": {
                "bytesProcessedPerSecond": per_second(self.stats.bytes as f64),
                "linesProcessedPerSecond": per_second(self.stats.examined as f64),
                "totalBytesProcessed": self.stats.bytes,
                "totalLinesProcessed": self.stats.examined,
                "execTime": secs,
                "totalEntriesReturned": returned,
            },
            "helix": {
                "linesExamined": self.stats.examined,
                "scanBudget": self.budget,
                "truncated": u8::from(self.stats.truncated),
            },
        })
    }

    /// `{"status": "success", "data": data}`, with a warning when the budget cut the scan.
    fn answer(&self, data: Value) -> Response {
        let mut body = json!({ "status": "success", "data": data });
        if self.stats.truncated {
            body["warnings"] = json!([format!(
                "partial result: the herald stops after reading {} log lines per query \
                 (--loki-scan-lines / HELIX_LOKI_SCAN_LINES); narrow the time range, the selector or add a |= filter",
                self.budget
            )]);
        }
        Json(body).into_response()
    }
}

/// Whether evaluating `query` (or grouping by `grouping`) needs the entity of trace-only lines.
fn mentions_entity(query: &LogQuery, grouping: &[String]) -> bool {
    query.matchers().any(|m| m.name == ENTITY_LABEL) || grouping.iter().any(|l| l == ENTITY_LABEL)
}

// ---- log queries ------------------------------------------------------------------------------

/// The matching lines as Loki streams: lines grouped by their labels (with `categorize`, the
/// indexed labels, and the structured metadata as each value's third element; without, every
/// label and metadata field together, as Loki 3 answers older clients), in `order`.
async fn streams(
    state: &ApiState,
    query: &LogQuery,
    (from_ns, to_ns): (i64, i64),
    order: LogOrder,
    limit: usize,
    categorize: bool,
) -> ApiResult<Response> {
    let started = Instant::now();
    let mut scan = Scan::new(state);
    let filter = store_filter(query, from_ns, to_ns, order);
    let mut lines = Vec::new();
    scan.run(query, &filter, true, Some(limit), |line| {
        lines.push(line);
        lines.len() < limit
    })
    .await?;
    let returned = lines.len();
    let mut result: Vec<(BTreeMap<String, String>, Vec<Value>)> = Vec::new();
    let mut index: HashMap<BTreeMap<String, String>, usize> = HashMap::new();
    for line in lines {
        let mut labels = line.stream();
        let metadata = line.metadata();
        let ts = line.record.timestamp_ns.to_string();
        let value = if categorize {
            if metadata.is_empty() {
                json!([ts, line.record.body])
            } else {
                json!([ts, line.record.body, { "structuredMetadata": metadata }])
            }
        } else {
            labels.extend(metadata);
            json!([ts, line.record.body])
        };
        let at = *index.entry(labels.clone()).or_insert_with(|| {
            result.push((labels, Vec::new()));
            result.len() - 1
        });
        result[at].1.push(value);
    }
    let result: Vec<Value> =
        result.into_iter().map(|(labels, values)| json!({ "stream": labels, "values": values })).collect();
    let mut data = json!({ "resultType": "streams", "result": result, "stats": scan.stats(started, returned) });
    if categorize {
        data["encodingFlags"] = json!([CATEGORIZE]);
    }
    Ok(scan.answer(data))
}

// ---- count_over_time ---------------------------------------------------------------------------

/// The series labels of a counted line.
fn series_labels(line: &Line, grouping: &Grouping) -> BTreeMap<String, String> {
    match grouping {
        Grouping::Streams => line.stream(),
        Grouping::By(names) => names.iter().filter_map(|n| line.label(n).map(|v| (n.clone(), v.to_owned()))).collect(),
    }
}

/// For each series, how many lines fall in `(t - range, t]` at each of `steps` (ascending);
/// steps without lines are left out, as Loki does.
async fn count_series(
    scan: &mut Scan<'_>,
    count: &CountQuery,
    steps: &[i64],
) -> ApiResult<Vec<(BTreeMap<String, String>, Vec<(i64, usize)>)>> {
    let (Some(&first), Some(&last)) = (steps.first(), steps.last()) else { return Ok(Vec::new()) };
    let from = first.saturating_sub(count.range_ns).saturating_add(1).max(0);
    let filter = store_filter(&count.query, from, last.saturating_add(1), LogOrder::Asc);
    let grouped_by = match &count.grouping {
        Grouping::By(names) => names.as_slice(),
        Grouping::Streams => &[],
    };
    let resolve = mentions_entity(&count.query, grouped_by);
    let mut times: Vec<(BTreeMap<String, String>, Vec<i64>)> = Vec::new();
    let mut index: HashMap<BTreeMap<String, String>, usize> = HashMap::new();
    let mut too_many = false;
    scan.run(&count.query, &filter, resolve, None, |line| {
        let labels = series_labels(&line, &count.grouping);
        let at = match index.get(&labels) {
            Some(&at) => at,
            None if times.len() >= MAX_SERIES => {
                too_many = true;
                return false;
            }
            None => {
                index.insert(labels.clone(), times.len());
                times.push((labels, Vec::new()));
                times.len() - 1
            }
        };
        times[at].1.push(line.record.timestamp_ns);
        true
    })
    .await?;
    if too_many {
        return Err(ApiError::bad(
            "query",
            format!(
                "maximum of series ({MAX_SERIES}) reached for a single query; group by fewer labels (`sum by (…)`)"
            ),
        ));
    }
    Ok(times
        .into_iter()
        .map(|(labels, ts)| {
            // Ascending: the scan ran oldest first.
            let upto = |t: i64| ts.partition_point(|&x| x <= t);
            let points = steps
                .iter()
                .map(|&t| (t, upto(t) - upto(t.saturating_sub(count.range_ns))))
                .filter(|&(_, n)| n > 0)
                .collect();
            (labels, points)
        })
        .collect())
}

/// A sample `[seconds, "value"]` as Loki writes it.
fn sample(t_ns: i64, n: usize) -> Value {
    json!([t_ns as f64 / 1e9, n.to_string()])
}

async fn matrix(state: &ApiState, count: &CountQuery, start: i64, end: i64, step: i64) -> ApiResult<Response> {
    let started = Instant::now();
    let mut scan = Scan::new(state);
    let steps: Vec<i64> = std::iter::successors(Some(start), |t| t.checked_add(step).filter(|t| *t <= end)).collect();
    let series = count_series(&mut scan, count, &steps).await?;
    let points: usize = series.iter().map(|(_, p)| p.len()).sum();
    let result: Vec<Value> = series
        .into_iter()
        .filter(|(_, points)| !points.is_empty())
        .map(|(labels, points)| {
            json!({ "metric": labels, "values": points.into_iter().map(|(t, n)| sample(t, n)).collect::<Vec<_>>() })
        })
        .collect();
    Ok(scan.answer(json!({ "resultType": "matrix", "result": result, "stats": scan.stats(started, points) })))
}

async fn vector(state: &ApiState, count: &CountQuery, at: i64) -> ApiResult<Response> {
    let started = Instant::now();
    let mut scan = Scan::new(state);
    let series = count_series(&mut scan, count, &[at]).await?;
    let result: Vec<Value> = series
        .into_iter()
        .filter_map(|(labels, points)| points.first().map(|&(t, n)| json!({ "metric": labels, "value": sample(t, n) })))
        .collect();
    let returned = result.len();
    Ok(scan.answer(json!({ "resultType": "vector", "result": result, "stats": scan.stats(started, returned) })))
}

// ---- handlers ---------------------------------------------------------------------------------

/// `GET /loki/api/v1/query_range`: a log query's lines in `[start, end)` as streams (`limit`
/// lines, `direction`), or `count_over_time` at each `step` as a matrix.
async fn query_range(State(state): State<ApiState>, headers: HeaderMap, params: QueryParams) -> LokiResult<Response> {
    let params = params.allow_extra(RANGE_PARAMS)?;
    let query = query_text(&params)?;
    let (start, end) = window(&params, HOUR_NS)?;
    let order = direction(&params)?;
    let limit = limit(&params)?;
    Ok(match query {
        Query::Log(q) => streams(&state, &q, (start, end), order, limit, categorize(&headers)).await?,
        Query::Count(c) => matrix(&state, &c, start, end, step(&params, start, end)?).await?,
    })
}

/// `GET /loki/api/v1/query`: `count_over_time` at `time` (default now) as a vector; a log
/// query answers with its lines of the hour up to `time`.
async fn query_instant(State(state): State<ApiState>, headers: HeaderMap, params: QueryParams) -> LokiResult<Response> {
    let params = params.allow_extra(INSTANT_PARAMS)?;
    let query = query_text(&params)?;
    let at = params.text("time").map(|raw| parse_time("time", raw)).transpose()?.unwrap_or_else(now_ns);
    let order = direction(&params)?;
    let limit = limit(&params)?;
    Ok(match query {
        Query::Log(q) => {
            let window = (at.saturating_sub(HOUR_NS).max(0), at.saturating_add(1));
            streams(&state, &q, window, order, limit, categorize(&headers)).await?
        }
        Query::Count(c) => vector(&state, &c, at).await?,
    })
}

/// The stored column of a stream label.
fn field_of(label: &str) -> Option<LogField> {
    Some(match label {
        "service_name" => LogField::Service,
        "helix_process_name" => LogField::Process,
        "helix_instrument_id" => LogField::Instrument,
        "level" => LogField::Severity,
        "trace_id" => LogField::Trace,
        _ => return None,
    })
}

/// The distinct values of a stream label in `[from, to)`, from the store's index of them
/// (levels are the severities, lowercased).
async fn stored_values(state: &ApiState, label: &str, from: i64, to: i64, limit: usize) -> ApiResult<Vec<String>> {
    let Some(field) = field_of(label) else { return Ok(Vec::new()) };
    let values = state.store.log_values(field, from, to, limit).await?;
    if field != LogField::Severity {
        return Ok(values);
    }
    let levels: BTreeSet<String> =
        values.into_iter().map(|v| v.trim().to_lowercase()).filter(|l| !l.is_empty() && l != "unspecified").collect();
    Ok(levels.into_iter().collect())
}

/// The log query of a label request's `query` (a selector, optionally with a pipeline).
fn label_query(params: &QueryParams) -> ApiResult<Option<LogQuery>> {
    match params.text("query").map(logql::parse).transpose().map_err(|why| ApiError::bad("query", why))? {
        None => Ok(None),
        Some(Query::Log(q)) => Ok(Some(q)),
        Some(Query::Count(_)) => Err(ApiError::bad("query", "give a stream selector, not a metric query")),
    }
}

/// `GET /loki/api/v1/labels`: the label names with a value in the window (default the last
/// six hours); with `query`, among the lines it matches.
async fn labels(State(state): State<ApiState>, params: QueryParams) -> LokiResult<Response> {
    let params = params.allow_extra(LABEL_PARAMS)?;
    let (from, to) = window(&params, 6 * HOUR_NS)?;
    let mut scan = Scan::new(&state);
    let mut names = BTreeSet::new();
    match label_query(&params)? {
        Some(query) => {
            let filter = store_filter(&query, from, to, LogOrder::Desc);
            let resolve = mentions_entity(&query, &[]);
            scan.run(&query, &filter, resolve, None, |line| {
                names.extend(line.stream().into_keys());
                names.len() < STREAM_LABELS.len()
            })
            .await?;
        }
        None => {
            for label in STREAM_LABELS {
                // Levels come lowercased and filtered: ask for more than one.
                if !stored_values(&state, label, from, to, 16).await?.is_empty() {
                    names.insert(label.to_owned());
                }
            }
        }
    }
    Ok(scan.answer(json!(names)))
}

/// `GET /loki/api/v1/label/{name}/values`: the label's values in the window, sorted (at most
/// `MAX_VALUES`); with `query`, among the lines it matches (structured metadata too).
async fn label_values(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    params: QueryParams,
) -> LokiResult<Response> {
    let params = params.allow_extra(LABEL_PARAMS)?;
    let (from, to) = window(&params, 6 * HOUR_NS)?;
    let mut scan = Scan::new(&state);
    let values: Vec<String> = match label_query(&params)? {
        Some(query) => {
            let filter = store_filter(&query, from, to, LogOrder::Desc);
            let resolve = name == ENTITY_LABEL || mentions_entity(&query, &[]);
            let mut found = BTreeSet::new();
            scan.run(&query, &filter, resolve, None, |line| {
                if let Some(v) = line.label(&name) {
                    found.insert(v.to_owned());
                }
                found.len() < MAX_VALUES
            })
            .await?;
            found.into_iter().collect()
        }
        None => stored_values(&state, &name, from, to, MAX_VALUES).await?,
    };
    Ok(scan.answer(json!(values)))
}

/// `GET /loki/api/v1/series`: the distinct label sets of the lines each `match[]` selects.
async fn series(State(state): State<ApiState>, params: QueryParams) -> LokiResult<Response> {
    let params = params.allow_extra(SERIES_PARAMS)?;
    let (from, to) = window(&params, 6 * HOUR_NS)?;
    let selectors = params.list("match[]");
    if selectors.is_empty() {
        return Err(
            ApiError::bad("match[]", "required: at least one stream selector, e.g. {service_name=\"ingest\"}").into()
        );
    }
    let mut scan = Scan::new(&state);
    let mut sets: BTreeSet<BTreeMap<String, String>> = BTreeSet::new();
    for selector in selectors {
        let query = match logql::parse(selector).map_err(|why| ApiError::bad("match[]", why))? {
            Query::Log(q) => q,
            Query::Count(_) => {
                return Err(ApiError::bad("match[]", "give a stream selector, not a metric query").into())
            }
        };
        let filter = store_filter(&query, from, to, LogOrder::Desc);
        let resolve = mentions_entity(&query, &[]);
        scan.run(&query, &filter, resolve, None, |line| {
            sets.insert(line.stream());
            sets.len() < MAX_VALUES
        })
        .await?;
    }
    let data: Vec<Map<String, Value>> =
        sets.into_iter().map(|set| set.into_iter().map(|(k, v)| (k, Value::String(v))).collect()).collect();
    Ok(scan.answer(json!(data)))
}

#[cfg(test)]
mod tests {
    use helix_model::Metadata;

    use super::*;

    fn record() -> LogRecorded {
        LogRecorded {
            timestamp_ns: 1_716_200_000_000_000_000,
            observed_ns: 1_716_200_000_000_000_000,
            severity: "WARNING".into(),
            severity_number: 13,
            body: "disk almost full".into(),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            span_id: Some("00f067aa0ba902b7".into()),
            entity_id: None,
            instrument_id: Some("CHIME".into()),
            process_name: Some("CHIME/search".into()),
            service_name: Some("search".into()),
            source: Some("python".into()),
            attributes: Metadata::from_iter(
                [
                    ("helix_entity_id", "ignored: the field wins"),
                    ("otel_trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
                    ("code.function", "scan"),
                    ("code_function", "shadowed"),
                    ("level", "info"),
                    ("service.name", "x"),
                    ("9lives", "cat"),
                    ("empty", ""),
                ]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
            ),
            resource: Metadata::new(),
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn a_line_has_the_indexed_labels_and_the_rest_as_metadata() {
        let line = Line::new(record(), Some("cand-42".into()));
        assert_eq!(
            line.stream(),
            map(&[
                ("service_name", "search"),
                ("helix_process_name", "CHIME/search"),
                ("helix_instrument_id", "CHIME"),
                ("level", "warning"),
                ("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
            ])
        );
        assert_eq!(
            line.metadata(),
            map(&[
                ("helix_entity_id", "cand-42"),
                ("otel_span_id", "00f067aa0ba902b7"),
                ("code_function", "scan"),
                ("_9lives", "cat"),
            ])
        );
        assert_eq!(line.label("code_function"), Some("scan"));
        assert_eq!(line.label("level"), Some("warning"));
        assert_eq!(line.label("empty"), None);
        // The record's own entity wins over a resolved one.
        let mut own = record();
        own.entity_id = Some("block-1".into());
        assert_eq!(Line::new(own, Some("cand-42".into())).label("helix_entity_id"), Some("block-1"));
        let mut quiet = record();
        quiet.severity = "UNSPECIFIED".into();
        quiet.trace_id = None;
        let quiet = Line::new(quiet, None);
        assert_eq!((quiet.label("level"), quiet.label("trace_id")), (None, None));
    }

    #[test]
    fn equalities_with_a_column_and_the_longest_text_go_to_the_store() {
        let Ok(Query::Log(q)) = logql::parse(
            r#"{service_name="search", level="warning", helix_instrument_id=~"CH.*"} |= "disk" |= "almost" != "x"
               | helix_entity_id = "cand-42" | helix_process_name="CHIME/search" | trace_id="abc" | service_name="other""#,
        ) else {
            panic!("parses")
        };
        let f = store_filter(&q, 10, 20, LogOrder::Asc);
        assert_eq!(
            f,
            LogFilter {
                trace_id: Some("abc".into()),
                span_id: None,
                entity_id: Some("cand-42".into()),
                instrument_id: None,
                service_name: Some("search".into()),
                process_name: Some("CHIME/search".into()),
                min_severity: None,
                level: Some("warning".into()),
                text: Some("almost".into()),
                from_ns: Some(10),
                to_ns: Some(20),
                order: LogOrder::Asc,
            }
        );
    }

    #[test]
    fn only_a_printable_ascii_level_goes_to_the_store() {
        let level = |query: &str| {
            let Ok(Query::Log(q)) = logql::parse(query) else { panic!("parses: {query}") };
            store_filter(&q, 0, 1, LogOrder::Desc).level
        };
        assert_eq!(level(r#"{service_name="a"} | level="error""#).as_deref(), Some("error"));
        assert_eq!(level(r#"{service_name="a", level=~"err.*"}"#), None);
        assert_eq!(level(r#"{service_name="a", level!="error"}"#), None);
        assert_eq!(level("{service_name=\"a\", level=\"fehler\u{00fc}\"}"), None);
        assert_eq!(level("{service_name=\"a\", level=\"a\\tb\"}"), None);
    }

    #[test]
    fn times_in_every_form_loki_takes() {
        let ns = 1_716_200_000_000_000_000;
        for (raw, want) in [
            ("1716200000", ns),
            ("1716200000000000000", ns),
            ("1716200000.5", ns + 500_000_000),
            ("2024-05-20T10:13:20Z", ns),
            ("2024-05-20T10:13:20.25Z", ns + 250_000_000),
            ("0", 0),
        ] {
            assert_eq!(parse_time("start", raw).ok(), Some(want), "{raw}");
        }
        for bad in ["yesterday", "-5", "1e400", "2024-05-20 10:13:20+02:00", "NaN.0"] {
            let err = parse_time("start", bad).expect_err(bad);
            assert!(err.to_string().contains("`start`"), "{bad}: {err}");
        }
    }

    #[test]
    fn windows_steps_limits_and_directions_are_checked() {
        let p = |pairs: &[(&str, &str)]| QueryParams::from_pairs(pairs);
        assert_eq!(window(&p(&[("start", "10"), ("end", "20")]), HOUR_NS).ok(), Some((10 * NS_PER_S, 20 * NS_PER_S)));
        assert_eq!(
            window(&p(&[("end", "7200"), ("since", "30m")]), HOUR_NS).ok(),
            Some((5400 * NS_PER_S, 7200 * NS_PER_S))
        );
        assert!(window(&p(&[("start", "20"), ("end", "10")]), HOUR_NS).is_err());
        assert_eq!(step(&p(&[("step", "60")]), 0, HOUR_NS).ok(), Some(60 * NS_PER_S));
        assert_eq!(step(&p(&[("step", "1m")]), 0, HOUR_NS).ok(), Some(60 * NS_PER_S));
        assert_eq!(step(&p(&[("step", "0.5")]), 0, 10 * NS_PER_S).ok(), Some(NS_PER_S / 2));
        assert_eq!(step(&p(&[]), 0, 1000 * NS_PER_S).ok(), Some(4 * NS_PER_S));
        assert_eq!(step(&p(&[]), 0, 10 * NS_PER_S).ok(), Some(NS_PER_S));
        let err = step(&p(&[("step", "1")]), 0, 24 * HOUR_NS).expect_err("too many points");
        assert!(err.to_string().contains("11000 points"), "{err}");
        assert!(step(&p(&[("step", "0")]), 0, HOUR_NS).is_err());
        assert_eq!(limit(&p(&[])).ok(), Some(100));
        assert!(limit(&p(&[("limit", "5001")])).expect_err("cap").to_string().contains("1 to 5000"));
        assert_eq!(direction(&p(&[("direction", "FORWARD")])).ok(), Some(LogOrder::Asc));
        assert_eq!(direction(&p(&[])).ok(), Some(LogOrder::Desc));
        assert!(direction(&p(&[("direction", "up")])).is_err());
    }

    #[test]
    fn the_encoding_flag_is_read_from_a_list() {
        let mut headers = HeaderMap::new();
        assert!(!categorize(&headers));
        headers.insert(ENCODING_FLAGS, HeaderValue::from_static("other, categorize-labels"));
        assert!(categorize(&headers));
    }

    #[tokio::test]
    async fn errors_use_lokis_body() {
        use axum::body::{to_bytes, Body};
        use axum::http::Request;
        use tower::ServiceExt;
        let app = super::super::app(super::super::fake::FakeStore::empty().state());
        let uri = "/loki/api/v1/query_range?query=%7Bservice_name%3D%22a%22%7D%20%7C%20line_format%20%22x%22";
        let response = app.clone().oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: Value = serde_json::from_slice(&to_bytes(response.into_body(), usize::MAX).await.unwrap()).unwrap();
        assert_eq!((body["code"].as_u64(), body["status"].as_str()), (Some(400), Some("error")));
        assert!(body["message"].as_str().unwrap().contains("`| line_format` is not supported"), "{body}");
        let response = app
            .oneshot(
                Request::builder().uri("/loki/api/v1/query_range?query=%7Ba%3D%22b%22%7D").body(Body::empty()).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = serde_json::from_slice(&to_bytes(response.into_body(), usize::MAX).await.unwrap()).unwrap();
        assert_eq!(body["data"]["resultType"], "streams");
        assert_eq!(body["data"]["result"], json!([]));
    }
}
