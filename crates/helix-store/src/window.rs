//! Reads over an instrument's time window, their query and result types: its events
//! (`instrument_events`), numeric metadata as monitor points (`numeric_fields`,
//! `monitor_points`) and per-stage counts in time buckets (`stage_histogram`).

use helix_model::Metadata;
use serde::{Deserialize, Serialize};

/// Events of an instrument in a time window, newest first (`Store::instrument_events`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventQuery {
    pub instrument_id: Option<String>,
    /// Exact event name (`helix.error`); `None`: every event.
    pub event_name: Option<String>,
    /// Event timestamp lower bound, inclusive.
    pub from_ns: Option<i64>,
    /// Event timestamp upper bound, exclusive.
    pub to_ns: Option<i64>,
}

/// Entities of an instrument whose metadata field `y_field` is numeric, created in
/// `[from_ns, to_ns)` (`Store::monitor_points`).
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorQuery {
    pub instrument_id: String,
    pub y_field: String,
    /// A second numeric field read along (the heat map's weight); `None`: not read.
    pub weight_field: Option<String>,
    pub from_ns: i64,
    pub to_ns: i64,
    /// Most points returned (newest first); `MonitorPoints::truncated` says when it cut.
    pub limit: usize,
}

/// One entity on the monitor: its `y_field` value (and weight) parsed as numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorPoint {
    pub id: String,
    pub timestamp_ns: i64,
    pub y: f64,
    /// The weight field's value; `None` when not asked for, absent or not numeric.
    pub weight: Option<f64>,
    pub metadata: Metadata,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MonitorPoints {
    /// Newest first.
    pub points: Vec<MonitorPoint>,
    /// True when more matching entities exist than `limit`.
    pub truncated: bool,
}

/// Per-stage entity counts of an instrument in equal time buckets (`Store::stage_histogram`).
#[derive(Debug, Clone, PartialEq)]
pub struct StageHistogramQuery {
    pub instrument_id: String,
    pub from_ns: i64,
    pub to_ns: i64,
    /// Bucket width; bucket `i` covers `[from_ns + i*bucket_ns, from_ns + (i+1)*bucket_ns)`.
    pub bucket_ns: i64,
}

/// Entities of one stage created in one bucket (non-placeholders only). Buckets without
/// entities are not returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageBucket {
    pub stage: String,
    pub bucket: u32,
    pub count: u64,
    pub error_count: u64,
}

/// A metadata value as a finite number, if it is one (`"12.5"`, `"-3"`, `"1e3"`).
pub fn numeric_value(text: &str) -> Option<f64> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed != text {
        return None;
    }
    trimmed.parse::<f64>().ok().filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::numeric_value;

    #[test]
    fn numeric_values_are_finite_plain_numbers() {
        assert_eq!(numeric_value("12.5"), Some(12.5));
        assert_eq!(numeric_value("-3"), Some(-3.0));
        assert_eq!(numeric_value("1e3"), Some(1000.0));
        for bad in ["", " 1", "abc", "NaN", "inf", "1,5", "true"] {
            assert_eq!(numeric_value(bad), None, "{bad}");
        }
    }
}
