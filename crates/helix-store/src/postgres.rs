//! PostgreSQL backend of `Store` (`DB_URL=postgres://…`): a deadpool pool of tokio-postgres
//! connections, versioned migrations serialised by an advisory lock (several replicas may start
//! together), set-wise batch writes that stay idempotent when replicas write the same spans
//! concurrently, the shared lineage walk, and the retention job for plain PostgreSQL (with
//! TimescaleDB, hypertable retention policies do that job instead).

mod flags;
mod logs;
mod migrate;
mod notify;
mod read;
mod retention;
mod timescale;
mod traces;
mod window;
mod write;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use helix_model::{EntityEvent, LogRecorded, SpanRef};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

pub use crate::redact_url;
use crate::{
    Cleared, DbCause, Descendants, Entity, EntityFilter, EventQuery, Flag, FlagAdded, Graph, GraphQuery, Lineage,
    LineageQuery, LogField, LogFilter, MonitorPoints, MonitorQuery, NewFlag, Operation, Page, PageRequest, StageBucket,
    StageHistogramQuery, StageSummary, Store, StoreError, StoreResult, StoredTrace, TraceFilter, TraceSummary,
    WriteBatch, WriteOutcome,
};
pub use migrate::SCHEMA_VERSION;
pub use retention::{RetentionConfig, RetentionReport};
/// The driver, re-exported so tests and tools of other crates can inspect the database with
/// the same version the store uses.
pub use tokio_postgres;

/// How to open a PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Apply pending migrations at open (default). When false, a database that is behind is
    /// refused with a message telling to run `herald migrate`.
    pub migrate: bool,
    /// Use (and create if missing) this schema instead of the connection's default search
    /// path. Lower-case letters, digits and `_` only. Tests use one schema per check.
    pub schema: Option<String>,
    /// Most connections kept open; writes and reads share them.
    pub pool_size: usize,
    /// How long a call waits for a free connection or for a new one to be established before
    /// failing as `Unavailable`.
    pub connect_timeout: Duration,
    /// Longest one statement of a read may run (the sessions' `statement_timeout`; writes and
    /// migrations lift it for their own statements). Past it the server stops the statement
    /// and the read fails as a query timeout.
    pub query_timeout: Duration,
    /// Retention job for plain PostgreSQL; `None` disables it. Ignored for hypertables.
    pub retention: Option<RetentionConfig>,
    /// Age and size limits of the span store (applied by the retention job).
    pub span_retention: crate::SpanRetention,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            migrate: true,
            schema: None,
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(30),
            retention: Some(RetentionConfig::default()),
            span_retention: crate::SpanRetention::default(),
        }
    }
}

/// Whether a database error means "try again": the server is going away, refuses new
/// connections, is out of resources, or aborted the transaction to resolve a conflict.
fn transient_state(code: &SqlState) -> bool {
    let c = code.code();
    // Class 08: connection exception; 53: insufficient resources; 57P0x: operator
    // intervention (shutdown, crash, cannot connect now); 40001/40P01: serialization failure
    // and deadlock; 55P03: lock not available; 25006: read-only transaction (a standby
    // after a fail-over); 57014: query cancelled (statement timeout).
    c.starts_with("08")
        || c.starts_with("53")
        || c.starts_with("57P0")
        || matches!(c, "40001" | "40P01" | "55P03" | "25006" | "57014")
}

/// Map a driver error to the error a client sees.
pub(crate) fn map_pg(e: tokio_postgres::Error) -> StoreError {
    if let Some(code) = e.code() {
        let message = e.as_db_error().map(|db| db.message().to_owned()).unwrap_or_else(|| e.to_string());
        // Reads are the only statements under `statement_timeout`, so a cancelled statement
        // is a read stopped at its budget (or an operator's pg_cancel_backend: stopped too).
        if *code == SqlState::QUERY_CANCELED {
            return StoreError::query_timeout(None);
        }
        let cause = DbCause::Postgres { sqlstate: Some(code.code().to_owned()), message };
        return if transient_state(code) {
            StoreError::Unavailable { op: "", cause }
        } else {
            StoreError::Internal { op: "", cause }
        };
    }
    // No SQLSTATE: the failure is below SQL (connecting, a closed connection, I/O, a
    // timeout). The values the store binds are typed by construction, so what is left is the
    // way to the database failing: transient.
    let source = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
    StoreError::Unavailable {
        op: "",
        cause: DbCause::Postgres { sqlstate: None, message: format!("database unreachable ({e}{source})") },
    }
}

fn map_pool(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => map_pg(e),
        PoolError::Timeout(kind) => {
            StoreError::io(format!("database unreachable: no connection within the timeout ({kind:?})"))
        }
        PoolError::Closed => StoreError::io("the connection pool is closed"),
        PoolError::NoRuntimeSpecified => StoreError::bug("connection pool without a runtime"),
        PoolError::PostCreateHook(e) => StoreError::io(format!("connection set-up failed: {e}")),
    }
}

/// A schema name that can be spliced into SQL without quoting.
fn valid_schema(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Build the pool for `url`: every connection gets the search path and the settings the
/// store relies on.
fn build_pool(url: &str, opts: &PostgresOptions) -> StoreResult<Pool> {
    let redacted = redact_url(url);
    let mut config: tokio_postgres::Config =
        url.parse().map_err(|e| StoreError::Config(format!("DB_URL {redacted} is not a PostgreSQL URL: {e}")))?;
    let mut options = config.get_options().unwrap_or_default().to_owned();
    // An acknowledged export must survive a server crash: force synchronous commit even if the
    // server default was relaxed.
    options.push_str(" -c synchronous_commit=on");
    // Every statement of a session is bounded like SQLite's reads (--query-timeout), so a slow
    // query stops on the server even when the herald has gone; writes and migrations lift it.
    options.push_str(&format!(" -c statement_timeout={}", opts.query_timeout.as_millis().max(1)));
    if let Some(schema) = &opts.schema {
        if !valid_schema(schema) {
            return Err(StoreError::Config(format!(
                "invalid schema name {schema:?}: use lower-case letters, digits and _"
            )));
        }
        options.push_str(&format!(" -c search_path={schema}"));
    }
    config.options(options.trim());
    config.connect_timeout(opts.connect_timeout);
    if config.get_application_name().is_none() {
        config.application_name("helix-herald");
    }
    // Keep-alives make a silently vanished server (network cut) show up as a broken
    // connection instead of a hung call.
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            // A connection whose socket closed (server restart) is dropped when returned to the
            // pool or taken from it; the next caller gets a fresh one.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(opts.pool_size.max(2))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(opts.connect_timeout * 2))
        .create_timeout(Some(opts.connect_timeout))
        .recycle_timeout(Some(opts.connect_timeout))
        .build()
        .map_err(|e| StoreError::Config(format!("cannot build the connection pool: {e}")))
}

/// Apply pending migrations to the database at `url` (the `herald migrate` subcommand).
/// Returns the versions applied; empty when the schema was already current.
pub async fn migrate(url: &str, schema: Option<&str>) -> StoreResult<Vec<u32>> {
    let opts =
        PostgresOptions { schema: schema.map(str::to_owned), retention: None, pool_size: 2, ..Default::default() };
    let pool = build_pool(url, &opts)?;
    let mut client = pool.get().await.map_err(|e| connect_error(url, e))?;
    migrate::prepare_schema(&mut client, &redact_url(url), opts.schema.as_deref(), true).await
}

fn connect_error(url: &str, e: PoolError) -> StoreError {
    match map_pool(e) {
        StoreError::Unavailable { op, cause } => StoreError::Unavailable {
            op,
            cause: DbCause::Io(format!("cannot connect to {}: {cause}", redact_url(url))),
        },
        other => other,
    }
}

struct Inner {
    pool: Pool,
    redacted_url: String,
    retention_task: Option<tokio::task::JoinHandle<()>>,
    /// What the retention job did (it holds a clone).
    progress: Arc<crate::RetentionProgress>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The job holds only a pool clone; stop it with the last store handle.
        if let Some(t) = &self.retention_task {
            t.abort();
        }
    }
}

/// The PostgreSQL store. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("url", &self.inner.redacted_url).finish()
    }
}

impl PostgresStore {
    /// Connect, check or migrate the schema, and start the retention job (plain tables only).
    pub async fn open(url: &str, opts: PostgresOptions) -> StoreResult<PostgresStore> {
        let redacted = redact_url(url);
        let pool = build_pool(url, &opts)?;
        {
            let mut client = pool.get().await.map_err(|e| connect_error(url, e))?;
            migrate::prepare_schema(&mut client, &redacted, opts.schema.as_deref(), opts.migrate).await?;
        }
        let spans = opts.span_retention;
        let span_limits = spans.max_age.is_some() || spans.max_bytes.is_some();
        let cfg = opts.retention.clone().filter(RetentionConfig::enabled);
        let progress = Arc::new(crate::RetentionProgress::default());
        let retention_task = match (cfg, span_limits) {
            (Some(cfg), _) => Some(tokio::spawn(retention::run(pool.clone(), cfg, spans, progress.clone()))),
            (None, true) => {
                let off = RetentionConfig { operations: None, events: None, logs: None, ..Default::default() };
                Some(tokio::spawn(retention::run(pool.clone(), off, spans, progress.clone())))
            }
            (None, false) => None,
        };
        Ok(PostgresStore { inner: Arc::new(Inner { pool, redacted_url: redacted, retention_task, progress }) })
    }

    /// The DB_URL with its password hidden.
    pub fn redacted_url(&self) -> &str {
        &self.inner.redacted_url
    }

    /// Run one retention pass now (the job runs them periodically); for tests and operators.
    pub async fn run_retention(&self, cfg: &RetentionConfig) -> StoreResult<RetentionReport> {
        retention::pass(&self.inner.pool, cfg).await
    }

    /// Whether the time-series tables are TimescaleDB hypertables in this database.
    pub async fn uses_timescale(&self) -> StoreResult<bool> {
        let client = self.client().await?;
        timescale::is_hypertable(&client, "entity_operations").await
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.inner.pool.get().await.map_err(map_pool)
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn notify(&self) -> Option<&dyn crate::notify::NotifyStore> {
        Some(self)
    }

    /// Two batches in flight keep the server busy while the next batch is decoded and sent;
    /// row locks and the re-plan on a lost race keep concurrent batches correct.
    fn write_concurrency(&self) -> usize {
        2
    }

    fn retention(&self) -> Option<crate::RetentionSnapshot> {
        self.inner.retention_task.as_ref().map(|_| self.inner.progress.snapshot())
    }

    /// The whole database (`pg_database_size`).
    async fn size_bytes(&self) -> StoreResult<Option<u64>> {
        let client = self.client().await?;
        let row = client.query_one("SELECT pg_database_size(current_database())", &[]).await.map_err(map_pg)?;
        Ok(u64::try_from(row.get::<_, i64>(0)).ok())
    }

    fn connections(&self) -> Option<crate::Connections> {
        let status = self.inner.pool.status();
        Some(crate::Connections { in_use: status.size.saturating_sub(status.available), open: status.size })
    }

    async fn write(&self, batch: &WriteBatch) -> StoreResult<WriteOutcome> {
        if batch.records.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let mut client = self.client().await?;
        write::apply_batch(&mut client, batch).await.map_err(|e| e.during("write"))
    }

    async fn span_refs(&self, entity_ids: &[String]) -> StoreResult<HashMap<String, SpanRef>> {
        if entity_ids.is_empty() {
            return Ok(HashMap::new());
        }
        read::span_refs(&self.client().await?, entity_ids).await.map_err(|e| e.during("span_refs"))
    }

    async fn check_ready(&self) -> StoreResult<()> {
        let client = self.client().await?;
        migrate::check_current(&client).await.map_err(|e| e.during("check_ready"))
    }

    async fn entity(&self, id: &str) -> StoreResult<Option<Entity>> {
        read::entity(&self.client().await?, id).await.map_err(|e| e.during("entity"))
    }

    async fn entities(&self, ids: &[String]) -> StoreResult<Vec<Entity>> {
        read::entities(&self.client().await?, ids).await.map_err(|e| e.during("entities"))
    }

    async fn children_count(&self, id: &str) -> StoreResult<u64> {
        read::children_count(&self.client().await?, id).await.map_err(|e| e.during("children_count"))
    }

    async fn events(&self, entity_id: &str, page: &PageRequest) -> StoreResult<Page<EntityEvent>> {
        read::events(&self.client().await?, entity_id, page).await.map_err(|e| e.during("events"))
    }

    async fn operations(&self, entity_id: &str, page: &PageRequest) -> StoreResult<Page<Operation>> {
        read::operations(&self.client().await?, entity_id, page).await.map_err(|e| e.during("operations"))
    }

    async fn lineage(&self, query: &LineageQuery) -> StoreResult<Option<Lineage>> {
        read::lineage(self.client().await?, query.clone()).await.map_err(|e| e.during("lineage"))
    }

    async fn descendants(&self, root: &str, max_depth: Option<u32>, cap: usize) -> StoreResult<Option<Descendants>> {
        read::descendants(self.client().await?, root.to_owned(), max_depth, cap)
            .await
            .map_err(|e| e.during("descendants"))
    }

    async fn graph(&self, id: &str, query: &GraphQuery) -> StoreResult<Option<Graph>> {
        read::graph(self.client().await?, id.to_owned(), query.clone()).await.map_err(|e| e.during("graph"))
    }

    async fn search(&self, filter: &EntityFilter, page: &PageRequest) -> StoreResult<Page<Entity>> {
        read::search(&self.client().await?, filter, page).await.map_err(|e| e.during("search"))
    }

    async fn instruments(&self) -> StoreResult<Vec<String>> {
        read::instruments(&self.client().await?).await.map_err(|e| e.during("instruments"))
    }

    async fn stages(&self, instrument_id: &str) -> StoreResult<Vec<StageSummary>> {
        read::stages(&self.client().await?, instrument_id).await.map_err(|e| e.during("stages"))
    }

    async fn log_search(&self, filter: &LogFilter, page: &PageRequest) -> StoreResult<Page<LogRecorded>> {
        logs::search(&self.client().await?, filter, page).await.map_err(|e| e.during("log_search"))
    }

    async fn log_values(&self, field: LogField, from_ns: i64, to_ns: i64, limit: usize) -> StoreResult<Vec<String>> {
        logs::values(&self.client().await?, field, from_ns, to_ns, limit).await.map_err(|e| e.during("log_values"))
    }

    async fn add_flag(&self, flag: &NewFlag) -> StoreResult<FlagAdded> {
        flags::add(&mut self.client().await?, flag).await.map_err(|e| e.during("add_flag"))
    }

    async fn clear_flag(&self, entity_id: &str, flag_id: &str, cleared_by: &str) -> StoreResult<Cleared> {
        flags::clear(&mut self.client().await?, entity_id, flag_id, cleared_by)
            .await
            .map_err(|e| e.during("clear_flag"))
    }

    async fn flags(&self, entity_ids: &[String], active_only: bool) -> StoreResult<Vec<Flag>> {
        flags::list(&self.client().await?, entity_ids, active_only).await.map_err(|e| e.during("flags"))
    }

    async fn instrument_events(&self, query: &EventQuery, page: &PageRequest) -> StoreResult<Page<EntityEvent>> {
        window::instrument_events(&self.client().await?, query, page).await.map_err(|e| e.during("instrument_events"))
    }

    async fn numeric_fields(
        &self,
        instrument_id: &str,
        from_ns: i64,
        to_ns: i64,
        sample: usize,
    ) -> StoreResult<Vec<String>> {
        window::numeric_fields(&self.client().await?, instrument_id, from_ns, to_ns, sample)
            .await
            .map_err(|e| e.during("numeric_fields"))
    }

    async fn monitor_points(&self, query: &MonitorQuery) -> StoreResult<MonitorPoints> {
        window::monitor_points(&self.client().await?, query).await.map_err(|e| e.during("monitor_points"))
    }

    async fn stage_histogram(&self, query: &StageHistogramQuery) -> StoreResult<Vec<StageBucket>> {
        window::stage_histogram(&self.client().await?, query).await.map_err(|e| e.during("stage_histogram"))
    }

    async fn trace(&self, trace_id: &str, max_spans: usize) -> StoreResult<Option<StoredTrace>> {
        traces::trace(&self.client().await?, trace_id, max_spans).await.map_err(|e| e.during("trace"))
    }

    async fn traces(&self, filter: &TraceFilter, page: &PageRequest) -> StoreResult<Page<TraceSummary>> {
        traces::traces(&self.client().await?, filter, page).await.map_err(|e| e.during("traces"))
    }
    async fn prune_logs(&self, max_age: Duration, now_ns: i64) -> StoreResult<u64> {
        let cutoff = now_ns.saturating_sub(i64::try_from(max_age.as_nanos()).unwrap_or(i64::MAX));
        let batch = RetentionConfig::default().batch_rows;
        retention::delete_older(&self.inner.pool, "logs", cutoff, batch, Duration::from_millis(1))
            .await
            .map_err(|e| e.during("prune_logs"))
    }

    async fn span_entities(&self, keys: &[(String, Option<String>)]) -> StoreResult<Vec<Option<String>>> {
        traces::span_entities(&self.client().await?, keys).await.map_err(|e| e.during("span_entities"))
    }
    async fn prune_spans(&self, limits: &crate::SpanRetention, now_ns: i64) -> StoreResult<u64> {
        retention::span_pass(&self.inner.pool, limits, now_ns, Duration::from_millis(1))
            .await
            .map_err(|e| e.during("prune_spans"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_checked() {
        assert!(valid_schema("t_0123abc"));
        assert!(!valid_schema("Public"));
        assert!(!valid_schema("a;drop"));
        assert!(!valid_schema("1abc"));
        assert!(!valid_schema(""));
    }

    #[test]
    fn transient_states() {
        for c in ["08006", "57P01", "53300", "40P01", "40001"] {
            assert!(transient_state(&SqlState::from_code(c)), "{c}");
        }
        for c in ["23505", "42P01", "22021"] {
            assert!(!transient_state(&SqlState::from_code(c)), "{c}");
        }
    }
}
