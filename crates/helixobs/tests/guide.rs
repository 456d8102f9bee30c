//! Every pattern of the user guide (tracking-entities), written with the Rust client (the
//! README's examples), against a real herald: the same rows as the Python client's end-to-end
//! tests (clients/python/tests/test_e2e_seed.py and test_e2e_client.py).
//!
//! Each test has its own herald (own database), so the guide's fixed IDs never collide. The
//! herald acknowledges an export only after committing it: the API is read right after
//! `tel.flush()`.

mod support;

use serde_json::{json, Value};
use support::{edges, is_hex, s, tel, Herald};
use tracing_subscriber::layer::SubscriberExt;

struct SearchResult {
    score: f64,
}

fn run_search() -> SearchResult {
    SearchResult { score: 0.97 }
}

/// Run `f` with the instrument's `tracing` layer as this thread's subscriber.
fn with_logs<T>(tel: &helixobs::Instrument, f: impl FnOnce() -> T) -> T {
    let subscriber = tracing_subscriber::registry().with(tel.tracing_layer());
    tracing::subscriber::with_default(subscriber, f)
}

fn log_rows(herald: &Herald, id: &str) -> std::collections::BTreeMap<String, Value> {
    herald.logs(id).into_iter().map(|r| (s(&r["body"]).to_owned(), r)).collect()
}

#[test]
fn setup_example() {
    let herald = Herald::start();
    let tel = helixobs::Instrument::builder("my-pipeline")
        .instrument_id("MY_INST")
        .endpoint(herald.endpoint()) // the guide says "herald:4317"
        .process_name("MY_INST/ingest")
        .build()
        .unwrap();
    {
        let _block = tel.create("ingest", "block-001").start();
    }
    tel.shutdown().unwrap();
    assert!(herald.get("/api/v1/instruments").as_array().unwrap().contains(&json!("MY_INST")));
    let block = herald.created("block-001");
    assert_eq!(block["service_name"], "my-pipeline");
    assert_eq!(block["process_name"], "MY_INST/ingest");
    assert_eq!(block["stage"], "ingest");
}

#[test]
fn context_guard_examples() {
    let herald = Herald::start();
    let tel = tel(&herald);
    {
        let token = tel.create("search", "candidate-42").parents(["block-001"]).start();
        let result = run_search();
        token.set_attribute("score", result.score);
    }
    {
        let token = tel.operate("archive", "event-7").start();
        token.set_attribute("path", "/data/event-7.h5");
    }
    tel.flush().unwrap();

    let body = herald.entity_body("candidate-42");
    let cand = herald.created("candidate-42");
    assert_eq!(cand["stage"], "search");
    assert_eq!(cand["status"], "ok");
    assert_eq!(cand["parent_ids"], json!(["block-001"]));
    assert_eq!(cand["metadata"]["score"], "0.97");
    assert_eq!(cand["process_name"], "MY_INST/ingest");
    assert_eq!(cand["service_name"], "my-pipeline");
    assert_eq!(body["events"], json!([]));
    assert_eq!(body["operations"], json!([]));
    let ops = herald.operations("candidate-42");
    assert_eq!(ops.iter().map(|o| s(&o["operation"])).collect::<Vec<_>>(), ["creation"]);
    assert_eq!(ops[0]["trace_id"], cand["trace_id"]);

    // event-7 was never created: the operation makes a placeholder carrying the operation.
    let event = herald.entity_body("event-7");
    assert_eq!(event["entity"]["placeholder"], true);
    assert_eq!(event["entity"]["trace_id"], Value::Null);
    let ops = herald.operations("event-7");
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0]["operation"], "archive");
    assert_eq!(ops[0]["metadata"]["path"], "/data/event-7.h5");
    assert!(is_hex(&ops[0]["trace_id"], 32) && ops[0]["trace_id"] != cand["trace_id"]);
    assert_eq!(event["operations"][0]["status"], "ok");

    // block-001 was never created: the parent is recorded, the edge waits for it.
    assert_eq!(herald.status_of("block-001"), 404);
    let graph = herald.graph("candidate-42");
    assert_eq!(graph["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(graph["edges"], json!([]));
}

#[test]
fn logs_inside_a_step_carry_the_entity() {
    let herald = Herald::start();
    let tel = tel(&herald);
    with_logs(&tel, || {
        {
            let token = tel.create("search", "candidate-42").parents(["block-001"]).start();
            tracing::info!("searching {}", "candidate-42");
            token.set_attribute("score", 0.97);
        }
        {
            let _op = tel.operate("archive", "candidate-42").start();
            tracing::info!("archiving");
        }
        tracing::info!("outside any block");
    });
    tel.flush().unwrap();
    let cand = herald.created("candidate-42");
    let archive = herald.operations("candidate-42")[1].clone();
    let rows = log_rows(&herald, "candidate-42");
    assert_eq!(rows.keys().collect::<Vec<_>>(), ["archiving", "searching candidate-42"]);
    let searching = &rows["searching candidate-42"];
    assert_eq!(searching["entity_id"], "candidate-42");
    assert_eq!(searching["trace_id"], cand["trace_id"]);
    assert_eq!(searching["span_id"], cand["span_id"]);
    assert_eq!(searching["severity"], "INFO");
    assert_eq!(searching["service_name"], "my-pipeline");
    let attrs = &searching["attributes"];
    assert_eq!(attrs["helix_entity_id"], "candidate-42");
    assert_eq!(attrs["otel_trace_id"], cand["trace_id"]);
    assert_eq!(attrs["helix_instrument_id"], "MY_INST");
    assert_eq!(attrs["helix_process_name"], "MY_INST/ingest");
    let source = s(&attrs["helix_source"]);
    assert!(
        source.starts_with("crates/helixobs/tests/guide.rs#L") || source.starts_with("tests/guide.rs#L"),
        "{source}"
    );
    assert_eq!(rows["archiving"]["trace_id"], archive["trace_id"]);
    assert_eq!(rows["archiving"]["attributes"]["helix_entity_id"], "candidate-42");
}

#[test]
fn explicit_api_examples() {
    let herald = Herald::start();
    let tel = tel(&herald);
    let token = tel.create("search", "candidate-42").parents(["block-001"]).start();
    let outcome: Result<SearchResult, String> = Ok(run_search());
    match outcome {
        Ok(result) => token.complete_with([("score", result.score)]),
        Err(e) => token.error([("message", e)]),
    }
    let token = tel.operate("archive", "event-7").start();
    token.complete_with([("path", "/data/event-7.h5")]);
    tel.flush().unwrap();

    let cand = herald.created("candidate-42");
    assert_eq!(cand["status"], "ok");
    assert_eq!(cand["parent_ids"], json!(["block-001"]));
    assert_eq!(cand["metadata"]["score"], "0.97");
    let ops = herald.operations("event-7");
    assert_eq!(ops.len(), 1);
    assert_eq!((&ops[0]["operation"], &ops[0]["metadata"]["path"]), (&json!("archive"), &json!("/data/event-7.h5")));
}

#[test]
fn explicit_api_error_path() {
    let herald = Herald::start();
    let tel = tel(&herald);
    let token = tel.create("search", "candidate-42").parents(["block-001"]).start();
    let outcome: Result<SearchResult, String> = Err("search timed out".to_owned());
    match outcome {
        Ok(result) => token.complete_with([("score", result.score)]),
        Err(e) => token.error([("message", e)]),
    }
    tel.flush().unwrap();
    let cand = herald.created("candidate-42");
    assert_eq!(cand["status"], "error");
    assert!(cand["metadata"].get("score").is_none());
    let events = herald.events("candidate-42");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event_name"], "helix.error");
    assert_eq!(events[0]["metadata"], json!({"message": "search timed out"}));
    assert_eq!(events[0]["trace_id"], cand["trace_id"]);
    let failed = herald.walk("/api/v1/entities?instrument=MY_INST&status=error", "entities");
    assert_eq!(failed.iter().map(|e| s(&e["id"])).collect::<Vec<_>>(), ["candidate-42"]);
    assert_eq!(herald.graph("candidate-42")["nodes"][0]["has_error"], true);
}

#[test]
fn a_panic_through_a_guard_marks_the_entity() {
    let herald = Herald::start();
    let tel = tel(&herald);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _token = tel.create("search", "candidate-42").start();
        panic!("bad block");
    }));
    assert!(caught.is_err());
    // The next step on this thread is not under the failed one.
    {
        let _next = tel.create("ingest", "block-002").start();
    }
    tel.flush().unwrap();
    let cand = herald.created("candidate-42");
    assert_eq!(cand["status"], "error");
    let events = herald.events("candidate-42");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event_name"], "helix.error");
    assert_eq!(events[0]["metadata"], json!({"message": "panic", "exception.message": "bad block"}));
    let next = herald.created("block-002");
    assert_ne!(next["trace_id"], cand["trace_id"]);
}

#[test]
fn linear_chain() {
    let herald = Herald::start();
    let tel = tel(&herald);
    {
        let _block = tel.create("ingest", "block-001").start();
    }
    {
        let _cand = tel.create("search", "candidate-42").parents(["block-001"]).start();
    }
    tel.flush().unwrap();

    let (block, cand) = (herald.created("block-001"), herald.created("candidate-42"));
    assert_eq!(block["parent_ids"], json!([]));
    assert_eq!(cand["parent_ids"], json!(["block-001"]));
    assert_ne!(block["trace_id"], cand["trace_id"]);
    assert_eq!(herald.entity_body("block-001")["entity"]["children_count"], 1);
    let graph = herald.graph("candidate-42");
    let nodes: Vec<&str> = graph["nodes"].as_array().unwrap().iter().map(|n| s(&n["id"])).collect();
    assert_eq!(nodes, ["candidate-42", "block-001"]);
    assert_eq!(graph["edges"], json!([{"source": "block-001", "target": "candidate-42"}]));
    let down = herald.lineage("block-001", "descendants");
    let nodes: Vec<(&str, i64)> =
        down["nodes"].as_array().unwrap().iter().map(|n| (s(&n["id"]), n["depth"].as_i64().unwrap())).collect();
    assert_eq!(nodes, [("block-001", 0), ("candidate-42", 1)]);
    assert_eq!(down["partial"], false);
    let up = herald.lineage("candidate-42", "ancestors");
    let nodes: Vec<(&str, &str)> =
        up["nodes"].as_array().unwrap().iter().map(|n| (s(&n["id"]), s(&n["stage"]))).collect();
    assert_eq!(nodes, [("candidate-42", "search"), ("block-001", "ingest")]);

    // In the same process the client linked the parent itself; the herald added no second link.
    let spans = herald.trace(s(&cand["trace_id"]))["spans"].clone();
    let links = spans[0]["links"].as_array().unwrap();
    assert_eq!(links.len(), 1, "{spans}");
    assert_eq!((&links[0]["trace_id"], &links[0]["span_id"]), (&block["trace_id"], &block["span_id"]));
}

#[test]
fn fan_in() {
    let herald = Herald::start();
    let tel = tel(&herald);
    // Many partial results → one aggregated output
    let partial_ids = ["result-001", "result-002", "result-003"];
    {
        let _event = tel.create("aggregate", "event-7").parents(partial_ids).start();
    }
    tel.flush().unwrap();
    assert_eq!(herald.created("event-7")["parent_ids"], json!(partial_ids));
    assert_eq!(herald.graph("event-7")["edges"], json!([])); // the partials are not known yet

    // The partials arrive afterwards (in another order): the edges join the DAG.
    for id in partial_ids.iter().rev() {
        let _partial = tel.create("partial", *id).start();
    }
    tel.flush().unwrap();
    let graph = herald.graph("event-7");
    let expected: Vec<(String, String)> = partial_ids.iter().map(|p| (p.to_string(), "event-7".to_owned())).collect();
    assert_eq!(edges(&graph), expected);
    for id in partial_ids {
        assert_eq!(edges(&herald.lineage(id, "descendants")), [(id.to_owned(), "event-7".to_owned())]);
    }
}

#[test]
fn fan_in_keeps_caller_order() {
    let herald = Herald::start();
    let tel = tel(&herald);
    for id in ["result-001", "result-002", "result-003"] {
        let _partial = tel.create("partial", id).start();
    }
    {
        let _event = tel
            .create("aggregate", "event-7")
            .parents(["result-003", "result-001", "result-002", "result-001"])
            .start();
    }
    tel.flush().unwrap();
    let event = herald.created("event-7");
    assert_eq!(event["parent_ids"], json!(["result-003", "result-001", "result-002"]));
    // Three in-process parents: three client links, none duplicated.
    let spans = herald.trace(s(&event["trace_id"]))["spans"].clone();
    assert_eq!(spans[0]["links"].as_array().unwrap().len(), 3, "{spans}");
}

/// `cross_process`: this test binary is re-run as process A and as process B (two separate
/// processes, each building its own instrument), in both orders.
#[test]
fn cross_process() {
    if let Ok(role) = std::env::var("HELIXOBS_TEST_ROLE") {
        let endpoint = std::env::var("HELIXOBS_TEST_ENDPOINT").unwrap();
        let service = if role == "A" { "process-a" } else { "process-b" };
        let tel = helixobs::Instrument::builder(service).instrument_id("MY_INST").endpoint(endpoint).build().unwrap();
        if role == "A" {
            // In process A:
            let _block = tel.create("ingest", "block-001").start();
        } else {
            // In process B (different host):
            let _cand = tel.create("search", "candidate-42").parents(["block-001"]).start();
        }
        tel.shutdown().unwrap();
        return;
    }
    for order in [["A", "B"], ["B", "A"]] {
        let herald = Herald::start();
        for role in order {
            // Its output is not ours: the suite's summary must count this test once.
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "cross_process", "--test-threads=1", "-q"])
                .env("HELIXOBS_TEST_ROLE", role)
                .env("HELIXOBS_TEST_ENDPOINT", herald.endpoint())
                .output()
                .unwrap();
            assert!(out.status.success(), "process {role} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let (block, cand) = (herald.created("block-001"), herald.created("candidate-42"));
        assert_eq!(block["service_name"], "process-a");
        assert_eq!(cand["service_name"], "process-b");
        assert_eq!(cand["parent_ids"], json!(["block-001"]));
        assert_ne!(block["trace_id"], cand["trace_id"]);
        let graph = herald.graph("candidate-42");
        assert_eq!(graph["edges"], json!([{"source": "block-001", "target": "candidate-42"}]), "{order:?}");
        assert_eq!(edges(&herald.lineage("block-001", "descendants")), [("block-001".into(), "candidate-42".into())]);
        if order == ["A", "B"] {
            // The herald resolved the parent from its TraceStore: one link, to block-001's span.
            let spans = herald.trace(s(&cand["trace_id"]))["spans"].clone();
            let links = spans[0]["links"].as_array().unwrap();
            assert_eq!(links.len(), 1, "{spans}");
            assert_eq!(links[0]["span_id"], block["span_id"]);
        }
    }
}

#[test]
fn domain_events() {
    let herald = Herald::start();
    let tel = tel(&herald);
    {
        let token = tel.create("classify", "event-7").parents(["candidate-42"]).start();
        let label = "FRB";
        token.add_event("classified", [("label", label), ("confidence", "0.97")]);
    }
    tel.flush().unwrap();
    assert_eq!(herald.created("event-7")["parent_ids"], json!(["candidate-42"]));
    // Only helix.event.* names are entity events; "classified" stays on the span.
    assert_eq!(herald.events("event-7"), Vec::<Value>::new());
}

#[test]
fn helix_events_are_stored_with_their_own_time() {
    let herald = Herald::start();
    let tel = tel(&herald);
    {
        let token = tel.create("classify", "event-7").parents(["candidate-42"]).start();
        token.add_event(
            "helix.event.classified",
            [
                ("label", helixobs::IntoValue::into_value("FRB")),
                ("confidence", "0.97".into()),
                ("n_beams", 3i64.into()),
            ],
        );
        token.add_event("helix.event.classified", [("label", "RFI")]);
    }
    tel.flush().unwrap();
    let event = herald.created("event-7");
    let events = herald.events("event-7");
    let got: Vec<(&str, &Value)> = events.iter().map(|e| (s(&e["event_name"]), &e["metadata"])).collect();
    assert_eq!(
        got,
        [
            ("helix.event.classified", &json!({"label": "FRB", "confidence": "0.97", "n_beams": "3"})),
            ("helix.event.classified", &json!({"label": "RFI"})),
        ]
    );
    assert!(events.iter().all(|e| e["trace_id"] == event["trace_id"] && e["span_id"] == event["span_id"]));
    let t = |v: &Value| v.as_i64().unwrap();
    assert!(t(&event["timestamp_ns"]) <= t(&events[0]["timestamp_ns"]));
    assert!(t(&events[0]["timestamp_ns"]) <= t(&events[1]["timestamp_ns"]));
    assert!(t(&events[1]["timestamp_ns"]) <= t(&event["end_ns"]));
    assert_eq!(event["status"], "ok");
}

#[test]
fn child_spans() {
    let herald = Herald::start();
    let tel = tel(&herald);
    with_logs(&tel, || {
        let _block = tel.create("process", "block-001").start();
        tracing::info!("processing");
        {
            let filter = tel.child_span("filter");
            filter.set_attribute("filter.type", "bandpass");
            tracing::info!("filtering");
        }
        {
            let _transform = tel.child_span("transform");
        }
    });
    tel.flush().unwrap();
    let block = herald.created("block-001");
    assert_eq!(block["stage"], "process");
    assert_eq!(herald.entity_ids(), ["block-001"]); // no entity rows for the child spans
    assert_eq!(herald.status_of("filter"), 404);
    assert_eq!(herald.status_of("transform"), 404);
    assert_eq!(herald.operations("block-001").len(), 1);
    assert!(block["metadata"].get("filter.type").is_none());

    // In the entity's trace, both children under the creation span.
    let trace = herald.trace(s(&block["trace_id"]));
    let spans = trace["spans"].as_array().unwrap();
    let by_name = |n: &str| spans.iter().find(|x| x["name"] == n).unwrap_or_else(|| panic!("no span {n}: {trace}"));
    for child in ["filter", "transform"] {
        assert_eq!(by_name(child)["parent_span_id"], block["span_id"], "{child}");
        assert_eq!(by_name(child)["attributes"]["helix.log.entity_id"], "block-001");
        assert_eq!(by_name(child)["role"], "span");
    }
    assert_eq!(by_name("filter")["attributes"]["filter.type"], "bandpass");

    let rows = log_rows(&herald, "block-001");
    assert_eq!(rows.keys().collect::<Vec<_>>(), ["filtering", "processing"]);
    let filtering = &rows["filtering"];
    assert_eq!(filtering["trace_id"], block["trace_id"]);
    assert_eq!(filtering["span_id"], by_name("filter")["span_id"]);
    assert_eq!(filtering["attributes"]["helix_entity_id"], "block-001");
}

/// The guide's "entity discovered mid-execution" example, one run of it.
async fn stage_deletion(tel: &helixobs::Instrument, queue_full: bool, dataset: Option<&str>) {
    let op = tel.operate_deferred("stage-deletion").start();
    op.scope(async {
        // queue check and DB fetch are inside this trace
        if queue_full {
            tracing::info!("queue full, skipping");
            return; // trace closes without entity_id → passthrough
        }
        tokio::task::yield_now().await; // fetch_next_dataset()
        let Some(name) = dataset else {
            return; // same — no entity linked
        };
        op.set_entity_id(name); // all subsequent logs carry this entity's trace
        let replicas = ["r1", "r2", "r3"];
        tokio::task::yield_now().await; // stage_work(replicas)
        tracing::info!("staged {} replicas", replicas.len());
        op.add_event("helix.event.deletion-staged", [("num_replicas", replicas.len().to_string())]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_entity_id() {
    let herald = Herald::start();
    let tel = tel(&herald);
    let subscriber = tracing_subscriber::registry().with(tel.tracing_layer());
    let _default = tracing::subscriber::set_default(subscriber);
    stage_deletion(&tel, true, Some("dataset-x")).await;
    stage_deletion(&tel, false, None).await;
    stage_deletion(&tel, false, Some("dataset-x")).await;
    tel.flush().unwrap();

    assert_eq!(herald.entity_ids(), ["dataset-x"]); // the two runs without an ID left no rows
    let body = herald.entity_body("dataset-x");
    assert_eq!(body["entity"]["placeholder"], true);
    let ops = herald.operations("dataset-x");
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0]["operation"], "stage-deletion");
    let events = herald.events("dataset-x");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event_name"], "helix.event.deletion-staged");
    assert_eq!(events[0]["metadata"], json!({"num_replicas": "3"}));
    assert_eq!(events[0]["trace_id"], ops[0]["trace_id"]);
    let rows = log_rows(&herald, "dataset-x");
    assert_eq!(rows.keys().collect::<Vec<_>>(), ["staged 3 replicas"]);
    assert_eq!(rows["staged 3 replicas"]["trace_id"], ops[0]["trace_id"]);
    assert_eq!(rows["staged 3 replicas"]["attributes"]["helix_entity_id"], "dataset-x");
    assert_eq!(herald.get("/api/v1/stages?instrument=MY_INST"), json!([]));
}

#[test]
fn deferred_entity_id_logs_before_and_after() {
    let herald = Herald::start();
    let tel = tel(&herald);
    with_logs(&tel, || {
        {
            let op = tel.operate_deferred("stage-deletion").start();
            tracing::info!("checking the queue");
            op.set_entity_id("dataset-x");
            tracing::info!("staging dataset-x");
            let _work = tel.child_span("stage-work");
            tracing::info!("staging replicas");
        }
        let _other = tel.operate_deferred("stage-deletion").start();
        tracing::info!("another run, nothing found");
    });
    tel.flush().unwrap();
    let ops = herald.operations("dataset-x");
    assert_eq!(ops.len(), 1);
    let rows = herald.logs("dataset-x");
    let bodies: Vec<&str> = rows.iter().map(|r| s(&r["body"])).collect();
    assert_eq!(bodies, ["checking the queue", "staging dataset-x", "staging replicas"]);
    assert!(rows.iter().all(|r| r["trace_id"] == ops[0]["trace_id"]));
    assert_eq!(rows[0]["attributes"]["helix_entity_id"], ""); // the ID was not known yet
    assert_eq!(rows[0]["attributes"]["otel_trace_id"], ops[0]["trace_id"]);
    for row in &rows[1..] {
        assert_eq!(row["attributes"]["helix_entity_id"], "dataset-x");
        assert_eq!(row["entity_id"], "dataset-x");
    }
}

#[test]
fn plain_trace() {
    let herald = Herald::start();
    let tel = tel(&herald);
    let trace_id = with_logs(&tel, || {
        let request = tel.trace_with("process-request", [("endpoint", "/api/status")]);
        {
            let _auth = tel.child_span("auth-check");
        }
        {
            let _db = tel.child_span("db-query");
        }
        tracing::info!("request complete"); // otel_trace_id present → filterable
        request.span_context().trace_id().to_string()
    });
    tel.flush().unwrap();
    assert_eq!(herald.entity_ids(), Vec::<String>::new());
    for name in ["process-request", "auth-check", "db-query"] {
        assert_eq!(herald.status_of(name), 404);
    }
    assert_eq!(herald.get("/api/v1/stages?instrument=MY_INST"), json!([]));
    let trace = herald.trace(&trace_id);
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 3, "{trace}");
    let root = spans.iter().find(|x| x["name"] == "process-request").unwrap();
    assert_eq!(root["attributes"]["endpoint"], "/api/status");
    for x in spans.iter().filter(|x| x["name"] != "process-request") {
        assert_eq!(x["parent_span_id"], root["span_id"]);
        assert!(x["attributes"].get("helix.log.entity_id").is_none());
    }
}

#[test]
fn typed_metadata_is_rendered_as_wire_md_says() {
    let herald = Herald::start();
    let tel = tel(&herald);
    {
        let token = tel.create("ingest", "block-001").start();
        token.set_attribute("n_channels", 16384);
        token.set_attribute("fraction", 0.000123);
        token.set_attribute("huge", 1.5e20);
        token.set_attribute("flagged", true);
        token.set_attribute("beams", vec![3i64, 7]);
        token.set_attribute("labels", ["a", "b"]);
        token.add_event(
            "helix.event.typed",
            [("n", helixobs::IntoValue::into_value(2)), ("ok", false.into()), ("snr", 12.5.into())],
        );
    }
    tel.flush().unwrap();
    let body = herald.entity_body("block-001");
    assert_eq!(
        body["entity"]["metadata"],
        json!({
            "helix.process.name": "MY_INST/ingest",
            "n_channels": "16384",
            "fraction": "0.000123",
            "huge": "150000000000000000000",
            "flagged": "true",
            "beams": "[3,7]",
            "labels": "[\"a\",\"b\"]",
        })
    );
    assert_eq!(body["events"][0]["metadata"], json!({"n": "2", "ok": "false", "snr": "12.5"}));
}

#[test]
fn operation_errors_mark_the_entity() {
    let herald = Herald::start();
    let tel = tel(&herald);
    {
        let _event = tel.create("cluster", "event-7").start();
    }
    tel.operate("archive", "event-7").start().error([("message", "nfs_timeout"), ("path", "/data/event-7.h5")]);
    {
        let op = tel.operate("replicate", "event-7").start();
        op.add_error([("message", helixobs::IntoValue::into_value("transfer_reset")), ("attempt", 1.into())]);
        op.set_attribute("attempts", 2);
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _op = tel.operate("convert", "event-7").start();
        panic!("disk full");
    }));
    tel.flush().unwrap();
    let body = herald.entity_body("event-7");
    assert_eq!(body["entity"]["status"], "error");
    let ops: std::collections::BTreeMap<&str, &Value> =
        body["operations"].as_array().unwrap().iter().map(|o| (s(&o["operation"]), o)).collect();
    let statuses: Vec<(&str, &str)> = ops.iter().map(|(k, o)| (*k, s(&o["status"]))).collect();
    assert_eq!(statuses, [("archive", "error"), ("convert", "error"), ("replicate", "error")]);
    assert_eq!(ops["replicate"]["metadata"]["attempts"], "2");
    let errors: Vec<(Value, Value)> =
        herald.events("event-7").iter().map(|e| (e["metadata"].clone(), e["trace_id"].clone())).collect();
    assert_eq!(
        errors,
        [
            (json!({"message": "nfs_timeout", "path": "/data/event-7.h5"}), ops["archive"]["trace_id"].clone()),
            (json!({"message": "transfer_reset", "attempt": "1"}), ops["replicate"]["trace_id"].clone()),
            (json!({"message": "panic", "exception.message": "disk full"}), ops["convert"]["trace_id"].clone()),
        ]
    );
}

#[test]
fn otlp_http_transport() {
    let herald = Herald::start();
    let tel = helixobs::Instrument::builder("my-pipeline")
        .instrument_id("MY_INST")
        .endpoint(format!("http://{}", herald.http))
        .protocol(helixobs::Protocol::HttpProtobuf)
        .process_name("MY_INST/ingest")
        .build()
        .unwrap();
    with_logs(&tel, || {
        let token = tel.create("search", "candidate-42").parents(["block-001"]).start();
        tracing::info!("over http");
        token.set_attribute("score", 0.97);
    });
    tel.shutdown().unwrap();
    let cand = herald.created("candidate-42");
    assert_eq!(cand["metadata"]["score"], "0.97");
    let rows = herald.logs("candidate-42");
    assert_eq!(rows.len(), 1);
    assert_eq!((&rows[0]["body"], &rows[0]["trace_id"]), (&json!("over http"), &cand["trace_id"]));
}

// --- attribute macros (the guide's decorator) ----------------------------------------------

#[helixobs::create(stage = "search", id = block_id, tel = tel)]
fn search_block(tel: &helixobs::Instrument, block_id: &str) -> f64 {
    let _ = (tel, block_id);
    run_search().score
}

#[helixobs::operate(operation = "daily-report", entity_id = "report-2026-05-20", tel = tel)]
fn generate_report(tel: &helixobs::Instrument) -> Result<u32, std::fmt::Error> {
    let _ = tel;
    Err(std::fmt::Error)
}

#[helixobs::create(stage = "search", id = format!("cand-{n}"), parents = ["b-1"], tel = tel)]
async fn search_async(tel: &helixobs::Instrument, n: u32) {
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let _child = tel.child_span("dedisperse");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribute_macros() {
    let herald = Herald::start();
    let tel = tel(&herald);
    assert_eq!(search_block(&tel, "candidate-42"), 0.97);
    search_block(&tel, "candidate-43"); // a fresh step (and entity) per call
    assert!(generate_report(&tel).is_err());
    search_async(&tel, 7).await;
    tel.flush().unwrap();

    for id in ["candidate-42", "candidate-43"] {
        assert_eq!(herald.created(id)["stage"], "search");
    }
    assert_ne!(herald.created("candidate-42")["trace_id"], herald.created("candidate-43")["trace_id"]);
    let report = herald.entity_body("report-2026-05-20");
    assert_eq!(report["entity"]["placeholder"], true);
    assert_eq!(report["entity"]["status"], "error");
    let events = herald.events("report-2026-05-20");
    assert_eq!(
        events[0]["metadata"],
        json!({"message": "Error", "exception.message": "an error occurred when formatting an argument"})
    );
    let cand = herald.created("cand-7");
    assert_eq!(cand["parent_ids"], json!(["b-1"]));
    // The span covers the awaited 50 ms, and the child made after the await is under it.
    assert!(cand["end_ns"].as_i64().unwrap() - cand["timestamp_ns"].as_i64().unwrap() >= 40_000_000);
    let trace = herald.trace(s(&cand["trace_id"]));
    let child = trace["spans"].as_array().unwrap().iter().find(|x| x["name"] == "dedisperse").unwrap().clone();
    assert_eq!(child["parent_span_id"], cand["span_id"]);
}
