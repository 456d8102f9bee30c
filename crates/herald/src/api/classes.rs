//! Concurrency limits per expensive endpoint class (lineage, graph, search, monitor,
//! exports): each class serves so many requests at once and answers the rest 503 +
//! `Retry-After` at once, so a burst of heavy reads cannot take every database connection and
//! gigabytes of memory. Built from tower's shared concurrency limit and load shedding.

use std::sync::Arc;

use axum::error_handling::HandleErrorLayer;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::ServiceBuilder;

use super::ApiState;

/// The expensive classes of read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadClass {
    Lineage,
    Graph,
    Search,
    Monitor,
    Exports,
}

impl ReadClass {
    fn name(self) -> &'static str {
        match self {
            ReadClass::Lineage => "lineage",
            ReadClass::Graph => "graph",
            ReadClass::Search => "search",
            ReadClass::Monitor => "monitor",
            ReadClass::Exports => "export",
        }
    }
}

/// The class of an API path template, if it is an expensive one.
pub fn class_of(path: &str) -> Option<ReadClass> {
    let class = match path {
        "/api/v1/entity/{id}/lineage"
        | "/api/v1/entity/{id}/impact"
        | "/api/v1/errors/{class}/causes"
        | "/api/v1/causes" => ReadClass::Lineage,
        "/api/v1/entity/{id}/graph" => ReadClass::Graph,
        "/api/v1/entity/{id}/prov" | "/api/v1/entity/{id}/openlineage" => ReadClass::Exports,
        "/api/v1/monitor/fields" | "/api/v1/monitor/bins" | "/api/v1/stages" | "/api/v1/stages/timeline" => {
            ReadClass::Monitor
        }
        "/api/v1/entities" | "/api/v1/traces" | "/api/v1/logs" | "/api/v1/events" | "/api/v1/errors"
        | "/api/search" | "/api/search/tags" => ReadClass::Search,
        // By ID too: a trace older than the span directory holds (or an unknown one) is looked
        // for in the blocks on disk (docs/storage.md "Span directory").
        "/api/v1/trace/{trace_id}" | "/api/traces/{traceID}" | "/api/v2/traces/{traceID}" => ReadClass::Search,
        p if p.starts_with("/loki/") => ReadClass::Search,
        _ => return None,
    };
    Some(class)
}

/// Requests of each class served at once (`--max-lineage-requests` …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    pub lineage: usize,
    pub graph: usize,
    pub search: usize,
    pub monitor: usize,
    pub exports: usize,
}

impl ReadLimits {
    /// A lineage walk at its largest holds about 40 MB; the machine has a few cores.
    pub const DEFAULT: ReadLimits = ReadLimits { lineage: 4, graph: 8, search: 16, monitor: 8, exports: 4 };

    fn of(&self, class: ReadClass) -> usize {
        match class {
            ReadClass::Lineage => self.lineage,
            ReadClass::Graph => self.graph,
            ReadClass::Search => self.search,
            ReadClass::Monitor => self.monitor,
            ReadClass::Exports => self.exports,
        }
    }
}

/// One shared budget per class, for every route of that class.
pub struct ClassBudgets {
    limits: ReadLimits,
    semaphores: [Arc<Semaphore>; 5],
}

impl ClassBudgets {
    pub fn new(limits: ReadLimits) -> Self {
        let classes = [ReadClass::Lineage, ReadClass::Graph, ReadClass::Search, ReadClass::Monitor, ReadClass::Exports];
        ClassBudgets { limits, semaphores: classes.map(|c| Arc::new(Semaphore::new(limits.of(c).max(1)))) }
    }

    /// `handler`, limited by its class's budget when it has one.
    pub fn limit(&self, path: &str, handler: MethodRouter<ApiState>) -> MethodRouter<ApiState> {
        let Some(class) = class_of(path) else { return handler };
        let semaphore = self.semaphores[class as usize].clone();
        let most = self.limits.of(class);
        handler.layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(move |_: tower::BoxError| async move { busy(class, most) }))
                .layer(LoadShedLayer::new())
                .layer(GlobalConcurrencyLimitLayer::with_semaphore(semaphore)),
        )
    }
}

/// The answer when a class is saturated.
fn busy(class: ReadClass, most: usize) -> Response {
    let name = class.name();
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({
            "error": format!(
                "{most} {name} requests are running already, as many as this herald serves at once \
                 (--max-{name}-requests); retry shortly"
            )
        })),
    )
        .into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_expensive_route_has_a_class() {
        let classified: Vec<&str> =
            super::super::routes().iter().map(|r| r.path).filter(|p| class_of(p).is_some()).collect();
        for path in [
            "/api/v1/entity/{id}/lineage",
            "/api/v1/entity/{id}/graph",
            "/api/v1/entities",
            "/api/v1/monitor/bins",
            "/api/v1/entity/{id}/prov",
        ] {
            assert!(classified.contains(&path), "{path} is limited: {classified:?}");
        }
        assert_eq!(class_of("/healthz"), None);
        assert_eq!(class_of("/api/v1/entity/{id}"), None);
    }
}
