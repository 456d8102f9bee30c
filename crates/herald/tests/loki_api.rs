//! The Loki-compatible read API against a real herald: entity spans sent by the OpenTelemetry
//! SDK's OTLP exporter, log records sent over OTLP/gRPC with a real tonic client (per-record
//! control of IDs, severities and attributes), then every supported LogQL construct must return
//! exactly the expected lines, unsupported ones a 400 saying what is supported, and the label,
//! series and `count_over_time` answers must count what was sent.

mod support;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::SpanContext;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::{json, Value};
use support::*;

const NS: i64 = 1_000_000_000;

/// The entity spans the lines were logged in.
struct Spans {
    /// `create("search", id="cand-42")`, its trace T1.
    create_42: SpanContext,
    /// A plain child span of that creation (same trace).
    fit: SpanContext,
    /// `operate("archive", "cand-42")`, trace T2.
    archive_42: SpanContext,
    /// `create("search", id="cand-7")`, trace T3.
    create_7: SpanContext,
}

async fn send_spans(herald: &Herald) -> Spans {
    let pipeline = Pipeline::new(herald, Transport::Grpc, "search", "CHIME");
    let create_42 = pipeline.create("search", "cand-42", &[]);
    let fit = pipeline.plain("fit", Some(&create_42));
    let archive_42 = pipeline.operate("archive", "cand-42");
    let create_7 = pipeline.create("search", "cand-7", &[]);
    pipeline.flush().await;
    pipeline.shutdown().await;
    Spans { create_42, fit, archive_42, create_7 }
}

/// One log line to send: (resource, severity number, severity text, body, span, attributes).
struct Sent {
    archiver: bool,
    severity: i32,
    text: &'static str,
    body: &'static str,
    span: Option<SpanContext>,
    attrs: Vec<(&'static str, &'static str)>,
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_owned())) }),
        ..Default::default()
    }
}

/// The nine lines of the story, L1..L9, ten seconds apart from `base`.
fn story(s: &Spans) -> Vec<Sent> {
    let line =
        |archiver, severity, text, body, span: Option<&SpanContext>, attrs: Vec<(&'static str, &'static str)>| Sent {
            archiver,
            severity,
            text,
            body,
            span: span.cloned(),
            attrs,
        };
    vec![
        // L1: outside any span.
        line(false, 9, "INFO", "starting search run", None, vec![("code.function", "main")]),
        // L2: in cand-42's creation, before set_entity_id(): only the trace.
        line(false, 5, "DEBUG", "scanning block 7", Some(&s.create_42), vec![]),
        // L3: after set_entity_id().
        line(
            false,
            9,
            "INFO",
            "candidate cand-42 found at dm=56.7",
            Some(&s.create_42),
            vec![("helix_entity_id", "cand-42")],
        ),
        // L4: in a plain child span of the creation; severity by number only.
        line(false, 13, "", "disk almost full on /data", Some(&s.fit), vec![]),
        // L5, L6: the archive operation, in another service.
        line(true, 0, "INFO", "archiving cand-42", Some(&s.archive_42), vec![("helix_entity_id", "cand-42")]),
        line(true, 17, "ERROR", "archive failed: Disk quota", Some(&s.archive_42), vec![]),
        // L7, L8: cand-7's creation.
        line(false, 9, "INFO", "candidate cand-7 found", Some(&s.create_7), vec![("helix_entity_id", "cand-7")]),
        line(false, 17, "ERROR", "DISK error on cand-7", Some(&s.create_7), vec![]),
        // L9: outside any span again.
        line(false, 9, "INFO", "search run done", None, vec![]),
    ]
}

fn resource(service: &str, process: &str) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", service),
            kv("helix.instrument.id", "CHIME"),
            kv("helix.process.name", process),
        ],
        ..Default::default()
    }
}

async fn send_logs(herald: &Herald, lines: &[Sent], base: i64) {
    let record = |i: usize, l: &Sent| LogRecord {
        time_unix_nano: (base + i as i64 * 10 * NS) as u64,
        observed_time_unix_nano: (base + i as i64 * 10 * NS + 1) as u64,
        severity_number: l.severity,
        severity_text: l.text.to_owned(),
        body: Some(AnyValue { value: Some(any_value::Value::StringValue(l.body.to_owned())) }),
        attributes: l.attrs.iter().map(|(k, v)| kv(k, v)).collect(),
        trace_id: l.span.as_ref().map(|s| s.trace_id().to_bytes().to_vec()).unwrap_or_default(),
        span_id: l.span.as_ref().map(|s| s.span_id().to_bytes().to_vec()).unwrap_or_default(),
        ..Default::default()
    };
    let of = |archiver: bool| ScopeLogs {
        log_records: lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.archiver == archiver)
            .map(|(i, l)| record(i, l))
            .collect(),
        ..Default::default()
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![
            ResourceLogs {
                resource: Some(resource("search", "CHIME/search")),
                scope_logs: vec![of(false)],
                ..Default::default()
            },
            ResourceLogs {
                resource: Some(resource("archiver", "CHIME/archive")),
                scope_logs: vec![of(true)],
                ..Default::default()
            },
        ],
    };
    let mut client = LogsServiceClient::connect(herald.grpc_url()).await.expect("connect to the herald");
    let answer = client.export(request).await.expect("log export acknowledged").into_inner();
    assert!(answer.partial_success.is_none_or(|p| p.rejected_log_records == 0), "every line accepted");
}

/// A whole second, 30 minutes ago: inside every default window, and the counts' step grid.
fn base_ns() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64;
    (now - 1_800) * NS
}

struct Loki<'a> {
    herald: &'a Herald,
    client: reqwest::Client,
    base: i64,
}

impl Loki<'_> {
    async fn raw(&self, path: &str, params: &[(&str, &str)], categorize: bool) -> (u16, Value) {
        let mut request = self.client.get(self.herald.api_url(path)).query(params);
        if categorize {
            request = request.header("X-Loki-Response-Encoding-Flags", "categorize-labels");
        }
        let response = request.send().await.expect("Loki API request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn ok(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let (status, body) = self.raw(path, params, false).await;
        assert_eq!(status, 200, "GET {path} {params:?} → {status}: {body}");
        assert_eq!(body["status"], "success", "{body}");
        body
    }

    /// The window of the story, as Loki's nanosecond parameters.
    fn window(&self) -> (String, String) {
        (self.base.to_string(), (self.base + 600 * NS).to_string())
    }

    /// query_range over the story's window; every entry as (ns, line), in answer order.
    async fn entries(&self, query: &str, extra: &[(&str, &str)]) -> Vec<(i64, String)> {
        let (start, end) = self.window();
        // `extra` may give its own window.
        let mut params = vec![("query", query), ("start", start.as_str()), ("end", end.as_str())];
        params.retain(|(name, _)| !extra.iter().any(|(given, _)| given == name));
        params.extend_from_slice(extra);
        let body = self.ok("/loki/api/v1/query_range", &params).await;
        assert_eq!(body["data"]["resultType"], "streams", "{body}");
        let mut out = Vec::new();
        for stream in body["data"]["result"].as_array().expect("result") {
            for value in stream["values"].as_array().expect("values") {
                let ns: i64 = value[0].as_str().expect("ns string").parse().expect("ns");
                out.push((ns, value[1].as_str().expect("line").to_owned()));
            }
        }
        out
    }

    /// The lines a query returns, oldest first.
    async fn lines(&self, query: &str) -> Vec<String> {
        let mut entries = self.entries(query, &[("direction", "forward")]).await;
        entries.sort();
        entries.into_iter().map(|(_, line)| line).collect()
    }
}

const L: [&str; 9] = [
    "starting search run",
    "scanning block 7",
    "candidate cand-42 found at dm=56.7",
    "disk almost full on /data",
    "archiving cand-42",
    "archive failed: Disk quota",
    "candidate cand-7 found",
    "DISK error on cand-7",
    "search run done",
];

fn pick(numbers: &[usize]) -> Vec<String> {
    numbers.iter().map(|n| L[n - 1].to_owned()).collect()
}

async fn story_herald(args: &[&str]) -> (Herald, Spans, i64) {
    let herald = Herald::start_with(HeraldOptions {
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        ..Default::default()
    });
    let spans = send_spans(&herald).await;
    let base = base_ns();
    send_logs(&herald, &story(&spans), base).await;
    (herald, spans, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_selector_and_filter_returns_exactly_its_lines() {
    let (herald, spans, base) = story_herald(&[]).await;
    let loki = Loki { herald: &herald, client: reqwest::Client::new(), base };
    let (t1, s1) = hex(&spans.create_42);
    let cases: Vec<(String, Vec<usize>)> = vec![
        (r#"{service_name="search"}"#.into(), vec![1, 2, 3, 4, 7, 8, 9]),
        (r#"{service_name!="search", helix_instrument_id="CHIME"}"#.into(), vec![5, 6]),
        (r#"{service_name=~"arch.*"}"#.into(), vec![5, 6]),
        (r#"{service_name=~"arch"}"#.into(), vec![]),
        (r#"{helix_instrument_id="CHIME", service_name!~"s.*"}"#.into(), vec![5, 6]),
        (r#"{helix_process_name="CHIME/archive"}"#.into(), vec![5, 6]),
        (r#"{level="error"}"#.into(), vec![6, 8]),
        (r#"{level=~"warn|debug"}"#.into(), vec![2, 4]),
        (format!(r#"{{trace_id="{t1}"}}"#), vec![2, 3, 4]),
        (r#"{service_name="search"} |= "cand""#.into(), vec![3, 7, 8]),
        // Case-sensitive, although the store's text index is not.
        (r#"{service_name="search"} |= "disk""#.into(), vec![4]),
        (r#"{service_name="search"} != "cand""#.into(), vec![1, 2, 4, 9]),
        (r#"{service_name="search"} |~ "dm=\\d+\\.\\d""#.into(), vec![3]),
        (r#"{service_name="search"} !~ "(?i)disk|cand""#.into(), vec![1, 2, 9]),
        (r#"{service_name="search"} |= "cand" != "cand-7""#.into(), vec![3]),
        // The guide's tip: the entity's lines, including those that carry only its trace.
        (r#"{service_name="search"} | helix_entity_id = "cand-42""#.into(), vec![2, 3, 4]),
        (r#"{service_name="archiver"} | helix_entity_id = "cand-42""#.into(), vec![5, 6]),
        (r#"{helix_instrument_id="CHIME"} | helix_entity_id="cand-42""#.into(), vec![2, 3, 4, 5, 6]),
        (r#"{helix_instrument_id="CHIME"} | helix_entity_id != "cand-42""#.into(), vec![1, 7, 8, 9]),
        (r#"{helix_instrument_id="CHIME"} | helix_entity_id =~ "cand-.*""#.into(), vec![2, 3, 4, 5, 6, 7, 8]),
        (
            r#"{helix_instrument_id="CHIME"} | helix_entity_id !~ "cand-4.*" | level != "debug""#.into(),
            vec![1, 7, 8, 9],
        ),
        (r#"{service_name="search"} | level="info" and helix_entity_id="cand-7""#.into(), vec![7]),
        (format!(r#"{{service_name="search"}} | otel_span_id = "{s1}""#), vec![2, 3]),
        (r#"{service_name="search"} | code_function = "main""#.into(), vec![1]),
        (r#"{service_name="search"} | json | logfmt | drop __error__ |= "run""#.into(), vec![1, 9]),
    ];
    for (query, want) in cases {
        assert_eq!(loki.lines(&query).await, pick(&want), "{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_carry_the_labels_and_the_structured_metadata() {
    let (herald, spans, base) = story_herald(&[]).await;
    let loki = Loki { herald: &herald, client: reqwest::Client::new(), base };
    let (t1, s1) = hex(&spans.create_42);
    let (start, end) = loki.window();
    let params =
        [("query", r#"{service_name="search"} |= "scanning""#), ("start", start.as_str()), ("end", end.as_str())];
    let labels = json!({
        "service_name": "search",
        "helix_process_name": "CHIME/search",
        "helix_instrument_id": "CHIME",
        "level": "debug",
        "trace_id": t1,
    });
    // Loki ≥ 3 clients ask for the metadata apart: the stream has the indexed labels only.
    let (status, body) = loki.raw("/loki/api/v1/query_range", &params, true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["encodingFlags"], json!(["categorize-labels"]));
    assert_eq!(
        body["data"]["result"],
        json!([{ "stream": labels, "values": [[(base + 10 * NS).to_string(), L[1], {
            "structuredMetadata": { "helix_entity_id": "cand-42", "otel_span_id": s1 }
        }]] }]),
        "the trace-only line's entity is resolved from its span"
    );
    // Older clients get one label set.
    let body = loki.ok("/loki/api/v1/query_range", &params).await;
    let mut merged = labels.clone();
    merged["helix_entity_id"] = json!("cand-42");
    merged["otel_span_id"] = json!(s1);
    assert_eq!(body["data"]["result"], json!([{ "stream": merged, "values": [[(base + 10 * NS).to_string(), L[1]]] }]));
    assert_eq!(body["data"]["stats"]["summary"]["totalEntriesReturned"], 1);
    assert!(body.get("warnings").is_none(), "{body}");

    // A line in a plain child span belongs to the trace's entity; one outside spans has no IDs.
    let body = loki
        .ok(
            "/loki/api/v1/query_range",
            &[("query", r#"{service_name="search"} |= "disk almost""#), ("start", &start), ("end", &end)],
        )
        .await;
    assert_eq!(body["data"]["result"][0]["stream"]["helix_entity_id"], "cand-42", "{body}");
    assert_eq!(body["data"]["result"][0]["stream"]["level"], "warn", "{body}");
    let body = loki
        .ok(
            "/loki/api/v1/query_range",
            &[("query", r#"{service_name="search"} |= "done""#), ("start", &start), ("end", &end)],
        )
        .await;
    let stream = &body["data"]["result"][0]["stream"];
    assert!(stream.get("trace_id").is_none() && stream.get("helix_entity_id").is_none(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direction_and_limit_pick_the_newest_or_the_oldest() {
    let (herald, _spans, base) = story_herald(&[]).await;
    let loki = Loki { herald: &herald, client: reqwest::Client::new(), base };
    let query = r#"{service_name="search"}"#;
    let bodies = |mut entries: Vec<(i64, String)>, newest_first: bool| {
        entries.sort();
        if newest_first {
            entries.reverse();
        }
        entries.into_iter().map(|(_, l)| l).collect::<Vec<_>>()
    };
    let backward = loki.entries(query, &[("limit", "3")]).await;
    assert_eq!(bodies(backward, true), pick(&[9, 8, 7]), "backward is the default: the newest");
    let backward = loki.entries(query, &[("limit", "3"), ("direction", "backward")]).await;
    assert_eq!(bodies(backward, true), pick(&[9, 8, 7]));
    let forward = loki.entries(query, &[("limit", "3"), ("direction", "forward")]).await;
    assert_eq!(bodies(forward, false), pick(&[1, 2, 3]));
    // Within a stream, values follow the direction.
    let (start, end) = loki.window();
    for (direction, newest_first) in [("backward", true), ("forward", false)] {
        let body = loki
            .ok(
                "/loki/api/v1/query_range",
                &[
                    ("query", r#"{service_name="search", level="info"}"#),
                    ("start", &start),
                    ("end", &end),
                    ("direction", direction),
                ],
            )
            .await;
        for stream in body["data"]["result"].as_array().expect("result") {
            let ts: Vec<i64> =
                stream["values"].as_array().unwrap().iter().map(|v| v[0].as_str().unwrap().parse().unwrap()).collect();
            let mut sorted = ts.clone();
            sorted.sort();
            if newest_first {
                sorted.reverse();
            }
            assert_eq!(ts, sorted, "{direction}");
        }
    }
    // The window: start inclusive, end exclusive, in seconds, ns or RFC 3339.
    let from = (base + 10 * NS).to_string();
    let to = ((base + 30 * NS) / NS).to_string();
    let got = loki.entries(query, &[("start", &from), ("end", &to), ("direction", "forward")]).await;
    assert_eq!(bodies(got, false), pick(&[2, 3]));
    let rfc = humantime::format_rfc3339_nanos(UNIX_EPOCH + std::time::Duration::from_nanos((base + 30 * NS) as u64))
        .to_string();
    let got = loki.entries(query, &[("start", &rfc), ("direction", "forward"), ("limit", "1")]).await;
    assert_eq!(bodies(got, false), pick(&[4]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_queries_and_bad_parameters_are_400_with_a_message() {
    let (herald, _spans, base) = story_herald(&[]).await;
    let loki = Loki { herald: &herald, client: reqwest::Client::new(), base };
    let refused: &[(&str, &str)] = &[
        (r#"{service_name="search"} | line_format "{{.body}}""#, "`| line_format` is not supported"),
        (r#"{service_name="search"} | label_format x=level"#, "`| label_format` is not supported"),
        (r#"{service_name="search"} | status > 500"#, "comparison `status >`"),
        (r#"{service_name="search"} |> "<_> disk""#, "pattern line filters"),
        (r#"{service_name="search"} |= "a" or "b""#, "`or` in line filters"),
        (r#"{service_name="search"} | level="info" or level="error""#, "`or` in label filters"),
        (r#"rate({service_name="search"}[5m])"#, "cannot start with `rate`"),
        (r#"sum(bytes_over_time({service_name="search"}[5m]))"#, "`bytes_over_time` is not supported"),
        (r#"sum without (level) (count_over_time({service_name="search"}[5m]))"#, "`without`"),
        (r#"topk(3, count_over_time({service_name="search"}[5m]))"#, "cannot start with `topk`"),
        (r#"{service_name=~".*"}"#, "at least one regexp or equality matcher"),
        (r#"{service_name="search"} |~ "(unclosed""#, "not a valid regular expression"),
    ];
    let (start, end) = loki.window();
    for (query, message) in refused {
        for path in ["/loki/api/v1/query_range", "/loki/api/v1/query"] {
            let (status, body) = loki.raw(path, &[("query", query), ("start", &start), ("end", &end)], false).await;
            assert_eq!(status, 400, "{path} {query}: {body}");
            assert_eq!((body["status"].as_str(), body["code"].as_u64()), (Some("error"), Some(400)), "{body}");
            let text = body["message"].as_str().expect("message");
            assert!(text.contains(message), "{query}: {text}");
            assert!(text.contains("`query`"), "the message names the parameter: {text}");
        }
    }
    let (_, body) = loki.raw("/loki/api/v1/query_range", &[("query", refused[0].0)], false).await;
    assert!(body["message"].as_str().unwrap().contains("supported: a stream selector"), "{body}");
    let bad: &[(&[(&str, &str)], &str)] = &[
        (&[("query", r#"{service_name="search"}"#), ("direction", "sideways")], "`direction`"),
        (&[("query", r#"{service_name="search"}"#), ("limit", "5001")], "`limit`"),
        (&[("query", r#"{service_name="search"}"#), ("start", "yesterday")], "`start`"),
        (&[("query", r#"{service_name="search"}"#), ("start", "20"), ("end", "10")], "`end`"),
        (
            &[
                ("query", r#"sum(count_over_time({service_name="search"}[1m]))"#),
                ("start", "0"),
                ("end", "86400"),
                ("step", "1"),
            ],
            "`step`",
        ),
        (&[("start", "0")], "`query`"),
    ];
    for (params, named) in bad {
        let (status, body) = loki.raw("/loki/api/v1/query_range", params, false).await;
        assert_eq!(status, 400, "{params:?}: {body}");
        assert!(body["message"].as_str().unwrap_or_default().contains(named), "{params:?}: {body}");
    }
    let (status, body) = loki.raw("/loki/api/v1/series", &[], false).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("`match[]`"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_values_and_series_list_what_was_sent() {
    let (herald, spans, base) = story_herald(&[]).await;
    let loki = Loki { herald: &herald, client: reqwest::Client::new(), base };
    let (start, end) = loki.window();
    let window = [("start", start.as_str()), ("end", end.as_str())];
    let body = loki.ok("/loki/api/v1/labels", &window).await;
    assert_eq!(body["data"], json!(["helix_instrument_id", "helix_process_name", "level", "service_name", "trace_id"]));
    // The default window is the last six hours: the story is in it.
    assert_eq!(loki.ok("/loki/api/v1/labels", &[]).await["data"], body["data"]);
    // An old window has nothing.
    assert_eq!(loki.ok("/loki/api/v1/labels", &[("start", "1"), ("end", "2")]).await["data"], json!([]));
    let mut traces = [hex(&spans.create_42).0, hex(&spans.archive_42).0, hex(&spans.create_7).0];
    traces.sort();
    let expected: &[(&str, Value)] = &[
        ("service_name", json!(["archiver", "search"])),
        ("helix_process_name", json!(["CHIME/archive", "CHIME/search"])),
        ("helix_instrument_id", json!(["CHIME"])),
        ("level", json!(["debug", "error", "info", "warn"])),
        ("trace_id", json!(traces)),
        ("helix_entity_id", json!([])),
        ("no_such_label", json!([])),
    ];
    for (label, values) in expected {
        let body = loki.ok(&format!("/loki/api/v1/label/{label}/values"), &window).await;
        assert_eq!(&body["data"], values, "{label}");
    }
    // With a selector: among its lines, structured metadata included.
    let scoped = |q: &'static str| [("start", start.as_str()), ("end", end.as_str()), ("query", q)];
    let body = loki.ok("/loki/api/v1/label/helix_entity_id/values", &scoped(r#"{service_name="search"}"#)).await;
    assert_eq!(body["data"], json!(["cand-42", "cand-7"]));
    let body = loki.ok("/loki/api/v1/label/level/values", &scoped(r#"{service_name="archiver"}"#)).await;
    assert_eq!(body["data"], json!(["error", "info"]));
    let body = loki.ok("/loki/api/v1/labels", &scoped(r#"{service_name="search"} |= "run""#)).await;
    assert_eq!(body["data"], json!(["helix_instrument_id", "helix_process_name", "level", "service_name"]));

    let t2 = hex(&spans.archive_42).0;
    let body = loki
        .ok("/loki/api/v1/series", &[("match[]", r#"{service_name="archiver"}"#), ("start", &start), ("end", &end)])
        .await;
    let set = |level: &str| {
        json!({"service_name": "archiver", "helix_process_name": "CHIME/archive", "helix_instrument_id": "CHIME",
               "level": level, "trace_id": t2})
    };
    let mut got: Vec<Value> = body["data"].as_array().expect("series").clone();
    got.sort_by_key(|v| v["level"].as_str().unwrap_or_default().to_owned());
    assert_eq!(got, vec![set("error"), set("info")]);
    // Several selectors: the union of their label sets (L1 and L9 share one).
    let body = loki
        .ok(
            "/loki/api/v1/series",
            &[
                ("match[]", r#"{service_name="archiver"}"#),
                ("match[]", r#"{service_name="search"}"#),
                ("start", &start),
                ("end", &end),
            ],
        )
        .await;
    assert_eq!(body["data"].as_array().expect("series").len(), 8, "{body}");
}

/// `{labels} → value` of a vector or each point of a matrix, for comparing answers.
fn by_labels(result: &Value, key: &str) -> BTreeMap<String, Value> {
    result
        .as_array()
        .expect("result")
        .iter()
        .map(|series| (series["metric"].to_string(), series[key].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_over_time_counts_the_lines() {
    let (herald, _spans, base) = story_herald(&[]).await;
    let loki = Loki { herald: &herald, client: reqwest::Client::new(), base };
    let secs = |ns: i64| json!(ns as f64 / 1e9);
    let at = (base + 600 * NS).to_string();
    let instant = |q: &'static str| [("query", q), ("time", at.as_str())];
    let body =
        loki.ok("/loki/api/v1/query", &instant(r#"sum(count_over_time({helix_instrument_id="CHIME"}[1h]))"#)).await;
    assert_eq!(body["data"]["resultType"], "vector");
    assert_eq!(body["data"]["result"], json!([{ "metric": {}, "value": [secs(base + 600 * NS), "9"] }]));
    let body = loki
        .ok("/loki/api/v1/query", &instant(r#"sum by (level) (count_over_time({helix_instrument_id="CHIME"}[1h]))"#))
        .await;
    let t = secs(base + 600 * NS);
    assert_eq!(
        by_labels(&body["data"]["result"], "value"),
        BTreeMap::from([
            (json!({"level": "debug"}).to_string(), json!([t, "1"])),
            (json!({"level": "error"}).to_string(), json!([t, "2"])),
            (json!({"level": "info"}).to_string(), json!([t, "5"])),
            (json!({"level": "warn"}).to_string(), json!([t, "1"])),
        ])
    );
    let body = loki
        .ok(
            "/loki/api/v1/query",
            &instant(r#"sum by (service_name) (count_over_time({helix_instrument_id="CHIME"} |= "cand" [1h]))"#),
        )
        .await;
    assert_eq!(
        by_labels(&body["data"]["result"], "value"),
        BTreeMap::from([
            (json!({"service_name": "archiver"}).to_string(), json!([t, "1"])),
            (json!({"service_name": "search"}).to_string(), json!([t, "3"])),
        ])
    );
    let body = loki
        .ok(
            "/loki/api/v1/query",
            &instant(r#"sum by (helix_entity_id) (count_over_time({helix_instrument_id="CHIME"}[1h]))"#),
        )
        .await;
    assert_eq!(
        by_labels(&body["data"]["result"], "value"),
        BTreeMap::from([
            (json!({}).to_string(), json!([t, "2"])),
            (json!({"helix_entity_id": "cand-42"}).to_string(), json!([t, "5"])),
            (json!({"helix_entity_id": "cand-7"}).to_string(), json!([t, "2"])),
        ])
    );
    // The range is `(t - 20s, t]`: at base + 50 s, L5 (+40 s) and L6 (+50 s) but not L4 (+30 s).
    let body = loki
        .ok(
            "/loki/api/v1/query",
            &[
                ("query", r#"count_over_time({helix_instrument_id="CHIME"}[20s])"#),
                ("time", &(base + 50 * NS).to_string()),
            ],
        )
        .await;
    let total: u64 = body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"][1].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 2, "{body}");

    // The log volume panel's range query: a matrix, one point per step with lines.
    let (start, end) = ((base + 50 * NS).to_string(), (base + 110 * NS).to_string());
    let body = loki
        .ok(
            "/loki/api/v1/query_range",
            &[
                ("query", r#"sum by (level) (count_over_time({service_name="search"} | drop __error__ [1m]))"#),
                ("start", &start),
                ("end", &end),
                ("step", "60"),
            ],
        )
        .await;
    assert_eq!(body["data"]["resultType"], "matrix");
    let (t1, t2) = (secs(base + 50 * NS), secs(base + 110 * NS));
    assert_eq!(
        by_labels(&body["data"]["result"], "values"),
        BTreeMap::from([
            (json!({"level": "debug"}).to_string(), json!([[t1, "1"]])),
            (json!({"level": "error"}).to_string(), json!([[t2, "1"]])),
            (json!({"level": "info"}).to_string(), json!([[t1, "2"], [t2, "2"]])),
            (json!({"level": "warn"}).to_string(), json!([[t1, "1"]])),
        ])
    );
    // A log query as an instant query: the hour up to `time`.
    let body = loki.ok("/loki/api/v1/query", &[("query", r#"{service_name="archiver"}"#), ("time", &at)]).await;
    assert_eq!(body["data"]["resultType"], "streams");
    let lines: usize =
        body["data"]["result"].as_array().unwrap().iter().map(|s| s["values"].as_array().unwrap().len()).sum();
    assert_eq!(lines, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scan_budget_cuts_a_query_short_and_says_so() {
    let (herald, _spans, base) = story_herald(&["--loki-scan-lines", "4"]).await;
    let loki = Loki { herald: &herald, client: reqwest::Client::new(), base };
    let (start, end) = loki.window();
    // The regex is evaluated by the herald: the store hands over every CHIME line, newest
    // first, and the budget stops the scan after four (L9..L6), of which two match.
    let body = loki
        .ok(
            "/loki/api/v1/query_range",
            &[("query", r#"{helix_instrument_id="CHIME"} |~ "cand""#), ("start", &start), ("end", &end)],
        )
        .await;
    let mut lines: Vec<&str> = body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().iter().map(|v| v[1].as_str().unwrap()))
        .collect();
    lines.sort();
    assert_eq!(lines, ["DISK error on cand-7", "candidate cand-7 found"]);
    assert_eq!(body["data"]["stats"]["helix"], json!({"linesExamined": 4, "scanBudget": 4, "truncated": 1}));
    let warning = body["warnings"][0].as_str().expect("a warning");
    assert!(warning.contains("partial result") && warning.contains("HELIX_LOKI_SCAN_LINES"), "{warning}");
    // What the store narrows down costs nothing here: the same budget suffices for an exact query.
    let body = loki
        .ok(
            "/loki/api/v1/query_range",
            &[("query", r#"{service_name="archiver"} |= "archiv""#), ("start", &start), ("end", &end)],
        )
        .await;
    assert!(body.get("warnings").is_none(), "{body}");
    assert_eq!(body["data"]["stats"]["summary"]["totalEntriesReturned"], 2);
}
