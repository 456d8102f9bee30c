//! The compatible notifications API: silences (`POST /api/v1/notifications/silence`,
//! `GET …/silences?instrument_id=`, `DELETE …/silence/{id}`) and the active alerts of an
//! instrument (`GET …/alerts?instrument_id=`: its `helix.error` classes of the last 7 days).
//! Silences are read from the store for every notification, so a change applies to the next one.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json};
use helix_model::ERROR_EVENT;
use helix_store::notify::{now_ns, NewSilence, NotifyStore, Silence};
use helix_store::{EventQuery, PageRequest};
use serde::Deserialize;
use serde_json::{json, Value};

use super::params::QueryParams;
use super::{ApiError, ApiResult, ApiState, Route};
use crate::auth::Principal;

const LIST_PARAMS: &[&str] = &["instrument_id"];
const DELIVERY_PARAMS: &[&str] = &["instrument_id", "limit"];
const DEFAULT_DELIVERIES: usize = 100;
const MAX_DELIVERIES: usize = 1000;
/// Longest silence accepted: a year.
pub const MAX_SILENCE_MINUTES: f64 = 366.0 * 24.0 * 60.0;
/// Longest text field (reason, silenced_by, event type, fingerprint).
const MAX_FIELD: usize = 1024;
/// Error events read for one alerts answer.
const MAX_ALERT_EVENTS: usize = 100_000;
/// Entities listed per alert, newest first.
const ALERT_ENTITIES: usize = 10;
const WEEK_NS: i64 = 7 * 24 * 3600 * 1_000_000_000;

pub fn routes() -> Vec<Route> {
    vec![
        Route { method: Method::POST, path: "/api/v1/notifications/silence", query: &[], handler: post(create) },
        Route { method: Method::GET, path: "/api/v1/notifications/silences", query: LIST_PARAMS, handler: get(list) },
        Route {
            method: Method::DELETE,
            path: "/api/v1/notifications/silence/{silence_id}",
            query: &[],
            handler: delete(remove),
        },
        Route { method: Method::GET, path: "/api/v1/notifications/alerts", query: LIST_PARAMS, handler: get(alerts) },
        Route {
            method: Method::POST,
            path: "/api/v1/notifications/silence/{silence_id}/expire",
            query: &[],
            handler: post(expire),
        },
        Route {
            method: Method::GET,
            path: "/api/v1/notifications/deliveries",
            query: DELIVERY_PARAMS,
            handler: get(deliveries),
        },
    ]
}

fn store(state: &ApiState) -> ApiResult<&dyn NotifyStore> {
    state.store.notify().ok_or_else(|| ApiError::NotFound("notifications not found: this store keeps none".into()))
}

/// RFC 3339 with milliseconds, UTC.
pub fn iso(ns: i64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns.max(0).unsigned_abs()))
        .to_string()
}

/// Whether the caller may change `instrument_id`'s silences: everyone with auth off, an
/// instrument's token for its own instrument, never a read-only token.
fn may_change(principal: Option<&Principal>, instrument_id: &str) -> ApiResult<()> {
    match principal {
        None | Some(Principal::Open) => Ok(()),
        Some(Principal::Instrument(id)) if id == instrument_id => Ok(()),
        Some(Principal::Instrument(id)) => {
            Err(ApiError::Forbidden(format!("the token of {id} may not change the silences of {instrument_id}")))
        }
        Some(Principal::Reader(_)) => {
            Err(ApiError::Forbidden("a read-only token cannot change silences; use the instrument's token".into()))
        }
    }
}

/// The compatible silence object (with the issue of its fingerprint, when there is one).
fn silence_json(s: &Silence, issue_url: Option<String>) -> Value {
    json!({
        "id": s.id,
        "instrument_id": s.instrument_id,
        "event_type": s.event_type,
        "fingerprint": s.fingerprint,
        "silenced_by": s.silenced_by,
        "silenced_at": iso(s.silenced_ns),
        "expires_at": iso(s.expires_ns),
        "reason": s.reason,
        "github_issue_url": issue_url,
        "active": s.expires_ns > now_ns(),
    })
}

/// Issue URLs by fingerprint, for one instrument.
async fn issue_urls(store: &dyn NotifyStore, instrument_id: &str) -> ApiResult<HashMap<String, String>> {
    Ok(store
        .issues(Some(instrument_id))
        .await?
        .into_iter()
        .filter(|r| r.issue_number > 0)
        .map(|r| (r.fingerprint.clone(), crate::notify::github::html_url(&r.repo, r.issue_number)))
        .collect())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSilence {
    instrument_id: Option<String>,
    event_type: Option<String>,
    fingerprint: Option<String>,
    duration_minutes: Option<f64>,
    silenced_by: Option<String>,
    reason: Option<String>,
}

fn field(name: &str, value: Option<String>, required: bool) -> ApiResult<Option<String>> {
    let value = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    match value {
        None if required => Err(ApiError::bad(name, "required")),
        Some(v) if v.len() > MAX_FIELD || v.chars().any(char::is_control) => {
            Err(ApiError::bad(name, format!("at most {MAX_FIELD} bytes without control characters")))
        }
        v => Ok(v),
    }
}

/// `201` with the silence created.
async fn create(
    State(state): State<ApiState>,
    principal: Option<Extension<Principal>>,
    body: Bytes,
) -> ApiResult<Response> {
    let request: CreateSilence =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad("body", format!("not a silence object: {e}")))?;
    let instrument_id = field("instrument_id", request.instrument_id, true)?.unwrap_or_default();
    may_change(principal.as_deref(), &instrument_id)?;
    let minutes = match request.duration_minutes {
        Some(m) if m.is_finite() && m > 0.0 && m <= MAX_SILENCE_MINUTES => m,
        Some(_) => return Err(ApiError::bad("duration_minutes", "must be above 0 and at most a year (527040)")),
        None => return Err(ApiError::bad("duration_minutes", "required")),
    };
    let event_type = field("event_type", request.event_type, false)?;
    let fingerprint = field("fingerprint", request.fingerprint, false)?;
    if fingerprint.is_some() && event_type.is_none() {
        return Err(ApiError::bad("event_type", "required with a fingerprint (e.g. helix.error)"));
    }
    let now = now_ns();
    let silence = NewSilence {
        instrument_id,
        event_type,
        fingerprint,
        silenced_by: field("silenced_by", request.silenced_by, true)?.unwrap_or_default(),
        reason: field("reason", request.reason, false)?,
        expires_ns: now.saturating_add((minutes * 60e9) as i64),
    };
    let store = store(&state)?;
    let created = store.create_silence(&silence, now).await?;
    let url = match &created.fingerprint {
        Some(f) => issue_urls(store, &created.instrument_id).await?.remove(f),
        None => None,
    };
    tracing::info!(instrument = %created.instrument_id, id = created.id, by = %created.silenced_by,
        event_type = created.event_type.as_deref().unwrap_or("*"), fingerprint = created.fingerprint.as_deref().unwrap_or("*"),
        "silence created");
    Ok((StatusCode::CREATED, Json(silence_json(&created, url))).into_response())
}

/// Every silence of the instrument, expired ones too (`active` says which), newest first.
async fn list(State(state): State<ApiState>, params: QueryParams) -> ApiResult<Json<Value>> {
    let params = params.allow_extra(LIST_PARAMS)?;
    let instrument_id = params.required("instrument_id")?.to_owned();
    let store = store(&state)?;
    let urls = issue_urls(store, &instrument_id).await?;
    let silences = store.silences(&instrument_id).await?;
    Ok(Json(Value::Array(
        silences.iter().map(|s| silence_json(s, s.fingerprint.as_ref().and_then(|f| urls.get(f).cloned()))).collect(),
    )))
}

/// The silence `id` if the caller may change it (for an instrument's token: one of its own).
async fn changeable(store: &dyn NotifyStore, principal: Option<&Principal>, id: i64) -> ApiResult<()> {
    let Some(silence) = store.silence(id).await? else {
        return Err(ApiError::NotFound(format!("silence {id} not found")));
    };
    may_change(principal, &silence.instrument_id)
}

/// Ours: end a silence now; it stays listed, expired. `200` with the silence.
async fn expire(
    State(state): State<ApiState>,
    principal: Option<Extension<Principal>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id: i64 = id.parse().map_err(|_| ApiError::bad("silence_id", "must be an integer silence ID"))?;
    let store = store(&state)?;
    changeable(store, principal.as_deref(), id).await?;
    if !store.expire_silence(id, now_ns()).await? {
        return Err(ApiError::NotFound(format!("silence {id} not found")));
    }
    let Some(expired) = store.silence(id).await? else {
        return Err(ApiError::NotFound(format!("silence {id} not found")));
    };
    tracing::info!(id, "silence expired");
    Ok(Json(silence_json(&expired, None)))
}

/// Ours: the newest deliveries (sent, suppressed, retried, failed), of one instrument or all.
async fn deliveries(State(state): State<ApiState>, params: QueryParams) -> ApiResult<Json<Value>> {
    let params = params.allow(DELIVERY_PARAMS)?;
    let limit = params.limit(DEFAULT_DELIVERIES, MAX_DELIVERIES)?;
    let store = store(&state)?;
    let rows = store.deliveries(params.text("instrument_id"), limit).await?;
    Ok(Json(serde_json::to_value(rows)?))
}

/// `204`; a silence deleted applies to the next notification.
async fn remove(
    State(state): State<ApiState>,
    principal: Option<Extension<Principal>>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: i64 = id.parse().map_err(|_| ApiError::bad("silence_id", "must be an integer silence ID"))?;
    let store = store(&state)?;
    changeable(store, principal.as_deref(), id).await?;
    if store.delete_silence(id).await? {
        tracing::info!(id, "silence deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("silence {id} not found")))
    }
}

/// One `helix.error` class of the last 7 days.
struct Alert {
    fingerprint: String,
    group_key: String,
    metadata: serde_json::Map<String, Value>,
    count: u64,
    first_ns: i64,
    last_ns: i64,
    entities: Vec<String>,
}

/// The instrument's error classes of the last 7 days, most recent first.
async fn alerts(State(state): State<ApiState>, params: QueryParams) -> ApiResult<Json<Value>> {
    let params = params.allow_extra(LIST_PARAMS)?;
    let instrument_id = params.required("instrument_id")?.to_owned();
    let now = now_ns();
    let query = EventQuery {
        instrument_id: Some(instrument_id.clone()),
        event_name: Some(ERROR_EVENT.to_owned()),
        from_ns: Some(now - WEEK_NS),
        to_ns: None,
    };
    let mut alerts: Vec<Alert> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut stages: HashMap<String, String> = HashMap::new();
    let (mut cursor, mut read) = (None, 0usize);
    loop {
        let page = state.store.instrument_events(&query, &PageRequest { limit: 10_000, cursor: cursor.take() }).await?;
        read += page.items.len();
        for e in &page.items {
            let stage = match e.metadata.get("stage") {
                Some(s) => s.clone(),
                None => match stages.get(&e.entity_id) {
                    Some(s) => s.clone(),
                    None => {
                        let s = state.store.entity(&e.entity_id).await?.and_then(|en| en.stage).unwrap_or_default();
                        stages.insert(e.entity_id.clone(), s.clone());
                        s
                    }
                },
            };
            let message = helix_store::notify::message_of(e);
            let fp = helix_model::fingerprint::fingerprint(&e.instrument_id, &e.event_name, message, &stage);
            let i = *index.entry(fp.clone()).or_insert_with(|| {
                alerts.push(Alert {
                    group_key: format!("{}|{}", helix_model::fingerprint::normalise(message), stage),
                    fingerprint: fp.clone(),
                    metadata: e.metadata.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect(),
                    count: 0,
                    first_ns: e.timestamp_ns,
                    last_ns: e.timestamp_ns,
                    entities: Vec::new(),
                });
                alerts.len() - 1
            });
            let a = &mut alerts[i];
            a.count += 1;
            a.first_ns = a.first_ns.min(e.timestamp_ns);
            a.last_ns = a.last_ns.max(e.timestamp_ns);
            if a.entities.len() < ALERT_ENTITIES && !a.entities.contains(&e.entity_id) {
                a.entities.push(e.entity_id.clone());
            }
        }
        match page.next_cursor {
            Some(next) if read < MAX_ALERT_EVENTS => cursor = Some(next),
            _ => break,
        }
    }
    let urls = match state.store.notify() {
        Some(store) => issue_urls(store, &instrument_id).await?,
        None => HashMap::new(),
    };
    alerts.sort_by(|a, b| b.last_ns.cmp(&a.last_ns).then_with(|| a.fingerprint.cmp(&b.fingerprint)));
    Ok(Json(Value::Array(
        alerts
            .into_iter()
            .map(|a| {
                json!({
                    "group_key": a.group_key,
                    "fingerprint": a.fingerprint,
                    "github_issue_url": urls.get(&a.fingerprint),
                    "metadata": a.metadata,
                    "occurrence_count": a.count,
                    "first_seen": iso(a.first_ns),
                    "last_seen": iso(a.last_ns),
                    "entity_ids": a.entities,
                })
            })
            .collect(),
    )))
}
