//! `GET /api/v1/entity/{id}/impact`: the blast radius of an entity — every descendant at any
//! depth (each once, however many paths reach it), counted by instrument, stage and status,
//! with the list paged like `/lineage`, or the whole list as CSV with `format=csv`.
//!
//! One descendants walk reads only the columns counted and listed; parents are fetched for
//! the page the response lists, and the CSV is encoded chunk by chunk as the client reads.

use std::collections::{BTreeMap, HashMap};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use helix_store::{Descendant, LineageNode};
use serde::Serialize;

use super::lineage::max_depth;
use super::params::{EntityId, QueryParams};
use super::{ApiError, ApiResult, ApiState, Route};

/// Most descendants an impact covers; a bigger blast radius is refused (narrow it with `depth`).
pub const MAX_DESCENDANTS: usize = 200_000;
/// Page of the `entities` list when the client names no `limit`, and the largest page.
const DEFAULT_PAGE: usize = 1_000;
const MAX_PAGE: usize = 10_000;
/// CSV rows encoded per chunk of the streamed body.
const CSV_CHUNK_ROWS: usize = 1_000;
const CSV_HEADER: [&str; 7] = ["id", "depth", "instrument_id", "stage", "status", "timestamp_ns", "placeholder"];

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

/// Counts over `descendants` (the walk gives each once and leaves the root out).
pub fn counts<'a>(descendants: impl IntoIterator<Item = &'a Descendant>) -> Counts {
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

/// `rows` as CSV records (RFC 4180 quoting), the header first when `header`.
fn csv_chunk(header: bool, rows: &[Descendant]) -> std::io::Result<Bytes> {
    let mut out = csv::Writer::from_writer(Vec::with_capacity(rows.len() * 96));
    if header {
        out.write_record(CSV_HEADER)?;
    }
    for n in rows {
        let (depth, ts) = (n.depth.to_string(), n.timestamp_ns.to_string());
        out.write_record([
            n.id.as_str(),
            &depth,
            &n.instrument_id,
            n.stage.as_deref().unwrap_or(""),
            n.status.as_str(),
            &ts,
            if n.placeholder { "true" } else { "false" },
        ])?;
    }
    out.into_inner().map(Bytes::from).map_err(|e| std::io::Error::other(e.to_string()))
}

/// The whole list as a CSV body, encoded a chunk at a time as the client reads it: the
/// header once, then every descendant in walk order.
fn csv_body(nodes: Vec<Descendant>) -> Body {
    let mut first = true;
    let mut rest = nodes.into_iter().peekable();
    let chunks = std::iter::from_fn(move || {
        if !first && rest.peek().is_none() {
            return None;
        }
        let header = std::mem::take(&mut first);
        let rows: Vec<Descendant> = rest.by_ref().take(CSV_CHUNK_ROWS).collect();
        // Writing to a Vec cannot fail; an error would end the body early, never silently.
        Some(csv_chunk(header, &rows))
    });
    Body::from_stream(tokio_stream::iter(chunks))
}

async fn impact(State(state): State<ApiState>, EntityId(id): EntityId, params: QueryParams) -> ApiResult<Response> {
    let params = params.allow(IMPACT_PARAMS)?;
    let csv = match params.text("format") {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(ApiError::bad("format", format!("`{other}` is not one of: json, csv"))),
    };
    if csv && (params.text("cursor").is_some() || params.text("limit").is_some()) {
        return Err(ApiError::bad("format", "the CSV is always the whole list; leave out `limit` and `cursor`"));
    }
    let max_depth = max_depth(&params)?;
    let limit = params.limit(DEFAULT_PAGE, MAX_PAGE)?;
    let cursor = params.cursor()?;
    let Some(all) = state.store.descendants(&id, max_depth, MAX_DESCENDANTS).await? else {
        return Err(ApiError::NotFound(format!("entity `{id}` not found")));
    };
    if all.partial {
        return Err(too_many());
    }
    if csv {
        let mut response = csv_body(all.nodes).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
        return Ok(response);
    }
    let counts = counts(&all.nodes);
    // Paged like `/lineage` (the same cursor); parents are read for the listed page only.
    let (range, next_cursor) = helix_store::offset_page(all.nodes.len(), cursor.as_deref(), limit)?;
    let page = &all.nodes[range];
    let ids: Vec<String> = page.iter().map(|n| n.id.clone()).collect();
    let mut parents: HashMap<String, Vec<String>> =
        state.store.entities(&ids).await?.into_iter().map(|e| (e.id, e.parent_ids)).collect();
    let entities = page
        .iter()
        .map(|n| LineageNode {
            id: n.id.clone(),
            depth: n.depth,
            stage: n.stage.clone(),
            status: n.status,
            instrument_id: n.instrument_id.clone(),
            timestamp_ns: n.timestamp_ns,
            parent_ids: parents.remove(&n.id).unwrap_or_default(),
            placeholder: n.placeholder,
        })
        .collect();
    Ok(Json(Impact { root: id, counts, entities, next_cursor }).into_response())
}

#[cfg(test)]
mod tests {
    use helix_model::Status;

    use super::*;

    fn node(id: &str, stage: Option<&str>, status: Status, ts: i64) -> Descendant {
        Descendant {
            id: id.into(),
            depth: 1,
            stage: stage.map(str::to_owned),
            status,
            instrument_id: "CHIME".into(),
            timestamp_ns: ts,
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
