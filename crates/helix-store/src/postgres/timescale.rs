//! The TimescaleDB code path, kept apart so plain PostgreSQL never touches it: migration 3
//! turns the time-series tables into hypertables with retention policies when the extension
//! can be created, and the retention job asks here whether a table is a hypertable (then the
//! policy, not the herald, deletes old rows).

use deadpool_postgres::Transaction;

/// Enable TimescaleDB and convert the tables (003_timescale.sql) when the extension is
/// installed on the server; `false` (nothing changed) when it is not, or when it cannot be
/// created here (e.g. not in `shared_preload_libraries`, or no privilege).
pub(super) async fn enable(tx: &mut Transaction<'_>) -> Result<bool, tokio_postgres::Error> {
    let available: bool = tx
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')", &[])
        .await?
        .get(0);
    if !available {
        tracing::info!("timescaledb is not available: plain tables, the herald's retention job deletes old rows");
        return Ok(false);
    }
    // A savepoint so a refused CREATE EXTENSION leaves the migration's transaction usable.
    let sp = tx.savepoint("helix_timescale").await?;
    if let Err(e) = sp.batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb").await {
        tracing::warn!(error = %e, "timescaledb is installed but cannot be enabled here: plain tables");
        sp.rollback().await?;
        return Ok(false);
    }
    sp.commit().await?;
    tx.batch_execute(include_str!("../../migrations/postgres/003_timescale.sql")).await?;
    tracing::info!("timescaledb enabled: operations, events and logs are hypertables with retention policies");
    Ok(true)
}

/// Whether TimescaleDB is enabled in this database (migration 3 created the extension):
/// later migrations then make their time-series tables hypertables too.
pub(super) async fn enabled(tx: &Transaction<'_>) -> Result<bool, tokio_postgres::Error> {
    Ok(tx.query_one("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')", &[]).await?.get(0))
}

/// Whether `table` of the current schema is a hypertable.
pub(super) async fn is_hypertable(client: &tokio_postgres::Client, table: &str) -> crate::StoreResult<bool> {
    let has_catalog: bool = client
        .query_one("SELECT to_regclass('timescaledb_information.hypertables') IS NOT NULL", &[])
        .await
        .map_err(super::map_pg)?
        .get(0);
    if !has_catalog {
        return Ok(false);
    }
    client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                            WHERE hypertable_schema = current_schema() AND hypertable_name = $1)",
            &[&table],
        )
        .await
        .map(|r| r.get(0))
        .map_err(super::map_pg)
}
