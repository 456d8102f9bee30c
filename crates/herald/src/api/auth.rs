//! `POST /auth/token`: the older herald's sign-in. `{"instrument_id", "credential"}` →
//! `200 {"token", "expires_in"}`; 400 bad body, 401 rejected, 405 other methods, 429
//! throttled (with `Retry-After`), 503 introspection unavailable. Open to everyone: this is
//! where a token comes from.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Json;
use serde_json::{json, Value};

use super::{ApiState, Route};
use crate::auth::{throttle::retry_after_secs, SignInError, MAX_CREDENTIAL_BYTES};

pub const PATH: &str = "/auth/token";
/// Largest accepted request body (a credential and an instrument ID).
const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn routes() -> Vec<Route> {
    vec![Route {
        method: Method::POST,
        path: PATH,
        query: &[],
        handler: post(token).fallback(method_not_allowed).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
    }]
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut response = (status, Json(json!({ "error": message.into() }))).into_response();
    // Neither a token nor a refusal is worth caching anywhere.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn method_not_allowed() -> Response {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "use POST with {\"instrument_id\", \"credential\"}");
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// The address sign-ins are throttled by: the TCP peer, or behind a trusted proxy the last
/// address it appended to `X-Forwarded-For`.
fn peer_of(headers: &HeaderMap, direct: Option<SocketAddr>, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .next_back();
        if forwarded.is_some() {
            return forwarded;
        }
    }
    direct.map(|a| a.ip())
}

/// The two string fields of the body, or the message of the 400 that says what is wrong.
fn fields(body: &[u8]) -> Result<(String, String), String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| "the body must be JSON: {\"instrument_id\": \"…\", \"credential\": \"…\"}".to_owned())?;
    let field = |name: &str| -> Result<String, String> {
        match value.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::String(_)) => Err(format!("`{name}` is empty")),
            Some(_) => Err(format!("`{name}` must be a string")),
            None => Err(format!("missing field `{name}`")),
        }
    };
    let (instrument_id, credential) = (field("instrument_id")?, field("credential")?);
    if credential.len() > MAX_CREDENTIAL_BYTES {
        return Err(format!("`credential` is longer than {MAX_CREDENTIAL_BYTES} bytes"));
    }
    if instrument_id.len() > crate::instruments::file::MAX_INSTRUMENT_ID_BYTES {
        return Err("`instrument_id` is too long".into());
    }
    Ok((instrument_id, credential))
}

async fn token(State(state): State<ApiState>, request: Request) -> Response {
    let direct = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let peer = peer_of(request.headers(), direct, state.auth.trust_forwarded_for());
    let body: Bytes = match axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {MAX_BODY_BYTES} bytes"))
        }
    };
    let (instrument_id, credential) = match fields(&body) {
        Ok(f) => f,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match state.auth.sign_in(&instrument_id, &credential, peer).await {
        Ok(issued) => {
            let mut response = Json(json!({ "token": issued.token, "expires_in": issued.expires_in })).into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(SignInError::Rejected(denied)) => error(StatusCode::UNAUTHORIZED, denied.to_string()),
        Err(e @ SignInError::Throttled(wait)) => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, e.to_string());
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs(wait)));
            response
        }
        Err(e @ SignInError::Unavailable(_)) => {
            let mut response = error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        Err(e @ SignInError::Internal(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_is_the_connection_unless_a_trusted_proxy_forwarded_it() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "10.0.0.9, 192.0.2.7".parse().unwrap());
        let direct: Option<SocketAddr> = Some("127.0.0.1:5000".parse().unwrap());
        assert_eq!(peer_of(&headers, direct, false), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(peer_of(&headers, direct, true), Some("192.0.2.7".parse().unwrap()));
        assert_eq!(peer_of(&HeaderMap::new(), direct, true), Some("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn bodies_are_checked_field_by_field() {
        let message = |body: &str| fields(body.as_bytes()).expect_err(body);
        assert!(message("not json").contains("must be JSON"));
        assert_eq!(message(r#"{"credential": "x"}"#), "missing field `instrument_id`");
        assert_eq!(message(r#"{"instrument_id": "X", "credential": 5}"#), "`credential` must be a string");
        assert_eq!(message(r#"{"instrument_id": "X", "credential": ""}"#), "`credential` is empty");
        assert_eq!(
            fields(br#"{"instrument_id": "X", "credential": "c", "extra": 1}"#).ok(),
            Some(("X".to_owned(), "c".to_owned()))
        );
    }
}
