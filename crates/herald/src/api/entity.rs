//! One entity and what hangs off it: the entity view, the compatible `/graph` and
//! `/operations` shapes, and its events and logs, each paginated.

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use helix_store::{Entity, Graph, GraphQuery, Operation, Page, PageRequest};
use serde::Serialize;
use serde_json::{Map, Value};

use super::params::{EntityId, QueryParams};
use super::{compatible, ApiError, ApiResult, ApiState, Route};

/// Events and operations embedded in the entity view; more are a `/events` or `/operations`
/// page away (the view returns the cursors).
const EMBEDDED_ROWS: usize = 1_000;
/// Default and maximum page size of the `/events`, `/logs` and `/operations` lists.
const DEFAULT_PAGE: usize = 1_000;
const MAX_PAGE: usize = 10_000;
/// Depth and node caps of `/graph`: the view is for a browser, a bigger one is a lineage query.
const MAX_GRAPH_DEPTH: u64 = 1_000;
const MAX_GRAPH_NODES: u64 = 10_000;
/// The compatible `/operations` body is a bare array, so its next cursor travels in a header.
pub const NEXT_CURSOR_HEADER: &str = "x-next-cursor";

const ENTITY_PARAMS: &[&str] = &[];
const GRAPH_PARAMS: &[&str] = &["up", "down", "limit"];
const OPERATIONS_PARAMS: &[&str] = &["limit", "cursor"];
const PAGE_PARAMS: &[&str] = &["limit", "cursor"];

pub fn routes() -> Vec<Route> {
    vec![
        Route { method: Method::GET, path: "/api/v1/entity/{id}", query: ENTITY_PARAMS, handler: get(entity) },
        Route {
            method: Method::GET,
            path: "/api/v1/entity/{id}/graph",
            query: GRAPH_PARAMS,
            handler: compatible(get(graph)),
        },
        Route {
            method: Method::GET,
            path: "/api/v1/entity/{id}/operations",
            query: OPERATIONS_PARAMS,
            handler: compatible(get(operations)),
        },
        Route { method: Method::GET, path: "/api/v1/entity/{id}/events", query: PAGE_PARAMS, handler: get(events) },
        Route { method: Method::GET, path: "/api/v1/entity/{id}/logs", query: PAGE_PARAMS, handler: get(logs) },
    ]
}

fn unknown_entity(id: &str) -> ApiError {
    ApiError::NotFound(format!("entity `{id}` not found"))
}

/// Loads the entity or answers 404.
async fn known_entity(state: &ApiState, id: &str) -> ApiResult<Entity> {
    state.store.entity(id).await?.ok_or_else(|| unknown_entity(id))
}

/// `GET /api/v1/entity/{id}`: every column plus `children_count`, the suspicion and the flags,
/// with the first page of events and operations.
async fn entity(State(state): State<ApiState>, EntityId(id): EntityId, params: QueryParams) -> ApiResult<Json<Value>> {
    params.allow(ENTITY_PARAMS)?;
    let entity = known_entity(&state, &id).await?;
    let children_count = state.store.children_count(&id).await?;
    let events = state.store.events(&id, &PageRequest::first(EMBEDDED_ROWS)).await?;
    let operations = state.store.operations(&id, &PageRequest::first(EMBEDDED_ROWS)).await?;
    let suspicion = state.store.suspicion(&id).await?;
    let flags = state.store.flags(std::slice::from_ref(&id), false).await?;
    let mut entity_json = to_json(&entity)?;
    if let Value::Object(fields) = &mut entity_json {
        fields.insert("children_count".to_owned(), Value::from(children_count));
        // Suspect: an active flag on the entity or on any ancestor (docs/api.md "Flags").
        fields.insert("suspect".to_owned(), Value::from(!suspicion.because.is_empty()));
        fields.insert("suspect_because".to_owned(), to_json(&suspicion.because)?);
        fields.insert("suspicion_partial".to_owned(), Value::from(suspicion.partial));
        fields.insert("flags".to_owned(), to_json(&flags)?);
    }
    let mut body = Map::new();
    body.insert("entity".to_owned(), entity_json);
    body.insert("events".to_owned(), to_json(&events.items)?);
    body.insert("events_next_cursor".to_owned(), to_json(&events.next_cursor)?);
    body.insert("operations".to_owned(), to_json(&operations.items)?);
    body.insert("operations_next_cursor".to_owned(), to_json(&operations.next_cursor)?);
    Ok(Json(Value::Object(body)))
}

/// `GET /api/v1/entity/{id}/graph` (compatible): ancestors `up` levels, descendants `down`.
async fn graph(State(state): State<ApiState>, EntityId(id): EntityId, params: QueryParams) -> ApiResult<Json<Graph>> {
    let params = params.allow_extra(GRAPH_PARAMS)?;
    let defaults = GraphQuery::default();
    let query = GraphQuery {
        up: depth(&params, "up")?.unwrap_or(defaults.up),
        down: depth(&params, "down")?.unwrap_or(defaults.down),
        limit: params.limit(defaults.limit, MAX_GRAPH_NODES as usize)?,
    };
    let graph = state.store.graph(&id, &query).await?.ok_or_else(|| unknown_entity(&id))?;
    Ok(Json(graph))
}

fn depth(params: &QueryParams, name: &str) -> ApiResult<Option<u32>> {
    // The cap is far below u32::MAX, so the conversion cannot fail.
    Ok(params.count(name, 0, MAX_GRAPH_DEPTH)?.map(|d| u32::try_from(d).unwrap_or(u32::MAX)))
}

/// One row of the compatible `/operations` array: exactly these five fields.
#[derive(Serialize)]
struct CompatOperation<'a> {
    operation: &'a str,
    trace_id: &'a str,
    timestamp_ns: i64,
    duration_ns: i64,
    metadata: &'a helix_model::Metadata,
}

impl<'a> From<&'a Operation> for CompatOperation<'a> {
    fn from(op: &'a Operation) -> Self {
        CompatOperation {
            operation: &op.operation,
            trace_id: &op.trace_id,
            timestamp_ns: op.timestamp_ns,
            duration_ns: op.duration_ns,
            metadata: &op.metadata,
        }
    }
}

/// The synthetic first row: the entity's creation span, when it has one.
fn creation_row(entity: &Entity) -> Option<CompatOperation<'_>> {
    let trace_id = entity.trace_id.as_deref()?;
    Some(CompatOperation {
        operation: "creation",
        trace_id,
        timestamp_ns: entity.timestamp_ns,
        // A creation without a recorded end (should not happen) reads as instantaneous.
        duration_ns: entity.end_ns.map_or(0, |end| end.saturating_sub(entity.timestamp_ns).max(0)),
        metadata: &entity.metadata,
    })
}

/// `GET /api/v1/entity/{id}/operations` (compatible): a bare array, oldest first, the
/// creation first. Pages beyond the first are reached with the `x-next-cursor` header value.
/// An unknown entity has no operations: `200 []`, as the older herald answers, not a 404.
async fn operations(State(state): State<ApiState>, EntityId(id): EntityId, params: QueryParams) -> ApiResult<Response> {
    let params = params.allow_extra(OPERATIONS_PARAMS)?;
    let page_request = params.page(DEFAULT_PAGE, MAX_PAGE)?;
    let first_page = page_request.cursor.is_none();
    // Only the first page starts with the creation row.
    let entity = if first_page { state.store.entity(&id).await? } else { None };
    let page = state.store.operations(&id, &page_request).await?;
    let mut rows: Vec<CompatOperation<'_>> = Vec::with_capacity(page.items.len() + 1);
    rows.extend(entity.as_ref().and_then(creation_row));
    rows.extend(page.items.iter().map(CompatOperation::from));
    let mut response = Json(rows).into_response();
    if let Some(cursor) = page.next_cursor.as_deref().and_then(|c| HeaderValue::from_str(c).ok()) {
        response.headers_mut().insert(HeaderName::from_static(NEXT_CURSOR_HEADER), cursor);
    }
    Ok(response)
}

/// `GET /api/v1/entity/{id}/events`: `{"events": [...], "next_cursor": ...}`, oldest first.
async fn events(State(state): State<ApiState>, EntityId(id): EntityId, params: QueryParams) -> ApiResult<Json<Value>> {
    let params = params.allow(PAGE_PARAMS)?;
    let page_request = params.page(DEFAULT_PAGE, MAX_PAGE)?;
    known_entity(&state, &id).await?;
    let page = state.store.events(&id, &page_request).await?;
    list_page("events", &page)
}

/// `GET /api/v1/entity/{id}/logs`: correlated log records, oldest first. No 404 for an
/// unknown entity: logs may name an entity whose creation never arrived.
async fn logs(State(state): State<ApiState>, EntityId(id): EntityId, params: QueryParams) -> ApiResult<Json<Value>> {
    let params = params.allow(PAGE_PARAMS)?;
    let page_request = params.page(DEFAULT_PAGE, MAX_PAGE)?;
    let page = state.store.logs(&id, &page_request).await?;
    list_page("logs", &page)
}

/// The body of every paginated list: `{"<key>": [...], "next_cursor": "…" | null}`.
pub(super) fn list_page<T: Serialize>(key: &str, page: &Page<T>) -> ApiResult<Json<Value>> {
    let mut body = Map::new();
    body.insert(key.to_owned(), to_json(&page.items)?);
    body.insert("next_cursor".to_owned(), to_json(&page.next_cursor)?);
    Ok(Json(Value::Object(body)))
}

/// Serializes a store value into a JSON tree the handler can extend.
pub(super) fn to_json<T: Serialize>(value: &T) -> ApiResult<Value> {
    Ok(serde_json::to_value(value)?)
}
