//! An instrument's stages: `GET /api/v1/stages?instrument=X` (each stage's totals) and
//! `GET /api/v1/stages/timeline` (each stage's entity and error counts in equal time buckets
//! over a window), which the inspector's instrument overview shows side by side.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use axum::Json;
use helix_store::{StageHistogramQuery, StageSummary};
use serde::Serialize;

use super::params::QueryParams;
use super::window::{window_ns, HOUR_NS};
use super::{ApiResult, ApiState, Route};

const STAGES_PARAMS: &[&str] = &["instrument"];
const TIMELINE_PARAMS: &[&str] = &["instrument", "from_ns", "to_ns", "buckets"];
const DEFAULT_BUCKETS: u64 = 48;
const MAX_BUCKETS: u64 = 1_000;
const MAX_WINDOW_NS: i64 = 366 * 24 * HOUR_NS;

pub fn routes() -> Vec<Route> {
    vec![
        Route { method: Method::GET, path: "/api/v1/stages", query: STAGES_PARAMS, handler: get(stages) },
        Route { method: Method::GET, path: "/api/v1/stages/timeline", query: TIMELINE_PARAMS, handler: get(timeline) },
    ]
}

/// `[{"stage", "count", "error_count", "last_seen_ns"}]`; `[]` for an instrument with no data.
async fn stages(State(state): State<ApiState>, params: QueryParams) -> ApiResult<Json<Vec<StageSummary>>> {
    let params = params.allow(STAGES_PARAMS)?;
    let instrument = params.required("instrument")?;
    Ok(Json(state.store.stages(instrument).await?))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageBuckets {
    pub stage: String,
    pub count: u64,
    pub error_count: u64,
    /// One count per bucket, oldest first (`buckets` entries).
    pub counts: Vec<u64>,
    pub error_counts: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageTimeline {
    pub instrument: String,
    pub from_ns: i64,
    pub to_ns: i64,
    pub buckets: u32,
    pub bucket_ns: i64,
    /// Sorted by stage.
    pub stages: Vec<StageBuckets>,
}

/// The window defaults to the last 24 h (at most a year), in `buckets` (default 48) buckets.
async fn timeline(State(state): State<ApiState>, params: QueryParams) -> ApiResult<Json<StageTimeline>> {
    let params = params.allow(TIMELINE_PARAMS)?;
    let instrument = params.required("instrument")?.to_owned();
    let (from_ns, to_ns) = window_ns(&params, 24 * HOUR_NS, MAX_WINDOW_NS)?;
    let buckets = params.count("buckets", 1, MAX_BUCKETS)?.unwrap_or(DEFAULT_BUCKETS) as u32;
    // Round up so the last bucket ends at or after `to_ns`.
    let span = to_ns - from_ns;
    let bucket_ns = (span + i64::from(buckets) - 1) / i64::from(buckets);
    let cells = state
        .store
        .stage_histogram(&StageHistogramQuery { instrument_id: instrument.clone(), from_ns, to_ns, bucket_ns })
        .await?;
    let mut stages: BTreeMap<String, StageBuckets> = BTreeMap::new();
    for cell in cells {
        let row = stages.entry(cell.stage.clone()).or_insert_with(|| StageBuckets {
            stage: cell.stage.clone(),
            count: 0,
            error_count: 0,
            counts: vec![0; buckets as usize],
            error_counts: vec![0; buckets as usize],
        });
        let i = (cell.bucket as usize).min(buckets as usize - 1);
        row.counts[i] += cell.count;
        row.error_counts[i] += cell.error_count;
        row.count += cell.count;
        row.error_count += cell.error_count;
    }
    Ok(Json(StageTimeline { instrument, from_ns, to_ns, buckets, bucket_ns, stages: stages.into_values().collect() }))
}
