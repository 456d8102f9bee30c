//! The PostgreSQL read path: entity rows, keyset-paged lists, search, summaries, and the level
//! lookups of the shared lineage walk (`crate::walk`), one `= ANY($1)` query per level.

use crate::cursor::{fetch_limit, page_limit, split_page};
use crate::filter::{common_clauses, Param};
use crate::rows::{parse_metadata, parse_status};
use std::collections::HashMap;

use deadpool_postgres::Object;
use helix_model::{EntityEvent, Metadata, SpanRef, Status};
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::map_pg;
use crate::walk::{self, LevelSource, WalkNode};
use crate::{
    cursor, Descendant, Descendants, Direction, Entity, EntityFilter, Graph, GraphNode, GraphQuery, Lineage,
    LineageQuery, Operation, Page, PageRequest, StageSummary, StoreError, StoreResult,
};

// ---- decoding -----------------------------------------------------------------------------

/// An `entity_events` row selected as `instrument_id, entity_id, event_name, timestamp_ns,
/// metadata::text, trace_id, span_id, ordinal`.
pub(super) fn event_from_row(r: &Row) -> StoreResult<EntityEvent> {
    let md: String = r.get(4);
    let ordinal: i32 = r.get(7);
    Ok(EntityEvent {
        instrument_id: r.get(0),
        entity_id: r.get(1),
        event_name: r.get(2),
        timestamp_ns: r.get(3),
        metadata: parse_metadata(&md)?,
        trace_id: r.get(5),
        span_id: r.get(6),
        // Stored from a u32; a negative value would be a corrupt row.
        ordinal: u32::try_from(ordinal).map_err(|_| StoreError::corrupt(format!("ordinal {ordinal}")))?,
    })
}

/// A parameter a statement owns until it runs.
pub(super) type Arg = Box<dyn ToSql + Sync + Send>;

/// A backend-neutral parameter as PostgreSQL binds it.
pub(super) fn pg_value(p: Param) -> Arg {
    match p {
        Param::Text(t) => Box::new(t),
        Param::Int(i) => Box::new(i),
        Param::Int32(i) => Box::new(i),
    }
}

/// A statement being assembled from clauses with bare `?` placeholders, numbered here in order.
pub(super) struct Query {
    pub sql: String,
    pub args: Vec<Arg>,
}

impl Query {
    /// `select` ends in a WHERE clause that the ANDed clauses extend (e.g. `WHERE true`).
    pub fn new(select: String) -> Query {
        Query { sql: select, args: Vec::new() }
    }

    pub fn and(&mut self, clause: &str, values: Vec<Arg>) {
        self.sql.push_str(" AND ");
        self.then(clause, values);
    }

    /// Append `text` as is (ORDER BY, LIMIT), numbering its placeholders.
    pub fn then(&mut self, text: &str, values: Vec<Arg>) {
        let mut values = values.into_iter();
        let mut pieces = text.split('?');
        self.sql.push_str(pieces.next().unwrap_or_default());
        for piece in pieces {
            // A clause has exactly as many `?` as values; a missing value is a bug here.
            self.args.push(values.next().unwrap_or_else(|| Box::new(None::<String>)));
            self.sql.push_str(&format!("${}", self.args.len()));
            self.sql.push_str(piece);
        }
    }

    pub async fn run(&self, c: &Object) -> StoreResult<Vec<Row>> {
        let params: Vec<&(dyn ToSql + Sync)> = self.args.iter().map(|a| a.as_ref() as &(dyn ToSql + Sync)).collect();
        q(c, &self.sql, &params).await
    }
}

/// `created_at` as RFC 3339 UTC with milliseconds, the form the SQLite backend stores.
const CREATED_AT: &str = "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";

/// Run a statement prepared once per connection (the pool keeps connections, so the
/// statement cache pays off).
async fn q(c: &Object, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Vec<Row>> {
    let stmt = c.prepare_cached(sql).await.map_err(map_pg)?;
    c.query(&stmt, params).await.map_err(map_pg)
}

// ---- entities -----------------------------------------------------------------------------

pub(super) fn entity_columns() -> String {
    format!(
        "id, instrument_id, trace_id, span_id, timestamp_ns, end_ns, stage, service_name, \
         process_name, status, placeholder, parent_ids, metadata::text, {CREATED_AT}"
    )
}

/// Decodes the columns of `entity_columns()`, in that order.
pub(super) fn entity_from_row(r: &Row) -> StoreResult<Entity> {
    let status: String = r.get(9);
    let metadata: String = r.get(12);
    Ok(Entity {
        id: r.get(0),
        instrument_id: r.get(1),
        trace_id: r.get(2),
        span_id: r.get(3),
        timestamp_ns: r.get(4),
        end_ns: r.get(5),
        stage: r.get(6),
        service_name: r.get(7),
        process_name: r.get(8),
        status: parse_status(&status)?,
        placeholder: r.get(10),
        parent_ids: r.get(11),
        metadata: parse_metadata(&metadata)?,
        created_at: r.get(13),
    })
}

pub(super) async fn entity(c: &Object, id: &str) -> StoreResult<Option<Entity>> {
    let sql = format!("SELECT {} FROM entities WHERE id = $1", entity_columns());
    let rows = q(c, &sql, &[&id]).await?;
    rows.first().map(entity_from_row).transpose()
}

pub(super) async fn entities(c: &Object, ids: &[String]) -> StoreResult<Vec<Entity>> {
    let sql = format!("SELECT {} FROM entities WHERE id = ANY($1)", entity_columns());
    q(c, &sql, &[&ids]).await?.iter().map(entity_from_row).collect()
}

pub(super) async fn children_count(c: &Object, id: &str) -> StoreResult<u64> {
    let rows = q(c, "SELECT count(*) FROM entity_parents WHERE parent_id = $1", &[&id]).await?;
    // count(*) always returns one row.
    let n: i64 = rows.first().map(|r| r.get(0)).unwrap_or(0);
    // count(*) is never negative.
    Ok(n.max(0) as u64)
}

pub(super) async fn span_refs(c: &Object, ids: &[String]) -> StoreResult<HashMap<String, SpanRef>> {
    let rows = q(
        c,
        "SELECT id, trace_id, span_id FROM entities
             WHERE id = ANY($1::text[]) AND NOT placeholder AND trace_id IS NOT NULL AND span_id IS NOT NULL",
        &[&ids],
    )
    .await?;
    Ok(rows.into_iter().map(|r| (r.get(0), SpanRef { trace_id: r.get(1), span_id: r.get(2) })).collect())
}

// ---- events and operations ----------------------------------------------------------------

pub(super) async fn events(c: &Object, entity_id: &str, page: &PageRequest) -> StoreResult<Page<EntityEvent>> {
    let limit = page_limit(page);
    // (i64::MIN, "", -1) sorts before every row: one statement for every page.
    let (ts, span, ord) = match &page.cursor {
        None => (i64::MIN, String::new(), -1),
        Some(cur) => cursor::event_key(cursor::EVENTS, cur)?,
    };
    let rows = q(
        c,
        "SELECT instrument_id, entity_id, event_name, timestamp_ns, metadata::text, trace_id, span_id, ordinal
             FROM entity_events
             WHERE entity_id = $1 AND (timestamp_ns, span_id, ordinal) > ($2, $3, $4)
             ORDER BY timestamp_ns, span_id, ordinal LIMIT $5",
        &[&entity_id, &ts, &span, &ord, &fetch_limit(limit)],
    )
    .await?;
    let items = rows.iter().map(event_from_row).collect::<StoreResult<Vec<_>>>()?;
    Ok(split_page(items, limit, |e| cursor::after_event(cursor::EVENTS, e)))
}

const OPERATIONS_CURSOR: &str = "operations";

pub(super) async fn operations(c: &Object, entity_id: &str, page: &PageRequest) -> StoreResult<Page<Operation>> {
    let limit = page_limit(page);
    let (ts, span) = match &page.cursor {
        None => (i64::MIN, String::new()),
        Some(cur) => {
            let p = cursor::decode(OPERATIONS_CURSOR, cur, 2)?;
            (cursor::part_i64(&p, 0)?, cursor::part_str(&p, 1)?)
        }
    };
    let sql = format!(
        "SELECT entity_id, instrument_id, operation, trace_id, span_id, timestamp_ns, duration_ns, status,
                service_name, metadata::text, {CREATED_AT}
         FROM entity_operations
         WHERE entity_id = $1 AND (timestamp_ns, span_id) > ($2, $3)
         ORDER BY timestamp_ns, span_id LIMIT $4"
    );
    let rows = q(c, &sql, &[&entity_id, &ts, &span, &fetch_limit(limit)]).await?;
    let items = rows
        .iter()
        .map(|r| {
            let status: String = r.get(7);
            let md: String = r.get(9);
            Ok(Operation {
                entity_id: r.get(0),
                instrument_id: r.get(1),
                operation: r.get(2),
                trace_id: r.get(3),
                span_id: r.get(4),
                timestamp_ns: r.get(5),
                duration_ns: r.get(6),
                status: parse_status(&status)?,
                service_name: r.get(8),
                metadata: parse_metadata(&md)?,
                created_at: r.get(10),
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(split_page(items, limit, |o| {
        cursor::encode(OPERATIONS_CURSOR, vec![Value::from(o.timestamp_ns), Value::from(o.span_id.clone())])
    }))
}

// ---- lineage and graph ----------------------------------------------------------------------

/// The walk's level lookups. The walk is synchronous (shared with SQLite), so it runs on the
/// blocking pool and each lookup blocks on its query there; one round trip per level.
struct Levels<'c> {
    client: &'c Object,
    rt: tokio::runtime::Handle,
}

impl Levels<'_> {
    fn query(&self, sql: &str, ids: &[String]) -> StoreResult<Vec<Row>> {
        self.rt.block_on(async {
            let stmt = self.client.prepare_cached(sql).await.map_err(map_pg)?;
            self.client.query(&stmt, &[&ids]).await.map_err(map_pg)
        })
    }
}

impl LevelSource for Levels<'_> {
    fn nodes(&mut self, ids: &[String]) -> StoreResult<Vec<WalkNode>> {
        let rows = self.query(
            "SELECT id, instrument_id, trace_id, timestamp_ns, parent_ids, stage, status, placeholder
             FROM entities WHERE id = ANY($1::text[])",
            ids,
        )?;
        rows.iter()
            .map(|r| {
                let status: String = r.get(6);
                Ok(WalkNode {
                    id: r.get(0),
                    instrument_id: r.get(1),
                    trace_id: r.get(2),
                    timestamp_ns: r.get(3),
                    parent_ids: r.get(4),
                    stage: r.get(5),
                    status: parse_status(&status)?,
                    placeholder: r.get(7),
                    depth: 0,
                })
            })
            .collect()
    }

    fn children(&mut self, ids: &[String]) -> StoreResult<Vec<(i64, String)>> {
        let rows = self.query(
            "SELECT e.timestamp_ns, e.id FROM entity_parents AS p
             JOIN entities AS e ON e.id = p.child_id
             WHERE p.parent_id = ANY($1::text[])",
            ids,
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn keys(&mut self, ids: &[String]) -> StoreResult<Vec<(i64, String)>> {
        let rows = self.query("SELECT timestamp_ns, id FROM entities WHERE id = ANY($1::text[])", ids)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn child_rows(&mut self, ids: &[String]) -> StoreResult<Vec<(Descendant, bool)>> {
        // The planner guesses a few children per parent; on a wide level (1 000 parents, 99 000
        // children) that guess makes it hash-join against a scan of every entity, measured
        // twice as slow as a primary-key probe per child. `OFFSET 0` keeps the lateral
        // subquery a probe per edge whatever the guess.
        let rows = self.query(
            "SELECT e.id, e.instrument_id, e.stage, e.status, e.timestamp_ns, e.placeholder,
                    EXISTS (SELECT 1 FROM entity_parents AS c WHERE c.parent_id = e.id)
             FROM entity_parents AS p
             CROSS JOIN LATERAL (
                 SELECT id, instrument_id, stage, status, timestamp_ns, placeholder
                 FROM entities WHERE id = p.child_id OFFSET 0
             ) AS e
             WHERE p.parent_id = ANY($1::text[])",
            ids,
        )?;
        rows.iter()
            .map(|r| {
                let status: String = r.get(3);
                let d = Descendant {
                    id: r.get(0),
                    depth: 0,
                    instrument_id: r.get(1),
                    stage: r.get(2),
                    status: parse_status(&status)?,
                    timestamp_ns: r.get(4),
                    placeholder: r.get(5),
                };
                Ok((d, r.get(6)))
            })
            .collect()
    }
}

pub(super) async fn descendants(
    client: Object,
    root: String,
    max_depth: Option<u32>,
    cap: usize,
) -> StoreResult<Option<Descendants>> {
    with_levels(client, move |levels| walk::descendants(levels, &root, max_depth, cap)).await
}

/// Run `f` with a level source on the blocking pool.
async fn with_levels<T: Send + 'static>(
    client: Object,
    f: impl FnOnce(&mut Levels<'_>) -> StoreResult<T> + Send + 'static,
) -> StoreResult<T> {
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut levels = Levels { client: &client, rt };
        f(&mut levels)
    })
    .await
    .map_err(|e| StoreError::bug(format!("lineage task failed: {e}")))?
}

pub(super) async fn lineage(client: Object, q: LineageQuery) -> StoreResult<Option<Lineage>> {
    let offset = walk::lineage_offset(q.cursor.as_deref())?;
    let limit = q.limit.max(1);
    with_levels(client, move |levels| {
        let walked = walk::walk(levels, &q.root, q.direction, q.max_depth, offset + limit)?;
        Ok(walked.map(|nodes| walk::lineage_page(&q.root, q.direction, nodes, offset, limit)))
    })
    .await
}

pub(super) async fn graph(client: Object, id: String, q: GraphQuery) -> StoreResult<Option<Graph>> {
    with_levels(client, move |levels| {
        let Some(up) = walk::walk(levels, &id, Direction::Ancestors, Some(q.up), q.limit)? else {
            return Ok(None);
        };
        // The root exists (the first walk found it); if it vanished in between, it is unknown.
        let Some(down) = walk::walk(levels, &id, Direction::Descendants, Some(q.down), q.limit)? else {
            return Ok(None);
        };
        let (nodes, edges) = walk::graph_selection(up, down, q.limit);
        let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
        let mut metadata: HashMap<String, Metadata> = HashMap::new();
        for r in levels.query("SELECT id, metadata::text FROM entities WHERE id = ANY($1::text[])", &ids)? {
            let md: String = r.get(1);
            metadata.insert(r.get(0), parse_metadata(&md)?);
        }
        let out_nodes = nodes
            .iter()
            .map(|n| GraphNode {
                id: n.id.clone(),
                instrument_id: n.instrument_id.clone(),
                trace_id: n.trace_id.clone(),
                timestamp_ns: n.timestamp_ns,
                parent_ids: n.parent_ids.clone(),
                metadata: metadata.remove(&n.id).unwrap_or_default(),
                has_error: n.status == Status::Error,
            })
            .collect();
        let edges = edges
            .into_iter()
            .map(|(p, c)| crate::Edge { source: nodes[p].id.clone(), target: nodes[c].id.clone() })
            .collect();
        Ok(Some(Graph { nodes: out_nodes, edges }))
    })
    .await
}

// ---- search and summaries ---------------------------------------------------------------------

const SEARCH_CURSOR: &str = "entities";

pub(super) async fn search(c: &Object, f: &EntityFilter, page: &PageRequest) -> StoreResult<Page<Entity>> {
    let limit = page_limit(page);
    let mut q = Query::new(format!("SELECT {} FROM entities WHERE true", entity_columns()));
    for (clause, params) in common_clauses(f) {
        q.and(clause, params.into_iter().map(pg_value).collect());
    }
    for (k, v) in &f.metadata {
        // ->> takes the key as a value: any key works, no path syntax to escape.
        q.and("metadata ->> ?::text = ?::text", vec![Box::new(k.clone()), Box::new(v.clone())]);
    }
    if let Some(cur) = &page.cursor {
        let p = cursor::decode(SEARCH_CURSOR, cur, 2)?;
        let (ts, id) = (cursor::part_i64(&p, 0)?, cursor::part_str(&p, 1)?);
        q.and("(timestamp_ns < ? OR (timestamp_ns = ? AND id > ?))", vec![Box::new(ts), Box::new(ts), Box::new(id)]);
    }
    q.then(" ORDER BY timestamp_ns DESC, id ASC LIMIT ?", vec![Box::new(fetch_limit(limit))]);
    let rows = q.run(c).await?;
    let items = rows.iter().map(entity_from_row).collect::<StoreResult<Vec<_>>>()?;
    Ok(split_page(items, limit, |e| {
        cursor::encode(SEARCH_CURSOR, vec![Value::from(e.timestamp_ns), Value::from(e.id.clone())])
    }))
}

pub(super) async fn instruments(c: &Object) -> StoreResult<Vec<String>> {
    let rows = q(c, "SELECT instrument_id FROM instruments ORDER BY instrument_id", &[]).await?;
    Ok(rows.into_iter().map(|r| r.get(0)).collect())
}

pub(super) async fn stages(c: &Object, instrument_id: &str) -> StoreResult<Vec<StageSummary>> {
    let rows = q(
        c,
        "SELECT stage, count(*), count(*) FILTER (WHERE status = 'error'), max(timestamp_ns)
             FROM entities
             WHERE instrument_id = $1 AND NOT placeholder AND stage IS NOT NULL
             GROUP BY stage ORDER BY stage",
        &[&instrument_id],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| StageSummary {
            stage: r.get(0),
            // Counts are never negative.
            count: r.get::<_, i64>(1).max(0) as u64,
            error_count: r.get::<_, i64>(2).max(0) as u64,
            last_seen_ns: r.get(3),
        })
        .collect())
}
