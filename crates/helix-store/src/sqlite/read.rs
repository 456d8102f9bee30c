//! The SQLite read path: entity rows, keyset-paged lists, search, summaries, and the level
//! lookups the shared lineage walk (`crate::walk`) needs.

use crate::cursor::{fetch_limit, page_limit, split_page};
use crate::filter::{common_clauses, Param};
use crate::rows::{parse_metadata, parse_status, parse_string_vec};
use std::collections::HashMap;

use helix_model::{EntityEvent, Metadata, SpanRef, Status};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row};
use serde_json::Value;

use crate::walk::{self, LevelSource, WalkNode};
use crate::{
    cursor, Descendant, Descendants, Direction, Entity, EntityFilter, Graph, GraphNode, GraphQuery, Lineage,
    LineageQuery, Operation, Page, PageRequest, StageSummary, StoreResult,
};

// ---- decoding stored values -------------------------------------------------------------

/// A backend-neutral parameter as SQLite binds it.
pub(super) fn sql_value(p: Param) -> SqlValue {
    match p {
        Param::Text(t) => SqlValue::Text(t),
        Param::Int(i) => SqlValue::Integer(i),
        Param::Int32(i) => SqlValue::Integer(i.into()),
    }
}

/// A statement being assembled from clauses with bare `?` placeholders, numbered here in order.
pub(super) struct Query {
    pub sql: String,
    pub args: Vec<SqlValue>,
}

impl Query {
    /// `select` ends in a WHERE clause that the ANDed clauses extend (e.g. `WHERE 1 = 1`).
    pub fn new(select: String) -> Query {
        Query { sql: select, args: Vec::new() }
    }

    pub fn and(&mut self, clause: &str, values: Vec<SqlValue>) {
        self.sql.push_str(" AND ");
        self.then(clause, values);
    }

    /// Append `text` as is (ORDER BY, LIMIT), numbering its placeholders.
    pub fn then(&mut self, text: &str, values: Vec<SqlValue>) {
        let mut values = values.into_iter();
        let mut pieces = text.split('?');
        self.sql.push_str(pieces.next().unwrap_or_default());
        for piece in pieces {
            // A clause has exactly as many `?` as values; a missing value is a bug here.
            self.args.push(values.next().unwrap_or(SqlValue::Null));
            self.sql.push_str(&format!("?{}", self.args.len()));
            self.sql.push_str(piece);
        }
    }
}

// ---- entities -----------------------------------------------------------------------------

const ENTITY_COLUMNS: &str = "id, instrument_id, trace_id, span_id, timestamp_ns, end_ns, stage, service_name, \
     process_name, status, placeholder, parent_ids, metadata, created_at";

/// An `entities` row as stored, before its JSON and enum columns are decoded.
struct RawEntity {
    id: String,
    instrument_id: String,
    trace_id: Option<String>,
    span_id: Option<String>,
    timestamp_ns: i64,
    end_ns: Option<i64>,
    stage: Option<String>,
    service_name: Option<String>,
    process_name: Option<String>,
    status: String,
    placeholder: bool,
    parent_ids: String,
    metadata: String,
    created_at: String,
}

impl RawEntity {
    /// Reads the columns of `ENTITY_COLUMNS`, in that order.
    fn from_row(r: &Row<'_>) -> rusqlite::Result<RawEntity> {
        Ok(RawEntity {
            id: r.get(0)?,
            instrument_id: r.get(1)?,
            trace_id: r.get(2)?,
            span_id: r.get(3)?,
            timestamp_ns: r.get(4)?,
            end_ns: r.get(5)?,
            stage: r.get(6)?,
            service_name: r.get(7)?,
            process_name: r.get(8)?,
            status: r.get(9)?,
            placeholder: r.get(10)?,
            parent_ids: r.get(11)?,
            metadata: r.get(12)?,
            created_at: r.get(13)?,
        })
    }

    fn decode(self) -> StoreResult<Entity> {
        Ok(Entity {
            status: parse_status(&self.status)?,
            parent_ids: parse_string_vec(&self.parent_ids)?,
            metadata: parse_metadata(&self.metadata)?,
            id: self.id,
            instrument_id: self.instrument_id,
            trace_id: self.trace_id,
            span_id: self.span_id,
            timestamp_ns: self.timestamp_ns,
            end_ns: self.end_ns,
            stage: self.stage,
            service_name: self.service_name,
            process_name: self.process_name,
            placeholder: self.placeholder,
            created_at: self.created_at,
        })
    }
}

/// An `entity_events` row selected as `instrument_id, entity_id, event_name, timestamp_ns,
/// metadata, trace_id, span_id, ordinal`, with its metadata still as stored text (rusqlite's
/// row closures cannot fail with our error type; `with_metadata` decodes it).
pub(super) fn event_row(r: &Row<'_>) -> rusqlite::Result<(EntityEvent, String)> {
    Ok((
        EntityEvent {
            instrument_id: r.get(0)?,
            entity_id: r.get(1)?,
            event_name: r.get(2)?,
            timestamp_ns: r.get(3)?,
            metadata: Metadata::new(),
            trace_id: r.get(5)?,
            span_id: r.get(6)?,
            ordinal: r.get(7)?,
        },
        r.get(4)?,
    ))
}

/// Events from `event_row`s, their metadata decoded.
pub(super) fn with_metadata(raw: Vec<(EntityEvent, String)>) -> StoreResult<Vec<EntityEvent>> {
    raw.into_iter()
        .map(|(mut e, md)| {
            e.metadata = parse_metadata(&md)?;
            Ok(e)
        })
        .collect()
}

/// Entities matching `condition`, a WHERE clause with one parameter `?1` bound to `param`.
pub(super) fn entity_rows_where(conn: &Connection, condition: &str, param: &str) -> StoreResult<Vec<Entity>> {
    let sql = format!("SELECT {ENTITY_COLUMNS} FROM entities WHERE {condition}");
    let raw =
        conn.prepare_cached(&sql)?.query_map([param], RawEntity::from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    raw.into_iter().map(RawEntity::decode).collect()
}

/// Keys as one JSON array parameter, for `IN (SELECT value FROM json_each(?))`: one set-wise
/// lookup instead of a statement per key.
pub(super) fn json_keys(keys: &[&str]) -> StoreResult<String> {
    crate::rows::to_json(&keys)
}

pub(super) fn entity(conn: &Connection, id: &str) -> StoreResult<Option<Entity>> {
    let sql = format!("SELECT {ENTITY_COLUMNS} FROM entities WHERE id = ?1");
    let raw = conn.prepare_cached(&sql)?.query_row([id], RawEntity::from_row).optional()?;
    raw.map(RawEntity::decode).transpose()
}

pub(super) fn children_count(conn: &Connection, id: &str) -> StoreResult<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM entity_parents WHERE parent_id = ?1")?
        .query_row([id], |r| r.get(0))?;
    // count(*) is never negative.
    Ok(n.max(0) as u64)
}

pub(super) fn span_refs(conn: &Connection, ids: &[String]) -> StoreResult<HashMap<String, SpanRef>> {
    let mut stmt = conn.prepare_cached(
        "SELECT trace_id, span_id FROM entities
         WHERE id = ?1 AND placeholder = 0 AND trace_id IS NOT NULL AND span_id IS NOT NULL",
    )?;
    let mut out = HashMap::new();
    for id in ids {
        if out.contains_key(id) {
            continue;
        }
        let found = stmt.query_row([id], |r| Ok(SpanRef { trace_id: r.get(0)?, span_id: r.get(1)? })).optional()?;
        if let Some(span) = found {
            out.insert(id.clone(), span);
        }
    }
    Ok(out)
}

// ---- events and operations ----------------------------------------------------------------

pub(super) fn events(conn: &Connection, entity_id: &str, page: &PageRequest) -> StoreResult<Page<EntityEvent>> {
    let limit = page_limit(page);
    let after = page.cursor.as_deref().map(|c| cursor::event_key(cursor::EVENTS, c)).transpose()?;
    let base = "SELECT instrument_id, entity_id, event_name, timestamp_ns, metadata, trace_id, span_id, ordinal
                FROM entity_events WHERE entity_id = ?1";
    let order = "ORDER BY timestamp_ns, span_id, ordinal LIMIT ?2";
    let raw: Vec<(EntityEvent, String)> = match after {
        None => conn
            .prepare_cached(&format!("{base} {order}"))?
            .query_map(rusqlite::params![entity_id, fetch_limit(limit)], event_row)?
            .collect::<Result<_, _>>()?,
        Some((ts, span, ord)) => conn
            .prepare_cached(&format!("{base} AND (timestamp_ns, span_id, ordinal) > (?3, ?4, ?5) {order}"))?
            .query_map(rusqlite::params![entity_id, fetch_limit(limit), ts, span, ord], event_row)?
            .collect::<Result<_, _>>()?,
    };
    let rows = with_metadata(raw)?;
    Ok(split_page(rows, limit, |e| cursor::after_event(cursor::EVENTS, e)))
}

const OPERATIONS_CURSOR: &str = "operations";

pub(super) fn operations(conn: &Connection, entity_id: &str, page: &PageRequest) -> StoreResult<Page<Operation>> {
    let limit = page_limit(page);
    let after = match &page.cursor {
        None => None,
        Some(c) => {
            let p = cursor::decode(OPERATIONS_CURSOR, c, 2)?;
            Some((cursor::part_i64(&p, 0)?, cursor::part_str(&p, 1)?))
        }
    };
    let base = "SELECT entity_id, instrument_id, operation, trace_id, span_id, timestamp_ns, duration_ns, status,
                       service_name, metadata, created_at
                FROM entity_operations WHERE entity_id = ?1";
    let order = "ORDER BY timestamp_ns, span_id LIMIT ?2";
    type RawOp = (String, String, String, String, String, i64, i64, String, Option<String>, String, String);
    let map = |r: &Row<'_>| -> rusqlite::Result<RawOp> {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
            r.get(9)?,
            r.get(10)?,
        ))
    };
    let raw: Vec<RawOp> = match after {
        None => conn
            .prepare_cached(&format!("{base} {order}"))?
            .query_map(rusqlite::params![entity_id, fetch_limit(limit)], map)?
            .collect::<Result<_, _>>()?,
        Some((ts, span)) => conn
            .prepare_cached(&format!("{base} AND (timestamp_ns, span_id) > (?3, ?4) {order}"))?
            .query_map(rusqlite::params![entity_id, fetch_limit(limit), ts, span], map)?
            .collect::<Result<_, _>>()?,
    };
    let rows = raw
        .into_iter()
        .map(|(entity_id, instrument_id, operation, trace_id, span_id, ts, dur, status, service, md, created)| {
            Ok(Operation {
                entity_id,
                instrument_id,
                operation,
                trace_id,
                span_id,
                timestamp_ns: ts,
                duration_ns: dur,
                status: parse_status(&status)?,
                service_name: service,
                metadata: parse_metadata(&md)?,
                created_at: created,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(split_page(rows, limit, |o| {
        cursor::encode(OPERATIONS_CURSOR, vec![Value::from(o.timestamp_ns), Value::from(o.span_id.clone())])
    }))
}

// ---- lineage and graph ----------------------------------------------------------------------

/// Point lookups through cached statements: each is one B-tree probe on a primary key or the
/// parent index, which on an embedded database is cheaper than building `IN (…)` lists.
struct Levels<'c> {
    conn: &'c Connection,
}

impl LevelSource for Levels<'_> {
    fn nodes(&mut self, ids: &[String]) -> StoreResult<Vec<WalkNode>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, instrument_id, trace_id, timestamp_ns, parent_ids, stage, status, placeholder
             FROM entities WHERE id = ?1",
        )?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let raw = stmt
                .query_row([id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, bool>(7)?,
                    ))
                })
                .optional()?;
            if let Some((id, instrument_id, trace_id, timestamp_ns, parents, stage, status, placeholder)) = raw {
                out.push(WalkNode {
                    id,
                    instrument_id,
                    trace_id,
                    timestamp_ns,
                    parent_ids: parse_string_vec(&parents)?,
                    stage,
                    status: parse_status(&status)?,
                    placeholder,
                    depth: 0,
                });
            }
        }
        Ok(out)
    }

    fn children(&mut self, ids: &[String]) -> StoreResult<Vec<(i64, String)>> {
        // The join runs inside SQLite: one statement per parent however many children it has.
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.timestamp_ns, e.id FROM entity_parents AS p
             JOIN entities AS e ON e.id = p.child_id
             WHERE p.parent_id = ?1",
        )?;
        let mut out = Vec::new();
        for id in ids {
            let rows = stmt.query_map([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
            for child in rows {
                out.push(child?);
            }
        }
        Ok(out)
    }

    fn keys(&mut self, ids: &[String]) -> StoreResult<Vec<(i64, String)>> {
        let mut stmt = self.conn.prepare_cached("SELECT timestamp_ns FROM entities WHERE id = ?1")?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(ts) = stmt.query_row([id], |r| r.get::<_, i64>(0)).optional()? {
                out.push((ts, id.clone()));
            }
        }
        Ok(out)
    }

    fn child_rows(&mut self, ids: &[String]) -> StoreResult<Vec<(Descendant, bool)>> {
        // One statement per chunk (not per parent): most parents of a wide level have no
        // children, and a probe inside SQLite costs far less than a statement. CROSS JOIN keeps
        // the IDs the outer loop, so each is one probe of the parent index.
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.id, e.instrument_id, e.stage, e.status, e.timestamp_ns, e.placeholder,
                    EXISTS (SELECT 1 FROM entity_parents AS c WHERE c.parent_id = e.id)
             FROM json_each(?1) AS j
             CROSS JOIN entity_parents AS p ON p.parent_id = j.value
             CROSS JOIN entities AS e ON e.id = p.child_id",
        )?;
        let keys: Vec<&str> = ids.iter().map(String::as_str).collect();
        let rows = stmt.query_map([json_keys(&keys)?], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, bool>(5)?,
                r.get::<_, bool>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, instrument_id, stage, status, timestamp_ns, placeholder, has_children) = row?;
            let status = parse_status(&status)?;
            out.push((
                Descendant { id, depth: 0, instrument_id, stage, status, timestamp_ns, placeholder },
                has_children,
            ));
        }
        Ok(out)
    }
}

pub(super) fn descendants(
    conn: &Connection,
    root: &str,
    max_depth: Option<u32>,
    cap: usize,
) -> StoreResult<Option<Descendants>> {
    walk::descendants(&mut Levels { conn }, root, max_depth, cap)
}

pub(super) fn lineage(conn: &Connection, q: &LineageQuery) -> StoreResult<Option<Lineage>> {
    let offset = walk::lineage_offset(q.cursor.as_deref())?;
    let limit = q.limit.max(1);
    let walked = walk::walk(&mut Levels { conn }, &q.root, q.direction, q.max_depth, offset + limit)?;
    Ok(walked.map(|nodes| walk::lineage_page(&q.root, q.direction, nodes, offset, limit)))
}

pub(super) fn graph(conn: &Connection, id: &str, q: &GraphQuery) -> StoreResult<Option<Graph>> {
    let mut levels = Levels { conn };
    let Some(up) = walk::walk(&mut levels, id, Direction::Ancestors, Some(q.up), q.limit)? else {
        return Ok(None);
    };
    // The root exists (the first walk found it), so the second walk finds it too unless it was
    // deleted in between; treat that as unknown.
    let Some(down) = walk::walk(&mut levels, id, Direction::Descendants, Some(q.down), q.limit)? else {
        return Ok(None);
    };
    let (nodes, edges) = walk::graph_selection(up, down, q.limit);
    let mut md_stmt = conn.prepare_cached("SELECT metadata FROM entities WHERE id = ?1")?;
    let mut out_nodes = Vec::with_capacity(nodes.len());
    for n in &nodes {
        let md: Option<String> = md_stmt.query_row([&n.id], |r| r.get(0)).optional()?;
        out_nodes.push(GraphNode {
            id: n.id.clone(),
            instrument_id: n.instrument_id.clone(),
            trace_id: n.trace_id.clone(),
            timestamp_ns: n.timestamp_ns,
            parent_ids: n.parent_ids.clone(),
            metadata: md.as_deref().map(parse_metadata).transpose()?.unwrap_or_default(),
            has_error: n.status == Status::Error,
        });
    }
    let edges = edges
        .into_iter()
        .map(|(p, c)| crate::Edge { source: nodes[p].id.clone(), target: nodes[c].id.clone() })
        .collect();
    Ok(Some(Graph { nodes: out_nodes, edges }))
}

// ---- search and summaries ---------------------------------------------------------------------

const SEARCH_CURSOR: &str = "entities";

/// A metadata key that can be written inside a quoted JSON path without escaping.
fn plain_json_key(key: &str) -> bool {
    !key.contains('"') && !key.contains('\\') && !key.chars().any(char::is_control)
}

pub(super) fn search(conn: &Connection, f: &EntityFilter, page: &PageRequest) -> StoreResult<Page<Entity>> {
    let limit = page_limit(page);
    let sql = format!("SELECT {ENTITY_COLUMNS} FROM entities WHERE 1 = 1");
    let mut q = Query::new(sql);
    for (clause, params) in common_clauses(f) {
        q.and(clause, params.into_iter().map(sql_value).collect());
    }
    for (k, v) in &f.metadata {
        if plain_json_key(k) {
            q.and(
                "json_extract(metadata, ?) = ?",
                vec![SqlValue::Text(format!("$.\"{k}\"")), SqlValue::Text(v.clone())],
            );
        } else {
            // Keys a JSON path cannot spell are matched by enumerating the object.
            q.and(
                "EXISTS (SELECT 1 FROM json_each(entities.metadata) AS m WHERE m.key = ? AND m.value = ?)",
                vec![SqlValue::Text(k.clone()), SqlValue::Text(v.clone())],
            );
        }
    }
    if let Some(c) = &page.cursor {
        let p = cursor::decode(SEARCH_CURSOR, c, 2)?;
        let (ts, id) = (cursor::part_i64(&p, 0)?, cursor::part_str(&p, 1)?);
        q.and(
            "(timestamp_ns < ? OR (timestamp_ns = ? AND id > ?))",
            vec![SqlValue::Integer(ts), SqlValue::Integer(ts), SqlValue::Text(id)],
        );
    }
    q.then(" ORDER BY timestamp_ns DESC, id ASC LIMIT ?", vec![SqlValue::Integer(fetch_limit(limit))]);
    let raw: Vec<RawEntity> = conn
        .prepare_cached(&q.sql)?
        .query_map(rusqlite::params_from_iter(q.args), RawEntity::from_row)?
        .collect::<Result<_, _>>()?;
    let rows = raw.into_iter().map(RawEntity::decode).collect::<StoreResult<Vec<_>>>()?;
    Ok(split_page(rows, limit, |e| {
        cursor::encode(SEARCH_CURSOR, vec![Value::from(e.timestamp_ns), Value::from(e.id.clone())])
    }))
}

pub(super) fn instruments(conn: &Connection) -> StoreResult<Vec<String>> {
    let rows = conn
        .prepare_cached("SELECT instrument_id FROM instruments ORDER BY instrument_id")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub(super) fn stages(conn: &Connection, instrument_id: &str) -> StoreResult<Vec<StageSummary>> {
    let rows = conn
        .prepare_cached(
            "SELECT stage, count(*), sum(status = 'error'), max(timestamp_ns) FROM entities
             WHERE instrument_id = ?1 AND placeholder = 0 AND stage IS NOT NULL
             GROUP BY stage ORDER BY stage",
        )?
        .query_map([instrument_id], |r| {
            Ok(StageSummary {
                stage: r.get(0)?,
                // Counts are never negative.
                count: r.get::<_, i64>(1)?.max(0) as u64,
                error_count: r.get::<_, i64>(2)?.max(0) as u64,
                last_seen_ns: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}
