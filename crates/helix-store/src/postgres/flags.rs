//! The PostgreSQL side of flags: raising, clearing and listing `entity_flags` rows, each a
//! short transaction of its own.

use deadpool_postgres::Object;
use tokio_postgres::Row;

use super::map_pg;
use crate::{Cleared, Flag, FlagAdded, NewFlag, Severity, StoreError, StoreResult, MAX_FLAGS_PER_ENTITY};

/// `created_at` and `cleared_at` in the RFC 3339 form every `created_at` of the API has.
const FLAG_COLUMNS: &str = "flag_id, entity_id, severity, reason, flagged_by, principal,
    to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
    to_char(cleared_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), cleared_by";

fn flag_from_row(r: &Row) -> StoreResult<Flag> {
    let severity: String = r.get(2);
    Ok(Flag {
        flag_id: r.get(0),
        entity_id: r.get(1),
        severity: Severity::parse(&severity)
            .ok_or_else(|| StoreError::corrupt(format!("flag severity {severity:?}")))?,
        reason: r.get(3),
        flagged_by: r.get(4),
        principal: r.get(5),
        created_at: r.get(6),
        cleared_at: r.get(7),
        cleared_by: r.get(8),
    })
}

async fn one(tx: &tokio_postgres::Transaction<'_>, flag_id: &str) -> StoreResult<Option<Flag>> {
    let sql = format!("SELECT {FLAG_COLUMNS} FROM entity_flags WHERE flag_id = $1");
    let row = tx.query_opt(&sql, &[&flag_id]).await.map_err(map_pg)?;
    row.as_ref().map(flag_from_row).transpose()
}

pub(super) async fn add(client: &mut Object, flag: &NewFlag) -> StoreResult<FlagAdded> {
    let tx = client.transaction().await.map_err(map_pg)?;
    if tx.query_opt("SELECT 1 FROM entities WHERE id = $1", &[&flag.entity_id]).await.map_err(map_pg)?.is_none() {
        return Ok(FlagAdded::UnknownEntity);
    }
    let count: i64 = tx
        .query_one("SELECT count(*) FROM entity_flags WHERE entity_id = $1", &[&flag.entity_id])
        .await
        .map_err(map_pg)?
        .get(0);
    if usize::try_from(count).unwrap_or(usize::MAX) >= MAX_FLAGS_PER_ENTITY {
        return Ok(FlagAdded::TooMany);
    }
    tx.execute(
        "INSERT INTO entity_flags (flag_id, entity_id, severity, reason, flagged_by, principal)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[&flag.flag_id, &flag.entity_id, &flag.severity.as_str(), &flag.reason, &flag.flagged_by, &flag.principal],
    )
    .await
    .map_err(map_pg)?;
    let stored = one(&tx, &flag.flag_id).await?.ok_or_else(|| StoreError::bug("an inserted flag is not there"))?;
    tx.commit().await.map_err(map_pg)?;
    Ok(FlagAdded::Added(stored))
}

pub(super) async fn clear(
    client: &mut Object,
    entity_id: &str,
    flag_id: &str,
    cleared_by: &str,
) -> StoreResult<Cleared> {
    let tx = client.transaction().await.map_err(map_pg)?;
    // FOR UPDATE: two clears of one flag record one clearing.
    let locked = tx
        .query_opt("SELECT entity_id FROM entity_flags WHERE flag_id = $1 FOR UPDATE", &[&flag_id])
        .await
        .map_err(map_pg)?;
    if locked.is_none_or(|r| r.get::<_, String>(0) != entity_id) {
        return Ok(Cleared::Unknown);
    }
    let flag = one(&tx, flag_id).await?.ok_or_else(|| StoreError::bug("a locked flag is not there"))?;
    if !flag.is_active() {
        return Ok(Cleared::Already(flag));
    }
    tx.execute(
        "UPDATE entity_flags SET cleared_at = now(), cleared_by = $2 WHERE flag_id = $1",
        &[&flag_id, &cleared_by],
    )
    .await
    .map_err(map_pg)?;
    let cleared = one(&tx, flag_id).await?.ok_or_else(|| StoreError::bug("a cleared flag is not there"))?;
    tx.commit().await.map_err(map_pg)?;
    Ok(Cleared::Now(cleared))
}

pub(super) async fn list(c: &Object, entity_ids: &[String], active_only: bool) -> StoreResult<Vec<Flag>> {
    if entity_ids.is_empty() {
        return Ok(Vec::new());
    }
    let active = if active_only { " AND cleared_at IS NULL" } else { "" };
    let sql = format!(
        "SELECT {FLAG_COLUMNS} FROM entity_flags WHERE entity_id = ANY($1){active} ORDER BY created_at, flag_id"
    );
    let stmt = c.prepare_cached(&sql).await.map_err(map_pg)?;
    let rows = c.query(&stmt, &[&entity_ids]).await.map_err(map_pg)?;
    rows.iter().map(flag_from_row).collect()
}
