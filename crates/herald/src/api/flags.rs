//! Flags on entities: `POST /api/v1/entity/{id}/flags` raises one, `GET` lists them with their
//! history, `DELETE …/flags/{flag_id}` clears one. Suspicion itself is read with the entity
//! (`GET /api/v1/entity/{id}`, computed by the store). With auth on, only a token of the
//! entity's instrument may raise or clear its flags.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json};
use helix_store::{Cleared, Entity, FlagAdded, NewFlag, Severity, MAX_FLAGS_PER_ENTITY};
use serde_json::{json, Value};

use super::params::{check_entity_id, EntityId, QueryParams};
use super::{ApiError, ApiResult, ApiState, Route};
use crate::auth::{Denied, Principal};

/// Longest `reason`, and longest `flagged_by` / `cleared_by`, in bytes.
pub const MAX_REASON_BYTES: usize = 4 * 1024;
pub const MAX_WHO_BYTES: usize = 256;
/// Largest request body of a flag.
const MAX_BODY_BYTES: usize = 16 * 1024;

const LIST_PARAMS: &[&str] = &[];
const CLEAR_PARAMS: &[&str] = &["cleared_by"];

pub fn routes() -> Vec<Route> {
    vec![
        Route { method: Method::GET, path: "/api/v1/entity/{id}/flags", query: LIST_PARAMS, handler: get(list) },
        Route {
            method: Method::POST,
            path: "/api/v1/entity/{id}/flags",
            query: LIST_PARAMS,
            handler: post(raise).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        },
        Route {
            method: Method::DELETE,
            path: "/api/v1/entity/{id}/flags/{flag_id}",
            query: CLEAR_PARAMS,
            handler: delete(clear),
        },
    ]
}

async fn known_entity(state: &ApiState, id: &str) -> ApiResult<Entity> {
    state.store.entity(id).await?.ok_or_else(|| ApiError::NotFound(format!("entity `{id}` not found")))
}

/// Who may change the flags of `entity`: everyone with auth off, else a token of the entity's
/// instrument. Returns the token's subject for the audit record.
fn authorise(state: &ApiState, principal: Option<&Principal>, entity: &Entity) -> ApiResult<Option<String>> {
    let refused = |denied: Denied| ApiError::Forbidden(state.auth.refuse(denied).to_string());
    match principal {
        None | Some(Principal::Open) => Ok(None),
        Some(Principal::Instrument(token)) if *token == entity.instrument_id => Ok(Some(token.clone())),
        Some(Principal::Instrument(token)) => Err(refused(Denied::forbidden(
            "foreign_entity",
            format!(
                "entity {:?} belongs to instrument {:?}; a token for instrument {token:?} cannot flag it \
                 (use a token of {:?})",
                entity.id, entity.instrument_id, entity.instrument_id
            ),
        ))),
        Some(Principal::Reader(name)) => Err(refused(Denied::forbidden(
            "read_only_token",
            format!(
                "the token of {name:?} is read-only; flags need a token of instrument {:?} from POST /auth/token",
                entity.instrument_id
            ),
        ))),
    }
}

/// A `flagged_by` / `cleared_by`: non-empty, bounded, no control characters (it is shown as a name).
fn who(param: &str, value: &str) -> ApiResult<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::bad(param, "must not be empty: say who you are"));
    }
    if value.len() > MAX_WHO_BYTES {
        return Err(ApiError::bad(param, format!("is longer than {MAX_WHO_BYTES} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::bad(param, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

/// The body of `POST …/flags`, checked: `(severity, reason, flagged_by)`.
fn flag_body(body: &[u8]) -> ApiResult<(Severity, String, String)> {
    let usage = "the body must be JSON: {\"reason\": \"…\", \"flagged_by\": \"…\", \"severity\": \"bad\"|\"suspect\"}";
    let value: Value = serde_json::from_slice(body).map_err(|_| ApiError::bad("body", usage))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::bad("body", usage));
    };
    if let Some(unknown) = fields.keys().find(|k| !matches!(k.as_str(), "reason" | "flagged_by" | "severity")) {
        return Err(ApiError::bad(unknown.as_str(), format!("unknown field; {usage}")));
    }
    let text = |name: &str| -> ApiResult<&str> {
        match fields.get(name) {
            Some(Value::String(s)) => Ok(s.as_str()),
            Some(_) => Err(ApiError::bad(name, "must be a string")),
            None => Err(ApiError::bad(name, format!("is missing; {usage}"))),
        }
    };
    let severity = match fields.get("severity") {
        None => Severity::Bad,
        Some(Value::String(s)) => {
            Severity::parse(s).ok_or_else(|| ApiError::bad("severity", format!("`{s}` is not one of: bad, suspect")))?
        }
        Some(_) => return Err(ApiError::bad("severity", "must be a string: bad or suspect")),
    };
    let reason = text("reason")?.trim();
    if reason.is_empty() {
        return Err(ApiError::bad("reason", "must not be empty: say why the entity is bad"));
    }
    if reason.len() > MAX_REASON_BYTES {
        return Err(ApiError::bad("reason", format!("is longer than {MAX_REASON_BYTES} bytes")));
    }
    Ok((severity, reason.to_owned(), who("flagged_by", text("flagged_by")?)?))
}

/// A random (version 4) UUID.
fn new_flag_id() -> String {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string()
}

/// `POST /api/v1/entity/{id}/flags` → 201 with the flag.
async fn raise(
    State(state): State<ApiState>,
    EntityId(id): EntityId,
    principal: Option<Extension<Principal>>,
    params: QueryParams,
    body: Bytes,
) -> ApiResult<Response> {
    params.allow(LIST_PARAMS)?;
    let (severity, reason, flagged_by) = flag_body(&body)?;
    let entity = known_entity(&state, &id).await?;
    let principal = authorise(&state, principal.as_deref(), &entity)?;
    let flag = NewFlag { flag_id: new_flag_id(), entity_id: id.clone(), severity, reason, flagged_by, principal };
    match state.store.add_flag(&flag).await? {
        FlagAdded::Added(flag) => {
            tracing::info!(entity = %id, flag = %flag.flag_id, severity = flag.severity.as_str(), "entity flagged");
            Ok((StatusCode::CREATED, Json(flag)).into_response())
        }
        FlagAdded::UnknownEntity => Err(ApiError::NotFound(format!("entity `{id}` not found"))),
        FlagAdded::TooMany => Err(ApiError::Conflict(format!(
            "entity `{id}` already has {MAX_FLAGS_PER_ENTITY} flags (active and cleared); no more can be raised on it"
        ))),
    }
}

/// `GET /api/v1/entity/{id}/flags` → `{"flags": [...]}`, oldest first, cleared ones included.
async fn list(State(state): State<ApiState>, EntityId(id): EntityId, params: QueryParams) -> ApiResult<Json<Value>> {
    params.allow(LIST_PARAMS)?;
    known_entity(&state, &id).await?;
    let flags = state.store.flags(std::slice::from_ref(&id), false).await?;
    Ok(Json(json!({ "flags": flags })))
}

/// `DELETE /api/v1/entity/{id}/flags/{flag_id}[?cleared_by=…]` → 200 with the cleared flag
/// (also when it was cleared before: clearing is idempotent); 404 for an unknown flag.
async fn clear(
    State(state): State<ApiState>,
    Path((id, flag_id)): Path<(String, String)>,
    principal: Option<Extension<Principal>>,
    params: QueryParams,
) -> ApiResult<Json<Value>> {
    let params = params.allow(CLEAR_PARAMS)?;
    check_entity_id(&id)?;
    let entity = known_entity(&state, &id).await?;
    let principal = authorise(&state, principal.as_deref(), &entity)?;
    let cleared_by = match params.text("cleared_by") {
        Some(v) => who("cleared_by", v)?,
        None => principal.unwrap_or_else(|| "anonymous".to_owned()),
    };
    match state.store.clear_flag(&id, &flag_id, &cleared_by).await? {
        Cleared::Now(flag) => {
            tracing::info!(entity = %id, flag = %flag.flag_id, "flag cleared");
            Ok(Json(json!(flag)))
        }
        Cleared::Already(flag) => Ok(Json(json!(flag))),
        Cleared::Unknown => Err(ApiError::NotFound(format!("entity `{id}` has no flag `{flag_id}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_checked_field_by_field() {
        let ok = flag_body(br#"{"reason": " bad gains ", "flagged_by": "ana", "severity": "suspect"}"#).expect("ok");
        assert_eq!(ok, (Severity::Suspect, "bad gains".to_owned(), "ana".to_owned()));
        assert_eq!(flag_body(br#"{"reason": "r", "flagged_by": "b"}"#).expect("ok").0, Severity::Bad);
        for (body, named) in [
            (&b"not json"[..], "`body`"),
            (br#"[1]"#, "`body`"),
            (br#"{"reason": "r"}"#, "`flagged_by`"),
            (br#"{"reason": "", "flagged_by": "b"}"#, "`reason`"),
            (br#"{"reason": 1, "flagged_by": "b"}"#, "`reason`"),
            (br#"{"reason": "r", "flagged_by": "a\nb"}"#, "`flagged_by`"),
            (br#"{"reason": "r", "flagged_by": "b", "severity": "awful"}"#, "`severity`"),
            (br#"{"reason": "r", "flagged_by": "b", "sevrity": "bad"}"#, "`sevrity`"),
        ] {
            let err = flag_body(body).expect_err("refused");
            assert!(err.to_string().contains(named), "{}: {err}", String::from_utf8_lossy(body));
        }
        let long = format!(r#"{{"reason": "{}", "flagged_by": "b"}}"#, "x".repeat(MAX_REASON_BYTES + 1));
        assert!(flag_body(long.as_bytes()).expect_err("long").to_string().contains("`reason`"));
    }

    #[test]
    fn flag_ids_are_random_uuids() {
        let (a, b) = (new_flag_id(), new_flag_id());
        assert_ne!(a, b);
        assert_eq!(uuid::Uuid::parse_str(&a).expect("uuid").get_version_num(), 4);
    }
}
