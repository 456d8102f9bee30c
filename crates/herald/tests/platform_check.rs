//! The platform check (PLATFORM_CHECK_INTERVAL_SECS): the canary goes through the herald every
//! interval and is found in its store (presence 1, last success advancing), with auth on too;
//! with PostgreSQL stopped presence drops to 0 and `/readyz` says why; a loopback Tempo and
//! Loki that lack the canary, or have a service on one side only, show in the gauges and the
//! mismatch counter.

mod postgres_support;
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::Json;
use serde_json::{json, Value};
use support::*;

const CANARY: &str = "helixobs-platform-canary";

fn every_second(extra: &[(&str, &str)]) -> HeraldOptions {
    let mut env = vec![("PLATFORM_CHECK_INTERVAL_SECS".to_owned(), "1".to_owned())];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    HeraldOptions { env, ..Default::default() }
}

async fn presence(herald: &Herald, source: &str, kind: &str) -> f64 {
    herald.metric("helix_platform_check_presence", &[("signal_source", source), ("signal_type", kind)]).await
}

async fn last_success(herald: &Herald) -> f64 {
    herald.metric("helix_platform_check_last_success_timestamp_seconds", &[]).await
}

/// Wait for a first successful check; returns its last-success time.
async fn first_success(herald: &Herald) -> f64 {
    eventually(Duration::from_secs(20), async || {
        let t = last_success(herald).await;
        (t > 0.0).then_some(t)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_is_found_every_interval_and_stays_out_of_the_instruments_data() {
    let herald = Herald::start_with(every_second(&[]));
    let first = first_success(&herald).await;
    assert_eq!(presence(&herald, "canary", "herald_traces").await, 1.0);
    assert_eq!(presence(&herald, "canary", "herald_logs").await, 1.0);
    // The next checks succeed too: the time advances.
    let later = eventually(Duration::from_secs(20), async || {
        let t = last_success(&herald).await;
        (t > first).then_some(t)
    })
    .await;
    assert!(later - first >= 0.5, "one interval apart: {first} → {later}");
    assert!(herald.metric("helix_platform_check_result_count", &[("signal_type", "herald_traces")]).await >= 1.0);

    let ready = herald.get_ok("/readyz").await;
    let check = &ready["platform_check"];
    assert_eq!(check["enabled"], true, "{ready}");
    assert_eq!(check["interval_seconds"], 1);
    assert_eq!(check["last"]["ok"], true, "{ready}");
    assert!(check["last"]["last_success"].as_f64().unwrap() >= first);

    // Its spans and logs are there for whoever looks for them …
    let traces = herald.get_ok(&format!("/api/v1/traces?service={CANARY}")).await;
    assert!(!traces["traces"].as_array().unwrap().is_empty(), "{traces}");
    let logs = herald.get_ok(&format!("/api/v1/logs?service={CANARY}")).await;
    assert_eq!(logs["logs"][0]["body"], "platform canary heartbeat", "{logs}");
    // … but it is no instrument's data: no entity, no instrument, no stage.
    assert_eq!(herald.get_ok("/api/v1/instruments").await, json!([]));
    assert_eq!(herald.get_ok("/api/v1/entities").await["entities"], json!([]));
    assert_eq!(herald.get_ok("/api/v1/stages?instrument=HELIXOBS-PLATFORM").await, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_gets_through_with_auth_on() {
    let herald = Herald::start_with(every_second(&[("JWT_SECRET", "platform-check-key-0123456789abcdef0123456789")]));
    first_success(&herald).await;
    assert_eq!(presence(&herald, "canary", "herald_logs").await, 1.0);
    // Auth is on: an untokened export is still refused.
    let mut client = raw_client(&herald).await;
    let refused = client
        .export(helix_model::builders::traces(
            helix_model::builders::pipeline_resource("svc", "X"),
            vec![helix_model::builders::SpanBuilder::creation("s", "e", 1).build()],
        ))
        .await;
    assert_eq!(refused.expect_err("no token").code(), tonic::Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_interval_turns_the_check_off() {
    let herald = Herald::start_with(HeraldOptions {
        env: vec![("PLATFORM_CHECK_INTERVAL_SECS".into(), "0".into())],
        ..Default::default()
    });
    let ready = herald.get_ok("/readyz").await;
    assert_eq!(ready["platform_check"], json!({ "enabled": false }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_sets_presence_to_zero_and_readyz_says_why() {
    use postgres_support::{Cluster, TestDb};
    let cluster = Cluster::start();
    let db = TestDb::create(&cluster.url("postgres"), "canary").await;
    let mut options = every_second(&[]);
    options.db_url = Some(db.url.clone());
    let herald = Herald::start_with(options);
    first_success(&herald).await;

    cluster.pg_ctl_stop();
    eventually(Duration::from_secs(60), async || {
        (presence(&herald, "canary", "herald_traces").await == 0.0
            && presence(&herald, "canary", "herald_logs").await == 0.0)
            .then_some(())
    })
    .await;
    let (status, body) = herald.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    let problems = body["platform_check"]["last"]["problems"].to_string();
    assert!(problems.contains("the canary was not stored"), "/readyz says why: {body}");
    assert_eq!(body["platform_check"]["last"]["ok"], false);
    let stale = last_success(&herald).await;

    cluster.pg_ctl_start();
    eventually(Duration::from_secs(60), async || (last_success(&herald).await > stale).then_some(())).await;
    assert_eq!(presence(&herald, "canary", "herald_traces").await, 1.0);
    eventually(Duration::from_secs(10), async || (herald.get_text("/readyz").await.0 == 200).then_some(())).await;
}

/// A loopback Tempo and Loki with fixed contents: `svc-a` has only traces, `svc-b` only logs,
/// `svc-both` both; the canary is there only once `canary_arrived` is set.
#[derive(Clone, Default)]
struct FakeBackends {
    canary_arrived: Arc<AtomicBool>,
    /// Tenants seen (X-Scope-OrgID), per path.
    tenants: Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

type Params = Query<HashMap<String, String>>;

impl FakeBackends {
    fn saw(&self, path: &str, headers: &HeaderMap) {
        let tenant = headers.get("x-scope-orgid").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        self.tenants.lock().unwrap().push((path.to_owned(), tenant));
    }

    async fn start(&self) -> String {
        async fn tempo_search(State(f): State<FakeBackends>, headers: HeaderMap, Query(q): Params) -> Json<Value> {
            f.saw("tempo", &headers);
            let query = q.get("q").cloned().unwrap_or_default();
            let has = (query.contains(CANARY) && f.canary_arrived.load(Ordering::SeqCst))
                || query.contains("\"svc-a\"")
                || query.contains("\"svc-both\"");
            let traces = if has { vec![json!({"traceID": "0af7651916cd43dd8448eb211c80319c"})] } else { vec![] };
            Json(json!({ "traces": traces }))
        }
        async fn tempo_services(State(f): State<FakeBackends>, headers: HeaderMap) -> Json<Value> {
            f.saw("tempo", &headers);
            Json(json!({ "tagValues": [
                {"type": "string", "value": "svc-a"}, {"type": "string", "value": "svc-both"},
                {"type": "string", "value": CANARY}] }))
        }
        async fn loki_query(State(f): State<FakeBackends>, headers: HeaderMap, Query(q): Params) -> Json<Value> {
            f.saw("loki", &headers);
            let query = q.get("query").cloned().unwrap_or_default();
            // The canary's logs arrive, but (the older herald's incident) without their
            // helix_process_name label.
            let has = (query.contains(CANARY) && f.canary_arrived.load(Ordering::SeqCst))
                || query.contains("\"svc-b\"")
                || query.contains("\"svc-both\"");
            let result = if has { vec![json!({"stream": {}, "values": [["1", "x"]]})] } else { vec![] };
            Json(json!({ "status": "success", "data": { "resultType": "streams", "result": result } }))
        }
        async fn loki_services(State(f): State<FakeBackends>, headers: HeaderMap) -> Json<Value> {
            f.saw("loki", &headers);
            Json(json!({ "status": "success", "data": ["svc-b", "svc-both"] }))
        }
        let app = axum::Router::new()
            .route("/api/search", get(tempo_search))
            .route("/api/v2/search/tag/resource.service.name/values", get(tempo_services))
            .route("/loki/api/v1/query_range", get(loki_query))
            .route("/loki/api/v1/label/service_name/values", get(loki_services))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tempo_and_loki_lacking_the_canary_or_a_services_signal_are_reported() {
    let fake = FakeBackends::default();
    let url = fake.start().await;
    let herald = Herald::start_with(every_second(&[
        ("PLATFORM_CHECK_DELAY_SECS", "0"),
        ("TEMPO_QUERY_URL", &url),
        ("TEMPO_TENANT", "tempo-tenant"),
        ("LOKI_QUERY_URL", &url),
        ("LOKI_TENANT", "loki-tenant"),
    ]));
    let mismatch = |service: &'static str, side: &'static str| {
        let herald = &herald;
        async move {
            herald
                .metric("helix_platform_check_mismatch_total", &[("service_name", service), ("missing_side", side)])
                .await
        }
    };
    eventually(Duration::from_secs(20), async || (mismatch("svc-a", "logs").await >= 1.0).then_some(())).await;
    assert!(mismatch("svc-b", "traces").await >= 1.0);
    assert_eq!(mismatch("svc-both", "traces").await + mismatch("svc-both", "logs").await, 0.0, "both present");
    for kind in ["traces", "logs", "logs_by_label"] {
        assert_eq!(presence(&herald, "canary", kind).await, 0.0, "{kind}: Tempo and Loki lack the canary");
    }
    // Our own store has it.
    assert_eq!(presence(&herald, "canary", "herald_traces").await, 1.0);
    assert_eq!(last_success(&herald).await, 0.0, "never everywhere");
    assert_eq!(presence(&herald, "svc-a", "traces").await, 1.0);
    assert_eq!(presence(&herald, "svc-a", "logs").await, 0.0);
    let (status, ready) = herald.get("/readyz").await;
    assert_eq!(status, 200, "the herald can still store data: {ready}");
    assert_eq!(ready["platform_check"]["last"]["ok"], false);
    assert!(ready["platform_check"]["last"]["problems"].to_string().contains("tempo has no canary traces"), "{ready}");
    // Each backend was asked with its own tenant.
    let tenants = fake.tenants.lock().unwrap().clone();
    assert!(tenants.iter().all(|(b, t)| t == &format!("{b}-tenant")), "{tenants:?}");

    // The canary arrives, but Loki lost its label: logs present, logs_by_label absent.
    fake.canary_arrived.store(true, Ordering::SeqCst);
    eventually(Duration::from_secs(20), async || (presence(&herald, "canary", "traces").await == 1.0).then_some(()))
        .await;
    eventually(Duration::from_secs(20), async || (presence(&herald, "canary", "logs").await == 1.0).then_some(()))
        .await;
    assert_eq!(presence(&herald, "canary", "logs_by_label").await, 0.0);
    assert_eq!(last_success(&herald).await, 0.0, "a missing label is not a success");
    eventually(Duration::from_secs(10), async || herald.log().contains("helix_process_name label").then_some(())).await;
}
