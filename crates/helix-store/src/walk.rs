//! Backend-independent lineage and graph logic: the breadth-first walk over a level source,
//! the deterministic node order, paging by offset, and edges between returned nodes. Backends
//! only supply the two lookups of `LevelSource`.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use helix_model::Status;
use serde_json::Value;

use crate::{cursor, Descendant, Descendants, Direction, Edge, Lineage, LineageNode, StoreResult};

/// The columns of an entity that walks need (no metadata: it is fetched only for `/graph`).
#[derive(Debug, Clone)]
pub(crate) struct WalkNode {
    pub id: String,
    pub instrument_id: String,
    pub trace_id: Option<String>,
    pub timestamp_ns: i64,
    pub parent_ids: Vec<String>,
    pub stage: Option<String>,
    pub status: Status,
    pub placeholder: bool,
    /// Filled in by the walk.
    pub depth: u32,
}

/// What a walk needs from a backend.
pub(crate) trait LevelSource {
    /// The existing entities among `ids`, in any order; unknown IDs are simply absent.
    fn nodes(&mut self, ids: &[String]) -> StoreResult<Vec<WalkNode>>;
    /// `(timestamp_ns, id)` of the entities that name any of `ids` as a parent, in any order
    /// (duplicates allowed).
    fn children(&mut self, ids: &[String]) -> StoreResult<Vec<(i64, String)>>;
    /// `(timestamp_ns, id)` of the existing entities among `ids`, in any order.
    fn keys(&mut self, ids: &[String]) -> StoreResult<Vec<(i64, String)>>;
    /// The entities that name any of `ids` as a parent, with the columns an impact needs
    /// (depth 0) and whether each has children itself, in any order (duplicates allowed).
    /// Callers keep `ids` to [`LEVEL_CHUNK`].
    fn child_rows(&mut self, ids: &[String]) -> StoreResult<Vec<(Descendant, bool)>>;
}

/// Parents looked up per statement by the descendants walk: one set-wise query per chunk of a
/// level instead of one per parent, with a bounded parameter.
pub(crate) const LEVEL_CHUNK: usize = 10_000;

/// Every descendant of `root` within `max_depth` levels, each once, in the order of
/// [`walk`] (depth, then timestamp, then ID), the root excluded. Reads only the columns an
/// impact counts, level by level; when more than `cap` are found the walk stops and returns
/// the complete levels that fit, `partial`. `None` when the root is unknown.
pub(crate) fn descendants(
    src: &mut dyn LevelSource,
    root: &str,
    max_depth: Option<u32>,
    cap: usize,
) -> StoreResult<Option<Descendants>> {
    if src.keys(&[root.to_owned()])?.is_empty() {
        return Ok(None);
    }
    let mut visited: HashSet<String> = HashSet::from([root.to_owned()]);
    let mut nodes: Vec<Descendant> = Vec::new();
    let mut frontier = vec![root.to_owned()];
    let mut depth = 0u32;
    while !frontier.is_empty() && max_depth.is_none_or(|m| depth < m) {
        depth += 1;
        let mut level: Vec<Descendant> = Vec::new();
        let mut next = Vec::new();
        for chunk in frontier.chunks(LEVEL_CHUNK) {
            for (d, has_children) in src.child_rows(chunk)? {
                if visited.insert(d.id.clone()) {
                    // A leaf adds nothing to the next level: it is not looked up again (most
                    // of a wide impact is leaves).
                    if has_children {
                        next.push(d.id.clone());
                    }
                    level.push(d);
                }
            }
            if nodes.len() + level.len() > cap {
                return Ok(Some(Descendants { nodes, partial: true }));
            }
        }
        level.sort_by(|a, b| a.timestamp_ns.cmp(&b.timestamp_ns).then_with(|| a.id.cmp(&b.id)));
        for d in &mut level {
            d.depth = depth;
        }
        frontier = next;
        nodes.extend(level);
    }
    Ok(Some(Descendants { nodes, partial: false }))
}

/// The slice of a list of `len` items that a lineage cursor (or none) and `limit` select, with
/// the cursor of the next page: `/impact` pages its descendants exactly as `/lineage` does.
pub fn offset_page(len: usize, cursor: Option<&str>, limit: usize) -> StoreResult<(Range<usize>, Option<String>)> {
    let offset = lineage_offset(cursor)?;
    let end = offset.saturating_add(limit.max(1));
    let next = (end < len).then(|| cursor::encode(LINEAGE_CURSOR, vec![Value::from(end as u64)]));
    Ok((offset.min(len)..end.min(len), next))
}

/// Above this many candidates, when the node budget cannot take the whole level, only sort
/// keys are read first and full rows are fetched for the nodes that can be returned (a block
/// with 100 000 children and a limit of 100 reads 101 rows, not 100 000).
const WIDE_LEVEL: usize = 256;

/// Walk breadth-first from `root`: the root first (depth 0), then each level sorted by
/// timestamp then ID. Stops after `max_depth` levels, when a level is empty, or as soon as more
/// than `budget` non-root nodes are known (so the caller can tell that more exist).
/// `None` when the root is unknown. A visited set makes cycles terminate.
pub(crate) fn walk(
    src: &mut dyn LevelSource,
    root: &str,
    direction: Direction,
    max_depth: Option<u32>,
    budget: usize,
) -> StoreResult<Option<Vec<WalkNode>>> {
    let Some(root_node) = src.nodes(&[root.to_owned()])?.into_iter().next() else {
        return Ok(None);
    };
    let mut visited: HashSet<String> = HashSet::from([root_node.id.clone()]);
    let mut order = vec![root_node];
    let mut frontier_start = 0;
    let mut depth = 0u32;
    while max_depth.is_none_or(|m| depth < m) && order.len() - 1 <= budget {
        let frontier = &order[frontier_start..];
        // Nodes this level may still add: the rest of the budget plus one, to tell that more
        // exist. Nodes past that are never returned, and the walk ends with this level.
        let room = budget + 1 - (order.len() - 1);
        let fresh: Vec<String> = match direction {
            Direction::Ancestors => {
                // A parent that is not an entity stays in `visited` too: looked up only once.
                let fresh: Vec<String> = frontier
                    .iter()
                    .flat_map(|n| n.parent_ids.iter())
                    .filter(|id| visited.insert((*id).clone()))
                    .cloned()
                    .collect();
                if fresh.len() > room && fresh.len() > WIDE_LEVEL {
                    smallest_keys(src.keys(&fresh)?, room)
                } else {
                    fresh
                }
            }
            Direction::Descendants => {
                let ids: Vec<String> = frontier.iter().map(|n| n.id.clone()).collect();
                let keyed: Vec<(i64, String)> =
                    src.children(&ids)?.into_iter().filter(|(_, id)| visited.insert(id.clone())).collect();
                smallest_keys(keyed, room)
            }
        };
        if fresh.is_empty() {
            break;
        }
        let mut level = src.nodes(&fresh)?;
        if level.is_empty() {
            break;
        }
        depth += 1;
        level.sort_by(|a, b| a.timestamp_ns.cmp(&b.timestamp_ns).then_with(|| a.id.cmp(&b.id)));
        for n in &mut level {
            n.depth = depth;
        }
        frontier_start = order.len();
        order.extend(level);
    }
    Ok(Some(order))
}

/// IDs of the `room` smallest `(timestamp, id)` keys, in any order.
fn smallest_keys(mut keys: Vec<(i64, String)>, room: usize) -> Vec<String> {
    if keys.len() > room {
        keys.select_nth_unstable(room);
        keys.truncate(room);
    }
    keys.into_iter().map(|(_, id)| id).collect()
}

/// Edges `parent → child` between nodes of `nodes`, from each node's `parent_ids`.
fn edges_by_position(nodes: &[WalkNode]) -> Vec<(usize, usize)> {
    let pos: HashMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
    let mut out = Vec::new();
    for (ci, child) in nodes.iter().enumerate() {
        for p in &child.parent_ids {
            if let Some(&pi) = pos.get(p.as_str()) {
                if pi != ci {
                    out.push((pi, ci));
                }
            }
        }
    }
    out
}

pub(crate) const LINEAGE_CURSOR: &str = "lineage";

/// Offset (non-root nodes already returned) encoded in a lineage cursor.
pub(crate) fn lineage_offset(cursor: Option<&str>) -> StoreResult<usize> {
    match cursor {
        None => Ok(0),
        Some(c) => {
            let parts = cursor::decode(LINEAGE_CURSOR, c, 1)?;
            let off = cursor::part_i64(&parts, 0)?;
            usize::try_from(off).map_err(|_| crate::StoreError::BadCursor("negative lineage offset".into()))
        }
    }
}

/// One page of a walk made with `budget = offset + limit`. Pages partition the nodes (the root
/// is on the first page only) and the edges: an edge is on the page of its later endpoint, so
/// concatenating all pages gives every node and every edge between them exactly once.
pub(crate) fn lineage_page(
    root: &str,
    direction: Direction,
    mut walked: Vec<WalkNode>,
    offset: usize,
    limit: usize,
) -> Lineage {
    let partial = walked.len().saturating_sub(1) > offset + limit;
    walked.truncate(1 + offset + limit);
    let page_start = if offset == 0 { 0 } else { 1 + offset };
    let mut edges: Vec<(usize, usize)> =
        edges_by_position(&walked).into_iter().filter(|&(p, c)| p.max(c) >= page_start).collect();
    edges.sort_by_key(|&(p, c)| (p.max(c), p.min(c), p, c));
    let edges =
        edges.into_iter().map(|(p, c)| Edge { source: walked[p].id.clone(), target: walked[c].id.clone() }).collect();
    let nodes = walked
        .into_iter()
        .skip(page_start)
        .map(|n| LineageNode {
            id: n.id,
            depth: n.depth,
            stage: n.stage,
            status: n.status,
            instrument_id: n.instrument_id,
            timestamp_ns: n.timestamp_ns,
            parent_ids: n.parent_ids,
            placeholder: n.placeholder,
        })
        .collect();
    let next_cursor = partial.then(|| cursor::encode(LINEAGE_CURSOR, vec![Value::from((offset + limit) as u64)]));
    Lineage { root: root.to_owned(), direction, nodes, edges, partial, next_cursor }
}

/// The `/graph` selection: root, then ancestors, then descendants (each by depth, timestamp,
/// ID), unique by ID, at most `limit` nodes; plus edges between them as (source, target) indexes.
pub(crate) fn graph_selection(
    ancestors: Vec<WalkNode>,
    descendants: Vec<WalkNode>,
    limit: usize,
) -> (Vec<WalkNode>, Vec<(usize, usize)>) {
    let mut seen = HashSet::new();
    let mut nodes: Vec<WalkNode> = Vec::new();
    // Both walks start with the root; the second copy is dropped by the `seen` check.
    for n in ancestors.into_iter().chain(descendants) {
        if nodes.len() >= limit.max(1) {
            break;
        }
        if seen.insert(n.id.clone()) {
            nodes.push(n);
        }
    }
    let mut edges = edges_by_position(&nodes);
    edges.sort_by_key(|&(p, c)| (p.max(c), p.min(c), p, c));
    (nodes, edges)
}
