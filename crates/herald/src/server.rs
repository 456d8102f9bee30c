//! Assembles a running herald from its parts and shuts it down in stages:
//! receivers first (in-flight exports finish), then the writer drains, then the forwarder.

use std::net::SocketAddr;
use std::sync::Arc;

use helix_store::{SqliteStore, Store, StoreError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};
use crate::config::{parse_db_url, ServeArgs, StoreLocation};
use crate::forward::Forwarder;
use crate::ingest::Ingest;
use crate::inspector;
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
    #[error("{what} server failed: {why}")]
    Serve { what: &'static str, why: String },
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

/// Open the store named by a DB_URL (migrations applied).
pub async fn open_store(db_url: &str) -> Result<Arc<dyn Store>, RunError> {
    match parse_db_url(db_url).map_err(RunError::Config)? {
        StoreLocation::Sqlite(path) => {
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path, Default::default()))
                .await
                .map_err(|e| RunError::Config(format!("store open task failed: {e}")))??;
            Ok(Arc::new(store))
        }
        StoreLocation::Postgres(url) => {
            let retention = helix_store::postgres::RetentionConfig::from_lookup(|k| std::env::var(k).ok())
                .map_err(|e| RunError::Config(format!("retention: {e}")))?;
            let opts = helix_store::PostgresOptions { retention: Some(retention), ..Default::default() };
            Ok(Arc::new(helix_store::PostgresStore::open(&url, opts).await?))
        }
    }
}

/// Run a herald on `listeners` until `shutdown` fires, then stop in stages.
pub async fn run(args: ServeArgs, listeners: Listeners, shutdown: CancellationToken) -> Result<(), RunError> {
    let store = open_store(&args.db_url).await?;
    let metrics = Arc::new(Metrics::new());

    let writer_stop = CancellationToken::new();
    let forward_stop = CancellationToken::new();
    let (writer, writer_task) = Writer::spawn(store.clone(), args.batch(), metrics.clone(), writer_stop.clone());
    let (forwarder, forward_task) = match args.forward() {
        Some(config) => {
            let endpoint = config.endpoint.clone();
            let (f, t) = Forwarder::spawn(config, metrics.clone(), forward_stop.clone()).map_err(RunError::Config)?;
            tracing::info!(endpoint, "forwarding spans");
            (Some(f), Some(t))
        }
        None => (None, None),
    };
    let ingest = Arc::new(Ingest {
        resolver: Resolver::new(args.trace_store_size, store.clone(), metrics.clone()),
        writer,
        forwarder,
        metrics: metrics.clone(),
    });

    announce(&listeners, &args.db_url);
    signal_ready(&listeners, args.ready_file.as_deref())?;
    let app = api::app(ApiState { store: store.clone(), metrics: metrics.clone() })
        .merge(
            inspector::router_with(inspector::InspectorConfig {
                grafana_url: args.grafana_url.clone().filter(|u| !u.trim().is_empty()),
                tempo_datasource: args.grafana_tempo_datasource.clone(),
            })
            .with_state(ApiState { store: store.clone(), metrics: metrics.clone() }),
        )
        .fallback(api::not_found);
    let grpc = tokio::spawn(receive::grpc::serve(listeners.grpc, ingest.clone(), args.receive(), shutdown.clone()));
    let http = tokio::spawn(receive::http::serve(listeners.http, ingest.clone(), args.receive(), shutdown.clone()));
    let api_task = tokio::spawn(serve_http(listeners.api, app.clone(), shutdown.clone()));
    let metrics_task = listeners.metrics.map(|l| {
        let only_metrics = axum::Router::new()
            .route("/metrics", axum::routing::get(crate::api::health::metrics))
            .with_state(ApiState { store: store.clone(), metrics: metrics.clone() });
        tokio::spawn(serve_http(l, only_metrics, shutdown.clone()))
    });

    // Stage 1: receivers stop accepting and finish in-flight exports (the writer still runs).
    let grpc_result = grpc.await;
    let http_result = http.await;
    let _ = api_task.await;
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    drop(ingest);
    // Stage 2: the writer commits what it holds.
    writer_stop.cancel();
    let _ = writer_task.await;
    // Stage 3: the forwarder flushes its buffer once.
    forward_stop.cancel();
    if let Some(t) = forward_task {
        let _ = t.await;
    }
    tracing::info!("herald stopped");

    match grpc_result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(RunError::Serve { what: "OTLP/gRPC", why: e.to_string() }),
        Err(e) => return Err(RunError::Serve { what: "OTLP/gRPC", why: e.to_string() }),
    }
    match http_result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(RunError::Serve { what: "OTLP/HTTP", why: e.to_string() }),
        Err(e) => Err(RunError::Serve { what: "OTLP/HTTP", why: e.to_string() }),
    }
}

async fn serve_http(listener: TcpListener, app: axum::Router, shutdown: CancellationToken) -> std::io::Result<()> {
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}

/// The one machine-readable start-up signal: a JSON line on stderr (and, when asked, the same
/// object in a file written atomically) once every listener is bound and the store is open.
/// Harnesses read this instead of parsing the human-readable lines.
fn signal_ready(listeners: &Listeners, ready_file: Option<&std::path::Path>) -> Result<(), RunError> {
    let addr = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).ok();
    let line = serde_json::json!({
        "event": "ready",
        "otlp_grpc": addr(&listeners.grpc),
        "otlp_http": addr(&listeners.http),
        "api": addr(&listeners.api),
        "metrics": listeners.metrics.as_ref().and_then(addr),
    })
    .to_string();
    if let Some(path) = ready_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{line}\n"))
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| RunError::Config(format!("cannot write the ready file {} (--ready-file): {e}", path.display())))?;
    }
    eprintln!("{line}");
    Ok(())
}

/// Tell the operator where everything is (for people; programs read the ready line).
fn announce(listeners: &Listeners, db_url: &str) {
    let show = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
    let ui = listeners.api.local_addr().map(|a| {
        if a.ip().is_unspecified() {
            format!("http://localhost:{}/", a.port())
        } else {
            format!("http://{a}/")
        }
    });
    println!("herald: otlp-grpc listening on {}", show(&listeners.grpc));
    println!("herald: otlp-http listening on {}", show(&listeners.http));
    println!("herald: api listening on {}", show(&listeners.api));
    if let Some(m) = &listeners.metrics {
        println!("herald: metrics listening on {}", show(m));
    }
    // A postgres:// URL may carry a password.
    println!("herald: store {}", helix_store::postgres::redact_url(db_url));
    if let Ok(ui) = ui {
        println!("herald: Entity Inspector and API at {ui} (try {ui}api/v1/instruments)");
    }
}
