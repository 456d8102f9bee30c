//! Every metric of the older herald's list exists on `/metrics` with its type, labels and
//! buckets, and after a scripted workload (creations, operations, errors, a retried export, an
//! API burst, refused exports) the counters equal what the workload did.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use helix_model::builders::{pipeline_resource, traces, SpanBuilder};
use opentelemetry::KeyValue;
use support::*;

/// One parsed exposition: family types and samples (name, labels, value).
struct Exposition {
    types: HashMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
    text: String,
}

impl Exposition {
    async fn scrape(herald: &Herald) -> Exposition {
        let text = reqwest::get(format!("http://{}/metrics", herald.metrics)).await.unwrap().text().await.unwrap();
        let mut types = HashMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE line");
                types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (k, v) = l.split_once('=').expect("label");
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            samples.push((name.to_owned(), labels, value.parse().expect("sample value")));
        }
        Exposition { types, samples, text }
    }

    /// Sum of the samples of `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, _, v)| v)
            .sum()
    }

    /// The label names used by a family's samples (bucket bounds aside).
    fn label_names(&self, family: &str) -> BTreeSet<String> {
        self.samples
            .iter()
            .filter(|(n, _, _)| {
                n == family || n.strip_prefix(family).is_some_and(|s| ["_bucket", "_sum", "_count"].contains(&s))
            })
            .flat_map(|(_, l, _)| l.keys().cloned())
            .filter(|k| k != "le")
            .collect()
    }

    /// The bucket bounds of a histogram family.
    fn buckets(&self, family: &str) -> BTreeSet<String> {
        let bucket = format!("{family}_bucket");
        self.samples.iter().filter(|(n, _, _)| *n == bucket).filter_map(|(_, l, _)| l.get("le").cloned()).collect()
    }
}

/// The older herald's list (less the notification family): name, type, label names.
const LIST: &[(&str, &str, &[&str])] = &[
    ("helix_entities_total", "counter", &["instrument_id", "stage", "status"]),
    ("helix_spans_received_total", "counter", &["transport"]),
    ("helix_spans_passthrough_total", "counter", &[]),
    ("helix_span_processing_duration_seconds", "histogram", &["instrument_id"]),
    ("helix_events_total", "counter", &["instrument_id", "event_name"]),
    ("helix_errors_total", "counter", &["instrument_id"]),
    ("helix_parent_resolution_total", "counter", &["instrument_id", "result"]),
    ("helix_parent_resolution_failed_total", "counter", &["instrument_id"]),
    ("helix_parent_resolution_latency_seconds", "histogram", &["instrument_id"]),
    ("helix_trace_store_size", "gauge", &[]),
    ("helix_trace_store_hits_total", "counter", &[]),
    ("helix_trace_store_misses_total", "counter", &[]),
    ("helix_trace_store_evictions_total", "counter", &[]),
    ("helix_trace_store_lookup_duration_seconds", "histogram", &[]),
    ("helix_db_writes_total", "counter", &["table", "status"]),
    ("helix_db_write_duration_seconds", "histogram", &["table"]),
    ("helix_db_write_errors_total", "counter", &[]),
    ("helix_db_connections_in_use", "gauge", &[]),
    ("helix_db_connections_total", "gauge", &[]),
    ("helix_db_queries_total", "counter", &["query", "status"]),
    ("helix_db_query_duration_seconds", "histogram", &["query"]),
    ("helix_api_requests_total", "counter", &["handler", "status"]),
    ("helix_api_request_duration_seconds", "histogram", &["handler"]),
    ("process_cpu_seconds_total", "counter", &[]),
    ("process_resident_memory_bytes", "gauge", &[]),
    ("process_open_fds", "gauge", &[]),
    ("process_start_time_seconds", "gauge", &[]),
];

const INST: &str = "PARITY";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_of_the_older_list_exists_and_counts_the_workload() {
    // A TraceStore of 4 entries, so the 6th and 7th creation evict the least recently used.
    let herald = Herald::start_with(HeraldOptions {
        args: ["--trace-store-size", "4", "--max-request-bytes", "16384"].map(String::from).to_vec(),
        ..Default::default()
    });

    // N = 7 creations (4 blocks, 2 candidates, 1 sent twice by a retrying client), M = 3
    // operations, K = 2 errors (a failed candidate, a failed operation), 1 custom event.
    let pipeline = Pipeline::new(&herald, Transport::Grpc, "pipe", INST);
    for i in 0..4 {
        pipeline.create("ingest", &format!("block-{i}"), &[]);
    }
    pipeline.flush().await;
    // Parents from the TraceStore: block-0..2 are hits, `never-sent` a miss that the database
    // cannot resolve either.
    pipeline.create_with("search", "cand-0", &["block-0", "block-1"], |s| {
        s.add_event("helix.event.classified", vec![KeyValue::new("class", "frb")]);
    });
    pipeline.create_with("search", "cand-1", &["block-2", "never-sent"], |s| fail(s, "no candidates"));
    pipeline.plain("housekeeping", None);
    pipeline.flush().await;
    pipeline.operate("archive", "block-0");
    pipeline.operate("archive", "block-1");
    pipeline.operate_with("convert", "cand-0", |s| fail(s, "disk full"));
    pipeline.flush().await;
    pipeline.shutdown().await;

    // A retried export: the same request twice (the first acknowledgement was lost).
    let mut client = raw_client(&herald).await;
    let retried = traces(pipeline_resource("pipe", INST), vec![SpanBuilder::creation("ingest", "retry-0", 9).build()]);
    client.export(retried.clone()).await.unwrap();
    client.export(retried).await.unwrap();

    // Refused exports: one over the size limit, one not protobuf.
    let http = reqwest::Client::new();
    let url = format!("http://{}/v1/traces", herald.http);
    for (body, status) in [(vec![0u8; 65536], 413), (b"not protobuf".to_vec(), 400)] {
        let r =
            http.post(&url).header("content-type", "application/x-protobuf").body(body).send().await.expect("export");
        assert_eq!(r.status().as_u16(), status);
    }

    // An API burst: the older herald's handlers and ours, with their outcomes.
    let mut burst: Vec<(&str, u16)> = Vec::new();
    burst.extend(std::iter::repeat_n(("/api/v1/entity/cand-0/graph", 200), 20));
    burst.extend(std::iter::repeat_n(("/api/v1/entity/nope/graph", 404), 5));
    burst.extend(std::iter::repeat_n(("/api/v1/entity/cand-0/graph?up=x", 400), 3));
    burst.extend(std::iter::repeat_n(("/api/v1/entity/block-0/operations", 200), 4));
    burst.extend(std::iter::repeat_n(("/api/v1/instruments", 200), 2));
    burst.extend(std::iter::repeat_n(("/api/v1/entity/cand-0/lineage", 200), 3));
    burst.extend(std::iter::repeat_n(("/api/v1/entity/nope", 404), 2));
    burst.extend(std::iter::repeat_n(("/no/such/path/cand-0", 404), 2));
    for (path, status) in &burst {
        assert_eq!(herald.get_text(path).await.0, *status, "{path}");
    }

    let m = Exposition::scrape(&herald).await;
    for (name, kind, labels) in LIST {
        assert_eq!(m.types.get(*name).map(String::as_str), Some(*kind), "{name}: type (exposition:\n{})", m.text);
        let want: BTreeSet<String> = labels.iter().map(|l| l.to_string()).collect();
        assert_eq!(m.label_names(name), want, "{name}: label names");
    }
    // The older herald's buckets.
    let bounds = |family: &str| -> Vec<f64> {
        let mut b: Vec<f64> = m.buckets(family).iter().filter(|b| *b != "+Inf").map(|b| b.parse().unwrap()).collect();
        b.sort_by(f64::total_cmp);
        b
    };
    for (family, lowest, highest) in [
        ("helix_span_processing_duration_seconds", 0.0001, 0.5),
        ("helix_parent_resolution_latency_seconds", 0.000001, 0.005),
        ("helix_trace_store_lookup_duration_seconds", 0.0000001, 0.0001),
    ] {
        let b = bounds(family);
        assert_eq!((b.first().copied(), b.last().copied()), (Some(lowest), Some(highest)), "{family}: {b:?}");
    }

    // Ingest: N, M, K.
    let inst = ("instrument_id", INST);
    assert_eq!(m.value("helix_entities_total", &[inst]), 7.0);
    assert_eq!(m.value("helix_entities_total", &[inst, ("stage", "search"), ("status", "error")]), 1.0);
    assert_eq!(m.value("helix_operations_total", &[]), 3.0);
    assert_eq!(m.value("helix_errors_total", &[inst]), 2.0);
    assert_eq!(m.value("helix_events_total", &[inst, ("event_name", "helix.error")]), 2.0);
    assert_eq!(m.value("helix_events_total", &[inst, ("event_name", "helix.event.classified")]), 1.0);
    assert_eq!(m.value("helix_spans_passthrough_total", &[]), 1.0);
    assert_eq!(m.value("helix_spans_received_total", &[("transport", "grpc")]), 12.0, "10 SDK spans and 2 resent");
    // Every entity span processed, the resent one twice.
    assert_eq!(m.value("helix_span_processing_duration_seconds_count", &[inst]), 11.0);
    // Parents: 3 resolved, 1 not; 2 spans had parents.
    assert_eq!(m.value("helix_parent_resolution_total", &[inst, ("result", "success")]), 3.0);
    assert_eq!(m.value("helix_parent_resolution_total", &[inst, ("result", "failed")]), 1.0);
    assert_eq!(m.value("helix_parent_resolution_failed_total", &[inst]), 1.0);
    assert_eq!(m.value("helix_parent_resolution_latency_seconds_count", &[inst]), 2.0);
    // TraceStore: 4 entries; the candidates and retry-0 evicted three of the blocks.
    assert_eq!(m.value("helix_trace_store_hits_total", &[]), 3.0);
    assert_eq!(m.value("helix_trace_store_misses_total", &[]), 1.0);
    assert_eq!(m.value("helix_trace_store_lookup_duration_seconds_count", &[]), 4.0);
    assert_eq!(m.value("helix_trace_store_size", &[]), 4.0);
    assert_eq!(m.value("helix_trace_store_evictions_total", &[]), 3.0);

    // Database: rows per table, each once however often it was sent.
    let writes = |table: &str, status: &str| m.value("helix_db_writes_total", &[("table", table), ("status", status)]);
    assert_eq!(writes("entities", "success"), 7.0);
    assert_eq!(writes("entity_operations", "success"), 3.0);
    assert_eq!(writes("entity_events", "success"), 3.0);
    assert_eq!(m.value("helix_db_writes_total", &[("status", "failed")]), 0.0);
    assert_eq!(m.value("helix_db_write_errors_total", &[]), 0.0);
    for table in ["entities", "entity_operations", "entity_events"] {
        assert!(m.value("helix_db_write_duration_seconds_count", &[("table", table)]) >= 1.0, "{table}");
    }
    assert!(m.value("helix_db_connections_total", &[]) >= 1.0);
    // The parent lookup that went to the database, and the burst's reads.
    assert_eq!(m.value("helix_db_queries_total", &[("query", "span_refs"), ("status", "success")]), 1.0);
    assert_eq!(m.value("helix_db_queries_total", &[("query", "graph"), ("status", "success")]), 25.0);
    assert_eq!(m.value("helix_db_query_duration_seconds_count", &[("query", "graph")]), 25.0);

    // API: the older herald's handler names and status words, ours by route, never a path.
    let api =
        |handler: &str, status: &str| m.value("helix_api_requests_total", &[("handler", handler), ("status", status)]);
    assert_eq!(api("entity_graph", "success"), 20.0);
    assert_eq!(api("entity_graph", "not_found"), 5.0);
    assert_eq!(api("entity_graph", "bad_request"), 3.0);
    assert_eq!(api("entity_operations", "success"), 4.0);
    assert_eq!(api("list_instruments", "200"), 2.0);
    assert_eq!(api("entity_lineage", "200"), 3.0);
    assert_eq!(api("entity", "404"), 2.0);
    assert_eq!(api("unmatched", "404"), 2.0);
    assert_eq!(m.value("helix_api_requests_total", &[]), burst.len() as f64);
    assert_eq!(m.value("helix_api_request_duration_seconds_count", &[("handler", "entity_graph")]), 28.0);
    for id in ["cand-0", "block-0", "nope", "/api/v1"] {
        assert!(!m.text.contains(id), "{id:?} appears in /metrics: labels must not carry IDs or paths");
    }

    // Refusals.
    assert_eq!(m.value("helix_exports_refused_total", &[("reason", "too_large")]), 1.0);
    assert_eq!(m.value("helix_exports_refused_total", &[("reason", "malformed")]), 1.0);

    // The process collector reports this process.
    assert!(m.value("process_resident_memory_bytes", &[]) > 0.0);
    assert!(m.value("process_start_time_seconds", &[]) > 1.7e9);
}
