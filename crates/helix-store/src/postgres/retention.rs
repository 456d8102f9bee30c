//! The herald's own retention job for plain PostgreSQL (docs/storage.md "Retention"): deletes
//! operations, events and logs older than their configured age, in small batches with pauses,
//! each batch its own short transaction on a pooled connection, so ingest is never blocked for
//! long. Entities and edges are kept (provenance outlives its detail). Tables that are
//! TimescaleDB hypertables are skipped: their retention policies drop whole chunks instead.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::Pool;

use super::{map_pg, map_pool, timescale};
use crate::{StoreError, StoreResult};

const DAY: Duration = Duration::from_secs(86_400);

/// Ages after which rows are deleted (`None`: kept forever) and the pace of the job.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionConfig {
    pub operations: Option<Duration>,
    pub events: Option<Duration>,
    pub logs: Option<Duration>,
    /// Time between two passes.
    pub interval: Duration,
    /// Rows deleted per statement.
    pub batch_rows: i64,
    /// Pause between two batches, leaving the database to ingest.
    pub pause: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            operations: Some(90 * DAY),
            events: Some(90 * DAY),
            logs: Some(90 * DAY),
            interval: Duration::from_secs(3600),
            batch_rows: 5_000,
            pause: Duration::from_millis(50),
        }
    }
}

/// Rows deleted by one pass, per table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetentionReport {
    pub deleted: Vec<(&'static str, u64)>,
    /// Tables left to TimescaleDB's policies.
    pub hypertables: Vec<&'static str>,
}

impl RetentionConfig {
    /// Whether any table has an age limit.
    pub fn enabled(&self) -> bool {
        self.operations.is_some() || self.events.is_some() || self.logs.is_some()
    }

    /// Defaults overridden by `HELIX_RETENTION_{OPERATIONS,EVENTS,LOGS}_DAYS` (0 keeps rows
    /// forever) and `HELIX_RETENTION_INTERVAL_SECS`, read through `lookup` (the environment in
    /// the herald, a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut cfg = RetentionConfig::default();
        let number = |name: &str| -> Result<Option<u64>, String> {
            match lookup(name) {
                None => Ok(None),
                Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| format!("{name}={v:?} is not a whole number")),
            }
        };
        let days = |name: &str, slot: &mut Option<Duration>| -> Result<(), String> {
            if let Some(d) = number(name)? {
                *slot = (d > 0).then(|| DAY * u32::try_from(d).unwrap_or(u32::MAX));
            }
            Ok(())
        };
        days("HELIX_RETENTION_OPERATIONS_DAYS", &mut cfg.operations)?;
        days("HELIX_RETENTION_EVENTS_DAYS", &mut cfg.events)?;
        days("HELIX_RETENTION_LOGS_DAYS", &mut cfg.logs)?;
        if let Some(s) = number("HELIX_RETENTION_INTERVAL_SECS")? {
            cfg.interval = Duration::from_secs(s.max(1));
        }
        Ok(cfg)
    }
}

fn now_ns() -> i64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// One pass over every table with an age limit.
pub(super) async fn pass(pool: &Pool, cfg: &RetentionConfig) -> StoreResult<RetentionReport> {
    let mut report = RetentionReport::default();
    let tables: [(&'static str, Option<Duration>); 3] =
        [("entity_operations", cfg.operations), ("entity_events", cfg.events), ("logs", cfg.logs)];
    for (table, age) in tables {
        let Some(age) = age else { continue };
        {
            let client = pool.get().await.map_err(map_pool)?;
            if timescale::is_hypertable(&client, table).await? {
                report.hypertables.push(table);
                continue;
            }
        }
        let cutoff = now_ns().saturating_sub(i64::try_from(age.as_nanos()).unwrap_or(i64::MAX));
        // The table name comes from the fixed list above, never from input.
        let sql = format!(
            "DELETE FROM {table} WHERE ctid = ANY (ARRAY (
                 SELECT ctid FROM {table} WHERE timestamp_ns < $1 LIMIT $2))"
        );
        let mut deleted = 0u64;
        loop {
            let n = {
                let client = pool.get().await.map_err(map_pool)?;
                let stmt = client.prepare_cached(&sql).await.map_err(map_pg)?;
                client.execute(&stmt, &[&cutoff, &cfg.batch_rows]).await.map_err(map_pg)?
            };
            deleted += n;
            if n < u64::try_from(cfg.batch_rows).unwrap_or(0) {
                break;
            }
            tokio::time::sleep(cfg.pause).await;
        }
        if deleted > 0 {
            tracing::info!(table, deleted, "retention: deleted rows older than the limit");
        }
        report.deleted.push((table, deleted));
    }
    Ok(report)
}

/// The periodic job: a pass right away, then one every `interval`; failures (e.g. the
/// database is down) are logged and the next pass tries again.
pub(super) async fn run(pool: Pool, cfg: RetentionConfig) {
    loop {
        match pass(&pool, &cfg).await {
            Ok(_) => {}
            Err(e @ StoreError::Unavailable { .. }) => {
                tracing::warn!(error = %e, "retention pass skipped: database unavailable")
            }
            Err(e) => tracing::error!(error = %e, "retention pass failed"),
        }
        tokio::time::sleep(cfg.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn config_from_lookup() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("HELIX_RETENTION_EVENTS_DAYS", "7"),
            ("HELIX_RETENTION_LOGS_DAYS", "0"),
            ("HELIX_RETENTION_INTERVAL_SECS", "60"),
        ]);
        let cfg = RetentionConfig::from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(cfg.events, Some(7 * DAY));
        assert_eq!(cfg.logs, None, "0 keeps logs forever");
        assert_eq!(cfg.operations, Some(90 * DAY), "default");
        assert_eq!(cfg.interval, Duration::from_secs(60));
        assert!(cfg.enabled());
        let bad = RetentionConfig::from_lookup(|k| (k == "HELIX_RETENTION_EVENTS_DAYS").then(|| "soon".to_owned()));
        assert!(bad.unwrap_err().contains("HELIX_RETENTION_EVENTS_DAYS"));
    }
}
