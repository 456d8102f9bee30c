//! The herald's HTTP JSON API (api.md): shared state, the one error type, and `app()` merging
//! one router per resource. Rendering HTML is the inspector's job, not this module's.

pub mod entity;
pub mod errors;
#[cfg(test)]
pub(crate) mod fake;
pub mod health;
pub mod instruments;
pub mod lineage;
pub mod monitor;
pub mod openapi;
pub mod overview;
pub mod params;
pub mod search;
pub mod window;

use std::sync::Arc;

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::{Json, Router};
use helix_store::{Store, StoreError};

use crate::metrics::Metrics;

/// What every handler reads: the store (a trait object, so SQLite and PostgreSQL serve the
/// same handlers) and the metrics registry rendered at `/metrics`.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
}

/// One registered endpoint. Each resource module lists its endpoints as `Route`s and builds its
/// router from that list only, so the list is the single source of truth the OpenAPI test
/// compares the document against.
pub struct Route {
    pub method: Method,
    /// axum (and OpenAPI) path template, e.g. `/api/v1/entity/{id}/graph`.
    pub path: &'static str,
    /// Query parameters the handler accepts (`meta.*` stands for every `meta.KEY`).
    pub query: &'static [&'static str],
    pub handler: MethodRouter<ApiState>,
}

/// Builds a resource router from its route list; the only way routes get registered.
fn router_from(routes: Vec<Route>) -> Router<ApiState> {
    routes.into_iter().fold(Router::new(), |router, route| router.route(route.path, route.handler))
}

/// Every route of the API, in module order: what `app()` serves and the OpenAPI document lists.
pub fn routes() -> Vec<Route> {
    let mut all = Vec::new();
    all.extend(entity::routes());
    all.extend(lineage::routes());
    all.extend(search::routes());
    all.extend(instruments::routes());
    all.extend(health::routes());
    all.extend(openapi::routes());
    all.extend(monitor::routes());
    all.extend(errors::routes());
    all.extend(overview::routes());
    all
}

/// The whole API as one router, ready to be served or merged with the inspector UI.
///
/// No fallback is installed here, so the caller can merge a UI router with its own fallback;
/// use [`not_found`] as the listener's fallback for a JSON 404 on unknown paths.
pub fn app(state: ApiState) -> Router {
    Router::new()
        .merge(entity::router())
        .merge(lineage::router())
        .merge(search::router())
        .merge(instruments::router())
        .merge(health::router())
        .merge(openapi::router())
        .merge(monitor::router())
        .merge(errors::router())
        .merge(overview::router())
        .with_state(state)
}

/// A JSON 404 for paths no route matches, for use as a fallback by whoever owns the listener.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".to_owned())
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
    /// The store cannot serve right now; the client should retry.
    #[error("store unavailable, retry later")]
    Unavailable(#[source] StoreError),
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
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) | ApiError::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            // Cursors are opaque to clients, so a store rejecting one is the caller's mistake.
            StoreError::BadCursor(reason) => ApiError::bad("cursor", reason),
            StoreError::Unavailable(_) => ApiError::Unavailable(err),
            StoreError::Schema(_) | StoreError::Internal(_) => ApiError::Internal(err),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(cause) => tracing::error!(error = %cause, "api request failed"),
            ApiError::Encode(cause) => {
                tracing::error!(error = %cause, "api response did not serialize")
            }
            ApiError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "api request hit an unavailable store")
            }
            ApiError::BadParam { .. } | ApiError::NotFound(_) => {}
        }
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
    use axum::http::{Request, StatusCode};
    use serde_json::Value;
    use tower::ServiceExt;

    use super::fake::{Behaviour, FakeStore};
    use super::*;

    async fn get(state: ApiState, uri: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
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
            "/api/v1/entity/nope/operations",
            "/api/v1/entity/nope/events",
            "/api/v1/entity/nope/lineage",
        ] {
            let (status, _, body) = get(FakeStore::empty().state(), uri).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
            assert_eq!(error_message(&body), "entity `nope` not found");
        }
    }

    #[tokio::test]
    async fn compatible_endpoints_ignore_parameters_they_do_not_know() {
        let (status, _, body) = get(FakeStore::empty().state(), "/api/v1/instruments?_=1716200000").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, b"[]");
    }
}
