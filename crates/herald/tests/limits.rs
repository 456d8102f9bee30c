//! Input limits against the real binary, with OTLP protobuf requests over real gRPC and HTTP
//! clients: spans and log records over the shape limits are rejected as a partial success
//! (the rest stored), exports that could never fit the in-flight budget are refused as too
//! large, concurrent huge exports keep the herald's memory within that budget, and `meta.*`
//! query parameters are bounded.

mod support;

use std::time::{Duration, Instant};

use helix_model::builders::{int, kv, logs, pipeline_resource, string, traces, SpanBuilder};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use support::*;

/// The default of `--max-inflight-bytes`, which the documentation states as the memory bound.
const INFLIGHT_BUDGET: u64 = 256 * 1024 * 1024;
/// About 30 MB, under the default request limit of 32 MiB.
const HUGE: usize = 30_000_000;

/// One entity span with a million attributes (about 30 MB encoded).
fn million_attributes(id: &str) -> ExportTraceServiceRequest {
    let mut span = SpanBuilder::creation("ingest", id, 1).instrument("LIM").build();
    span.attributes.extend((0..1_000_000).map(|i| kv(&format!("attribute-{i:07}"), int(i))));
    traces(pipeline_resource("svc", "LIM"), vec![span])
}

/// One entity span with a single 30 MB value.
fn one_huge_value(id: &str) -> ExportTraceServiceRequest {
    let span = SpanBuilder::creation("ingest", id, 2).instrument("LIM").attr("blob", string(&"x".repeat(HUGE))).build();
    traces(pipeline_resource("svc", "LIM"), vec![span])
}

/// POST a protobuf OTLP/HTTP body; status, Retry-After and body.
async fn post(client: &reqwest::Client, herald: &Herald, path: &str, body: bytes::Bytes) -> (u16, bool, Vec<u8>) {
    let response = client
        .post(format!("http://{}{path}", herald.http))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("OTLP/HTTP request");
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    (status, retry_after, response.bytes().await.expect("body").to_vec())
}

/// A request with one fine entity span and two over the default limits.
fn mixed(prefix: &str) -> ExportTraceServiceRequest {
    let mut many = SpanBuilder::creation("ingest", &format!("{prefix}-many"), 2).instrument("LIM");
    for i in 0..1025 {
        many = many.attr(&format!("k{i}"), int(i));
    }
    traces(
        pipeline_resource("svc", "LIM"),
        vec![
            SpanBuilder::creation("ingest", &format!("{prefix}-ok"), 1).instrument("LIM").build(),
            many.build(),
            SpanBuilder::creation("ingest", &format!("{prefix}-long"), 3)
                .instrument("LIM")
                .attr("blob", string(&"x".repeat((4 << 20) + 1)))
                .build(),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_log_records_over_the_limits_are_rejected_and_the_rest_stored() {
    let herald = Herald::start();
    let check = |rejected: i64, message: &str| {
        assert_eq!(rejected, 2, "{message}");
        assert!(
            message.contains("attributes, more than the 1024") && message.contains("--max-span-attributes"),
            "{message}"
        );
        assert!(message.contains("4194305 bytes") && message.contains("--max-value-bytes"), "{message}");
    };
    let answer = raw_client(&herald).await.export(mixed("grpc")).await.expect("accepted in part").into_inner();
    let partial = answer.partial_success.expect("a partial success");
    check(partial.rejected_spans, &partial.error_message);

    let client = reqwest::Client::new();
    let (status, _, body) = post(&client, &herald, "/v1/traces", mixed("http").encode_to_vec().into()).await;
    assert_eq!(status, 200);
    let partial = ExportTraceServiceResponse::decode(body.as_slice()).unwrap().partial_success.expect("partial");
    check(partial.rejected_spans, &partial.error_message);
    for transport in ["grpc", "http"] {
        assert_eq!(herald.get(&format!("/api/v1/entity/{transport}-ok")).await.0, 200, "the fine span is stored");
        for over in ["many", "long"] {
            assert_eq!(herald.get(&format!("/api/v1/entity/{transport}-{over}")).await.0, 404, "{over} is not");
        }
    }

    let record = |body: String| LogRecord { body: Some(string(&body)), ..Default::default() };
    let request = logs(pipeline_resource("svc", "LIM"), vec![record("fine".into()), record("y".repeat(5_000_000))]);
    let (status, _, body) = post(&client, &herald, "/v1/logs", request.encode_to_vec().into()).await;
    assert_eq!(status, 200);
    let partial = ExportLogsServiceResponse::decode(body.as_slice()).unwrap().partial_success.expect("partial");
    assert_eq!(partial.rejected_log_records, 1);
    assert!(partial.error_message.contains("5000000 bytes") && partial.error_message.contains("--max-value-bytes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_30_mb_exports_stay_within_the_inflight_budget() {
    let herald = Herald::start();
    let client = reqwest::Client::new();
    // Warm the paths up so the baseline includes what any export allocates once.
    let (status, _, _) = post(&client, &herald, "/v1/traces", mixed("warm").encode_to_vec().into()).await;
    assert_eq!(status, 200);
    let baseline = herald.memory("VmRSS");

    let attributes: bytes::Bytes = million_attributes("lim-attrs").encode_to_vec().into();
    let value: bytes::Bytes = one_huge_value("lim-value").encode_to_vec().into();
    assert!(attributes.len() > 25_000_000 && value.len() > HUGE, "{} / {}", attributes.len(), value.len());
    let exports = (0..8).map(|i| {
        let body = if i % 2 == 0 { attributes.clone() } else { value.clone() };
        let (client, herald) = (&client, &herald);
        async move { (i % 2 == 0, post(client, herald, "/v1/traces", body).await) }
    });
    let outcomes = futures_util::future::join_all(exports).await;
    let peak = herald.memory("VmHWM");
    let grown = peak.saturating_sub(baseline);
    eprintln!("baseline RSS {} MB, peak {} MB (+{} MB)", baseline / 1_000_000, peak / 1_000_000, grown / 1_000_000);

    let (mut too_large, mut stored_in_part, mut busy) = (0, 0, 0);
    for (many_attributes, (status, retry_after, body)) in outcomes {
        let text = String::from_utf8_lossy(&body).into_owned();
        match status {
            413 => {
                assert!(many_attributes, "only the million-attribute export can never fit: {text}");
                assert!(text.contains("--max-inflight-bytes") && text.contains("smaller batches"), "{text}");
                too_large += 1;
            }
            503 => {
                assert!(retry_after && text.contains("retry"), "{text}");
                busy += 1;
            }
            200 => {
                let partial = ExportTraceServiceResponse::decode(body.as_slice()).unwrap().partial_success.unwrap();
                assert!(partial.error_message.contains("--max-value-bytes"), "{partial:?}");
                stored_in_part += 1;
            }
            other => panic!("unexpected {other}: {text}"),
        }
    }
    assert_eq!(too_large, 4, "every million-attribute export is refused before it is decoded");
    assert!(stored_in_part >= 1, "a 30 MB value fits the budget (busy: {busy})");
    // The documented bound: the budget, plus an eighth for the allocator and connection buffers.
    let bound = INFLIGHT_BUDGET + INFLIGHT_BUDGET / 8;
    assert!(grown < bound, "the herald grew by {} MB, more than {} MB", grown / 1_000_000, bound / 1_000_000);

    // The budget is given back: an ordinary export goes through, and over gRPC the
    // million-attribute export is refused as OUT_OF_RANGE.
    let (status, _, _) = post(&client, &herald, "/v1/traces", mixed("after").encode_to_vec().into()).await;
    assert_eq!(status, 200);
    let mut grpc = raw_client(&herald).await.max_encoding_message_size(64 * 1024 * 1024);
    let refused = grpc.export(million_attributes("lim-grpc")).await.expect_err("too large");
    assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused:?}");
    assert!(refused.message().contains("--max-inflight-bytes"), "{}", refused.message());
    assert_eq!(herald.get("/api/v1/entity/lim-grpc").await.0, 404);
}

/// The same over gRPC, where tonic buffers each whole message before it is priced: the bytes
/// hold their share of the budget as they arrive. (On loopback the eight mostly arrive one
/// after another, so this asserts the bound and the outcomes, not that buffering is priced.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_30_mb_grpc_exports_stay_within_the_inflight_budget() {
    let herald = Herald::start();
    raw_client(&herald).await.export(mixed("warm")).await.expect("warm-up stored");
    let baseline = herald.memory("VmRSS");

    let attributes = million_attributes("lim-grpc-attrs");
    let value = one_huge_value("lim-grpc-value");
    let exports = (0..8).map(|i| {
        let request = if i % 2 == 0 { attributes.clone() } else { value.clone() };
        let herald = &herald;
        async move {
            // One connection each, as eight exporters would have.
            let mut client = raw_client(herald).await.max_encoding_message_size(64 << 20);
            (i % 2 == 0, client.export(request).await)
        }
    });
    let outcomes = futures_util::future::join_all(exports).await;
    let peak = herald.memory("VmHWM");
    let grown = peak.saturating_sub(baseline);
    eprintln!("baseline RSS {} MB, peak {} MB (+{} MB)", baseline / 1_000_000, peak / 1_000_000, grown / 1_000_000);

    let (mut too_large, mut stored_in_part, mut busy) = (0, 0, 0);
    for (many_attributes, outcome) in outcomes {
        match outcome {
            Err(status) if status.code() == tonic::Code::OutOfRange => {
                assert!(many_attributes, "only the million-attribute export can never fit: {status:?}");
                assert!(status.message().contains("--max-inflight-bytes"), "{}", status.message());
                too_large += 1;
            }
            Err(status) if status.code() == tonic::Code::Unavailable => {
                assert!(status.message().contains("retry"), "{}", status.message());
                busy += 1;
            }
            Ok(response) => {
                let partial = response.into_inner().partial_success.expect("the huge value is rejected");
                assert!(partial.error_message.contains("--max-value-bytes"), "{partial:?}");
                stored_in_part += 1;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    eprintln!("{stored_in_part} stored in part, {too_large} too large, {busy} told to retry");
    assert_eq!(too_large + busy + stored_in_part, 8);
    assert!(stored_in_part >= 1, "a 30 MB value fits the budget (busy: {busy}, too large: {too_large})");
    let bound = INFLIGHT_BUDGET + INFLIGHT_BUDGET / 8;
    assert!(grown < bound, "the herald grew by {} MB, more than {} MB", grown / 1_000_000, bound / 1_000_000);
    // The budget is given back.
    raw_client(&herald).await.export(mixed("after")).await.expect("an ordinary export after the burst");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_query_parameters_are_bounded_in_key_length_and_number() {
    let herald = Herald::start();
    let key = "k".repeat(60 * 1024);
    assert_eq!(herald.get("/api/v1/entities?meta.k=x").await.0, 200, "warm-up");
    let started = Instant::now();
    let (status, body) = herald.get(&format!("/api/v1/entities?meta.{key}=x")).await;
    let took = started.elapsed();
    eprintln!("a 60 KB meta. key was answered in {took:?}");
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap_or("");
    assert!(error.contains("61440 bytes, more than the 1024 allowed"), "{error}");
    assert!(error.len() < 300, "the refusal does not echo the key: {} bytes", error.len());
    let filters: Vec<String> = (0..17).map(|i| format!("meta.k{i}=v")).collect();
    let (status, body) = herald.get(&format!("/api/v1/entities?{}", filters.join("&"))).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap_or("").contains("more than the 16 allowed"), "{body}");
    let (status, _) = herald.get(&format!("/api/v1/entities?{}", filters[..16].join("&"))).await;
    assert_eq!(status, 200, "sixteen filters are fine");
    // Nothing was left running: the herald answers at once.
    let _ = tokio::time::timeout(Duration::from_secs(5), herald.get("/healthz")).await.expect("healthz answers");
}
