//! `NotifyStore` on SQLite: the outbox, windows, silences, issues and delivery log of
//! `006_notifications.sql`. One process owns the file, so a claim is a plain update under the
//! writer lock; the lease still protects a row from a second dispatcher task.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row};

use super::{lock, SqliteStore};
use crate::notify::{
    Delivery, IssueRecord, NewSilence, NotifyStore, OutboxItem, OutboxKind, Progress, RateDecision, RateKey, Silence,
    DELIVERY_LOG_ROWS,
};
use crate::rows::{parse_metadata, parse_string_vec, to_json};
use crate::{StoreError, StoreResult};

impl SqliteStore {
    async fn notify_write<T, F>(&self, what: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&mut lock(&inner.writer).conn))
            .await
            .map_err(|e| StoreError::bug(format!("{what} task failed: {e}")))?
            .map_err(|e| e.during(what))
    }
}

const OUTBOX_COLUMNS: &str = "id, kind, instrument_id, event_name, entity_id, stage, fingerprint, timestamp_ns, \
     metadata, destination, digest_count, digest_window_ns, attempts, progress";

fn outbox_row(r: &Row<'_>) -> rusqlite::Result<(OutboxItem, String, String)> {
    let item = OutboxItem {
        id: r.get(0)?,
        kind: OutboxKind::parse(&r.get::<_, String>(1)?),
        instrument_id: r.get(2)?,
        event_name: r.get(3)?,
        entity_id: r.get(4)?,
        stage: r.get(5)?,
        fingerprint: r.get(6)?,
        timestamp_ns: r.get(7)?,
        metadata: Default::default(),
        destination: r.get(9)?,
        digest_count: r.get::<_, i64>(10)?.max(0).unsigned_abs(),
        digest_window_ns: r.get(11)?,
        attempts: u32::try_from(r.get::<_, i64>(12)?).unwrap_or(0),
        progress: Progress::default(),
    };
    Ok((item, r.get(8)?, r.get(13)?))
}

fn finish_item((mut item, metadata, progress): (OutboxItem, String, String)) -> StoreResult<OutboxItem> {
    item.metadata = parse_metadata(&metadata)?;
    item.progress =
        serde_json::from_str(&progress).map_err(|e| StoreError::corrupt(format!("outbox progress: {e}")))?;
    Ok(item)
}

const SILENCE_COLUMNS: &str =
    "id, instrument_id, event_type, fingerprint, silenced_by, silenced_at, expires_at, reason";

fn silence_row(r: &Row<'_>) -> rusqlite::Result<Silence> {
    Ok(Silence {
        id: r.get(0)?,
        instrument_id: r.get(1)?,
        event_type: r.get(2)?,
        fingerprint: r.get(3)?,
        silenced_by: r.get(4)?,
        silenced_ns: r.get(5)?,
        expires_ns: r.get(6)?,
        reason: r.get(7)?,
    })
}

const ISSUE_COLUMNS: &str = "instrument_id, error_fingerprint, github_repo, github_issue_number, entity_count, \
     first_seen_at, last_updated_at, recent_entity_ids, closed, intent_ns";

fn issue_row(r: &Row<'_>) -> rusqlite::Result<(IssueRecord, String)> {
    Ok((
        IssueRecord {
            instrument_id: r.get(0)?,
            fingerprint: r.get(1)?,
            repo: r.get(2)?,
            issue_number: r.get(3)?,
            entity_count: r.get(4)?,
            first_seen_ns: r.get(5)?,
            last_updated_ns: r.get(6)?,
            recent_entity_ids: Vec::new(),
            closed: r.get::<_, i64>(8)? != 0,
            intent_ns: r.get(9)?,
        },
        r.get(7)?,
    ))
}

fn finish_issue((mut record, recent): (IssueRecord, String)) -> StoreResult<IssueRecord> {
    record.recent_entity_ids = parse_string_vec(&recent)?;
    Ok(record)
}

/// The JSON kept in a window for its digest: the last suppressed event.
fn last_event_json(item: &OutboxItem) -> StoreResult<String> {
    to_json(&serde_json::json!({
        "event_name": item.event_name, "entity_id": item.entity_id, "stage": item.stage,
        "timestamp_ns": item.timestamp_ns, "metadata": item.metadata,
    }))
}

/// Insert the digest row of a window that suppressed messages.
#[allow(clippy::too_many_arguments)]
fn insert_digest(
    conn: &Connection,
    instrument_id: &str,
    fingerprint: &str,
    destination: &str,
    suppressed: i64,
    window_ns: i64,
    last: Option<String>,
    now_ns: i64,
) -> StoreResult<()> {
    let last: serde_json::Value = last.and_then(|l| serde_json::from_str(&l).ok()).unwrap_or_default();
    let text = |k: &str| last.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    let metadata = last.get("metadata").cloned().unwrap_or_else(|| serde_json::json!({}));
    conn.execute(
        "INSERT INTO notification_outbox (kind, instrument_id, event_name, entity_id, stage, fingerprint, timestamp_ns,
             metadata, destination, digest_count, digest_window_ns, created_ns)
         VALUES ('digest', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        rusqlite::params![
            instrument_id,
            text("event_name"),
            text("entity_id"),
            text("stage"),
            fingerprint,
            last.get("timestamp_ns").and_then(serde_json::Value::as_i64).unwrap_or(now_ns),
            to_json(&metadata)?,
            destination,
            suppressed,
            window_ns,
            now_ns,
        ],
    )?;
    Ok(())
}

#[async_trait]
impl NotifyStore for SqliteStore {
    async fn claim_outbox(
        &self,
        owner: &str,
        now_ns: i64,
        lease_ns: i64,
        limit: usize,
    ) -> StoreResult<Vec<OutboxItem>> {
        let owner = owner.to_owned();
        self.notify_write("claim_outbox", move |conn| {
            let tx = conn.transaction()?;
            let rows = {
                let mut stmt = tx.prepare_cached(&format!(
                    "UPDATE notification_outbox SET lease_owner = ?1, lease_until_ns = ?2
                     WHERE id IN (SELECT id FROM notification_outbox
                                  WHERE state = 'pending' AND next_attempt_ns <= ?3 AND lease_until_ns <= ?3
                                  ORDER BY id LIMIT ?4)
                     RETURNING {OUTBOX_COLUMNS}"
                ))?;
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let rows = stmt
                    .query_map(rusqlite::params![owner, now_ns.saturating_add(lease_ns), now_ns, limit], outbox_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                rows
            };
            tx.commit()?;
            let mut items = rows.into_iter().map(finish_item).collect::<StoreResult<Vec<_>>>()?;
            items.sort_by_key(|i| i.id);
            Ok(items)
        })
        .await
    }

    async fn save_progress(&self, id: i64, owner: &str, progress: &Progress) -> StoreResult<()> {
        let (owner, progress) = (owner.to_owned(), to_json(progress)?);
        self.notify_write("save_progress", move |conn| {
            conn.execute(
                "UPDATE notification_outbox SET progress = ?1 WHERE id = ?2 AND lease_owner = ?3",
                rusqlite::params![progress, id, owner],
            )?;
            Ok(())
        })
        .await
    }

    async fn finish_outbox(
        &self,
        id: i64,
        owner: &str,
        failed: bool,
        error: Option<&str>,
        now_ns: i64,
    ) -> StoreResult<()> {
        let (owner, error) = (owner.to_owned(), error.map(str::to_owned));
        self.notify_write("finish_outbox", move |conn| {
            conn.execute(
                "UPDATE notification_outbox SET state = ?1, last_error = ?2, done_ns = ?3, lease_owner = NULL,
                     lease_until_ns = 0
                 WHERE id = ?4 AND lease_owner = ?5",
                rusqlite::params![if failed { "failed" } else { "done" }, error, now_ns, id, owner],
            )?;
            Ok(())
        })
        .await
    }

    async fn retry_outbox(&self, id: i64, owner: &str, attempts: u32, next_ns: i64, error: &str) -> StoreResult<()> {
        let (owner, error) = (owner.to_owned(), error.to_owned());
        self.notify_write("retry_outbox", move |conn| {
            conn.execute(
                "UPDATE notification_outbox SET attempts = ?1, next_attempt_ns = ?2, last_error = ?3,
                     lease_owner = NULL, lease_until_ns = 0
                 WHERE id = ?4 AND lease_owner = ?5",
                rusqlite::params![attempts, next_ns, error, id, owner],
            )?;
            Ok(())
        })
        .await
    }

    async fn outbox_depth(&self) -> StoreResult<u64> {
        self.read(|c| {
            let n: i64 =
                c.query_row("SELECT count(*) FROM notification_outbox WHERE state = 'pending'", [], |r| r.get(0))?;
            Ok(n.max(0).unsigned_abs())
        })
        .await
        .map_err(|e| e.during("outbox_depth"))
    }

    async fn rate_take(
        &self,
        key: &RateKey,
        now_ns: i64,
        window_ns: i64,
        max_per_window: u32,
        last: &OutboxItem,
    ) -> StoreResult<RateDecision> {
        let (key, last_json) = (key.clone(), last_event_json(last)?);
        self.notify_write("rate_take", move |conn| {
            let tx = conn.transaction()?;
            let window: Option<(i64, i64, i64, i64, Option<String>)> = tx
                .query_row(
                    "SELECT start_ns, window_ns, sent, suppressed, last_event FROM notification_windows
                     WHERE instrument_id = ?1 AND fingerprint = ?2 AND destination = ?3",
                    rusqlite::params![key.instrument_id, key.fingerprint, key.destination],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()?;
            let decision = match window {
                Some((start, w, sent, suppressed, last)) if start.saturating_add(w) > now_ns => {
                    if sent < i64::from(max_per_window) {
                        tx.execute(
                            "UPDATE notification_windows SET sent = sent + 1
                             WHERE instrument_id = ?1 AND fingerprint = ?2 AND destination = ?3",
                            rusqlite::params![key.instrument_id, key.fingerprint, key.destination],
                        )?;
                        RateDecision::Send
                    } else {
                        let _ = (suppressed, last);
                        tx.execute(
                            "UPDATE notification_windows SET suppressed = suppressed + 1, last_event = ?4
                             WHERE instrument_id = ?1 AND fingerprint = ?2 AND destination = ?3",
                            rusqlite::params![key.instrument_id, key.fingerprint, key.destination, last_json],
                        )?;
                        RateDecision::Suppress
                    }
                }
                ended => {
                    if let Some((_, w, _, suppressed, last)) = ended {
                        if suppressed > 0 {
                            insert_digest(
                                &tx,
                                &key.instrument_id,
                                &key.fingerprint,
                                &key.destination,
                                suppressed,
                                w,
                                last,
                                now_ns,
                            )?;
                        }
                    }
                    tx.execute(
                        "INSERT OR REPLACE INTO notification_windows
                             (instrument_id, fingerprint, destination, start_ns, window_ns, sent, suppressed, last_event)
                         VALUES (?1, ?2, ?3, ?4, ?5, 1, 0, NULL)",
                        rusqlite::params![key.instrument_id, key.fingerprint, key.destination, now_ns, window_ns],
                    )?;
                    RateDecision::Send
                }
            };
            tx.commit()?;
            Ok(decision)
        })
        .await
    }

    async fn flush_windows(&self, now_ns: i64) -> StoreResult<u64> {
        self.notify_write("flush_windows", move |conn| {
            let tx = conn.transaction()?;
            let ended: Vec<(String, String, String, i64, i64, Option<String>)> = {
                let mut stmt = tx.prepare_cached(
                    "DELETE FROM notification_windows WHERE start_ns + window_ns <= ?1
                     RETURNING instrument_id, fingerprint, destination, window_ns, suppressed, last_event",
                )?;
                let rows = stmt
                    .query_map([now_ns], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                rows
            };
            let mut digests = 0;
            for (instrument, fingerprint, destination, w, suppressed, last) in ended {
                if suppressed > 0 {
                    insert_digest(&tx, &instrument, &fingerprint, &destination, suppressed, w, last, now_ns)?;
                    digests += 1;
                }
            }
            tx.commit()?;
            Ok(digests)
        })
        .await
    }

    async fn create_silence(&self, s: &NewSilence, now_ns: i64) -> StoreResult<Silence> {
        let s = s.clone();
        self.notify_write("create_silence", move |conn| {
            let silence = conn.query_row(
                &format!(
                    "INSERT INTO notification_silences (instrument_id, event_type, fingerprint, silenced_by, silenced_at,
                         expires_at, reason)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING {SILENCE_COLUMNS}"
                ),
                rusqlite::params![
                    s.instrument_id,
                    s.event_type,
                    s.fingerprint,
                    s.silenced_by,
                    now_ns,
                    s.expires_ns,
                    s.reason
                ],
                silence_row,
            )?;
            Ok(silence)
        })
        .await
    }

    async fn silences(&self, instrument_id: &str) -> StoreResult<Vec<Silence>> {
        let id = instrument_id.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {SILENCE_COLUMNS} FROM notification_silences WHERE instrument_id = ?1 ORDER BY id DESC LIMIT 10000"
            ))?;
            let rows = stmt.query_map([id], silence_row)?.collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
        .map_err(|e| e.during("silences"))
    }

    async fn active_silences(&self, now_ns: i64) -> StoreResult<Vec<Silence>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {SILENCE_COLUMNS} FROM notification_silences WHERE expires_at > ?1 ORDER BY id"
            ))?;
            let rows = stmt.query_map([now_ns], silence_row)?.collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
        .map_err(|e| e.during("active_silences"))
    }

    async fn silence(&self, id: i64) -> StoreResult<Option<Silence>> {
        self.read(move |c| {
            let sql = format!("SELECT {SILENCE_COLUMNS} FROM notification_silences WHERE id = ?1");
            Ok(c.query_row(&sql, [id], silence_row).optional()?)
        })
        .await
        .map_err(|e| e.during("silence"))
    }

    async fn delete_silence(&self, id: i64) -> StoreResult<bool> {
        self.notify_write("delete_silence", move |conn| {
            Ok(conn.execute("DELETE FROM notification_silences WHERE id = ?1", [id])? > 0)
        })
        .await
    }

    async fn expire_silence(&self, id: i64, now_ns: i64) -> StoreResult<bool> {
        self.notify_write("expire_silence", move |conn| {
            Ok(conn.execute(
                "UPDATE notification_silences SET expires_at = min(expires_at, ?1) WHERE id = ?2",
                [now_ns, id],
            )? > 0)
        })
        .await
    }

    async fn issue(&self, instrument_id: &str, fingerprint: &str, repo: &str) -> StoreResult<Option<IssueRecord>> {
        let key = (instrument_id.to_owned(), fingerprint.to_owned(), repo.to_owned());
        self.read(move |c| {
            let row = c
                .query_row(
                    &format!(
                        "SELECT {ISSUE_COLUMNS} FROM notification_issues
                         WHERE instrument_id = ?1 AND error_fingerprint = ?2 AND github_repo = ?3"
                    ),
                    rusqlite::params![key.0, key.1, key.2],
                    issue_row,
                )
                .optional()?;
            row.map(finish_issue).transpose()
        })
        .await
        .map_err(|e| e.during("issue"))
    }

    async fn put_issue(&self, r: &IssueRecord) -> StoreResult<()> {
        let (r, recent) = (r.clone(), to_json(&r.recent_entity_ids)?);
        self.notify_write("put_issue", move |conn| {
            conn.execute(
                "INSERT OR REPLACE INTO notification_issues (instrument_id, error_fingerprint, github_repo,
                     github_issue_number, entity_count, first_seen_at, last_updated_at, recent_entity_ids, closed,
                     intent_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                rusqlite::params![
                    r.instrument_id,
                    r.fingerprint,
                    r.repo,
                    r.issue_number,
                    r.entity_count,
                    r.first_seen_ns,
                    r.last_updated_ns,
                    recent,
                    i64::from(r.closed),
                    r.intent_ns
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn begin_issue(&self, r: &IssueRecord) -> StoreResult<bool> {
        let (r, recent) = (r.clone(), to_json(&r.recent_entity_ids)?);
        self.notify_write("begin_issue", move |conn| {
            Ok(conn.execute(
                "INSERT OR IGNORE INTO notification_issues (instrument_id, error_fingerprint, github_repo,
                     github_issue_number, entity_count, first_seen_at, last_updated_at, recent_entity_ids, closed,
                     intent_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                rusqlite::params![
                    r.instrument_id,
                    r.fingerprint,
                    r.repo,
                    r.issue_number,
                    r.entity_count,
                    r.first_seen_ns,
                    r.last_updated_ns,
                    recent,
                    i64::from(r.closed),
                    r.intent_ns
                ],
            )? > 0)
        })
        .await
    }

    async fn mark_issue_closed(
        &self,
        instrument_id: &str,
        fingerprint: &str,
        repo: &str,
        closed: bool,
    ) -> StoreResult<bool> {
        let key = (instrument_id.to_owned(), fingerprint.to_owned(), repo.to_owned());
        self.notify_write("mark_issue_closed", move |conn| {
            Ok(conn.execute(
                "UPDATE notification_issues SET closed = ?4
                 WHERE instrument_id = ?1 AND error_fingerprint = ?2 AND github_repo = ?3 AND closed <> ?4",
                rusqlite::params![key.0, key.1, key.2, i64::from(closed)],
            )? > 0)
        })
        .await
    }

    async fn delete_issue(&self, instrument_id: &str, fingerprint: &str, repo: &str) -> StoreResult<()> {
        let key = (instrument_id.to_owned(), fingerprint.to_owned(), repo.to_owned());
        self.notify_write("delete_issue", move |conn| {
            conn.execute(
                "DELETE FROM notification_issues WHERE instrument_id = ?1 AND error_fingerprint = ?2 AND github_repo = ?3",
                rusqlite::params![key.0, key.1, key.2],
            )?;
            Ok(())
        })
        .await
    }

    async fn issues(&self, instrument_id: Option<&str>) -> StoreResult<Vec<IssueRecord>> {
        let id = instrument_id.map(str::to_owned);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ISSUE_COLUMNS} FROM notification_issues WHERE ?1 IS NULL OR instrument_id = ?1
                 ORDER BY last_updated_at DESC LIMIT 10000"
            ))?;
            let rows = stmt.query_map([id], issue_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(finish_issue).collect()
        })
        .await
        .map_err(|e| e.during("issues"))
    }

    async fn log_delivery(&self, d: &Delivery) -> StoreResult<()> {
        let d = d.clone();
        self.notify_write("log_delivery", move |conn| {
            let id = conn.query_row(
                "INSERT INTO notification_deliveries (at_ns, instrument_id, event_name, fingerprint, channel, outcome, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
                rusqlite::params![d.at_ns, d.instrument_id, d.event_name, d.fingerprint, d.channel, d.outcome, d.detail],
                |r| r.get::<_, i64>(0),
            )?;
            if id % 100 == 0 {
                conn.execute("DELETE FROM notification_deliveries WHERE id <= ?1", [id - DELIVERY_LOG_ROWS])?;
            }
            Ok(())
        })
        .await
    }

    async fn deliveries(&self, instrument_id: Option<&str>, limit: usize) -> StoreResult<Vec<Delivery>> {
        let id = instrument_id.map(str::to_owned);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT at_ns, instrument_id, event_name, fingerprint, channel, outcome, detail
                 FROM notification_deliveries WHERE ?1 IS NULL OR instrument_id = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(rusqlite::params![id, limit], |r| {
                Ok(Delivery {
                    at_ns: r.get(0)?,
                    instrument_id: r.get(1)?,
                    event_name: r.get(2)?,
                    fingerprint: r.get(3)?,
                    channel: r.get(4)?,
                    outcome: r.get(5)?,
                    detail: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
        .map_err(|e| e.during("deliveries"))
    }
}
