//! The integration harness: a real `herald` process on loopback (free ports, own directory,
//! killed on drop), pipelines that send through the real OpenTelemetry SDK exporters, a raw
//! OTLP client for per-request control, a capture collector, and API helpers.
#![allow(dead_code)] // each test binary uses part of the harness

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanContext, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::Value;
use tempfile::TempDir;

/// Every listener of a test herald on a free loopback port (the ready file says which).
pub const LOOPBACK: [&str; 8] = herald::config::LOOPBACK_FLAGS;

/// Options for starting a herald.
#[derive(Clone, Default)]
pub struct HeraldOptions {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The store; a fresh SQLite file in the herald's directory when absent.
    pub db_url: Option<String>,
}

/// A herald process. Its data directory outlives restarts; the process is killed on drop.
pub struct Herald {
    child: Child,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub api: SocketAddr,
    pub metrics: SocketAddr,
    pub dir: Arc<TempDir>,
    options: HeraldOptions,
}

impl Herald {
    pub fn start() -> Herald {
        Self::start_with(HeraldOptions::default())
    }

    /// A herald on an existing store (e.g. a PostgreSQL database several replicas share).
    pub fn on_database(db_url: &str, env: &[(&str, &str)]) -> Herald {
        Self::start_with(HeraldOptions {
            db_url: Some(db_url.to_owned()),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        })
    }

    pub fn start_with(options: HeraldOptions) -> Herald {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Self::spawn(dir, options)
    }

    fn spawn(dir: Arc<TempDir>, options: HeraldOptions) -> Herald {
        let db_url =
            options.db_url.clone().unwrap_or_else(|| format!("sqlite://{}", dir.path().join("herald.db").display()));
        let log_path = dir.path().join("herald.log");
        let log = || std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("log file");
        // A restart reuses the directory: the previous process's file must not be mistaken for this one's.
        let ready_path = dir.path().join("ready.json");
        let _ = std::fs::remove_file(&ready_path);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
        cmd.args(LOOPBACK)
            .args(["--db-url", &db_url])
            .arg("--ready-file")
            .arg(&ready_path)
            .args(&options.args)
            .env_remove("COLLECTOR_ENDPOINT")
            .env_remove("DB_URL")
            .env_remove("HELIX_READY_FILE")
            // Auth is off unless a test turns it on.
            .env_remove("JWT_SECRET")
            .env_remove("INSTRUMENTS_DIR")
            // The log is a file: what the herald does there must not depend on the caller's terminal settings.
            .env_remove("NO_COLOR")
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .stdout(log())
            .stderr(log());
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning the herald binary");
        let ready = wait_for_ready_file(&mut child, &ready_path, &log_path);
        let addr = |key: &str| -> SocketAddr {
            ready[key]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("ready file {}: no address {key:?} in {ready}", ready_path.display()))
        };
        Herald {
            grpc: addr("otlp_grpc"),
            http: addr("otlp_http"),
            api: addr("api"),
            metrics: addr("metrics"),
            child,
            dir,
            options,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `kB` line of the herald's `/proc/PID/status` (`VmRSS`, `VmHWM` — the peak — …), in bytes.
    pub fn memory(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc/PID/status");
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix(" kB")?.trim().parse::<u64>().ok()
            })
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
            * 1024
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("herald.db")
    }

    /// SIGKILL: no shutdown, no flush — what a power cut or OOM kill does.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Send `signal` (e.g. `libc::SIGHUP`) to the herald.
    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child process by its PID.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// SIGTERM and wait for the staged shutdown.
    pub fn stop(&mut self) {
        // SAFETY: signalling our own child process by its PID.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait at most `limit` for the process to exit by itself. `None` when it did
    /// not (it is then killed, so the test can go on to report the failure).
    pub fn stop_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: signalling our own child process by its PID.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
        None
    }

    /// Stop (gracefully) and start again on the same database, with new ports.
    pub fn restart(mut self) -> Herald {
        self.stop();
        let dir = self.dir.clone();
        let options = self.options.clone();
        drop(self);
        Self::spawn(dir, options)
    }

    /// Start again on the same database after a kill.
    pub fn respawn(mut self) -> Herald {
        self.kill9();
        let dir = self.dir.clone();
        let options = self.options.clone();
        drop(self);
        Self::spawn(dir, options)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("herald.log")).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}{}", self.api, path)
    }

    /// GET an API path; returns status and body text.
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(self.api_url(path)).await.expect("API request");
        let status = response.status().as_u16();
        (status, response.text().await.expect("API body"))
    }

    /// GET a JSON API path; returns status and body (a JSON string when the body is not JSON).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let (status, text) = self.get_text(path).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// GET that must answer 200.
    pub async fn get_ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path} → {status}: {body}");
        body
    }

    /// The value of one metric sample (sum over label sets that contain `labels`).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = reqwest::get(format!("http://{}/metrics", self.metrics)).await.unwrap().text().await.unwrap();
        text.lines()
            .filter(|l| {
                l.starts_with(name)
                    && (l.as_bytes().get(name.len()) == Some(&b'{') || l.as_bytes().get(name.len()) == Some(&b' '))
            })
            .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll for the ready file the herald writes (atomically) once it listens and its store is
/// open; panic with the herald's log if it exits first or takes more than a minute.
fn wait_for_ready_file(child: &mut Child, ready: &Path, log: &Path) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(ready) {
            return serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("ready file {} is not JSON ({e}): {text:?}", ready.display()));
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() >= deadline {
            let why = match exited {
                Some(status) => format!("exited ({status}) before it was ready"),
                None => "was not ready within 60 s".to_owned(),
            };
            if exited.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("the herald {why}; its log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Percent-encode an entity ID (or any text) for a URL path segment or query value: every
/// byte but the unreserved ones (RFC 3986).
pub fn enc(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, URL_COMPONENT).to_string()
}

const URL_COMPONENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// How a pipeline's SDK exporter reaches the herald.
#[derive(Clone, Copy, Debug)]
pub enum Transport {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

/// One pipeline process: an OpenTelemetry SDK tracer provider with the real OTLP exporter.
pub struct Pipeline {
    provider: SdkTracerProvider,
    tracer: opentelemetry_sdk::trace::SdkTracer,
    pub instrument: String,
}

impl Pipeline {
    /// Must be called inside a multi-threaded tokio runtime (the exporters live on it).
    pub fn new(herald: &Herald, transport: Transport, service: &str, instrument: &str) -> Pipeline {
        let exporter = match transport {
            Transport::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(herald.grpc_url())
                .with_retry_policy(
                    opentelemetry_otlp::RetryPolicy::default()
                        .with_max_retries(50)
                        .with_max_delay(Duration::from_millis(500)),
                )
                .build(),
            Transport::HttpProtobuf | Transport::HttpJson => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(format!("http://{}/v1/traces", herald.http))
                .with_protocol(if matches!(transport, Transport::HttpJson) {
                    Protocol::HttpJson
                } else {
                    Protocol::HttpBinary
                })
                .with_retry_policy(
                    opentelemetry_otlp::RetryPolicy::default()
                        .with_max_retries(50)
                        .with_max_delay(Duration::from_millis(500)),
                )
                .build(),
        }
        .expect("building the OTLP exporter");
        let resource = Resource::builder()
            .with_service_name(service.to_owned())
            .with_attribute(KeyValue::new("helix.instrument.id", instrument.to_owned()))
            .build();
        // The exporters' clients live on the test's tokio runtime, so the batch processor must too.
        let processor = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
        let provider = SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource).build();
        let tracer = provider.tracer("helix-test");
        Pipeline { provider, tracer, instrument: instrument.to_owned() }
    }

    /// `create(stage, id, parents)` as a client library would send it; `extra` sets more on the span.
    pub fn create_with(
        &self,
        stage: &str,
        id: &str,
        parents: &[&str],
        extra: impl FnOnce(&opentelemetry::trace::SpanRef<'_>),
    ) -> SpanContext {
        let mut attrs = vec![KeyValue::new("helix.entity.id", id.to_owned())];
        if !parents.is_empty() {
            attrs.push(KeyValue::new("helix.parent.ids", parents.join(",")));
        }
        let span = self
            .tracer
            .span_builder(stage.to_owned())
            .with_kind(SpanKind::Internal)
            .with_attributes(attrs)
            .start(&self.tracer);
        let cx = Context::current_with_span(span);
        extra(&cx.span());
        let sc = cx.span().span_context().clone();
        cx.span().end();
        sc
    }

    pub fn create(&self, stage: &str, id: &str, parents: &[&str]) -> SpanContext {
        self.create_with(stage, id, parents, |_| {})
    }

    /// `operate(op, entity_id)`: a new root trace with the operation marker.
    pub fn operate_with(
        &self,
        op: &str,
        id: &str,
        extra: impl FnOnce(&opentelemetry::trace::SpanRef<'_>),
    ) -> SpanContext {
        let attrs =
            vec![KeyValue::new("helix.entity.id", id.to_owned()), KeyValue::new("helix.entity.is_operation", "true")];
        let span = self
            .tracer
            .span_builder(op.to_owned())
            .with_attributes(attrs)
            .start_with_context(&self.tracer, &Context::new());
        let cx = Context::current_with_span(span);
        extra(&cx.span());
        let sc = cx.span().span_context().clone();
        cx.span().end();
        sc
    }

    pub fn operate(&self, op: &str, id: &str) -> SpanContext {
        self.operate_with(op, id, |_| {})
    }

    /// A plain span (no entity), optionally as a child of `parent`.
    pub fn plain(&self, name: &str, parent: Option<&SpanContext>) -> SpanContext {
        let cx = match parent {
            Some(p) => Context::new().with_remote_span_context(p.clone()),
            None => Context::new(),
        };
        let span = self.tracer.span_builder(name.to_owned()).start_with_context(&self.tracer, &cx);
        let sc = opentelemetry::trace::Span::span_context(&span).clone();
        drop(span);
        sc
    }

    /// Export everything ended so far; panics if the herald did not acknowledge it.
    pub async fn flush(&self) {
        let provider = self.provider.clone();
        tokio::task::spawn_blocking(move || provider.force_flush())
            .await
            .unwrap()
            .expect("force_flush: export acknowledged");
    }

    pub async fn shutdown(self) {
        let provider = self.provider.clone();
        tokio::task::spawn_blocking(move || provider.shutdown()).await.unwrap().expect("provider shutdown");
    }
}

/// One pipeline process's logging: an OpenTelemetry SDK logger provider with the real OTLP
/// log exporter, over gRPC or HTTP.
pub struct LogPipeline {
    provider: opentelemetry_sdk::logs::SdkLoggerProvider,
    logger: opentelemetry_sdk::logs::SdkLogger,
}

impl LogPipeline {
    /// Must be called inside a multi-threaded tokio runtime (the exporters live on it).
    pub fn new(herald: &Herald, transport: Transport, service: &str, instrument: &str) -> LogPipeline {
        use opentelemetry::logs::LoggerProvider as _;
        let retry =
            opentelemetry_otlp::RetryPolicy::default().with_max_retries(50).with_max_delay(Duration::from_millis(500));
        let exporter = match transport {
            Transport::Grpc => opentelemetry_otlp::LogExporter::builder()
                .with_tonic()
                .with_endpoint(herald.grpc_url())
                .with_retry_policy(retry)
                .build(),
            Transport::HttpProtobuf | Transport::HttpJson => opentelemetry_otlp::LogExporter::builder()
                .with_http()
                .with_endpoint(format!("http://{}/v1/logs", herald.http))
                .with_protocol(if matches!(transport, Transport::HttpJson) {
                    Protocol::HttpJson
                } else {
                    Protocol::HttpBinary
                })
                .with_retry_policy(retry)
                .build(),
        }
        .expect("building the OTLP log exporter");
        let resource = Resource::builder()
            .with_service_name(service.to_owned())
            .with_attribute(KeyValue::new("helix.instrument.id", instrument.to_owned()))
            .with_attribute(KeyValue::new("helix.process.name", format!("{instrument}/{service}")))
            .build();
        let processor = opentelemetry_sdk::logs::log_processor_with_async_runtime::BatchLogProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
        let provider = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
            .with_log_processor(processor)
            .with_resource(resource)
            .build();
        let logger = provider.logger("helix-test");
        LogPipeline { provider, logger }
    }

    /// Emit one record, inside `span` when given, with extra string attributes.
    pub fn log(
        &self,
        severity: opentelemetry::logs::Severity,
        body: &str,
        span: Option<&SpanContext>,
        attributes: &[(&str, &str)],
    ) {
        use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _};
        let mut record = self.logger.create_log_record();
        record.set_timestamp(std::time::SystemTime::now());
        record.set_severity_number(severity);
        record.set_severity_text(severity.name());
        record.set_body(AnyValue::from(body.to_owned()));
        if let Some(sc) = span {
            record.set_trace_context(sc.trace_id(), sc.span_id(), None);
        }
        for (k, v) in attributes {
            record.add_attribute(k.to_string(), v.to_string());
        }
        self.logger.emit(record);
    }

    /// Export everything emitted so far; panics if the herald did not acknowledge it.
    pub async fn flush(&self) {
        let provider = self.provider.clone();
        tokio::task::spawn_blocking(move || provider.force_flush()).await.unwrap().expect("log export acknowledged");
    }

    pub async fn shutdown(self) {
        let provider = self.provider.clone();
        tokio::task::spawn_blocking(move || provider.shutdown()).await.unwrap().expect("logger provider shutdown");
    }
}

/// Mark a span failed the way clients do: a `helix.error` event and ERROR status.
pub fn fail(span: &opentelemetry::trace::SpanRef<'_>, message: &str) {
    span.add_event("helix.error", vec![KeyValue::new("message", message.to_owned())]);
    span.set_status(Status::error(message.to_owned()));
}

pub fn hex(sc: &SpanContext) -> (String, String) {
    (sc.trace_id().to_string(), sc.span_id().to_string())
}

/// A raw OTLP/gRPC client: per-request control over what is sent and what was acknowledged.
pub async fn raw_client(herald: &Herald) -> TraceServiceClient<tonic::transport::Channel> {
    TraceServiceClient::connect(herald.grpc_url()).await.expect("connect to herald").max_decoding_message_size(64 << 20)
}

/// A downstream OTLP/gRPC receiver that records every request it gets (what Tempo, or the
/// collector in front of Loki, would see).
#[derive(Clone, Default)]
pub struct CaptureCollector {
    pub requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    pub log_requests: Arc<Mutex<Vec<opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest>>>,
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::LogsService for CaptureCollector {
    async fn export(
        &self,
        request: tonic::Request<opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest>,
    ) -> Result<
        tonic::Response<opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse>,
        tonic::Status,
    > {
        self.log_requests.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(Default::default()))
    }
}

#[tonic::async_trait]
impl TraceService for CaptureCollector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.requests.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl CaptureCollector {
    /// Serve on a free loopback port; returns the collector and its endpoint URL.
    pub async fn start() -> (CaptureCollector, String, tokio::task::JoinHandle<()>) {
        let collector = CaptureCollector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = TraceServiceServer::new(collector.clone()).max_decoding_message_size(256 << 20);
        let logs = opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::LogsServiceServer::new(
            collector.clone(),
        );
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .add_service(logs)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        (collector, format!("http://{addr}"), task)
    }

    /// The bodies of every log record received so far.
    pub fn log_bodies(&self) -> Vec<String> {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        self.log_requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.resource_logs.iter())
            .flat_map(|r| r.scope_logs.iter())
            .flat_map(|s| s.log_records.iter())
            .map(|l| match l.body.as_ref().and_then(|b| b.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<opentelemetry_proto::tonic::trace::v1::Span> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.resource_spans.iter())
            .flat_map(|r| r.scope_spans.iter())
            .flat_map(|s| s.spans.iter().cloned())
            .collect()
    }
}

/// Poll `check` until it returns Some or `timeout` passes (for asynchronous forwarding only;
/// ingest itself is synchronous with the acknowledgement).
pub async fn eventually<T>(timeout: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "condition not met within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
