//! Time windows of the instrument-level views (errors, events, stage timeline, monitor):
//! `[from, to)` in ns from optional query parameters, defaulting to the last hours up to now.

use std::time::{SystemTime, UNIX_EPOCH};

use super::params::QueryParams;
use super::{ApiError, ApiResult};

pub const NS_PER_MS: i64 = 1_000_000;
pub const HOUR_NS: i64 = 3_600 * 1_000_000_000;

/// Now in ns since the epoch (0 if the clock is before 1970, which only a broken host has).
pub fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// `from_ns`/`to_ns` with `to` defaulting to now and `from` to `to - default_span_ns`;
/// `from` must be before `to` and the span at most `max_span_ns`.
pub fn window_ns(params: &QueryParams, default_span_ns: i64, max_span_ns: i64) -> ApiResult<(i64, i64)> {
    let to = params.i64("to_ns")?.unwrap_or_else(now_ns);
    let from = params.i64("from_ns")?.unwrap_or_else(|| to.saturating_sub(default_span_ns));
    if from >= to {
        return Err(ApiError::bad("from_ns", "must be before `to_ns`"));
    }
    if to.saturating_sub(from) > max_span_ns {
        return Err(ApiError::bad("from_ns", format!("window longer than {} hours", max_span_ns / HOUR_NS)));
    }
    Ok((from, to))
}
