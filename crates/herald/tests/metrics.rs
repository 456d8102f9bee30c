//! `/metrics` counts what the store did, not what was sent: an operation re-sent by a retrying
//! client is stored, and counted, once.

mod support;

use helix_model::builders::{pipeline_resource, traces, SpanBuilder};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helix_operations_total_counts_each_stored_operation_once() {
    let herald = Herald::start();
    let mut client = raw_client(&herald).await;
    let send = |spans| traces(pipeline_resource("svc", "CHIME"), spans);
    client.export(send(vec![SpanBuilder::creation("ingest", "e-1", 1).build()])).await.unwrap();
    assert_eq!(herald.metric("helix_operations_total", &[]).await, 0.0, "a creation is not an operation");

    let ops = send(vec![
        SpanBuilder::operation("calibrate", "e-1", 2).build(),
        SpanBuilder::operation("flag", "e-1", 3).build(),
    ]);
    client.export(ops.clone()).await.unwrap();
    assert_eq!(herald.metric("helix_operations_total", &[]).await, 2.0);
    // The same export again (a client retry after a lost acknowledgement): nothing new stored.
    client.export(ops).await.unwrap();
    assert_eq!(herald.metric("helix_operations_total", &[]).await, 2.0);
    // An operation on an entity not seen yet is stored too (on a placeholder).
    client.export(send(vec![SpanBuilder::operation("flag", "e-later", 4).build()])).await.unwrap();
    assert_eq!(herald.metric("helix_operations_total", &[]).await, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helix_spans_stored_total_counts_each_stored_span_once() {
    let herald = Herald::start();
    let mut client = raw_client(&herald).await;
    // A creation, a plain child span of it and an unrelated plain span: three spans stored.
    let export = traces(
        pipeline_resource("svc", "CHIME"),
        vec![
            SpanBuilder::creation("ingest", "s-1", 1).build(),
            SpanBuilder::new("filter", 2).trace(helix_model::builders::trace_id(1)).build(),
            SpanBuilder::new("housekeeping", 3).build(),
        ],
    );
    client.export(export.clone()).await.unwrap();
    assert_eq!(herald.metric("helix_spans_stored_total", &[]).await, 3.0);
    // The same export again: nothing new stored, nothing counted.
    client.export(export).await.unwrap();
    assert_eq!(herald.metric("helix_spans_stored_total", &[]).await, 3.0);
}
