//! Instruments and their stages: `GET /api/v1/instruments` (compatible bare array) and
//! `GET /api/v1/stages?instrument=X`.

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use axum::{Json, Router};
use helix_store::StageSummary;

use super::params::QueryParams;
use super::{router_from, ApiResult, ApiState, Route};

const INSTRUMENTS_PARAMS: &[&str] = &[];
const STAGES_PARAMS: &[&str] = &["instrument"];

pub fn routes() -> Vec<Route> {
    vec![
        Route {
            method: Method::GET,
            path: "/api/v1/instruments",
            query: INSTRUMENTS_PARAMS,
            handler: get(instruments),
        },
        Route { method: Method::GET, path: "/api/v1/stages", query: STAGES_PARAMS, handler: get(stages) },
    ]
}

pub fn router() -> Router<ApiState> {
    router_from(routes())
}

/// `["CHIME", "MY_INST"]`: instruments that have sent data, sorted. Not paginated: the
/// compatible shape is a bare array and instruments number in the tens.
async fn instruments(State(state): State<ApiState>, params: QueryParams) -> ApiResult<Json<Vec<String>>> {
    params.allow_extra(INSTRUMENTS_PARAMS)?;
    Ok(Json(state.store.instruments().await?))
}

/// `[{"stage", "count", "error_count", "last_seen_ns"}]`; `[]` for an instrument with no data.
async fn stages(State(state): State<ApiState>, params: QueryParams) -> ApiResult<Json<Vec<StageSummary>>> {
    let params = params.allow(STAGES_PARAMS)?;
    let instrument = params.required("instrument")?;
    Ok(Json(state.store.stages(instrument).await?))
}
