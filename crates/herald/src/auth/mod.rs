//! Authentication and authorisation, compatible with the older herald's token scheme: tokens
//! are issued at `POST /auth/token` against an instrument's credential (its file in
//! `INSTRUMENTS_DIR`), and every ingest and read request presents one when `JWT_SECRET` is set.
//! This module decides who a request is; the receivers, the API and the inspector ask it.
//! Every refusal is counted in `helix_auth_denied_total{reason}` where it is made, and no
//! secret, hash or token ever reaches a log line, an error or a label.

pub mod keys;
pub mod session;
pub mod throttle;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

pub use keys::{Claims, KeySet, TokenRejected, READ_SCOPE, TOKEN_TTL};
pub use throttle::{Throttle, ThrottleConfig};

use crate::instruments::{AuthBackend, Instruments};
use crate::metrics::Metrics;

/// The cookie the Inspector's sign-in page sets (an `HttpOnly` copy of the token).
pub const SESSION_COOKIE: &str = "helix_session";
/// Longest credential accepted at `POST /auth/token`, in bytes.
pub const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;
/// Longest bearer token accepted, in bytes (ours are a few hundred).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Token introspection calls in flight at once; more sign-ins are told to retry.
pub const MAX_INTROSPECTIONS: usize = 32;
/// Lifetime of the tokens `POST /auth/token` gives while auth is off (no `JWT_SECRET`): short,
/// so that clients hold a real token soon after `JWT_SECRET` is set.
pub const UNENFORCED_TOKEN_TTL: Duration = Duration::from_secs(300);

/// Auth settings, from flags.
#[derive(Debug)]
pub struct AuthConfig {
    /// `None`: auth off.
    pub keys: Option<KeySet>,
    pub throttle: ThrottleConfig,
    /// Longest wait for an instrument's token introspection endpoint.
    pub introspection_timeout: Duration,
    /// Take the sign-in's peer address from the last `X-Forwarded-For` entry (behind a proxy).
    pub trust_forwarded_for: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            keys: None,
            throttle: ThrottleConfig::default(),
            introspection_timeout: Duration::from_secs(5),
            trust_forwarded_for: false,
        }
    }
}

/// Who a request is, once its token (if any) was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Auth is off: everyone may do everything, as in the older herald.
    Open,
    /// An instrument's token: writes that instrument's data, reads everything.
    Instrument(String),
    /// A read-only token (`herald token issue --read`): reads everything, writes nothing.
    Reader(String),
}

/// Why a request is refused. The message is told to the client; `reason` labels the metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No usable token: gRPC `UNAUTHENTICATED`, HTTP 401.
    #[error("{message}")]
    Unauthenticated { reason: &'static str, message: String },
    /// A valid token that may not do this: gRPC `PERMISSION_DENIED`, HTTP 403.
    #[error("{message}")]
    Forbidden { reason: &'static str, message: String },
}

impl Denied {
    pub fn reason(&self) -> &'static str {
        match self {
            Denied::Unauthenticated { reason, .. } | Denied::Forbidden { reason, .. } => reason,
        }
    }

    fn unauthenticated(reason: &'static str, message: impl Into<String>) -> Denied {
        Denied::Unauthenticated { reason, message: message.into() }
    }

    pub fn forbidden(reason: &'static str, message: impl Into<String>) -> Denied {
        Denied::Forbidden { reason, message: message.into() }
    }

    /// An export naming another instrument's records or entities than its token's.
    pub fn foreign_instrument(token: &str, named: &str) -> Denied {
        Denied::forbidden(
            "foreign_instrument",
            format!(
                "this token is for instrument {token:?} but the export has records of instrument {named:?}; \
                 each instrument sends its own data with its own token (nothing of this export was stored)"
            ),
        )
    }

    /// An export operating on (or re-creating) an entity another instrument owns.
    pub fn foreign_entity(token: &str, entity: &str, owner: &str) -> Denied {
        Denied::forbidden(
            "foreign_entity",
            format!(
                "entity {entity:?} belongs to instrument {owner:?}; a token for instrument {token:?} cannot \
                 change it (nothing of this export was stored)"
            ),
        )
    }
}

/// Why `POST /auth/token` gave no token (each variant is one HTTP status).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    /// 401: no such instrument, no `auth` block, or the credential was rejected.
    #[error("{0}")]
    Rejected(Denied),
    /// 429: too many failures for this instrument or from this address.
    #[error("too many failed sign-ins for this instrument or from this address; retry in {0:?}")]
    Throttled(Duration),
    /// 503: the instrument's introspection endpoint did not answer, or too many are in flight.
    #[error("{0}")]
    Unavailable(String),
    /// 500: signing failed (a bug); logged, answered generically.
    #[error("the herald could not sign a token; see its logs")]
    Internal(String),
}

/// A token issued at `POST /auth/token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub token: String,
    pub expires_in: u64,
}

/// Owns the keys, the instrument configurations it checks credentials against, the sign-in
/// throttle and the introspection client. One per herald, shared by every listener.
pub struct Auth {
    keys: Option<KeySet>,
    /// Signs the tokens handed out while auth is off (a random key of this process).
    unenforced: KeySet,
    instruments: Arc<Instruments>,
    throttle: Throttle,
    introspection: Option<reqwest::Client>,
    introspection_slots: Semaphore,
    trust_forwarded_for: bool,
    metrics: Arc<Metrics>,
}

impl Auth {
    pub fn new(config: AuthConfig, instruments: Arc<Instruments>, metrics: Arc<Metrics>) -> Auth {
        let introspection = reqwest::Client::builder()
            .timeout(config.introspection_timeout)
            // A redirect would carry the credential elsewhere; only the configured URL answers.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| tracing::error!(error = %e, "no HTTP client for token introspection; those sign-ins fail"))
            .ok();
        let random: String = {
            use rand::Rng;
            rand::rng().sample_iter(rand::distr::Alphanumeric).take(48).map(char::from).collect()
        };
        Auth {
            keys: config.keys,
            unenforced: KeySet::parse(&random).unwrap_or_else(|| unreachable!("48 random characters are one key")),
            instruments,
            throttle: Throttle::new(config.throttle),
            introspection,
            introspection_slots: Semaphore::new(MAX_INTROSPECTIONS),
            trust_forwarded_for: config.trust_forwarded_for,
            metrics,
        }
    }

    /// Auth off: everything passes (tests and `herald demo`).
    pub fn off(metrics: Arc<Metrics>) -> Auth {
        Auth::new(AuthConfig::default(), Arc::new(Instruments::none(metrics.clone())), metrics)
    }

    pub fn is_on(&self) -> bool {
        self.keys.is_some()
    }

    pub fn instruments(&self) -> &Arc<Instruments> {
        &self.instruments
    }

    pub fn trust_forwarded_for(&self) -> bool {
        self.trust_forwarded_for
    }

    /// Count (and log) a refusal; returns it for the caller to answer with.
    pub fn refuse(&self, denied: Denied) -> Denied {
        self.metrics.auth_denied.with_label_values(&[denied.reason()]).inc();
        match &denied {
            Denied::Unauthenticated { reason, .. } => tracing::info!(reason, "request refused: not authenticated"),
            Denied::Forbidden { reason, message } => tracing::warn!(reason, %message, "request refused"),
        }
        denied
    }

    /// The claims of a token signed by one of the keys (auth on). Not counted.
    pub fn verify(&self, token: &str) -> Result<Claims, Denied> {
        let Some(keys) = &self.keys else {
            return Err(Denied::unauthenticated("auth_off", "auth is off on this herald: tokens are not checked"));
        };
        if token.is_empty() {
            return Err(Denied::unauthenticated("missing_token", "authorization required: the token is empty"));
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Denied::unauthenticated("malformed_token", "the token is too long to be one of ours"));
        }
        keys.verify(token).map_err(|why| Denied::unauthenticated(why.reason(), why.to_string()))
    }

    /// Who presents this token. Not counted: the caller decides whether it refuses.
    pub fn principal_of_token(&self, token: &str) -> Result<Principal, Denied> {
        if self.keys.is_none() {
            return Ok(Principal::Open);
        }
        let claims = self.verify(token)?;
        Ok(if claims.is_read_only() { Principal::Reader(claims.sub) } else { Principal::Instrument(claims.sub) })
    }

    /// Who sends these headers (`authorization: Bearer <token>`). Not counted.
    pub fn principal(&self, headers: &HeaderMap) -> Result<Principal, Denied> {
        if self.keys.is_none() {
            return Ok(Principal::Open);
        }
        let token = bearer(headers)?;
        self.principal_of_token(token)
    }

    /// For an export: the instrument every record must belong to (`None` when auth is off).
    /// Counted when refused.
    pub fn writer(&self, headers: &HeaderMap) -> Result<Option<String>, Denied> {
        match self.principal(headers).map_err(|d| self.refuse(d))? {
            Principal::Open => Ok(None),
            Principal::Instrument(id) => Ok(Some(id)),
            Principal::Reader(name) => Err(self.refuse(Denied::forbidden(
                "read_only_token",
                format!(
                    "the token of {name:?} is read-only; exports need the instrument's token from POST /auth/token"
                ),
            ))),
        }
    }

    /// `POST /auth/token`: a token for `instrument_id` if `credential` is accepted by the
    /// instrument's `auth` block. Throttled per instrument and per peer; each failure logged
    /// without the credential and counted.
    pub async fn sign_in(
        &self,
        instrument_id: &str,
        credential: &str,
        peer: Option<IpAddr>,
    ) -> Result<Issued, SignInError> {
        if let Err(wait) = self.throttle.check(instrument_id, peer) {
            self.metrics.auth_denied.with_label_values(&["throttled"]).inc();
            tracing::warn!(instrument = instrument_id, peer = ?peer, retry_after = ?wait, "sign-in throttled");
            return Err(SignInError::Throttled(wait));
        }
        let rejected = |reason: &'static str, message: String| {
            self.throttle.failed(instrument_id, peer);
            self.metrics.auth_denied.with_label_values(&[reason]).inc();
            tracing::warn!(instrument = instrument_id, peer = ?peer, reason, "sign-in refused");
            SignInError::Rejected(Denied::unauthenticated(reason, message))
        };
        let config = self.instruments.snapshot().get(instrument_id).cloned();
        let Some(backend) = config.as_ref().and_then(|c| c.auth.as_ref()) else {
            return Err(rejected(
                "auth_not_configured",
                format!(
                    "auth not configured for instrument {instrument_id:?}: this herald has no instrument file \
                     with an auth block for it (ask the operator)"
                ),
            ));
        };
        let accepted = match backend {
            AuthBackend::Secret { api_key_hash } => {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(credential.as_bytes());
                bool::from(digest.as_slice().ct_eq(api_key_hash.as_slice()))
            }
            AuthBackend::TokenIntrospection { verify_url } => {
                self.introspect(instrument_id, verify_url, credential).await?
            }
        };
        if !accepted {
            return Err(rejected(
                "bad_credential",
                format!("the credential for instrument {instrument_id:?} was rejected"),
            ));
        }
        self.throttle.succeeded(instrument_id, peer);
        let (keys, ttl) = match &self.keys {
            Some(keys) => (keys, TOKEN_TTL),
            None => (&self.unenforced, UNENFORCED_TOKEN_TTL),
        };
        let (token, claims) = keys.issue(instrument_id, None, ttl).map_err(|e| {
            tracing::error!(error = %e, "signing a token failed");
            SignInError::Internal(e)
        })?;
        tracing::info!(instrument = instrument_id, expires_in = ttl.as_secs(), "token issued");
        Ok(Issued { token, expires_in: claims.exp - claims.iat })
    }

    /// `GET verify_url` with the credential as bearer: 200 accepts, any other answer rejects;
    /// no answer in time is "unavailable", not a rejection (and not a throttled failure).
    async fn introspect(&self, instrument_id: &str, verify_url: &str, credential: &str) -> Result<bool, SignInError> {
        let unavailable = |why: &str| {
            tracing::warn!(instrument = instrument_id, url = %helix_store::redact_url(verify_url), error = why,
                "token introspection did not answer");
            SignInError::Unavailable(format!(
                "the token introspection endpoint of instrument {instrument_id:?} did not answer; retry later"
            ))
        };
        let Some(client) = &self.introspection else { return Err(unavailable("no HTTP client")) };
        let Ok(_slot) = self.introspection_slots.try_acquire() else {
            return Err(SignInError::Unavailable(
                "too many sign-ins are being checked right now; retry in a second".into(),
            ));
        };
        match client.get(verify_url).bearer_auth(credential).send().await {
            Ok(response) => Ok(response.status() == reqwest::StatusCode::OK),
            // The error names the URL, which may carry a key: only its kind is logged.
            Err(e) if e.is_timeout() => Err(unavailable("timed out")),
            Err(e) if e.is_connect() => Err(unavailable("connection failed")),
            Err(_) => Err(unavailable("request failed")),
        }
    }
}

/// `herald token issue --read`: a read-only token for `name`, signed with the first key.
pub fn issue_read_token(jwt_secret: Option<&str>, name: &str, ttl: Duration) -> Result<String, String> {
    let keys = jwt_secret
        .and_then(KeySet::parse)
        .ok_or("JWT_SECRET is not set: set it to the herald's keys (the first one signs) to issue a token")?;
    let name = name.trim();
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err("--name must be a non-empty name without control characters".into());
    }
    if ttl.is_zero() {
        return Err("--ttl must be longer than 0".into());
    }
    keys.issue(name, Some(READ_SCOPE), ttl).map(|(token, _)| token)
}

/// The token of `authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Result<&str, Denied> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Err(Denied::unauthenticated(
            "missing_token",
            "authorization required: send `authorization: Bearer <token>` (a token from POST /auth/token)",
        ));
    };
    let value = value.to_str().map_err(|_| Denied::unauthenticated("malformed_token", "invalid token"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| Denied::unauthenticated("malformed_token", "authorization must be `Bearer <token>`"))?;
    if token.is_empty() {
        return Err(Denied::unauthenticated("missing_token", "authorization required: the bearer token is empty"));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, authorization.parse().unwrap());
        h
    }

    fn auth_on() -> Auth {
        let metrics = Arc::new(Metrics::new());
        let config = AuthConfig { keys: KeySet::parse("k1"), ..Default::default() };
        Auth::new(config, Arc::new(Instruments::none(metrics.clone())), metrics)
    }

    #[test]
    fn off_lets_everyone_write_and_on_wants_a_bearer_token() {
        let off = Auth::off(Arc::new(Metrics::new()));
        assert_eq!(off.writer(&HeaderMap::new()), Ok(None));
        let on = auth_on();
        assert_eq!(on.writer(&HeaderMap::new()).unwrap_err().reason(), "missing_token");
        assert_eq!(on.writer(&headers("Basic abc")).unwrap_err().reason(), "malformed_token");
        assert_eq!(on.writer(&headers("Bearer ")).unwrap_err().reason(), "missing_token");
        assert_eq!(on.writer(&headers("Bearer nope")).unwrap_err().reason(), "malformed_token");
        let keys = KeySet::parse("k1").unwrap();
        let (token, _) = keys.issue("CHIME", None, TOKEN_TTL).unwrap();
        assert_eq!(on.writer(&headers(&format!("Bearer {token}"))), Ok(Some("CHIME".into())));
        let (read, _) = keys.issue("grafana", Some(READ_SCOPE), TOKEN_TTL).unwrap();
        let denied = on.writer(&headers(&format!("Bearer {read}"))).unwrap_err();
        assert!(matches!(denied, Denied::Forbidden { reason: "read_only_token", .. }), "{denied:?}");
        assert_eq!(on.metrics.auth_denied.with_label_values(&["missing_token"]).get(), 2);
    }
}
