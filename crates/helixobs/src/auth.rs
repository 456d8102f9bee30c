//! Bearer tokens from the herald's `POST /auth/token`: fetched at `build()` (a bad credential
//! is a set-up error), refreshed in the background before they expire, sent on every trace and
//! log export. The credential and the token are never logged or put in an error message.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http::HeaderValue;

use crate::Error;

/// Where the credential comes from: a fixed secret, or a function asked at every fetch (e.g.
/// to read a rotated secret file).
#[derive(Clone)]
pub(crate) enum Credential {
    Fixed(String),
    From(Arc<dyn Fn() -> String + Send + Sync>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(<redacted>)")
    }
}

/// Refresh when this fraction of the lifetime is left, and at least this long before expiry.
const REFRESH_FRACTION: f64 = 0.2;
const MIN_MARGIN: Duration = Duration::from_secs(5);
const DEFAULT_LIFETIME_S: f64 = 3600.0;

#[derive(Debug)]
struct Current {
    header: HeaderValue,
    refresh_at: Instant,
    expires_at: Instant,
}

#[derive(Debug)]
pub(crate) struct TokenSource {
    url: String,
    instrument_id: String,
    credential: Credential,
    client: reqwest::Client,
    current: RwLock<Option<Current>>,
}

impl TokenSource {
    pub(crate) fn new(
        url: &str,
        instrument_id: &str,
        credential: Credential,
        timeout: Duration,
    ) -> Result<TokenSource, Error> {
        let url = if url.contains("://") { url.to_owned() } else { format!("http://{url}") };
        if url.starts_with("https://") && !cfg!(feature = "tls") {
            return Err(Error::Config(format!(
                "auth endpoint {url} needs TLS: enable the `tls` feature of helixobs, or use an http:// endpoint"
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Error::Config(format!("cannot set up the HTTP client for the auth endpoint: {e}")))?;
        Ok(TokenSource { url, instrument_id: instrument_id.to_owned(), credential, client, current: RwLock::new(None) })
    }

    /// The `authorization` header value for the next export, if a token was ever obtained.
    pub(crate) fn header(&self) -> Option<HeaderValue> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).as_ref().map(|c| c.header.clone())
    }

    fn credential(&self) -> Result<String, Error> {
        let value = match &self.credential {
            Credential::Fixed(s) => s.clone(),
            Credential::From(f) => f(),
        };
        if value.is_empty() {
            return Err(Error::Auth("the credential (or the credential function) gave an empty string".to_owned()));
        }
        Ok(value)
    }

    /// Fetch a new token now and keep it.
    pub(crate) async fn refresh(&self) -> Result<(), Error> {
        let body = serde_json::json!({ "instrument_id": self.instrument_id, "credential": self.credential()? });
        let response = self
            .client
            .post(&self.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| {
                Error::Auth(format!(
                    "cannot reach the auth endpoint {}: {}; check auth_endpoint (the herald's API address, path /auth/token)",
                    self.url,
                    error_chain(&e)
                ))
            })?;
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            let detail: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
            let hint = if status.as_u16() == 404 {
                " (no token endpoint there: is authentication enabled on this herald, and is auth_endpoint its API address with the path /auth/token?)"
            } else if status.as_u16() == 401 || status.as_u16() == 403 {
                " (check the instrument ID and the credential)"
            } else {
                ""
            };
            return Err(Error::Auth(format!(
                "the auth endpoint {} refused instrument {:?}: HTTP {}{hint} {}",
                self.url,
                self.instrument_id,
                status.as_u16(),
                detail.trim()
            )));
        }
        let payload: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| Error::Auth(format!("the auth endpoint {} did not answer JSON", self.url)))?;
        let token = payload
            .get("token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Auth(format!("the auth endpoint {} answered without a token", self.url)))?;
        let lifetime = payload.get("expires_in").and_then(|v| v.as_f64()).unwrap_or(DEFAULT_LIFETIME_S).max(0.0);
        let mut header = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            Error::Auth(format!("the auth endpoint {} returned a token that is not header-safe", self.url))
        })?;
        header.set_sensitive(true);
        let now = Instant::now();
        let lifetime = Duration::from_secs_f64(lifetime);
        // Refresh with a fifth of the lifetime left (at least 5 s before expiry), but never in
        // the first half of it: short-lived tokens must not turn the refresh into a busy loop.
        let margin = lifetime.mul_f64(REFRESH_FRACTION).max(MIN_MARGIN).min(lifetime / 2);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) =
            Some(Current { header, refresh_at: now + lifetime - margin, expires_at: now + lifetime });
        Ok(())
    }

    /// Keep the token fresh until the runtime stops. A failed refresh keeps the current token
    /// while it is valid and retries soon; it is reported as a warning (never the secret).
    pub(crate) async fn refresh_forever(self: Arc<Self>) {
        loop {
            let (refresh_at, expires_at) = {
                let current = self.current.read().unwrap_or_else(|e| e.into_inner());
                match current.as_ref() {
                    Some(c) => (c.refresh_at, c.expires_at),
                    None => (Instant::now(), Instant::now()),
                }
            };
            tokio::time::sleep_until(refresh_at.into()).await;
            if let Err(e) = self.refresh().await {
                let left = expires_at.saturating_duration_since(Instant::now());
                tracing::warn!(target: "helixobs", "token refresh failed: {e}; retrying (current token valid for {left:?})");
                // Retry well before expiry, but do not hammer the endpoint.
                let retry = (left / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
                let had_token = {
                    let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
                    current.as_mut().map(|c| c.refresh_at = Instant::now() + retry).is_some()
                };
                if !had_token {
                    tokio::time::sleep(retry).await;
                }
            }
        }
    }
}

/// An error with its sources, e.g. "error sending request: connection refused".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
