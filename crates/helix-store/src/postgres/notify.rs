//! `NotifyStore` on PostgreSQL: the tables of `006_notifications.sql`. Several replicas share
//! them: a claim takes due rows with `FOR UPDATE SKIP LOCKED` and leases them, so each row is
//! delivered by one replica; a lease that runs out (a replica died) frees the row again.

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use tokio_postgres::types::Json;
use tokio_postgres::Row;

use super::write::TxError;
use super::{map_pg, PostgresStore};
use crate::notify::{
    sql, Delivery, DigestRow, IssueRecord, NewSilence, NotifyStore, OutboxEvent, OutboxItem, OutboxKind, Progress,
    RateDecision, RateKey, RoundWrites, Settle, Silence, Window, DELIVERY_LOG_ROWS,
};
use crate::{StoreError, StoreResult};

/// The outbox columns of a batch, as parallel arrays for one `unnest` insert.
type OutboxColumns<'a> =
    (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>, Vec<&'a str>, Vec<i32>, Vec<&'a str>, Vec<&'a str>, Vec<i64>);

/// The outbox rows of a batch, in its transaction: one per event while the outbox has room
/// under `max`, the rest coalesced per class. (recorded, coalesced).
pub(super) async fn write_outbox(
    tx: &Transaction<'_>,
    rows: &[OutboxEvent<'_>],
    max: u64,
) -> Result<(u64, u64), TxError> {
    if rows.is_empty() {
        return Ok((0, 0));
    }
    let span = tx.query_one(sql::OUTBOX_SPAN, &[]).await?;
    let span = (span.get::<_, Option<i64>>(0), span.get::<_, Option<i64>>(1));
    let room = if crate::notify::outbox_fits(span, rows.len(), max) {
        rows.len()
    } else {
        let pending = tx.query_one(sql::DEPTH, &[]).await?.get::<_, i64>(0).max(0).unsigned_abs();
        crate::notify::outbox_room(pending, rows.len(), max)
    };
    let (fit, over) = rows.split_at(room);
    let now = crate::notify::now_ns();
    for (o, count) in crate::notify::coalesce(over) {
        let e = o.event;
        let metadata = Json(&e.metadata);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
            &e.instrument_id,
            &e.event_name,
            &o.fingerprint,
            &count,
            &e.entity_id,
            &o.stage,
            &e.timestamp_ns,
            &metadata,
        ];
        if tx.execute(sql::ADD_OVERFLOW, &params).await? == 0 {
            let mut with_now = params.to_vec();
            with_now.push(&now);
            tx.execute(sql::INSERT_OVERFLOW, &with_now).await?;
        }
    }
    if fit.is_empty() {
        return Ok((0, over.len() as u64));
    }
    let mut cols: OutboxColumns<'_> = Default::default();
    for o in fit {
        let e = o.event;
        cols.0.push(&e.instrument_id);
        cols.1.push(&e.event_name);
        cols.2.push(&e.entity_id);
        cols.3.push(&e.span_id);
        cols.4.push(i32::try_from(e.ordinal).unwrap_or(i32::MAX));
        cols.5.push(&o.stage);
        cols.6.push(&o.fingerprint);
        cols.7.push(e.timestamp_ns);
    }
    // The class and the event row's key (span, ordinal, time); the metadata stays in the event
    // row (009_outbox_slim.sql).
    let stmt = tx
        .prepare_cached(
            "INSERT INTO notification_outbox (kind, instrument_id, event_name, entity_id, span_id, ordinal, stage,
                 fingerprint, timestamp_ns, created_ns)
             SELECT 'event', i, n, e, s, o, st, f, t, $9
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::text[], $7::text[],
                         $8::int8[]) AS u(i, n, e, s, o, st, f, t)
             ON CONFLICT DO NOTHING",
        )
        .await?;
    tx.execute(&stmt, &[&cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5, &cols.6, &cols.7, &now]).await?;
    Ok((fit.len() as u64, over.len() as u64))
}

/// The advisory lock key of outbox claims ("HXNT").
const CLAIM_LOCK: i64 = 0x4858_4e54;

/// The claimed rows (`c`) with their event rows (`e`, absent for digests and overflow rows, and
/// for an event row that is gone).
const OUTBOX_COLUMNS: &str = "c.id, c.kind, c.instrument_id, c.event_name, c.entity_id, c.stage, c.fingerprint, \
     c.timestamp_ns, coalesce(c.metadata, e.metadata)::text, c.destination, c.digest_count, c.digest_window_ns, \
     c.attempts, c.progress::text, c.created_ns";

fn outbox_item(r: &Row) -> StoreResult<OutboxItem> {
    let mut item = OutboxItem {
        id: r.get(0),
        kind: OutboxKind::parse(r.get::<_, &str>(1)),
        instrument_id: r.get(2),
        event_name: r.get(3),
        entity_id: r.get(4),
        stage: r.get(5),
        fingerprint: r.get(6),
        timestamp_ns: r.get(7),
        metadata: Default::default(),
        destination: r.get(9),
        digest_count: r.get::<_, i64>(10).max(0).unsigned_abs(),
        digest_window_ns: r.get(11),
        attempts: u32::try_from(r.get::<_, i32>(12)).unwrap_or(0),
        progress: serde_json::from_str(r.get::<_, &str>(13))
            .map_err(|e| StoreError::corrupt(format!("outbox progress: {e}")))?,
    };
    match r.get::<_, Option<&str>>(8) {
        Some(metadata) => item.metadata = crate::rows::parse_metadata(metadata)?,
        None => crate::notify::occurrence_gone(&mut item, r.get(14)),
    }
    Ok(item)
}

/// ns since the epoch ↔ TIMESTAMPTZ (microsecond precision).
const TO_TS: &str = "to_timestamp(($X::int8 / 1e9)::float8)";
fn to_ts(n: usize) -> String {
    TO_TS.replace("$X", &format!("${n}"))
}
fn from_ts(col: &str) -> String {
    format!("(extract(epoch from {col}) * 1e9)::int8")
}

fn silence_columns() -> String {
    format!(
        "id::int8, instrument_id, event_type, fingerprint, silenced_by, {}, {}, reason",
        from_ts("silenced_at"),
        from_ts("expires_at")
    )
}

fn silence(r: &Row) -> Silence {
    Silence {
        id: r.get(0),
        instrument_id: r.get(1),
        event_type: r.get(2),
        fingerprint: r.get(3),
        silenced_by: r.get(4),
        silenced_ns: r.get(5),
        expires_ns: r.get(6),
        reason: r.get(7),
    }
}

fn issue_columns() -> String {
    format!(
        "instrument_id, error_fingerprint, github_repo, github_issue_number::int8, entity_count::int8, {}, {}, \
         recent_entity_ids, closed, intent_ns",
        from_ts("first_seen_at"),
        from_ts("last_updated_at")
    )
}

fn issue(r: &Row) -> IssueRecord {
    IssueRecord {
        instrument_id: r.get(0),
        fingerprint: r.get(1),
        repo: r.get(2),
        issue_number: r.get(3),
        entity_count: r.get(4),
        first_seen_ns: r.get(5),
        last_updated_ns: r.get(6),
        recent_entity_ids: r.get(7),
        closed: r.get(8),
        intent_ns: r.get(9),
    }
}

async fn insert_digest(tx: &Transaction<'_>, d: &DigestRow, now_ns: i64) -> StoreResult<()> {
    let stmt = tx.prepare_cached(sql::INSERT_DIGEST).await.map_err(map_pg)?;
    tx.execute(
        &stmt,
        &[
            &d.instrument_id,
            &d.event_name,
            &d.entity_id,
            &d.stage,
            &d.fingerprint,
            &d.timestamp_ns,
            &d.metadata,
            &d.destination,
            &d.count,
            &d.window_ns,
            &now_ns,
        ],
    )
    .await
    .map_err(map_pg)?;
    Ok(())
}

fn progress_value(progress: &Progress) -> StoreResult<serde_json::Value> {
    serde_json::to_value(progress).map_err(|e| StoreError::bug(e.to_string()))
}

/// The verdicts of a round's takes, folded per window in one transaction. Windows are locked
/// in key order, so two replicas' rounds never wait on each other in a cycle.
async fn take_all(
    tx: &Transaction<'_>,
    owner: &str,
    now_ns: i64,
    writes: &RoundWrites,
) -> StoreResult<Vec<RateDecision>> {
    if writes.takes.is_empty() {
        return Ok(Vec::new());
    }
    let mut windows: std::collections::BTreeMap<(&str, &str, &str), Option<Window>> = writes
        .takes
        .iter()
        .map(|t| ((t.key.instrument_id.as_str(), t.key.fingerprint.as_str(), t.key.destination.as_str()), None))
        .collect();
    let (ensure, select) = (
        tx.prepare_cached(sql::ENSURE_WINDOW).await.map_err(map_pg)?,
        tx.prepare_cached(&format!("{} FOR UPDATE", sql::WINDOW)).await.map_err(map_pg)?,
    );
    let first_length: std::collections::HashMap<(&str, &str, &str), i64> = writes
        .takes
        .iter()
        .rev()
        .map(|t| ((t.key.instrument_id.as_str(), t.key.fingerprint.as_str(), t.key.destination.as_str()), t.window_ns))
        .collect();
    for (key, slot) in windows.iter_mut() {
        let length = first_length.get(key).copied().unwrap_or(0);
        tx.execute(&ensure, &[&key.0, &key.1, &key.2, &now_ns, &length]).await.map_err(map_pg)?;
        let row = tx.query_one(&select, &[&key.0, &key.1, &key.2]).await.map_err(map_pg)?;
        *slot = Some(Window {
            start_ns: row.get(0),
            window_ns: row.get(1),
            sent: row.get(2),
            suppressed: row.get(3),
            last_event: row.get(4),
        });
    }
    let (finish, save) = (
        tx.prepare_cached(sql::FINISH).await.map_err(map_pg)?,
        tx.prepare_cached(sql::SAVE_PROGRESS).await.map_err(map_pg)?,
    );
    let mut decisions = Vec::with_capacity(writes.takes.len());
    for t in &writes.takes {
        let k = &t.key;
        let id = (k.instrument_id.as_str(), k.fingerprint.as_str(), k.destination.as_str());
        let Some(Some(window)) = windows.get_mut(&id) else {
            return Err(StoreError::bug("a rate-limit window was not read"));
        };
        let (decision, digest) = window.take(k, now_ns, t.window_ns, t.max_per_window, &t.last);
        if let Some(d) = digest {
            insert_digest(tx, &d, now_ns).await?;
        }
        if decision == RateDecision::Suppress && t.finish_if_suppressed {
            tx.execute(&finish, &[&t.id, &owner]).await.map_err(map_pg)?;
        } else {
            let progress = Progress { slack_allowed: Some(decision == RateDecision::Send), ..t.progress.clone() };
            tx.execute(&save, &[&progress_value(&progress)?, &t.id, &owner]).await.map_err(map_pg)?;
        }
        decisions.push(decision);
    }
    let put = tx.prepare_cached(sql::PUT_WINDOW).await.map_err(map_pg)?;
    for (key, w) in &windows {
        let Some(w) = w else { continue };
        tx.execute(&put, &[&key.0, &key.1, &key.2, &w.start_ns, &w.window_ns, &w.sent, &w.suppressed, &w.last_event])
            .await
            .map_err(map_pg)?;
    }
    Ok(decisions)
}

#[async_trait]
impl NotifyStore for PostgresStore {
    async fn claim_outbox(
        &self,
        owner: &str,
        now_ns: i64,
        lease_ns: i64,
        limit: usize,
    ) -> StoreResult<Vec<OutboxItem>> {
        let mut client = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let tx = client.transaction().await.map_err(map_pg)?;
        // Claims are serialised across replicas, so "no other replica holds a row of this
        // class" is exact: one class (one GitHub issue) is worked on by one replica at a time.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK]).await.map_err(map_pg)?;
        let rows = tx
            .query(
                &format!(
                    "WITH c AS (
                         UPDATE notification_outbox SET lease_owner = $1, lease_until_ns = $2
                         WHERE id IN (SELECT o.id FROM notification_outbox o
                                      WHERE o.state = 'pending' AND o.next_attempt_ns <= $3 AND o.lease_until_ns <= $3
                                        AND NOT EXISTS (SELECT 1 FROM notification_outbox h
                                                        WHERE h.state = 'pending' AND h.lease_until_ns > $3
                                                          AND h.lease_owner <> $1 AND h.instrument_id = o.instrument_id
                                                          AND h.fingerprint = o.fingerprint)
                                      ORDER BY o.id LIMIT $4 FOR UPDATE SKIP LOCKED)
                         RETURNING *)
                     SELECT {OUTBOX_COLUMNS} FROM c
                     LEFT JOIN entity_events e ON c.kind = 'event' AND e.span_id = c.span_id
                         AND e.ordinal = c.ordinal AND e.timestamp_ns = c.timestamp_ns"
                ),
                &[&owner, &now_ns.saturating_add(lease_ns), &now_ns, &limit],
            )
            .await
            .map_err(map_pg)?;
        tx.commit().await.map_err(map_pg)?;
        let mut items = rows.iter().map(outbox_item).collect::<StoreResult<Vec<_>>>()?;
        items.sort_by_key(|i| i.id);
        Ok(items)
    }

    async fn write_round(&self, owner: &str, now_ns: i64, writes: &RoundWrites) -> StoreResult<Vec<RateDecision>> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        let decisions = take_all(&tx, owner, now_ns, writes).await?;
        if !writes.settle.is_empty() {
            let (finish, retry) = (
                tx.prepare_cached(sql::FINISH).await.map_err(map_pg)?,
                tx.prepare_cached(sql::RETRY).await.map_err(map_pg)?,
            );
            for s in &writes.settle {
                match s {
                    Settle::Finish { id } => {
                        tx.execute(&finish, &[id, &owner]).await.map_err(map_pg)?;
                    }
                    Settle::Retry { id, attempts, next_ns, error, progress } => {
                        let attempts = i32::try_from(*attempts).unwrap_or(i32::MAX);
                        tx.execute(&retry, &[&attempts, next_ns, error, &progress_value(progress)?, id, &owner])
                            .await
                            .map_err(map_pg)?;
                    }
                }
            }
        }
        if !writes.log.is_empty() {
            let log = tx.prepare_cached(sql::LOG).await.map_err(map_pg)?;
            for d in &writes.log {
                tx.execute(
                    &log,
                    &[&d.at_ns, &d.instrument_id, &d.event_name, &d.fingerprint, &d.channel, &d.outcome, &d.detail],
                )
                .await
                .map_err(map_pg)?;
            }
            tx.execute(sql::PRUNE_LOG, &[&DELIVERY_LOG_ROWS]).await.map_err(map_pg)?;
        }
        tx.commit().await.map_err(map_pg)?;
        Ok(decisions)
    }

    async fn save_progress(&self, id: i64, owner: &str, progress: &Progress) -> StoreResult<()> {
        self.client()
            .await?
            .execute(sql::SAVE_PROGRESS, &[&progress_value(progress)?, &id, &owner])
            .await
            .map_err(map_pg)?;
        Ok(())
    }

    async fn renew_leases(&self, owner: &str, until_ns: i64) -> StoreResult<u64> {
        self.client().await?.execute(sql::RENEW, &[&until_ns, &owner]).await.map_err(map_pg)
    }

    async fn outbox_depth(&self) -> StoreResult<u64> {
        let row = self.client().await?.query_one(sql::DEPTH, &[]).await.map_err(map_pg)?;
        Ok(row.get::<_, i64>(0).max(0).unsigned_abs())
    }

    async fn flush_windows(&self, now_ns: i64) -> StoreResult<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        let rows = tx.query(sql::END_WINDOWS, &[&now_ns]).await.map_err(map_pg)?;
        let mut digests = 0;
        for r in &rows {
            let key = RateKey { instrument_id: r.get(0), fingerprint: r.get(1), destination: r.get(2) };
            let w = Window {
                start_ns: r.get(3),
                window_ns: r.get(4),
                sent: r.get(5),
                suppressed: r.get(6),
                last_event: r.get(7),
            };
            if let Some(d) = DigestRow::of(&key, &w, now_ns) {
                insert_digest(&tx, &d, now_ns).await?;
                digests += 1;
            }
        }
        tx.execute(sql::PRUNE_FINISHED, &[]).await.map_err(map_pg)?;
        tx.commit().await.map_err(map_pg)?;
        Ok(digests)
    }

    async fn create_silence(&self, s: &NewSilence, now_ns: i64) -> StoreResult<Silence> {
        let row = self
            .client()
            .await?
            .query_one(
                &format!(
                    "INSERT INTO notification_silences (instrument_id, event_type, fingerprint, silenced_by, silenced_at,
                         expires_at, reason)
                     VALUES ($1, $2, $3, $4, {}, {}, $7) RETURNING {}",
                    to_ts(5),
                    to_ts(6),
                    silence_columns()
                ),
                &[&s.instrument_id, &s.event_type, &s.fingerprint, &s.silenced_by, &now_ns, &s.expires_ns, &s.reason],
            )
            .await
            .map_err(map_pg)?;
        Ok(silence(&row))
    }

    async fn silences(&self, instrument_id: &str) -> StoreResult<Vec<Silence>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {} FROM notification_silences WHERE instrument_id = $1 ORDER BY id DESC LIMIT 10000",
                    silence_columns()
                ),
                &[&instrument_id],
            )
            .await
            .map_err(map_pg)?;
        Ok(rows.iter().map(silence).collect())
    }

    async fn active_silences(&self, now_ns: i64) -> StoreResult<Vec<Silence>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {} FROM notification_silences WHERE expires_at > {} ORDER BY id",
                    silence_columns(),
                    to_ts(1)
                ),
                &[&now_ns],
            )
            .await
            .map_err(map_pg)?;
        Ok(rows.iter().map(silence).collect())
    }

    async fn silence(&self, id: i64) -> StoreResult<Option<Silence>> {
        let Ok(id) = i32::try_from(id) else { return Ok(None) };
        let row = self
            .client()
            .await?
            .query_opt(&format!("SELECT {} FROM notification_silences WHERE id = $1", silence_columns()), &[&id])
            .await
            .map_err(map_pg)?;
        Ok(row.as_ref().map(silence))
    }

    async fn delete_silence(&self, id: i64) -> StoreResult<bool> {
        let Ok(id) = i32::try_from(id) else { return Ok(false) };
        let n = self
            .client()
            .await?
            .execute("DELETE FROM notification_silences WHERE id = $1", &[&id])
            .await
            .map_err(map_pg)?;
        Ok(n > 0)
    }

    async fn expire_silence(&self, id: i64, now_ns: i64) -> StoreResult<bool> {
        let Ok(id) = i32::try_from(id) else { return Ok(false) };
        let n = self
            .client()
            .await?
            .execute(
                &format!("UPDATE notification_silences SET expires_at = least(expires_at, {}) WHERE id = $2", to_ts(1)),
                &[&now_ns, &id],
            )
            .await
            .map_err(map_pg)?;
        Ok(n > 0)
    }

    async fn issue(&self, instrument_id: &str, fingerprint: &str, repo: &str) -> StoreResult<Option<IssueRecord>> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "SELECT {} FROM notification_issues
                     WHERE instrument_id = $1 AND error_fingerprint = $2 AND github_repo = $3",
                    issue_columns()
                ),
                &[&instrument_id, &fingerprint, &repo],
            )
            .await
            .map_err(map_pg)?;
        Ok(row.as_ref().map(issue))
    }

    async fn put_issue(&self, r: &IssueRecord) -> StoreResult<()> {
        let number = i32::try_from(r.issue_number).unwrap_or(0);
        let count = i32::try_from(r.entity_count).unwrap_or(i32::MAX);
        self.client()
            .await?
            .execute(
                &format!(
                    "INSERT INTO notification_issues (instrument_id, error_fingerprint, github_repo, github_issue_number,
                         entity_count, first_seen_at, last_updated_at, recent_entity_ids, closed, intent_ns)
                     VALUES ($1, $2, $3, $4, $5, {}, {}, $8, $9, $10)
                     ON CONFLICT (instrument_id, error_fingerprint, github_repo) DO UPDATE SET
                         github_issue_number = excluded.github_issue_number, entity_count = excluded.entity_count,
                         first_seen_at = excluded.first_seen_at, last_updated_at = excluded.last_updated_at,
                         recent_entity_ids = excluded.recent_entity_ids, closed = excluded.closed,
                         intent_ns = excluded.intent_ns",
                    to_ts(6),
                    to_ts(7)
                ),
                &[
                    &r.instrument_id,
                    &r.fingerprint,
                    &r.repo,
                    &number,
                    &count,
                    &r.first_seen_ns,
                    &r.last_updated_ns,
                    &r.recent_entity_ids,
                    &r.closed,
                    &r.intent_ns,
                ],
            )
            .await
            .map_err(map_pg)?;
        Ok(())
    }

    async fn begin_issue(&self, r: &IssueRecord) -> StoreResult<bool> {
        let number = i32::try_from(r.issue_number).unwrap_or(0);
        let count = i32::try_from(r.entity_count).unwrap_or(i32::MAX);
        let n = self
            .client()
            .await?
            .execute(
                &format!(
                    "INSERT INTO notification_issues (instrument_id, error_fingerprint, github_repo, github_issue_number,
                         entity_count, first_seen_at, last_updated_at, recent_entity_ids, closed, intent_ns)
                     VALUES ($1, $2, $3, $4, $5, {}, {}, $8, $9, $10) ON CONFLICT DO NOTHING",
                    to_ts(6),
                    to_ts(7)
                ),
                &[
                    &r.instrument_id,
                    &r.fingerprint,
                    &r.repo,
                    &number,
                    &count,
                    &r.first_seen_ns,
                    &r.last_updated_ns,
                    &r.recent_entity_ids,
                    &r.closed,
                    &r.intent_ns,
                ],
            )
            .await
            .map_err(map_pg)?;
        Ok(n > 0)
    }

    async fn mark_issue_closed(
        &self,
        instrument_id: &str,
        fingerprint: &str,
        repo: &str,
        closed: bool,
    ) -> StoreResult<bool> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE notification_issues SET closed = $4
                 WHERE instrument_id = $1 AND error_fingerprint = $2 AND github_repo = $3 AND closed <> $4",
                &[&instrument_id, &fingerprint, &repo, &closed],
            )
            .await
            .map_err(map_pg)?;
        Ok(n > 0)
    }

    async fn delete_issue(&self, instrument_id: &str, fingerprint: &str, repo: &str) -> StoreResult<()> {
        self.client()
            .await?
            .execute(
                "DELETE FROM notification_issues WHERE instrument_id = $1 AND error_fingerprint = $2 AND github_repo = $3",
                &[&instrument_id, &fingerprint, &repo],
            )
            .await
            .map_err(map_pg)?;
        Ok(())
    }

    async fn issues(&self, instrument_id: Option<&str>) -> StoreResult<Vec<IssueRecord>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {} FROM notification_issues WHERE $1::text IS NULL OR instrument_id = $1
                     ORDER BY last_updated_at DESC LIMIT 10000",
                    issue_columns()
                ),
                &[&instrument_id],
            )
            .await
            .map_err(map_pg)?;
        Ok(rows.iter().map(issue).collect())
    }

    async fn deliveries(&self, instrument_id: Option<&str>, limit: usize) -> StoreResult<Vec<Delivery>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .client()
            .await?
            .query(
                "SELECT at_ns, instrument_id, event_name, fingerprint, channel, outcome, detail
                 FROM notification_deliveries WHERE $1::text IS NULL OR instrument_id = $1 ORDER BY id DESC LIMIT $2",
                &[&instrument_id, &limit],
            )
            .await
            .map_err(map_pg)?;
        Ok(rows
            .iter()
            .map(|r| Delivery {
                at_ns: r.get(0),
                instrument_id: r.get(1),
                event_name: r.get(2),
                fingerprint: r.get(3),
                channel: r.get(4),
                outcome: r.get(5),
                detail: r.get(6),
            })
            .collect())
    }
}
