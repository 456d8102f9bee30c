//! Liveness (`/healthz`), readiness (`/readyz`: store reachable, schema current), the
//! Prometheus exposition (`/metrics`) and its summary for the Inspector's health page
//! (`/api/v1/health`).

use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde_json::{json, Value};

use super::{ApiState, Route};

/// Content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

pub fn routes() -> Vec<Route> {
    vec![
        Route { method: Method::GET, path: "/healthz", query: &[], handler: get(healthz) },
        Route { method: Method::GET, path: "/readyz", query: &[], handler: get(readyz) },
        Route { method: Method::GET, path: "/metrics", query: &[], handler: get(metrics) },
        Route { method: Method::GET, path: "/api/v1/health", query: &[], handler: get(summary) },
    ]
}

/// The process answers: nothing else is checked, so an orchestrator never restarts a
/// herald merely because its database is down.
async fn healthz() -> &'static str {
    "ok"
}

/// 200 `{"status": "ready", "backend": …}` or 503 `{"error": reason}`. The reason is shown
/// (unlike other store errors) because operators read this endpoint to learn what is wrong.
/// The platform check's last result is shown too (`platform_check`); a canary this herald's own
/// store could not take or return makes it not ready, while a canary missing only from Tempo or
/// Loki does not (the herald can still store data).
async fn readyz(State(state): State<ApiState>) -> Response {
    let platform = state.platform.json();
    let canary_failed = state.platform.last().filter(|r| r.store_failed);
    match state.store.check_ready().await {
        Ok(()) if canary_failed.is_none() => {
            Json(json!({ "status": "ready", "backend": state.store.backend(), "platform_check": platform }))
                .into_response()
        }
        Ok(()) => {
            let why = canary_failed.map(|r| r.problems.join("; ")).unwrap_or_default();
            tracing::warn!(problems = %why, "not ready: the platform canary did not come through the store");
            let error = format!("the platform check's canary did not come through this herald's store: {why}");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": error, "platform_check": platform })))
                .into_response()
        }
        Err(err) => {
            tracing::warn!(error = %err, backend = state.store.backend(), "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": err.to_string(), "platform_check": platform })))
                .into_response()
        }
    }
}

/// The Prometheus text exposition; public so the compatibility metrics listener serves it too.
pub async fn metrics(State(state): State<ApiState>) -> Response {
    if let Some(d) = state.store.span_directory() {
        state.metrics.span_directory_bytes.set(i64::try_from(d.bytes).unwrap_or(i64::MAX));
        state.metrics.span_directory_limit_bytes.set(i64::try_from(d.cap_bytes).unwrap_or(i64::MAX));
    }
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_CONTENT_TYPE));
    response
}

/// The metric families of one scrape, by name, summed the way the health page shows them.
struct Families(std::collections::HashMap<String, prometheus::proto::MetricFamily>);

impl Families {
    fn of(metrics: &crate::metrics::Metrics) -> Families {
        Families(metrics.families().into_iter().map(|f| (f.name().to_owned(), f)).collect())
    }

    fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    fn value(m: &prometheus::proto::Metric) -> f64 {
        // A metric is one kind; the other kind's value reads as 0.
        m.get_counter().get_value() + m.get_gauge().get_value()
    }

    /// A counter's or gauge's value, summed over its label sets (0 when absent).
    fn total(&self, name: &str) -> f64 {
        self.0.get(name).map_or(0.0, |f| f.get_metric().iter().map(Self::value).sum())
    }

    /// Values by one label (summed over the others).
    fn by(&self, name: &str, label: &str) -> Value {
        let mut out = serde_json::Map::new();
        for m in self.0.get(name).map_or(&[][..], |f| f.get_metric()) {
            let key = m.get_label().iter().find(|l| l.name() == label).map_or("", |l| l.value());
            let slot = out.entry(key.to_owned()).or_insert(json!(0.0));
            *slot = json!(slot.as_f64().unwrap_or(0.0) + Self::value(m));
        }
        Value::Object(out)
    }

    /// A histogram's observation count and sum, over its label sets.
    fn histogram(&self, name: &str) -> Value {
        let (mut count, mut sum) = (0u64, 0.0);
        for m in self.0.get(name).map_or(&[][..], |f| f.get_metric()) {
            let h = m.get_histogram();
            count += h.get_sample_count();
            sum += h.get_sample_sum();
        }
        json!({ "count": count, "sum": sum })
    }
}

fn unix_seconds(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The herald's own state, read from its metrics registry (cumulative counters: the page
/// computes rates between two reads), plus readiness, the platform check and what is degraded.
async fn summary(State(state): State<ApiState>) -> Json<Value> {
    let m = Families::of(&state.metrics);
    let ready = state.store.check_ready().await;
    // A store that cannot say its size is no reason to fail the page.
    let size_bytes = state.store.size_bytes().await.ok().flatten();
    let mut degraded = Vec::new();
    if let Err(e) = &ready {
        degraded.push(format!("the store is not ready: {e}"));
    }
    if let Some(report) = state.platform.last().filter(|r| !r.ok) {
        degraded.push(format!("platform check: {}", report.problems.join("; ")));
    }
    let notifications = if m.has("helix_notification_outbox_depth") {
        json!({
            "configured": true,
            "outbox_depth": m.total("helix_notification_outbox_depth"),
            "sent": m.total("helix_notifications_sent_total"),
            "errors": m.total("helix_notification_errors_total"),
            "dropped": m.total("helix_notification_channel_drops_total"),
        })
    } else {
        json!({ "configured": false })
    };
    Json(json!({
        "now": unix_seconds(std::time::SystemTime::now()),
        "started": unix_seconds(state.metrics.started),
        "ingest": {
            "spans_received": m.total("helix_spans_received_total"),
            "logs_received": m.total("helix_logs_received_total"),
            "entities_created": m.total("helix_entities_total"),
            "operations": m.total("helix_operations_total"),
            "errors": m.total("helix_errors_total"),
            "spans_stored": m.total("helix_spans_stored_total"),
        },
        "write": {
            "commits": m.histogram("helix_write_batch_seconds"),
            "queue_records": m.total("helix_write_queue_records"),
            "failures": m.by("helix_write_failures_total", "kind"),
        },
        "refusals": {
            "exports": m.by("helix_exports_refused_total", "reason"),
            "spans_rejected": m.total("helix_spans_rejected_total"),
            "auth_denied": m.total("helix_auth_denied_total"),
        },
        "forwarder": {
            "configured": m.total("helix_forward_configured") > 0.0,
            "queue_requests": m.total("helix_forward_queue_requests"),
            "spans": m.by("helix_forward_spans_total", "result"),
            "logs": m.by("helix_forward_logs_total", "result"),
        },
        "store": {
            "backend": state.store.backend(),
            "ready": ready.is_ok(),
            "connections_in_use": m.total("helix_db_connections_in_use"),
            "connections_open": m.total("helix_db_connections_total"),
            "trace_store_size": m.total("helix_trace_store_size"),
            "write_errors": m.total("helix_db_write_errors_total"),
            "size_bytes": size_bytes,
            "retention": state.store.retention(),
            "span_directory": state.store.span_directory(),
        },
        "platform_check": state.platform.json(),
        "notifications": notifications,
        "degraded": degraded,
    }))
}
