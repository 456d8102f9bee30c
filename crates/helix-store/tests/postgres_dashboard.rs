//! docs/sql/dashboard-queries.sql — the queries existing Grafana dashboards run — executed
//! unchanged (only Grafana's template variables substituted, as Grafana does) against a
//! database seeded through the store, with the rows they must return.

mod postgres_support;

use helix_model::Status;
use helix_store::conformance::{creation, event, operation, INST, T0};
use helix_store::{Store, WriteBatch, WriteRecord};

const QUERIES: &str = include_str!("../../../docs/sql/dashboard-queries.sql");

/// `(name, sql)` of each query of the file.
fn queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for chunk in QUERIES.split("-- name: ").skip(1) {
        let (name, sql) = chunk.split_once('\n').expect("a name line then SQL");
        let sql = sql.trim().trim_end_matches(';').to_owned();
        out.push((name.trim().to_owned(), sql));
    }
    out
}

fn substitute(sql: &str, entity: &str) -> String {
    sql.replace("${entity_id}", entity).replace("${instrument_id}", INST)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_queries_run_unchanged_and_return_the_expected_rows() {
    let (store, guard) = postgres_support::fresh("dash").await;
    // raw → cal → cand → evt, plus an error on cand (by an operation) and one on raw.
    let raw = creation("raw", &[], 0);
    let mut cal = creation("cal", &["raw"], 10);
    cal.metadata.insert("gain".into(), "1.5".into());
    let cand = creation("cand", &["cal", "missing-parent"], 20);
    let evt = creation("evt", &["cand"], 30);
    let mut op = operation("cand", "classify", "classify-1", 40);
    let mut fail = event("cand", &op.trace_id, &op.span_id, "helix.error", 0, 45);
    fail.metadata.insert("message".into(), "bad dm".into());
    op.events = vec![fail];
    op.status = Status::Error;
    let op2 = operation("cand", "rescore", "rescore-1", 50);
    let mut raw_err = event("raw", &raw.trace_id, &raw.span_id, "helix.error", 0, 5);
    raw_err.metadata.insert("message".into(), "dropped packets".into());
    let mut raw = raw;
    raw.events = vec![raw_err];
    let records = [raw, cal, cand, evt]
        .into_iter()
        .map(WriteRecord::Created)
        .chain([WriteRecord::Operation(op), WriteRecord::Operation(op2)])
        .collect();
    store.write(&WriteBatch::of(records)).await.expect("seed");

    let client = postgres_support::raw_client(&guard.schema).await;
    let qs = queries();
    let names: Vec<&str> = qs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "entity_by_id",
            "entity_events",
            "entity_operations",
            "ancestors",
            "error_entities_by_instrument",
            "operations_per_name_by_instrument"
        ]
    );
    for (name, sql) in &qs {
        let entity = if name == "ancestors" { "evt" } else { "cand" };
        let rows = client
            .query(substitute(sql, entity).as_str(), &[])
            .await
            .unwrap_or_else(|e| panic!("{name} failed against our schema: {e}"));
        match name.as_str() {
            "entity_by_id" => {
                assert_eq!(rows.len(), 1);
                let r = &rows[0];
                assert_eq!(r.get::<_, String>("id"), "cand");
                assert_eq!(r.get::<_, String>("instrument_id"), INST);
                assert_eq!(r.get::<_, i64>("timestamp_ns"), T0 + 20);
                assert_eq!(r.get::<_, Vec<String>>("parent_ids"), ["cal", "missing-parent"]);
                assert!(r.get::<_, serde_json::Value>("metadata").is_object());
            }
            "entity_events" => {
                assert_eq!(rows.len(), 1);
                assert_eq!(rows[0].get::<_, String>("event_name"), "helix.error");
                assert_eq!(rows[0].get::<_, String>("message"), "bad dm");
                assert_eq!(rows[0].get::<_, i64>("timestamp_ns"), T0 + 45);
            }
            "entity_operations" => {
                let ops: Vec<String> = rows.iter().map(|r| r.get("operation")).collect();
                assert_eq!(ops, ["rescore", "classify"], "newest first");
                assert_eq!(rows[1].get::<_, i64>("duration_ns"), 9_000);
            }
            "ancestors" => {
                let got: Vec<(String, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
                let want: Vec<(String, i32)> = [("evt", 0), ("cand", 1), ("cal", 2), ("raw", 3)]
                    .iter()
                    .map(|(i, d)| (i.to_string(), *d))
                    .collect();
                assert_eq!(got, want);
            }
            "error_entities_by_instrument" => {
                let got: Vec<(String, i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(3))).collect();
                assert_eq!(
                    got,
                    [("cand".to_owned(), 1, "bad dm".to_owned()), ("raw".to_owned(), 1, "dropped packets".to_owned())]
                );
            }
            "operations_per_name_by_instrument" => {
                let got: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
                assert_eq!(got, [("classify".to_owned(), 1), ("rescore".to_owned(), 1)]);
            }
            other => panic!("no expectation for query {other}"),
        }
    }
}
