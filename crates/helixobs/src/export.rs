//! The OTLP exporters of one instrument (the `opentelemetry-otlp` ones, configured here) and
//! the small runtime this crate owns for their I/O.
//!
//! The SDK's batch processors export from their own threads; the tonic and reqwest clients need
//! a tokio runtime. Owning one (a single worker thread) means the instrument works the same in
//! a plain `fn main`, under `#[tokio::main]` and inside any other runtime, and its exports never
//! compete with the application's tasks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::LogBatch;
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::Resource;

use crate::auth::TokenSource;
use crate::config::{Protocol, Target};
use crate::Error;

thread_local! {
    static EXPORT_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True on the threads that carry exports (their own log events must not be exported again).
pub(crate) fn on_export_thread() -> bool {
    EXPORT_THREAD.with(|t| t.get())
        || std::thread::current().name().is_some_and(|n| n.starts_with("OpenTelemetry.") || n == "helixobs-export")
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("helixobs-export")
        .on_thread_start(|| EXPORT_THREAD.with(|t| t.set(true)))
        .enable_all()
        .build()
        .map_err(|e| Error::Config(format!("cannot start the exporter runtime: {e}")))
}

/// An exporter whose requests run on the instrument's runtime. The batch processor calls
/// `export` on its own (non-runtime) thread, where blocking on the handle is allowed.
#[derive(Debug)]
pub(crate) struct OnRuntime<E> {
    pub(crate) inner: E,
    pub(crate) handle: tokio::runtime::Handle,
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter for OnRuntime<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let result = self.handle.block_on(self.inner.export(batch));
        std::future::ready(result)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: opentelemetry_sdk::logs::LogExporter> opentelemetry_sdk::logs::LogExporter for OnRuntime<E> {
    fn export(&self, batch: LogBatch<'_>) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let result = self.handle.block_on(self.inner.export(batch));
        std::future::ready(result)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Adds the current bearer token to every OTLP/gRPC request.
#[derive(Clone)]
struct GrpcAuth(Arc<TokenSource>);

impl tonic::service::Interceptor for GrpcAuth {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = self.0.header() {
            if let Ok(value) = tonic::metadata::MetadataValue::try_from(header.as_bytes()) {
                request.metadata_mut().insert("authorization", value);
            }
        }
        Ok(request)
    }
}

/// The reqwest client of OTLP/HTTP exports, adding the current bearer token to each request.
#[derive(Debug)]
struct HttpAuth {
    client: reqwest::Client,
    auth: Option<Arc<TokenSource>>,
}

#[async_trait::async_trait]
impl HttpClient for HttpAuth {
    async fn send_bytes(&self, mut request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        if let Some(header) = self.auth.as_ref().and_then(|a| a.header()) {
            request.headers_mut().insert(http::header::AUTHORIZATION, header);
        }
        self.client.send_bytes(request).await
    }
}

/// What every exporter of an instrument shares.
pub(crate) struct ExportSettings<'a> {
    pub(crate) headers: &'a [(String, String)],
    pub(crate) auth: Option<Arc<TokenSource>>,
    pub(crate) timeout: Duration,
}

fn metadata(headers: &[(String, String)]) -> Result<tonic::metadata::MetadataMap, Error> {
    let mut map = tonic::metadata::MetadataMap::new();
    for (k, v) in headers {
        let key = tonic::metadata::MetadataKey::from_bytes(k.as_bytes())
            .map_err(|_| Error::Config(format!("OTLP header name {k:?} is not a valid gRPC metadata key")))?;
        let value = tonic::metadata::MetadataValue::try_from(v.as_str())
            .map_err(|_| Error::Config(format!("the value of OTLP header {k:?} is not valid in a header")))?;
        map.insert(key, value);
    }
    Ok(map)
}

fn http_client(settings: &ExportSettings<'_>) -> Result<HttpAuth, Error> {
    let client = reqwest::Client::builder()
        .timeout(settings.timeout)
        .build()
        .map_err(|e| Error::Config(format!("cannot set up the OTLP/HTTP client: {e}")))?;
    Ok(HttpAuth { client, auth: settings.auth.clone() })
}

#[cfg(feature = "tls")]
fn tls_config() -> opentelemetry_otlp::tonic_types::transport::ClientTlsConfig {
    opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new().with_webpki_roots()
}

/// The span exporter for `target`. Call with the instrument's runtime entered.
pub(crate) fn span_exporter(
    target: &Target,
    settings: &ExportSettings<'_>,
) -> Result<opentelemetry_otlp::SpanExporter, Error> {
    let built = match target.protocol {
        Protocol::Grpc => {
            let builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(target.url.clone())
                .with_timeout(settings.timeout)
                .with_metadata(metadata(settings.headers)?);
            #[cfg(feature = "tls")]
            let builder = if target.tls { builder.with_tls_config(tls_config()) } else { builder };
            match &settings.auth {
                Some(auth) => builder.with_interceptor(GrpcAuth(auth.clone())).build(),
                None => builder.build(),
            }
        }
        Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(target.url.clone())
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_timeout(settings.timeout)
            .with_headers(settings.headers.iter().cloned().collect::<HashMap<_, _>>())
            .with_http_client(http_client(settings)?)
            .build(),
    };
    built.map_err(|e| Error::Config(format!("cannot set up the OTLP trace exporter for {}: {e}", target.url)))
}

/// The log exporter for `target`. Call with the instrument's runtime entered.
pub(crate) fn log_exporter(
    target: &Target,
    settings: &ExportSettings<'_>,
) -> Result<opentelemetry_otlp::LogExporter, Error> {
    let built = match target.protocol {
        Protocol::Grpc => {
            let builder = opentelemetry_otlp::LogExporter::builder()
                .with_tonic()
                .with_endpoint(target.url.clone())
                .with_timeout(settings.timeout)
                .with_metadata(metadata(settings.headers)?);
            #[cfg(feature = "tls")]
            let builder = if target.tls { builder.with_tls_config(tls_config()) } else { builder };
            match &settings.auth {
                Some(auth) => builder.with_interceptor(GrpcAuth(auth.clone())).build(),
                None => builder.build(),
            }
        }
        Protocol::HttpProtobuf => opentelemetry_otlp::LogExporter::builder()
            .with_http()
            .with_endpoint(target.url.clone())
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_timeout(settings.timeout)
            .with_headers(settings.headers.iter().cloned().collect::<HashMap<_, _>>())
            .with_http_client(http_client(settings)?)
            .build(),
    };
    built.map_err(|e| Error::Config(format!("cannot set up the OTLP log exporter for {}: {e}", target.url)))
}
