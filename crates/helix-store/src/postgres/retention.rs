//! The herald's own retention job for plain PostgreSQL (docs/storage.md "Retention"): deletes
//! operations, events and logs older than their configured age, in small batches with pauses,
//! each batch its own short transaction on a pooled connection, so ingest is never blocked for
//! long. Entities and edges are kept (provenance outlives its detail). Tables that are
//! TimescaleDB hypertables are skipped: their retention policies drop whole chunks instead.
//! The span store's retention (`span_pass`) removes whole traces, hypertable or not.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::Pool;

use super::{map_pg, map_pool, timescale};
use crate::plan::{term_hash, TERM_INSTRUMENT, TERM_NAME, TERM_SERVICE};
use crate::{SpanRetention, StoreError, StoreResult};

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
        let deleted = delete_older(pool, table, cutoff, cfg.batch_rows, cfg.pause).await?;
        if deleted > 0 {
            tracing::info!(table, deleted, "retention: deleted rows older than the limit");
        }
        report.deleted.push((table, deleted));
    }
    Ok(report)
}

/// Rows of `table` (one of the fixed list of the pass, never input) timestamped before
/// `cutoff`, `batch_rows` per statement with `pause` between them. Returns the rows deleted.
pub(super) async fn delete_older(
    pool: &Pool,
    table: &'static str,
    cutoff: i64,
    batch_rows: i64,
    pause: Duration,
) -> StoreResult<u64> {
    // An event whose notification is not delivered yet stays until it is: its outbox row reads
    // the event's metadata from it (009_outbox_slim.sql).
    let keep = if table == "entity_events" {
        " AND NOT EXISTS (SELECT 1 FROM notification_outbox o WHERE o.kind = 'event' AND o.span_id = t.span_id
              AND o.ordinal = t.ordinal AND o.timestamp_ns = t.timestamp_ns)"
    } else {
        ""
    };
    let sql = format!(
        "DELETE FROM {table} WHERE ctid = ANY (ARRAY (
             SELECT ctid FROM {table} t WHERE timestamp_ns < $1{keep} LIMIT $2))"
    );
    let mut deleted = 0u64;
    loop {
        let n = {
            let client = pool.get().await.map_err(map_pool)?;
            let stmt = client.prepare_cached(&sql).await.map_err(map_pg)?;
            client.execute(&stmt, &[&cutoff, &batch_rows]).await.map_err(map_pg)?
        };
        deleted += n;
        if n < u64::try_from(batch_rows).unwrap_or(0) {
            return Ok(deleted);
        }
        tokio::time::sleep(pause).await;
    }
}

/// The periodic job: a pass over the entity tables right away, then every `interval` the
/// span store's pass and the next entity pass; failures (e.g. the database is down) are
/// logged and the next pass tries again.
pub(super) async fn run(
    pool: Pool,
    cfg: RetentionConfig,
    spans: SpanRetention,
    progress: std::sync::Arc<crate::RetentionProgress>,
) {
    loop {
        if cfg.enabled() {
            let result = pass(&pool, &cfg).await;
            progress.record(
                &result.as_ref().map(|r| r.deleted.iter().map(|(_, n)| n).sum()).map_err(Clone::clone),
                now_ns(),
            );
            match result {
                Ok(_) => {}
                Err(e @ StoreError::Unavailable { .. }) => {
                    tracing::warn!(error = %e, "retention pass skipped: database unavailable")
                }
                Err(e) => tracing::error!(error = %e, "retention pass failed"),
            }
        }
        tokio::time::sleep(cfg.interval).await;
        let result = span_pass(&pool, &spans, now_ns(), cfg.pause).await;
        progress.record(&result, now_ns());
        if let Err(e) = result {
            tracing::warn!(error = %e, "span retention pass failed; the next one tries again");
        }
    }
}

/// Traces removed per transaction (1–2 spans each in the telescope mix, more elsewhere).
const SPAN_BATCH_TRACES: i64 = 200;

/// Span retention (docs/storage.md "Span retention"): whole traces that started before
/// `now - max_age`, then, while the traces' stored bytes exceed the budget, the oldest ones;
/// one short transaction per batch with `pause` between them. Returns the spans removed.
pub(super) async fn span_pass(pool: &Pool, limits: &SpanRetention, now_ns: i64, pause: Duration) -> StoreResult<u64> {
    let mut removed = 0;
    if let Some(age) = limits.max_age {
        let cutoff = now_ns.saturating_sub(i64::try_from(age.as_nanos()).unwrap_or(i64::MAX));
        loop {
            let (traces, spans, _) = remove_traces(pool, Victims::StartedBefore(cutoff)).await?;
            removed += spans;
            if traces < SPAN_BATCH_TRACES as u64 {
                break;
            }
            tokio::time::sleep(pause).await;
        }
    }
    if let Some(budget) = limits.max_bytes {
        let budget = i64::try_from(budget).unwrap_or(i64::MAX);
        let mut total: i64 = {
            let client = pool.get().await.map_err(map_pool)?;
            client.query_one("SELECT coalesce(sum(bytes), 0)::int8 FROM traces", &[]).await.map_err(map_pg)?.get(0)
        };
        while total > budget {
            let (traces, spans, freed) = remove_traces(pool, Victims::Bytes(total - budget)).await?;
            removed += spans;
            total -= freed;
            if traces == 0 {
                break;
            }
            tokio::time::sleep(pause).await;
        }
    }
    if removed > 0 {
        tracing::info!(spans = removed, "span retention: removed old traces");
    }
    Ok(removed)
}

#[derive(Clone, Copy)]
enum Victims {
    StartedBefore(i64),
    /// The oldest traces, as many as it takes to free this many bytes (at most a batch).
    Bytes(i64),
}

/// One batch: the victims' summaries locked (a writer adding a span to one waits, then
/// starts its summary afresh), their search terms, spans and summaries deleted.
async fn remove_traces(pool: &Pool, victims: Victims) -> StoreResult<(u64, u64, i64)> {
    let mut client = pool.get().await.map_err(map_pool)?;
    let tx = client.transaction().await.map_err(map_pg)?;
    let rows = tx
        .query(
            "SELECT trace_id, start_ns, bytes FROM traces ORDER BY start_ns, trace_id LIMIT $1 FOR UPDATE",
            &[&SPAN_BATCH_TRACES],
        )
        .await
        .map_err(map_pg)?;
    let (mut ids, mut freed): (Vec<Vec<u8>>, i64) = (Vec::new(), 0);
    for r in &rows {
        let (start, bytes): (i64, i64) = (r.get(1), r.get(2));
        match victims {
            Victims::StartedBefore(cutoff) if start >= cutoff => break,
            Victims::Bytes(excess) if freed >= excess => break,
            _ => {}
        }
        freed += bytes;
        ids.push(r.get(0));
    }
    if ids.is_empty() {
        return Ok((0, 0, 0));
    }
    let found = tx
        .query(
            "SELECT DISTINCT s.trace_id, s.name, src.service_name, src.instrument_id
             FROM spans AS s JOIN span_sources AS src ON src.id = s.source_id WHERE s.trace_id = ANY($1)",
            &[&ids],
        )
        .await
        .map_err(map_pg)?;
    let (mut terms, mut term_traces): (Vec<i64>, Vec<Vec<u8>>) = (Vec::new(), Vec::new());
    for r in &found {
        let trace: Vec<u8> = r.get(0);
        let (name, service, instrument): (&str, Option<&str>, Option<&str>) = (r.get(1), r.get(2), r.get(3));
        let mut push = |t: i64| {
            terms.push(t);
            term_traces.push(trace.clone());
        };
        push(term_hash(TERM_NAME, name));
        if let Some(v) = service {
            push(term_hash(TERM_SERVICE, v));
        }
        if let Some(v) = instrument {
            push(term_hash(TERM_INSTRUMENT, v));
        }
    }
    tx.execute(
        "DELETE FROM trace_terms WHERE (term, trace_id) IN (SELECT * FROM unnest($1::int8[], $2::bytea[]))",
        &[&terms, &term_traces],
    )
    .await
    .map_err(map_pg)?;
    let spans = tx.execute("DELETE FROM spans WHERE trace_id = ANY($1)", &[&ids]).await.map_err(map_pg)?;
    tx.execute("DELETE FROM traces WHERE trace_id = ANY($1)", &[&ids]).await.map_err(map_pg)?;
    tx.commit().await.map_err(map_pg)?;
    Ok((ids.len() as u64, spans, freed))
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
