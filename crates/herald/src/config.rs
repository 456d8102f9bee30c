//! Configuration: one clap struct (each flag with its compatible env var) turned into the
//! small plain configs the rest of the herald uses, which never import clap.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    about = "helixobs herald: receives OTLP traces and logs from instrument pipelines, resolves \
             data provenance across processes and hosts, stores it, and serves the Entity \
             Inspector and JSON API.",
    after_help = ADDRESS_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The footer of `herald --help`, `herald serve --help` and `herald demo --help` (they share the options).
pub const ADDRESS_HELP: &str =
    "Addresses accept HOST:PORT, :PORT (all interfaces) or PORT. Every option can also be set \
                                by the environment variable shown.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Receive, store and serve (the default when no subcommand is given).
    #[command(after_help = ADDRESS_HELP)]
    Serve(ServeArgs),
    /// Apply pending schema migrations to the store, then exit.
    Migrate {
        /// Store location: sqlite://PATH (or a plain path) or postgres://….
        #[arg(long, env = "DB_URL", default_value = DEFAULT_DB_URL)]
        db_url: String,
    },
    /// Serve and feed a simulated telescope, to have something to look at. The store is a
    /// temporary one, deleted on exit, unless --db-url / DB_URL names one: that store keeps the data.
    #[command(after_help = ADDRESS_HELP)]
    Demo {
        #[command(flatten)]
        serve: ServeArgs,
        /// Simulated entity spans per second.
        #[arg(long, default_value_t = 50)]
        rate: u32,
        /// Stop after this long (e.g. 10m); runs until Ctrl-C when absent.
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
    },
    /// Check the instrument files of INSTRUMENTS_DIR (and JWT_SECRET, if set) and report every
    /// error; exits non-zero when there is one.
    CheckConfig {
        #[arg(long = "instruments-dir", env = "INSTRUMENTS_DIR", default_value = DEFAULT_INSTRUMENTS_DIR)]
        instruments_dir: PathBuf,
        #[arg(long = "jwt-secret", env = "JWT_SECRET", hide_env_values = true, hide_default_value = true)]
        jwt_secret: Option<String>,
    },
    /// Tokens for people and dashboards.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a read-only token (it reads the API, the Tempo API and the Inspector, and cannot
    /// write), signed with the first key of JWT_SECRET. Instruments get theirs from POST /auth/token.
    Issue {
        /// Issue a read-only token (the only kind issued here).
        #[arg(long, required = true)]
        read: bool,
        /// Who the token is for (its subject), e.g. grafana or alice.
        #[arg(long)]
        name: String,
        /// How long the token is valid, e.g. 30d or 12h.
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        ttl: Duration,
        #[arg(long = "jwt-secret", env = "JWT_SECRET", hide_env_values = true)]
        jwt_secret: Option<String>,
    },
}

/// Where the older herald read instrument files from, kept as the default.
pub const DEFAULT_INSTRUMENTS_DIR: &str = "/instruments";

pub const DEFAULT_DB_URL: &str = "sqlite://./helix-data/herald.db";

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub notify: NotifyArgs,
    /// OTLP/gRPC listen address (traces and logs).
    #[arg(long = "otlp-grpc-addr", env = "HERALD_ADDR", default_value = ":4317", value_parser = parse_addr)]
    pub grpc_addr: SocketAddr,
    /// OTLP/HTTP listen address (/v1/traces, /v1/logs).
    #[arg(long = "otlp-http-addr", env = "OTLP_HTTP_ADDR", default_value = ":4318", value_parser = parse_addr)]
    pub http_addr: SocketAddr,
    /// JSON API, Entity Inspector, /healthz, /readyz and /metrics.
    #[arg(long = "api-addr", env = "API_ADDR", default_value = ":8080", value_parser = parse_addr)]
    pub api_addr: SocketAddr,
    /// Prometheus metrics (also served on the API address).
    #[arg(long = "metrics-addr", env = "METRICS_ADDR", default_value = ":2112", value_parser = parse_addr)]
    pub metrics_addr: SocketAddr,
    /// Store: sqlite://PATH (embedded) or postgres://USER:PASSWORD@HOST:PORT/DB. Default:
    /// sqlite://./helix-data/herald.db; for `demo`, a temporary store deleted on exit.
    #[arg(long = "db-url", env = "DB_URL")]
    pub db_url: Option<String>,
    /// Forward every received span (with resolved links) and log record to this OTLP/gRPC endpoint, e.g. http://collector:4317.
    #[arg(long = "collector-endpoint", env = "COLLECTOR_ENDPOINT")]
    pub collector_endpoint: Option<String>,
    /// Entities whose creation span is kept in memory for parent resolution (older ones are looked up in the store).
    #[arg(long, env = "HELIX_TRACE_STORE_SIZE", default_value_t = 100_000)]
    pub trace_store_size: usize,
    /// Largest accepted OTLP request, in bytes (after decompression).
    #[arg(long, env = "HELIX_MAX_REQUEST_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Estimated memory of the OTLP exports being received and processed at once (decoded
    /// form, records and stored copies, counted before decoding); an export that does not fit
    /// now is answered "retry later", one that never fits is refused as too large.
    #[arg(long = "max-inflight-bytes", env = "HELIX_MAX_INFLIGHT_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_inflight_bytes: usize,
    /// Most attributes on one span, span event, span link or log record (also the most
    /// entries of one map value); a span over it is rejected (OTLP partial success).
    #[arg(long = "max-span-attributes", env = "HELIX_MAX_SPAN_ATTRIBUTES", default_value_t = helix_model::shape::ShapeLimits::DEFAULT.attributes)]
    pub max_span_attributes: usize,
    /// Most events on one span.
    #[arg(long = "max-span-events", env = "HELIX_MAX_SPAN_EVENTS", default_value_t = helix_model::shape::ShapeLimits::DEFAULT.events)]
    pub max_span_events: usize,
    /// Most links on one span.
    #[arg(long = "max-span-links", env = "HELIX_MAX_SPAN_LINKS", default_value_t = helix_model::shape::ShapeLimits::DEFAULT.links)]
    pub max_span_links: usize,
    /// Longest string or bytes value (attribute values, span and event names, log bodies).
    #[arg(long = "max-value-bytes", env = "HELIX_MAX_VALUE_BYTES", default_value_t = helix_model::shape::ShapeLimits::DEFAULT.value_bytes)]
    pub max_value_bytes: usize,
    /// Most bytes of attribute keys and values on one span with its events (an entity's
    /// metadata) or one log record.
    #[arg(long = "max-metadata-bytes", env = "HELIX_MAX_METADATA_BYTES", default_value_t = helix_model::shape::ShapeLimits::DEFAULT.metadata_bytes)]
    pub max_metadata_bytes: usize,
    /// Open connections each listener serves (OTLP/gRPC, OTLP/HTTP, API, metrics); beyond it a
    /// few more still get /healthz and /readyz, the rest are closed.
    #[arg(long = "max-connections", env = "HELIX_MAX_CONNECTIONS", default_value_t = crate::connections::ConnectionLimits::DEFAULT.max_connections)]
    pub max_connections: usize,
    /// An HTTP connection that sends no complete request head within this time (new, idle
    /// between requests, or sending its headers slowly) is closed.
    #[arg(long = "http-idle-timeout", env = "HELIX_HTTP_IDLE_TIMEOUT", default_value = "60s",
          value_parser = humantime::parse_duration)]
    pub http_idle_timeout: Duration,
    /// Longest time to receive one HTTP request body.
    #[arg(long = "http-body-timeout", env = "HELIX_HTTP_BODY_TIMEOUT", default_value = "60s",
          value_parser = humantime::parse_duration)]
    pub http_body_timeout: Duration,
    /// Database connections: SQLite read connections (the writer has its own), or the
    /// PostgreSQL pool. Queries beyond it wait for one, within --query-timeout.
    #[arg(long = "db-connections", env = "HELIX_DB_CONNECTIONS", default_value_t = 8)]
    pub db_connections: usize,
    /// Longest one API read may take on SQLite, waiting for a connection included, and one
    /// statement of a read on PostgreSQL (the sessions' statement_timeout); past it the query
    /// is stopped and answered 503.
    #[arg(long = "query-timeout", env = "HELIX_QUERY_TIMEOUT", default_value = "30s",
          value_parser = humantime::parse_duration)]
    pub query_timeout: Duration,
    /// Lineage and impact requests served at once; more are answered 503 + Retry-After.
    #[arg(long = "max-lineage-requests", env = "HELIX_MAX_LINEAGE_REQUESTS", default_value_t = crate::api::classes::ReadLimits::DEFAULT.lineage)]
    pub max_lineage_requests: usize,
    /// Graph requests (`/entity/{id}/graph`) served at once.
    #[arg(long = "max-graph-requests", env = "HELIX_MAX_GRAPH_REQUESTS", default_value_t = crate::api::classes::ReadLimits::DEFAULT.graph)]
    pub max_graph_requests: usize,
    /// Search requests (entities, traces, traces by ID, logs, events, the Tempo and Loki APIs) served at once.
    #[arg(long = "max-search-requests", env = "HELIX_MAX_SEARCH_REQUESTS", default_value_t = crate::api::classes::ReadLimits::DEFAULT.search)]
    pub max_search_requests: usize,
    /// Monitor and stage-histogram requests served at once.
    #[arg(long = "max-monitor-requests", env = "HELIX_MAX_MONITOR_REQUESTS", default_value_t = crate::api::classes::ReadLimits::DEFAULT.monitor)]
    pub max_monitor_requests: usize,
    /// PROV and OpenLineage export requests served at once.
    #[arg(long = "max-export-requests", env = "HELIX_MAX_EXPORT_REQUESTS", default_value_t = crate::api::classes::ReadLimits::DEFAULT.exports)]
    pub max_export_requests: usize,
    /// Records waiting for the writer before new exports are answered "retry later".
    #[arg(long, env = "HELIX_WRITE_QUEUE_RECORDS", default_value_t = 200_000)]
    pub write_queue_records: usize,
    /// Most records committed in one transaction. Only a backlog reaches it: under full
    /// ingest a larger batch pays the commit's fixed cost (its fsync, the index pages every
    /// commit rewrites) for more records (docs/benchmarks.md).
    #[arg(long, env = "HELIX_BATCH_MAX_RECORDS", default_value_t = 50_000)]
    pub batch_max_records: usize,
    /// Requests buffered for the forwarder; when full, forwarding drops (counted) rather than slowing ingest.
    #[arg(long, env = "HELIX_FORWARD_BUFFER", default_value_t = 4_096)]
    pub forward_buffer: usize,
    /// Log format of the herald's own logs: text or json.
    #[arg(long, env = "HELIX_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Grafana base URL (e.g. http://grafana:3000): entity pages of the inspector link their traces there.
    #[arg(long = "grafana-url", env = "GRAFANA_URL")]
    pub grafana_url: Option<String>,
    /// UID of the Tempo data source in that Grafana, used in the trace links.
    #[arg(long = "grafana-tempo-datasource", env = "GRAFANA_TEMPO_DATASOURCE", default_value = "tempo")]
    pub grafana_tempo_datasource: String,
    /// Once every listener is bound and the store is open, also write the ready line (the JSON
    /// object printed on stderr) to this file, atomically.
    #[arg(long = "ready-file", env = "HELIX_READY_FILE")]
    pub ready_file: Option<PathBuf>,
    /// Deadline of each shutdown stage (receivers finishing in-flight exports, writer drain,
    /// forwarder flush, store close); a task still running then is aborted and reported. An
    /// export is acknowledged only after its commit, so an aborted stage loses nothing acknowledged.
    #[arg(long = "shutdown-timeout", env = "HELIX_SHUTDOWN_TIMEOUT", default_value = "10s",
          value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// Seconds between two platform checks (a canary trace and log sent through this herald
    /// and looked for in its store, Tempo and Loki); 0 turns the check off.
    #[arg(long = "platform-check-interval", env = "PLATFORM_CHECK_INTERVAL_SECS", default_value_t = 300)]
    pub platform_check_interval: u64,
    /// Seconds back from the canary's send that Tempo and Loki are searched.
    #[arg(long = "platform-check-lookback", env = "PLATFORM_CHECK_LOOKBACK_SECS", default_value_t = 900)]
    pub platform_check_lookback: u64,
    /// Seconds to wait after sending the canary before asking Tempo and Loki (collector delay).
    #[arg(long = "platform-check-delay", env = "PLATFORM_CHECK_DELAY_SECS", default_value_t = 15)]
    pub platform_check_delay: u64,
    /// Tempo query URL (e.g. http://tempo:3200) the platform check asks for the canary's trace.
    #[arg(long = "tempo-query-url", env = "TEMPO_QUERY_URL")]
    pub tempo_query_url: Option<String>,
    /// Tempo tenant sent as X-Scope-OrgID.
    #[arg(long = "tempo-tenant", env = "TEMPO_TENANT", default_value = "anonymous")]
    pub tempo_tenant: String,
    /// Loki query URL (e.g. http://loki:3100) the platform check asks for the canary's log.
    #[arg(long = "loki-query-url", env = "LOKI_QUERY_URL")]
    pub loki_query_url: Option<String>,
    /// Loki tenant sent as X-Scope-OrgID.
    #[arg(long = "loki-tenant", env = "LOKI_TENANT", default_value = "anonymous")]
    pub loki_tenant: String,
    /// Keep every acknowledged span in the store (the trace API and waterfall read them). A site
    /// that forwards to Tempo and wants no second copy sets --store-spans=false.
    #[arg(long = "store-spans", env = "HELIX_STORE_SPANS", default_value_t = true, action = clap::ArgAction::Set)]
    pub store_spans: bool,
    /// Spans of traces older than this are removed (0 keeps them); entities, operations and
    /// events are not affected.
    #[arg(long = "span-retention", env = "HELIX_SPAN_RETENTION", default_value = "7d",
          value_parser = humantime::parse_duration)]
    pub span_retention: Duration,
    /// Optional budget of the span store in bytes (e.g. 20000000000); over it the oldest spans
    /// are removed first.
    #[arg(long = "span-retention-bytes", env = "HELIX_SPAN_RETENTION_BYTES")]
    pub span_retention_bytes: Option<u64>,
    /// SQLite: memory cap of the span directory, the map from trace ID to stored trace (8 bytes
    /// per trace). Over it the oldest traces are found through their blocks on disk, slower;
    /// a span arriving that late for its trace is stored beside it and read back with it.
    #[arg(long = "span-directory-bytes", env = "HELIX_SPAN_DIRECTORY_BYTES",
          default_value_t = helix_store::sqlite::DEFAULT_SPAN_DIRECTORY_BYTES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(65_536..))]
    pub span_directory_bytes: usize,
    /// Log records older than this are removed (0 keeps them). Default 7d; on PostgreSQL an
    /// existing HELIX_RETENTION_LOGS_DAYS applies when this is not given.
    #[arg(long = "log-retention", env = "HELIX_LOG_RETENTION", value_parser = humantime::parse_duration)]
    pub log_retention: Option<Duration>,
    /// Stored log rows one Loki API request may read (`/loki/api/v1/...`); a query that needs
    /// more answers with what it found and a warning, so no query keeps the herald busy for long.
    #[arg(long = "loki-scan-lines", env = "HELIX_LOKI_SCAN_LINES", default_value_t = crate::api::loki::DEFAULT_SCAN_LINES)]
    pub loki_scan_lines: usize,
    /// Namespace IRI of this deployment in the PROV and OpenLineage exports: entities become
    /// NAMESPACE + `entity/` + ID (e.g. https://obs.example.org/prov/). Must be an absolute IRI.
    #[arg(long = "prov-namespace", env = "HELIX_PROV_NAMESPACE", default_value = crate::export::DEFAULT_NAMESPACE,
          value_parser = parse_namespace)]
    pub prov_namespace: String,
    /// OpenLineage consumer (e.g. Marquez at http://marquez:5000): each first creation is also
    /// POSTed as its run events to URL/api/v1/lineage, off the acknowledgement path, with retry.
    #[arg(long = "openlineage-url", env = "OPENLINEAGE_URL", value_parser = parse_http_url)]
    pub openlineage_url: Option<String>,
    /// PEM file with the server certificate (then its intermediates): the OTLP/gRPC, OTLP/HTTP
    /// and API listeners then speak TLS only (the metrics listener stays plain text). Re-read,
    /// with --tls-key, on SIGHUP.
    #[arg(long = "tls-cert", env = "HELIX_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM file with the private key of --tls-cert.
    #[arg(long = "tls-key", env = "HELIX_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Comma-separated HS256 keys; the first signs tokens, every one verifies them (rotation:
    /// prepend the new key, drop the old one 24 h later). Unset or empty: auth is off. Prefer
    /// the environment variable: a flag's value is visible in the process list.
    #[arg(long = "jwt-secret", env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Directory of instrument files (*.yml, *.yaml): each names an instrument and how it signs in.
    #[arg(long = "instruments-dir", env = "INSTRUMENTS_DIR", default_value = DEFAULT_INSTRUMENTS_DIR)]
    pub instruments_dir: PathBuf,
    /// How often the instrument files are re-read (they are also re-read on SIGHUP).
    #[arg(long = "instruments-reload", env = "HELIX_INSTRUMENTS_RELOAD", default_value = "30s",
          value_parser = humantime::parse_duration)]
    pub instruments_reload: Duration,
    /// Failed sign-ins (POST /auth/token) allowed per instrument, and per client address,
    /// within --auth-throttle-window; more are answered 429 until the window ends.
    #[arg(long = "auth-throttle-failures", env = "HELIX_AUTH_THROTTLE_FAILURES", default_value_t = 10)]
    pub auth_throttle_failures: u32,
    #[arg(long = "auth-throttle-window", env = "HELIX_AUTH_THROTTLE_WINDOW", default_value = "1m",
          value_parser = humantime::parse_duration)]
    pub auth_throttle_window: Duration,
    /// Longest wait for an instrument's token introspection endpoint (verify_url).
    #[arg(long = "introspection-timeout", env = "HELIX_INTROSPECTION_TIMEOUT", default_value = "5s",
          value_parser = humantime::parse_duration)]
    pub introspection_timeout: Duration,
    /// Behind a reverse proxy: throttle sign-ins by the client address the proxy appends to
    /// X-Forwarded-For, not by the proxy's own address.
    #[arg(long = "trust-forwarded-for", env = "HELIX_TRUST_FORWARDED_FOR", default_value_t = false,
          action = clap::ArgAction::Set)]
    pub trust_forwarded_for: bool,
}

/// Every listener on a free loopback port (the ready file says which): tests, benchmarks.
pub const LOOPBACK_FLAGS: [&str; 8] = [
    "--otlp-grpc-addr",
    "127.0.0.1:0",
    "--otlp-http-addr",
    "127.0.0.1:0",
    "--api-addr",
    "127.0.0.1:0",
    "--metrics-addr",
    "127.0.0.1:0",
];

/// The default age of stored log records (`--log-retention`).
pub const DEFAULT_LOG_RETENTION: Duration = Duration::from_secs(7 * 86_400);

/// How long log records are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogRetention {
    /// Not configured: 7 days (PostgreSQL: HELIX_RETENTION_LOGS_DAYS when set).
    Default,
    Keep,
    Age(Duration),
}

/// The store's retention settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoreRetention {
    pub spans: helix_store::SpanRetention,
    pub logs: LogRetention,
}

/// How much of the database one herald may hold and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// SQLite: read connections; PostgreSQL: the pool (reads and writes).
    pub connections: usize,
    /// Longest a SQLite read (a PostgreSQL read statement) may take.
    pub query_timeout: Duration,
    /// SQLite: memory cap of the span directory.
    pub span_directory_bytes: usize,
}

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    /// The full `postgres://` URL (it may hold a password: show it only through `redact_url`).
    Postgres(String),
}

impl StoreLocation {
    /// How to name the store to people: the path, or the URL without its password.
    pub fn shown(&self) -> String {
        match self {
            StoreLocation::Sqlite(path) => path.display().to_string(),
            StoreLocation::Postgres(url) => helix_store::redact_url(url),
        }
    }
}

/// `sqlite://PATH`, `sqlite:PATH` or a plain path → SQLite; `postgres://…` or
/// `postgresql://…` → PostgreSQL (the URL is checked when the store connects).
pub fn parse_db_url(url: &str) -> Result<StoreLocation, String> {
    let url = url.trim();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(StoreLocation::Postgres(url.to_owned()));
    }
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    if path.is_empty() {
        return Err("DB_URL: empty path; use sqlite://PATH, e.g. sqlite://./helix-data/herald.db".into());
    }
    if let Some((scheme, _)) = path.split_once("://") {
        return Err(format!("DB_URL: unknown scheme {scheme:?}; use sqlite://PATH or postgres://…"));
    }
    Ok(StoreLocation::Sqlite(PathBuf::from(path)))
}

/// `HOST:PORT`, `:PORT` (all interfaces, as the older herald's env vars are written) or `PORT`.
/// An `http://` or `https://` URL with a host.
pub fn parse_http_url(s: &str) -> Result<String, String> {
    let rest = s.strip_prefix("http://").or_else(|| s.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !s.chars().any(char::is_whitespace) => {
            Ok(s.to_owned())
        }
        _ => Err(format!("`{}` is not an http:// or https:// URL with a host", helix_store::redact_url(s))),
    }
}

/// `--prov-namespace`: an absolute IRI (see [`crate::export::check_namespace`]).
pub fn parse_namespace(s: &str) -> Result<String, String> {
    crate::export::check_namespace(s)?;
    Ok(s.to_owned())
}

pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let with_host = if let Some(port) = s.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else if s.parse::<u16>().is_ok() {
        format!("0.0.0.0:{s}")
    } else {
        s.to_owned()
    };
    with_host
        .to_socket_addrs()
        .map_err(|e| format!("{s:?} is not a listen address ({e}); use HOST:PORT or :PORT"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

/// Writer tuning, from flags.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    pub queue_records: usize,
    pub max_batch_records: usize,
}

/// Receiver limits, from flags.
#[derive(Debug, Clone)]
pub struct ReceiveConfig {
    pub max_request_bytes: usize,
    /// The estimated bytes of exports in flight at once (`--max-inflight-bytes`).
    pub max_inflight_bytes: usize,
}

/// Forwarder settings, from flags.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    pub endpoint: String,
    pub buffer: usize,
    /// Attempts per request while running (one during the shutdown flush).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled after each failed one, up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Longest wait for the downstream's answer to one attempt.
    pub attempt_timeout: Duration,
}

impl ServeArgs {
    /// The store to serve from: `--db-url` / `DB_URL`, else the default embedded one.
    pub fn db_url(&self) -> &str {
        self.db_url.as_deref().unwrap_or(DEFAULT_DB_URL)
    }
    /// The span store's age and size limits (`--span-retention 0` keeps spans forever).
    pub fn span_retention(&self) -> helix_store::SpanRetention {
        helix_store::SpanRetention {
            max_age: (!self.span_retention.is_zero()).then_some(self.span_retention),
            max_bytes: self.span_retention_bytes,
        }
    }

    /// What the store removes as it ages: spans and log records.
    pub fn retention(&self) -> StoreRetention {
        StoreRetention {
            spans: self.span_retention(),
            logs: match self.log_retention {
                None => LogRetention::Default,
                Some(age) if age.is_zero() => LogRetention::Keep,
                Some(age) => LogRetention::Age(age),
            },
        }
    }

    pub fn batch(&self) -> BatchConfig {
        BatchConfig { queue_records: self.write_queue_records.max(1), max_batch_records: self.batch_max_records.max(1) }
    }
    /// Auth settings; auth is on exactly when JWT_SECRET names a key.
    pub fn auth(&self) -> crate::auth::AuthConfig {
        crate::auth::AuthConfig {
            keys: self.jwt_secret.as_deref().and_then(crate::auth::KeySet::parse),
            throttle: crate::auth::ThrottleConfig {
                max_failures: self.auth_throttle_failures.max(1),
                window: self.auth_throttle_window,
            },
            introspection_timeout: self.introspection_timeout,
            trust_forwarded_for: self.trust_forwarded_for,
        }
    }
    /// The platform check's settings; `None` when it is off (an interval of 0).
    pub fn platform_check(&self) -> Option<crate::canary::PlatformConfig> {
        let backend = |url: &Option<String>, tenant: &str| {
            url.as_ref()
                .filter(|u| !u.trim().is_empty())
                .map(|u| crate::canary::Backend { url: u.trim().to_owned(), tenant: tenant.to_owned() })
        };
        (self.platform_check_interval > 0).then(|| crate::canary::PlatformConfig {
            interval: Duration::from_secs(self.platform_check_interval),
            lookback: Duration::from_secs(self.platform_check_lookback),
            delay: Duration::from_secs(self.platform_check_delay),
            tempo: backend(&self.tempo_query_url, &self.tempo_tenant),
            loki: backend(&self.loki_query_url, &self.loki_tenant),
            timeout: Duration::from_secs(10),
            spans_stored: self.store_spans,
        })
    }

    pub fn receive(&self) -> ReceiveConfig {
        ReceiveConfig { max_request_bytes: self.max_request_bytes, max_inflight_bytes: self.max_inflight_bytes.max(1) }
    }
    pub fn store_limits(&self) -> StoreLimits {
        StoreLimits {
            connections: self.db_connections.max(1),
            query_timeout: self.query_timeout.max(Duration::from_millis(10)),
            span_directory_bytes: self.span_directory_bytes,
        }
    }
    /// How many requests of each expensive class are served at once.
    pub fn read_limits(&self) -> crate::api::classes::ReadLimits {
        crate::api::classes::ReadLimits {
            lineage: self.max_lineage_requests.max(1),
            graph: self.max_graph_requests.max(1),
            search: self.max_search_requests.max(1),
            monitor: self.max_monitor_requests.max(1),
            exports: self.max_export_requests.max(1),
        }
    }
    /// The limits of every listener's connections.
    pub fn connections(&self) -> crate::connections::ConnectionLimits {
        crate::connections::ConnectionLimits {
            max_connections: self.max_connections.max(1),
            idle_timeout: self.http_idle_timeout.max(Duration::from_millis(100)),
            body_timeout: self.http_body_timeout.max(Duration::from_millis(100)),
        }
    }
    /// The certificate files when TLS is on (clap makes sure both or neither are given).
    pub fn tls(&self) -> Option<crate::tls::TlsFiles> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::TlsFiles { cert: cert.clone(), key: key.clone() }),
            _ => None,
        }
    }
    /// The limits on one span or log record.
    pub fn shape_limits(&self) -> helix_model::shape::ShapeLimits {
        helix_model::shape::ShapeLimits {
            attributes: self.max_span_attributes,
            events: self.max_span_events,
            links: self.max_span_links,
            value_bytes: self.max_value_bytes,
            metadata_bytes: self.max_metadata_bytes,
        }
    }
    pub fn forward(&self) -> Option<ForwardConfig> {
        self.collector_endpoint.as_ref().filter(|e| !e.trim().is_empty()).map(|endpoint| ForwardConfig {
            endpoint: if endpoint.contains("://") { endpoint.clone() } else { format!("http://{endpoint}") },
            buffer: self.forward_buffer.max(1),
            max_attempts: 8,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(10),
        })
    }
}

/// How notifications are delivered (docs/notifications.md).
#[derive(Debug, Clone, Args)]
pub struct NotifyArgs {
    /// Inspector base URL used in notification links (entity pages, "Manage silences").
    #[arg(long = "ui-base-url", env = "UI_BASE_URL", default_value = "http://localhost:8081")]
    pub ui_base_url: String,
    /// GitHub REST API base (GitHub Enterprise: https://HOST/api/v3).
    #[arg(long = "github-api-url", env = "GITHUB_API_URL", default_value = "https://api.github.com")]
    pub github_api_url: String,
    /// Waits between delivery attempts (comma-separated); one more attempt than waits.
    #[arg(long = "notify-retry-backoff", env = "HELIX_NOTIFY_RETRY_BACKOFF", default_value = "2s,4s,8s,16s",
          value_parser = humantime::parse_duration, value_delimiter = ',')]
    pub notify_retry_backoff: Vec<Duration>,
    /// Shortest Slack rate-limit window (a shorter sample_window_seconds is raised to it).
    #[arg(long = "notify-min-window", env = "HELIX_NOTIFY_MIN_WINDOW", default_value = "5s",
          value_parser = humantime::parse_duration)]
    pub notify_min_window: Duration,
    /// How often ended rate-limit windows are turned into digests.
    #[arg(long = "notify-digest-interval", env = "HELIX_NOTIFY_DIGEST_INTERVAL", default_value = "30s",
          value_parser = humantime::parse_duration)]
    pub notify_digest_interval: Duration,
    /// How long a replica holds a notification it claimed before another may take it over.
    #[arg(long = "notify-lease", env = "HELIX_NOTIFY_LEASE", default_value = "60s",
          value_parser = humantime::parse_duration)]
    pub notify_lease: Duration,
    /// How often an idle dispatcher looks at the outbox.
    #[arg(long = "notify-poll", env = "HELIX_NOTIFY_POLL", default_value = "500ms",
          value_parser = humantime::parse_duration)]
    pub notify_poll: Duration,
    /// How long delivery waits while exports wait for the writer (ingest first; 0: never).
    #[arg(long = "notify-give-way", env = "HELIX_NOTIFY_GIVE_WAY", default_value = "1s",
          value_parser = humantime::parse_duration)]
    pub notify_give_way: Duration,
    /// How often GitHub issues are checked against auto_close_after_days.
    #[arg(long = "notify-auto-close-interval", env = "HELIX_NOTIFY_AUTO_CLOSE_INTERVAL", default_value = "1h",
          value_parser = humantime::parse_duration)]
    pub notify_auto_close_interval: Duration,
    /// Timeout of one Slack, GitHub or webhook request.
    #[arg(long = "notify-timeout", env = "HELIX_NOTIFY_TIMEOUT", default_value = "10s",
          value_parser = humantime::parse_duration)]
    pub notify_timeout: Duration,
    /// Most notifications waiting for delivery; beyond it a class's new events are counted
    /// into one "N more" message instead of one each (docs/notifications.md).
    #[arg(long = "notify-outbox-max", env = "HELIX_NOTIFY_OUTBOX_MAX", default_value_t = helix_store::notify::DEFAULT_OUTBOX_MAX,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub notify_outbox_max: u64,
}

impl NotifyArgs {
    pub fn config(&self, grafana_url: Option<&str>) -> crate::notify::NotifyConfig {
        crate::notify::NotifyConfig {
            backoff: self.notify_retry_backoff.clone(),
            min_window: self.notify_min_window,
            poll: self.notify_poll.max(Duration::from_millis(10)),
            give_way: self.notify_give_way,
            lease: self.notify_lease.max(Duration::from_millis(100)),
            digest_every: self.notify_digest_interval,
            auto_close_every: self.notify_auto_close_interval,
            http_timeout: self.notify_timeout,
            links: crate::notify::message::Links {
                ui_base: self.ui_base_url.trim_end_matches('/').to_owned(),
                grafana: grafana_url.map(|g| g.trim_end_matches('/').to_owned()),
            },
            github_api: self.github_api_url.trim_end_matches('/').to_owned(),
            ..crate::notify::NotifyConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_go_style_and_plain_forms() {
        assert_eq!(parse_addr(":4317").unwrap(), "0.0.0.0:4317".parse().unwrap());
        assert_eq!(parse_addr("8080").unwrap(), "0.0.0.0:8080".parse().unwrap());
        assert_eq!(parse_addr("127.0.0.1:0").unwrap(), "127.0.0.1:0".parse().unwrap());
        assert!(parse_addr("nonsense").unwrap_err().contains("HOST:PORT"));
    }

    #[test]
    fn openlineage_urls_must_be_http_with_a_host() {
        assert!(parse_http_url("http://127.0.0.1:5000").is_ok());
        assert!(parse_http_url("https://marquez.example.org/").is_ok());
        for bad in ["", "marquez:5000", "ftp://x", "http://", "http:///x", "http://a b"] {
            assert!(parse_http_url(bad).is_err(), "{bad:?} accepted");
        }
        let err = Cli::try_parse_from(["herald", "--openlineage-url", "marquez:5000"]).unwrap_err().to_string();
        assert!(err.contains("not an http:// or https:// URL"), "{err}");
    }

    #[test]
    fn db_urls() {
        assert_eq!(parse_db_url("sqlite://./x/h.db").unwrap(), StoreLocation::Sqlite("./x/h.db".into()));
        assert_eq!(parse_db_url("/abs/h.db").unwrap(), StoreLocation::Sqlite("/abs/h.db".into()));
        assert_eq!(
            parse_db_url(" postgres://u:p@h/db ").unwrap(),
            StoreLocation::Postgres("postgres://u:p@h/db".into())
        );
        assert_eq!(parse_db_url("postgresql://h/db").unwrap(), StoreLocation::Postgres("postgresql://h/db".into()));
        assert!(parse_db_url("mysql://x").unwrap_err().contains("unknown scheme"));
        assert!(parse_db_url("sqlite://").is_err());
    }

    #[test]
    fn cli_parses_with_defaults_and_subcommands() {
        let cli = Cli::try_parse_from(["herald"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.grpc_addr.port(), 4317);
        assert_eq!(cli.serve.http_addr.port(), 4318);
        assert_eq!(cli.serve.api_addr.port(), 8080);
        assert_eq!(cli.serve.metrics_addr.port(), 2112);
        assert!(matches!(Cli::try_parse_from(["herald", "migrate"]).unwrap().command, Some(Command::Migrate { .. })));
        assert!(matches!(
            Cli::try_parse_from(["herald", "demo", "--duration", "5s"]).unwrap().command,
            Some(Command::Demo { duration: Some(d), .. }) if d == Duration::from_secs(5)
        ));
    }

    /// Help text with its line wrapping undone.
    fn flat(help: impl std::fmt::Display) -> String {
        help.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn every_help_with_the_serve_options_ends_with_the_address_footer() {
        use clap::CommandFactory;
        let footer = flat(ADDRESS_HELP);
        let mut cli = Cli::command();
        assert!(flat(cli.render_long_help()).contains(&footer), "herald --help");
        for sub in ["serve", "demo"] {
            let help = flat(cli.find_subcommand_mut(sub).unwrap().render_long_help());
            assert!(help.contains(&footer), "herald {sub} --help lacks the footer:\n{help}");
            assert!(help.contains("--shutdown-timeout"), "herald {sub} --help");
        }
        let demo = flat(cli.find_subcommand_mut("demo").unwrap().render_long_help());
        assert!(demo.contains("temporary") && demo.contains("deleted on exit"), "demo says which store: {demo}");
    }

    #[test]
    fn db_url_is_absent_unless_given_and_shutdown_timeout_parses_durations() {
        let serve = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).unwrap();
            match cli.command {
                Some(Command::Demo { serve, .. }) | Some(Command::Serve(serve)) => serve,
                _ => cli.serve,
            }
        };
        // (DB_URL from the environment is covered end to end: tests/cli.rs.)
        if std::env::var_os("DB_URL").is_none() {
            assert_eq!(serve(&["herald"]).db_url, None);
            assert_eq!(serve(&["herald"]).db_url(), DEFAULT_DB_URL);
            assert_eq!(serve(&["herald", "demo"]).db_url, None, "the demo then uses a temporary store");
        }
        assert_eq!(serve(&["herald", "demo", "--db-url", "sqlite://d.db"]).db_url(), "sqlite://d.db");
        if std::env::var_os("HELIX_SHUTDOWN_TIMEOUT").is_none() {
            assert_eq!(serve(&["herald"]).shutdown_timeout, Duration::from_secs(10));
        }
        assert_eq!(
            serve(&["herald", "serve", "--shutdown-timeout", "1m30s"]).shutdown_timeout,
            Duration::from_secs(90)
        );
        assert!(Cli::try_parse_from(["herald", "--shutdown-timeout", "soon"]).is_err());
    }

    #[test]
    fn store_locations_are_shown_without_passwords() {
        assert_eq!(parse_db_url("sqlite://./x/h.db").unwrap().shown(), "./x/h.db");
        let shown = parse_db_url("postgres://u:secret@h/db").unwrap().shown();
        assert!(!shown.contains("secret") && shown.contains("h/db"), "{shown}");
    }
}
