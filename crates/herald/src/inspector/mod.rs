//! The Entity Inspector: the web UI served by the herald at `/` on the API listener. Every
//! page is the same small HTML shell plus one script and one stylesheet embedded in the binary
//! (no network, no build step); the script reads the JSON API and renders untrusted data as
//! text only. A strict Content-Security-Policy backs that up: no inline or foreign script runs.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::api::ApiState;
use crate::auth::session::{SIGN_IN, SIGN_OUT};

mod sign_in;

const SHELL: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");
const ICON: &str = include_str!("assets/favicon.svg");

/// Stops the browser from running anything but our own script, loading anything from
/// elsewhere, or being framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// What `encodeURIComponent` leaves as it is.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// One path segment or query value of an Inspector URL, encoded as the Inspector's script
/// encodes it (`encodeURIComponent`), so that the page decodes it back to the same text (a
/// space is `%20`, never `+`, which a path keeps as a plus).
pub fn url_component(text: &str) -> String {
    utf8_percent_encode(text, URI_COMPONENT).to_string()
}

/// What the UI needs to know about the deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InspectorConfig {
    /// Base URL of a Grafana whose Tempo data source holds the pipeline's traces; entity pages
    /// link their traces there when set.
    pub grafana_url: Option<String>,
    /// UID of that Tempo data source in Grafana.
    pub tempo_datasource: String,
    /// Auth is on: the UI shows a sign-out button and sends people to the sign-in page when
    /// their session ends.
    pub auth: bool,
}

/// The Grafana base URL as browsers get it (`GRAFANA_URL`): without user name and password,
/// which the Inspector never hands to a browser (people sign in to Grafana themselves). `None`,
/// with a warning, when it is not an http(s) URL.
pub fn grafana_link_base(url: &str) -> Option<String> {
    let url = url.trim();
    if url.is_empty() {
        return None;
    }
    let mut parsed = match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => u,
        _ => {
            tracing::warn!(url = %helix_store::redact_url(url),
                "GRAFANA_URL is not an http(s) URL with a host; the Inspector shows no Grafana links");
            return None;
        }
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        tracing::warn!("GRAFANA_URL carries a user name or password: the Inspector's links leave them out");
        // Both only fail for URLs that cannot have credentials, which this one has.
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
    }
    Some(parsed.to_string())
}

/// The UI's routes; merged with the JSON API on the API listener.
pub fn router_with(config: InspectorConfig) -> Router<ApiState> {
    let shell = render_shell(&config);
    let page = get(move |_: State<ApiState>| {
        let shell = shell.clone();
        async move { html(shell) }
    });
    Router::new()
        .route("/", page.clone())
        .route("/entity/{*id}", page.clone())
        .route("/errors", page.clone())
        .route("/notifications", page.clone())
        .route("/monitor", page.clone())
        .route("/instruments", page.clone())
        .route("/instrument/{*name}", page.clone())
        .route("/traces", page.clone())
        .route("/logs", page.clone())
        .route("/health", page.clone())
        .route("/trace/{*id}", page)
        .route(SIGN_IN, get(sign_in::show).post(sign_in::sign_in))
        .route(SIGN_OUT, axum::routing::post(sign_in::sign_out))
        .route("/ui/app.js", get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }))
        .route("/ui/app.css", get(|| async { asset(STYLE, "text/css; charset=utf-8") }))
        .route("/favicon.ico", get(|| async { asset(ICON, "image/svg+xml") }))
        .route("/ui/favicon.svg", get(|| async { asset(ICON, "image/svg+xml") }))
}

/// The shell with the settings as a JSON data block (never executed: `application/json`),
/// `<` escaped so no value can close the element.
fn render_shell(config: &InspectorConfig) -> String {
    let settings = serde_json::json!({
        "grafana_url": config.grafana_url,
        "tempo_datasource": config.tempo_datasource,
        // The script marks failures by this name; handing it over keeps one spelling of it.
        "error_event": helix_model::ERROR_EVENT,
        "auth": config.auth,
    });
    let json = settings.to_string().replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026");
    SHELL.replace("{{SETTINGS}}", &json)
}

pub(super) fn security_headers(headers: &mut HeaderMap) {
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(HeaderName::from_static("x-frame-options"), HeaderValue::from_static("DENY"));
}

fn html(body: String) -> Response {
    html_with_status(StatusCode::OK, body)
}

pub(super) fn html_with_status(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    security_headers(headers);
    response
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Assets change with the binary; revalidate cheaply rather than serve a stale UI.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    security_headers(headers);
    response
}

#[cfg(test)]
mod tests {
    use axum::body::{to_bytes, Body};
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::api::fake::FakeStore;

    #[test]
    fn url_components_are_encoded_as_the_script_encodes_them() {
        // What `encodeURIComponent` gives for the same text.
        assert_eq!(url_component("blk 1/a+b?c=<d>&é"), "blk%201%2Fa%2Bb%3Fc%3D%3Cd%3E%26%C3%A9");
        assert_eq!(url_component("A-z_0.9!~*'()"), "A-z_0.9!~*'()");
    }

    async fn get_page(config: InspectorConfig, uri: &str) -> (StatusCode, HeaderMap, String) {
        let app = router_with(config).with_state(FakeStore::empty().state());
        let request = Request::builder().uri(uri).body(Body::empty()).expect("request");
        let response = app.oneshot(request).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let body = to_bytes(body, usize::MAX).await.expect("body");
        (parts.status, parts.headers, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn every_page_is_the_shell_with_a_strict_policy() {
        for uri in [
            "/",
            "/?q=cand-&instrument=SIMTEL",
            "/entity/a%2Fb%20%3Cimg%20src%3Dx%3E",
            "/entity/plain",
            "/errors?instrument=X",
            "/monitor",
            "/instruments",
            "/instrument/SIMTEL",
            "/traces?service=x&status=error",
            "/trace/4bf92f3577b34da6a3ce929d0e0e4736?span=00f067aa0ba902b7",
            "/trace/%3Cimg%20src%3Dx%3E",
        ] {
            let (status, headers, body) = get_page(InspectorConfig::default(), uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            assert!(body.contains("<script src=\"/ui/app.js\""), "{uri}");
            assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().expect("ascii").contains("script-src 'self'"));
            // The shell never echoes the URL: nothing of the ID can reach the markup.
            assert!(!body.contains("img src"), "{uri}");
        }
    }

    #[tokio::test]
    async fn settings_cannot_break_out_of_their_data_block() {
        let config = InspectorConfig {
            grafana_url: Some("http://g/</script><script>alert(1)</script>".into()),
            tempo_datasource: "tempo".into(),
            auth: false,
        };
        let (_, _, body) = get_page(config, "/").await;
        assert!(!body.contains("</script><script>alert"));
        assert!(body.contains("\\u003c/script\\u003e"));
    }

    #[test]
    fn grafana_links_never_carry_credentials() {
        assert_eq!(
            grafana_link_base("https://admin:hunter2@grafana.example:3000/g/").as_deref(),
            Some("https://grafana.example:3000/g/")
        );
        assert_eq!(grafana_link_base("http://grafana:3000").as_deref(), Some("http://grafana:3000/"));
        assert_eq!(grafana_link_base("  "), None);
        assert_eq!(grafana_link_base("grafana:3000"), None, "no scheme: no links rather than broken ones");
    }

    #[tokio::test]
    async fn the_script_learns_the_error_event_name_from_the_settings() {
        let (_, _, body) = get_page(InspectorConfig::default(), "/").await;
        assert!(body.contains(r#""error_event":"helix.error""#), "{body}");
        assert!(!SCRIPT.contains(helix_model::ERROR_EVENT), "the script spells the name itself");
    }

    #[tokio::test]
    async fn assets_are_embedded_with_their_types() {
        let (status, headers, body) = get_page(InspectorConfig::default(), "/ui/app.js").await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers[header::CONTENT_TYPE].to_str().expect("ascii").starts_with("text/javascript"));
        assert!(!body.contains("innerHTML"), "the script never parses data as HTML");
        let (_, headers, _) = get_page(InspectorConfig::default(), "/ui/app.css").await;
        assert!(headers[header::CONTENT_TYPE].to_str().expect("ascii").starts_with("text/css"));
    }
}
