//! The data monitor (compatible, docs/api.md): `GET /api/v1/monitor/fields` lists an instrument's
//! numeric metadata keys; `GET /api/v1/monitor/bins` bins its entities into a time × value
//! heat map where each non-empty cell keeps its highest-weight entity.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use axum::Json;
use helix_model::Metadata;
use helix_store::{MonitorPoint, MonitorQuery};
use serde::Serialize;

use super::params::QueryParams;
use super::window::{now_ns, HOUR_NS, NS_PER_MS};
use super::{compatible, ApiError, ApiResult, ApiState, Route};

const FIELDS_PARAMS: &[&str] = &["instrument"];
const BINS_PARAMS: &[&str] = &[
    "instrument",
    "y_field",
    "weight_field",
    "from_ms",
    "to_ms",
    "t_bins",
    "y_bins",
    "y_min",
    "y_max",
    "y_min_default",
    "y_max_default",
];

/// Fields are the numeric keys of this many newest entities of the last 24 h.
const FIELDS_SAMPLE: usize = 10_000;
const MIN_WINDOW_MS: i64 = 5 * 60 * 1_000;
const MAX_WINDOW_MS: i64 = 24 * 3_600 * 1_000;
/// Entities read for one heat map, newest first; beyond it the response says `truncated`.
const MAX_POINTS: usize = 200_000;
const DEFAULT_T_BINS: u64 = 1_200;
const MAX_T_BINS: u64 = 5_000;
const DEFAULT_Y_BINS: u64 = 300;
const MAX_Y_BINS: u64 = 2_000;

pub fn routes() -> Vec<Route> {
    vec![
        Route {
            method: Method::GET,
            path: "/api/v1/monitor/fields",
            query: FIELDS_PARAMS,
            handler: compatible(get(fields)),
        },
        Route { method: Method::GET, path: "/api/v1/monitor/bins", query: BINS_PARAMS, handler: compatible(get(bins)) },
    ]
}

/// The compatible rule for metadata field names on the monitor.
pub fn check_field(param: &str, name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad(param, "must match ^[a-z0-9_.]+$"))
    }
}

/// `["dm", "snr"]`: numeric-valued metadata keys of the instrument's entities of the last 24 h.
async fn fields(State(state): State<ApiState>, params: QueryParams) -> ApiResult<Json<Vec<String>>> {
    let params = params.allow_extra(FIELDS_PARAMS)?;
    let instrument = params.required("instrument")?;
    let now = now_ns();
    let fields = state
        .store
        .numeric_fields(instrument, now.saturating_sub(24 * HOUR_NS), now.saturating_add(1), FIELDS_SAMPLE)
        .await?
        .into_iter()
        // Keys the monitor cannot be asked about are not offered.
        .filter(|k| check_field("y_field", k).is_ok())
        .collect();
    Ok(Json(fields))
}

/// One non-empty cell of the heat map.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bin {
    pub t: u32,
    pub y: u32,
    /// Weight of the kept entity (1 without a weight field).
    pub weight: f64,
    /// The kept (highest-weight) entity.
    pub id: String,
    /// Its creation time, ns since the epoch.
    pub ts: i64,
    /// Its `y_field` value.
    pub yv: f64,
    pub meta: Metadata,
    /// Entities in the cell.
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeatMap {
    pub bins: Vec<Bin>,
    pub t_bins: u32,
    pub y_bins: u32,
    pub from_ns: i64,
    pub to_ns: i64,
    pub y_min: f64,
    pub y_max: f64,
    pub weight_max: f64,
    /// The field binned (the first numeric field when none was asked for; null when none).
    pub y_field: Option<String>,
    /// True when more entities matched than one heat map reads.
    pub truncated: bool,
}

/// The grid: `t_bins` columns over `[from_ns, to_ns)`, `y_bins` rows over `[y_min, y_max]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    pub from_ns: i64,
    pub to_ns: i64,
    pub t_bins: u32,
    pub y_bins: u32,
    pub y_min: f64,
    pub y_max: f64,
}

impl Grid {
    /// The cell of a point, `None` outside the grid.
    fn cell(&self, ts: i64, y: f64) -> Option<(u32, u32)> {
        if ts < self.from_ns || ts >= self.to_ns || y < self.y_min || y > self.y_max {
            return None;
        }
        let span = (self.to_ns - self.from_ns) as f64;
        let t = (((ts - self.from_ns) as f64 / span) * f64::from(self.t_bins)) as u32;
        let y_span = self.y_max - self.y_min;
        let row = if y_span > 0.0 { (((y - self.y_min) / y_span) * f64::from(self.y_bins)) as u32 } else { 0 };
        Some((t.min(self.t_bins - 1), row.min(self.y_bins - 1)))
    }
}

/// Bins `points` (newest first): each cell keeps its highest-weight point, the newest on ties.
/// Cells come out by `t`, then `y`.
pub fn bin_points(points: Vec<MonitorPoint>, grid: &Grid) -> (Vec<Bin>, f64) {
    let mut cells: BTreeMap<(u32, u32), Bin> = BTreeMap::new();
    for p in points {
        let Some((t, y)) = grid.cell(p.timestamp_ns, p.y) else {
            continue;
        };
        let weight = p.weight.unwrap_or(1.0);
        match cells.get_mut(&(t, y)) {
            Some(bin) => {
                bin.count += 1;
                if weight > bin.weight {
                    bin.weight = weight;
                    bin.id = p.id;
                    bin.ts = p.timestamp_ns;
                    bin.yv = p.y;
                    bin.meta = p.metadata;
                }
            }
            None => {
                cells.insert(
                    (t, y),
                    Bin { t, y, weight, id: p.id, ts: p.timestamp_ns, yv: p.y, meta: p.metadata, count: 1 },
                );
            }
        }
    }
    let bins: Vec<Bin> = cells.into_values().collect();
    let weight_max = bins.iter().map(|b| b.weight).fold(0.0, f64::max);
    (bins, weight_max)
}

fn float(params: &QueryParams, name: &str) -> ApiResult<Option<f64>> {
    params
        .text(name)
        .map(|raw| {
            raw.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| ApiError::bad(name, format!("`{raw}` is not a finite number")))
        })
        .transpose()
}

/// The heat map. Without `y_field`, the instrument's first numeric field is binned. Without
/// `from_ms`/`to_ms`, the last hour. `y_min`/`y_max` default to the data's range, or to
/// `y_min_default`/`y_max_default` (0 and 1000) when there is no data.
async fn bins(State(state): State<ApiState>, params: QueryParams) -> ApiResult<Json<HeatMap>> {
    let params = params.allow_extra(BINS_PARAMS)?;
    let instrument = params.required("instrument")?;
    let now_ms = now_ns() / NS_PER_MS;
    let to_ms = params.i64("to_ms")?.unwrap_or(now_ms);
    let from_ms = params.i64("from_ms")?.unwrap_or(to_ms.saturating_sub(3_600_000));
    let span = to_ms.saturating_sub(from_ms);
    if !(MIN_WINDOW_MS..=MAX_WINDOW_MS).contains(&span) {
        return Err(ApiError::bad("from_ms", "window (to_ms - from_ms) must be between 5 minutes and 24 hours"));
    }
    let (from_ns, to_ns) = (from_ms.saturating_mul(NS_PER_MS), to_ms.saturating_mul(NS_PER_MS));
    let t_bins = params.count("t_bins", 1, MAX_T_BINS)?.unwrap_or(DEFAULT_T_BINS) as u32;
    let y_bins = params.count("y_bins", 1, MAX_Y_BINS)?.unwrap_or(DEFAULT_Y_BINS) as u32;
    let weight_field = params.text("weight_field");
    if let Some(w) = weight_field {
        check_field("weight_field", w)?;
    }
    let y_min = float(&params, "y_min")?;
    let y_max = float(&params, "y_max")?;
    let y_min_default = float(&params, "y_min_default")?.unwrap_or(0.0);
    let y_max_default = float(&params, "y_max_default")?.unwrap_or(1000.0);
    if let (Some(lo), Some(hi)) = (y_min, y_max) {
        if lo > hi {
            return Err(ApiError::bad("y_min", "must not be above `y_max`"));
        }
    }
    let y_field = match params.text("y_field") {
        Some(f) => {
            check_field("y_field", f)?;
            Some(f.to_owned())
        }
        None => {
            let fields = state.store.numeric_fields(instrument, from_ns, to_ns, FIELDS_SAMPLE).await?;
            fields.into_iter().find(|k| check_field("y_field", k).is_ok())
        }
    };
    let (points, truncated) = match &y_field {
        Some(field) => {
            let got = state
                .store
                .monitor_points(&MonitorQuery {
                    instrument_id: instrument.to_owned(),
                    y_field: field.clone(),
                    weight_field: weight_field.map(str::to_owned),
                    from_ns,
                    to_ns,
                    limit: MAX_POINTS,
                })
                .await?;
            (got.points, got.truncated)
        }
        None => (Vec::new(), false),
    };
    let data_min = points.iter().map(|p| p.y).fold(f64::INFINITY, f64::min);
    let data_max = points.iter().map(|p| p.y).fold(f64::NEG_INFINITY, f64::max);
    let lo = y_min.unwrap_or(if points.is_empty() { y_min_default } else { data_min });
    let hi = y_max.unwrap_or(if points.is_empty() { y_max_default } else { data_max });
    let (lo, hi) = if lo > hi { (hi, lo) } else { (lo, hi) };
    let grid = Grid { from_ns, to_ns, t_bins, y_bins, y_min: lo, y_max: hi };
    let (bins, weight_max) = bin_points(points, &grid);
    Ok(Json(HeatMap { bins, t_bins, y_bins, from_ns, to_ns, y_min: lo, y_max: hi, weight_max, y_field, truncated }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(id: &str, ts: i64, y: f64, weight: Option<f64>) -> MonitorPoint {
        MonitorPoint { id: id.into(), timestamp_ns: ts, y, weight, metadata: Metadata::new() }
    }

    const GRID: Grid = Grid { from_ns: 0, to_ns: 100, t_bins: 10, y_bins: 4, y_min: 0.0, y_max: 40.0 };

    #[test]
    fn each_cell_keeps_its_highest_weight_entity() {
        let (bins, weight_max) = bin_points(
            vec![
                point("new", 15, 5.0, Some(1.0)),
                point("heavy", 12, 6.0, Some(9.0)),
                point("old", 11, 7.0, Some(9.0)),
                point("other", 95, 40.0, None),
                point("outside", 100, 5.0, None),
                point("too-high", 50, 41.0, None),
            ],
            &GRID,
        );
        assert_eq!(weight_max, 9.0);
        let cells: Vec<(u32, u32, &str, u64)> = bins.iter().map(|b| (b.t, b.y, b.id.as_str(), b.count)).collect();
        // Ties keep the newest (first seen); the top edge belongs to the last row.
        assert_eq!(cells, [(1, 0, "heavy", 3), (9, 3, "other", 1)]);
    }

    #[test]
    fn field_names_follow_the_compatible_rule() {
        for good in ["snr", "dm", "beam_1", "a.b"] {
            assert!(check_field("y_field", good).is_ok(), "{good}");
        }
        for bad in ["", "SNR", "a-b", "a b", "é", "a;drop"] {
            let err = check_field("y_field", bad).expect_err(bad);
            assert!(err.to_string().contains("`y_field`"));
        }
    }

    #[tokio::test]
    async fn bad_windows_and_field_names_are_400_naming_the_parameter() {
        use axum::body::{to_bytes, Body};
        use axum::http::{Request, StatusCode};
        use tower::ServiceExt;
        let cases = [
            ("/api/v1/monitor/bins?instrument=I&y_field=SNR", "`y_field`"),
            ("/api/v1/monitor/bins?instrument=I&weight_field=a-b", "`weight_field`"),
            ("/api/v1/monitor/bins?instrument=I&from_ms=0&to_ms=299999", "`from_ms`"),
            ("/api/v1/monitor/bins?instrument=I&from_ms=0&to_ms=86400001", "`from_ms`"),
            ("/api/v1/monitor/bins?instrument=I&t_bins=0", "`t_bins`"),
            ("/api/v1/monitor/bins?instrument=I&y_min=5&y_max=1", "`y_min`"),
            // The default window an hour before the earliest time there is: no overflow.
            ("/api/v1/monitor/bins?instrument=I&to_ms=-9223372036854775808", "`from_ms`"),
            ("/api/v1/monitor/bins", "`instrument`"),
            ("/api/v1/monitor/fields", "`instrument`"),
        ];
        for (uri, named) in cases {
            let app = super::super::app(super::super::fake::FakeStore::empty().state());
            let request = Request::builder().uri(uri).body(Body::empty()).expect("request");
            let response = app.oneshot(request).await.expect("infallible");
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{uri}");
            let body = to_bytes(response.into_body(), usize::MAX).await.expect("body");
            assert!(String::from_utf8_lossy(&body).contains(named), "{uri}");
        }
        let app = super::super::app(super::super::fake::FakeStore::empty().state());
        let request = Request::builder()
            .uri("/api/v1/monitor/bins?instrument=I&y_field=snr&from_ms=0&to_ms=300000")
            .body(Body::empty())
            .expect("request");
        let response = app.oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
    }
}
