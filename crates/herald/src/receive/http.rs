//! OTLP/HTTP receiver: `POST /v1/traces` and `/v1/logs`, protobuf or JSON, optionally gzip.
//! Authenticates before reading the body (401, 403); answers 200 after the commit, 503/429
//! with Retry-After when it cannot store now (or the in-flight budget is taken), 400 for
//! malformed bodies, 413 above the size limit or an export that could never fit the in-flight
//! budget, 415 for other content types.

use std::io::Read;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde::{de::DeserializeOwned, Serialize};

use crate::auth::Denied;
use crate::config::ReceiveConfig;
use crate::ingest::{Ingest, IngestError};
use crate::receive::{Admission, Refusal, JSON_FACTOR};
use crate::write::WriteError;

#[derive(Clone)]
struct HttpState {
    ingest: Arc<Ingest>,
    max_bytes: usize,
}

/// The request encodings OTLP/HTTP defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

/// Why a request was not accepted, as the client will read it.
#[derive(Debug, thiserror::Error)]
enum HttpError {
    #[error("unsupported content-type {0:?}; send application/x-protobuf or application/json")]
    UnsupportedType(String),
    #[error("unsupported content-encoding {0:?}; send gzip or no encoding")]
    UnsupportedEncoding(String),
    #[error(
        "request body is larger than the {0} bytes this herald accepts (HELIX_MAX_REQUEST_BYTES); send smaller batches"
    )]
    TooLarge(usize),
    #[error("could not read the request body: {0}")]
    BadBody(String),
    #[error("body is not valid gzip: {0}")]
    BadGzip(String),
    #[error("body is not a valid OTLP {what} protobuf message: {why}")]
    BadProtobuf { what: &'static str, why: String },
    #[error("body is not a valid OTLP/JSON {what} request: {why}")]
    BadJson { what: &'static str, why: String },
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Denied(Denied),
    #[error(transparent)]
    Refused(#[from] Refusal),
}

impl From<IngestError> for HttpError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Denied(d) => HttpError::Denied(d),
            IngestError::Write(w) => HttpError::Write(w),
        }
    }
}

impl HttpError {
    /// The `helix_exports_refused_total{reason}` of a refusal only this receiver sees; `None`
    /// for refusals counted where they happen (the writer's, auth's).
    fn refusal(&self) -> Option<&'static str> {
        match self {
            HttpError::UnsupportedType(_) | HttpError::UnsupportedEncoding(_) => Some("unsupported_media_type"),
            HttpError::TooLarge(_) => Some("too_large"),
            HttpError::BadBody(_)
            | HttpError::BadGzip(_)
            | HttpError::BadProtobuf { .. }
            | HttpError::BadJson { .. } => Some("malformed"),
            // The in-flight budget counts its own refusals.
            HttpError::Write(_) | HttpError::Denied(_) | HttpError::Refused(_) => None,
        }
    }

    /// Count the refusal (if it is this receiver's to count) and pass it on.
    fn counted(self, metrics: &crate::metrics::Metrics) -> Self {
        if let Some(reason) = self.refusal() {
            metrics.exports_refused.with_label_values(&[reason]).inc();
        }
        self
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = match &self {
            HttpError::UnsupportedType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            HttpError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            HttpError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::BadBody(_)
            | HttpError::BadGzip(_)
            | HttpError::BadProtobuf { .. }
            | HttpError::BadJson { .. } => StatusCode::BAD_REQUEST,
            HttpError::Write(WriteError::Overloaded { .. }) => StatusCode::TOO_MANY_REQUESTS,
            HttpError::Write(e) if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Write(_) => StatusCode::INTERNAL_SERVER_ERROR,
            HttpError::Denied(Denied::Unauthenticated { .. }) => StatusCode::UNAUTHORIZED,
            HttpError::Denied(Denied::Forbidden { .. }) => StatusCode::FORBIDDEN,
            HttpError::Refused(Refusal::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::Refused(Refusal::Busy { .. }) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            "the herald could not store this export; see its logs".to_owned()
        } else {
            self.to_string()
        };
        let mut response = (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
        if matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The OTLP/HTTP routes, for a listener of their own.
pub fn router(ingest: Arc<Ingest>, config: &ReceiveConfig) -> Router {
    Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/logs", post(logs))
        // The limit is enforced while reading (`read_limited`), so that an oversized request
        // still gets its 413 instead of a connection closed under the sender.
        .layer(DefaultBodyLimit::disable())
        .with_state(HttpState { ingest, max_bytes: config.max_request_bytes })
}

async fn traces(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Result<Response, HttpError> {
    let metrics = state.ingest.metrics.clone();
    export_traces(state, headers, body).await.map_err(|e| e.counted(&metrics))
}

async fn export_traces(state: HttpState, headers: HeaderMap, body: Body) -> Result<Response, HttpError> {
    let owner = state.ingest.auth.writer(&headers).map_err(HttpError::Denied)?;
    let (encoding, raw, _admission) =
        admitted_body(&state, &headers, body, "trace export", helix_model::shape::count_traces).await?;
    let request: ExportTraceServiceRequest = decode(encoding, &raw, "trace export")?;
    drop(raw);
    let accepted = state.ingest.traces(request, "http", owner.as_deref()).await?;
    Ok(encode(encoding, &accepted.trace_response()))
}

async fn logs(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Result<Response, HttpError> {
    let metrics = state.ingest.metrics.clone();
    export_logs(state, headers, body).await.map_err(|e| e.counted(&metrics))
}

async fn export_logs(state: HttpState, headers: HeaderMap, body: Body) -> Result<Response, HttpError> {
    let owner = state.ingest.auth.writer(&headers).map_err(HttpError::Denied)?;
    let (encoding, raw, _admission) =
        admitted_body(&state, &headers, body, "log export", helix_model::shape::count_logs).await?;
    let request: ExportLogsServiceRequest = decode(encoding, &raw, "log export")?;
    drop(raw);
    let accepted = state.ingest.logs(request, owner.as_deref()).await?;
    Ok(encode(encoding, &accepted.logs_response()))
}

/// The body, read and decompressed within its share of the in-flight budget: first its
/// declared length (the most allowed when it declares none), then what decoding it will cost.
async fn admitted_body(
    state: &HttpState,
    headers: &HeaderMap,
    body: Body,
    what: &'static str,
    count: fn(&[u8]) -> Result<helix_model::shape::Counts, prost::DecodeError>,
) -> Result<(Encoding, Bytes, Admission), HttpError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(state.max_bytes as u64);
    // A body declared too large is still read (and refused) by `read_limited`.
    let declared = declared.min(state.max_bytes as u64);
    let admission = state.ingest.budget.admit(declared)?;
    let body = read_limited(body, state.max_bytes, declared as usize).await?;
    let (encoding, raw) = body_of(headers, body, state.max_bytes)?;
    let cost = match encoding {
        Encoding::Protobuf => {
            count(&raw).map_err(|e| HttpError::BadProtobuf { what, why: e.to_string() })?.estimated_bytes()
        }
        Encoding::Json => (raw.len() as u64).saturating_mul(JSON_FACTOR),
    };
    let admission = state.ingest.budget.grow(admission, cost)?;
    Ok((encoding, raw, admission))
}

/// Oversized bodies are read on (and discarded) up to this many times the limit, so that an
/// honest client that sent too much reads a 413; beyond it the connection is simply closed.
const DRAIN_FACTOR: usize = 8;

/// The request body, refused with 413 once it exceeds `max_bytes` (as sent, before decompression).
async fn read_limited(body: Body, max_bytes: usize, expected: usize) -> Result<Bytes, HttpError> {
    let mut body = body;
    // Sized once for the declared length (what the budget admitted), not grown by doubling.
    let mut buf = bytes::BytesMut::with_capacity(expected.min(max_bytes));
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| HttpError::BadBody(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        seen = seen.saturating_add(data.len());
        if seen <= max_bytes {
            buf.extend_from_slice(&data);
        } else if seen > max_bytes.saturating_mul(DRAIN_FACTOR) {
            break;
        }
    }
    if seen > max_bytes {
        return Err(HttpError::TooLarge(max_bytes));
    }
    Ok(buf.freeze())
}

/// The body's encoding and its bytes after decompression (bounded, so a gzip bomb is refused).
fn body_of(headers: &HeaderMap, body: Bytes, max_bytes: usize) -> Result<(Encoding, Bytes), HttpError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let encoding = match mime.as_str() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        _ => return Err(HttpError::UnsupportedType(content_type.to_owned())),
    };
    let content_encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
    match content_encoding.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => Ok((encoding, body)),
        "gzip" => {
            let mut out = Vec::new();
            let limit = u64::try_from(max_bytes).unwrap_or(u64::MAX).saturating_add(1);
            flate2::read::GzDecoder::new(body.as_ref())
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|e| HttpError::BadGzip(e.to_string()))?;
            if out.len() > max_bytes {
                return Err(HttpError::TooLarge(max_bytes));
            }
            Ok((encoding, Bytes::from(out)))
        }
        other => Err(HttpError::UnsupportedEncoding(other.to_owned())),
    }
}

fn decode<T: Message + Default + DeserializeOwned>(
    encoding: Encoding,
    raw: &[u8],
    what: &'static str,
) -> Result<T, HttpError> {
    match encoding {
        Encoding::Protobuf => T::decode(raw).map_err(|e| HttpError::BadProtobuf { what, why: e.to_string() }),
        Encoding::Json => serde_json::from_slice(raw).map_err(|e| HttpError::BadJson { what, why: e.to_string() }),
    }
}

/// The response in the request's encoding, as OTLP/HTTP requires.
fn encode<T: Message + Serialize>(encoding: Encoding, response: &T) -> Response {
    match encoding {
        Encoding::Protobuf => {
            ([(header::CONTENT_TYPE, "application/x-protobuf")], response.encode_to_vec()).into_response()
        }
        Encoding::Json => axum::Json(response).into_response(),
    }
}

/// Serve OTLP/HTTP on an already-bound listener until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ingest: Arc<Ingest>,
    config: ReceiveConfig,
    limits: crate::connections::ConnectionLimits,
    tls: Option<Arc<crate::tls::TlsListener>>,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    crate::connections::serve(listener, router(ingest, &config), "otlp-http", limits, tls, shutdown).await
}
