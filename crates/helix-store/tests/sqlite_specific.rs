//! SQLite-only behaviour the shared suite cannot see: migrations and their refusals, reopening,
//! durability pragmas, atomicity of a failed batch, and lock contention reported as transient.

use std::path::{Path, PathBuf};
use std::time::Duration;

use helix_store::conformance::creation;
use helix_store::sqlite::{migrate, SCHEMA_VERSION};
use helix_store::{SqliteOptions, SqliteStore, Store, StoreError, WriteBatch, WriteRecord};
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
    let names: Vec<(u32, &str)> = vec![(1, "core"), (2, "logs"), (3, "spans"), (4, "log_search")];
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
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
             applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
         INSERT INTO schema_migrations (version, name) VALUES (1, 'core'), (2, 'logs'), (3, 'spans');",
    )
    .unwrap();
    for sql in [
        include_str!("../migrations/sqlite/001_core.sql"),
        include_str!("../migrations/sqlite/002_logs.sql"),
        include_str!("../migrations/sqlite/003_spans.sql"),
    ] {
        conn.execute_batch(sql).unwrap();
    }
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
            let page = store.log_search(&f, &helix_store::PageRequest::first(10)).await.unwrap();
            page.items.into_iter().map(|l| (l.body, l.severity_number)).collect::<Vec<_>>()
        }
    };
    let warn = vec![("legacy: Disk almost full".to_owned(), 13)];
    assert_eq!(found(helix_store::LogFilter { min_severity: Some(13), ..Default::default() }).await, warn);
    assert_eq!(found(helix_store::LogFilter { text: Some("DISK".into()), ..Default::default() }).await, warn);
    assert_eq!(found(helix_store::LogFilter { text: Some("legacy".into()), ..Default::default() }).await.len(), 2);
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
    let batch = WriteBatch { records: vec![WriteRecord::Created(creation("keep", &["p"], 0))] };
    store.write(&batch).await.unwrap();
    drop(store);
    let store = open(&path).unwrap();
    let e = store.entity("keep").await.unwrap().expect("entity kept across reopen");
    assert_eq!(e.parent_ids, vec!["p".to_owned()]);
    store.check_ready().await.unwrap();
    assert_eq!(store.write(&batch).await.unwrap(), Default::default(), "idempotency survives reopen");
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
    let batch = WriteBatch { records: vec![WriteRecord::Created(creation("busy", &[], 0))] };
    let err = store.write(&batch).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    // Readers are not blocked by a writer in WAL mode.
    assert!(store.entity("busy").await.unwrap().is_none());
    holder.execute_batch("ROLLBACK").unwrap();
    store.write(&batch).await.unwrap();
    assert!(store.entity("busy").await.unwrap().is_some());
}
