//! The platform check: every interval the herald sends itself a canary trace and log (through
//! ingest, as an export would go), checks that its own store answers for them, and — when the
//! site's Tempo and Loki are configured — that they hold the canary and agree on which services
//! send traces and logs. It records metrics and the last result for `/readyz`; it alerts nobody.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use helix_store::{LogFilter, LogOrder, PageRequest, Store, TraceFilter};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prometheus::{Gauge, IntCounterVec, IntGaugeVec, Opts, Registry};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::api::window::now_ns;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::simulate::kv;

/// `service.name` of the canary's trace and log.
pub const CANARY_SERVICE: &str = "helixobs-platform-canary";
/// The instrument the canary's records belong to; left out of the instrument list.
pub const CANARY_INSTRUMENT: &str = "HELIXOBS-PLATFORM";
/// The canary log's `helix_process_name` (the label whose loss the older herald's incident hid).
pub const CANARY_PROCESS: &str = "helixobs/platform-canary/heartbeat";
pub const CANARY_BODY: &str = "platform canary heartbeat";
/// `signal_source` of the canary's own signals.
const CANARY_SOURCE: &str = "canary";
/// Results read from Tempo and Loki per query, and services checked per tick.
const RESULT_LIMIT: usize = 100;

/// A Tempo or Loki query endpoint and its tenant (`X-Scope-OrgID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub url: String,
    pub tenant: String,
}

/// What the platform check does; built from the `PLATFORM_CHECK_*`, `TEMPO_*` and `LOKI_*` settings.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    pub interval: Duration,
    /// How far back a Tempo or Loki query looks for the canary.
    pub lookback: Duration,
    /// Wait between sending the canary and asking Tempo and Loki for it (the collector's delay).
    pub delay: Duration,
    pub tempo: Option<Backend>,
    pub loki: Option<Backend>,
    /// Longest wait for one Tempo or Loki answer.
    pub timeout: Duration,
    /// Whether the herald keeps spans (`--store-spans`): without them only the log is checked locally.
    pub spans_stored: bool,
}

/// The platform-check metrics, with the older herald's names and labels.
pub struct PlatformMetrics {
    pub result_count: IntGaugeVec,
    pub presence: IntGaugeVec,
    pub last_success: Gauge,
    pub mismatch: IntCounterVec,
}

impl PlatformMetrics {
    pub(crate) fn register(r: &Registry) -> PlatformMetrics {
        let by_signal = &["signal_source", "signal_type"];
        let gauge_vec = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), by_signal).expect("static metric definition is valid");
            r.register(Box::new(g.clone())).expect("each metric is registered once");
            g
        };
        let last_success = Gauge::new(
            "helix_platform_check_last_success_timestamp_seconds",
            "When every platform check signal was last present (Unix seconds).",
        )
        .expect("static metric definition is valid");
        r.register(Box::new(last_success.clone())).expect("each metric is registered once");
        PlatformMetrics {
            result_count: gauge_vec(
                "helix_platform_check_result_count",
                "Results the last platform check found, by signal (canary or a discovered service) and type.",
            ),
            presence: gauge_vec(
                "helix_platform_check_presence",
                "1 when the last platform check found the signal, 0 when it did not (unset when the query failed).",
            ),
            last_success,
            mismatch: crate::metrics::counter_vec(
                r,
                "helix_platform_check_mismatch_total",
                "Checks that found a service's traces but not its logs, or its logs but not its traces.",
                &["service_name", "missing_side"],
            ),
        }
    }

    fn record(&self, source: &str, kind: &str, count: u64) {
        self.result_count.with_label_values(&[source, kind]).set(count as i64);
        self.presence.with_label_values(&[source, kind]).set(i64::from(count > 0));
    }
}

/// One signal's result in a report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Signal {
    /// `herald` (this herald's store), `tempo` or `loki`.
    pub backend: &'static str,
    pub signal_type: &'static str,
    /// `None` when the query failed (see `problems`).
    pub count: Option<u64>,
    pub present: Option<bool>,
}

/// The result of one platform check, as `/readyz` and the health page show it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    /// When the check ended (Unix seconds).
    pub checked_at: f64,
    /// Every signal present and every query answered.
    pub ok: bool,
    /// This herald's own store did not answer for the canary: it cannot store data now.
    pub store_failed: bool,
    pub signals: Vec<Signal>,
    /// What went wrong, in words an operator can act on.
    pub problems: Vec<String>,
    /// Services present on one side only: (service, missing side).
    pub mismatches: Vec<(String, &'static str)>,
    /// The last time every signal was present (Unix seconds), this check or an earlier one.
    pub last_success: Option<f64>,
}

/// The platform check's state, read by `/readyz` and the health page.
#[derive(Default)]
pub struct PlatformStatus {
    /// `None` while disabled.
    interval: Option<Duration>,
    last: Mutex<Option<Report>>,
}

impl PlatformStatus {
    pub fn disabled() -> Arc<PlatformStatus> {
        Arc::new(PlatformStatus::default())
    }

    pub fn every(interval: Duration) -> Arc<PlatformStatus> {
        Arc::new(PlatformStatus { interval: Some(interval), last: Mutex::new(None) })
    }

    pub fn last(&self) -> Option<Report> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, report: Report) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
    }

    /// The JSON `/readyz` shows: whether the check runs, and its last result.
    pub fn json(&self) -> serde_json::Value {
        match self.interval {
            None => serde_json::json!({ "enabled": false }),
            Some(every) => serde_json::json!({
                "enabled": true,
                "interval_seconds": every.as_secs(),
                "last": self.last(),
            }),
        }
    }
}

/// Run the check every `config.interval` (the first after one interval) until `stop`.
pub async fn run(
    config: PlatformConfig,
    ingest: Arc<Ingest>,
    store: Arc<dyn Store>,
    status: Arc<PlatformStatus>,
    stop: CancellationToken,
) {
    let http = match reqwest::Client::builder().timeout(config.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "platform check not started: no HTTP client");
            return;
        }
    };
    let check = Check { config, ingest, store, http };
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + check.config.interval, check.config.interval);
    // A slow tick (many services, a slow Tempo) skips the ticks it overran, as the older herald's did.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_success = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let report = tokio::select! {
            () = stop.cancelled() => break,
            r = check.once(&mut last_success) => r,
        };
        if !report.ok {
            tracing::warn!(problems = ?report.problems, "platform check: the canary did not come through everywhere");
        }
        status.set(report);
    }
}

struct Check {
    config: PlatformConfig,
    ingest: Arc<Ingest>,
    store: Arc<dyn Store>,
    http: reqwest::Client,
}

impl Check {
    fn metrics(&self) -> &Metrics {
        &self.ingest.metrics
    }

    /// One check: send the canary, look for it here, then in Tempo and Loki.
    async fn once(&self, last_success: &mut Option<f64>) -> Report {
        let mut report = Report::default();
        let sent_ns = now_ns();
        let (trace_id, span_id) = canary_ids(sent_ns);
        let sent = self.send(sent_ns, &trace_id, &span_id).await;
        if let Err(why) = &sent {
            report.problems.push(format!("the canary was not stored: {why}"));
        }
        self.check_store(&mut report, sent.is_ok(), sent_ns, &trace_id).await;
        if self.config.tempo.is_some() || self.config.loki.is_some() {
            tokio::time::sleep(self.config.delay).await;
            self.check_backends(&mut report, sent_ns).await;
        }
        report.ok = report.problems.is_empty() && report.signals.iter().all(|s| s.present == Some(true));
        let now = now_ns() as f64 / 1e9;
        if report.signals.iter().all(|s| s.present == Some(true)) {
            self.metrics().platform.last_success.set(now);
            *last_success = Some(now);
        }
        report.last_success = *last_success;
        report.checked_at = now;
        report
    }

    /// The canary trace and log, through ingest as a pipeline's export goes (past the
    /// listeners, so it needs no token when auth is on).
    async fn send(&self, sent_ns: i64, trace_id: &[u8], span_id: &[u8]) -> Result<(), String> {
        let resource = Some(Resource {
            attributes: vec![
                kv("service.name", Value::StringValue(CANARY_SERVICE.into())),
                kv(helix_model::interpret::INSTRUMENT_ID, Value::StringValue(CANARY_INSTRUMENT.into())),
                kv(helix_model::interpret::PROCESS_NAME, Value::StringValue(CANARY_PROCESS.into())),
            ],
            ..Default::default()
        });
        let time = u64::try_from(sent_ns).unwrap_or(0);
        let span = Span {
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            name: "platform-canary".into(),
            kind: 1,
            start_time_unix_nano: time,
            end_time_unix_nano: time + 1_000,
            ..Default::default()
        };
        let traces = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource.clone(),
                scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
                ..Default::default()
            }],
        };
        let log = LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: time,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(Value::StringValue(CANARY_BODY.into())),
            }),
            attributes: vec![
                kv("helix_process_name", Value::StringValue(CANARY_PROCESS.into())),
                kv("helix_instrument_id", Value::StringValue(CANARY_INSTRUMENT.into())),
                kv("level", Value::StringValue("info".into())),
            ],
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            ..Default::default()
        };
        let logs = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource,
                scope_logs: vec![ScopeLogs { log_records: vec![log], ..Default::default() }],
                ..Default::default()
            }],
        };
        let timeout = self.config.timeout;
        let within = |what: &'static str| move |_| format!("{what} was not acknowledged within {timeout:?}");
        tokio::time::timeout(timeout, self.ingest.traces(traces, "canary", None))
            .await
            .map_err(within("the trace"))?
            .map_err(|e| format!("trace export refused: {e}"))?;
        tokio::time::timeout(timeout, self.ingest.logs(logs, None))
            .await
            .map_err(within("the log"))?
            .map_err(|e| format!("log export refused: {e}"))?;
        Ok(())
    }

    /// This herald's store: the canary's trace (trace API) and log line (log API). Presence is
    /// this check's canary; the count is every canary in the lookback window.
    async fn check_store(&self, report: &mut Report, sent: bool, sent_ns: i64, trace_id: &[u8]) {
        let trace_hex = helix_model::ids::to_hex(trace_id);
        let from_ns = sent_ns - self.config.lookback.as_nanos() as i64;
        let to_ns = now_ns() + 1;
        let page = PageRequest::first(RESULT_LIMIT);
        let mut signals = Vec::new();
        if self.config.spans_stored {
            let filter = TraceFilter {
                service_name: Some(CANARY_SERVICE.into()),
                from_ns: Some(from_ns),
                to_ns: Some(to_ns),
                ..Default::default()
            };
            let found = async {
                let count = self.store.traces(&filter, &page).await?.items.len() as u64;
                let this = self.store.trace(&trace_hex, 1).await?.is_some();
                Ok::<_, helix_store::StoreError>((count, this))
            };
            signals.push(("herald_traces", found.await));
        }
        let filter = LogFilter {
            service_name: Some(CANARY_SERVICE.into()),
            from_ns: Some(from_ns),
            to_ns: Some(to_ns),
            order: LogOrder::Desc,
            ..Default::default()
        };
        let found = async {
            let count = self.store.log_search(&filter, &page).await?.items.len() as u64;
            let mine = LogFilter { trace_id: Some(trace_hex.clone()), ..Default::default() };
            let this = !self.store.log_search(&mine, &PageRequest::first(1)).await?.items.is_empty();
            Ok::<_, helix_store::StoreError>((count, this))
        };
        signals.push(("herald_logs", found.await));
        for (kind, found) in signals {
            // Unlike Tempo's and Loki's, a failed query here is the finding: the herald cannot
            // serve its own data. It counts as absent.
            let (count, present) = match found {
                Ok((count, this)) => (count, this && sent),
                Err(e) => {
                    report.problems.push(format!("{kind}: the store did not answer: {e}"));
                    (0, false)
                }
            };
            if sent && !present {
                report.problems.push(format!("{kind}: the canary was acknowledged but the store does not return it"));
            }
            self.metrics().platform.result_count.with_label_values(&[CANARY_SOURCE, kind]).set(count as i64);
            self.metrics().platform.presence.with_label_values(&[CANARY_SOURCE, kind]).set(i64::from(present));
            report.store_failed |= !present;
            report.signals.push(Signal {
                backend: "herald",
                signal_type: kind,
                count: Some(count),
                present: Some(present),
            });
        }
    }

    /// Tempo and Loki, as the older herald checks them: the canary, then every service either knows.
    async fn check_backends(&self, report: &mut Report, sent_ns: i64) {
        let from_ns = sent_ns - self.config.lookback.as_nanos() as i64;
        let window = (from_ns, now_ns());
        let canary_traces = self.tempo_traces(CANARY_SERVICE, window).await;
        let canary_logs = self.loki_streams(&format!("{{service_name=\"{}\"}}", CANARY_SERVICE), window).await;
        let by_label = self.loki_streams(&format!("{{helix_process_name=\"{CANARY_PROCESS}\"}}"), window).await;
        for (backend, kind, result) in
            [("tempo", "traces", canary_traces), ("loki", "logs", canary_logs), ("loki", "logs_by_label", by_label)]
        {
            let Some(result) = result else { continue };
            match result {
                Ok(count) => {
                    self.metrics().platform.record(CANARY_SOURCE, kind, count);
                    if count == 0 {
                        report
                            .problems
                            .push(format!("{backend} has no canary {kind} in the last {:?}", self.config.lookback));
                    }
                    report.signals.push(Signal {
                        backend,
                        signal_type: kind,
                        count: Some(count),
                        present: Some(count > 0),
                    });
                }
                Err(e) => {
                    report.problems.push(format!("{backend} ({kind}): {e}"));
                    report.signals.push(Signal { backend, signal_type: kind, count: None, present: None });
                }
            }
        }
        let present = |kind: &str| report.signals.iter().any(|s| s.signal_type == kind && s.present == Some(true));
        if present("logs")
            && report.signals.iter().any(|s| s.signal_type == "logs_by_label" && s.present == Some(false))
        {
            tracing::warn!(
                label = "helix_process_name",
                "platform check: Loki has the canary's logs but not under its helix_process_name label; \
                 dashboards selecting on that label are dark (check the collector's label mapping)"
            );
        }
        if self.config.tempo.is_some() && self.config.loki.is_some() {
            self.check_services(report, window).await;
        }
    }

    /// Every service Tempo or Loki knows (but the canary): traces on one side only, or logs on
    /// one side only, is a mismatch; both absent (maintenance) is not.
    async fn check_services(&self, report: &mut Report, window: (i64, i64)) {
        let mut services = BTreeSet::new();
        for listed in [self.loki_services(window).await, self.tempo_services(window).await] {
            match listed {
                Some(Ok(names)) => services.extend(names),
                Some(Err(e)) => report.problems.push(format!("service discovery: {e}")),
                None => {}
            }
        }
        services.remove(CANARY_SERVICE);
        for service in services.into_iter().take(RESULT_LIMIT) {
            let traces = self.tempo_traces(&service, window).await;
            let logs = self.loki_streams(&format!("{{service_name=\"{}\"}}", logql_escape(&service)), window).await;
            let (Some(Ok(traces)), Some(Ok(logs))) = (traces, logs) else { continue };
            self.metrics().platform.record(&service, "traces", traces);
            self.metrics().platform.record(&service, "logs", logs);
            let missing = match (traces > 0, logs > 0) {
                (true, false) => "logs",
                (false, true) => "traces",
                _ => continue,
            };
            self.metrics().platform.mismatch.with_label_values(&[service.as_str(), missing]).inc();
            report.problems.push(format!("service {service:?} has no {missing} (it has the other signal)"));
            report.mismatches.push((service, missing));
        }
    }

    async fn get(&self, backend: &Backend, path: &str, query: &[(&str, String)]) -> Result<serde_json::Value, String> {
        let url = format!("{}{path}", backend.url.trim_end_matches('/'));
        let response = self
            .http
            .get(&url)
            .header("X-Scope-OrgID", &backend.tenant)
            .query(query)
            .send()
            .await
            .map_err(|e| format!("GET {path} failed: {}", e.without_url()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("GET {path} answered {status} (is the tenant right?)"));
        }
        response.json().await.map_err(|e| format!("GET {path}: not JSON: {}", e.without_url()))
    }

    /// Traces of `service` in Tempo; `None` when Tempo is not configured.
    async fn tempo_traces(&self, service: &str, (from, to): (i64, i64)) -> Option<Result<u64, String>> {
        let tempo = self.config.tempo.as_ref()?;
        let q = format!("{{resource.service.name=\"{}\"}}", logql_escape(service));
        let query = [("q", q), ("start", secs(from)), ("end", secs(to)), ("limit", RESULT_LIMIT.to_string())];
        Some(self.get(tempo, "/api/search", &query).await.map(|v| v["traces"].as_array().map_or(0, |a| a.len() as u64)))
    }

    /// Streams matching a LogQL selector in Loki; `None` when Loki is not configured.
    async fn loki_streams(&self, selector: &str, (from, to): (i64, i64)) -> Option<Result<u64, String>> {
        let loki = self.config.loki.as_ref()?;
        let query = [
            ("query", selector.to_owned()),
            ("start", from.to_string()),
            ("end", to.to_string()),
            ("limit", RESULT_LIMIT.to_string()),
        ];
        Some(
            self.get(loki, "/loki/api/v1/query_range", &query)
                .await
                .map(|v| v["data"]["result"].as_array().map_or(0, |a| a.len() as u64)),
        )
    }

    async fn loki_services(&self, (from, to): (i64, i64)) -> Option<Result<Vec<String>, String>> {
        let loki = self.config.loki.as_ref()?;
        let query = [("start", from.to_string()), ("end", to.to_string())];
        Some(self.get(loki, "/loki/api/v1/label/service_name/values", &query).await.map(|v| {
            v["data"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        }))
    }

    async fn tempo_services(&self, (from, to): (i64, i64)) -> Option<Result<Vec<String>, String>> {
        let tempo = self.config.tempo.as_ref()?;
        let query = [("start", secs(from)), ("end", secs(to))];
        Some(self.get(tempo, "/api/v2/search/tag/resource.service.name/values", &query).await.map(|v| {
            v["tagValues"]
                .as_array()
                .map(|a| a.iter().filter_map(|t| t["value"].as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        }))
    }
}

/// A fresh trace and span ID for a canary sent at `sent_ns` (the process ID keeps two replicas
/// sharing a database apart).
fn canary_ids(sent_ns: i64) -> (Vec<u8>, Vec<u8>) {
    let mut trace = (sent_ns as u128).to_be_bytes();
    trace[..4].copy_from_slice(&std::process::id().to_be_bytes());
    trace[4] |= 0x80;
    let span = ((sent_ns as u64) | 1).to_be_bytes();
    (trace.to_vec(), span.to_vec())
}

fn secs(ns: i64) -> String {
    (ns / 1_000_000_000).to_string()
}

/// A value inside a double-quoted LogQL or TraceQL string.
fn logql_escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canary_ids_are_valid_and_differ_per_send() {
        let (t1, s1) = canary_ids(1_700_000_000_000_000_001);
        let (t2, s2) = canary_ids(1_700_000_000_000_000_002);
        assert_eq!((t1.len(), s1.len()), (16, 8));
        assert!(t1.iter().any(|b| *b != 0) && s1.iter().any(|b| *b != 0), "OTLP forbids all-zero IDs");
        assert_ne!(t1, t2);
        assert_ne!(s1, s2);
    }

    #[test]
    fn quoted_values_are_escaped() {
        assert_eq!(logql_escape(r#"a"b\c"#), r#"a\"b\\c"#);
    }
}
