//! Reads with auth on, on the API listener: which paths stay open, where a request's token
//! comes from (the bearer header, else the Inspector's sign-in cookie), and the same-origin
//! rule for state-changing requests a browser makes with that cookie. One `axum` layer over
//! the whole listener, so every route — the JSON, Tempo and Loki APIs, the Inspector, and
//! routes added later — is covered without opting in.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cookie::{Cookie, SameSite};

use super::{Auth, Denied, Principal, SESSION_COOKIE};
use crate::inspector::url_component;

/// Paths anyone may request with auth on: health, readiness and metrics (orchestrators and
/// Prometheus), the OpenAPI document, the sign-in endpoint and page, and the static assets
/// the sign-in page needs.
pub fn is_open(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics" | "/api/openapi.json" | "/auth/token" | SIGN_IN | "/favicon.ico")
        || path.starts_with("/ui/")
}

/// The Inspector's sign-in page (GET shows it, POST signs in) and sign-out.
pub const SIGN_IN: &str = "/sign-in";
pub const SIGN_OUT: &str = "/sign-out";

/// The session cookie's value, when the request carries one.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == SESSION_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
}

/// Whether the browser reached the herald over TLS (through the proxy that terminates it).
pub fn over_tls(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok());
    let forwarded = headers.get(header::FORWARDED).and_then(|v| v.to_str().ok()).unwrap_or("");
    forwarded_proto.is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
        || forwarded.split([';', ',']).any(|part| part.trim().eq_ignore_ascii_case("proto=https"))
}

/// The `Set-Cookie` that keeps `token` for `lifetime`: `HttpOnly` (no script reads it),
/// `SameSite=Strict` (no other site's page sends it), `Secure` over TLS.
pub fn session_cookie(token: &str, lifetime: Duration, tls: bool) -> HeaderValue {
    let cookie = Cookie::build((SESSION_COOKIE, token.to_owned()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(tls)
        .max_age(cookie::time::Duration::seconds(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX)))
        .build();
    // A JWT is base64url and dots: always a valid header value.
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` that removes the session.
pub fn cleared_cookie(tls: bool) -> HeaderValue {
    session_cookie("", Duration::ZERO, tls)
}

/// A state-changing request comes from a page of this herald: its `Origin` names the host
/// the request was sent to (or, without `Origin`, the browser says `Sec-Fetch-Site:
/// same-origin`). Anything else — another site, another port, no way to tell — is refused.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok())
        .map(|h| h.split(',').next().unwrap_or("").trim().to_ascii_lowercase());
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) => {
            let authority = origin.split_once("://").map(|(_, rest)| rest.trim_end_matches('/').to_ascii_lowercase());
            matches!((authority, host), (Some(a), Some(h)) if !a.is_empty() && a == h)
        }
        None => headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("same-origin"),
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The answer to an unauthenticated request: a JSON 401 for the APIs, the sign-in page for a
/// person's browser (a GET that is not an API path).
fn unauthenticated(request: &Request, denied: Denied, had_cookie: bool) -> Response {
    let path = request.uri().path();
    let is_api = path.starts_with("/api/") || path.starts_with("/loki/") || path.starts_with("/v1/");
    let mut response = if !is_api && *request.method() == Method::GET {
        let next = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let location = format!("{SIGN_IN}?next={}", url_component(next));
        let mut r = StatusCode::SEE_OTHER.into_response();
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r
    } else {
        let mut r =
            (StatusCode::UNAUTHORIZED, Json(serde_json::json!({ "error": denied.to_string() }))).into_response();
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    };
    if had_cookie {
        // An expired or stale session: drop it so the browser stops sending it.
        response.headers_mut().insert(header::SET_COOKIE, cleared_cookie(over_tls(request.headers())));
    }
    response
}

/// The refusal of a cross-site state-changing request.
pub fn cross_site() -> Denied {
    Denied::forbidden(
        "cross_site",
        "cross-site request refused: state-changing requests with the sign-in cookie must come from this herald's own pages",
    )
}

/// The layer over the API listener: with auth on, every request but the open paths needs a
/// valid token (bearer header, else session cookie); a state-changing request authenticated
/// by the cookie must be same-origin. The principal is handed to handlers as an extension.
pub async fn require_token(State(auth): State<Arc<Auth>>, mut request: Request, next: Next) -> Response {
    if !auth.is_on() || is_open(request.uri().path()) || *request.method() == Method::OPTIONS {
        return next.run(request).await;
    }
    let headers = request.headers();
    let cookie = session_token(headers);
    let (result, by_cookie) = if headers.contains_key(header::AUTHORIZATION) || cookie.is_none() {
        (auth.principal(headers), false)
    } else {
        (auth.principal_of_token(cookie.as_deref().unwrap_or_default()), true)
    };
    let principal = match result {
        Ok(p) => p,
        Err(denied) => {
            let denied = auth.refuse(denied);
            return unauthenticated(&request, denied, cookie.is_some());
        }
    };
    if by_cookie && !is_safe(request.method()) && !same_origin(request.headers()) {
        let denied = auth.refuse(cross_site());
        return (StatusCode::FORBIDDEN, Json(serde_json::json!({ "error": denied.to_string() }))).into_response();
    }
    request.extensions_mut().insert::<Principal>(principal);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(header::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn same_origin_means_the_origin_names_the_host_the_request_went_to() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")])));
        assert!(!same_origin(&headers(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:9999")])));
        assert!(!same_origin(&headers(&[("host", "herald:8080"), ("origin", "http://evil.example")])));
        assert!(!same_origin(&headers(&[("host", "herald:8080"), ("origin", "null")])));
        assert!(same_origin(&headers(&[("host", "herald:8080"), ("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&headers(&[("host", "herald:8080"), ("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&headers(&[("host", "herald:8080")])), "no way to tell: refused");
        assert!(same_origin(&headers(&[
            ("host", "herald:8080"),
            ("x-forwarded-host", "obs.example.org"),
            ("origin", "https://obs.example.org")
        ])));
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_only_over_tls() {
        let plain = session_cookie("tok", Duration::from_secs(60), false).to_str().unwrap().to_owned();
        assert!(plain.starts_with("helix_session=tok;"), "{plain}");
        for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=60"] {
            assert!(plain.contains(part), "{plain}");
        }
        assert!(!plain.contains("Secure"), "{plain}");
        let tls = session_cookie("tok", Duration::from_secs(60), true);
        assert!(tls.to_str().unwrap().contains("Secure"));
        assert!(over_tls(&headers(&[("x-forwarded-proto", "https")])));
        assert!(over_tls(&headers(&[("forwarded", "for=1.2.3.4;proto=https")])));
        assert!(!over_tls(&headers(&[("x-forwarded-proto", "http")])));
        assert_eq!(
            session_token(&headers(&[("cookie", "a=1; helix_session=abc.def; b=2")])).as_deref(),
            Some("abc.def")
        );
        assert_eq!(session_token(&headers(&[("cookie", "helix_session=")])), None);
    }

    #[test]
    fn open_paths_are_health_metrics_the_document_and_sign_in() {
        for open in ["/healthz", "/readyz", "/metrics", "/api/openapi.json", "/auth/token", "/sign-in", "/ui/app.css"] {
            assert!(is_open(open), "{open}");
        }
        for closed in ["/", "/api/v1/instruments", "/api/search", "/api/echo", "/entity/x", "/sign-out", "/api/v1/"] {
            assert!(!is_open(closed), "{closed}");
        }
    }
}
