//! `NotifyStore` on SQLite: the outbox, windows, silences, issues and delivery log of
//! `006_notifications.sql`. One process owns the file, so a claim is a plain update under the
//! writer lock; the lease still protects a row from a second dispatcher task.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row};

use super::{lock, SqliteStore};
use crate::notify::{
    sql, Delivery, DigestRow, IssueRecord, NewSilence, NotifyStore, OutboxEvent, OutboxItem, OutboxKind, Progress,
    RateDecision, RateKey, RoundWrites, Settle, Silence, Window, DELIVERY_LOG_ROWS,
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

const OUTBOX_COLUMNS: &str = "id, kind, event_id, instrument_id, event_name, entity_id, stage, fingerprint, \
     timestamp_ns, metadata, destination, digest_count, digest_window_ns, attempts, progress, created_ns";

/// A claimed row as stored: the item, and what is read or parsed after the claim (its event
/// row's id, its own time, metadata and progress).
struct Claimed {
    item: OutboxItem,
    event_id: Option<i64>,
    timestamp_ns: Option<i64>,
    metadata: Option<String>,
    progress: Option<String>,
    created_ns: i64,
}

fn outbox_row(r: &Row<'_>) -> rusqlite::Result<Claimed> {
    let item = OutboxItem {
        id: r.get(0)?,
        kind: OutboxKind::parse(&r.get::<_, String>(1)?),
        instrument_id: r.get(3)?,
        event_name: r.get(4)?,
        entity_id: r.get(5)?,
        stage: r.get(6)?,
        fingerprint: r.get(7)?,
        timestamp_ns: 0,
        metadata: Default::default(),
        destination: r.get(10)?,
        digest_count: r.get::<_, i64>(11)?.max(0).unsigned_abs(),
        digest_window_ns: r.get(12)?,
        attempts: u32::try_from(r.get::<_, i64>(13)?).unwrap_or(0),
        progress: Progress::default(),
    };
    Ok(Claimed {
        item,
        event_id: r.get(2)?,
        timestamp_ns: r.get(8)?,
        metadata: r.get(9)?,
        progress: r.get(14)?,
        created_ns: r.get(15)?,
    })
}

/// The item of a claimed row: an event's row gets the time and metadata of its event row
/// (`crate::notify::occurrence` says what is sent when that row is gone).
fn finish_item(conn: &Connection, c: Claimed) -> StoreResult<OutboxItem> {
    let mut item = c.item;
    let mut occurrence = (c.timestamp_ns, c.metadata);
    if let Some(event_id) = c.event_id {
        // The class check guards against a rowid another event took after this one's was
        // deleted: that is no occurrence of this row's class.
        let found: Option<(i64, String)> = conn
            .prepare_cached(
                "SELECT timestamp_ns, metadata FROM entity_events
                 WHERE id = ?1 AND instrument_id = ?2 AND event_name = ?3 AND entity_id = ?4",
            )?
            .query_row(rusqlite::params![event_id, item.instrument_id, item.event_name, item.entity_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        if let Some((ts, metadata)) = found {
            occurrence = (Some(ts), Some(metadata));
        }
    }
    match occurrence {
        (Some(ts), Some(metadata)) => {
            item.timestamp_ns = ts;
            item.metadata = parse_metadata(&metadata)?;
        }
        _ => crate::notify::occurrence_gone(&mut item, c.created_ns),
    }
    if let Some(progress) = c.progress {
        item.progress =
            serde_json::from_str(&progress).map_err(|e| StoreError::corrupt(format!("outbox progress: {e}")))?;
    }
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

/// The outbox rows of a batch, in its transaction: one per event while the outbox has room
/// under `max`, the rest coalesced per class. `event_ids[i]`: the rowid of `rows[i]`'s event
/// row, inserted now. (recorded, coalesced).
pub(super) fn write_outbox(
    conn: &Connection,
    rows: &[OutboxEvent<'_>],
    event_ids: &[i64],
    max: u64,
) -> StoreResult<(u64, u64)> {
    let span = conn.prepare_cached(sql::OUTBOX_SPAN)?.query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let room = if crate::notify::outbox_fits(span, rows.len(), max) {
        rows.len()
    } else {
        let pending: i64 = conn.prepare_cached(DEPTH)?.query_row([], |r| r.get(0))?;
        crate::notify::outbox_room(pending.max(0).unsigned_abs(), rows.len(), max)
    };
    let (fit, over) = rows.split_at(room);
    // Plain INSERT: the caller passes only events inserted now (009_outbox_rowid.sql). The
    // row keeps the class; the occurrence stays in the event row (011_outbox_slim.sql).
    let mut stmt = conn.prepare_cached(
        "INSERT INTO notification_outbox (kind, event_id, instrument_id, event_name, entity_id, fingerprint, stage,
             created_ns)
         VALUES ('event', ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let created_ns = crate::notify::now_ns();
    for (o, event_id) in fit.iter().zip(event_ids) {
        let e = o.event;
        stmt.execute(rusqlite::params![
            event_id,
            e.instrument_id,
            e.event_name,
            e.entity_id,
            o.fingerprint,
            o.stage,
            created_ns,
        ])?;
    }
    for (o, count) in crate::notify::coalesce(over) {
        let e = o.event;
        let metadata = to_json(&e.metadata)?;
        let params: [&dyn rusqlite::ToSql; 8] = [
            &e.instrument_id,
            &e.event_name,
            &o.fingerprint,
            &count,
            &e.entity_id,
            &o.stage,
            &e.timestamp_ns,
            &metadata,
        ];
        if conn.prepare_cached(&q(sql::ADD_OVERFLOW))?.execute(&params[..])? == 0 {
            // The class's first overflow row: the same parameters and the time it was made.
            let mut with_now = params.to_vec();
            with_now.push(&created_ns);
            conn.prepare_cached(&q(sql::INSERT_OVERFLOW))?.execute(&with_now[..])?;
        }
    }
    Ok((fit.len() as u64, over.len() as u64))
}

/// Rows not finished yet: every row (finished ones are deleted; 011_outbox_slim.sql).
const DEPTH: &str = "SELECT count(*) FROM notification_outbox";

/// A shared statement (`notify::sql`, `$n` parameters) in SQLite's `?n` form.
fn q(statement: &str) -> String {
    statement.replace('$', "?")
}

fn insert_digest(conn: &Connection, d: &DigestRow, now_ns: i64) -> StoreResult<()> {
    conn.prepare_cached(&q(sql::INSERT_DIGEST))?.execute(rusqlite::params![
        d.instrument_id,
        d.event_name,
        d.entity_id,
        d.stage,
        d.fingerprint,
        d.timestamp_ns,
        to_json(&d.metadata)?,
        d.destination,
        d.count,
        d.window_ns,
        now_ns,
    ])?;
    Ok(())
}

fn window_row(r: &Row<'_>) -> rusqlite::Result<(Window, Option<String>)> {
    Ok((
        Window { start_ns: r.get(0)?, window_ns: r.get(1)?, sent: r.get(2)?, suppressed: r.get(3)?, last_event: None },
        r.get(4)?,
    ))
}

fn finish_window((mut w, last): (Window, Option<String>)) -> Window {
    // A last event that does not parse only loses the digest's example, never its count.
    w.last_event = last.and_then(|l| serde_json::from_str(&l).ok());
    w
}

/// The verdicts of a round's takes, folded per window in one transaction.
fn take_all(tx: &Connection, owner: &str, now_ns: i64, writes: &RoundWrites) -> StoreResult<Vec<RateDecision>> {
    let mut decisions = Vec::with_capacity(writes.takes.len());
    let mut windows: std::collections::HashMap<(&str, &str, &str), Window> = std::collections::HashMap::new();
    for t in &writes.takes {
        let k = &t.key;
        let id = (k.instrument_id.as_str(), k.fingerprint.as_str(), k.destination.as_str());
        let window = match windows.entry(id) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                tx.prepare_cached(&q(sql::ENSURE_WINDOW))?.execute(rusqlite::params![
                    k.instrument_id,
                    k.fingerprint,
                    k.destination,
                    now_ns,
                    t.window_ns
                ])?;
                let w = tx
                    .prepare_cached(&q(sql::WINDOW))?
                    .query_row(rusqlite::params![k.instrument_id, k.fingerprint, k.destination], window_row)?;
                v.insert(finish_window(w))
            }
        };
        let (decision, digest) = window.take(k, now_ns, t.window_ns, t.max_per_window, &t.last);
        if let Some(d) = digest {
            insert_digest(tx, &d, now_ns)?;
        }
        if decision == RateDecision::Suppress && t.finish_if_suppressed {
            tx.prepare_cached(&q(sql::FINISH))?.execute(rusqlite::params![t.id, owner])?;
        } else {
            let progress = Progress { slack_allowed: Some(decision == RateDecision::Send), ..t.progress.clone() };
            tx.prepare_cached(&q(sql::SAVE_PROGRESS))?.execute(rusqlite::params![to_json(&progress)?, t.id, owner])?;
        }
        decisions.push(decision);
    }
    for ((instrument, fingerprint, destination), w) in windows {
        let last = w.last_event.as_ref().map(to_json).transpose()?;
        tx.prepare_cached(&q(sql::PUT_WINDOW))?.execute(rusqlite::params![
            instrument,
            fingerprint,
            destination,
            w.start_ns,
            w.window_ns,
            w.sent,
            w.suppressed,
            last
        ])?;
    }
    Ok(decisions)
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
                    // The rows in id order, up to the limit (every row is pending: finished
                    // ones are deleted).
                    "UPDATE notification_outbox SET lease_owner = ?1, lease_until_ns = ?2
                     WHERE id IN (SELECT id FROM notification_outbox
                                  WHERE next_attempt_ns <= ?3 AND lease_until_ns <= ?3
                                  ORDER BY id LIMIT ?4)
                     RETURNING {OUTBOX_COLUMNS}"
                ))?;
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let rows = stmt
                    .query_map(rusqlite::params![owner, now_ns.saturating_add(lease_ns), now_ns, limit], outbox_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                rows
            };
            let mut items = rows.into_iter().map(|c| finish_item(&tx, c)).collect::<StoreResult<Vec<_>>>()?;
            tx.commit()?;
            items.sort_by_key(|i| i.id);
            Ok(items)
        })
        .await
    }

    async fn write_round(&self, owner: &str, now_ns: i64, writes: &RoundWrites) -> StoreResult<Vec<RateDecision>> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let (owner, writes) = (owner.to_owned(), writes.clone());
        self.notify_write("write_round", move |conn| {
            let tx = conn.transaction()?;
            let decisions = take_all(&tx, &owner, now_ns, &writes)?;
            for s in &writes.settle {
                match s {
                    Settle::Finish { id } => {
                        tx.prepare_cached(&q(sql::FINISH))?.execute(rusqlite::params![id, owner])?;
                    }
                    Settle::Retry { id, attempts, next_ns, error, progress } => {
                        tx.prepare_cached(&q(sql::RETRY))?.execute(rusqlite::params![
                            attempts,
                            next_ns,
                            error,
                            to_json(progress)?,
                            id,
                            owner
                        ])?;
                    }
                }
            }
            if !writes.log.is_empty() {
                let mut stmt = tx.prepare_cached(&q(sql::LOG))?;
                for d in &writes.log {
                    stmt.execute(rusqlite::params![
                        d.at_ns,
                        d.instrument_id,
                        d.event_name,
                        d.fingerprint,
                        d.channel,
                        d.outcome,
                        d.detail
                    ])?;
                }
                drop(stmt);
                tx.prepare_cached(&q(sql::PRUNE_LOG))?.execute([DELIVERY_LOG_ROWS])?;
            }
            tx.commit()?;
            Ok(decisions)
        })
        .await
    }

    async fn save_progress(&self, id: i64, owner: &str, progress: &Progress) -> StoreResult<()> {
        let (owner, progress) = (owner.to_owned(), to_json(progress)?);
        self.notify_write("save_progress", move |conn| {
            conn.prepare_cached(&q(sql::SAVE_PROGRESS))?.execute(rusqlite::params![progress, id, owner])?;
            Ok(())
        })
        .await
    }

    async fn renew_leases(&self, owner: &str, until_ns: i64) -> StoreResult<u64> {
        let owner = owner.to_owned();
        self.notify_write("renew_leases", move |conn| {
            let n = conn.prepare_cached(&q(sql::RENEW))?.execute(rusqlite::params![until_ns, owner])?;
            Ok(n as u64)
        })
        .await
    }

    async fn outbox_depth(&self) -> StoreResult<u64> {
        self.read(|c| {
            let n: i64 = c.prepare_cached(DEPTH)?.query_row([], |r| r.get(0))?;
            Ok(n.max(0).unsigned_abs())
        })
        .await
        .map_err(|e| e.during("outbox_depth"))
    }

    async fn flush_windows(&self, now_ns: i64) -> StoreResult<u64> {
        self.notify_write("flush_windows", move |conn| {
            let tx = conn.transaction()?;
            let ended: Vec<(RateKey, (Window, Option<String>))> = {
                let mut stmt = tx.prepare_cached(&q(sql::END_WINDOWS))?;
                let rows = stmt
                    .query_map([now_ns], |r| {
                        let key = RateKey { instrument_id: r.get(0)?, fingerprint: r.get(1)?, destination: r.get(2)? };
                        let w = Window {
                            start_ns: r.get(3)?,
                            window_ns: r.get(4)?,
                            sent: r.get(5)?,
                            suppressed: r.get(6)?,
                            last_event: None,
                        };
                        Ok((key, (w, r.get(7)?)))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                rows
            };
            let mut digests = 0;
            for (key, w) in ended {
                if let Some(d) = DigestRow::of(&key, &finish_window(w), now_ns) {
                    insert_digest(&tx, &d, now_ns)?;
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
