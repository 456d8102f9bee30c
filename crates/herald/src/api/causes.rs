//! Root-cause hints: what the failing entities of an error class have in common upstream.
//! `GET /api/v1/errors/{class}/causes` takes the entities with an error of that class (the key
//! `/api/v1/errors` gives each class) in a window; `POST /api/v1/causes` takes their IDs. Both
//! compare them with successful entities of the same stages and window and rank upstream
//! entities, stages, processes and services by how much more often they appear among the
//! failing entities' ancestors (docs/api.md "Root-cause hints" states the scoring).

use std::collections::{HashMap, HashSet};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::Method;
use axum::routing::{get, post};
use axum::Json;
use helix_model::Status;
use helix_store::{Entity, EntityFilter, PageRequest};
use serde::Serialize;
use serde_json::{json, Value};

use super::events::{class_of, scan_errors, MAX_WINDOW_NS};
use super::params::QueryParams;
use super::window::{window_ns, HOUR_NS};
use super::{ApiError, ApiResult, ApiState, Route};

/// Failing and baseline entities compared at most (the most recent ones).
pub const MAX_FAILING: usize = 1_000;
pub const MAX_BASELINE: usize = 1_000;
/// Ancestor levels walked, and ancestor visits summed over all entities, at most.
const MAX_DEPTH: u32 = 20;
const MAX_VISITS: usize = 200_000;
/// Entities fetched per store call.
const FETCH_BATCH: usize = 1_000;
/// A feature must be upstream of at least this many failing entities to be ranked.
pub const MIN_SUPPORT: u64 = 2;
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 500;
const MAX_BODY_BYTES: usize = 1024 * 1024;

const CLASS_PARAMS: &[&str] = &["instrument", "from_ns", "to_ns", "limit"];

pub fn routes() -> Vec<Route> {
    vec![
        Route {
            method: Method::GET,
            path: "/api/v1/errors/{class}/causes",
            query: CLASS_PARAMS,
            handler: get(class_causes),
        },
        Route {
            method: Method::POST,
            path: "/api/v1/causes",
            query: &[],
            handler: post(explicit_causes).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        },
    ]
}

/// What a cause is: an upstream entity, or the stage, process or service of one (the failing
/// entity's own process and service count too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Process,
    Service,
    Entity,
    Stage,
}

/// The features upstream of one entity, each with the nearest depth it was seen at.
pub type Features = HashMap<(Kind, String), u32>;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cause {
    pub kind: Kind,
    pub value: String,
    /// Failing entities with the feature upstream, and of how many.
    pub failing_with: u64,
    pub failing_total: u64,
    pub baseline_with: u64,
    pub baseline_total: u64,
    pub failing_share: f64,
    pub baseline_share: f64,
    /// `failing_share - baseline_share`: the ranking score.
    pub excess: f64,
    /// Add-one smoothed lift: `((a+1)/(nF+2)) / ((b+1)/(nS+2))`.
    pub lift: f64,
    /// Nearest level at which a failing entity has it (0: the entity's own process or service).
    pub depth: u32,
}

fn count(sets: &[Features]) -> HashMap<&(Kind, String), (u64, u32)> {
    let mut out: HashMap<&(Kind, String), (u64, u32)> = HashMap::new();
    for set in sets {
        for (feature, depth) in set {
            let e = out.entry(feature).or_insert((0, u32::MAX));
            e.0 += 1;
            e.1 = e.1.min(*depth);
        }
    }
    out
}

/// The ranking: features upstream of at least [`MIN_SUPPORT`] failing entities and more often
/// among them than among the baseline, by excess share, then lift, then nearest depth.
pub fn rank(failing: &[Features], baseline: &[Features]) -> Vec<Cause> {
    let (nf, nb) = (failing.len() as u64, baseline.len() as u64);
    let in_baseline = count(baseline);
    let mut causes: Vec<Cause> = count(failing)
        .into_iter()
        .filter(|(_, (a, _))| *a >= MIN_SUPPORT.min(nf))
        .map(|(feature, (a, depth))| {
            let b = in_baseline.get(feature).map_or(0, |(b, _)| *b);
            let share = |x: u64, n: u64| if n == 0 { 0.0 } else { x as f64 / n as f64 };
            let smoothed = |x: u64, n: u64| (x as f64 + 1.0) / (n as f64 + 2.0);
            Cause {
                kind: feature.0,
                value: feature.1.clone(),
                failing_with: a,
                failing_total: nf,
                baseline_with: b,
                baseline_total: nb,
                failing_share: share(a, nf),
                baseline_share: share(b, nb),
                excess: share(a, nf) - share(b, nb),
                lift: smoothed(a, nf) / smoothed(b, nb),
                depth,
            }
        })
        .filter(|c| c.excess > 0.0)
        .collect();
    causes.sort_by(|x, y| {
        y.excess
            .total_cmp(&x.excess)
            .then(y.lift.total_cmp(&x.lift))
            .then(x.depth.cmp(&y.depth))
            .then(x.kind.cmp(&y.kind))
            .then_with(|| x.value.cmp(&y.value))
    });
    causes
}

/// The columns a feature walk needs of an entity.
struct Upstream {
    parents: Vec<String>,
    stage: Option<String>,
    process: Option<String>,
    service: Option<String>,
}

impl From<&Entity> for Upstream {
    fn from(e: &Entity) -> Self {
        Upstream {
            parents: e.parent_ids.clone(),
            stage: e.stage.clone(),
            process: e.process_name.clone(),
            service: e.service_name.clone(),
        }
    }
}

/// The features of each of `roots`: its own process and service, and every ancestor (up to
/// [`MAX_DEPTH`] levels) with its stage, process and service. One store call per level and
/// batch for all roots together. `true` when a bound cut the walk.
async fn features(state: &ApiState, roots: &[Entity]) -> ApiResult<(Vec<Features>, bool)> {
    let mut known: HashMap<String, Option<Upstream>> = HashMap::new();
    let mut out: Vec<Features> = Vec::with_capacity(roots.len());
    let mut frontiers: Vec<Vec<String>> = Vec::with_capacity(roots.len());
    let mut visited: Vec<HashSet<String>> = Vec::with_capacity(roots.len());
    for root in roots {
        let mut f = Features::new();
        for (kind, value) in [(Kind::Process, &root.process_name), (Kind::Service, &root.service_name)] {
            if let Some(v) = value {
                f.insert((kind, v.clone()), 0);
            }
        }
        out.push(f);
        visited.push(HashSet::from([root.id.clone()]));
        frontiers.push(root.parent_ids.clone());
        known.insert(root.id.clone(), Some(Upstream::from(root)));
    }
    let (mut visits, mut partial) = (0usize, false);
    for depth in 1..=MAX_DEPTH {
        let wanted: Vec<String> = {
            let mut w: HashSet<&String> = HashSet::new();
            w.extend(frontiers.iter().flatten().filter(|id| !known.contains_key(*id)));
            w.into_iter().cloned().collect()
        };
        for batch in wanted.chunks(FETCH_BATCH) {
            for e in state.store.entities(batch).await? {
                known.insert(e.id.clone(), Some(Upstream::from(&e)));
            }
            for id in batch {
                known.entry(id.clone()).or_insert(None);
            }
        }
        let mut any = false;
        for (i, frontier) in frontiers.iter_mut().enumerate() {
            let mut next = Vec::new();
            for id in frontier.drain(..) {
                if !visited[i].insert(id.clone()) {
                    continue;
                }
                let Some(Some(node)) = known.get(&id) else { continue };
                visits += 1;
                let f = &mut out[i];
                let mut add = |kind: Kind, value: &str| {
                    f.entry((kind, value.to_owned())).or_insert(depth);
                };
                add(Kind::Entity, &id);
                for (kind, value) in
                    [(Kind::Stage, &node.stage), (Kind::Process, &node.process), (Kind::Service, &node.service)]
                {
                    if let Some(v) = value {
                        add(kind, v);
                    }
                }
                next.extend(node.parents.iter().filter(|p| !visited[i].contains(*p)).cloned());
            }
            any |= !next.is_empty();
            *frontier = next;
        }
        if visits > MAX_VISITS {
            partial = true;
            break;
        }
        if !any {
            break;
        }
        if depth == MAX_DEPTH {
            partial = frontiers.iter().any(|f| !f.is_empty());
        }
    }
    Ok((out, partial))
}

/// Successful entities of the failing entities' stages and instruments in `[from, to)`, the most
/// recent first, failing ones excluded, at most [`MAX_BASELINE`] in all.
async fn baseline(state: &ApiState, failing: &[Entity], from_ns: i64, to_ns: i64) -> ApiResult<Vec<Entity>> {
    let failing_ids: HashSet<&str> = failing.iter().map(|e| e.id.as_str()).collect();
    let mut groups: Vec<(String, Option<String>)> =
        failing.iter().map(|e| (e.instrument_id.clone(), e.stage.clone())).collect();
    groups.sort();
    groups.dedup();
    let per_group = (MAX_BASELINE / groups.len().max(1)).max(1);
    let mut out = Vec::new();
    for (instrument, stage) in groups {
        let filter = EntityFilter {
            instrument_id: Some(instrument),
            stage,
            status: Some(Status::Ok),
            from_ns: Some(from_ns),
            to_ns: Some(to_ns),
            ..EntityFilter::default()
        };
        let page = state.store.search(&filter, &PageRequest::first(per_group + failing.len().min(per_group))).await?;
        out.extend(page.items.into_iter().filter(|e| !failing_ids.contains(e.id.as_str())).take(per_group));
    }
    Ok(out)
}

/// The answer both endpoints give.
async fn answer(
    state: &ApiState,
    failing: Vec<Entity>,
    from_ns: i64,
    to_ns: i64,
    limit: usize,
    mut body: serde_json::Map<String, Value>,
) -> ApiResult<Json<Value>> {
    let baseline = baseline(state, &failing, from_ns, to_ns).await?;
    let (failing_features, cut_f) = features(state, &failing).await?;
    let (baseline_features, cut_b) = features(state, &baseline).await?;
    let causes: Vec<Cause> = rank(&failing_features, &baseline_features).into_iter().take(limit).collect();
    body.insert("failing_compared".into(), json!(failing.len()));
    body.insert("baseline_compared".into(), json!(baseline.len()));
    body.insert("partial".into(), json!(cut_f || cut_b || body.get("partial") == Some(&json!(true))));
    body.insert("causes".into(), serde_json::to_value(causes)?);
    Ok(Json(Value::Object(body)))
}

/// `GET /api/v1/errors/{class}/causes?instrument=X&from_ns=&to_ns=&limit=`.
async fn class_causes(
    State(state): State<ApiState>,
    Path(class): Path<String>,
    params: QueryParams,
) -> ApiResult<Json<Value>> {
    let params = params.allow(CLASS_PARAMS)?;
    let instrument = params.required("instrument")?.to_owned();
    let (from_ns, to_ns) = window_ns(&params, 24 * HOUR_NS, MAX_WINDOW_NS)?;
    let limit = params.limit(DEFAULT_LIMIT, MAX_LIMIT)?;
    let (events, partial) = scan_errors(&state, &instrument, None, from_ns, to_ns).await?;
    // Newest first: the most recent failing entities are the ones compared.
    let mut seen = HashSet::new();
    let ids: Vec<String> = events
        .iter()
        .filter(|e| class_of(e) == class)
        .filter(|e| seen.insert(e.entity_id.clone()))
        .map(|e| e.entity_id.clone())
        .collect();
    if ids.is_empty() {
        return Err(ApiError::NotFound(format!(
            "error class `{class}` not found for instrument `{instrument}` in the window; \
             the classes are the `class` of each group of /api/v1/errors"
        )));
    }
    let failing_total = ids.len();
    let mut failing = Vec::new();
    for batch in ids[..ids.len().min(MAX_FAILING)].chunks(FETCH_BATCH) {
        failing.extend(state.store.entities(batch).await?);
    }
    let mut body = serde_json::Map::new();
    body.insert("class".into(), json!(class));
    body.insert("instrument".into(), json!(instrument));
    body.insert("from_ns".into(), json!(from_ns));
    body.insert("to_ns".into(), json!(to_ns));
    body.insert("failing_total".into(), json!(failing_total));
    body.insert("partial".into(), json!(partial));
    answer(&state, failing, from_ns, to_ns, limit, body).await
}

/// `POST /api/v1/causes` `{"failing": [ids], "limit": n}`: the baseline is the successful
/// entities of the same instruments and stages created between the first and the last failing one.
async fn explicit_causes(State(state): State<ApiState>, body: Bytes) -> ApiResult<Json<Value>> {
    let usage = "the body must be JSON: {\"failing\": [\"entity id\", …], \"limit\": 20}";
    let value: Value = serde_json::from_slice(&body).map_err(|_| ApiError::bad("body", usage))?;
    let Value::Object(fields) = value else { return Err(ApiError::bad("body", usage)) };
    if let Some(unknown) = fields.keys().find(|k| !matches!(k.as_str(), "failing" | "limit")) {
        return Err(ApiError::bad(unknown.as_str(), format!("unknown field; {usage}")));
    }
    let Some(Value::Array(items)) = fields.get("failing") else {
        return Err(ApiError::bad("failing", format!("must be an array of entity IDs; {usage}")));
    };
    if items.is_empty() || items.len() > MAX_FAILING {
        return Err(ApiError::bad("failing", format!("give between 1 and {MAX_FAILING} entity IDs")));
    }
    let mut ids: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(id) = item else { return Err(ApiError::bad("failing", "every item must be a string")) };
        ids.push(id.clone());
    }
    ids.sort();
    ids.dedup();
    let limit = match fields.get("limit") {
        None => DEFAULT_LIMIT,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) if (1..=MAX_LIMIT as u64).contains(&n) => n as usize,
            _ => return Err(ApiError::bad("limit", format!("must be between 1 and {MAX_LIMIT}"))),
        },
        Some(_) => return Err(ApiError::bad("limit", "must be a number")),
    };
    let mut failing = Vec::new();
    for batch in ids.chunks(FETCH_BATCH) {
        failing.extend(state.store.entities(batch).await?);
    }
    if failing.is_empty() {
        return Err(ApiError::NotFound("entities not found: none of the `failing` entities exists".into()));
    }
    let from_ns = failing.iter().map(|e| e.timestamp_ns).min().unwrap_or(0);
    let to_ns = failing.iter().map(|e| e.timestamp_ns).max().unwrap_or(0).saturating_add(1);
    let mut body = serde_json::Map::new();
    body.insert("from_ns".into(), json!(from_ns));
    body.insert("to_ns".into(), json!(to_ns));
    body.insert("failing_total".into(), json!(failing.len()));
    body.insert("unknown".into(), json!(ids.len() - failing.len()));
    answer(&state, failing, from_ns, to_ns, limit, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[(Kind, &str, u32)]) -> Features {
        items.iter().map(|(k, v, d)| ((*k, (*v).to_owned()), *d)).collect()
    }

    #[test]
    fn the_feature_shared_by_the_failures_and_rare_in_the_baseline_ranks_first() {
        use Kind::*;
        // Every failure went through process P2 (depth 1) and block b (depth 2, shared by all).
        let failing: Vec<Features> = (0..10)
            .map(|i| {
                let out = if i < 5 { "o1" } else { "o2" };
                set(&[(Process, "P2", 1), (Entity, out, 1), (Entity, "b", 2), (Stage, "cal", 1)])
            })
            .collect();
        let mut baseline: Vec<Features> =
            (0..30).map(|_| set(&[(Process, "P1", 1), (Entity, "b", 2), (Stage, "cal", 1)])).collect();
        baseline.extend(
            (0..10).map(|_| set(&[(Process, "P2", 1), (Entity, "o3", 1), (Entity, "b", 2), (Stage, "cal", 1)])),
        );
        let ranked = rank(&failing, &baseline);
        let top: Vec<(Kind, &str)> = ranked.iter().map(|c| (c.kind, c.value.as_str())).collect();
        assert_eq!(top, [(Process, "P2"), (Entity, "o1"), (Entity, "o2")], "shared features (b, cal) do not rank");
        let p2 = &ranked[0];
        assert_eq!((p2.failing_with, p2.failing_total, p2.baseline_with, p2.baseline_total), (10, 10, 10, 40));
        assert!((p2.excess - 0.75).abs() < 1e-9);
        assert!((p2.lift - (11.0 / 12.0) / (11.0 / 42.0)).abs() < 1e-9);
        assert!(rank(&[], &baseline).is_empty());
    }
}
