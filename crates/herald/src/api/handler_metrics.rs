//! The `helix_api_*` metrics: each HTTP request counted and timed under one stable handler name
//! per route (from axum's matched route template, never the raw path, so entity IDs never
//! become label values). The older herald's endpoints keep its handler names and status words.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::metrics::Metrics;

/// The older herald's handler names for its endpoints. Those marked `true` labelled status
/// with a word (`success`, `bad_request`, `not_found`, `error`); the others with the HTTP code.
const COMPATIBLE: &[(Method, &str, &str, bool)] = &[
    (Method::GET, "/api/v1/entity/{id}/graph", "entity_graph", true),
    (Method::GET, "/api/v1/entity/{id}/operations", "entity_operations", true),
    (Method::GET, "/api/v1/monitor/bins", "monitor_bins", true),
    (Method::GET, "/api/v1/instruments", "list_instruments", false),
    (Method::POST, "/api/v1/notifications/silence", "create_silence", false),
    (Method::DELETE, "/api/v1/notifications/silence/{silence_id}", "delete_silence", false),
    (Method::GET, "/api/v1/notifications/silences", "list_silences", false),
    (Method::GET, "/api/v1/notifications/alerts", "list_alerts", false),
];

/// Requests that matched no route (one label value, whatever the path).
pub const UNMATCHED: &str = "unmatched";

/// Handler name (and status style) of each route template, computed once.
pub struct HandlerMetrics {
    metrics: Arc<Metrics>,
    names: HashMap<(Method, &'static str), (String, bool)>,
}

impl HandlerMetrics {
    /// Names for every API route; routes of the UI (not in the API's list) are named when met.
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        let mut names = HashMap::new();
        for resource in super::RESOURCES {
            for route in (resource.routes)() {
                let mut name = derived_name(&route.method, route.path);
                // The Tempo-compatible paths (`/api/search`, `/api/traces/…`) would read like ours.
                if resource.name == "tempo" {
                    name = format!("tempo_{name}");
                } else if name == "root" {
                    name = resource.name.to_owned();
                }
                names.insert((route.method.clone(), route.path), (name, false));
            }
        }
        for (method, path, name, words) in COMPATIBLE {
            names.insert((method.clone(), *path), ((*name).to_owned(), *words));
        }
        Arc::new(HandlerMetrics { metrics, names })
    }

    /// The handler label and status style of a request.
    pub fn name(&self, method: &Method, template: Option<&str>) -> (String, bool) {
        let Some(template) = template else { return (UNMATCHED.to_owned(), false) };
        let method = if method == Method::HEAD { &Method::GET } else { method };
        match self.names.get(&(method.clone(), template)) {
            Some(named) => named.clone(),
            // Not an API route: an Inspector page or asset.
            None => (format!("inspector_{}", derived_name(method, template)), false),
        }
    }
}

/// `GET /api/v1/entity/{id}/lineage` → `entity_lineage`; `POST /auth/token` → `post_auth_token`;
/// `/` → `root`. Path parameters and the `api`/`v1` segments are dropped.
fn derived_name(method: &Method, template: &str) -> String {
    let words: Vec<String> = template
        .split('/')
        .filter(|s| !s.is_empty() && !s.starts_with('{') && !matches!(*s, "api" | "v1"))
        .map(|s| s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect())
        .collect();
    let mut name = if words.is_empty() { "root".to_owned() } else { words.join("_") };
    if !matches!(*method, Method::GET | Method::HEAD) {
        name = format!("{}_{name}", method.as_str().to_ascii_lowercase());
    }
    name
}

/// The status label: the older herald's words for its handlers that used them, else the code.
fn status_label(status: StatusCode, words: bool) -> String {
    if !words {
        return status.as_u16().to_string();
    }
    match status.as_u16() {
        200..=399 => "success",
        400 => "bad_request",
        404 => "not_found",
        _ => "error",
    }
    .to_owned()
}

/// Middleware: count and time the request under its handler name.
pub async fn record(State(handlers): State<Arc<HandlerMetrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let (handler, words) =
        handlers.name(request.method(), request.extensions().get::<MatchedPath>().map(MatchedPath::as_str));
    let response = next.run(request).await;
    let metrics = &handlers.metrics;
    metrics.api_request_duration.with_label_values(&[handler.as_str()]).observe(started.elapsed().as_secs_f64());
    metrics.api_requests.with_label_values(&[handler.as_str(), &status_label(response.status(), words)]).inc();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_get_stable_names_and_the_older_heralds_keep_theirs() {
        let h = HandlerMetrics::new(Arc::new(Metrics::new()));
        let name = |m: Method, t: &str| h.name(&m, Some(t)).0;
        assert_eq!(name(Method::GET, "/api/v1/entity/{id}/graph"), "entity_graph");
        assert_eq!(name(Method::GET, "/api/v1/entity/{id}/operations"), "entity_operations");
        assert_eq!(name(Method::GET, "/api/v1/monitor/bins"), "monitor_bins");
        assert_eq!(name(Method::GET, "/api/v1/instruments"), "list_instruments");
        assert_eq!(name(Method::GET, "/api/v1/entity/{id}/lineage"), "entity_lineage");
        assert_eq!(name(Method::GET, "/api/v1/entity/{id}"), "entity");
        assert_eq!(name(Method::HEAD, "/api/v1/entities"), "entities");
        assert_eq!(name(Method::POST, "/auth/token"), "post_auth_token");
        assert_eq!(name(Method::GET, "/readyz"), "readyz");
        assert_eq!(name(Method::GET, "/entity/{*id}"), "inspector_entity");
        assert_eq!(name(Method::GET, "/"), "inspector_root");
        assert_eq!(name(Method::GET, "/api/v1/"), "index");
        assert_eq!(name(Method::GET, "/api/traces/{traceID}"), "tempo_traces");
        assert_eq!(name(Method::GET, "/loki/api/v1/query_range"), "loki_query_range");
        assert_eq!(h.name(&Method::GET, None).0, UNMATCHED);
        // Every API route has its own name.
        let mut seen = std::collections::HashSet::new();
        for route in super::super::routes() {
            let n = name(route.method.clone(), route.path);
            assert!(seen.insert(n.clone()), "{} {} shares the name {n}", route.method, route.path);
        }
    }

    #[test]
    fn compatible_handlers_label_status_with_words() {
        assert_eq!(status_label(StatusCode::OK, true), "success");
        assert_eq!(status_label(StatusCode::BAD_REQUEST, true), "bad_request");
        assert_eq!(status_label(StatusCode::NOT_FOUND, true), "not_found");
        assert_eq!(status_label(StatusCode::SERVICE_UNAVAILABLE, true), "error");
        assert_eq!(status_label(StatusCode::NOT_FOUND, false), "404");
    }
}
