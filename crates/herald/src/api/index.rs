//! `GET /api/v1/`: the API's table of contents, so the address the README gives leads somewhere.
//! Built from [`super::RESOURCES`] (the list the router serves) and the summaries of the
//! OpenAPI document, so it cannot list an endpoint that is not served.

use std::sync::OnceLock;

use axum::http::Method;
use axum::routing::get;
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use super::params::QueryParams;
use super::{openapi, ApiResult, Route, RESOURCES};

/// Where the index is served (the trailing slash is part of the address).
pub const PATH: &str = "/api/v1/";

pub fn routes() -> Vec<Route> {
    vec![Route { method: Method::GET, path: PATH, query: &[], handler: get(index) }]
}

/// The index body (`ApiIndex` in the OpenAPI document).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiIndex {
    pub service: &'static str,
    pub version: &'static str,
    /// Path of the OpenAPI 3 document, which describes every parameter and response.
    pub openapi: &'static str,
    pub resources: Vec<ResourceLinks>,
}

/// One resource (an OpenAPI tag) and its endpoints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceLinks {
    pub name: &'static str,
    pub links: Vec<Link>,
}

/// One endpoint: `href` is a path template (`{id}` stands for a percent-encoded entity ID).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    pub method: String,
    pub href: &'static str,
    /// The query parameters it accepts (`meta.*` stands for every `meta.KEY`).
    pub query: Vec<&'static str>,
    /// The OpenAPI summary of the operation.
    pub summary: String,
}

/// The index of the served routes; the summaries come from the OpenAPI document.
pub fn build() -> ApiIndex {
    let document: Value = serde_json::from_str(openapi::DOCUMENT).unwrap_or_default();
    let resources = RESOURCES
        .iter()
        .map(|resource| ResourceLinks {
            name: resource.name,
            links: (resource.routes)()
                .iter()
                .map(|route| {
                    let method = route.method.as_str().to_lowercase();
                    let summary = document["paths"][route.path][&method]["summary"].as_str().unwrap_or_default();
                    Link {
                        method: route.method.as_str().to_owned(),
                        href: route.path,
                        query: route.query.to_vec(),
                        summary: summary.to_owned(),
                    }
                })
                .collect(),
        })
        .collect();
    ApiIndex { service: "herald", version: env!("CARGO_PKG_VERSION"), openapi: openapi::PATH, resources }
}

/// Strict on parameters like our other endpoints: `/api/v1/?x=1` is a 400 naming `x`.
async fn index(params: QueryParams) -> ApiResult<Json<ApiIndex>> {
    params.allow(&[])?;
    // The routes and the document are fixed at build time, so one build serves every request.
    static INDEX: OnceLock<ApiIndex> = OnceLock::new();
    Ok(Json(INDEX.get_or_init(build).clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_links_every_route_once_with_its_summary() {
        let index = build();
        let linked: Vec<(String, &str)> =
            index.resources.iter().flat_map(|r| &r.links).map(|l| (l.method.clone(), l.href)).collect();
        let routed: Vec<(String, &str)> =
            super::super::routes().iter().map(|r| (r.method.as_str().to_owned(), r.path)).collect();
        assert_eq!(linked, routed);
        for link in index.resources.iter().flat_map(|r| &r.links) {
            assert!(!link.summary.is_empty(), "{} has no OpenAPI summary", link.href);
        }
        assert_eq!(index.openapi, "/api/openapi.json");
        let entity = index.resources.iter().find(|r| r.name == "entity").expect("entity resource");
        let graph = entity.links.iter().find(|l| l.href == "/api/v1/entity/{id}/graph").expect("graph link");
        assert_eq!(graph.query, ["up", "down", "limit"]);
    }
}
