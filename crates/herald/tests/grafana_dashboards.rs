//! The Grafana dashboards of `deploy/grafana/` against a real herald: every panel's SQL runs
//! on the PostgreSQL schema the herald creates and finds the data a small workload wrote, and
//! every metric a PromQL expression names is one the herald exposes on `/metrics`.

mod postgres_support;
mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use helix_model::builders::{kv, pipeline_resource, string, traces, SpanBuilder};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use postgres_support::*;
use serde_json::Value;
use support::{eventually, Herald};

const INSTRUMENT: &str = "CHIME";

fn dashboards() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, json)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 3, "the health, entities and error dashboards");
    out
}

/// Every (dashboard, panel title, target) of the dashboards.
fn targets(dashboards: &[(String, Value)]) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (name, d) in dashboards {
        for panel in d["panels"].as_array().expect("panels") {
            let title = panel["title"].as_str().expect("title").to_owned();
            let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("{name}: {title} has targets"));
            assert!(!targets.is_empty(), "{name}: {title} has a query");
            for t in targets {
                out.push((name.clone(), title.clone(), t.clone()));
            }
        }
    }
    out
}

/// A panel's SQL as Grafana's PostgreSQL data source would send it for the whole time range,
/// instrument `CHIME`. Unknown macros are left in, so the check below names them.
fn expand(sql: &str) -> String {
    let mut s = sql.replace("'$instrument'", &format!("'{INSTRUMENT}'"));
    while let Some(at) = s.find("$__unixEpochNanoFilter(") {
        let open = at + "$__unixEpochNanoFilter(".len();
        let close = open + s[open..].find(')').expect("macro closes");
        let column = s[open..close].to_owned();
        s.replace_range(at..=close, &format!("{column} BETWEEN 0 AND 9000000000000000000"));
    }
    while let Some(at) = s.find("$__unixEpochGroupAlias(") {
        let open = at + "$__unixEpochGroupAlias(".len();
        let close = open + s[open..].find("')").expect("macro closes") + 1;
        let (expr, interval) = s[open..close].rsplit_once(',').expect("expression, interval");
        let interval = interval.trim().trim_matches('\'');
        let seconds: i64 = match interval.split_at(interval.len() - 1) {
            (n, "s") => n.parse().unwrap(),
            (n, "m") => n.parse::<i64>().unwrap() * 60,
            (n, "h") => n.parse::<i64>().unwrap() * 3600,
            _ => panic!("interval {interval}"),
        };
        s.replace_range(at..=close, &format!("floor(({expr})/{seconds})*{seconds} AS \"time\""));
    }
    s
}

/// Metric names in a PromQL expression (identifiers that are not functions, keywords or labels).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < bytes.len() && ((bytes[i] as char).is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &expr[start..i];
            if word.starts_with("helix_") || word.starts_with("process_") {
                names.insert(word.to_owned());
            }
        } else {
            i += 1;
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_runs_on_the_schema_and_every_metric_exists() {
    let dashboards = dashboards();
    let mut uids = BTreeSet::new();
    for (name, d) in &dashboards {
        assert!(uids.insert(d["uid"].as_str().expect("uid").to_owned()), "{name}: uid is unique");
        // Every data source a panel names is a variable of the dashboard, so it imports anywhere.
        let variables: BTreeSet<String> = d["templating"]["list"]
            .as_array()
            .expect("variables")
            .iter()
            .map(|v| format!("${{{}}}", v["name"].as_str().unwrap()))
            .collect();
        for panel in d["panels"].as_array().unwrap() {
            let uid = panel["datasource"]["uid"].as_str().expect("panel data source");
            assert!(variables.contains(uid), "{name}: {} uses {uid}, a dashboard variable", panel["title"]);
        }
    }
    assert!(uids.contains("helix-error-entities"), "the uid GRAFANA_URL/d/helix-error-entities links name");

    // A workload on a fresh database: creations with parents, an operation, errors.
    let db = TestDb::create(&pg_url(), "grafana").await;
    // A canary every second, so the platform-check family has samples.
    let herald = Herald::on_database(&db.url, &[("PLATFORM_CHECK_INTERVAL_SECS", "1")]);
    let spans = vec![
        SpanBuilder::creation("ingest", "blk-1", 1).build(),
        SpanBuilder::creation("search", "cand-1", 2).parents("blk-1,blk-missing").build(),
        SpanBuilder::creation("classify", "evt-1", 3)
            .parents("cand-1")
            .event("helix.error", 3, vec![kv("message", string("disk full on node 3"))])
            .error_status()
            .build(),
        SpanBuilder::operation("archive", "evt-1", 4).build(),
    ];
    let mut client = TraceServiceClient::connect(herald.grpc_url()).await.expect("connect");
    client.export(traces(pipeline_resource("pipeline", INSTRUMENT), spans)).await.expect("export acknowledged");
    eventually(Duration::from_secs(20), async || {
        (db.count("SELECT count(*) FROM entity_operations").await == 1).then_some(())
    })
    .await;
    // A refused export (not protobuf), so the refusal family has a sample.
    let refused = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", herald.http))
        .header("content-type", "application/x-protobuf")
        .body(b"not protobuf".to_vec())
        .send()
        .await
        .expect("export answered");
    assert_eq!(refused.status().as_u16(), 400);
    // API traffic, so the API families have samples.
    herald.get_ok("/api/v1/entity/evt-1").await;
    herald.get_ok(&format!("/api/v1/stages?instrument={INSTRUMENT}")).await;

    let targets = targets(&dashboards);
    let client = db.client().await;
    let exposition = eventually(Duration::from_secs(20), async || {
        let text = reqwest::get(format!("http://{}/metrics", herald.metrics)).await.ok()?.text().await.ok()?;
        text.contains("helix_platform_check_presence{").then_some(text)
    })
    .await;
    let exposed: BTreeSet<&str> =
        exposition.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    let (mut sql_count, mut promql_count) = (0, 0);
    for (name, title, target) in &targets {
        if let Some(sql) = target["rawSql"].as_str() {
            let query = expand(sql);
            assert!(!query.contains('$'), "{name}: {title}: a macro or variable the test does not expand:\n{query}");
            let rows =
                client.query(query.as_str(), &[]).await.unwrap_or_else(|e| panic!("{name}: {title}: {e}\n{query}"));
            assert!(!rows.is_empty(), "{name}: {title}: no rows for the workload\n{query}");
            sql_count += 1;
        } else if let Some(expr) = target["expr"].as_str() {
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{name}: {title}: `{expr}` names a herald metric");
            for metric in names {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| metric.strip_suffix(suffix).filter(|base| exposed.contains(base)))
                    .unwrap_or(&metric);
                assert!(exposed.contains(family), "{name}: {title}: `{metric}` is not on /metrics");
            }
            promql_count += 1;
        } else {
            panic!("{name}: {title}: a target with neither rawSql nor expr");
        }
    }
    assert!(sql_count >= 8 && promql_count >= 16, "{sql_count} SQL and {promql_count} PromQL targets checked");
}
