//! The README's first example (examples/quickstart.rs), compiled into this test unchanged and
//! run against a herald listening where the example says: localhost:4317.

mod support;

mod quickstart {
    include!("../examples/quickstart.rs");

    pub fn run() -> Result<(), Box<dyn std::error::Error>> {
        main()
    }
}

use serde_json::json;
use support::{s, Herald};

#[test]
fn the_readme_quickstart_runs_against_a_herald() {
    let herald = Herald::start_with(&["--otlp-grpc-addr", "127.0.0.1:4317"], &[]);
    quickstart::run().expect("the quickstart program");

    let block = herald.created("block-001");
    assert_eq!(block["stage"], "ingest");
    assert_eq!(block["service_name"], "my-pipeline");
    assert_eq!(block["process_name"], "MY_INST/ingest");
    let cand = herald.created("candidate-42");
    assert_eq!(cand["parent_ids"], json!(["block-001"]));
    assert_eq!(cand["metadata"]["score"], "0.97");
    assert_eq!(support::edges(&herald.graph("candidate-42")), [("block-001".into(), "candidate-42".into())]);
    let events = herald.events("candidate-42");
    assert_eq!(events.len(), 1);
    assert_eq!(
        (s(&events[0]["event_name"]), &events[0]["metadata"]),
        ("helix.event.classified", &json!({"label": "FRB"}))
    );
    let trace = herald.trace(s(&cand["trace_id"]));
    let filter = trace["spans"].as_array().unwrap().iter().find(|x| x["name"] == "filter").expect("the filter span");
    assert_eq!(filter["parent_span_id"], cand["span_id"]);
    let ops = herald.operations("candidate-42");
    assert_eq!(ops.iter().map(|o| s(&o["operation"])).collect::<Vec<_>>(), ["creation", "archive"]);
    assert_eq!(ops[1]["metadata"]["path"], "/data/candidate-42.h5");
}
