//! `GET /api/v1/entity/{id}/impact`: the blast radius of an entity — every descendant at any
//! depth (each once, however many paths reach it), counted by instrument, stage and status,
//! with the list paged like `/lineage`, or the whole list as CSV with `format=csv`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use helix_store::{Direction, LineageNode, LineageQuery};
use serde::Serialize;

use super::lineage::max_depth;
use super::params::{EntityId, QueryParams};
use super::{ApiError, ApiResult, ApiState, Route};

/// Most descendants an impact covers; a bigger blast radius is refused (narrow it with `depth`).
pub const MAX_DESCENDANTS: usize = 200_000;
/// Page of the `entities` list when the client names no `limit`, and the largest page.
const DEFAULT_PAGE: usize = 1_000;
const MAX_PAGE: usize = 10_000;

const IMPACT_PARAMS: &[&str] = &["depth", "limit", "cursor", "format"];

pub fn routes() -> Vec<Route> {
    vec![Route { method: Method::GET, path: "/api/v1/entity/{id}/impact", query: IMPACT_PARAMS, handler: get(impact) }]
}

/// The counts of an impact; entities without a stage count under `""`.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Counts {
    pub total: u64,
    pub by_instrument: BTreeMap<String, u64>,
    pub by_stage: BTreeMap<String, u64>,
    pub by_status: BTreeMap<String, u64>,
    pub oldest_ns: Option<i64>,
    pub newest_ns: Option<i64>,
}

/// Counts over `descendants` (the root excluded by the caller; the walk gives each node once).
pub fn counts<'a>(descendants: impl IntoIterator<Item = &'a LineageNode>) -> Counts {
    let mut c = Counts::default();
    for n in descendants {
        c.total += 1;
        *c.by_instrument.entry(n.instrument_id.clone()).or_default() += 1;
        *c.by_stage.entry(n.stage.clone().unwrap_or_default()).or_default() += 1;
        *c.by_status.entry(n.status.as_str().to_owned()).or_default() += 1;
        c.oldest_ns = Some(c.oldest_ns.map_or(n.timestamp_ns, |o| o.min(n.timestamp_ns)));
        c.newest_ns = Some(c.newest_ns.map_or(n.timestamp_ns, |o| o.max(n.timestamp_ns)));
    }
    c
}

#[derive(Debug, Serialize)]
struct Impact {
    root: String,
    #[serde(flatten)]
    counts: Counts,
    entities: Vec<LineageNode>,
    next_cursor: Option<String>,
}

fn too_many() -> ApiError {
    ApiError::bad(
        "depth",
        format!(
            "the entity has more than {MAX_DESCENDANTS} descendants within the requested depth; give a smaller `depth`"
        ),
    )
}

async fn impact(State(state): State<ApiState>, EntityId(id): EntityId, params: QueryParams) -> ApiResult<Response> {
    let params = params.allow(IMPACT_PARAMS)?;
    let csv = match params.text("format") {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(ApiError::bad("format", format!("`{other}` is not one of: json, csv"))),
    };
    let max_depth = max_depth(&params)?;
    let whole = LineageQuery {
        root: id.clone(),
        direction: Direction::Descendants,
        max_depth,
        limit: MAX_DESCENDANTS,
        cursor: None,
    };
    let Some(walk) = state.store.lineage(&whole).await? else {
        return Err(ApiError::NotFound(format!("entity `{id}` not found")));
    };
    if walk.partial {
        return Err(too_many());
    }
    let descendants = walk.nodes.iter().filter(|n| n.id != id);
    if csv {
        if params.text("cursor").is_some() || params.text("limit").is_some() {
            return Err(ApiError::bad("format", "the CSV is always the whole list; leave out `limit` and `cursor`"));
        }
        let mut out = csv::Writer::from_writer(Vec::new());
        let header = ["id", "depth", "instrument_id", "stage", "status", "timestamp_ns", "placeholder"];
        let mut rows = vec![out.write_record(header)];
        for n in descendants {
            let (depth, ts) = (n.depth.to_string(), n.timestamp_ns.to_string());
            rows.push(out.write_record([
                n.id.as_str(),
                &depth,
                &n.instrument_id,
                n.stage.as_deref().unwrap_or(""),
                n.status.as_str(),
                &ts,
                if n.placeholder { "true" } else { "false" },
            ]));
        }
        // Writing to a Vec cannot fail; a failure here would be a bug in the CSV writer.
        let body = match (rows.into_iter().collect::<Result<(), _>>(), out.into_inner()) {
            (Ok(()), Ok(body)) => body,
            _ => return Err(ApiError::Encode(<serde_json::Error as serde::ser::Error>::custom("CSV encoding failed"))),
        };
        let mut response = body.into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
        return Ok(response);
    }
    let counts = counts(descendants);
    // The page of the list is the store's own descendants page, so its cursor is /lineage's.
    let page = LineageQuery {
        root: id.clone(),
        direction: Direction::Descendants,
        max_depth,
        limit: params.limit(DEFAULT_PAGE, MAX_PAGE)?,
        cursor: params.cursor()?,
    };
    let Some(page) = state.store.lineage(&page).await? else {
        return Err(ApiError::NotFound(format!("entity `{id}` not found")));
    };
    let entities = page.nodes.into_iter().filter(|n| n.id != id).collect();
    Ok(Json(Impact { root: id, counts, entities, next_cursor: page.next_cursor }).into_response())
}

#[cfg(test)]
mod tests {
    use helix_model::Status;

    use super::*;

    fn node(id: &str, stage: Option<&str>, status: Status, ts: i64) -> LineageNode {
        LineageNode {
            id: id.into(),
            depth: 1,
            stage: stage.map(str::to_owned),
            status,
            instrument_id: "CHIME".into(),
            timestamp_ns: ts,
            parent_ids: vec![],
            placeholder: false,
        }
    }

    #[test]
    fn counts_group_by_stage_status_and_instrument_with_the_time_span() {
        let nodes = [
            node("a", Some("beam"), Status::Ok, 5),
            node("b", Some("beam"), Status::Error, 2),
            node("c", None, Status::Ok, 9),
        ];
        let c = counts(&nodes);
        assert_eq!(c.total, 3);
        assert_eq!(c.by_stage, BTreeMap::from([("".into(), 1), ("beam".into(), 2)]));
        assert_eq!(c.by_status, BTreeMap::from([("error".into(), 1), ("ok".into(), 2)]));
        assert_eq!(c.by_instrument, BTreeMap::from([("CHIME".into(), 3)]));
        assert_eq!((c.oldest_ns, c.newest_ns), (Some(2), Some(9)));
        assert_eq!(counts(&[]), Counts::default());
    }
}
