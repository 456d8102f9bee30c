//! Liveness (`/healthz`), readiness (`/readyz`: store reachable, schema current) and the
//! Prometheus exposition (`/metrics`).

use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde_json::json;

use super::{ApiState, Route};

/// Content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

pub fn routes() -> Vec<Route> {
    vec![
        Route { method: Method::GET, path: "/healthz", query: &[], handler: get(healthz) },
        Route { method: Method::GET, path: "/readyz", query: &[], handler: get(readyz) },
        Route { method: Method::GET, path: "/metrics", query: &[], handler: get(metrics) },
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
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_CONTENT_TYPE));
    response
}
