//! The SQLite side of flags: raising, clearing and listing `entity_flags` rows. Flag writes take
//! the writer connection (one short IMMEDIATE transaction each), like ingest batches.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

use super::read::json_keys;
use crate::{Cleared, Flag, FlagAdded, NewFlag, Severity, StoreError, StoreResult, MAX_FLAGS_PER_ENTITY};

const FLAG_COLUMNS: &str =
    "flag_id, entity_id, severity, reason, flagged_by, principal, created_at, cleared_at, cleared_by";

fn flag_from_row(r: &Row<'_>) -> rusqlite::Result<(Flag, String)> {
    let severity: String = r.get(2)?;
    Ok((
        Flag {
            flag_id: r.get(0)?,
            entity_id: r.get(1)?,
            // Checked below: the column's CHECK constraint allows only the two values.
            severity: Severity::Bad,
            reason: r.get(3)?,
            flagged_by: r.get(4)?,
            principal: r.get(5)?,
            created_at: r.get(6)?,
            cleared_at: r.get(7)?,
            cleared_by: r.get(8)?,
        },
        severity,
    ))
}

fn decode((mut flag, severity): (Flag, String)) -> StoreResult<Flag> {
    flag.severity =
        Severity::parse(&severity).ok_or_else(|| StoreError::corrupt(format!("flag severity {severity:?}")))?;
    Ok(flag)
}

fn one(tx: &Transaction<'_>, flag_id: &str) -> StoreResult<Option<Flag>> {
    let row = tx
        .prepare_cached(&format!("SELECT {FLAG_COLUMNS} FROM entity_flags WHERE flag_id = ?1"))?
        .query_row([flag_id], flag_from_row)
        .optional()?;
    row.map(decode).transpose()
}

pub(super) fn add(conn: &mut Connection, flag: &NewFlag) -> StoreResult<FlagAdded> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let known: Option<i64> = tx
        .prepare_cached("SELECT 1 FROM entities WHERE id = ?1")?
        .query_row([&flag.entity_id], |r| r.get(0))
        .optional()?;
    if known.is_none() {
        return Ok(FlagAdded::UnknownEntity);
    }
    let count: i64 = tx
        .prepare_cached("SELECT count(*) FROM entity_flags WHERE entity_id = ?1")?
        .query_row([&flag.entity_id], |r| r.get(0))?;
    if usize::try_from(count).unwrap_or(usize::MAX) >= MAX_FLAGS_PER_ENTITY {
        return Ok(FlagAdded::TooMany);
    }
    tx.prepare_cached(
        "INSERT INTO entity_flags (flag_id, entity_id, severity, reason, flagged_by, principal)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(rusqlite::params![
        flag.flag_id,
        flag.entity_id,
        flag.severity.as_str(),
        flag.reason,
        flag.flagged_by,
        flag.principal
    ])?;
    let stored = one(&tx, &flag.flag_id)?.ok_or_else(|| StoreError::bug("an inserted flag is not there"))?;
    tx.commit()?;
    Ok(FlagAdded::Added(stored))
}

pub(super) fn clear(conn: &mut Connection, entity_id: &str, flag_id: &str, cleared_by: &str) -> StoreResult<Cleared> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(flag) = one(&tx, flag_id)?.filter(|f| f.entity_id == entity_id) else {
        return Ok(Cleared::Unknown);
    };
    if !flag.is_active() {
        return Ok(Cleared::Already(flag));
    }
    tx.prepare_cached(
        "UPDATE entity_flags SET cleared_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), cleared_by = ?2
         WHERE flag_id = ?1",
    )?
    .execute((flag_id, cleared_by))?;
    let cleared = one(&tx, flag_id)?.ok_or_else(|| StoreError::bug("a cleared flag is not there"))?;
    tx.commit()?;
    Ok(Cleared::Now(cleared))
}

pub(super) fn list(conn: &Connection, entity_ids: &[String], active_only: bool) -> StoreResult<Vec<Flag>> {
    if entity_ids.is_empty() {
        return Ok(Vec::new());
    }
    let active = if active_only { " AND cleared_at IS NULL" } else { "" };
    let keys: Vec<&str> = entity_ids.iter().map(String::as_str).collect();
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {FLAG_COLUMNS} FROM entity_flags
             WHERE entity_id IN (SELECT value FROM json_each(?1)){active}
             ORDER BY created_at, flag_id"
        ))?
        .query_map([json_keys(&keys)?], flag_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(decode).collect()
}
