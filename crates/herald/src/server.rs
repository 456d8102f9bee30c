//! Assembles a running herald from its parts and shuts it down in stages, each with a
//! deadline: receivers first (in-flight exports finish), then the writer drains, then the
//! forwarder flushes, then the store closes. Every task's end is reported.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use helix_store::{SqliteStore, Store, StoreError};
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};
use crate::auth::Auth;
use crate::config::{
    parse_db_url, LogRetention, ServeArgs, StoreLimits, StoreLocation, StoreRetention, DEFAULT_LOG_RETENTION,
};
use crate::forward::Forwarder;
use crate::ingest::Ingest;
use crate::inspector;
use crate::instruments::Instruments;
use crate::metrics::Metrics;
use crate::receive;
use crate::resolve::Resolver;
use crate::write::Writer;

/// Why the herald could not start or stopped abnormally; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr} for {what} ({flag}): {source}")]
    Bind { what: &'static str, flag: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("the {task} task failed: {why}")]
    Task { task: &'static str, why: String },
}

/// The four listeners, bound by the caller (tests bind port 0).
pub struct Listeners {
    pub grpc: TcpListener,
    pub http: TcpListener,
    pub api: TcpListener,
    /// `None` when metrics are only served on the API listener.
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Bind every address of `args`, naming the flag of any that fails.
    pub async fn bind(args: &ServeArgs) -> Result<Listeners, RunError> {
        async fn one(addr: SocketAddr, what: &'static str, flag: &'static str) -> Result<TcpListener, RunError> {
            TcpListener::bind(addr).await.map_err(|source| RunError::Bind { what, flag, addr, source })
        }
        Ok(Listeners {
            grpc: one(args.grpc_addr, "OTLP/gRPC", "--otlp-grpc-addr / HERALD_ADDR").await?,
            http: one(args.http_addr, "OTLP/HTTP", "--otlp-http-addr / OTLP_HTTP_ADDR").await?,
            api: one(args.api_addr, "the API", "--api-addr / API_ADDR").await?,
            metrics: Some(one(args.metrics_addr, "metrics", "--metrics-addr / METRICS_ADDR").await?),
        })
    }
}

/// What a DB_URL is opened for.
enum Purpose {
    Serve(StoreRetention, StoreLimits),
    Migrate,
}

enum Opened {
    Serving(Arc<dyn Store>),
    Migrated(Vec<u32>),
}

/// The one place a DB_URL becomes a backend (serving and `herald migrate` both come here).
async fn open_location(db_url: &str, purpose: Purpose) -> Result<Opened, RunError> {
    let blocking_failed = |e: tokio::task::JoinError| RunError::Config(format!("store open task failed: {e}"));
    match parse_db_url(db_url).map_err(RunError::Config)? {
        StoreLocation::Sqlite(path) => match purpose {
            Purpose::Serve(retention, limits) => {
                let log_retention = match retention.logs {
                    LogRetention::Default => Some(DEFAULT_LOG_RETENTION),
                    LogRetention::Keep => None,
                    LogRetention::Age(age) => Some(age),
                };
                let opts = helix_store::SqliteOptions {
                    span_retention: retention.spans,
                    log_retention,
                    read_connections: limits.connections,
                    query_timeout: limits.query_timeout,
                    span_directory_bytes: limits.span_directory_bytes,
                    ..Default::default()
                };
                let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path, opts))
                    .await
                    .map_err(blocking_failed)??;
                Ok(Opened::Serving(Arc::new(store)))
            }
            Purpose::Migrate => Ok(Opened::Migrated(
                tokio::task::spawn_blocking(move || helix_store::sqlite::migrate(&path))
                    .await
                    .map_err(blocking_failed)??,
            )),
        },
        StoreLocation::Postgres(url) => match purpose {
            Purpose::Serve(retention, limits) => {
                let lookup = |k: &str| std::env::var(k).ok();
                let mut tables = helix_store::postgres::RetentionConfig::from_lookup(lookup)
                    .map_err(|e| RunError::Config(format!("retention: {e}")))?;
                match retention.logs {
                    LogRetention::Default if lookup("HELIX_RETENTION_LOGS_DAYS").is_some() => {}
                    LogRetention::Default => tables.logs = Some(DEFAULT_LOG_RETENTION),
                    LogRetention::Keep => tables.logs = None,
                    LogRetention::Age(age) => tables.logs = Some(age),
                }
                let opts = helix_store::PostgresOptions {
                    retention: Some(tables),
                    span_retention: retention.spans,
                    pool_size: limits.connections,
                    query_timeout: limits.query_timeout,
                    ..Default::default()
                };
                Ok(Opened::Serving(Arc::new(helix_store::PostgresStore::open(&url, opts).await?)))
            }
            Purpose::Migrate => Ok(Opened::Migrated(helix_store::postgres::migrate(&url, None).await?)),
        },
    }
}

/// Open the store named by a DB_URL (migrations applied).
pub async fn open_store(
    db_url: &str,
    retention: StoreRetention,
    limits: StoreLimits,
) -> Result<Arc<dyn Store>, RunError> {
    match open_location(db_url, Purpose::Serve(retention, limits)).await? {
        Opened::Serving(store) => Ok(store),
        Opened::Migrated(_) => unreachable!("opened to serve"),
    }
}

/// Apply pending migrations to the store named by a DB_URL; the versions applied.
pub async fn migrate_store(db_url: &str) -> Result<Vec<u32>, RunError> {
    match open_location(db_url, Purpose::Migrate).await? {
        Opened::Migrated(applied) => Ok(applied),
        Opened::Serving(_) => unreachable!("opened to migrate"),
    }
}

/// Run a herald on `listeners` until `shutdown` fires (or a receiver fails), then stop in
/// stages, each bounded by `--shutdown-timeout`. Returns once every task has ended or been
/// aborted; the error names the first task that failed.
pub async fn run(args: ServeArgs, listeners: Listeners, shutdown: CancellationToken) -> Result<(), RunError> {
    // Loaded first: a certificate that does not load stops the start before the store is touched.
    let tls = match args.tls() {
        Some(files) => Some(
            tokio::task::spawn_blocking(move || crate::tls::Certificates::load(files))
                .await
                .map_err(|e| RunError::Config(format!("loading the TLS certificate failed: {e}")))?
                .map_err(RunError::Config)?,
        ),
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    // Every component reads and writes through the metered store (the `helix_db_*` metrics).
    let store = crate::metered::MeteredStore::wrap(
        open_store(args.db_url(), args.retention(), args.store_limits()).await?,
        metrics.clone(),
    );
    let deadline = args.shutdown_timeout;

    // Receivers stop on `stop`: the caller's signal, or one of them failing.
    let stop = shutdown.child_token();
    let writer_stop = CancellationToken::new();
    let forward_stop = CancellationToken::new();
    check_file_limit(&args);
    let auth = start_auth(&args, &metrics).await?;
    let notify_source: crate::write::NotifySource = {
        let instruments = auth.instruments().clone();
        let outbox_max = args.notify.notify_outbox_max;
        metrics.notify.outbox_limit.set(i64::try_from(outbox_max).unwrap_or(i64::MAX));
        Arc::new(move || instruments.snapshot().notify_set().with_outbox_max(outbox_max))
    };
    let (writer, writer_task) =
        Writer::spawn_notifying(store.clone(), args.batch(), metrics.clone(), writer_stop.clone(), notify_source);
    let (forwarder, forward_task) = match args.forward() {
        Some(config) => {
            let endpoint = helix_store::redact_url(&config.endpoint);
            let (f, t) = Forwarder::spawn(config, metrics.clone(), forward_stop.clone()).map_err(RunError::Config)?;
            tracing::info!(endpoint, "forwarding spans");
            metrics.forward_configured.set(1);
            (Some(f), Some(t))
        }
        None => (None, None),
    };
    let (lineage, lineage_task) = match &args.openlineage_url {
        Some(url) => {
            let (e, t) = crate::emit::Emitter::spawn(
                url,
                args.prov_namespace.as_str().into(),
                store.clone(),
                forward_stop.clone(),
            )
            .map_err(RunError::Config)?;
            tracing::info!(url = %helix_store::redact_url(url), "emitting OpenLineage run events");
            (Some(e), Some(t))
        }
        None => (None, None),
    };
    warn_plaintext(&listeners, auth.is_on(), tls.is_some());
    let hangup = crate::instruments::Hangup::install();
    // Before the ready signal, so that no SIGHUP after it is missed.
    let tls_hangup = tls.as_ref().map(|_| crate::instruments::Hangup::install());
    let notify_stop = CancellationToken::new();
    let notify_task = {
        let grafana = args.grafana_url.as_deref().and_then(inspector::grafana_link_base);
        let config = args.notify.config(grafana.as_deref());
        let dispatcher =
            crate::notify::Dispatcher::new(store.clone(), auth.instruments().clone(), metrics.clone(), config)
                .map_err(RunError::Config)?;
        tokio::spawn(Arc::new(dispatcher).run(notify_stop.clone()))
    };
    let ingest = Arc::new(Ingest {
        resolver: Resolver::new(args.trace_store_size, store.clone(), metrics.clone()),
        writer,
        forwarder,
        metrics: metrics.clone(),
        store_spans: args.store_spans,
        lineage,
        auth: auth.clone(),
        budget: receive::InflightBudget::new(args.receive().max_inflight_bytes, metrics.clone()),
        limits: args.shape_limits(),
    });

    let (platform, platform_task) = match args.platform_check() {
        Some(config) => {
            let status = crate::canary::PlatformStatus::every(config.interval);
            tracing::info!(
                interval_secs = config.interval.as_secs(),
                tempo = config.tempo.is_some(),
                loki = config.loki.is_some(),
                "platform check on"
            );
            let run = crate::canary::run(config, ingest.clone(), store.clone(), status.clone(), stop.clone());
            (
                status,
                Some(Task::spawn("platform-check", async move {
                    run.await;
                    Ok::<(), String>(())
                })),
            )
        }
        None => (crate::canary::PlatformStatus::disabled(), None),
    };
    announce(&listeners, args.db_url(), tls.is_some());
    signal_ready(&listeners, args.ready_file.as_deref(), tls.is_some())?;
    let state = ApiState {
        store: store.clone(),
        metrics: metrics.clone(),
        spans_stored: args.store_spans,
        loki_scan_lines: args.loki_scan_lines.max(1),
        prov_namespace: args.prov_namespace.as_str().into(),
        auth: auth.clone(),
        platform,
    };
    let app = api::app_limited(state.clone(), args.read_limits())
        .merge(
            inspector::router_with(inspector::InspectorConfig {
                grafana_url: args.grafana_url.as_deref().and_then(inspector::grafana_link_base),
                tempo_datasource: args.grafana_tempo_datasource.clone(),
                auth: auth.is_on(),
            })
            .with_state(state.clone()),
        )
        .fallback(api::not_found)
        // With auth on, every route of the listener but the open ones needs a token.
        .layer(axum::middleware::from_fn_with_state(auth.clone(), crate::auth::session::require_token))
        // Outermost, so refused requests are counted too.
        .layer(axum::middleware::from_fn_with_state(
            api::handler_metrics::HandlerMetrics::new(metrics.clone()),
            api::handler_metrics::record,
        ));
    let tls_for = |name, alpn| tls.as_ref().map(|certs| certs.listener(name, alpn));
    let mut receivers = vec![
        receiver(
            "otlp-grpc",
            &stop,
            receive::grpc::serve(
                listeners.grpc,
                ingest.clone(),
                args.receive(),
                args.connections(),
                tls_for("otlp-grpc", crate::tls::Alpn::Grpc),
                stop.clone(),
            ),
        ),
        receiver(
            "otlp-http",
            &stop,
            receive::http::serve(
                listeners.http,
                ingest.clone(),
                args.receive(),
                args.connections(),
                tls_for("otlp-http", crate::tls::Alpn::Http1),
                stop.clone(),
            ),
        ),
        receiver(
            "api",
            &stop,
            crate::connections::serve(
                listeners.api,
                app,
                "api",
                args.connections(),
                tls_for("api", crate::tls::Alpn::Http1),
                stop.clone(),
            ),
        ),
        Task::spawn("instruments", {
            let (instruments, stop, every) = (auth.instruments().clone(), stop.clone(), args.instruments_reload);
            async move {
                instruments.watch(every, hangup, stop).await;
                Ok::<(), String>(())
            }
        }),
    ];
    // It sends through ingest, so it stops with the receivers.
    receivers.extend(platform_task);
    if let (Some(certs), Some(hangup)) = (tls.clone(), tls_hangup) {
        let stop = stop.clone();
        receivers.push(Task::spawn("tls-reload", async move {
            certs.watch(hangup, stop).await;
            Ok::<(), String>(())
        }));
    }
    if let Some(l) = listeners.metrics {
        let only_metrics =
            axum::Router::new().route("/metrics", axum::routing::get(api::health::metrics)).with_state(state.clone());
        receivers.push(receiver(
            "metrics",
            &stop,
            crate::connections::serve(l, only_metrics, "metrics", args.connections(), None, stop.clone()),
        ));
    }
    // From here only the tasks and `store` (released last) hold store handles.
    drop((ingest, state, auth));

    stop.cancelled().await;
    let mut reports = Vec::new();
    // Stage 1: receivers stop accepting and finish in-flight exports while the writer still
    // runs, so every export that can still be acknowledged is committed first.
    tracing::info!(deadline = ?deadline, "shutting down: receivers finish in-flight exports");
    reports.extend(stage(receivers, deadline).await);
    // Stage 2: the writer commits what it holds. An export is acknowledged only once the
    // writer has reported its commit, so aborting the writer here (deadline missed) leaves
    // the exports it still held unacknowledged ("retry later" or a reset connection, which
    // OTLP clients resend); nothing acknowledged is lost.
    writer_stop.cancel();
    reports.extend(stage(vec![Task::joined("writer", writer_task)], deadline).await);
    // Stage 3: the forwarder tries each buffered request once; an unresponsive downstream
    // costs at most the deadline.
    forward_stop.cancel();
    if let Some(t) = forward_task {
        reports.extend(stage(vec![Task::joined("forwarder", t)], deadline).await);
    }
    // OpenLineage emission stops with the forwarder: events not yet delivered are not sent
    // (the entities are stored; /openlineage gives their events).
    if let Some(t) = lineage_task {
        reports.extend(stage(vec![Task::joined("openlineage", t)], deadline).await);
    }
    // Notifications not delivered yet stay in the outbox for the next start (or a replica).
    notify_stop.cancel();
    reports.extend(stage(vec![Task::joined("notifications", notify_task)], deadline).await);
    // Stage 4: release the store (SQLite may checkpoint, PostgreSQL closes its pool) off the
    // async threads. Handles still held by connections aborted above go when the process exits.
    let closing = tokio::task::spawn_blocking(move || drop(store));
    reports.extend(stage(vec![Task::joined("store", closing)], deadline).await);

    let failed = reports.iter().filter(|r| r.outcome == Outcome::Failed).count();
    let timed_out = reports.iter().filter(|r| r.outcome == Outcome::TimedOut).count();
    tracing::info!(tasks = reports.len(), failed, timed_out, "herald stopped");
    match reports.into_iter().find(|r| r.outcome == Outcome::Failed) {
        Some(r) => Err(RunError::Task { task: r.name, why: r.error.unwrap_or_default() }),
        None => Ok(()),
    }
}

/// How a task ended during shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
    /// Still running at its stage's deadline: aborted.
    TimedOut,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed-out",
        }
    }
}

/// One task's end, logged as one event by `stage`.
#[derive(Debug)]
pub struct TaskReport {
    pub name: &'static str,
    pub outcome: Outcome,
    /// From the start of the task's stage to its end (or its abort).
    pub duration: Duration,
    pub error: Option<String>,
}

/// A named task of the herald. The wrapper records when the work ended, so a stage that
/// awaits its tasks one after the other still reports each one's own duration.
struct Task {
    name: &'static str,
    handle: JoinHandle<(Result<(), String>, Instant)>,
    /// The task doing the work, when it was spawned by someone else (aborted with the wrapper).
    inner: Option<AbortHandle>,
}

impl Task {
    fn spawn<E: std::fmt::Display>(
        name: &'static str,
        work: impl Future<Output = Result<(), E>> + Send + 'static,
    ) -> Task {
        let handle = tokio::spawn(async move {
            let result = work.await.map_err(|e| e.to_string());
            (result, Instant::now())
        });
        Task { name, handle, inner: None }
    }

    /// Watch a task spawned elsewhere (its panic is this task's failure).
    fn joined(name: &'static str, task: JoinHandle<()>) -> Task {
        let inner = task.abort_handle();
        Task { inner: Some(inner), ..Task::spawn(name, task) }
    }

    fn abort(&self) {
        self.handle.abort();
        if let Some(inner) = &self.inner {
            inner.abort();
        }
    }
}

/// A receiver: when it ends before it was asked to stop, it stops the whole herald (a
/// herald that silently lost its gRPC port would look healthy).
fn receiver<E: std::fmt::Display>(
    name: &'static str,
    stop: &CancellationToken,
    serve: impl Future<Output = Result<(), E>> + Send + 'static,
) -> Task {
    let stop = stop.clone();
    Task::spawn(name, async move {
        let result = serve.await;
        if !stop.is_cancelled() {
            tracing::error!(task = name, "receiver stopped on its own; shutting the herald down");
            stop.cancel();
        }
        result
    })
}

/// Wait for a stage's tasks until `deadline` from now, abort the ones still running, and
/// log one event per task: name, outcome (ok, failed, timed-out) and duration.
async fn stage(tasks: Vec<Task>, deadline: Duration) -> Vec<TaskReport> {
    let started = Instant::now();
    let mut reports = Vec::with_capacity(tasks.len());
    for mut task in tasks {
        let (outcome, ended, error) = match tokio::time::timeout_at(started + deadline, &mut task.handle).await {
            Ok(Ok((Ok(()), ended))) => (Outcome::Ok, ended, None),
            Ok(Ok((Err(e), ended))) => (Outcome::Failed, ended, Some(e)),
            Ok(Err(join)) => (Outcome::Failed, Instant::now(), Some(join.to_string())),
            Err(_) => {
                task.abort();
                (Outcome::TimedOut, Instant::now(), None)
            }
        };
        let report = TaskReport { name: task.name, outcome, duration: ended.saturating_duration_since(started), error };
        let duration_ms = report.duration.as_millis() as u64;
        match report.outcome {
            Outcome::Ok => tracing::info!(task = report.name, outcome = "ok", duration_ms, "task stopped"),
            Outcome::Failed => tracing::error!(
                task = report.name,
                outcome = "failed",
                duration_ms,
                error = report.error.as_deref().unwrap_or(""),
                "task failed"
            ),
            Outcome::TimedOut => tracing::warn!(
                task = report.name,
                outcome = "timed-out",
                duration_ms,
                "task missed its shutdown deadline (--shutdown-timeout); aborted"
            ),
        }
        reports.push(report);
    }
    reports
}

/// Load the instrument files and set up auth, saying at start-up whether auth is on and what
/// an operator may have to fix (never showing a key).
async fn start_auth(args: &ServeArgs, metrics: &Arc<Metrics>) -> Result<Arc<Auth>, RunError> {
    let config = args.auth();
    let dir = args.instruments_dir.clone();
    let metrics_for_load = metrics.clone();
    let instruments = tokio::task::spawn_blocking(move || Instruments::load(dir, metrics_for_load))
        .await
        .map_err(|e| RunError::Config(format!("loading the instrument files failed: {e}")))?;
    let loaded = instruments.snapshot().len();
    let dir = args.instruments_dir.display().to_string();
    match &config.keys {
        None => tracing::warn!(
            "auth is off: JWT_SECRET is not set, so anyone who can reach this herald can send and read \
             every instrument's data. Set JWT_SECRET to one or more comma-separated keys \
             (e.g. `openssl rand -hex 32`) to require tokens; see docs/operations.md"
        ),
        Some(keys) => {
            tracing::info!(keys = keys.len(), instruments = loaded, instruments_dir = %dir,
                "auth is on: exports and reads need a token");
            for position in keys.short_keys() {
                tracing::warn!(
                    key = position,
                    min_bytes = crate::auth::keys::MIN_KEY_BYTES,
                    "JWT_SECRET key is short; use at least 32 random bytes (openssl rand -hex 32)"
                );
            }
            if loaded == 0 {
                tracing::warn!(instruments_dir = %dir,
                    "auth is on but no instrument file is loaded: no instrument can get a token at POST /auth/token");
            }
        }
    }
    Ok(Arc::new(Auth::new(config, Arc::new(instruments), metrics.clone())))
}

/// The listeners that serve plain text beyond this host.
fn exposed(addrs: &[(&'static str, Option<SocketAddr>)]) -> Vec<String> {
    addrs
        .iter()
        .filter_map(|(what, addr)| addr.filter(|a| !a.ip().is_loopback()).map(|a| format!("{what} on {a}")))
        .collect()
}

/// With auth on and no TLS, tokens and credentials cross every non-loopback listener in clear:
/// say so once at start-up (docs/security.md "Transport").
fn warn_plaintext(listeners: &Listeners, auth_on: bool, tls_on: bool) {
    if tls_on {
        return;
    }
    let addr = |l: &TcpListener| l.local_addr().ok();
    let exposed = exposed(&[
        ("OTLP/gRPC", addr(&listeners.grpc)),
        ("OTLP/HTTP", addr(&listeners.http)),
        ("the API", addr(&listeners.api)),
    ]);
    if auth_on && !exposed.is_empty() {
        tracing::warn!(listeners = %exposed.join(", "),
            "auth is on but these listeners serve plain text beyond this host: tokens and credentials cross the \
             network in clear; give --tls-cert and --tls-key, or bind them to 127.0.0.1 behind a TLS-terminating \
             proxy (docs/security.md)");
    }
}

/// Raise the open-files limit and warn when the connection caps could still exceed it (then
/// the file limit, not the cap, refuses connections, and the health reserve cannot help).
fn check_file_limit(args: &ServeArgs) {
    let files = crate::connections::raise_file_limit();
    let listeners = 4u64;
    let needed = listeners * (args.connections().max_connections + crate::connections::HEALTH_RESERVE) as u64 + 256;
    if files < needed {
        tracing::warn!(open_files_limit = files, needed, max_connections = args.max_connections,
            "the open-files limit is below what the connection caps allow; lower --max-connections or raise `ulimit -n`");
    }
}

/// The one machine-readable start-up signal: a JSON line on stderr (and, when asked, the same
/// object in a file written atomically) once every listener is bound and the store is open.
/// Harnesses read this instead of parsing the human-readable lines.
fn signal_ready(listeners: &Listeners, ready_file: Option<&std::path::Path>, tls: bool) -> Result<(), RunError> {
    let addr = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).ok();
    let line = serde_json::json!({
        "event": "ready",
        "otlp_grpc": addr(&listeners.grpc),
        "otlp_http": addr(&listeners.http),
        "api": addr(&listeners.api),
        "metrics": listeners.metrics.as_ref().and_then(addr),
        // The OTLP and API listeners speak TLS only.
        "tls": tls,
    })
    .to_string();
    if let Some(path) = ready_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{line}\n")).and_then(|()| std::fs::rename(&tmp, path)).map_err(|e| {
            RunError::Config(format!("cannot write the ready file {} (--ready-file): {e}", path.display()))
        })?;
    }
    eprintln!("{line}");
    Ok(())
}

/// Tell the operator where everything is (for people; programs read the ready line).
fn announce(listeners: &Listeners, db_url: &str, tls: bool) {
    let show = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
    let scheme = if tls { "https" } else { "http" };
    let ui = listeners.api.local_addr().map(|a| {
        if a.ip().is_unspecified() {
            format!("{scheme}://localhost:{}/", a.port())
        } else {
            format!("{scheme}://{a}/")
        }
    });
    let with_tls = if tls { " (TLS)" } else { "" };
    println!("herald: otlp-grpc listening on {}{with_tls}", show(&listeners.grpc));
    println!("herald: otlp-http listening on {}{with_tls}", show(&listeners.http));
    println!("herald: api listening on {}{with_tls}", show(&listeners.api));
    if let Some(m) = &listeners.metrics {
        println!("herald: metrics listening on {}", show(m));
    }
    // A postgres:// URL may carry a password.
    println!("herald: store {}", helix_store::redact_url(db_url));
    if let Ok(ui) = ui {
        println!("herald: Entity Inspector and API at {ui} (try {ui}api/v1/instruments)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stage_reports_each_task_and_aborts_the_ones_past_the_deadline() {
        let deadline = Duration::from_secs(5);
        // Spawned elsewhere and never ending (a forwarder stuck on its downstream).
        let stuck = tokio::spawn(std::future::pending::<()>());
        let stuck_probe = stuck.abort_handle();
        let tasks = vec![
            Task::spawn("quick", async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<(), String>(())
            }),
            Task::spawn("broken", async { Err::<(), _>("listener closed") }),
            Task::joined("stuck", stuck),
            Task::joined("panicked", tokio::spawn(async { panic!("bug") })),
        ];
        let started = Instant::now();
        let reports = stage(tasks, deadline).await;
        assert_eq!(started.elapsed(), deadline, "the stage ends at its deadline (virtual time)");
        let got: Vec<(&str, Outcome, Duration)> = reports.iter().map(|r| (r.name, r.outcome, r.duration)).collect();
        assert_eq!(
            got,
            vec![
                ("quick", Outcome::Ok, Duration::from_secs(1)),
                ("broken", Outcome::Failed, Duration::ZERO),
                ("stuck", Outcome::TimedOut, deadline),
                // Awaited after the deadline, but it had ended (panicked) at once.
                ("panicked", Outcome::Failed, Duration::ZERO),
            ]
        );
        assert_eq!(reports[1].error.as_deref(), Some("listener closed"));
        assert!(reports[3].error.as_deref().unwrap_or("").contains("panic"), "{:?}", reports[3].error);
        tokio::task::yield_now().await;
        assert!(stuck_probe.is_finished(), "the task doing the work was aborted, not only its watcher");
    }

    #[test]
    fn only_listeners_beyond_loopback_are_exposed() {
        let on = |a: &str| Some(a.parse::<SocketAddr>().unwrap());
        let exposed = exposed(&[
            ("OTLP/gRPC", on("0.0.0.0:4317")),
            ("OTLP/HTTP", on("127.0.0.1:4318")),
            ("the API", on("10.1.2.3:8080")),
            ("metrics", None),
        ]);
        assert_eq!(exposed, ["OTLP/gRPC on 0.0.0.0:4317", "the API on 10.1.2.3:8080"]);
        assert!(super::exposed(&[("the API", on("[::1]:8080"))]).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_receiver_that_stops_on_its_own_stops_the_herald() {
        let stop = CancellationToken::new();
        let failed = receiver("otlp-grpc", &stop, async { Err::<(), _>("accept failed") });
        let fine = receiver("api", &stop, {
            let stop = stop.clone();
            async move {
                stop.cancelled().await;
                Ok::<(), String>(())
            }
        });
        stop.cancelled().await;
        let reports = stage(vec![failed, fine], Duration::from_secs(1)).await;
        assert_eq!(reports.iter().map(|r| r.outcome).collect::<Vec<_>>(), [Outcome::Failed, Outcome::Ok]);
    }
}
