//! The herald's Prometheus metrics: one registry, names compatible with the older herald
//! (`helix_entities_total` …) plus our own for the writer, resolver and forwarder.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Owns the registry and every metric handle; shared by receivers, writer, forwarder and API.
pub struct Metrics {
    registry: Registry,
    pub entities: IntCounterVec,
    pub events: IntCounterVec,
    pub errors: IntCounterVec,
    pub operations: IntCounter,
    pub spans_received: IntCounterVec,
    pub spans_passthrough: IntCounter,
    pub spans_rejected: IntCounter,
    pub spans_stored: IntCounter,
    pub logs_received: IntCounter,
    pub parent_resolution: IntCounterVec,
    pub trace_store_lookups: IntCounterVec,
    pub recreations: IntCounter,
    pub instrument_conflicts: IntCounter,
    pub exports_refused: IntCounterVec,
    pub write_batch_records: Histogram,
    pub write_batch_seconds: Histogram,
    pub write_failures: IntCounterVec,
    pub write_queue_records: IntGauge,
    pub forward_spans: IntCounterVec,
    pub forward_logs: IntCounterVec,
    pub forward_queue: IntGauge,
    pub auth_denied: IntCounterVec,
    pub instrument_files_invalid: IntGauge,
    pub notify: NotifyMetrics,
    // ---- the older herald's names (docs/operations.md "Metrics")
    pub span_processing: HistogramVec,
    pub parent_resolution_failed: IntCounterVec,
    pub parent_resolution_latency: HistogramVec,
    pub trace_store_size: IntGauge,
    pub trace_store_hits: IntCounter,
    pub trace_store_misses: IntCounter,
    pub trace_store_evictions: IntCounter,
    pub trace_store_lookup: Histogram,
    pub db_writes: IntCounterVec,
    pub db_write_duration: HistogramVec,
    pub db_write_errors: IntCounter,
    pub db_connections_in_use: IntGauge,
    pub db_connections_total: IntGauge,
    pub span_directory_bytes: IntGauge,
    pub span_directory_limit_bytes: IntGauge,
    pub db_queries: IntCounterVec,
    pub db_query_duration: HistogramVec,
    pub api_requests: IntCounterVec,
    pub api_request_duration: HistogramVec,
    /// Event names are the client's to choose: past [`EVENT_NAMES_KEPT`] distinct ones the
    /// rest share one label value, so a buggy pipeline cannot grow the exposition without bound.
    pub event_names: BoundedLabel,
    pub platform: crate::canary::PlatformMetrics,
    /// 1 when COLLECTOR_ENDPOINT is set (the health page tells "off" from "idle").
    pub forward_configured: IntGauge,
    /// When this process started (Unix seconds), for rates since start.
    pub started: std::time::SystemTime,
}

/// Distinct `event_name` label values kept before the rest count as [`BoundedLabel::OTHER`].
pub const EVENT_NAMES_KEPT: usize = 200;

/// A label whose values come from clients: the first `max` distinct values are used as they
/// are, any later one becomes `"other"`.
pub struct BoundedLabel {
    seen: Mutex<HashSet<String>>,
    max: usize,
}

impl BoundedLabel {
    pub const OTHER: &'static str = "other";

    pub fn new(max: usize) -> Self {
        BoundedLabel { seen: Mutex::new(HashSet::new()), max }
    }

    /// The label value to record for `value`.
    pub fn value<'a>(&self, value: &'a str) -> &'a str {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(value) {
            return value;
        }
        if seen.len() < self.max {
            seen.insert(value.to_owned());
            return value;
        }
        Self::OTHER
    }
}

pub(crate) fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition is valid");
    registry.register(Box::new(c.clone())).expect("each metric is registered once");
    c
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("static metric definition is valid");
    registry.register(Box::new(c.clone())).expect("each metric is registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("static metric definition is valid");
    registry.register(Box::new(g.clone())).expect("each metric is registered once");
    g
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("static metric definition is valid");
    registry.register(Box::new(h.clone())).expect("each metric is registered once");
    h
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("static metric definition is valid");
    registry.register(Box::new(h.clone())).expect("each metric is registered once");
    h
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        Metrics {
            entities: counter_vec(
                &r,
                "helix_entities_total",
                "Entities created (first creation span stored).",
                &["instrument_id", "stage", "status"],
            ),
            events: counter_vec(
                &r,
                "helix_events_total",
                "helix.* span events stored.",
                &["instrument_id", "event_name"],
            ),
            errors: counter_vec(&r, "helix_errors_total", "helix.error events stored.", &["instrument_id"]),
            // Unlabelled: the store reports how many operations a batch inserted, not whose
            // (a batch mixes instruments, and re-sent operations insert nothing).
            operations: counter(
                &r,
                "helix_operations_total",
                "Operations stored (each counted once, however often it was sent).",
            ),
            spans_received: counter_vec(&r, "helix_spans_received_total", "Spans received over OTLP.", &["transport"]),
            spans_passthrough: counter(
                &r,
                "helix_spans_passthrough_total",
                "Spans without an entity ID: no entity rows (kept in the span store when it is on, and forwarded).",
            ),
            spans_stored: counter(
                &r,
                "helix_spans_stored_total",
                "Spans newly stored in the span store (each counted once, however often it was sent).",
            ),
            spans_rejected: counter(
                &r,
                "helix_spans_rejected_total",
                "Entity spans refused as malformed (told to the client as partial success).",
            ),
            logs_received: counter(&r, "helix_logs_received_total", "OTLP log records received."),
            parent_resolution: counter_vec(
                &r,
                "helix_parent_resolution_total",
                "Parent IDs resolved to span links.",
                &["instrument_id", "result"],
            ),
            trace_store_lookups: counter_vec(
                &r,
                "helix_trace_store_lookups_total",
                "Where parent lookups were answered.",
                &["source"],
            ),
            recreations: counter(
                &r,
                "helix_entity_recreations_total",
                "Creation spans for an entity that already had another.",
            ),
            instrument_conflicts: counter(
                &r,
                "helix_instrument_conflicts_total",
                "Spans naming an entity owned by another instrument: not applied.",
            ),
            exports_refused: counter_vec(
                &r,
                "helix_exports_refused_total",
                "Exports answered with an error, by reason.",
                &["reason"],
            ),
            write_batch_records: histogram(
                &r,
                "helix_write_batch_records",
                "Records per committed batch.",
                prometheus::exponential_buckets(1.0, 4.0, 9).expect("valid buckets"),
            ),
            write_batch_seconds: histogram(
                &r,
                "helix_write_batch_seconds",
                "Time to commit one batch.",
                prometheus::exponential_buckets(0.0005, 2.0, 14).expect("valid buckets"),
            ),
            write_failures: counter_vec(&r, "helix_write_failures_total", "Batches whose commit failed.", &["kind"]),
            write_queue_records: gauge(&r, "helix_write_queue_records", "Records waiting for the writer."),
            forward_spans: counter_vec(
                &r,
                "helix_forward_spans_total",
                "Spans handed to COLLECTOR_ENDPOINT, by result.",
                &["result"],
            ),
            forward_logs: counter_vec(
                &r,
                "helix_forward_logs_total",
                "Log records handed to COLLECTOR_ENDPOINT, by result.",
                &["result"],
            ),
            forward_queue: gauge(&r, "helix_forward_queue_requests", "Requests waiting for the forwarder."),
            auth_denied: counter_vec(
                &r,
                "helix_auth_denied_total",
                "Requests and sign-ins refused by authentication or authorisation, by reason.",
                &["reason"],
            ),
            instrument_files_invalid: gauge(
                &r,
                "helix_instrument_files_invalid",
                "Instrument files in INSTRUMENTS_DIR that did not load (their last good configuration stays).",
            ),
            notify: NotifyMetrics::register(&r),
            span_processing: histogram_vec(
                &r,
                "helix_span_processing_duration_seconds",
                "From receipt to commit of the export carrying each entity span (one observation per span).",
                &["instrument_id"],
                vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5],
            ),
            parent_resolution_failed: counter_vec(
                &r,
                "helix_parent_resolution_failed_total",
                "Parent IDs that resolved to no known creation span (no link added).",
                &["instrument_id"],
            ),
            parent_resolution_latency: histogram_vec(
                &r,
                "helix_parent_resolution_latency_seconds",
                "Time to resolve the parents of each span with parents (an export's spans share one lookup).",
                &["instrument_id"],
                vec![
                    0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                    0.005,
                ],
            ),
            trace_store_size: gauge(&r, "helix_trace_store_size", "Entities held in the in-memory TraceStore."),
            trace_store_hits: counter(
                &r,
                "helix_trace_store_hits_total",
                "Parent lookups answered by the in-memory TraceStore.",
            ),
            trace_store_misses: counter(
                &r,
                "helix_trace_store_misses_total",
                "Parent lookups the in-memory TraceStore could not answer (asked of the database).",
            ),
            trace_store_evictions: counter(
                &r,
                "helix_trace_store_evictions_total",
                "Entities dropped from the full in-memory TraceStore (least recently used first).",
            ),
            trace_store_lookup: histogram(
                &r,
                "helix_trace_store_lookup_duration_seconds",
                "Time of one in-memory TraceStore lookup.",
                vec![
                    0.0000001, 0.00000025, 0.0000005, 0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001,
                ],
            ),
            db_writes: counter_vec(
                &r,
                "helix_db_writes_total",
                "Rows written to entities, entity_operations and entity_events, or refused with a failed commit.",
                &["table", "status"],
            ),
            db_write_duration: histogram_vec(
                &r,
                "helix_db_write_duration_seconds",
                "Time of each commit that wrote to the table (one transaction covers every table of a batch).",
                &["table"],
                prometheus::DEFAULT_BUCKETS.to_vec(),
            ),
            db_write_errors: counter(&r, "helix_db_write_errors_total", "Commits that failed."),
            db_connections_in_use: gauge(&r, "helix_db_connections_in_use", "Database connections doing work."),
            db_connections_total: gauge(&r, "helix_db_connections_total", "Database connections open."),
            span_directory_bytes: gauge(
                &r,
                "helix_span_directory_bytes",
                "Memory the SQLite span directory takes (trace entries and filters).",
            ),
            span_directory_limit_bytes: gauge(
                &r,
                "helix_span_directory_limit_bytes",
                "The span directory's memory cap (HELIX_SPAN_DIRECTORY_BYTES).",
            ),
            db_queries: counter_vec(
                &r,
                "helix_db_queries_total",
                "Store reads, by query (the Store method) and status (success, failed).",
                &["query", "status"],
            ),
            db_query_duration: histogram_vec(
                &r,
                "helix_db_query_duration_seconds",
                "Time of each store read, by query.",
                &["query"],
                prometheus::DEFAULT_BUCKETS.to_vec(),
            ),
            api_requests: counter_vec(
                &r,
                "helix_api_requests_total",
                "HTTP requests, by handler (one name per route) and status.",
                &["handler", "status"],
            ),
            api_request_duration: histogram_vec(
                &r,
                "helix_api_request_duration_seconds",
                "Time to answer an HTTP request, by handler.",
                &["handler"],
                prometheus::DEFAULT_BUCKETS.to_vec(),
            ),
            event_names: BoundedLabel::new(EVENT_NAMES_KEPT),
            platform: crate::canary::PlatformMetrics::register(&r),
            forward_configured: gauge(
                &r,
                "helix_forward_configured",
                "1 when spans and logs are forwarded to COLLECTOR_ENDPOINT.",
            ),
            started: std::time::SystemTime::now(),
            registry: r,
        }
        .with_process_collector()
    }

    /// The standard `process_*` metrics (CPU, memory, open files) of this process.
    fn with_process_collector(self) -> Self {
        // Only Linux has the collector; elsewhere the process metrics are absent.
        #[cfg(target_os = "linux")]
        {
            let collector = prometheus::process_collector::ProcessCollector::for_self();
            if let Err(e) = self.registry.register(Box::new(collector)) {
                tracing::warn!(error = %e, "process metrics not available");
            }
        }
        self
    }

    /// Every metric family as it stands (what `/metrics` renders), for the health summary.
    pub fn families(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The notification metrics, with the older herald's names and labels (`docs/notifications.md`).
pub struct NotifyMetrics {
    /// `instrument_id, channel_type, event_type`.
    pub sent: IntCounterVec,
    /// `instrument_id, channel_type, event_type`; `channel_type="silence"` for a silence.
    pub suppressed: IntCounterVec,
    /// `instrument_id, channel_type`.
    pub digest_sent: IntCounterVec,
    /// `instrument_id, channel_type`: deliveries that gave up.
    pub errors: IntCounterVec,
    /// `channel_type`.
    pub send_seconds: HistogramVec,
    /// Notifications not recorded because the outbox was full.
    pub channel_drops: IntCounter,
    /// `instrument_id, channel_type`: attempts after a failed one.
    pub retries: IntCounterVec,
    /// `instrument_id`.
    pub silences_active: IntGaugeVec,
    /// `instrument_id`: reloads that found an error in the file's notifications block.
    pub config_reload_errors: IntCounterVec,
    /// Notifications recorded and not yet delivered (or given up).
    pub outbox_depth: IntGauge,
    /// `--notify-outbox-max`: the depth beyond which events are coalesced.
    pub outbox_limit: IntGauge,
}

impl NotifyMetrics {
    fn register(r: &Registry) -> NotifyMetrics {
        let by_event = &["instrument_id", "channel_type", "event_type"];
        let by_channel = &["instrument_id", "channel_type"];
        let send_seconds = HistogramVec::new(
            HistogramOpts::new("helix_notification_send_duration_seconds", "Time of one delivery attempt.")
                .buckets(prometheus::exponential_buckets(0.005, 2.0, 12).expect("valid buckets")),
            &["channel_type"],
        )
        .expect("static metric definition is valid");
        r.register(Box::new(send_seconds.clone())).expect("each metric is registered once");
        let silences_active =
            IntGaugeVec::new(Opts::new("helix_notification_silences_active", "Silences in force."), &["instrument_id"])
                .expect("static metric definition is valid");
        r.register(Box::new(silences_active.clone())).expect("each metric is registered once");
        NotifyMetrics {
            sent: counter_vec(r, "helix_notifications_sent_total", "Notifications delivered.", by_event),
            suppressed: counter_vec(
                r,
                "helix_notifications_suppressed_total",
                "Notifications not sent: by a silence (channel_type=silence) or a rate limit.",
                by_event,
            ),
            digest_sent: counter_vec(
                r,
                "helix_notifications_digest_sent_total",
                "Digests of rate-limited notifications delivered.",
                by_channel,
            ),
            errors: counter_vec(
                r,
                "helix_notification_errors_total",
                "Deliveries that failed for good (a 4xx, or every retry failed).",
                by_channel,
            ),
            send_seconds,
            channel_drops: counter(
                r,
                "helix_notification_channel_drops_total",
                "Notifying events not recorded one by one (the outbox was full): counted in their class's overflow message.",
            ),
            retries: counter_vec(
                r,
                "helix_notification_retries_total",
                "Delivery attempts after a failed one.",
                by_channel,
            ),
            silences_active,
            config_reload_errors: counter_vec(
                r,
                "helix_notification_config_reload_errors_total",
                "Loads of an instrument file whose notifications block has errors.",
                &["instrument_id"],
            ),
            outbox_depth: gauge(r, "helix_notification_outbox_depth", "Notifications waiting for delivery."),
            outbox_limit: gauge(
                r,
                "helix_notification_outbox_limit",
                "Notifications waiting for delivery at most; beyond it events are coalesced per class.",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_label_keeps_the_first_values_and_folds_the_rest() {
        let label = BoundedLabel::new(2);
        assert_eq!(label.value("a"), "a");
        assert_eq!(label.value("b"), "b");
        assert_eq!(label.value("c"), BoundedLabel::OTHER);
        assert_eq!(label.value("a"), "a", "a kept value stays itself");
    }

    #[test]
    fn the_exposition_has_the_process_metrics() {
        let text = Metrics::new().render();
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
        assert!(text.contains("process_cpu_seconds_total"));
    }
}
