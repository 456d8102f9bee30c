//! `GET /api/v1/entity/{id}/lineage`: a breadth-first ancestors or descendants walk with a
//! depth bound, a node budget and a cursor. The walk itself is the store's.

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use axum::Json;
use helix_store::{Direction, Lineage, LineageQuery};

use super::params::{EntityId, QueryParams};
use super::{ApiError, ApiResult, ApiState, Route};

/// Node budget of one page when the client names none (docs/api.md).
const DEFAULT_NODES: usize = 10_000;
/// Largest node budget a client may ask for in one page.
const MAX_NODES: usize = 100_000;
/// Largest explicit depth; deeper provenance chains are walked with no `depth` at all.
const MAX_DEPTH: u64 = 1_000_000;

const LINEAGE_PARAMS: &[&str] = &["direction", "depth", "limit", "cursor"];

pub fn routes() -> Vec<Route> {
    vec![Route {
        method: Method::GET,
        path: "/api/v1/entity/{id}/lineage",
        query: LINEAGE_PARAMS,
        handler: get(lineage),
    }]
}

fn direction(params: &QueryParams) -> Result<Direction, ApiError> {
    match params.text("direction") {
        None | Some("ancestors") => Ok(Direction::Ancestors),
        Some("descendants") => Ok(Direction::Descendants),
        Some(other) => Err(ApiError::bad("direction", format!("`{other}` is not one of: ancestors, descendants"))),
    }
}

/// The `depth` parameter of every walk: 1..=[`MAX_DEPTH`], absent for no bound.
pub(super) fn max_depth(params: &QueryParams) -> ApiResult<Option<u32>> {
    // The cap is far below u32::MAX, so the conversion cannot fail.
    Ok(params.count("depth", 1, MAX_DEPTH)?.map(|d| u32::try_from(d).unwrap_or(u32::MAX)))
}

/// `{"root", "direction", "nodes", "edges", "partial", "next_cursor"}`; 404 for an unknown root.
async fn lineage(
    State(state): State<ApiState>,
    EntityId(id): EntityId,
    params: QueryParams,
) -> ApiResult<Json<Lineage>> {
    let params = params.allow(LINEAGE_PARAMS)?;
    let query = LineageQuery {
        direction: direction(&params)?,
        max_depth: max_depth(&params)?,
        limit: params.limit(DEFAULT_NODES, MAX_NODES)?,
        cursor: params.cursor()?,
        root: id,
    };
    match state.store.lineage(&query).await? {
        Some(lineage) => Ok(Json(lineage)),
        None => Err(ApiError::NotFound(format!("entity `{}` not found", query.root))),
    }
}
