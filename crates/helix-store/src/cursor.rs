//! Keyset paging shared by every backend: page sizes, splitting fetched rows into a page, and
//! opaque cursors (a kind tag plus the last sort key of a page, as a JSON array rendered in
//! hex so it is URL-safe and carries any ID unchanged).

use helix_model::ids::{from_hex, to_hex};
use helix_model::EntityEvent;
use serde_json::Value;

use crate::{Page, PageRequest, StoreError};

/// Page size actually used: at least one row so that a cursor always makes progress.
pub(crate) fn page_limit(page: &PageRequest) -> usize {
    page.limit.max(1)
}

/// `limit + 1` as a LIMIT parameter: the extra row tells whether a next page exists.
pub(crate) fn fetch_limit(limit: usize) -> i64 {
    i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX)
}

/// Split `limit + 1` fetched rows into a page and whether a next page exists.
pub(crate) fn split_page<T>(mut rows: Vec<T>, limit: usize, cursor_of: impl Fn(&T) -> String) -> Page<T> {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if more { rows.last().map(cursor_of) } else { None };
    Page { items: rows, next_cursor }
}

/// The cursor kind of an entity's events, oldest first.
pub(crate) const EVENTS: &str = "events";
/// The cursor kind of an instrument's events, newest first.
pub(crate) const INSTRUMENT_EVENTS: &str = "instrument_events";

/// The cursor kind of the trace search, newest first.
pub(crate) const TRACES: &str = "traces";

/// The cursor after `t` in the trace search, ordered by (start descending, trace ID).
pub(crate) fn after_trace(t: &crate::TraceSummary) -> String {
    encode(TRACES, vec![Value::from(t.start_ns), Value::from(t.trace_id.clone())])
}

/// The cursor kinds of a log search, one per order (a cursor keeps the order it was made for).
pub(crate) fn log_kind(order: crate::LogOrder) -> &'static str {
    match order {
        crate::LogOrder::Asc => "logs",
        crate::LogOrder::Desc => "logs_desc",
    }
}

/// The cursor after a log row with this (timestamp, row ID) key.
pub(crate) fn after_log(order: crate::LogOrder, timestamp_ns: i64, id: i64) -> String {
    encode(log_kind(order), vec![Value::from(timestamp_ns), Value::from(id)])
}

/// The (timestamp, row ID) key of a log cursor.
pub(crate) fn log_key(order: crate::LogOrder, cursor: &str) -> Result<(i64, i64), StoreError> {
    let p = decode(log_kind(order), cursor, 2)?;
    Ok((part_i64(&p, 0)?, part_i64(&p, 1)?))
}

/// The cursor after `e` in an event list ordered by (timestamp, span, ordinal), either way.
pub(crate) fn after_event(kind: &str, e: &EntityEvent) -> String {
    encode(kind, vec![Value::from(e.timestamp_ns), Value::from(e.span_id.clone()), Value::from(e.ordinal)])
}

/// The (timestamp, span, ordinal) key of an event cursor; the ordinal fits the INTEGER column.
pub(crate) fn event_key(kind: &str, cursor: &str) -> Result<(i64, String, i32), StoreError> {
    let p = decode(kind, cursor, 3)?;
    let ord = i32::try_from(part_i64(&p, 2)?).map_err(|_| StoreError::BadCursor("ordinal out of range".into()))?;
    Ok((part_i64(&p, 0)?, part_str(&p, 1)?, ord))
}

/// Encode `kind` and the sort-key `parts` of the last row of a page.
pub(crate) fn encode(kind: &str, parts: Vec<Value>) -> String {
    let mut all = Vec::with_capacity(parts.len() + 1);
    all.push(Value::String(kind.to_owned()));
    all.extend(parts);
    // Serialising a Vec<Value> of strings and numbers cannot fail.
    let json = serde_json::to_string(&all).unwrap_or_default();
    to_hex(json.as_bytes())
}

/// The parts of a cursor of `kind` with exactly `arity` parts; anything else is `BadCursor`.
pub(crate) fn decode(kind: &str, cursor: &str, arity: usize) -> Result<Vec<Value>, StoreError> {
    let bad = || StoreError::BadCursor(format!("not a {kind} cursor of this store"));
    // A cursor is never huge; refuse absurd input before decoding it.
    if cursor.len() > 64 * 1024 {
        return Err(bad());
    }
    let bytes = from_hex(cursor).ok_or_else(bad)?;
    let mut parts: Vec<Value> = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if parts.len() != arity + 1 || parts[0].as_str() != Some(kind) {
        return Err(bad());
    }
    parts.remove(0);
    Ok(parts)
}

/// Typed accessors for decoded parts, each failing as `BadCursor`.
pub(crate) fn part_i64(parts: &[Value], i: usize) -> Result<i64, StoreError> {
    parts
        .get(i)
        .and_then(Value::as_i64)
        .ok_or_else(|| StoreError::BadCursor(format!("cursor part {i} is not an integer")))
}

pub(crate) fn part_str(parts: &[Value], i: usize) -> Result<String, StoreError> {
    parts
        .get(i)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| StoreError::BadCursor(format!("cursor part {i} is not a string")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_foreign_cursors() {
        let c = encode("ev", vec![Value::from(5), Value::from("a/\"b"), Value::from(2)]);
        let parts = decode("ev", &c, 3).unwrap();
        assert_eq!(part_i64(&parts, 0).unwrap(), 5);
        assert_eq!(part_str(&parts, 1).unwrap(), "a/\"b");
        assert!(decode("op", &c, 3).is_err());
        assert!(decode("ev", &c, 2).is_err());
        assert!(decode("ev", "zz", 3).is_err());
        assert!(decode("ev", "", 3).is_err());
        assert!(part_str(&parts, 0).is_err());
    }
}
