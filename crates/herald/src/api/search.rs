//! `GET /api/v1/entities`: entity search by instrument, stage, status, time window, ID
//! prefix, suspicion and metadata key=value, newest first, paginated.

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use axum::Json;
use helix_model::Status;
use helix_store::EntityFilter;
use serde_json::Value;

use super::entity::list_page;
use super::params::{QueryParams, META_WILDCARD};
use super::{ApiError, ApiResult, ApiState, Route};

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 10_000;

const SEARCH_PARAMS: &[&str] =
    &["instrument", "stage", "status", "from_ns", "to_ns", "q", "suspect", META_WILDCARD, "limit", "cursor"];

pub fn routes() -> Vec<Route> {
    vec![Route { method: Method::GET, path: "/api/v1/entities", query: SEARCH_PARAMS, handler: get(search) }]
}

/// Turns the checked query into the store's filter.
fn filter(params: &QueryParams) -> ApiResult<EntityFilter> {
    let status = params
        .text("status")
        .map(|raw| {
            Status::parse(raw).ok_or_else(|| ApiError::bad("status", format!("`{raw}` is not one of: ok, error")))
        })
        .transpose()?;
    let from_ns = params.i64("from_ns")?;
    let to_ns = params.i64("to_ns")?;
    if let (Some(from), Some(to)) = (from_ns, to_ns) {
        if from > to {
            return Err(ApiError::bad("from_ns", "must not be after `to_ns`"));
        }
    }
    let suspect = match params.text("suspect") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => return Err(ApiError::bad("suspect", format!("`{other}` is not one of: true, false"))),
    };
    Ok(EntityFilter {
        suspect,
        instrument_id: params.text("instrument").map(str::to_owned),
        stage: params.text("stage").map(str::to_owned),
        status,
        from_ns,
        to_ns,
        id_prefix: params.text("q").map(str::to_owned),
        metadata: params.metadata()?,
    })
}

/// `{"entities": [...], "next_cursor": "…" | null}`.
async fn search(State(state): State<ApiState>, params: QueryParams) -> ApiResult<Json<Value>> {
    let params = params.allow(SEARCH_PARAMS)?;
    let filter = filter(&params)?;
    let page_request = params.page(DEFAULT_PAGE, MAX_PAGE)?;
    let page = state.store.search(&filter, &page_request).await?;
    list_page("entities", &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_maps_every_parameter() {
        let params = QueryParams::from_pairs(&[
            ("instrument", "CHIME"),
            ("stage", "detect"),
            ("status", "error"),
            ("from_ns", "1"),
            ("to_ns", "2"),
            ("q", "cand-"),
            ("meta.dm", "56.7"),
            ("suspect", "true"),
        ]);
        let filter = filter(&params).expect("valid");
        assert_eq!(
            filter,
            EntityFilter {
                instrument_id: Some("CHIME".into()),
                stage: Some("detect".into()),
                status: Some(Status::Error),
                from_ns: Some(1),
                to_ns: Some(2),
                id_prefix: Some("cand-".into()),
                metadata: vec![("dm".into(), "56.7".into())],
                suspect: Some(true),
            }
        );
    }

    #[test]
    fn bad_status_and_inverted_window_name_their_parameter() {
        let err = filter(&QueryParams::from_pairs(&[("status", "failed")])).expect_err("status");
        assert!(err.to_string().contains("`status`"));
        let err = filter(&QueryParams::from_pairs(&[("from_ns", "5"), ("to_ns", "4")])).expect_err("window");
        assert!(err.to_string().contains("`from_ns`"));
        let err = filter(&QueryParams::from_pairs(&[("suspect", "yes")])).expect_err("suspect");
        assert!(err.to_string().contains("`suspect`"));
        let err = filter(&QueryParams::from_pairs(&[("to_ns", "soon")])).expect_err("to_ns");
        assert!(err.to_string().contains("`to_ns`"));
    }
}
