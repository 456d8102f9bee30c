//! The span store end to end: every span a real herald acknowledges — creations, their child
//! spans, plain traces — is in its store after the export, and a retried export adds nothing.

mod support;

use helix_model::builders::{pipeline_resource, traces, SpanBuilder};
use helix_model::SpanRole;
use helix_store::{PageRequest, SqliteOptions, SqliteStore, Store, TraceFilter};
use support::*;

/// The herald's database, opened once the herald has stopped (nothing else writes it then).
fn stored(herald: &mut Herald) -> SqliteStore {
    herald.stop();
    SqliteStore::open(&herald.db_path(), SqliteOptions { migrate: false, ..Default::default() }).expect("open store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creation_children_and_plain_traces_are_all_stored() {
    let mut herald = Herald::start();
    let p = Pipeline::new(&herald, Transport::Grpc, "telescope", "CHIME");
    let entity = p.create("dedisperse", "block-7", &[]);
    let fft = p.plain("fft", Some(&entity));
    let write = p.plain("write", Some(&entity));
    let request = p.plain("process-request", None);
    p.flush().await;
    p.shutdown().await;

    let store = stored(&mut herald);
    let (trace_id, entity_span) = hex(&entity);
    let trace = store.trace(&trace_id, 100).await.unwrap().expect("the creation's trace is stored");
    assert!(!trace.partial);
    let mut got: Vec<(String, &str, Option<String>)> =
        trace.spans.iter().map(|s| (s.span_id.clone(), s.role.as_str(), s.parent_span_id.clone())).collect();
    got.sort();
    let mut want = vec![
        (entity_span.clone(), "creation", None),
        (hex(&fft).1, "span", Some(entity_span.clone())),
        (hex(&write).1, "span", Some(entity_span.clone())),
    ];
    want.sort();
    assert_eq!(got, want);
    let creation = trace.spans.iter().find(|s| s.role == SpanRole::Creation).unwrap();
    assert_eq!(creation.entity_id.as_deref(), Some("block-7"));
    assert_eq!(creation.name, "dedisperse");
    assert_eq!(creation.service_name.as_deref(), Some("telescope"));
    assert!(trace.spans.iter().all(|s| s.instrument_id.as_deref() == Some("CHIME")), "the resource's instrument");
    assert!(trace.spans.iter().all(|s| !s.span_proto.is_empty() && !s.resource_proto.is_empty()));

    let plain = store.trace(&hex(&request).0, 100).await.unwrap().expect("the plain trace is stored");
    assert_eq!(plain.spans.len(), 1);
    assert_eq!((plain.spans[0].name.as_str(), plain.spans[0].role), ("process-request", SpanRole::Span));

    let listed = store.traces(&TraceFilter::default(), &PageRequest::first(10)).await.unwrap().items;
    assert_eq!(listed.len(), 2);
    let summary = listed.iter().find(|t| t.trace_id == trace_id).unwrap();
    assert_eq!((summary.root_name.as_str(), summary.span_count), ("dedisperse", 3));
    assert_eq!(summary.entity_ids, ["block-7"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_export_adds_no_span() {
    let mut herald = Herald::start();
    let parent = SpanBuilder::creation("ingest", "raw-1", 1).build();
    let child = SpanBuilder::creation("search", "cand-1", 2).parents("raw-1").trace(parent.trace_id.clone()).build();
    let plain = SpanBuilder::new("read", 3).build();
    let request = traces(pipeline_resource("svc", "CHIME"), vec![parent.clone(), child, plain]);
    let mut client = raw_client(&herald).await;
    client.export(request.clone()).await.expect("first export");
    client.export(request.clone()).await.expect("the retry is acknowledged too");
    let store = stored(&mut herald);

    let trace_id = helix_model::ids::to_hex(&parent.trace_id);
    let trace = store.trace(&trace_id, 100).await.unwrap().expect("stored");
    assert_eq!(trace.spans.len(), 2, "each span once");
    let listed = store.traces(&TraceFilter::default(), &PageRequest::first(10)).await.unwrap().items;
    assert_eq!(listed.iter().map(|t| t.span_count).sum::<u64>(), 3, "summaries count each span once");
    // The stored creation carries the link the herald resolved to its parent's creation span.
    let cand = trace.spans.iter().find(|s| s.entity_id.as_deref() == Some("cand-1")).unwrap();
    let span = <opentelemetry_proto::tonic::trace::v1::Span as prost::Message>::decode(cand.span_proto.as_slice())
        .expect("a stored span decodes");
    assert_eq!(span.links.len(), 1);
    assert_eq!(span.links[0].span_id, parent.span_id);
}

/// `--store-spans=false` (a site that forwards to Tempo and wants no second copy): entity rows
/// are stored as always, no span is, and every trace read says why instead of "unknown trace".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_store_spans_off_entities_are_stored_and_trace_reads_say_spans_are_not_kept() {
    let mut herald =
        Herald::start_with(HeraldOptions { args: vec!["--store-spans=false".into()], ..Default::default() });
    let pipeline = Pipeline::new(&herald, Transport::Grpc, "spans-off", "OFF");
    let created = pipeline.create("ingest", "off-block-1", &[]);
    pipeline.plain("housekeeping", None);
    pipeline.flush().await;
    let (trace_id, _) = hex(&created);

    let entity = herald.get_ok("/api/v1/entity/off-block-1").await;
    assert_eq!(entity["entity"]["trace_id"], trace_id.as_str(), "the entity row is stored: {entity}");
    for path in [format!("/api/v1/trace/{trace_id}"), "/api/v1/traces".to_owned(), format!("/api/traces/{trace_id}")] {
        let (status, body) = herald.get_text(&path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains("--store-spans=false") && body.contains("Tempo"), "{path}: {body}");
    }
    pipeline.shutdown().await;
    let store = stored(&mut herald);
    assert!(store.trace(&trace_id, 100).await.unwrap().is_none(), "no span of the trace is stored");
    assert!(store.traces(&TraceFilter::default(), &PageRequest::first(10)).await.unwrap().items.is_empty());
}

/// Span retention through the real binary: with `--span-retention 1h` (and its job every
/// second), the spans of a trace that started two hours ago disappear from the trace API
/// while its entity, its operation and a young trace stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_older_than_the_retention_disappear_and_entities_stay() {
    let mut herald = Herald::start_with(HeraldOptions {
        args: vec!["--span-retention".into(), "1h".into()],
        env: vec![("HELIX_RETENTION_INTERVAL_SECS".into(), "1".into())],
        ..Default::default()
    });
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let two_hours = 2 * 3_600 * 1_000_000_000;
    let old = SpanBuilder::creation("ingest", "old-block", 1).times(now - two_hours, now - two_hours + 1_000).build();
    let mut old_child = SpanBuilder::new("filter", 2).trace(old.trace_id.clone()).build();
    old_child.parent_span_id = old.span_id.clone();
    old_child.start_time_unix_nano = now - two_hours + 10;
    old_child.end_time_unix_nano = now - two_hours + 500;
    let op = SpanBuilder::operation("archive", "old-block", 3).times(now - two_hours, now - two_hours + 2_000).build();
    let young = SpanBuilder::new("process-request", 4).times(now - 1_000_000, now).build();
    let mut client = raw_client(&herald).await;
    client
        .export(traces(pipeline_resource("svc", "CHIME"), vec![old.clone(), old_child, op, young.clone()]))
        .await
        .expect("export");
    let (old_id, young_id) = (helix_model::ids::to_hex(&old.trace_id), helix_model::ids::to_hex(&young.trace_id));

    eventually(std::time::Duration::from_secs(20), async || {
        (herald.get_text(&format!("/api/v1/trace/{old_id}")).await.0 == 404).then_some(())
    })
    .await;
    let young_trace = herald.get_ok(&format!("/api/v1/trace/{young_id}")).await;
    assert_eq!(young_trace["spans"].as_array().map(Vec::len), Some(1), "the young trace stays: {young_trace}");
    let entity = herald.get_ok("/api/v1/entity/old-block").await;
    assert_eq!(entity["entity"]["trace_id"], old_id.as_str(), "the entity keeps its trace ID: {entity}");
    let ops = herald.get_ok("/api/v1/entity/old-block/operations").await;
    assert_eq!(ops.to_string().matches("archive").count(), 1, "its operation stays: {ops}");
    let listed = herald.get_ok("/api/v1/traces").await;
    let ids: Vec<&str> = listed["traces"].as_array().unwrap().iter().filter_map(|t| t["trace_id"].as_str()).collect();
    assert_eq!(ids, [young_id.as_str()], "only the young trace is listed");
    let store = stored(&mut herald);
    assert!(store.trace(&old_id, 10).await.unwrap().is_none(), "no span of the old trace is left");
}

/// `HELIX_SPAN_DIRECTORY_BYTES` bounds the span directory: with a 64 KiB cap and 20 000
/// traces (160 kB of directory entries) its memory, as `helix_span_directory_bytes` and the
/// health page report it, stays under the cap; every trace is still read by ID (ours and
/// Tempo's) with its spans, before and after a restart on the larger store; a retried export,
/// recent or old, shows no span twice; a late span of an old trace is read back with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_span_directory_cap_far_below_the_traces_keeps_every_trace_readable() {
    use helix_model::builders::trace_id;
    use helix_model::ids::to_hex;
    let cap = 65_536u64;
    let mut herald = Herald::start_with(HeraldOptions {
        env: vec![
            ("HELIX_SPAN_DIRECTORY_BYTES".into(), cap.to_string()),
            ("HELIX_BATCH_MAX_RECORDS".into(), "1000".into()),
            ("HELIX_SPAN_RETENTION".into(), "0".into()),
        ],
        ..Default::default()
    });
    let n = 20_000u64;
    let requests: Vec<_> = (0..n / 1_000)
        .map(|r| {
            let spans = (r * 1_000..(r + 1) * 1_000).map(|i| SpanBuilder::new("step", i).build()).collect();
            traces(pipeline_resource("svc", "CHIME"), spans)
        })
        .collect();
    let mut client = raw_client(&herald).await;
    for request in &requests {
        client.export(request.clone()).await.expect("export");
    }
    async fn check(herald: &Herald, cap: u64, n: u64) {
        let bytes = herald.metric("helix_span_directory_bytes", &[]).await;
        assert!(bytes > 0.0 && bytes <= cap as f64, "directory {bytes} bytes, cap {cap}");
        assert_eq!(herald.metric("helix_span_directory_limit_bytes", &[]).await, cap as f64);
        let health = herald.get_ok("/api/v1/health").await;
        let held = health["store"]["span_directory"]["entries"].as_u64().expect("entries on the health page");
        assert!(held * 8 <= cap && held < n / 2, "most traces are found on disk: {held} of {n} held");
        for i in (0..n).step_by(499).skip(1).chain([1, n - 1]) {
            let trace = herald.get_ok(&format!("/api/v1/trace/{}", to_hex(&trace_id(i)))).await;
            let spans = trace["spans"].as_array().expect("spans");
            assert_eq!(spans.len(), 1, "trace {i}: {trace}");
            assert_eq!(spans[0]["span_id"], to_hex(&helix_model::builders::span_id(i)).as_str());
        }
        let (status, _) = herald.get(&format!("/api/v1/trace/{}", to_hex(&trace_id(n + 7)))).await;
        assert_eq!(status, 404, "an unknown trace");
    }
    check(&herald, cap, n).await;
    // Retries: the newest export (its traces are held) and the oldest (found on disk only).
    for request in [&requests[requests.len() - 1], &requests[0]] {
        client.export(request.clone()).await.expect("the retry is acknowledged");
    }
    for i in [0, 1, 999, n - 1] {
        let trace = herald.get_ok(&format!("/api/v1/trace/{}", to_hex(&trace_id(i)))).await;
        assert_eq!(trace["spans"].as_array().map(Vec::len), Some(1), "trace {i} after the retries: {trace}");
    }
    // A late span of the oldest trace: read back with it, ours and Tempo's.
    let late = SpanBuilder::new("late", n + 1).trace(trace_id(0)).build();
    client.export(traces(pipeline_resource("svc", "CHIME"), vec![late])).await.expect("late span");
    let first = to_hex(&trace_id(0));
    let trace = herald.get_ok(&format!("/api/v1/trace/{first}")).await;
    let names: Vec<&str> = trace["spans"].as_array().unwrap().iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["step", "late"], "{trace}");
    let tempo = herald.get_ok(&format!("/api/traces/{first}")).await;
    assert_eq!(tempo["batches"][0]["scopeSpans"][0]["spans"].as_array().map(Vec::len), Some(2), "{tempo}");
    drop(client);

    // A restart on a store far larger than the cap.
    herald = herald.restart();
    check(&herald, cap, n).await;
    let trace = herald.get_ok(&format!("/api/v1/trace/{first}")).await;
    assert_eq!(trace["spans"].as_array().map(Vec::len), Some(2), "{trace}");
    assert!(herald.log().contains("span store directory loaded"), "the start-up says what it loaded");
}
