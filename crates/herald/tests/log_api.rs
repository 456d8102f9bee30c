//! The log search through the real binary: records from the OpenTelemetry SDK's OTLP log
//! exporters (gRPC and HTTP) inside and outside tracked spans, found by `/api/v1/logs`,
//! `/api/v1/trace/{id}/logs` and `/api/v1/entity/{id}/logs`; retried exports store nothing twice.

mod support;

use opentelemetry::logs::Severity;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use serde_json::Value;
use support::{enc, hex, Herald, LogPipeline, Pipeline, Transport};

fn bodies(v: &Value) -> Vec<String> {
    v["logs"].as_array().expect("logs array").iter().map(|l| l["body"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_inside_and_outside_spans_are_found_by_every_filter() {
    let herald = Herald::start();
    for transport in [Transport::Grpc, Transport::HttpProtobuf] {
        let service = format!("svc-{transport:?}").to_lowercase();
        let traces = Pipeline::new(&herald, transport, &service, "LOGS");
        let logs = LogPipeline::new(&herald, transport, &service, "LOGS");
        let block = format!("blk-{service}");
        let created = traces.create("ingest", &block, &[]);
        // The guide's tip: the client puts the entity and trace on every line inside the block.
        logs.log(Severity::Info, "reading block from disk", Some(&created), &[("helix_entity_id", &block)]);
        logs.log(Severity::Warn, "disk 91% full while writing", Some(&created), &[]);
        // The deferred-ID story: a line of an operation before its entity ID is known.
        let op = traces.operate("archive", &block);
        logs.log(Severity::Error, "archive target unreachable, retrying", Some(&op), &[]);
        logs.log(Severity::Info, "pipeline idle: no span around this line", None, &[]);
        traces.flush().await;
        logs.flush().await;

        let (trace_id, span_id) = hex(&created);
        let got = herald.get_ok(&format!("/api/v1/logs?trace_id={trace_id}")).await;
        assert_eq!(bodies(&got), ["reading block from disk", "disk 91% full while writing"]);
        let line = &got["logs"][0];
        assert_eq!(line["span_id"], span_id.as_str());
        assert_eq!(line["service_name"], service.as_str());
        assert_eq!(line["instrument_id"], "LOGS");
        assert_eq!(line["process_name"], format!("LOGS/{service}").as_str());
        assert_eq!(line["severity_number"], 9);
        assert_eq!(line["resource"]["service.name"], service.as_str());
        assert!(line["observed_ns"].as_i64().unwrap() > 0);

        let short = herald.get_ok(&format!("/api/v1/trace/{trace_id}/logs?severity=WARN")).await;
        assert_eq!(bodies(&short), ["disk 91% full while writing"]);
        let entity = herald.get_ok(&format!("/api/v1/entity/{}/logs", enc(&block))).await;
        assert_eq!(
            bodies(&entity),
            ["reading block from disk", "disk 91% full while writing", "archive target unreachable, retrying"],
            "the entity's lines include its operation's, logged with no entity ID"
        );
        let q = |query: String| {
            let (herald, service) = (&herald, &service);
            async move { bodies(&herald.get_ok(&format!("/api/v1/logs?service={service}&{query}")).await) }
        };
        assert_eq!(q("severity=error".into()).await, ["archive target unreachable, retrying"]);
        assert_eq!(q("q=NO%20SPAN".into()).await, ["pipeline idle: no span around this line"]);
        assert_eq!(q("q=91%25".into()).await, ["disk 91% full while writing"]);
        assert_eq!(
            q("order=desc&limit=2".into()).await,
            ["pipeline idle: no span around this line", "archive target unreachable, retrying"]
        );
        let lines = herald.get_ok(&format!("/api/v1/logs?process=LOGS%2F{service}")).await;
        assert_eq!(bodies(&lines).len(), 4, "every line of the process, with or without IDs");
        let idle = &lines["logs"][3];
        assert!(idle["trace_id"].is_null() && idle["entity_id"].is_null(), "{idle}");
        traces.shutdown().await;
        logs.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_returns_every_line_once_and_bad_input_says_what_to_do() {
    let herald = Herald::start();
    let logs = LogPipeline::new(&herald, Transport::Grpc, "pager", "PAGE");
    for i in 0..57 {
        logs.log(Severity::Info, &format!("line {i:03}"), None, &[]);
    }
    logs.flush().await;
    for order in ["asc", "desc"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                None => format!("/api/v1/logs?service=pager&order={order}&limit=10"),
                Some(c) => format!("/api/v1/logs?service=pager&order={order}&limit=10&cursor={c}"),
            };
            let page = herald.get_ok(&path).await;
            seen.extend(bodies(&page));
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let mut expected: Vec<String> = (0..57).map(|i| format!("line {i:03}")).collect();
        if order == "desc" {
            expected.reverse();
        }
        assert_eq!(seen, expected, "{order}");
    }
    for (query, names) in [
        ("severity=LOUD", "severity"),
        ("severity=30", "severity"),
        ("order=sideways", "order"),
        ("trace_id=nothex", "trace_id"),
        ("span_id=12", "span_id"),
        ("from_ns=10&to_ns=5", "from_ns"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = herald.get(&format!("/api/v1/logs?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.to_string().contains(names), "{query}: {body}");
    }
    logs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_log_export_stores_each_line_once() {
    let herald = Herald::start();
    let mut client = LogsServiceClient::connect(herald.grpc_url()).await.unwrap();
    let record = |i: u64| LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000 + i,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("retried line {i}"))) }),
        ..Default::default()
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records: (0..5).map(record).collect(), ..Default::default() }],
            ..Default::default()
        }],
    };
    for _ in 0..3 {
        client.export(request.clone()).await.expect("acknowledged");
    }
    let got = herald.get_ok("/api/v1/logs?q=retried%20line").await;
    assert_eq!(bodies(&got), (0..5).map(|i| format!("retried line {i}")).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_retention_removes_old_lines_and_keeps_entities() {
    let herald = Herald::start_with(support::HeraldOptions {
        args: vec!["--log-retention".into(), "1h".into()],
        env: vec![("HELIX_RETENTION_INTERVAL_SECS".into(), "1".into())],
        ..Default::default()
    });
    let traces = Pipeline::new(&herald, Transport::Grpc, "keeper", "RET");
    let block = traces.create("ingest", "kept-block", &[]);
    traces.flush().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let line = |body: &str, at: u64| LogRecord {
        time_unix_nano: at,
        body: Some(AnyValue { value: Some(any_value::Value::StringValue(body.into())) }),
        trace_id: block.trace_id().to_bytes().to_vec(),
        ..Default::default()
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![line("two hours old", now - 7_200_000_000_000), line("fresh", now)],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    LogsServiceClient::connect(herald.grpc_url()).await.unwrap().export(request).await.expect("acknowledged");
    let (trace_id, _) = hex(&block);
    support::eventually(std::time::Duration::from_secs(20), async || {
        let got = bodies(&herald.get_ok(&format!("/api/v1/trace/{trace_id}/logs")).await);
        (got == ["fresh"]).then_some(())
    })
    .await;
    let (status, _) = herald.get("/api/v1/entity/kept-block").await;
    assert_eq!(status, 200, "log retention leaves entities alone");
    traces.shutdown().await;
}
