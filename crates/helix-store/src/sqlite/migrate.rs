//! Versioned migrations of the SQLite schema, recorded in `schema_migrations`: a newer schema,
//! or one that is behind without `migrate`, is refused with what to do; each migration commits
//! with its record, so a failed one leaves the previous version.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use crate::{StoreError, StoreResult};

/// One versioned schema change; versions are applied in order and recorded in `schema_migrations`.
struct Migration {
    version: u32,
    name: &'static str,
    sql: &'static str,
    /// Data the SQL cannot derive, built in the same transaction after it.
    then: Option<fn(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>>,
}

impl Migration {
    const fn sql(version: u32, name: &'static str, sql: &'static str) -> Migration {
        Migration { version, name, sql, then: None }
    }

    const fn then(self, build: fn(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>) -> Migration {
        Migration { then: Some(build), ..self }
    }
}

/// Every migration this binary knows, oldest first. Never edit a released one: add a new file.
const MIGRATIONS: &[Migration] = &[
    Migration::sql(1, "core", include_str!("../../migrations/sqlite/001_core.sql")),
    Migration::sql(2, "logs", include_str!("../../migrations/sqlite/002_logs.sql")),
    Migration::sql(3, "spans", include_str!("../../migrations/sqlite/003_spans.sql")),
    Migration::sql(4, "log_search", include_str!("../../migrations/sqlite/004_log_search.sql")),
    Migration::sql(5, "span_blocks", include_str!("../../migrations/sqlite/005_span_blocks.sql")),
    Migration::sql(6, "notifications", include_str!("../../migrations/sqlite/006_notifications.sql")),
    Migration::sql(7, "flags", include_str!("../../migrations/sqlite/007_flags.sql")),
    Migration::sql(8, "log_stream_index", include_str!("../../migrations/sqlite/008_log_stream_index.sql")),
    Migration::sql(9, "outbox_rowid", include_str!("../../migrations/sqlite/009_outbox_rowid.sql")),
    Migration::sql(10, "span_packs", include_str!("../../migrations/sqlite/010_span_packs.sql")),
    Migration::sql(11, "outbox_slim", include_str!("../../migrations/sqlite/011_outbox_slim.sql")),
    Migration::sql(12, "log_blocks", include_str!("../../migrations/sqlite/012_log_blocks.sql"))
        .then(super::grams::backfill),
    Migration::sql(13, "log_trace_epochs", include_str!("../../migrations/sqlite/013_log_trace_epochs.sql")),
];

/// The schema version this binary expects.
pub const SCHEMA_VERSION: u32 = 13;

/// Highest version recorded in `schema_migrations`, 0 for a database without one.
pub(super) fn current_version(conn: &Connection) -> StoreResult<u32> {
    let has_table: Option<i64> = conn
        .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'", [], |r| r.get(0))
        .optional()?;
    if has_table.is_none() {
        return Ok(0);
    }
    let v: Option<i64> = conn.query_row("SELECT max(version) FROM schema_migrations", [], |r| r.get(0))?;
    u32::try_from(v.unwrap_or(0)).map_err(|_| StoreError::Schema(format!("invalid schema version {v:?}")))
}

/// Refuse a database this binary cannot use; apply pending migrations when `migrate`.
/// Returns the versions applied now.
pub(super) fn prepare_schema(conn: &mut Connection, path: &Path, migrate: bool) -> StoreResult<Vec<u32>> {
    let current = current_version(conn)?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::Schema(format!(
            "database {} has schema version {current}, newer than this herald supports ({SCHEMA_VERSION}); \
             upgrade the herald binary",
            path.display()
        )));
    }
    if current == SCHEMA_VERSION {
        return Ok(Vec::new());
    }
    if !migrate {
        return Err(StoreError::Schema(format!(
            "database {} has schema version {current}, this herald needs {SCHEMA_VERSION}; run `herald migrate`",
            path.display()
        )));
    }
    apply(conn, path, current, SCHEMA_VERSION)
}

/// A new database at schema `version` (at most [`SCHEMA_VERSION`]), as a herald of that version
/// left it: for upgrade tests, which then fill it the way that herald did and open it.
pub fn create_at_version(path: &Path, version: u32) -> StoreResult<Connection> {
    let mut conn = Connection::open(path)?;
    apply(&mut conn, path, 0, version.min(SCHEMA_VERSION))?;
    Ok(conn)
}

/// Apply the migrations after `current` up to `target`, each committed with its record.
fn apply(conn: &mut Connection, path: &Path, current: u32, target: u32) -> StoreResult<Vec<u32>> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
         )",
    )?;
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > current && m.version <= target) {
        let fail = |e: rusqlite::Error| {
            StoreError::Schema(format!("migration {:03}_{} failed on {}: {e}", m.version, m.name, path.display()))
        };
        // Each migration and its record commit together: a failed one leaves the previous version.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(fail)?;
        tx.execute_batch(m.sql).map_err(fail)?;
        if let Some(then) = m.then {
            then(&tx).map_err(fail)?;
        }
        tx.execute("INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)", (m.version, m.name))
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        tracing::info!(version = m.version, name = m.name, "applied schema migration");
        applied.push(m.version);
    }
    Ok(applied)
}
