//! SQLite backend of `Store`: one database file in WAL mode, versioned migrations, one writer
//! connection behind a mutex and a small pool of readers, all driven from tokio's blocking pool
//! because rusqlite is synchronous.

mod blocks;
mod checkpoint;
mod flags;
mod grams;
mod logs;
mod migrate;
mod notify;
mod pack;
mod read;
mod retention;
mod traces;
mod window;
mod write;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use helix_model::{EntityEvent, LogRecorded, SpanRef};
use rusqlite::{Connection, ErrorCode, OpenFlags};

pub use migrate::{create_at_version, SCHEMA_VERSION};
use migrate::{current_version, prepare_schema};

use crate::{
    Cleared, DbCause, Descendants, Entity, EntityFilter, EventQuery, Flag, FlagAdded, Graph, GraphQuery, Lineage,
    LineageQuery, LogField, LogFilter, MonitorPoints, MonitorQuery, NewFlag, Operation, Page, PageRequest, StageBucket,
    StageHistogramQuery, StageSummary, Store, StoreError, StoreResult, StoredTrace, TraceFilter, TraceSummary,
    WriteBatch, WriteOutcome,
};

/// The span directory's memory cap unless configured (`HELIX_SPAN_DIRECTORY_BYTES`): the
/// entries of about 12 million traces.
pub const DEFAULT_SPAN_DIRECTORY_BYTES: usize = 128 << 20;

/// How to open a database.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Apply pending migrations at open (default). When false, a database that is behind is
    /// refused with a message telling to run `herald migrate`.
    pub migrate: bool,
    /// Read connections, at most, for queries (WAL lets them run beside the writer); reads
    /// beyond it wait for one.
    pub read_connections: usize,
    /// How long a statement waits for a lock before failing as `Unavailable`.
    pub busy_timeout: Duration,
    /// Age and size limits of the span store.
    pub span_retention: crate::SpanRetention,
    /// Memory cap of the span store's directory (docs/storage.md "Span directory").
    pub span_directory_bytes: usize,
    /// Age after which log records are removed (`None` keeps them).
    pub log_retention: Option<Duration>,
    /// Longest a read may take, waiting for a connection included; past it the query is
    /// interrupted and the call fails as `Unavailable`. A read whose caller goes away (the
    /// client hung up) is interrupted at once.
    pub query_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            migrate: true,
            read_connections: 4,
            busy_timeout: Duration::from_secs(5),
            span_retention: crate::SpanRetention::default(),
            span_directory_bytes: DEFAULT_SPAN_DIRECTORY_BYTES,
            log_retention: None,
            query_timeout: Duration::from_secs(30),
        }
    }
}

/// Map a SQLite failure to the error a client sees: lock contention, a full disk and I/O
/// errors are transient (`Unavailable`), everything else is ours (`Internal`).
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        let (code, transient) = match &e {
            rusqlite::Error::SqliteFailure(f, _) => (
                f.extended_code,
                matches!(
                    f.code,
                    ErrorCode::DatabaseBusy
                        | ErrorCode::DatabaseLocked
                        | ErrorCode::DiskFull
                        | ErrorCode::SystemIoFailure
                        | ErrorCode::CannotOpen
                        | ErrorCode::OutOfMemory
                ),
            ),
            // Not a result code of the engine: a value rusqlite could not convert (ours).
            _ => (0, false),
        };
        let cause = DbCause::Sqlite { code, message: e.to_string() };
        if transient {
            StoreError::Unavailable { op: "", cause }
        } else {
            StoreError::Internal { op: "", cause }
        }
    }
}

/// Open a connection and set the per-connection pragmas.
fn connect(path: &Path, busy_timeout: Duration, read_only: bool) -> StoreResult<Connection> {
    // Readers open read-write but set `query_only`: a SQLITE_OPEN_READ_ONLY connection cannot
    // create the WAL index files and fails on some file systems.
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if !read_only {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(busy_timeout)?;
    if read_only {
        conn.execute_batch("PRAGMA query_only = ON")?;
    }
    // WAL: readers never block the writer. synchronous=FULL: a commit is fsynced before it
    // returns, so an acknowledged export survives power loss, not only a process crash.
    if !read_only {
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::bug(format!("cannot enable WAL mode (got {mode})")));
        }
    }
    // mmap up to SQLite's default ceiling (2 GiB, address space only, the pages are the
    // kernel's page cache): a walk along an index reads its table pages without a copy each,
    // about half the time of a Loki walk over a 2.4 GB store against 256 MiB mapped.
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = OFF;
         PRAGMA cache_size = -32768;
         PRAGMA mmap_size = 2147418112;
         PRAGMA temp_store = MEMORY;",
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    pack::register_functions(&conn)?;
    Ok(conn)
}

/// Create the parent directory of a database file if needed.
fn ensure_parent_dir(path: &Path) -> StoreResult<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::io(format!("cannot create directory {}: {e}", dir.display())))?;
    }
    Ok(())
}

/// Apply pending migrations to the database at `path` (the `herald migrate` subcommand).
/// Returns the versions applied; empty when the schema was already current.
pub fn migrate(path: &Path) -> StoreResult<Vec<u32>> {
    ensure_parent_dir(path)?;
    let mut conn = connect(path, SqliteOptions::default().busy_timeout, false)?;
    prepare_schema(&mut conn, path, true)
}

struct Inner {
    path: PathBuf,
    busy_timeout: Duration,
    max_readers: usize,
    writer: Mutex<Writer>,
    /// Which block each stored trace is in (the writer adds, retention removes, reads look up).
    directory: RwLock<blocks::Directory>,
    /// Idle read connections; more are opened on demand and the extra ones closed after use.
    readers: Mutex<Vec<Connection>>,
    /// Read connections checked out right now (for the connection gauges).
    readers_busy: std::sync::atomic::AtomicUsize,
    /// One permit per read connection: a read holds one from before it takes a connection
    /// until its query has ended, so never more than `max_readers` exist.
    reader_slots: Arc<tokio::sync::Semaphore>,
    query_timeout: Duration,
    /// What the span and log retention jobs did.
    retention: crate::RetentionProgress,
}

/// Where a read is: a caller that goes away interrupts it only while it runs (an interrupt
/// after it ended could hit the next query on the same connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    Running,
    Ended,
}

/// What a read's progress handler stops a statement for: the read was cancelled, or the
/// statement used up the steps its caller allowed it ([`ReadSteps::bounded`]).
#[derive(Debug)]
pub(super) struct ReadSteps {
    cancelled: AtomicBool,
    /// Progress-handler calls left to the running statement ([`CANCEL_CHECK_STEPS`] VM steps each).
    left: AtomicI64,
}

impl ReadSteps {
    fn new() -> ReadSteps {
        ReadSteps { cancelled: AtomicBool::new(false), left: AtomicI64::new(i64::MAX) }
    }

    /// The progress handler's verdict: true stops the statement.
    fn stop(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || self.left.fetch_sub(1, Ordering::Relaxed) <= 0
    }

    /// Run `f` with its statements allowed about `steps` SQLite VM steps in all; returns its
    /// result and whether the allowance (not a cancellation) stopped it.
    pub(super) fn bounded<T>(&self, steps: i64, f: impl FnOnce() -> T) -> (T, bool) {
        self.left.store((steps / i64::from(CANCEL_CHECK_STEPS)).max(1), Ordering::Relaxed);
        let out = f();
        // Below zero only once a call found nothing left and stopped the statement.
        let spent = self.left.swap(i64::MAX, Ordering::Relaxed) < 0;
        (out, spent && !self.cancelled.load(Ordering::Relaxed))
    }
}

/// Interrupts its read when dropped before the read ended (the caller hung up or timed out).
/// `sqlite3_interrupt` only stops the statements running at that moment, so the read is
/// also marked cancelled: its connection's progress handler stops any statement it starts
/// afterwards (a walk between two levels would otherwise go on).
struct InterruptOnDrop {
    state: Arc<Mutex<ReadState>>,
    steps: Arc<ReadSteps>,
    handle: rusqlite::InterruptHandle,
}

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        let state = lock(&self.state);
        if *state == ReadState::Running {
            self.steps.cancelled.store(true, Ordering::Relaxed);
            self.handle.interrupt();
        }
    }
}

/// SQLite virtual-machine steps between two looks at a read's cancellation flag.
const CANCEL_CHECK_STEPS: std::ffi::c_int = 10_000;

/// The writer connection and the open span block it fills.
struct Writer {
    conn: Connection,
    open: blocks::OpenBlock,
    /// Copies the log into the database file beside the writer.
    checkpoints: checkpoint::Checkpointer,
}

/// Lock a mutex even if a previous holder panicked: a panic inside a write drops (rolls back)
/// its transaction first, so the connection is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Inner {
    /// An idle read connection, or a new one (the caller holds a reader slot).
    fn checkout(&self) -> StoreResult<Connection> {
        let idle = lock(&self.readers).pop();
        let conn = match idle {
            Some(c) => c,
            None => connect(&self.path, self.busy_timeout, true)?,
        };
        self.readers_busy.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    }

    fn checkin(&self, conn: Connection) {
        self.readers_busy.fetch_sub(1, Ordering::Relaxed);
        let mut idle = lock(&self.readers);
        if idle.len() < self.max_readers {
            idle.push(conn);
        }
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        use std::sync::atomic::Ordering::Relaxed;
        let idle = lock(&self.readers).pop();
        let conn = match idle {
            Some(c) => c,
            None => connect(&self.path, self.busy_timeout, true)?,
        };
        self.readers_busy.fetch_add(1, Relaxed);
        let result = f(&conn);
        self.readers_busy.fetch_sub(1, Relaxed);
        let mut idle = lock(&self.readers);
        if idle.len() < self.max_readers {
            idle.push(conn);
        }
        result
    }
}

/// The SQLite store. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.inner.path).finish()
    }
}

impl SqliteStore {
    /// Open (creating the file and its directory if needed) and check or migrate the schema.
    pub fn open(path: &Path, opts: SqliteOptions) -> StoreResult<SqliteStore> {
        ensure_parent_dir(path)?;
        let mut writer = connect(path, opts.busy_timeout, false)?;
        prepare_schema(&mut writer, path, opts.migrate)?;
        let started = std::time::Instant::now();
        let (directory, open) = blocks::load(&mut writer, opts.span_directory_bytes)?;
        // The checkpoint thread copies the log after each ingest commit; the writer's own
        // automatic checkpoint is only the log's bound.
        writer.pragma_update(None, "wal_autocheckpoint", checkpoint::LOG_PAGES)?;
        let checkpoints = checkpoint::Checkpointer::start(path, opts.busy_timeout)?;
        let stats = directory.stats();
        tracing::info!(
            entries = stats.entries,
            bytes = stats.bytes,
            cap_bytes = stats.cap_bytes,
            filtered_blocks = stats.filtered_blocks,
            open_block = open.block,
            elapsed = ?started.elapsed(),
            "span store directory loaded"
        );
        let inner = Arc::new(Inner {
            path: path.to_owned(),
            busy_timeout: opts.busy_timeout,
            max_readers: opts.read_connections.max(1),
            writer: Mutex::new(Writer { conn: writer, open, checkpoints }),
            directory: RwLock::new(directory),
            readers: Mutex::new(Vec::new()),
            readers_busy: Default::default(),
            reader_slots: Arc::new(tokio::sync::Semaphore::new(opts.read_connections.max(1))),
            query_timeout: opts.query_timeout,
            retention: Default::default(),
        });
        let limits = opts.span_retention;
        if limits.max_age.is_some() || limits.max_bytes.is_some() {
            retention::spawn(Arc::downgrade(&inner), limits);
        }
        if let Some(age) = opts.log_retention {
            logs::spawn(Arc::downgrade(&inner), age);
        }
        Ok(SqliteStore { inner })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// `(journal_mode, synchronous)` of the writer connection, e.g. `("wal", 2)`: 2 is FULL,
    /// the level that makes an acknowledged write survive power loss. For start-up logs and tests.
    pub fn durability(&self) -> StoreResult<(String, i64)> {
        let conn = &lock(&self.inner.writer).conn;
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        let sync: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        Ok((mode, sync))
    }

    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.read_steps(move |c, _| f(c)).await
    }

    /// [`Self::read`] for a read that bounds some of its statements' steps.
    async fn read_steps<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &ReadSteps) -> StoreResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        let budget = inner.query_timeout;
        let read = async move {
            let slot =
                inner.reader_slots.clone().acquire_owned().await.map_err(|_| StoreError::unavailable("closing"))?;
            let conn = inner.checkout()?;
            let state = Arc::new(Mutex::new(ReadState::Running));
            let steps = Arc::new(ReadSteps::new());
            let handler = steps.clone();
            conn.progress_handler(CANCEL_CHECK_STEPS, Some(move || handler.stop()));
            let _interrupt =
                InterruptOnDrop { state: state.clone(), steps: steps.clone(), handle: conn.get_interrupt_handle() };
            let task = tokio::task::spawn_blocking(move || {
                let result = f(&conn, &steps);
                conn.progress_handler(0, None::<fn() -> bool>);
                *lock(&state) = ReadState::Ended;
                inner.checkin(conn);
                drop(slot);
                result
            });
            task.await.map_err(|e| StoreError::bug(format!("read task failed: {e}")))?
        };
        match tokio::time::timeout(budget, read).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::query_timeout(Some(budget)).during("read")),
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    /// The writer connection, the checkpoint thread's, and the read connections (idle and
    /// checked out).
    fn connections(&self) -> Option<crate::Connections> {
        let busy = self.inner.readers_busy.load(Ordering::Relaxed);
        let idle = lock(&self.inner.readers).len();
        let writing = usize::from(self.inner.writer.try_lock().is_err());
        Some(crate::Connections { in_use: busy + writing, open: 2 + idle + busy })
    }

    fn notify(&self) -> Option<&dyn crate::notify::NotifyStore> {
        Some(self)
    }

    fn span_directory(&self) -> Option<crate::SpanDirectoryStats> {
        Some(self.inner.directory.read().unwrap_or_else(|p| p.into_inner()).stats())
    }

    fn retention(&self) -> Option<crate::RetentionSnapshot> {
        Some(self.inner.retention.snapshot())
    }

    /// The database file and its write-ahead log.
    async fn size_bytes(&self) -> StoreResult<Option<u64>> {
        let path = self.inner.path.clone();
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        Ok(Some(size(&path) + size(Path::new(&wal))))
    }

    async fn write(&self, batch: &WriteBatch) -> StoreResult<WriteOutcome> {
        // The blocking task needs a batch it owns.
        self.write_shared(Arc::new(batch.clone())).await
    }

    async fn write_shared(&self, batch: Arc<WriteBatch>) -> StoreResult<WriteOutcome> {
        if batch.records.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut writer = lock(&inner.writer);
            write::apply_batch(&mut writer, &inner.directory, &batch)
        })
        .await
        .map_err(|e| StoreError::bug(format!("write task failed: {e}")))?
        .map_err(|e| e.during("write"))
    }

    async fn span_refs(&self, entity_ids: &[String]) -> StoreResult<HashMap<String, SpanRef>> {
        let ids = entity_ids.to_vec();
        self.read(move |c| read::span_refs(c, &ids)).await.map_err(|e| e.during("span_refs"))
    }

    async fn check_ready(&self) -> StoreResult<()> {
        self.read(|c| {
            let v = current_version(c)?;
            if v != SCHEMA_VERSION {
                return Err(StoreError::Schema(format!(
                    "schema version {v}, this herald needs {SCHEMA_VERSION}; run `herald migrate`"
                )));
            }
            Ok(())
        })
        .await
        .map_err(|e| e.during("check_ready"))
    }

    async fn entity(&self, id: &str) -> StoreResult<Option<Entity>> {
        let id = id.to_owned();
        self.read(move |c| read::entity(c, &id)).await.map_err(|e| e.during("entity"))
    }

    async fn entities(&self, ids: &[String]) -> StoreResult<Vec<Entity>> {
        let ids = ids.to_vec();
        self.read(move |c| {
            let keys: Vec<&str> = ids.iter().map(String::as_str).collect();
            read::entity_rows_where(c, "id IN (SELECT value FROM json_each(?1))", &read::json_keys(&keys)?)
        })
        .await
        .map_err(|e| e.during("entities"))
    }

    async fn children_count(&self, id: &str) -> StoreResult<u64> {
        let id = id.to_owned();
        self.read(move |c| read::children_count(c, &id)).await.map_err(|e| e.during("children_count"))
    }

    async fn events(&self, entity_id: &str, page: &PageRequest) -> StoreResult<Page<EntityEvent>> {
        let (id, page) = (entity_id.to_owned(), page.clone());
        self.read(move |c| read::events(c, &id, &page)).await.map_err(|e| e.during("events"))
    }

    async fn operations(&self, entity_id: &str, page: &PageRequest) -> StoreResult<Page<Operation>> {
        let (id, page) = (entity_id.to_owned(), page.clone());
        self.read(move |c| read::operations(c, &id, &page)).await.map_err(|e| e.during("operations"))
    }

    async fn lineage(&self, query: &LineageQuery) -> StoreResult<Option<Lineage>> {
        let query = query.clone();
        self.read(move |c| read::lineage(c, &query)).await.map_err(|e| e.during("lineage"))
    }

    async fn descendants(&self, root: &str, max_depth: Option<u32>, cap: usize) -> StoreResult<Option<Descendants>> {
        let root = root.to_owned();
        self.read(move |c| read::descendants(c, &root, max_depth, cap)).await.map_err(|e| e.during("descendants"))
    }

    async fn graph(&self, id: &str, query: &GraphQuery) -> StoreResult<Option<Graph>> {
        let (id, query) = (id.to_owned(), query.clone());
        self.read(move |c| read::graph(c, &id, &query)).await.map_err(|e| e.during("graph"))
    }

    async fn search(&self, filter: &EntityFilter, page: &PageRequest) -> StoreResult<Page<Entity>> {
        let (filter, page) = (filter.clone(), page.clone());
        self.read(move |c| read::search(c, &filter, &page)).await.map_err(|e| e.during("search"))
    }

    async fn instruments(&self) -> StoreResult<Vec<String>> {
        self.read(read::instruments).await.map_err(|e| e.during("instruments"))
    }

    async fn stages(&self, instrument_id: &str) -> StoreResult<Vec<StageSummary>> {
        let id = instrument_id.to_owned();
        self.read(move |c| read::stages(c, &id)).await.map_err(|e| e.during("stages"))
    }

    async fn log_search(&self, filter: &LogFilter, page: &PageRequest) -> StoreResult<Page<LogRecorded>> {
        let (filter, page) = (filter.clone(), page.clone());
        self.read_steps(move |c, steps| logs::search(c, &filter, &page, steps))
            .await
            .map_err(|e| e.during("log_search"))
    }

    async fn log_values(&self, field: LogField, from_ns: i64, to_ns: i64, limit: usize) -> StoreResult<Vec<String>> {
        self.read(move |c| logs::values(c, field, from_ns, to_ns, limit)).await.map_err(|e| e.during("log_values"))
    }

    async fn add_flag(&self, flag: &NewFlag) -> StoreResult<FlagAdded> {
        let (inner, flag) = (self.inner.clone(), flag.clone());
        tokio::task::spawn_blocking(move || flags::add(&mut lock(&inner.writer).conn, &flag))
            .await
            .map_err(|e| StoreError::bug(format!("flag task failed: {e}")))?
            .map_err(|e| e.during("add_flag"))
    }

    async fn clear_flag(&self, entity_id: &str, flag_id: &str, cleared_by: &str) -> StoreResult<Cleared> {
        let inner = self.inner.clone();
        let (entity_id, flag_id, cleared_by) = (entity_id.to_owned(), flag_id.to_owned(), cleared_by.to_owned());
        tokio::task::spawn_blocking(move || {
            flags::clear(&mut lock(&inner.writer).conn, &entity_id, &flag_id, &cleared_by)
        })
        .await
        .map_err(|e| StoreError::bug(format!("flag task failed: {e}")))?
        .map_err(|e| e.during("clear_flag"))
    }

    async fn flags(&self, entity_ids: &[String], active_only: bool) -> StoreResult<Vec<Flag>> {
        let ids = entity_ids.to_vec();
        self.read(move |c| flags::list(c, &ids, active_only)).await.map_err(|e| e.during("flags"))
    }

    async fn instrument_events(&self, query: &EventQuery, page: &PageRequest) -> StoreResult<Page<EntityEvent>> {
        let (query, page) = (query.clone(), page.clone());
        self.read(move |c| window::instrument_events(c, &query, &page)).await.map_err(|e| e.during("instrument_events"))
    }

    async fn numeric_fields(
        &self,
        instrument_id: &str,
        from_ns: i64,
        to_ns: i64,
        sample: usize,
    ) -> StoreResult<Vec<String>> {
        let id = instrument_id.to_owned();
        self.read(move |c| window::numeric_fields(c, &id, from_ns, to_ns, sample))
            .await
            .map_err(|e| e.during("numeric_fields"))
    }

    async fn monitor_points(&self, query: &MonitorQuery) -> StoreResult<MonitorPoints> {
        let query = query.clone();
        self.read(move |c| window::monitor_points(c, &query)).await.map_err(|e| e.during("monitor_points"))
    }

    async fn stage_histogram(&self, query: &StageHistogramQuery) -> StoreResult<Vec<StageBucket>> {
        let query = query.clone();
        self.read(move |c| window::stage_histogram(c, &query)).await.map_err(|e| e.during("stage_histogram"))
    }

    async fn trace(&self, trace_id: &str, max_spans: usize) -> StoreResult<Option<StoredTrace>> {
        let (id, inner) = (trace_id.to_owned(), self.inner.clone());
        self.read(move |c| traces::trace(c, &inner.directory, &id, max_spans)).await.map_err(|e| e.during("trace"))
    }

    async fn traces(&self, filter: &TraceFilter, page: &PageRequest) -> StoreResult<Page<TraceSummary>> {
        let (filter, page) = (filter.clone(), page.clone());
        self.read(move |c| traces::traces(c, &filter, &page)).await.map_err(|e| e.during("traces"))
    }

    async fn prune_logs(&self, max_age: Duration, now_ns: i64) -> StoreResult<u64> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || logs::prune(&inner, max_age, now_ns))
            .await
            .map_err(|e| StoreError::bug(format!("log retention task failed: {e}")))?
            .map_err(|e| e.during("prune_logs"))
    }

    async fn span_entities(&self, keys: &[(String, Option<String>)]) -> StoreResult<Vec<Option<String>>> {
        let (keys, inner) = (keys.to_vec(), self.inner.clone());
        self.read(move |c| traces::span_entities(c, &inner.directory, &keys))
            .await
            .map_err(|e| e.during("span_entities"))
    }

    async fn prune_spans(&self, limits: &crate::SpanRetention, now_ns: i64) -> StoreResult<u64> {
        let (inner, limits) = (self.inner.clone(), *limits);
        tokio::task::spawn_blocking(move || retention::pass(&inner, &limits, now_ns))
            .await
            .map_err(|e| StoreError::bug(format!("retention task failed: {e}")))?
            .map_err(|e| e.during("prune_spans"))
    }
}
