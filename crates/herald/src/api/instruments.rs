//! `GET /api/v1/instruments` (compatible bare array): the instruments that have sent data.
//! Their stages are `super::stages`.

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use axum::Json;

use super::params::QueryParams;
use super::{ApiResult, ApiState, Route};

const INSTRUMENTS_PARAMS: &[&str] = &[];

pub fn routes() -> Vec<Route> {
    vec![Route {
        method: Method::GET,
        path: "/api/v1/instruments",
        query: INSTRUMENTS_PARAMS,
        handler: get(instruments),
    }]
}

/// `["CHIME", "MY_INST"]`: instruments that have sent data, sorted. Not paginated: the
/// compatible shape is a bare array and instruments number in the tens.
async fn instruments(State(state): State<ApiState>, params: QueryParams) -> ApiResult<Json<Vec<String>>> {
    params.allow_extra(INSTRUMENTS_PARAMS)?;
    let mut instruments = state.store.instruments().await?;
    // The platform check's own records are not an instrument's data.
    instruments.retain(|i| i != crate::canary::CANARY_INSTRUMENT);
    Ok(Json(instruments))
}
