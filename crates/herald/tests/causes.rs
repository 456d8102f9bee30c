//! Root-cause hints against the real binary: a telescope-like run sent by the OpenTelemetry
//! SDK in which one calibration process corrupts 30 % of the blocks it touches, so that the
//! candidates searched from them fail; the hints for that error class rank the process first
//! and its corrupted outputs next, from `/api/v1/errors/{class}/causes` and `POST /api/v1/causes`.

mod support;

use opentelemetry::KeyValue;
use serde_json::{json, Value};
use support::*;

const BAD_PROCESS: &str = "TEL/calibrate/2";

/// 80 raw blocks; four calibration processes take turns; process 2 corrupts 30 % of its outputs
/// (every block whose turn number ends in 0, 3 or 6); each calibrated block gives 4 candidates,
/// which fail with "gain <n> out of range" when their block is corrupt. An unrelated error
/// class hits every 7th candidate. Returns the corrupted outputs.
async fn telescope(herald: &Herald) -> Vec<String> {
    let ingest = Pipeline::new(herald, Transport::Grpc, "ingest", "TEL");
    let calibrate = Pipeline::new(herald, Transport::Grpc, "calibrator", "TEL");
    let search = Pipeline::new(herald, Transport::HttpProtobuf, "searcher", "TEL");
    let mut corrupted = Vec::new();
    let mut n = 0;
    for b in 0..80 {
        let raw = format!("raw-{b:03}");
        ingest.create_with("raw", &raw, &[], |s| s.set_attribute(KeyValue::new("helix.process.name", "TEL/ingest/0")));
        let process = b % 4;
        let cal = format!("cal-{b:03}");
        let bad = process == 2 && matches!((b / 4) % 10, 0 | 3 | 6);
        calibrate.create_with("calibrate", &cal, &[&raw], |s| {
            s.set_attribute(KeyValue::new("helix.process.name", format!("TEL/calibrate/{process}")))
        });
        if bad {
            corrupted.push(cal.clone());
        }
        for c in 0..4 {
            n += 1;
            let cand = format!("cand-{b:03}-{c}");
            let unrelated = n % 7 == 0;
            search.create_with("search", &cand, &[&cal], |s| {
                s.set_attribute(KeyValue::new("helix.process.name", format!("TEL/search/{}", n % 3)));
                if bad {
                    s.add_event(
                        "helix.error",
                        vec![
                            KeyValue::new("message", format!("gain {} out of range", 1000 + n)),
                            KeyValue::new("stage", "search"),
                        ],
                    );
                } else if unrelated {
                    s.add_event(
                        "helix.error",
                        vec![
                            KeyValue::new("message", format!("timeout after {n} s")),
                            KeyValue::new("stage", "search"),
                        ],
                    );
                }
            });
        }
    }
    ingest.flush().await;
    calibrate.flush().await;
    search.flush().await;
    corrupted
}

fn top(body: &Value, n: usize) -> Vec<(String, String)> {
    body["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .take(n)
        .map(|c| (c["kind"].as_str().unwrap().to_owned(), c["value"].as_str().unwrap().to_owned()))
        .collect()
}

fn check_ranking(body: &Value, corrupted: &[String]) {
    let causes = top(body, 1 + corrupted.len());
    assert_eq!(causes[0], ("process".to_owned(), BAD_PROCESS.to_owned()), "{body:#}");
    let first = &body["causes"][0];
    assert_eq!(first["failing_share"], 1.0, "every failing candidate is downstream of the process");
    assert!(first["baseline_share"].as_f64().unwrap() < 0.3);
    // Next: the corrupted outputs of that process (each upstream of 4 failures, of no success),
    // before any raw block that feeds them (same counts, one level farther).
    let outputs: Vec<&str> = causes[1..]
        .iter()
        .map(|(kind, v)| {
            assert_eq!(kind, "entity", "{body:#}");
            v.as_str()
        })
        .collect();
    let mut want: Vec<&str> = corrupted.iter().map(String::as_str).collect();
    let mut got = outputs.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want, "{body:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_corrupting_30_percent_of_its_blocks_is_ranked_first_with_its_outputs() {
    let herald = Herald::start();
    let corrupted = telescope(&herald).await;
    assert_eq!(corrupted.len(), 6);
    let errors = herald.get_ok("/api/v1/errors?instrument=TEL").await;
    let class = errors["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["class"].as_str().unwrap().to_owned())
        .find(|c| c.contains("out of range"))
        .expect("the gain error class");
    assert_eq!(class, "search: gain <n> out of range");
    let body = herald.get_ok(&format!("/api/v1/errors/{}/causes?instrument=TEL", enc(&class))).await;
    assert_eq!(body["failing_total"], 24);
    assert_eq!(body["failing_compared"], 24);
    assert!(body["baseline_compared"].as_u64().unwrap() > 200, "{body}");
    check_ranking(&body, &corrupted);

    // The other class points at no process strongly: its failures are spread evenly.
    let unrelated =
        herald.get_ok(&format!("/api/v1/errors/{}/causes?instrument=TEL", enc("search: timeout after <n> s"))).await;
    for cause in unrelated["causes"].as_array().unwrap() {
        if cause["value"] == BAD_PROCESS {
            assert!(cause["excess"].as_f64().unwrap() < 0.1, "{unrelated:#}");
        }
    }

    // The same question with the failing entities named explicitly.
    let failing: Vec<String> =
        corrupted.iter().flat_map(|c| (0..4).map(move |i| format!("cand-{}-{i}", &c[4..]))).collect();
    let response = reqwest::Client::new()
        .post(herald.api_url("/api/v1/causes"))
        .json(&json!({"failing": failing, "limit": 50}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let explicit: Value = response.json().await.unwrap();
    assert_eq!(explicit["failing_total"], 24);
    check_ranking(&explicit, &corrupted);

    // What is wrong is said.
    let (status, body) =
        herald.get(&format!("/api/v1/errors/{}/causes?instrument=TEL", enc("search: no such class"))).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(herald.get("/api/v1/errors/x/causes").await.0, 400, "instrument is required");
    let response = reqwest::Client::new()
        .post(herald.api_url("/api/v1/causes"))
        .json(&json!({"failing": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}
