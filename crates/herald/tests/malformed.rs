//! Hostile and malformed input: each gets a clear error or is stored correctly, and the
//! herald keeps serving. Requests are built from the OTLP protobuf types (or protobuf
//! messages shaped like them, where the types themselves cannot express the fault).

mod support;

use helix_model::builders::{kv, pipeline_resource, string, traces, SpanBuilder};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use support::*;
use tonic::Code;

/// Same field numbers as ExportTraceServiceRequest → ResourceSpans → ScopeSpans → Span.name,
/// but the name is raw bytes, so it can carry invalid UTF-8 through a real protobuf encoder.
mod shadow {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(message, repeated, tag = "1")]
        pub resource_spans: Vec<ResourceSpans>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceSpans {
        #[prost(message, repeated, tag = "2")]
        pub scope_spans: Vec<ScopeSpans>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeSpans {
        #[prost(message, repeated, tag = "2")]
        pub spans: Vec<Span>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        #[prost(bytes = "vec", tag = "5")]
        pub name: Vec<u8>,
    }
    /// Field 1 as a number where the real request has a list of messages: not decodable.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WrongWireType {
        #[prost(uint64, tag = "1")]
        pub resource_spans: u64,
    }
}

fn invalid_utf8_request() -> shadow::Request {
    shadow::Request {
        resource_spans: vec![shadow::ResourceSpans {
            scope_spans: vec![shadow::ScopeSpans { spans: vec![shadow::Span { name: vec![0x66, 0xff, 0xfe, 0x6f] }] }],
        }],
    }
}

/// Send any prost message to the trace Export method, as a misbehaving client would.
async fn grpc_export_raw<M: Message + Default + Send + Sync + 'static>(herald: &Herald, message: M) -> tonic::Status {
    let channel = tonic::transport::Endpoint::from_shared(herald.grpc_url()).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export");
    let codec: tonic_prost::ProstCodec<M, ExportTraceServiceRequest> = tonic_prost::ProstCodec::default();
    let result: Result<tonic::Response<ExportTraceServiceRequest>, tonic::Status> =
        grpc.unary(tonic::Request::new(message), path, codec).await;
    result.expect_err("the herald must refuse this request")
}

async fn http_post(herald: &Herald, content_type: &str, body: Vec<u8>) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", herald.http))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("HTTP request");
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

async fn still_serving(herald: &Herald) {
    let (status, _) = herald.get("/healthz").await;
    assert_eq!(status, 200, "herald stopped serving; log:\n{}", herald.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_protobuf_is_invalid_argument_over_grpc_and_400_over_http() {
    let herald = Herald::start();
    let status = grpc_export_raw(&herald, shadow::WrongWireType { resource_spans: 7 }).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("decode"), "{status:?}");
    let (code, body) =
        http_post(&herald, "application/x-protobuf", shadow::WrongWireType { resource_spans: 7 }.encode_to_vec()).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("not a valid OTLP"), "{body}");
    still_serving(&herald).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400_naming_the_problem() {
    let herald = Herald::start();
    let (code, body) =
        http_post(&herald, "application/json", br#"{"resourceSpans": [{"scopeSpans": 5}]}"#.to_vec()).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("OTLP/JSON"), "{body}");
    let (code, body) = http_post(&herald, "application/json", b"{not json".to_vec()).await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = http_post(&herald, "text/plain", b"hello".to_vec()).await;
    assert_eq!(code, 415, "{body}");
    assert!(body.contains("application/x-protobuf"), "{body}");
    still_serving(&herald).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_a_string_field_is_refused_clearly() {
    let herald = Herald::start();
    let status = grpc_export_raw(&herald, invalid_utf8_request()).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let (code, body) = http_post(&herald, "application/x-protobuf", invalid_utf8_request().encode_to_vec()).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("UTF-8") || body.contains("utf-8") || body.contains("string"), "{body}");
    still_serving(&herald).await;
}

fn huge_request(bytes: usize) -> ExportTraceServiceRequest {
    let value = "x".repeat(bytes);
    traces(
        pipeline_resource("svc", "CHIME"),
        vec![SpanBuilder::creation("s", "huge", 1).attr("blob", string(&value)).build()],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_body_is_refused_with_its_limit() {
    let herald = Herald::start();
    let request = huge_request(100 << 20);
    let mut client = raw_client(&herald).await.max_encoding_message_size(usize::MAX);
    let status = client.export(request.clone()).await.expect_err("over the limit");
    assert!(matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument), "{status:?}");
    assert!(status.message().contains("limit") || status.message().contains("large"), "{status:?}");
    let (code, body) = http_post(&herald, "application/x-protobuf", request.encode_to_vec()).await;
    assert_eq!(code, 413, "{body}");
    let (status, _) = herald.get("/api/v1/entity/huge").await;
    assert_eq!(status, 404);
    still_serving(&herald).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_parents_and_a_1_mb_value_are_stored() {
    let herald = Herald::start();
    let parents: Vec<String> = (0..10_000).map(|i| format!("parent-{i:05}")).collect();
    let big = "v".repeat(1 << 20);
    let request = traces(
        pipeline_resource("svc", "CHIME"),
        vec![
            SpanBuilder::creation("ingest", "parent-00042", 1).build(),
            SpanBuilder::creation("aggregate", "wide", 2)
                .parents(&parents.join(","))
                .attr("blob", string(&big))
                .build(),
        ],
    );
    raw_client(&herald).await.export(request).await.expect("acknowledged");
    let entity = herald.get_ok("/api/v1/entity/wide").await;
    let stored: Vec<&str> =
        entity["entity"]["parent_ids"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(stored, parents.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(entity["entity"]["metadata"]["blob"].as_str().unwrap().len(), 1 << 20);
    let lineage = herald.get_ok("/api/v1/entity/wide/lineage?direction=ancestors").await;
    assert_eq!(lineage["nodes"].as_array().unwrap().len(), 2, "the one parent that exists is a node");
    still_serving(&herald).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ids_round_trip_through_ingest_and_api() {
    let herald = Herald::start();
    let hostile = [
        "a/b/c".to_owned(),
        "quote\"s 'and' spaces".to_owned(),
        "<script>alert(1)</script>".to_owned(),
        "<img src=x onerror=alert(1)>".to_owned(),
        "emoji 🔭✨ détecteur".to_owned(),
        "100%_done?x=1#frag".to_owned(),
        "k".repeat(4096),
    ];
    let spans = hostile
        .iter()
        .enumerate()
        .map(|(i, id)| SpanBuilder::creation("ingest", id, i as u64).attr("note", string(id)).build())
        .collect();
    raw_client(&herald).await.export(traces(pipeline_resource("svc", "CHIME"), spans)).await.expect("acknowledged");
    for id in &hostile {
        let entity = herald.get_ok(&format!("/api/v1/entity/{}", enc(id))).await;
        assert_eq!(entity["entity"]["id"].as_str().unwrap(), id);
        assert_eq!(entity["entity"]["metadata"]["note"].as_str().unwrap(), id);
    }
    // A control character in an entity ID is refused as partial success, with the reason.
    let bad =
        traces(vec![kv("service.name", string("svc"))], vec![SpanBuilder::creation("s", "bell\u{7}", 99).build()]);
    let response = raw_client(&herald).await.export(bad).await.expect("acknowledged with partial success").into_inner();
    let partial = response.partial_success.expect("partial success reported");
    assert_eq!(partial.rejected_spans, 1);
    assert!(partial.error_message.contains("control"), "{}", partial.error_message);
    still_serving(&herald).await;
}
