//! `GET /api/v1/entity/{id}/prov` (W3C PROV-JSON, or PROV-N with `format=provn`) and
//! `GET /api/v1/entity/{id}/openlineage` (OpenLineage run events): a lineage walk from the
//! entity, with its entities and their operations, in an open format (`crate::export`).
//!
//! An export is a whole document, so it is not paged: a walk that reaches more entities than
//! `limit`, or entities with more operations than [`MAX_OPERATIONS`] in all, is refused with a
//! 400 that says how to narrow it.

use axum::extract::State;
use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use helix_store::{Direction, LineageQuery, PageRequest};

use super::lineage::max_depth;
use super::params::{EntityId, QueryParams};
use super::{ApiError, ApiResult, ApiState, Route};
use crate::export::{self, Provenance};

/// Entities one export covers when the client names no `limit` (per walk direction).
const DEFAULT_NODES: usize = 1_000;
/// Largest `limit` of an export.
const MAX_NODES: usize = 10_000;
/// Operations one export may carry in all.
pub const MAX_OPERATIONS: usize = 100_000;
/// Operations read per store call.
const OPERATIONS_PAGE: usize = 1_000;
/// Media type of PROV-N (W3C PROV-N, "Internet Media Type").
const PROVN_MEDIA_TYPE: &str = "text/provenance-notation; charset=utf-8";

const PROV_PARAMS: &[&str] = &["direction", "depth", "limit", "format"];
const OPENLINEAGE_PARAMS: &[&str] = &["direction", "depth", "limit"];

pub fn routes() -> Vec<Route> {
    vec![
        Route { method: Method::GET, path: "/api/v1/entity/{id}/prov", query: PROV_PARAMS, handler: get(prov) },
        Route {
            method: Method::GET,
            path: "/api/v1/entity/{id}/openlineage",
            query: OPENLINEAGE_PARAMS,
            handler: get(openlineage),
        },
    ]
}

/// The walks an export makes: `ancestors` (default), `descendants`, or `both`.
fn directions(params: &QueryParams) -> ApiResult<&'static [Direction]> {
    match params.text("direction") {
        None | Some("ancestors") => Ok(&[Direction::Ancestors]),
        Some("descendants") => Ok(&[Direction::Descendants]),
        Some("both") => Ok(&[Direction::Ancestors, Direction::Descendants]),
        Some(other) => {
            Err(ApiError::bad("direction", format!("`{other}` is not one of: ancestors, descendants, both")))
        }
    }
}

/// The entities of the walk(s) from `root`, in walk order (root first, then ancestors, then
/// descendants), and every operation recorded on them.
async fn gather(state: &ApiState, root: String, params: &QueryParams) -> ApiResult<Provenance> {
    let directions = directions(params)?;
    let max_depth = max_depth(params)?;
    let limit = params.limit(DEFAULT_NODES, MAX_NODES)?;
    let mut ids: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for &direction in directions {
        let query = LineageQuery { root: root.clone(), direction, max_depth, limit, cursor: None };
        let Some(lineage) = state.store.lineage(&query).await? else {
            return Err(ApiError::NotFound(format!("entity `{root}` not found")));
        };
        if lineage.partial {
            let which = if direction == Direction::Ancestors { "ancestors" } else { "descendants" };
            return Err(ApiError::bad(
                "limit",
                format!(
                    "the entity has more than {limit} {which} within the requested depth; an export is never \
                     cut short, so give a smaller `depth` or a larger `limit` (at most {MAX_NODES})"
                ),
            ));
        }
        for node in lineage.nodes {
            if seen.insert(node.id.clone()) {
                ids.push(node.id);
            }
        }
    }
    let mut prov = Provenance { root, ..Provenance::default() };
    for id in &ids {
        // An entity is never deleted, so one the walk returned is there; skip it if not.
        let Some(entity) = state.store.entity(id).await? else { continue };
        let mut page = PageRequest::first(OPERATIONS_PAGE);
        loop {
            let ops = state.store.operations(id, &page).await?;
            prov.operations.extend(ops.items);
            if prov.operations.len() > MAX_OPERATIONS {
                return Err(ApiError::bad(
                    "depth",
                    format!(
                        "the exported entities carry more than {MAX_OPERATIONS} operations; give a smaller \
                         `depth` or `limit`"
                    ),
                ));
            }
            match ops.next_cursor {
                Some(cursor) => page.cursor = Some(cursor),
                None => break,
            }
        }
        prov.entities.push(entity);
    }
    Ok(prov)
}

/// PROV-JSON (`application/json`), or PROV-N with `format=provn`.
async fn prov(State(state): State<ApiState>, EntityId(id): EntityId, params: QueryParams) -> ApiResult<Response> {
    let params = params.allow(PROV_PARAMS)?;
    let provn = match params.text("format") {
        None | Some("json") => false,
        Some("provn") => true,
        Some(other) => return Err(ApiError::bad("format", format!("`{other}` is not one of: json, provn"))),
    };
    let prov = gather(&state, id, &params).await?;
    let doc = export::prov::document(&prov, &state.prov_namespace);
    if provn {
        let mut response = doc.to_provn().into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROVN_MEDIA_TYPE));
        Ok(response)
    } else {
        Ok(Json(doc.to_json()).into_response())
    }
}

/// A JSON array of OpenLineage run events.
async fn openlineage(
    State(state): State<ApiState>,
    EntityId(id): EntityId,
    params: QueryParams,
) -> ApiResult<Json<Vec<serde_json::Value>>> {
    let params = params.allow(OPENLINEAGE_PARAMS)?;
    let prov = gather(&state, id, &params).await?;
    Ok(Json(export::openlineage::run_events(&prov, &state.prov_namespace)))
}
