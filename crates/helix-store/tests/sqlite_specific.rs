//! SQLite-only behaviour the shared suite cannot see: migrations and their refusals, reopening,
//! durability pragmas, atomicity of a failed batch, and lock contention reported as transient.

use std::path::{Path, PathBuf};
use std::time::Duration;

use helix_store::conformance::{creation, log, span, trace_of, T0};
use helix_store::sqlite::{create_at_version, migrate, SCHEMA_VERSION};
use helix_store::{PageRequest, SqliteOptions, SqliteStore, Store, StoreError, TraceFilter, WriteBatch, WriteRecord};
use rusqlite::Connection;

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("data").join("herald.db")
}

fn open(path: &Path) -> Result<SqliteStore, StoreError> {
    SqliteStore::open(path, SqliteOptions::default())
}

fn recorded_versions(path: &Path) -> Vec<(u32, String)> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn.prepare("SELECT version, name FROM schema_migrations ORDER BY version").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

#[test]
fn open_creates_directories_and_records_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path).unwrap();
    assert!(path.exists());
    let names: Vec<(u32, &str)> = vec![
        (1, "core"),
        (2, "logs"),
        (3, "spans"),
        (4, "log_search"),
        (5, "span_blocks"),
        (6, "notifications"),
        (7, "flags"),
        (8, "log_stream_index"),
        (9, "outbox_rowid"),
        (10, "span_packs"),
        (11, "outbox_slim"),
        (12, "log_blocks"),
        (13, "log_trace_epochs"),
    ];
    let names: Vec<(u32, String)> = names.into_iter().map(|(v, n)| (v, n.to_owned())).collect();
    assert_eq!(recorded_versions(&path), names);
    assert_eq!(SCHEMA_VERSION as usize, names.len());
    drop(store);
    // Re-opening applies nothing more.
    open(&path).unwrap();
    assert_eq!(recorded_versions(&path).len(), names.len());
}

#[test]
fn migrate_subcommand_applies_pending_versions_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    assert_eq!(migrate(&path).unwrap(), (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    assert_eq!(migrate(&path).unwrap(), Vec::<u32>::new());
    let no_migrate = SqliteOptions { migrate: false, ..Default::default() };
    SqliteStore::open(&path, no_migrate).expect("a current schema opens without migrating");
}

/// Logs stored before the log search existed (schema 3) are found by severity and text after
/// the upgrade: the migration fills in their severity numbers and indexes their bodies.
#[tokio::test]
async fn log_search_migration_covers_existing_logs() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let conn = create_at_version(&path, 3).unwrap();
    conn.execute_batch(
        "INSERT INTO logs (timestamp_ns, severity, body, dedup_hash) VALUES
             (1, 'WARNING', 'legacy: Disk almost full', 1), (2, 'INFO', 'legacy: all good', 2)",
    )
    .unwrap();
    drop(conn);
    let store = open(&path).unwrap();
    let found = |f: helix_store::LogFilter| {
        let store = &store;
        async move {
            let page = store.log_search(&f, &PageRequest::first(10)).await.unwrap();
            page.items.into_iter().map(|l| (l.body, l.severity_number)).collect::<Vec<_>>()
        }
    };
    let warn = vec![("legacy: Disk almost full".to_owned(), 13)];
    assert_eq!(found(helix_store::LogFilter { min_severity: Some(13), ..Default::default() }).await, warn);
    assert_eq!(found(helix_store::LogFilter { text: Some("DISK".into()), ..Default::default() }).await, warn);
    assert_eq!(found(helix_store::LogFilter { text: Some("legacy".into()), ..Default::default() }).await.len(), 2);
}

/// Lines stored under the FTS5 index (schema 11) are found by text after the upgrade to the
/// block filters (schema 12), which the migration builds from them; a text in none of them
/// finds nothing, and new lines are found beside the old ones.
#[tokio::test]
async fn log_blocks_migration_builds_filters_of_existing_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let conn = create_at_version(&path, 11).unwrap();
    {
        let mut stmt = conn
            .prepare("INSERT INTO logs (timestamp_ns, severity, body, dedup_hash) VALUES (?1, 'INFO', ?2, ?1)")
            .unwrap();
        for i in 0..10_000i64 {
            let body =
                if i == 4_321 { format!("line {i}: Checksum MISMATCH on beam 3") } else { format!("line {i}: ok") };
            stmt.execute(rusqlite::params![i + 1, body]).unwrap();
        }
    }
    drop(conn);
    let store = open(&path).unwrap();
    let blocks: i64 =
        Connection::open(&path).unwrap().query_row("SELECT count(*) FROM log_blocks", [], |r| r.get(0)).unwrap();
    assert_eq!(blocks, 3, "10 000 rows are three blocks of 4 096");
    let texts = |text: &str| {
        let (store, f) = (&store, helix_store::LogFilter { text: Some(text.into()), ..Default::default() });
        async move {
            let page = store.log_search(&f, &PageRequest::first(10)).await.unwrap();
            page.items.into_iter().map(|l| l.body).collect::<Vec<_>>()
        }
    };
    assert_eq!(texts("checksum mismatch").await, vec!["line 4321: Checksum MISMATCH on beam 3".to_owned()]);
    assert!(texts("lost lock").await.is_empty());
    let new_line = log(20_000, "checksum mismatch again", None, None);
    store.write(&WriteBatch::of(vec![WriteRecord::Log(new_line)])).await.unwrap();
    assert_eq!(
        texts("CHECKSUM mismatch").await,
        vec!["line 4321: Checksum MISMATCH on beam 3".to_owned(), "checksum mismatch again".to_owned()]
    );
}

/// A trace's lines stored under schema 12 are found after the upgrade to the epoch-led trace
/// index (schema 13) wherever their row IDs fall (three epochs of 65 536 here), in time order,
/// beside a line written afterwards; an entity's search finds the lines of its creation's trace.
#[tokio::test]
async fn trace_lines_are_found_across_epochs_and_migration_13() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let (trace, other) = (trace_of("chime/B0001"), trace_of("elsewhere"));
    let conn = create_at_version(&path, 12).unwrap();
    {
        let mut stmt = conn
            .prepare(
                "INSERT INTO logs (id, timestamp_ns, severity, body, trace_id, instrument_id, dedup_hash)
                 VALUES (?1, ?2, 'INFO', ?3, ?4, 'CHIME', ?1)",
            )
            .unwrap();
        // Later row IDs carry earlier times: the answer's order is the lines' time.
        for (id, offset, body) in
            [(5, 300, "first epoch"), (70_000, 200, "second epoch"), (140_000, 100, "third epoch")]
        {
            stmt.execute(rusqlite::params![id, T0 + offset, body, trace]).unwrap();
        }
        for id in [6, 70_001, 139_999] {
            stmt.execute(rusqlite::params![id, T0 + 150, "another trace", other]).unwrap();
        }
    }
    drop(conn);
    let store = open(&path).unwrap();
    let bodies = |f: helix_store::LogFilter| {
        let store = &store;
        async move {
            let page = store.log_search(&f, &PageRequest::first(10)).await.unwrap();
            page.items.into_iter().map(|l| l.body).collect::<Vec<_>>()
        }
    };
    let of_trace = || helix_store::LogFilter { trace_id: Some(trace.clone()), ..Default::default() };
    assert_eq!(bodies(of_trace()).await, vec!["third epoch", "second epoch", "first epoch"]);
    store
        .write(&WriteBatch::of(vec![
            WriteRecord::Created(creation("chime/B0001", &[], 50)),
            WriteRecord::Log(log(400, "written after the upgrade", Some(&trace), None)),
        ]))
        .await
        .unwrap();
    let expected = vec!["third epoch", "second epoch", "first epoch", "written after the upgrade"];
    assert_eq!(bodies(of_trace()).await, expected);
    let of_entity = helix_store::LogFilter { entity_id: Some("chime/B0001".into()), ..Default::default() };
    assert_eq!(bodies(of_entity).await, expected);
    let with_service = helix_store::LogFilter { instrument_id: Some("CHIME".into()), ..of_trace() };
    assert_eq!(bodies(with_service).await, expected);
}

/// Log retention removes the search filters of the blocks it empties (all of them when no line
/// is left), and lines written afterwards are found by text again.
#[tokio::test]
async fn log_retention_drops_the_filters_of_emptied_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path).unwrap();
    let lines = (1..=10_000).map(|i| WriteRecord::Log(log(i, &format!("old line {i}"), None, None))).collect();
    store.write(&WriteBatch::of(lines)).await.unwrap();
    let blocks = || -> i64 {
        Connection::open(&path).unwrap().query_row("SELECT count(*) FROM log_blocks", [], |r| r.get(0)).unwrap()
    };
    assert_eq!(blocks(), 3);
    // The first 9 000 lines go: the first two blocks (row IDs below 8 192) are empty.
    assert_eq!(store.prune_logs(Duration::from_nanos(1_000), T0 + 10_001).await.unwrap(), 9_000);
    assert_eq!(blocks(), 1);
    assert_eq!(store.prune_logs(Duration::from_nanos(1), T0 + 20_000).await.unwrap(), 1_000);
    assert_eq!(blocks(), 0);
    store
        .write(&WriteBatch::of(vec![WriteRecord::Log(log(30_000, "new line after retention", None, None))]))
        .await
        .unwrap();
    let f = helix_store::LogFilter { text: Some("AFTER RETENTION".into()), ..Default::default() };
    let found = store.log_search(&f, &PageRequest::first(10)).await.unwrap();
    assert_eq!(found.items.into_iter().map(|l| l.body).collect::<Vec<_>>(), vec!["new line after retention"]);
}

#[test]
fn behind_schema_without_migrate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let err = SqliteStore::open(&path, SqliteOptions { migrate: false, ..Default::default() }).unwrap_err();
    match err {
        StoreError::Schema(msg) => assert!(msg.contains("herald migrate"), "{msg}"),
        other => panic!("expected a schema refusal, got {other:?}"),
    }
}

#[test]
fn newer_schema_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .execute("INSERT INTO schema_migrations (version, name) VALUES (99, 'future')", [])
        .unwrap();
    let err = open(&path).unwrap_err();
    match err {
        StoreError::Schema(msg) => {
            assert!(msg.contains("99") && msg.contains("newer"), "{msg}");
        }
        other => panic!("expected a schema refusal, got {other:?}"),
    }
    assert!(migrate(&path).is_err(), "migrate refuses too");
}

#[test]
fn failed_migration_is_refused_and_leaves_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // A foreign table in the way makes migration 1 fail.
    Connection::open(&path).unwrap().execute_batch("CREATE TABLE entities (x INTEGER)").unwrap();
    let err = open(&path).unwrap_err();
    match err {
        StoreError::Schema(msg) => {
            assert!(msg.contains("001_core") && msg.contains("failed"), "{msg}")
        }
        other => panic!("expected a schema error, got {other:?}"),
    }
    assert!(recorded_versions(&path).is_empty(), "nothing recorded for a failed migration");
}

#[tokio::test]
async fn data_survives_reopen_and_durability_pragmas_are_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path).unwrap();
    let (mode, sync) = store.durability().unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(sync, 2, "synchronous=FULL");
    let batch = WriteBatch::of(vec![WriteRecord::Created(creation("keep", &["p"], 0))]);
    store.write(&batch).await.unwrap();
    drop(store);
    let store = open(&path).unwrap();
    let e = store.entity("keep").await.unwrap().expect("entity kept across reopen");
    assert_eq!(e.parent_ids, vec!["p".to_owned()]);
    store.check_ready().await.unwrap();
    assert_eq!(store.write(&batch).await.unwrap(), Default::default(), "idempotency survives reopen");
}

#[tokio::test]
async fn committed_batches_reach_the_database_file_without_the_writer_checkpointing() {
    // The writer's own checkpoint only starts at a log far larger than this test writes: if
    // the rows reach the database file, the checkpoint thread copied them there.
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path).unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    for b in 0..4 {
        let records = (0..2_000).map(|i| WriteRecord::Created(creation(&format!("ck-{b}-{i}"), &["p"], i))).collect();
        store.write(&WriteBatch::of(records)).await.unwrap();
    }
    let wal = path.with_file_name("herald.db-wal");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let grown = loop {
        let now = std::fs::metadata(&path).unwrap().len();
        if now > before + 1_000_000 || std::time::Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let wal_bytes = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert!(grown > before + 1_000_000, "database file {before} → {grown} bytes, log {wal_bytes} bytes");
    for id in ["ck-0-0", "ck-3-1999"] {
        assert!(store.entity(id).await.unwrap().is_some(), "{id} is stored");
    }
}

#[tokio::test]
async fn failed_batch_leaves_no_partial_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path).unwrap();
    // Make the database reject one record: the whole batch must roll back.
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER reject_boom BEFORE INSERT ON entity_operations WHEN NEW.operation = 'boom'
             BEGIN SELECT RAISE(ABORT, 'rejected for the test'); END",
        )
        .unwrap();
    helix_store::conformance::failed_batch_leaves_no_partial_rows(&store).await;
}

#[tokio::test]
async fn lock_contention_is_transient() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store =
        SqliteStore::open(&path, SqliteOptions { busy_timeout: Duration::from_millis(100), ..Default::default() })
            .unwrap();
    let holder = Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let batch = WriteBatch::of(vec![WriteRecord::Created(creation("busy", &[], 0))]);
    let err = store.write(&batch).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    // Readers are not blocked by a writer in WAL mode.
    assert!(store.entity("busy").await.unwrap().is_none());
    holder.execute_batch("ROLLBACK").unwrap();
    store.write(&batch).await.unwrap();
    assert!(store.entity("busy").await.unwrap().is_some());
}

/// A database the span store of schema 5 wrote (a row per span and per trace summary, keyed
/// by block and trace) keeps every span through migration 10 and its packing at open: the same
/// traces, spans and searches as a store that wrote the same data at schema 10, and it takes
/// new spans, retried ones included, afterwards.
#[tokio::test]
async fn span_packs_migration_keeps_the_spans_of_schema_5() {
    use helix_model::span::stored;
    let dir = tempfile::tempdir().unwrap();
    let mut spans = Vec::new();
    for i in 0..30i64 {
        let seed = format!("m-{i}");
        spans.push(span(&seed, &seed, None, if i % 7 == 0 { "rare" } else { "step" }, i * 1_000));
        spans.push(span(&seed, &format!("{seed}-c"), Some(&seed), "child", i * 1_000 + 10));
    }
    let mut entity_span = span("m-e", "m-e", None, "detect", 50_000);
    entity_span.role = helix_model::SpanRole::Creation;
    entity_span.entity_id = Some("cand-m".into());
    spans.push(entity_span);
    let records: Vec<WriteRecord> = spans.iter().cloned().map(WriteRecord::Span).collect();
    // The current schema, written through the store: what the migrated database must answer.
    let current_path = dir.path().join("current.db");
    let current = open(&current_path).unwrap();
    current.write(&WriteBatch::of(records.clone())).await.unwrap();
    drop(current);
    // Schema 5, holding the rows its writer left: span rows in two blocks, summaries, sources.
    let old_path = dir.path().join("old.db");
    {
        let conn = create_at_version(&old_path, 8).unwrap();
        for (i, s) in spans.iter().enumerate() {
            let mut rest = Vec::new();
            let form = stored::split_into(s, &mut rest);
            let source = stored::source_id(s);
            conn.execute(
                "INSERT OR IGNORE INTO span_sources VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                rusqlite::params![
                    source,
                    s.service_name,
                    s.process_name,
                    s.instrument_id,
                    s.scope_name,
                    s.scope_version,
                    s.resource_proto
                ],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO spans (block, trace_id, span_id, parent_span_id, start_ns, duration_ns, name, kind,
                     status_code, status_message, source_id, form, entity_id, span_rest)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                rusqlite::params![
                    1 + i64::from(i >= 30),
                    stored::id_bytes(&s.trace_id, 16).unwrap(),
                    stored::id_bytes(&s.span_id, 8).unwrap(),
                    s.parent_span_id.as_deref().map(|p| stored::id_bytes(p, 8).unwrap()),
                    s.start_ns,
                    s.duration_ns(),
                    s.name,
                    s.kind,
                    s.status_code,
                    s.status_message,
                    source,
                    form,
                    s.entity_id,
                    rest
                ],
            )
            .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO spans (block, trace_id, span_id, parent_span_id, start_ns, duration_ns, name, kind,
                 status_code, status_message, source_id, form, entity_id, span_rest, span_count, root_start_ns, bytes)
                 SELECT block, trace_id, x'0000000000000000', min(span_id), min(start_ns),
                     max(start_ns + duration_ns) - min(start_ns), min(name), 0, 0, '', min(source_id), 16, NULL, x'',
                     count(*), min(start_ns), 100
                 FROM spans GROUP BY block, trace_id;
             UPDATE span_blocks SET sealed = 1, span_count = 30 WHERE block = 1;
             INSERT INTO span_blocks (block, sealed, opened_ns, span_count) VALUES (2, 0, 0, 31);",
        )
        .unwrap();
    }
    let migrated = open(&old_path).expect("schema 5 migrates");
    assert_eq!(recorded_versions(&old_path).last().map(|v| v.0), Some(SCHEMA_VERSION));
    let current = open(&current_path).unwrap();
    let everything = TraceFilter::default();
    let first = |store: SqliteStore, f: TraceFilter| async move {
        store.traces(&f, &PageRequest::first(100)).await.unwrap().items
    };
    let all = first(migrated.clone(), everything.clone()).await;
    assert_eq!(all.len(), 31);
    assert_eq!(all, first(current.clone(), everything.clone()).await, "the same summaries, newest first");
    for f in [
        TraceFilter { span_name: Some("rare".into()), ..Default::default() },
        TraceFilter { entity_id: Some("cand-m".into()), ..Default::default() },
        TraceFilter { span_name: Some("child".into()), min_duration_ns: Some(500), ..Default::default() },
    ] {
        let got = first(migrated.clone(), f.clone()).await;
        assert!(!got.is_empty());
        assert_eq!(got, first(current.clone(), f).await);
    }
    for t in &all {
        let got = migrated.trace(&t.trace_id, 100).await.unwrap().expect("every trace is found by its ID");
        assert_eq!(got, current.trace(&t.trace_id, 100).await.unwrap().unwrap(), "byte-exact spans");
    }
    // A retried span adds nothing; a new span of a migrated trace joins it, after a reopen too.
    for store in [migrated.clone(), {
        drop(migrated);
        open(&old_path).unwrap()
    }] {
        let again = store.write(&WriteBatch::of(records[..4].to_vec())).await.unwrap();
        assert_eq!(again.spans_inserted, 0);
    }
    let migrated = open(&old_path).unwrap();
    let late = WriteRecord::Span(span("m-3", "m-3-late", Some("m-3"), "late", 3_500));
    assert_eq!(migrated.write(&WriteBatch::of(vec![late])).await.unwrap().spans_inserted, 1);
    assert_eq!(migrated.trace(&trace_of("m-3"), 100).await.unwrap().unwrap().spans.len(), 3);
    let summary = first(migrated.clone(), everything).await;
    assert_eq!(summary.iter().find(|t| t.trace_id == trace_of("m-3")).unwrap().span_count, 3);
    let late_name = TraceFilter { span_name: Some("late".into()), ..Default::default() };
    assert_eq!(first(migrated.clone(), late_name).await.len(), 1, "the late span's name finds its trace");
    let conn = Connection::open(&old_path).unwrap();
    let old_tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master WHERE name IN ('spans_005', 'trace_terms_005')", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(old_tables, 0, "the rows of schema 5 are gone once packed");
}

/// Past one block's worth of spans the open block is sealed: a retry of a span in the sealed
/// block still adds nothing, a late span of one of its traces joins that trace, both after a
/// reopen too (the directory is rebuilt from the sealed block's fingerprints), and retention
/// removes the old block whole while the young spans stay.
#[tokio::test]
async fn sealed_blocks_stay_idempotent_take_late_spans_and_retire_whole() {
    const DAY: i64 = 86_400_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path).unwrap();
    let old: Vec<WriteRecord> = (0..17_000i64)
        .map(|i| WriteRecord::Span(span(&format!("s-{i}"), &format!("s-{i}"), None, "step", i)))
        .collect();
    store.write(&WriteBatch::of(old.clone())).await.unwrap();
    let young = WriteRecord::Span(span("young", "young", None, "fresh", 10 * DAY));
    store.write(&WriteBatch::of(vec![young])).await.unwrap();
    let blocks = || {
        let conn = Connection::open(&path).unwrap();
        let rows: Vec<(i64, i64, i64)> = conn
            .prepare("SELECT block, sealed, span_count FROM span_blocks ORDER BY block")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows
    };
    assert_eq!(blocks(), vec![(1, 1, 17_000), (2, 0, 1)], "the full block is sealed, the young trace opens the next");
    for store in [store.clone(), {
        drop(store);
        open(&path).unwrap()
    }] {
        let retry = store.write(&WriteBatch::of(old[..100].to_vec())).await.unwrap();
        assert_eq!(retry.spans_inserted, 0, "spans of the sealed block are known");
    }
    let store = open(&path).unwrap();
    let late = WriteRecord::Span(span("s-5", "s-5-late", Some("s-5"), "late", 7));
    assert_eq!(store.write(&WriteBatch::of(vec![late])).await.unwrap().spans_inserted, 1);
    let trace = store.trace(&trace_of("s-5"), 10).await.unwrap().expect("found in the sealed block");
    assert_eq!(trace.spans.len(), 2, "the late span joined its trace");
    assert_eq!(blocks()[0], (1, 1, 17_001), "where the trace lives");
    let limits = helix_store::SpanRetention { max_age: Some(Duration::from_secs(7 * 86_400)), max_bytes: None };
    let now = T0 + 10 * DAY;
    assert_eq!(store.prune_spans(&limits, now).await.unwrap(), 17_001);
    assert_eq!(blocks(), vec![(2, 0, 1)], "the old block is gone whole");
    assert!(store.trace(&trace_of("s-5"), 10).await.unwrap().is_none());
    assert!(store.trace(&trace_of("young"), 10).await.unwrap().is_some());
    let listed = store.traces(&TraceFilter::default(), &PageRequest::first(10)).await.unwrap().items;
    assert_eq!(listed.len(), 1);
}

/// The span directory under a cap far below its traces' entries (60 000 traces, 480 kB of
/// entries, under a 128 KiB cap): memory stays under the cap, the newest blocks are held, older
/// ones filtered or looked up on disk, and every trace is still found by ID with its spans; a
/// retried export adds nothing; a late span of an evicted trace starts a second row that the
/// by-ID read, the search and retention treat as one trace; all of it again after reopening.
#[tokio::test]
async fn a_capped_span_directory_still_finds_every_trace() {
    use helix_store::conformance::T0;
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let cap = 128 << 10;
    let opts = || SqliteOptions { span_directory_bytes: cap, ..Default::default() };
    let store = SqliteStore::open(&path, opts()).unwrap();
    let n = 60_000i64;
    let seed = |i: i64| format!("cap-{i}");
    let one = |i: i64| span(&seed(i), &seed(i), None, if i % 1000 == 0 { "rare" } else { "step" }, i * 1_000);
    let mut last_batch = None;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1_000) {
        let batch = WriteBatch::of(chunk.iter().map(|i| WriteRecord::Span(one(*i))).collect());
        assert_eq!(store.write(&batch).await.unwrap().spans_inserted, chunk.len() as u64);
        let stats = store.span_directory().unwrap();
        assert!(stats.bytes <= cap as u64, "over the cap: {stats:?}");
        last_batch = Some(batch);
    }
    let stats = store.span_directory().unwrap();
    assert!(stats.entries < n as u64 / 4, "most entries left memory: {stats:?}");
    assert!(stats.resident_blocks >= 1 && stats.filtered_blocks >= 1, "held, filtered and bare blocks: {stats:?}");
    let found = |store: SqliteStore| async move {
        // Every 97th trace, and the first and last ones (the very first is checked apart: it
        // gets a late span): all there, each with its span.
        for i in (97..n).step_by(97).chain([1, 2, n - 1]) {
            let t = store.trace(&trace_of(&seed(i)), 10).await.unwrap();
            assert_eq!(t.map(|t| t.spans), Some(vec![one(i)]), "trace {i}");
        }
        assert_eq!(store.trace(&trace_of("cap-never"), 10).await.unwrap(), None);
    };
    found(store.clone()).await;
    assert_eq!(store.trace(&trace_of(&seed(0)), 10).await.unwrap().map(|t| t.spans), Some(vec![one(0)]));
    // A retried export (recent, so its traces are held) adds no span.
    let retry = last_batch.unwrap();
    assert_eq!(store.write(&retry).await.unwrap().spans_inserted, 0, "retried export");
    // A late span of the oldest trace, long evicted: a second row, read back as one trace.
    let late = span(&seed(0), "cap-0-late", Some(&seed(0)), "late", 500);
    let late_batch = WriteBatch::of(vec![WriteRecord::Span(late.clone())]);
    assert_eq!(store.write(&late_batch).await.unwrap().spans_inserted, 1);
    assert_eq!(store.write(&late_batch).await.unwrap().spans_inserted, 0, "the late span retried");
    let both = store.trace(&trace_of(&seed(0)), 10).await.unwrap().unwrap().spans;
    assert_eq!(both, vec![one(0), late.clone()], "both rows, ordered by start");
    let window = TraceFilter { from_ns: Some(T0), to_ns: Some(T0 + 1_500), ..Default::default() };
    let page = store.traces(&window, &PageRequest::first(10)).await.unwrap();
    let listed: Vec<(String, u64)> = page.items.iter().map(|t| (t.trace_id.clone(), t.span_count)).collect();
    assert_eq!(listed, vec![(trace_of(&seed(1)), 1), (trace_of(&seed(0)), 2)], "the split trace listed once");
    drop(store);

    // Reopened under the same cap: the same answers, the open block's traces still held.
    let store = SqliteStore::open(&path, opts()).unwrap();
    let stats = store.span_directory().unwrap();
    assert!(stats.bytes <= cap as u64 && stats.entries < n as u64 / 4, "{stats:?}");
    found(store.clone()).await;
    assert_eq!(store.write(&retry).await.unwrap().spans_inserted, 0, "retried after reopening");
    assert_eq!(store.trace(&trace_of(&seed(0)), 10).await.unwrap().unwrap().spans, vec![one(0), late]);

    // Retention by age removes both rows of the split trace (both started before the cutoff).
    let day = 86_400 * 1_000_000_000i64;
    let limits = helix_store::SpanRetention { max_age: Some(Duration::from_secs(86_400)), max_bytes: None };
    let removed = store.prune_spans(&limits, T0 + day + 30_000 * 1_000).await.unwrap();
    assert_eq!(removed, 30_000 + 1, "the traces that started before the cutoff, and the late span");
    assert_eq!(store.trace(&trace_of(&seed(0)), 10).await.unwrap(), None);
    assert_eq!(store.trace(&trace_of(&seed(29_999)), 10).await.unwrap(), None);
    for i in [30_000, 30_001, 45_000, n - 1] {
        assert_eq!(store.trace(&trace_of(&seed(i)), 10).await.unwrap().map(|t| t.spans), Some(vec![one(i)]));
    }
    assert!(store.span_directory().unwrap().bytes <= cap as u64);
}

/// Notifications waiting in the outbox of schema 10 (each row a full copy of its event) are
/// claimed after the upgrade to the slim outbox (011) with everything they said, in their
/// order; an event's row now points at its event row.
#[tokio::test]
async fn pending_notifications_survive_the_slim_outbox_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let conn = create_at_version(&path, 10).unwrap();
    conn.execute_batch(
        r#"INSERT INTO entity_events (instrument_id, entity_id, event_name, timestamp_ns, metadata, trace_id, span_id, ordinal)
               VALUES ('CHIME', 'blk-1', 'helix.error', 100, '{"message":"disk full on node 3"}', 't1', 's1', 0);
           INSERT INTO notification_outbox (id, kind, instrument_id, event_name, entity_id, span_id, ordinal, stage,
               fingerprint, timestamp_ns, metadata, attempts, next_attempt_ns, progress, created_ns)
           VALUES
               (5, 'event', 'CHIME', 'helix.error', 'blk-1', 's1', 0, 'archiver', 'f1', 100,
                '{"message":"disk full on node 3"}', 2, 0, '{"github_done":true}', 90),
               (6, 'digest', 'CHIME', 'helix.error', 'blk-2', NULL, NULL, 'archiver', 'f1', 200,
                '{"message":"disk full on node 4"}', 0, 0, '{}', 95),
               (7, 'event', 'CHIME', 'helix.error', 'blk-3', 's-gone', 0, 'archiver', 'f1', 300,
                '{"message":"disk full on node 5"}', 0, 0, '{}', 96);
           UPDATE notification_outbox SET destination = 'HOOK', digest_count = 18, digest_window_ns = 60 WHERE id = 6;
           INSERT INTO notification_outbox (kind, instrument_id, event_name, entity_id, stage, fingerprint,
               timestamp_ns, state, created_ns)
           VALUES ('event', 'CHIME', 'helix.error', 'blk-0', '', 'f0', 1, 'done', 1);"#,
    )
    .unwrap();
    drop(conn);
    let store = open(&path).expect("schema 10 migrates");
    assert_eq!(recorded_versions(&path).last().map(|v| v.0), Some(SCHEMA_VERSION));
    let notify = store.notify().unwrap();
    assert_eq!(notify.outbox_depth().await.unwrap(), 3, "the pending rows; the finished one is gone");
    let items = notify.claim_outbox("d", 1_000, 1_000_000, 10).await.unwrap();
    let got: Vec<_> = items
        .iter()
        .map(|i| (i.id, i.kind.as_str(), i.entity_id.as_str(), i.timestamp_ns, i.metadata["message"].as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (5, "event", "blk-1", 100, "disk full on node 3"),
            (6, "digest", "blk-2", 200, "disk full on node 4"),
            // Its event row was never there: the copy it had is what it says.
            (7, "event", "blk-3", 300, "disk full on node 5"),
        ]
    );
    assert_eq!((items[0].attempts, items[0].progress.github_done, items[0].stage.as_str()), (2, true, "archiver"));
    assert_eq!((items[1].destination.as_str(), items[1].digest_count, items[1].digest_window_ns), ("HOOK", 18, 60));
    let conn = Connection::open(&path).unwrap();
    let event_id: Option<i64> =
        conn.query_row("SELECT event_id FROM notification_outbox WHERE id = 5", [], |r| r.get(0)).unwrap();
    let stored: i64 = conn.query_row("SELECT id FROM entity_events WHERE span_id = 's1'", [], |r| r.get(0)).unwrap();
    assert_eq!(event_id, Some(stored));
}

/// An event's outbox row keeps the class and points at the event row for the rest. Nothing in
/// the SQLite store deletes events, but if the row is gone (by hand) before delivery, the
/// notification is still delivered as its class — same fingerprint, so the same GitHub issue,
/// rate limit and silences — with a message saying the event is gone, not lost or a crash.
#[tokio::test]
async fn a_notification_whose_event_row_is_gone_is_still_delivered_as_its_class() {
    use helix_store::conformance::{failing, notifying, LEASE_NS};
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path).unwrap();
    let c = failing("gone-1", 0);
    store.write(&notifying(vec![WriteRecord::Created(c.clone())])).await.unwrap();
    // The writer's row holds no copy of the event's metadata or time.
    let conn = Connection::open(&path).unwrap();
    let (metadata, ts): (Option<String>, Option<i64>) = conn
        .query_row("SELECT metadata, timestamp_ns FROM notification_outbox", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!((metadata, ts), (None, None));
    let notify = store.notify().unwrap();
    let now = helix_store::notify::now_ns();
    let before = notify.claim_outbox("d", now, LEASE_NS, 10).await.unwrap();
    assert_eq!(before[0].metadata, c.events[0].metadata);
    let back = helix_store::notify::Settle::Retry {
        id: before[0].id,
        attempts: 1,
        next_ns: now,
        error: "HTTP 500".into(),
        progress: Default::default(),
    };
    notify
        .write_round("d", now, &helix_store::notify::RoundWrites { settle: vec![back], ..Default::default() })
        .await
        .unwrap();
    assert_eq!(conn.execute("DELETE FROM entity_events WHERE entity_id = 'gone-1'", []).unwrap(), 1);
    let after = notify.claim_outbox("d", now, LEASE_NS, 10).await.unwrap();
    assert_eq!(after.len(), 1, "still there to deliver");
    let (b, a) = (&before[0], &after[0]);
    assert_eq!(
        (&a.instrument_id, &a.event_name, &a.entity_id, &a.fingerprint, &a.stage),
        (&b.instrument_id, &b.event_name, &b.entity_id, &b.fingerprint, &b.stage)
    );
    assert_eq!(a.metadata["message"], helix_store::notify::OCCURRENCE_GONE);
    assert!(a.timestamp_ns > 0 && a.timestamp_ns <= helix_store::notify::now_ns(), "the time it was recorded");
}
