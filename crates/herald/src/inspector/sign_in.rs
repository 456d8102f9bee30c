//! The Inspector's sign-in: `GET /sign-in` shows a form that takes a token, `POST /sign-in`
//! checks it and keeps it in the session cookie (`HttpOnly`, `SameSite=Strict`, `Secure` over
//! TLS), `POST /sign-out` drops it. Plain HTML forms, no script; both POSTs must come from
//! this herald's own pages (same origin).

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;

use super::{html_with_status, security_headers};
use crate::api::ApiState;
use crate::auth::keys::unix_now;
use crate::auth::session::{cleared_cookie, cross_site, over_tls, same_origin, session_cookie, SIGN_IN};

const PAGE: &str = include_str!("assets/sign-in.html");

#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct SignInForm {
    token: String,
    next: Option<String>,
}

/// Where to go after signing in: a path of this herald, never another site (`//host`,
/// `/\host` and absolute URLs become `/`).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.starts_with(SIGN_IN)
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// Text for HTML: the page's only dynamic parts are escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, message: Option<(&str, &str)>, next: &str) -> Response {
    let message = message
        .map(|(class, text)| format!("<p class=\"{class}\" id=\"sign-in-message\">{}</p>", escape(text)))
        .unwrap_or_default();
    let body = PAGE.replace("{{MESSAGE}}", &message).replace("{{NEXT}}", &escape(next));
    let mut response = html_with_status(status, body);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub async fn show(State(state): State<ApiState>, Query(q): Query<Next>) -> Response {
    let next = safe_next(q.next.as_deref());
    if !state.auth.is_on() {
        return page(
            StatusCode::OK,
            Some(("muted", "Auth is off on this herald: there is nothing to sign in to.")),
            &next,
        );
    }
    page(StatusCode::OK, None, &next)
}

fn redirect(to: &str, cookie: HeaderValue) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(to) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::SET_COOKIE, cookie);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    security_headers(headers);
    response
}

pub async fn sign_in(State(state): State<ApiState>, headers: HeaderMap, Form(form): Form<SignInForm>) -> Response {
    let next = safe_next(form.next.as_deref());
    // Another site must not sign a browser in with a token of its choosing.
    if !same_origin(&headers) {
        let denied = state.auth.refuse(cross_site());
        return page(StatusCode::FORBIDDEN, Some(("error", &denied.to_string())), &next);
    }
    if !state.auth.is_on() {
        return redirect(&next, cleared_cookie(over_tls(&headers)));
    }
    match state.auth.verify(form.token.trim()) {
        Ok(claims) => {
            let lifetime = std::time::Duration::from_secs(claims.exp.saturating_sub(unix_now()));
            tracing::info!(subject = %claims.sub, read_only = claims.is_read_only(), "signed in to the Inspector");
            redirect(&next, session_cookie(form.token.trim(), lifetime, over_tls(&headers)))
        }
        Err(denied) => {
            let denied = state.auth.refuse(denied);
            page(StatusCode::UNAUTHORIZED, Some(("error", &denied.to_string())), &next)
        }
    }
}

/// Reached only through the auth layer, which refuses a cross-site POST carrying the cookie.
pub async fn sign_out(headers: HeaderMap) -> Response {
    redirect(SIGN_IN, cleared_cookie(over_tls(&headers)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_herald_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/entity/a%2Fb?x=1")), "/entity/a%2Fb?x=1");
        for hostile in
            ["//evil.example/", "/\\evil.example", "https://evil.example/", "javascript:alert(1)", "/sign-in"]
        {
            assert_eq!(safe_next(Some(hostile)), "/", "{hostile}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn the_page_escapes_what_it_echoes() {
        let response = page(StatusCode::OK, Some(("error", "<b>x</b>")), "/\"><script>alert(1)</script>");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
