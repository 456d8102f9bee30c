//! Versioned migrations of the PostgreSQL schema, recorded in `schema_migrations`, with the
//! same refusals as SQLite (a newer schema, a schema that is behind without `migrate`, a
//! failed migration). A session advisory lock serialises replicas that start together: the
//! first applies the migrations, the others wait and then find the schema current.

use deadpool_postgres::Object;

use super::{map_pg, timescale};
use crate::{StoreError, StoreResult};

/// One versioned schema change, applied in order in its own transaction.
struct Migration {
    version: u32,
    name: &'static str,
    kind: Kind,
}

enum Kind {
    Sql(&'static str),
    /// Hypertables and retention policies when TimescaleDB can be enabled; nothing otherwise.
    Timescale,
    /// Plain tables, then the second script when TimescaleDB is enabled in the database
    /// (turning some of them into hypertables).
    SqlWithHypertables(&'static str, &'static str),
}

/// Every migration this binary knows, oldest first. Never edit a released one: add a new file.
const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "core", kind: Kind::Sql(include_str!("../../migrations/postgres/001_core.sql")) },
    Migration { version: 2, name: "logs", kind: Kind::Sql(include_str!("../../migrations/postgres/002_logs.sql")) },
    Migration { version: 3, name: "timescale", kind: Kind::Timescale },
    Migration {
        version: 4,
        name: "spans",
        kind: Kind::SqlWithHypertables(
            include_str!("../../migrations/postgres/004_spans.sql"),
            include_str!("../../migrations/postgres/004_spans_timescale.sql"),
        ),
    },
    Migration {
        version: 5,
        name: "log_search",
        kind: Kind::Sql(include_str!("../../migrations/postgres/005_log_search.sql")),
    },
    Migration {
        version: 6,
        name: "notifications",
        kind: Kind::Sql(include_str!("../../migrations/postgres/006_notifications.sql")),
    },
    Migration { version: 7, name: "flags", kind: Kind::Sql(include_str!("../../migrations/postgres/007_flags.sql")) },
    Migration {
        version: 8,
        name: "log_stream_index",
        kind: Kind::Sql(include_str!("../../migrations/postgres/008_log_stream_index.sql")),
    },
    Migration {
        version: 9,
        name: "outbox_slim",
        kind: Kind::Sql(include_str!("../../migrations/postgres/009_outbox_slim.sql")),
    },
];

/// The schema version this binary expects.
pub const SCHEMA_VERSION: u32 = 9;

/// Highest version recorded in `schema_migrations` of the current schema, 0 without the table.
async fn current_version(client: &tokio_postgres::Client) -> StoreResult<u32> {
    let row = client.query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[]).await.map_err(map_pg)?;
    if !row.get::<_, bool>(0) {
        return Ok(0);
    }
    let v: Option<i32> =
        client.query_one("SELECT max(version) FROM schema_migrations", &[]).await.map_err(map_pg)?.get(0);
    u32::try_from(v.unwrap_or(0)).map_err(|_| StoreError::Schema(format!("invalid schema version {v:?}")))
}

/// Ready when reachable and current (`/readyz`).
pub(super) async fn check_current(client: &tokio_postgres::Client) -> StoreResult<()> {
    let v = current_version(client).await?;
    if v != SCHEMA_VERSION {
        return Err(StoreError::Schema(format!(
            "schema version {v}, this herald needs {SCHEMA_VERSION}; run `herald migrate`"
        )));
    }
    Ok(())
}

/// Refuse a database this binary cannot use; apply pending migrations when `migrate`.
/// Returns the versions applied now. `schema` (already validated) is created if missing.
pub(super) async fn prepare_schema(
    client: &mut Object,
    url: &str,
    schema: Option<&str>,
    migrate: bool,
) -> StoreResult<Vec<u32>> {
    // One lock per schema: replicas of one deployment serialise, tests in other schemas don't.
    let key = format!("helix-migrate:{}", schema.unwrap_or("default"));
    // Waiting for another replica's migrations, and a migration itself, may take longer than
    // the read budget the sessions carry (statement_timeout): lifted here, restored after.
    client.batch_execute("SET statement_timeout = 0").await.map_err(map_pg)?;
    client.execute("SELECT pg_advisory_lock(hashtext($1))", &[&key]).await.map_err(map_pg)?;
    let result = prepare_locked(client, url, schema, migrate).await;
    // Unlock even after a failure; if the connection itself broke, the server released the
    // session lock already.
    let _ = client.execute("SELECT pg_advisory_unlock(hashtext($1))", &[&key]).await;
    let _ = client.batch_execute("RESET statement_timeout").await;
    result
}

async fn prepare_locked(client: &mut Object, url: &str, schema: Option<&str>, migrate: bool) -> StoreResult<Vec<u32>> {
    if let Some(s) = schema {
        if migrate {
            client.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {s}")).await.map_err(map_pg)?;
        }
    }
    let current = current_version(client).await?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::Schema(format!(
            "database {url} has schema version {current}, newer than this herald supports ({SCHEMA_VERSION}); \
             upgrade the herald binary"
        )));
    }
    if current == SCHEMA_VERSION {
        return Ok(Vec::new());
    }
    if !migrate {
        return Err(StoreError::Schema(format!(
            "database {url} has schema version {current}, this herald needs {SCHEMA_VERSION}; run `herald migrate`"
        )));
    }
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    INTEGER PRIMARY KEY,
                 name       TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(map_pg)?;
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let fail = |e: tokio_postgres::Error| match map_pg(e) {
            // The server going away mid-migration is an outage, not a broken migration.
            e @ StoreError::Unavailable { .. } => e,
            other => StoreError::Schema(format!("migration {:03}_{} failed on {url}: {other}", m.version, m.name)),
        };
        // Each migration and its record commit together: a failed one leaves the previous version.
        let mut tx = client.transaction().await.map_err(fail)?;
        let name = match &m.kind {
            Kind::Sql(sql) => {
                tx.batch_execute(sql).await.map_err(fail)?;
                m.name.to_owned()
            }
            Kind::Timescale => {
                if timescale::enable(&mut tx).await.map_err(fail)? {
                    "timescale".to_owned()
                } else {
                    "timescale (extension not available: plain tables)".to_owned()
                }
            }
            Kind::SqlWithHypertables(sql, hypertables) => {
                tx.batch_execute(sql).await.map_err(fail)?;
                if timescale::enabled(&tx).await.map_err(fail)? {
                    tx.batch_execute(hypertables).await.map_err(fail)?;
                    format!("{} (hypertables)", m.name)
                } else {
                    m.name.to_owned()
                }
            }
        };
        tx.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", &[&(m.version as i32), &name])
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        tracing::info!(version = m.version, name, "applied schema migration");
        applied.push(m.version);
    }
    Ok(applied)
}
