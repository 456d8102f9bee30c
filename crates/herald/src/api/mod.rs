//! The herald's HTTP JSON API (docs/api.md): shared state, the one error type, and `app()` serving
//! the routes of every resource in [`RESOURCES`]. Rendering HTML is the inspector's job, not
//! this module's.

pub mod auth;
pub mod causes;
pub mod classes;
pub mod entity;
pub mod events;
pub mod exports;
#[cfg(test)]
pub(crate) mod fake;
pub mod flags;
pub mod handler_metrics;
pub mod health;
pub mod impact;
pub mod index;
pub mod instruments;
pub mod lineage;
pub mod logql;
pub mod logs;
pub mod loki;
pub mod monitor;
pub mod notifications;
pub mod openapi;
pub mod otlp_json;
pub mod params;
pub mod search;
pub mod stages;
pub mod tempo;
pub mod traces;
pub mod window;

use std::sync::Arc;

use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::{Json, Router};
use helix_store::{Store, StoreError};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::metrics::Metrics;

/// What every handler reads: the store (a trait object, so SQLite and PostgreSQL serve the
/// same handlers) and the metrics registry rendered at `/metrics`.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// False when the herald runs with `--store-spans=false`: the trace endpoints then say so.
    pub spans_stored: bool,
    /// Rows one Loki API request may read from the store (`--loki-scan-lines`).
    pub loki_scan_lines: usize,
    /// Namespace IRI of this deployment in the PROV and OpenLineage exports (`--prov-namespace`).
    pub prov_namespace: Arc<str>,
    /// Who may read (and where tokens come from: `POST /auth/token`).
    pub auth: Arc<crate::auth::Auth>,
    /// The platform check's last result (`/readyz`, the health page).
    pub platform: Arc<crate::canary::PlatformStatus>,
}

/// One registered endpoint. Each resource module lists its endpoints as `Route`s; the router,
/// the index at `/api/v1/` and the OpenAPI test all read those lists (through [`RESOURCES`]).
pub struct Route {
    pub method: Method,
    /// axum (and OpenAPI) path template, e.g. `/api/v1/entity/{id}/graph`.
    pub path: &'static str,
    /// Query parameters the handler accepts (`meta.*` stands for every `meta.KEY`).
    pub query: &'static [&'static str],
    pub handler: MethodRouter<ApiState>,
}

/// One resource of the API: the name the index and the OpenAPI tags use, and its routes.
pub struct Resource {
    pub name: &'static str,
    pub routes: fn() -> Vec<Route>,
}

/// The API, resource by resource: the one list `app()`, the index and the OpenAPI test read.
pub const RESOURCES: &[Resource] = &[
    Resource { name: "index", routes: index::routes },
    Resource { name: "entity", routes: entity::routes },
    Resource { name: "lineage", routes: lineage::routes },
    Resource { name: "exports", routes: exports::routes },
    Resource { name: "impact", routes: impact::routes },
    Resource { name: "flags", routes: flags::routes },
    Resource { name: "search", routes: search::routes },
    Resource { name: "instruments", routes: instruments::routes },
    Resource { name: "stages", routes: stages::routes },
    Resource { name: "events", routes: events::routes },
    Resource { name: "causes", routes: causes::routes },
    Resource { name: "monitor", routes: monitor::routes },
    Resource { name: "traces", routes: traces::routes },
    Resource { name: "logs", routes: logs::routes },
    Resource { name: "tempo", routes: tempo::routes },
    Resource { name: "loki", routes: loki::routes },
    Resource { name: "health", routes: health::routes },
    Resource { name: "auth", routes: auth::routes },
    Resource { name: "notifications", routes: notifications::routes },
    Resource { name: "openapi", routes: openapi::routes },
];

/// Every route of the API, in [`RESOURCES`] order.
pub fn routes() -> Vec<Route> {
    RESOURCES.iter().flat_map(|resource| (resource.routes)()).collect()
}

/// The whole API as one router, ready to be served or merged with the inspector UI.
///
/// No fallback is installed here, so the caller can merge a UI router with its own fallback;
/// use [`not_found`] as the listener's fallback for a JSON 404 on unknown paths.
pub fn app(state: ApiState) -> Router {
    app_limited(state, classes::ReadLimits::DEFAULT)
}

/// [`app`] with the expensive endpoint classes limited to `limits` requests at once.
pub fn app_limited(state: ApiState, limits: classes::ReadLimits) -> Router {
    let budgets = classes::ClassBudgets::new(limits);
    routes()
        .into_iter()
        .fold(Router::new(), |router, route| router.route(route.path, budgets.limit(route.path, route.handler)))
        .with_state(state)
}

/// An endpoint of the older herald's API: like it, answers any origin
/// (`Access-Control-Allow-Origin: *`), so dashboards served from elsewhere can read it,
/// including the `x-next-cursor` header of the operations list.
pub(crate) fn compatible(handler: MethodRouter<ApiState>) -> MethodRouter<ApiState> {
    handler.layer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::any())
            .allow_methods([Method::GET])
            .expose_headers([HeaderName::from_static(entity::NEXT_CURSOR_HEADER)]),
    )
}

/// A JSON 404 for paths no route matches, for use as a fallback by whoever owns the listener.
pub async fn not_found() -> ApiError {
    ApiError::NotFound(format!("no such endpoint; the API's endpoints are listed at {}", index::PATH))
}

/// Why a request failed, and what the client is told. Input problems name the parameter;
/// store failures are logged with their cause and answered generically.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A path or query parameter is missing, malformed or out of range.
    #[error("invalid parameter `{param}`: {reason}")]
    BadParam { param: String, reason: String },
    /// The addressed resource does not exist; the message says which.
    #[error("{0}")]
    NotFound(String),
    /// The token may not do this; the message says which token would.
    #[error("{0}")]
    Forbidden(String),
    /// The request conflicts with what is stored (a bound reached); the message says what.
    #[error("{0}")]
    Conflict(String),
    /// The store cannot serve right now; the client should retry.
    #[error("store unavailable, retry later")]
    Unavailable(#[source] StoreError),
    /// The query ran past its time budget and was stopped.
    #[error(
        "the query took longer than the herald's --query-timeout and was stopped; narrow it (a smaller limit, depth \
         or time range, more filters) or retry when the herald is less busy"
    )]
    QueryTimeout(#[source] StoreError),
    /// A bug or corrupt data; the cause is only logged.
    #[error("internal error")]
    Internal(#[source] StoreError),
    /// A response value did not serialize (a bug); the cause is only logged.
    #[error("internal error")]
    Encode(#[from] serde_json::Error),
}

impl ApiError {
    /// A 400 naming `param`.
    pub fn bad(param: impl Into<String>, reason: impl Into<String>) -> Self {
        ApiError::BadParam { param: param.into(), reason: reason.into() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadParam { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) | ApiError::QueryTimeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) | ApiError::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            // Cursors are opaque to clients, so a store rejecting one is the caller's mistake.
            StoreError::BadCursor(reason) => ApiError::bad("cursor", reason),
            StoreError::Unavailable { .. } if err.is_query_timeout() => ApiError::QueryTimeout(err),
            StoreError::Unavailable { .. } => ApiError::Unavailable(err),
            StoreError::Schema(_)
            | StoreError::Config(_)
            | StoreError::Internal { .. }
            | StoreError::InstrumentConflict(_) => ApiError::Internal(err),
        }
    }
}

impl ApiError {
    /// Log what the client is not told: the causes of store and encoding failures.
    pub(crate) fn log_cause(&self) {
        match self {
            ApiError::Internal(cause) => tracing::error!(error = %cause, "api request failed"),
            ApiError::Encode(cause) => {
                tracing::error!(error = %cause, "api response did not serialize")
            }
            ApiError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "api request hit an unavailable store")
            }
            ApiError::QueryTimeout(cause) => tracing::warn!(error = %cause, "api query stopped at its budget"),
            ApiError::BadParam { .. } | ApiError::NotFound(_) | ApiError::Forbidden(_) | ApiError::Conflict(_) => {}
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log_cause();
        let status = self.status();
        let mut response = (status, Json(serde_json::json!({ "error": self.to_string() }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Tells well-behaved clients (and the UI) when to try again.
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Result of a handler body.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use axum::body::{to_bytes, Body};
    use axum::http::{HeaderMap, Request, StatusCode};
    use serde_json::Value;
    use tower::ServiceExt;

    use super::fake::{Behaviour, FakeStore};
    use super::*;

    async fn get(state: ApiState, uri: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
        let request = Request::builder().uri(uri).body(Body::empty()).expect("request");
        let response = app(state).oneshot(request).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let body = to_bytes(body, usize::MAX).await.expect("body").to_vec();
        (parts.status, parts.headers, body)
    }

    fn error_message(body: &[u8]) -> String {
        let value: Value = serde_json::from_slice(body).expect("error body is JSON");
        value["error"].as_str().expect("`error` string").to_owned()
    }

    #[tokio::test]
    async fn unavailable_store_is_503_with_retry_after() {
        let (status, headers, body) =
            get(FakeStore::failing(Behaviour::Unavailable).state(), "/api/v1/instruments").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert_eq!(error_message(&body), "store unavailable, retry later");
    }

    #[tokio::test]
    async fn internal_store_errors_are_answered_generically() {
        let (status, _, body) = get(FakeStore::failing(Behaviour::Internal).state(), "/api/v1/entity/x").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error_message(&body), "internal error");
    }

    #[tokio::test]
    async fn a_cursor_the_store_rejects_is_400_naming_cursor() {
        let (status, _, body) =
            get(FakeStore::failing(Behaviour::BadCursor).state(), "/api/v1/entities?cursor=abc").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(error_message(&body).contains("`cursor`"));
    }

    #[tokio::test]
    async fn readyz_reports_the_reason_when_the_store_is_down() {
        let (status, _, body) = get(FakeStore::failing(Behaviour::Unavailable).state(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(error_message(&body).contains("database is locked"));
        let (status, _, body) = get(FakeStore::empty().state(), "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        let value: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(value["backend"], "fake");
    }

    #[tokio::test]
    async fn the_health_summary_reads_the_metrics_and_names_what_is_degraded() {
        let state = FakeStore::empty().state();
        state.metrics.spans_received.with_label_values(&["grpc"]).inc_by(7);
        state.metrics.exports_refused.with_label_values(&["too_large"]).inc();
        let (status, _, body) = get(state, "/api/v1/health").await;
        assert_eq!(status, StatusCode::OK);
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["ingest"]["spans_received"], 7.0);
        assert_eq!(v["refusals"]["exports"]["too_large"], 1.0);
        assert_eq!(v["forwarder"]["configured"], false);
        assert_eq!(v["notifications"]["configured"], true, "the outbox metric is registered");
        assert_eq!(v["degraded"], serde_json::json!([]));
        let (_, _, body) = get(FakeStore::failing(Behaviour::Unavailable).state(), "/api/v1/health").await;
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert!(v["degraded"][0].as_str().unwrap().contains("not ready"), "{v}");
        assert_eq!(v["store"]["ready"], false);
    }

    #[tokio::test]
    async fn healthz_answers_even_when_the_store_is_down() {
        let (status, _, body) = get(FakeStore::failing(Behaviour::Unavailable).state(), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, b"ok");
    }

    #[tokio::test]
    async fn metrics_use_the_prometheus_content_type() {
        let (status, headers, _) = get(FakeStore::empty().state(), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], health::PROMETHEUS_CONTENT_TYPE);
    }

    #[tokio::test]
    async fn ids_with_control_characters_or_broken_encoding_are_400_naming_id() {
        for uri in ["/api/v1/entity/a%0Ab", "/api/v1/entity/a%00b/graph", "/api/v1/entity/%FF%FE/lineage"] {
            let (status, _, body) = get(FakeStore::empty().state(), uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert!(error_message(&body).contains("`id`"), "{uri}");
        }
    }

    #[tokio::test]
    async fn bad_query_parameters_are_400_naming_them() {
        let cases = [
            ("/api/v1/entity/x/lineage?direction=sideways", "`direction`"),
            ("/api/v1/entity/x/lineage?depth=-1", "`depth`"),
            ("/api/v1/entity/x/lineage?limit=100001", "`limit`"),
            ("/api/v1/entity/x/graph?up=x", "`up`"),
            ("/api/v1/entity/x/graph?down=-2", "`down`"),
            ("/api/v1/entity/x/events?limit=0", "`limit`"),
            ("/api/v1/entity/x/logs?cursor=%01", "`cursor`"),
            ("/api/v1/entity/x/operations?limit=10001", "`limit`"),
            ("/api/v1/entities?status=broken", "`status`"),
            ("/api/v1/entities?limit=abc", "`limit`"),
            ("/api/v1/entities?meta.=1", "`meta.`"),
            ("/api/v1/entities?instrumnt=CHIME", "`instrumnt`"),
            ("/api/v1/entities?from_ns=1.5", "`from_ns`"),
            ("/api/v1/stages", "`instrument`"),
        ];
        for (uri, named) in cases {
            let (status, _, body) = get(FakeStore::empty().state(), uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert!(error_message(&body).contains(named), "{uri}: {}", error_message(&body));
        }
    }

    #[tokio::test]
    async fn unknown_entities_are_json_404s() {
        for uri in [
            "/api/v1/entity/nope",
            "/api/v1/entity/nope/graph",
            "/api/v1/entity/nope/events",
            "/api/v1/entity/nope/lineage",
        ] {
            let (status, _, body) = get(FakeStore::empty().state(), uri).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
            assert_eq!(error_message(&body), "entity `nope` not found");
        }
    }

    #[tokio::test]
    async fn an_unknown_entity_has_no_operations_rather_than_a_404() {
        let (status, _, body) = get(FakeStore::empty().state(), "/api/v1/entity/nope/operations").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, b"[]");
    }

    #[tokio::test]
    async fn unknown_paths_point_to_the_index() {
        let app = app(FakeStore::empty().state()).fallback(not_found);
        let request = Request::builder().uri("/api/v2/entity/x").body(Body::empty()).expect("request");
        let response = app.oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body = to_bytes(response.into_body(), usize::MAX).await.expect("body");
        assert_eq!(error_message(&body), "no such endpoint; the API's endpoints are listed at /api/v1/");
    }

    #[tokio::test]
    async fn the_index_answers_with_links_and_refuses_parameters() {
        let (status, headers, body) = get(FakeStore::empty().state(), "/api/v1/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        let index: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(index["openapi"], "/api/openapi.json");
        let hrefs: Vec<&str> = index["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .flat_map(|r| r["links"].as_array().expect("links"))
            .map(|l| l["href"].as_str().expect("href"))
            .collect();
        assert!(hrefs.contains(&"/api/v1/entity/{id}/lineage"), "{hrefs:?}");
        let (status, _, body) = get(FakeStore::empty().state(), "/api/v1/?verbose=1").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(error_message(&body).contains("`verbose`"));
    }

    #[tokio::test]
    async fn compatible_endpoints_ignore_parameters_they_do_not_know() {
        let (status, _, body) = get(FakeStore::empty().state(), "/api/v1/instruments?_=1716200000").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, b"[]");
    }
}
