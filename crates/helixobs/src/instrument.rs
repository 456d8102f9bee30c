//! [`Instrument`]: one pipeline's connection to the herald, and its builder.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use helix_model::keys;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::auth::{Credential, TokenSource};
use crate::config::{self, Protocol, Signal, Target};
use crate::export::{self, ExportSettings, OnRuntime};
use crate::logs::{Correlate, HelixLayer};
use crate::registry::Registry;
use crate::scope;
use crate::span::SpanGuard;
use crate::token::{Kind, TokenBuilder};
use crate::value::key_values;
use crate::Error;

/// Spans queued for export before the oldest are dropped; large enough for bursts of tens of
/// thousands of steps (a span waiting for export takes about 1 KiB).
pub const DEFAULT_MAX_QUEUE_SIZE: usize = 65_536;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Configures an [`Instrument`]; made by [`Instrument::builder`].
///
/// Every setting left unset falls back to the standard OpenTelemetry environment variables:
/// `OTEL_EXPORTER_OTLP_[TRACES_|LOGS_]ENDPOINT`, `..._PROTOCOL` (`grpc`, `http/protobuf`),
/// `..._INSECURE`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_RESOURCE_ATTRIBUTES` (which may also
/// carry `helix.instrument.id`), `OTEL_BSP_*`; then to OTLP/gRPC on `localhost:4317`.
#[must_use = "call .build() to get the instrument"]
pub struct InstrumentBuilder {
    service_name: String,
    instrument_id: Option<String>,
    endpoint: Option<String>,
    log_endpoint: Option<String>,
    protocol: Option<Protocol>,
    insecure: Option<bool>,
    process_name: Option<String>,
    credential: Option<Credential>,
    auth_endpoint: Option<String>,
    headers: Vec<(String, String)>,
    max_queue_size: Option<usize>,
    timeout: Duration,
    span_exporter: Option<ProcessorFactory>,
}

type ProcessorFactory =
    Box<dyn FnOnce(opentelemetry_sdk::trace::BatchConfig) -> opentelemetry_sdk::trace::BatchSpanProcessor + Send>;

impl std::fmt::Debug for InstrumentBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstrumentBuilder")
            .field("service_name", &self.service_name)
            .field("instrument_id", &self.instrument_id)
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("process_name", &self.process_name)
            .field("credential", &self.credential)
            .field("auth_endpoint", &self.auth_endpoint)
            .finish_non_exhaustive()
    }
}

impl InstrumentBuilder {
    /// Send spans to `exporter` instead of OTLP (through the same batch processor), e.g. the
    /// SDK's `InMemorySpanExporter` in unit tests of a pipeline, or a no-op one in benchmarks.
    /// Logs still go to the OTLP endpoint.
    pub fn span_exporter<E>(mut self, exporter: E) -> Self
    where
        E: opentelemetry_sdk::trace::SpanExporter + 'static,
    {
        self.span_exporter = Some(Box::new(move |config| {
            opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter).with_batch_config(config).build()
        }));
        self
    }

    /// The instrument owning the pipeline's entities: a short stable ID such as `"CHIME"`.
    /// Required (here or as `helix.instrument.id` in `OTEL_RESOURCE_ATTRIBUTES`).
    pub fn instrument_id(mut self, id: impl Into<String>) -> Self {
        self.instrument_id = Some(id.into());
        self
    }

    /// The herald's OTLP endpoint: `host:port` (TLS exactly on port 443) or a URL
    /// (`http://…` plaintext, `https://…` TLS). For OTLP/HTTP a URL without a path gets
    /// `/v1/traces` (and `/v1/logs`) appended.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Where logs go, when not to the trace endpoint (the herald takes both on one port).
    pub fn log_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.log_endpoint = Some(endpoint.into());
        self
    }

    /// OTLP/gRPC (the default) or OTLP/HTTP with protobuf bodies.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// Force plaintext (`true`) or TLS (`false`) for a `host:port` endpoint.
    pub fn insecure(mut self, insecure: bool) -> Self {
        self.insecure = Some(insecure);
        self
    }

    /// The process name stamped on every step, by convention `{INSTRUMENT}/{pipeline}/{stage}`.
    pub fn process_name(mut self, name: impl Into<String>) -> Self {
        self.process_name = Some(name.into()).filter(|n: &String| !n.is_empty());
        self
    }

    /// The instrument's credential for the herald's token endpoint (with
    /// [`auth_endpoint`](Self::auth_endpoint)). A token is fetched at `build()` — a refused
    /// credential fails the build — and refreshed before it expires.
    pub fn credential(mut self, credential: impl Into<String>) -> Self {
        self.credential = Some(Credential::Fixed(credential.into()));
        self
    }

    /// Like [`credential`](Self::credential), asking `credential` at every token fetch (e.g.
    /// reading a secret file that is rotated).
    pub fn credential_with(mut self, credential: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.credential = Some(Credential::From(Arc::new(credential)));
        self
    }

    /// The herald's token endpoint, e.g. `http://herald:8080/auth/token`.
    pub fn auth_endpoint(mut self, url: impl Into<String>) -> Self {
        self.auth_endpoint = Some(url.into());
        self
    }

    /// An extra header (gRPC metadata) on every export, besides `OTEL_EXPORTER_OTLP_HEADERS`.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into().to_ascii_lowercase(), value.into()));
        self
    }

    /// How many finished spans may wait for export (default [`DEFAULT_MAX_QUEUE_SIZE`], or
    /// `OTEL_BSP_MAX_QUEUE_SIZE`); beyond it the SDK drops spans.
    pub fn max_queue_size(mut self, spans: usize) -> Self {
        self.max_queue_size = Some(spans.max(1));
        self
    }

    /// Timeout of one export request and of a token fetch (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Set up the trace and log pipelines. Fails with a message saying what to fix when a
    /// setting is invalid, or when credentials are configured and no token can be obtained.
    /// Nothing is sent until the first step ends; a herald that is down is retried then.
    pub fn build(self) -> Result<Instrument, Error> {
        let resource_env = config::env(&["OTEL_RESOURCE_ATTRIBUTES"]).unwrap_or_default();
        let instrument_id = self
            .instrument_id
            .filter(|id| !id.is_empty())
            .or_else(|| {
                resource_env.split(',').filter_map(|kv| kv.split_once('=')).find_map(|(k, v)| {
                    (k.trim() == keys::INSTRUMENT_ID && !v.trim().is_empty()).then(|| v.trim().to_owned())
                })
            })
            .ok_or_else(|| {
                Error::Config(
                    "an instrument ID is required: Instrument::builder(\"my-pipeline\").instrument_id(\"MY_INST\")"
                        .to_owned(),
                )
            })?;
        let trace_protocol = config::resolve_protocol(self.protocol, Signal::Traces)?;
        let log_protocol = config::resolve_protocol(self.protocol, Signal::Logs)?;
        let traces = config::resolve_target(self.endpoint.as_deref(), self.insecure, trace_protocol, Signal::Traces)?;
        // Logs: their own endpoint, else the OTEL_* log endpoint, else the traces' endpoint
        // (the herald takes both on one port).
        let log_endpoint =
            self.log_endpoint.as_deref().or(if config::env(&["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"]).is_some() {
                None
            } else {
                self.endpoint.as_deref()
            });
        let logs = config::resolve_target(log_endpoint, self.insecure, log_protocol, Signal::Logs)?;

        let runtime = export::runtime()?;
        let _entered = runtime.enter();
        let auth = match (self.credential, self.auth_endpoint) {
            (Some(credential), Some(url)) => {
                let source = Arc::new(TokenSource::new(&url, &instrument_id, credential, self.timeout)?);
                fetch_first_token(&runtime, &source, self.timeout)?;
                runtime.spawn(source.clone().refresh_forever());
                Some(source)
            }
            (Some(_), None) => return Err(Error::Config(
                "a credential was given without auth_endpoint: add .auth_endpoint(\"http://herald:8080/auth/token\")"
                    .to_owned(),
            )),
            (None, Some(_)) => {
                return Err(Error::Config(
                    "auth_endpoint was given without a credential: add .credential(..)".to_owned(),
                ))
            }
            (None, None) => None,
        };

        let mut headers = config::env_headers();
        headers.extend(self.headers);
        let settings = ExportSettings { headers: &headers, auth: auth.clone(), timeout: self.timeout };
        let resource = resource(&self.service_name, &instrument_id, self.process_name.as_deref());

        let queue = self.max_queue_size.or_else(|| {
            // The SDK reads OTEL_BSP_MAX_QUEUE_SIZE itself unless we set a size.
            config::env(&["OTEL_BSP_MAX_QUEUE_SIZE"]).is_none().then_some(DEFAULT_MAX_QUEUE_SIZE)
        });
        let mut batch = opentelemetry_sdk::trace::BatchConfigBuilder::default();
        if let Some(q) = queue {
            batch = batch.with_max_queue_size(q);
        }
        let processor = match self.span_exporter {
            Some(factory) => factory(batch.build()),
            None => {
                let exporter =
                    OnRuntime { inner: export::span_exporter(&traces, &settings)?, handle: runtime.handle().clone() };
                opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter).with_batch_config(batch.build()).build()
            }
        };
        let provider =
            SdkTracerProvider::builder().with_resource(resource.clone()).with_span_processor(processor).build();
        let scope = InstrumentationScope::builder("helixobs").with_version(env!("CARGO_PKG_VERSION")).build();
        let tracer = provider.tracer_with_scope(scope);

        let log_exporter =
            OnRuntime { inner: export::log_exporter(&logs, &settings)?, handle: runtime.handle().clone() };
        let logger_provider = SdkLoggerProvider::builder()
            .with_resource(resource)
            .with_log_processor(Correlate)
            .with_log_processor(opentelemetry_sdk::logs::BatchLogProcessor::builder(log_exporter).build())
            .build();

        drop(_entered);
        crate::panic::install_hook();
        let instrument_id = intern(&instrument_id);
        let process_name = self.process_name.as_deref().map(intern);
        let inner = Arc::new(Inner {
            instrument_id,
            process_name,
            service_name: self.service_name,
            tracer,
            provider,
            logger_provider,
            registry: Registry::new(),
            traces,
            runtime: Mutex::new(Some(runtime)),
        });
        *GLOBAL.write().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(&inner);
        Ok(Instrument { inner })
    }
}

/// `s` as a static string, leaked once per distinct value (an instrument ID or process name, so
/// a handful per process however many instruments are built). A static attribute value is
/// cloned onto every span without touching a reference count — one the exporter thread would
/// also touch when it drops each exported span.
fn intern(s: &str) -> &'static str {
    static INTERNED: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut interned = INTERNED.lock().unwrap_or_else(|e| e.into_inner());
    match interned.get(s) {
        Some(&known) => known,
        None => {
            let leaked: &'static str = Box::leak(s.into());
            interned.insert(leaked);
            leaked
        }
    }
}

/// The service name, instrument and process as resource attributes, over the SDK's defaults
/// and `OTEL_RESOURCE_ATTRIBUTES` (ours win).
fn resource(service_name: &str, instrument_id: &str, process_name: Option<&str>) -> Resource {
    let mut attributes = vec![KeyValue::new(keys::INSTRUMENT_ID, instrument_id.to_owned())];
    if let Some(p) = process_name {
        attributes.push(KeyValue::new(keys::PROCESS_NAME, p.to_owned()));
    }
    Resource::builder().with_service_name(service_name.to_owned()).with_attributes(attributes).build()
}

/// The first token, fetched on the instrument's runtime (blocking the caller, who may be inside
/// another runtime), so a wrong credential or endpoint fails `build()`.
fn fetch_first_token(
    runtime: &tokio::runtime::Runtime,
    source: &Arc<TokenSource>,
    timeout: Duration,
) -> Result<(), Error> {
    let (tx, rx) = std::sync::mpsc::channel();
    let task_source = source.clone();
    runtime.spawn(async move {
        let _ = tx.send(task_source.refresh().await);
    });
    match rx.recv_timeout(timeout + Duration::from_secs(1)) {
        Ok(result) => result,
        Err(_) => Err(Error::Auth(format!("no answer from the auth endpoint within {timeout:?}"))),
    }
}

pub(crate) struct Inner {
    pub(crate) tracer: SdkTracer,
    provider: SdkTracerProvider,
    logger_provider: SdkLoggerProvider,
    /// Static strings (see [`intern`]): every span's attribute value is a pointer copy.
    pub(crate) instrument_id: &'static str,
    pub(crate) process_name: Option<&'static str>,
    service_name: String,
    pub(crate) registry: Registry,
    traces: Target,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instrument")
            .field("instrument_id", &self.instrument_id)
            .field("service_name", &self.service_name)
            .field("endpoint", &self.traces.url)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn shutdown(&self) -> Result<(), Error> {
        let traces = self.provider.shutdown();
        let logs = self.logger_provider.shutdown();
        if let Some(runtime) = self.runtime.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // Never blocks: fine inside an async context.
            runtime.shutdown_background();
        }
        for result in [traces, logs] {
            match result {
                Ok(()) | Err(opentelemetry_sdk::error::OTelSdkError::AlreadyShutdown) => {}
                Err(e) => return Err(self.export_error(&e)),
            }
        }
        Ok(())
    }

    fn export_error(&self, e: &dyn std::fmt::Display) -> Error {
        Error::Export(format!(
            "could not deliver all telemetry to {}: {e}; is the herald running and reachable there?",
            self.traces.url
        ))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: deliver what is queued (as `shutdown()` would).
        if let Err(e) = self.shutdown() {
            tracing::warn!(target: "helixobs", "{e}");
        }
    }
}

static GLOBAL: RwLock<Weak<Inner>> = RwLock::new(Weak::new());

/// The most recently built instrument that still exists (used by [`crate::tracing_layer`] and
/// the attribute macros).
pub fn global() -> Option<Instrument> {
    GLOBAL.read().unwrap_or_else(|e| e.into_inner()).upgrade().map(|inner| Instrument { inner })
}

/// One pipeline's connection to the herald: makes creation, operation and plain spans and
/// exports them (and `tracing` logs) over OTLP.
///
/// Cheap to clone (clones share one pipeline); `Send + Sync`. Call [`shutdown`](Self::shutdown)
/// before the process exits so that nothing queued is lost (dropping the last clone does the
/// same, without reporting failures).
#[derive(Clone, Debug)]
pub struct Instrument {
    inner: Arc<Inner>,
}

impl Instrument {
    /// Start configuring the instrument of the pipeline `service_name` (the OTel
    /// `service.name`).
    pub fn builder(service_name: impl Into<String>) -> InstrumentBuilder {
        InstrumentBuilder {
            service_name: service_name.into(),
            instrument_id: None,
            endpoint: None,
            log_endpoint: None,
            protocol: None,
            insecure: None,
            process_name: None,
            credential: None,
            auth_endpoint: None,
            headers: Vec::new(),
            max_queue_size: None,
            timeout: DEFAULT_TIMEOUT,
            span_exporter: None,
        }
    }

    /// The creation of entity `id` by `stage` (the span name). Add `.parents([..])`, then
    /// `.start()` it (a guard) or run a future `.in_scope(..)`.
    #[inline]
    pub fn create(&self, stage: impl Into<Cow<'static, str>>, id: impl AsRef<str>) -> TokenBuilder {
        TokenBuilder::new(self.inner.clone(), Kind::Create, stage.into(), Some(Arc::from(id.as_ref())))
    }

    /// The operation `operation` on the existing entity `entity_id` (archive, convert, …),
    /// always in a new trace. The herald records it against the entity (making a placeholder
    /// for an entity it does not know yet).
    pub fn operate(&self, operation: impl Into<Cow<'static, str>>, entity_id: impl AsRef<str>) -> TokenBuilder {
        TokenBuilder::new(self.inner.clone(), Kind::Operate, operation.into(), Some(Arc::from(entity_id.as_ref())))
    }

    /// An operation whose entity is discovered while it runs: call
    /// [`Token::set_entity_id`](crate::Token::set_entity_id) once it is known. If it never is,
    /// the span is sent as a plain span and no operation is recorded.
    pub fn operate_deferred(&self, operation: impl Into<Cow<'static, str>>) -> TokenBuilder {
        TokenBuilder::new(self.inner.clone(), Kind::Operate, operation.into(), None)
    }

    /// A sub-step of the current step (in its trace, under the current span), current until
    /// the returned guard drops. It makes no entity row; its log lines carry the entity.
    pub fn child_span(&self, name: impl Into<Cow<'static, str>>) -> SpanGuard {
        let caller = scope::caller_context();
        let (_, current) = scope::current_state();
        let entity = current.and_then(|s| s.entity());
        self.plain(name.into(), &caller, &caller, entity, Vec::new())
    }

    /// A sub-step in the creation trace of `parent_id` (an entity this instrument created
    /// recently; otherwise a new trace), e.g. work on an entity resumed later in another task.
    pub fn child_span_of(&self, parent_id: impl AsRef<str>, name: impl Into<Cow<'static, str>>) -> SpanGuard {
        let caller = scope::caller_context();
        let parent = match self.inner.registry.get(parent_id.as_ref()) {
            Some(sc) => Context::new().with_remote_span_context(sc),
            None => Context::new(),
        };
        self.plain(name.into(), &parent, &caller, Some(Arc::from(parent_id.as_ref())), Vec::new())
    }

    /// A plain span for work with no entity (request handlers, health checks, daemon loops):
    /// log lines inside carry its trace ID; child spans inside join its trace.
    pub fn trace(&self, name: impl Into<Cow<'static, str>>) -> SpanGuard {
        let caller = scope::caller_context();
        self.plain(name.into(), &caller, &caller, None, Vec::new())
    }

    /// Like [`trace`](Self::trace), with attributes set at the start.
    pub fn trace_with<K, V>(
        &self,
        name: impl Into<Cow<'static, str>>,
        attributes: impl IntoIterator<Item = (K, V)>,
    ) -> SpanGuard
    where
        K: Into<opentelemetry::Key>,
        V: crate::IntoValue,
    {
        let caller = scope::caller_context();
        self.plain(name.into(), &caller, &caller, None, key_values(attributes))
    }

    fn plain(
        &self,
        name: Cow<'static, str>,
        parent: &Context,
        caller: &Context,
        log_entity: Option<Arc<str>>,
        extra: Vec<KeyValue>,
    ) -> SpanGuard {
        let inner = &self.inner;
        let mut attributes = Vec::with_capacity(2 + extra.len());
        attributes.push(KeyValue::new(keys::INSTRUMENT_ID, inner.instrument_id));
        if let Some(entity) = &log_entity {
            attributes.push(KeyValue::new(keys::LOG_ENTITY_ID, entity.to_string()));
        }
        attributes.extend(extra);
        SpanGuard::begin(&inner.tracer, name, parent, caller, attributes, log_entity, inner).attached()
    }

    /// This instrument's `tracing` layer (see [`crate::tracing_layer`], which binds to the most
    /// recently built instrument instead).
    pub fn tracing_layer(&self) -> HelixLayer {
        HelixLayer::for_provider(&self.inner.logger_provider)
    }

    /// The instrument ID every step carries.
    pub fn instrument_id(&self) -> &str {
        self.inner.instrument_id
    }

    /// The tracer provider of this instrument's pipeline, for other OpenTelemetry
    /// instrumentation (e.g. `tracing-opentelemetry`) to export through the same pipeline.
    pub fn tracer_provider(&self) -> &SdkTracerProvider {
        &self.inner.provider
    }

    pub(crate) fn logger_provider(&self) -> &SdkLoggerProvider {
        &self.inner.logger_provider
    }

    /// Export everything finished so far and wait for the herald to acknowledge it.
    pub fn flush(&self) -> Result<(), Error> {
        let traces = self.inner.provider.force_flush();
        let logs = self.inner.logger_provider.force_flush();
        traces.and(logs).map_err(|e| self.inner.export_error(&e))
    }

    /// Flush and close the pipelines. Steps ended afterwards are not sent. Idempotent; every
    /// clone is shut down with it.
    pub fn shutdown(&self) -> Result<(), Error> {
        self.inner.shutdown()
    }
}
