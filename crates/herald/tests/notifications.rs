//! Notifications end to end: the real herald on loopback, with Slack, GitHub and a webhook
//! played by one small loopback HTTP server that records every request and can be told to
//! fail or to kill the herald at a chosen moment. Windows, backoff and leases are shortened
//! with the herald's `--notify-*` flags so each scenario runs in seconds.

mod postgres_support;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use helix_model::builders::{kv, pipeline_resource, string, traces, SpanBuilder};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde_json::{json, Value};
use support::{eventually, raw_client, Herald, HeraldOptions};

// ---------------------------------------------------------------- the fake Slack and GitHub

#[derive(Clone, Debug)]
struct Request {
    method: String,
    path: String,
    body: Value,
    signature: Option<String>,
    /// What it was answered.
    status: u16,
}

#[derive(Clone, Debug)]
struct Issue {
    number: i64,
    title: String,
    body: String,
    labels: Vec<String>,
    state: String,
    comments: Vec<String>,
}

#[derive(Default)]
struct Fake {
    requests: Mutex<Vec<Request>>,
    issues: Mutex<BTreeMap<(String, i64), Issue>>,
    /// Status Slack webhooks answer with.
    slack_status: AtomicU16,
    /// How long Slack webhooks take to answer, in ms.
    slack_delay_ms: AtomicU64,
    /// SIGKILL this process once an issue is created, before answering.
    kill_on_create: AtomicI32,
    created: AtomicBool,
}

type Shared = Arc<Fake>;

impl Fake {
    fn record(&self, method: &str, path: &str, body: Value, headers: &HeaderMap) {
        self.record_answered(method, path, body, headers, 200);
    }

    fn record_answered(&self, method: &str, path: &str, body: Value, headers: &HeaderMap, status: u16) {
        let signature = headers.get("x-helix-signature-256").and_then(|v| v.to_str().ok()).map(str::to_owned);
        self.requests.lock().unwrap().push(Request {
            method: method.into(),
            path: path.into(),
            body,
            signature,
            status,
        });
    }

    /// The Slack messages of `hook` that were answered 200.
    fn slack_ok(&self, hook: &str) -> Vec<Value> {
        let path = format!("/slack/{hook}");
        let requests = self.requests.lock().unwrap();
        requests.iter().filter(|r| r.path == path && r.status == 200).map(|r| r.body.clone()).collect()
    }

    fn slack(&self, hook: &str) -> Vec<Value> {
        let path = format!("/slack/{hook}");
        self.requests.lock().unwrap().iter().filter(|r| r.path == path).map(|r| r.body.clone()).collect()
    }

    /// How many Slack messages `hook` got, and the distinct entities they name (sorted).
    fn slack_entities(&self, hook: &str) -> (usize, Vec<String>) {
        let messages = self.slack(hook);
        let mut entities: Vec<String> = messages
            .iter()
            .map(|m| m["text"].as_str().unwrap().lines().find(|l| l.starts_with("Entity: ")).unwrap().to_owned())
            .collect();
        entities.sort();
        entities.dedup();
        (messages.len(), entities)
    }

    fn issues(&self) -> Vec<Issue> {
        self.issues.lock().unwrap().values().cloned().collect()
    }

    fn creates(&self) -> usize {
        self.requests.lock().unwrap().iter().filter(|r| r.method == "POST" && r.path.ends_with("/issues")).count()
    }

    fn close_all(&self) {
        for i in self.issues.lock().unwrap().values_mut() {
            i.state = "closed".into();
        }
    }
}

fn issue_json(repo: &str, i: &Issue) -> Value {
    json!({"number": i.number, "title": i.title, "body": i.body, "state": i.state,
        "labels": i.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
        "html_url": format!("https://github.com/{repo}/issues/{}", i.number)})
}

async fn slack(
    State(f): State<Shared>,
    UrlPath(hook): UrlPath<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    let status = f.slack_status.load(Ordering::SeqCst);
    f.record_answered("POST", &format!("/slack/{hook}"), body, &headers, status);
    tokio::time::sleep(Duration::from_millis(f.slack_delay_ms.load(Ordering::SeqCst))).await;
    StatusCode::from_u16(status).unwrap()
}

async fn hook(State(f): State<Shared>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    f.record("POST", "/hook", value, &headers);
    // Remember the raw body too, for the signature check.
    f.requests.lock().unwrap().last_mut().unwrap().body["__raw"] =
        Value::from(String::from_utf8_lossy(&body).into_owned());
    StatusCode::OK
}

async fn create_issue(
    State(f): State<Shared>,
    UrlPath((owner, repo)): UrlPath<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let repo = format!("{owner}/{repo}");
    f.record("POST", &format!("/repos/{repo}/issues"), body.clone(), &headers);
    let issue = {
        let mut issues = f.issues.lock().unwrap();
        let number = issues.len() as i64 + 1;
        let issue = Issue {
            number,
            title: body["title"].as_str().unwrap_or("").into(),
            body: body["body"].as_str().unwrap_or("").into(),
            labels: body["labels"]
                .as_array()
                .map(|l| l.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            state: "open".into(),
            comments: Vec::new(),
        };
        issues.insert((repo.clone(), number), issue.clone());
        issue
    };
    f.created.store(true, Ordering::SeqCst);
    let pid = f.kill_on_create.swap(0, Ordering::SeqCst);
    if pid > 0 {
        // The issue exists; the herald dies before it learns the number.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (StatusCode::CREATED, Json(issue_json(&repo, &issue)))
}

async fn list_issues(
    State(f): State<Shared>,
    UrlPath((owner, repo)): UrlPath<(String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Json<Value> {
    let repo = format!("{owner}/{repo}");
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let all: Vec<Value> =
        f.issues.lock().unwrap().iter().filter(|((r, _), _)| *r == repo).map(|(_, i)| issue_json(&repo, i)).collect();
    Json(Value::Array(if page == 1 { all } else { Vec::new() }))
}

async fn get_issue(
    State(f): State<Shared>,
    UrlPath((owner, repo, n)): UrlPath<(String, String, i64)>,
) -> (StatusCode, Json<Value>) {
    let repo = format!("{owner}/{repo}");
    match f.issues.lock().unwrap().get(&(repo.clone(), n)) {
        Some(i) => (StatusCode::OK, Json(issue_json(&repo, i))),
        None => (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))),
    }
}

async fn patch_issue(
    State(f): State<Shared>,
    UrlPath((owner, repo, n)): UrlPath<(String, String, i64)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let repo = format!("{owner}/{repo}");
    f.record("PATCH", &format!("/repos/{repo}/issues/{n}"), body.clone(), &headers);
    let mut issues = f.issues.lock().unwrap();
    let Some(i) = issues.get_mut(&(repo.clone(), n)) else { return (StatusCode::NOT_FOUND, Json(json!({}))) };
    if let Some(s) = body["state"].as_str() {
        i.state = s.into();
    }
    if let Some(b) = body["body"].as_str() {
        i.body = b.into();
    }
    (StatusCode::OK, Json(issue_json(&repo, i)))
}

async fn comment(
    State(f): State<Shared>,
    UrlPath((owner, repo, n)): UrlPath<(String, String, i64)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    let repo = format!("{owner}/{repo}");
    f.record("POST", &format!("/repos/{repo}/issues/{n}/comments"), body.clone(), &headers);
    if let Some(i) = f.issues.lock().unwrap().get_mut(&(repo, n)) {
        i.comments.push(body["body"].as_str().unwrap_or("").into());
    }
    StatusCode::CREATED
}

/// Starts the fake on a free loopback port; its base URL.
async fn fake() -> (Shared, String) {
    let f: Shared = Arc::new(Fake::default());
    f.slack_status.store(200, Ordering::SeqCst);
    let app = Router::new()
        .route("/slack/{hook}", post(slack))
        .route("/hook", post(hook))
        .route("/repos/{owner}/{repo}/issues", post(create_issue).get(list_issues))
        .route("/repos/{owner}/{repo}/issues/{n}", get(get_issue).patch(patch_issue))
        .route("/repos/{owner}/{repo}/issues/{n}/comments", post(comment))
        .with_state(f.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (f, url)
}

// ---------------------------------------------------------------- heralds and errors

const FAST: [&str; 10] = [
    "--notify-retry-backoff",
    "300ms,600ms,1200ms,2400ms",
    "--notify-min-window",
    "100ms",
    "--notify-digest-interval",
    "200ms",
    "--notify-poll",
    "50ms",
    "--ui-base-url",
    "http://inspector.test",
];

fn instrument_file(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// One instrument with Slack (webhook `hook`), GitHub (`org/alerts`) and a signed webhook.
fn full_file(id: &str, hook: &str, window_s: f64, max: u32, recurrence: &str, auto_close_days: Option<f64>) -> String {
    let auto_close = auto_close_days.map(|d| format!(", auto_close_after_days: {d}")).unwrap_or_default();
    format!(
        "instrument_id: {id}
notifications:
  slack_webhook_env: HOOK_{hook}
  github_token_env: GH_TOKEN
  events:
    helix.error:
      slack: {{channel: \"#alerts\", sample_window_seconds: {window_s}, max_per_window: {max}}}
      github: {{repo: org/alerts, labels: [helixobs, bug], on_recurrence_after_close: {recurrence}{auto_close}}}
"
    )
}

fn env(url: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        ["a", "b", "c"].iter().map(|h| (format!("HOOK_{h}"), format!("{url}/slack/{h}"))).collect();
    env.push(("GH_TOKEN".into(), "ghp_test_token_secret".into()));
    env.push(("GITHUB_API_URL".into(), url.to_owned()));
    env.push(("HOOK_URL".into(), format!("{url}/hook")));
    env.push(("HOOK_KEY".into(), "webhook-key".into()));
    env
}

fn herald_with(dir: &Path, url: &str, db_url: Option<String>, extra: &[&str]) -> Herald {
    let mut args: Vec<String> = FAST.iter().map(|s| s.to_string()).collect();
    if !extra.contains(&"--notify-lease") {
        args.extend(["--notify-lease".to_string(), "3s".to_string()]);
    }
    args.extend(["--instruments-dir".to_string(), dir.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    Herald::start_with(HeraldOptions { args, env: env(url), db_url })
}

fn error_span(stage: &str, entity: &str, n: u64, message: &str) -> opentelemetry_proto::tonic::trace::v1::Span {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    SpanBuilder::creation(stage, entity, n)
        .times(now, now + 1000)
        .event("helix.error", now + 500, vec![kv("message", string(message))])
        .error_status()
        .build()
}

async fn send(herald: &Herald, instrument: &str, spans: Vec<opentelemetry_proto::tonic::trace::v1::Span>) {
    let request: ExportTraceServiceRequest = traces(pipeline_resource("pipeline", instrument), spans);
    raw_client(herald).await.export(request).await.expect("export acknowledged");
}

async fn settle() {
    // Long enough for a dispatcher round and a retry to have happened if one were coming.
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- the scenarios

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_sends_one_slack_message_and_one_issue_and_recurrences_update_it() {
    let (f, url) = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let mut file = full_file("CHIME", "a", 600.0, 10, "reopen", None);
    file.push_str("      webhook: {url_env: HOOK_URL, secret_env: HOOK_KEY}\n      message_template: \"{{.message}} on {{.node}}\"\n");
    instrument_file(dir.path(), "chime.yml", &file);
    let herald = herald_with(dir.path(), &url, None, &[]);

    let first = {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        SpanBuilder::creation("archive", "blk-1", 1)
            .times(now, now + 10)
            .event("helix.error", now + 5, vec![kv("message", string("disk full on node 3")), kv("node", string("n3"))])
            .build()
    };
    send(&herald, "CHIME", vec![first]).await;
    let messages = eventually(WAIT, async || {
        let m = f.slack("a");
        (!m.is_empty()).then_some(m)
    })
    .await;
    let fp = helix_model::fingerprint::fingerprint("CHIME", "helix.error", "disk full on node 3", "archive");
    let text = messages[0].to_string();
    assert!(messages[0]["blocks"][0]["text"]["text"].as_str().unwrap().contains("[CHIME] helix.error"), "{text}");
    assert!(
        text.contains(&format!("http://inspector.test/notifications?instrument_id=CHIME&fingerprint={fp}")),
        "{text}"
    );
    assert!(text.contains("http://inspector.test/entity/blk-1"), "{text}");
    assert!(text.contains("https://github.com/org/alerts/issues/1"), "the issue link is in the message: {text}");
    assert!(text.contains(":label: Stage: `archive`"), "{text}");
    assert_eq!(
        messages[0]["text"].as_str().unwrap().lines().next().unwrap(),
        "[CHIME] disk full on node 3 on n3",
        "template"
    );
    let issues = f.issues();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].title, "[CHIME] disk full on node 3 (stage: archive)");
    assert_eq!(issues[0].labels, ["helixobs", "bug"]);
    assert!(issues[0].body.contains("**Total occurrences:** 1"), "{}", issues[0].body);
    assert!(issues[0].body.contains("[blk-1](http://inspector.test/entity/blk-1)"));
    // The webhook got the document, signed with HMAC-SHA256 of the exact body.
    let hook = eventually(WAIT, async || f.requests.lock().unwrap().iter().find(|r| r.path == "/hook").cloned()).await;
    assert_eq!(hook.body["fingerprint"], fp.as_str());
    let raw = hook.body["__raw"].as_str().unwrap().to_owned();
    assert_eq!(hook.signature.as_deref(), Some(herald::notify::sign(b"webhook-key", raw.as_bytes()).as_str()));

    // Same class on another entity: the issue's body is updated, no second issue.
    send(&herald, "CHIME", vec![error_span("archive", "blk-2", 2, "disk full on node 7")]).await;
    eventually(WAIT, async || f.issues()[0].body.contains("**Total occurrences:** 2").then_some(())).await;
    assert!(f.issues()[0].body.contains("[blk-2]"));
    assert_eq!(f.creates(), 1);
    // Another class: a second issue.
    send(&herald, "CHIME", vec![error_span("archive", "blk-3", 3, "checksum mismatch")]).await;
    eventually(WAIT, async || (f.issues().len() == 2).then_some(())).await;
    settle().await;
    assert_eq!(f.creates(), 2);
    assert_eq!(f.slack("a").len(), 3, "one message per occurrence (max_per_window 10)");
    assert_eq!(herald.metric("helix_notifications_sent_total", &[("channel_type", "slack")]).await, 3.0);
    assert_eq!(herald.metric("helix_notifications_sent_total", &[("channel_type", "github")]).await, 3.0);
    assert_eq!(herald.metric("helix_notification_outbox_depth", &[]).await, 0.0);
    assert!(!herald.log().contains("ghp_test_token_secret"), "the token is never logged");

    // The alerts API lists both classes with their issues.
    let (status, alerts) = herald.get("/api/v1/notifications/alerts?instrument_id=CHIME").await;
    assert_eq!(status, 200);
    let alerts = alerts.as_array().unwrap().clone();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let disk = alerts.iter().find(|a| a["fingerprint"] == fp.as_str()).expect("the disk class");
    assert_eq!(disk["occurrence_count"], 2);
    assert_eq!(disk["github_issue_url"], "https://github.com/org/alerts/issues/1");
    assert_eq!(disk["entity_ids"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_burst_sends_max_per_window_then_one_digest_to_the_same_webhook() {
    let (f, url) = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let slack_only = |id: &str, hook: &str| {
        format!(
            "instrument_id: {id}\nnotifications:\n  slack_webhook_env: HOOK_{hook}\n  events:\n    helix.error:\n      \
             slack: {{channel: \"#x\", sample_window_seconds: 3, max_per_window: 2}}\n"
        )
    };
    instrument_file(dir.path(), "a.yml", &slack_only("CHIME", "a"));
    instrument_file(dir.path(), "b.yml", &slack_only("VLA", "b"));
    let herald = herald_with(dir.path(), &url, None, &[]);
    let chime: Vec<_> =
        (0..20).map(|i| error_span("search", &format!("c-{i}"), 100 + i, &format!("beam {i} dead"))).collect();
    let vla: Vec<_> =
        (0..5).map(|i| error_span("search", &format!("v-{i}"), 200 + i, &format!("beam {i} dead"))).collect();
    send(&herald, "CHIME", chime).await;
    send(&herald, "VLA", vla).await;
    let digest_of = |messages: &[Value]| {
        messages.iter().find(|m| m["text"].as_str().unwrap_or("").contains("more occurrence")).cloned()
    };
    eventually(WAIT, async || {
        let m = f.slack("a");
        digest_of(&m).map(|_| m)
    })
    .await;
    let b = eventually(WAIT, async || {
        let m = f.slack("b");
        digest_of(&m).map(|_| m)
    })
    .await;
    settle().await;
    let (a, b) = (f.slack("a"), f.slack("b").len().max(b.len()));
    assert_eq!(a.len(), 3, "2 messages and the digest: {a:?}");
    assert!(digest_of(&a).unwrap()["text"].as_str().unwrap().starts_with("18 more occurrence(s) suppressed"), "{a:?}");
    assert!(digest_of(&a).unwrap()["text"].as_str().unwrap().contains("[CHIME]"));
    let b_messages = f.slack("b");
    assert_eq!(b, 3);
    let b_digest = digest_of(&b_messages).unwrap();
    assert!(b_digest["text"].as_str().unwrap().starts_with("3 more occurrence(s) suppressed"), "{b_messages:?}");
    assert!(b_digest["text"].as_str().unwrap().contains("[VLA]"), "VLA's digest went to VLA's webhook");
    assert_eq!(herald.metric("helix_notifications_suppressed_total", &[("instrument_id", "CHIME")]).await, 18.0);
    assert_eq!(herald.metric("helix_notifications_digest_sent_total", &[]).await, 2.0);
}

async fn post_json(herald: &Herald, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new().post(herald.api_url(path)).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_silence_scope_suppresses_exactly_its_scope_and_delete_or_expiry_restores_delivery() {
    let (f, url) = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let text = "instrument_id: CHIME\nnotifications:\n  slack_webhook_env: HOOK_a\n  events:\n    helix.error:\n      \
        slack: {channel: \"#x\", sample_window_seconds: 0.1, max_per_window: 1000}\n    helix.event.rfi:\n      \
        slack: {channel: \"#x\", sample_window_seconds: 0.1, max_per_window: 1000}\n";
    instrument_file(dir.path(), "chime.yml", text);
    let herald = herald_with(dir.path(), &url, None, &[]);
    let mut n = 1000;
    // Sends one helix.error of class `message` and one helix.event.rfi; returns what reached Slack.
    let mut round = async |message: &str| -> Vec<String> {
        let before = f.slack("a").len();
        n += 2;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let rfi = SpanBuilder::creation("scan", &format!("r-{n}"), n)
            .times(now, now + 10)
            .event("helix.event.rfi", now + 5, vec![kv("message", string("rfi"))])
            .build();
        send(&herald, "CHIME", vec![error_span("scan", &format!("e-{n}"), n + 1, message), rfi]).await;
        settle().await;
        f.slack("a")[before..]
            .iter()
            .map(|m| m["blocks"][0]["text"]["text"].as_str().unwrap().to_owned() + " " + m["text"].as_str().unwrap())
            .collect()
    };
    let got = round("disk full").await;
    assert_eq!(got.len(), 2, "{got:?}");

    // Event type + fingerprint: only that class of helix.error.
    let fp = helix_model::fingerprint::fingerprint("CHIME", "helix.error", "disk full", "scan");
    let (status, s1) = post_json(&herald, "/api/v1/notifications/silence",
        json!({"instrument_id": "CHIME", "event_type": "helix.error", "fingerprint": fp, "duration_minutes": 60, "silenced_by": "alice", "reason": "known"})).await;
    assert_eq!(status, 201, "{s1}");
    assert_eq!(s1["fingerprint"], fp.as_str());
    assert!(s1["expires_at"].as_str().unwrap() > s1["silenced_at"].as_str().unwrap());
    let got = round("disk full").await;
    assert!(got.len() == 1 && got[0].contains("helix.event.rfi"), "{got:?}");
    let got = round("other error").await;
    assert_eq!(got.len(), 2, "another class still notifies: {got:?}");
    let (status, _) = herald_delete(&herald, s1["id"].as_i64().unwrap()).await;
    assert_eq!(status, 204);
    assert_eq!(round("disk full").await.len(), 2, "deleted: delivery restored");

    // Event type: every helix.error, not the rfi events.
    let (_, s2) = post_json(
        &herald,
        "/api/v1/notifications/silence",
        json!({"instrument_id": "CHIME", "event_type": "helix.error", "duration_minutes": 0.05, "silenced_by": "bob"}),
    )
    .await;
    let got = round("anything").await;
    assert!(got.len() == 1 && got[0].contains("helix.event.rfi"), "{got:?}");
    // It expires after 3 s: delivery resumes.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(round("anything").await.len(), 2, "expired: delivery restored");

    // Instrument-wide: nothing.
    let (_, s3) = post_json(
        &herald,
        "/api/v1/notifications/silence",
        json!({"instrument_id": "CHIME", "duration_minutes": 60, "silenced_by": "carol"}),
    )
    .await;
    assert_eq!(round("anything").await.len(), 0);
    let (status, list) = herald.get("/api/v1/notifications/silences?instrument_id=CHIME").await;
    assert_eq!(status, 200);
    let ids: Vec<i64> = list.as_array().unwrap().iter().map(|s| s["id"].as_i64().unwrap()).collect();
    assert!(
        ids.contains(&s2["id"].as_i64().unwrap()) && ids.contains(&s3["id"].as_i64().unwrap()),
        "expired ones are listed: {list}"
    );
    assert_eq!(herald.metric("helix_notifications_suppressed_total", &[("channel_type", "silence")]).await, 4.0);

    // Bad requests name their field.
    let (status, e) = post_json(
        &herald,
        "/api/v1/notifications/silence",
        json!({"instrument_id": "CHIME", "duration_minutes": 0, "silenced_by": "x"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("duration_minutes"));
    let (status, _) = herald.get("/api/v1/notifications/silences").await;
    assert_eq!(status, 400);
    let r = reqwest::Client::new().delete(herald.api_url("/api/v1/notifications/silence/abc")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // Counted under the older herald's handler names.
    assert_eq!(
        herald.metric("helix_api_requests_total", &[("handler", "create_silence"), ("status", "201")]).await,
        3.0
    );
    assert_eq!(
        herald.metric("helix_api_requests_total", &[("handler", "delete_silence"), ("status", "204")]).await,
        1.0
    );
}

async fn herald_delete(herald: &Herald, id: i64) -> (u16, String) {
    let r = reqwest::Client::new()
        .delete(herald.api_url(&format!("/api/v1/notifications/silence/{id}")))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_failing_then_recovering_gets_the_message_once_and_a_4xx_stops_retrying() {
    let (f, url) = fake().await;
    let dir = tempfile::tempdir().unwrap();
    instrument_file(dir.path(), "chime.yml", "instrument_id: CHIME\nnotifications:\n  slack_webhook_env: HOOK_a\n  events:\n    helix.error:\n      slack: {channel: \"#x\", max_per_window: 100}\n");
    let herald = herald_with(dir.path(), &url, None, &[]);
    f.slack_status.store(500, Ordering::SeqCst);
    send(&herald, "CHIME", vec![error_span("s", "e-1", 1, "boom")]).await;
    // Answers 500 for 2 s (the backoff here is 0.3, 0.6, 1.2, 2.4 s), then 200.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let failed_attempts = f.slack("a").len();
    assert!(failed_attempts >= 2, "retried while failing: {failed_attempts}");
    f.slack_status.store(200, Ordering::SeqCst);
    eventually(WAIT, async || (herald.metric("helix_notifications_sent_total", &[]).await == 1.0).then_some(())).await;
    settle().await;
    settle().await;
    assert_eq!(f.slack("a").len(), failed_attempts + 1, "exactly one more request once it answers 200");
    assert!(herald.metric("helix_notification_retries_total", &[]).await >= 2.0);

    // A 404 (a deleted webhook) is not retried.
    f.slack_status.store(404, Ordering::SeqCst);
    let before = f.slack("a").len();
    send(&herald, "CHIME", vec![error_span("s", "e-2", 2, "boom")]).await;
    eventually(WAIT, async || (herald.metric("helix_notification_errors_total", &[]).await == 1.0).then_some(())).await;
    settle().await;
    assert_eq!(f.slack("a").len(), before + 1, "one attempt only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_herald_delivers_every_undelivered_notification_once_after_restart() {
    let (f, url) = fake().await;
    let dir = tempfile::tempdir().unwrap();
    instrument_file(dir.path(), "chime.yml", "instrument_id: CHIME\nnotifications:\n  slack_webhook_env: HOOK_a\n  events:\n    helix.error:\n      slack: {channel: \"#x\", max_per_window: 1000}\n");
    let herald = herald_with(dir.path(), &url, None, &[]);
    f.slack_status.store(503, Ordering::SeqCst);
    let spans: Vec<_> = (0..50).map(|i| error_span("s", &format!("k-{i}"), 500 + i, &format!("error {i}"))).collect();
    send(&herald, "CHIME", spans).await;
    // Acknowledged, and nothing delivered: every attempt so far failed.
    eventually(WAIT, async || (f.slack("a").len() >= 50).then_some(())).await;
    let herald = herald.respawn();
    f.slack_status.store(200, Ordering::SeqCst);
    f.requests.lock().unwrap().clear();
    eventually(Duration::from_secs(30), async || (f.slack("a").len() >= 50).then_some(())).await;
    settle().await;
    settle().await;
    let (n, entities) = f.slack_entities("a");
    assert_eq!((n, entities.len()), (50, 50), "all 50 once each");
    assert_eq!(herald.metric("helix_notification_outbox_depth", &[]).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_creating_the_issue_and_recording_it_leaves_one_issue() {
    let (f, url) = fake().await;
    let dir = tempfile::tempdir().unwrap();
    instrument_file(dir.path(), "chime.yml", &full_file("CHIME", "a", 600.0, 10, "reopen", None));
    let herald = herald_with(dir.path(), &url, None, &[]);
    f.kill_on_create.store(herald.pid() as i32, Ordering::SeqCst);
    send(&herald, "CHIME", vec![error_span("archive", "blk-1", 1, "disk full on node 3")]).await;
    eventually(WAIT, async || f.created.load(Ordering::SeqCst).then_some(())).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Restarted: the row's lease (3 s here) runs out and the notification is delivered.
    let herald = herald.respawn();
    eventually(WAIT, async || (!f.slack("a").is_empty()).then_some(())).await;
    settle().await;
    assert_eq!(f.issues().len(), 1, "the issue created before the kill was found by its marker");
    assert_eq!(f.creates(), 1);
    let text = f.slack("a")[0].to_string();
    assert!(text.contains("https://github.com/org/alerts/issues/1"), "{text}");
    // A recurrence updates that same issue.
    send(&herald, "CHIME", vec![error_span("archive", "blk-2", 2, "disk full on node 4")]).await;
    eventually(WAIT, async || f.issues()[0].body.contains("**Total occurrences:** 2").then_some(())).await;
    assert_eq!(f.creates(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_issues_reopen_with_one_comment_or_are_replaced_and_quiet_ones_close() {
    let (f, url) = fake().await;
    let dir = tempfile::tempdir().unwrap();
    instrument_file(dir.path(), "a.yml", &full_file("REOPEN", "a", 600.0, 10, "reopen", None));
    instrument_file(dir.path(), "b.yml", &full_file("FRESH", "b", 600.0, 10, "new_issue", None));
    // 0.00003 days: 2.6 s without a recurrence.
    instrument_file(dir.path(), "c.yml", &full_file("QUIET", "c", 600.0, 10, "reopen", Some(0.00003)));
    let herald = herald_with(dir.path(), &url, None, &["--notify-auto-close-interval", "500ms"]);
    send(&herald, "REOPEN", vec![error_span("s", "r-1", 1, "disk full")]).await;
    send(&herald, "FRESH", vec![error_span("s", "f-1", 2, "disk full")]).await;
    eventually(WAIT, async || (f.issues().len() == 2).then_some(())).await;
    f.close_all();
    send(&herald, "REOPEN", vec![error_span("s", "r-2", 3, "disk full")]).await;
    send(&herald, "FRESH", vec![error_span("s", "f-2", 4, "disk full")]).await;
    eventually(WAIT, async || {
        let issues = f.issues();
        let reopened =
            issues.iter().any(|i| i.title.starts_with("[REOPEN]") && i.body.contains("**Total occurrences:** 2"));
        (issues.len() == 3 && reopened).then_some(())
    })
    .await;
    settle().await;
    let issues = f.issues();
    assert_eq!(issues.len(), 3, "FRESH got a new issue, REOPEN did not: {issues:?}");
    let reopened = issues.iter().find(|i| i.title.starts_with("[REOPEN]")).unwrap();
    assert_eq!(reopened.state, "open");
    assert_eq!(reopened.comments.len(), 1, "one comment: {:?}", reopened.comments);
    assert!(reopened.comments[0].contains("Recurred after close"));
    assert!(reopened.body.contains("**Total occurrences:** 2"));
    let fresh: Vec<&Issue> = issues.iter().filter(|i| i.title.starts_with("[FRESH]")).collect();
    assert_eq!(fresh.len(), 2);
    assert!(fresh.iter().any(|i| i.state == "open" && i.body.contains("**Total occurrences:** 1")));

    // Auto-close after the quiet period, with a comment; once.
    send(&herald, "QUIET", vec![error_span("s", "q-1", 5, "disk full")]).await;
    let quiet = eventually(Duration::from_secs(15), async || {
        f.issues().into_iter().find(|i| i.title.starts_with("[QUIET]") && i.state == "closed")
    })
    .await;
    settle().await;
    let quiet_now = f.issues().into_iter().find(|i| i.number == quiet.number).unwrap();
    assert_eq!(quiet_now.comments.len(), 1, "{:?}", quiet_now.comments);
    assert!(quiet_now.comments[0].contains("Closed automatically"));
    assert!(
        f.issues()
            .iter()
            .filter(|i| !i.title.starts_with("[QUIET]"))
            .all(|i| i.state == "open" || i.title.starts_with("[FRESH]")),
        "no auto-close without the setting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_name_file_and_key_and_the_rest_keeps_working() {
    let (f, url) = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let text = "instrument_id: CHIME
notifications:
  slack_webhook_env: HOOK_a
  github_token_env: GH_TOKEN
  events:
    helix.error:
      slack: {channel: \"#ok\", max_per_window: 10}
    helix.event.a:
      github: {repo: not-a-repo}
    helix.event.b:
      slack: {channel: no-hash, max_per_window: 1}
    helix.event.c:
      slack: {channel: \"#c\", webhook_env: UNSET_WEBHOOK_VAR, max_per_window: 1}
";
    instrument_file(dir.path(), "chime.yml", text);
    let path = dir.path().join("chime.yml").display().to_string();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["check-config", "--instruments-dir"])
        .arg(dir.path())
        .envs(env(&url))
        .env_remove("JWT_SECRET")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{report}");
    for (key, says) in [
        ("notifications.events.helix.event.a.github.repo", "owner/repo"),
        ("notifications.events.helix.event.b.slack.channel", "'#'"),
        ("notifications.events.helix.event.c.slack.webhook_env", "UNSET_WEBHOOK_VAR is not set"),
    ] {
        assert!(report.contains(&format!("error: {path}: {key}: ")) && report.contains(says), "{key}: {report}");
    }
    assert!(report.contains("1 notifying event(s)"), "{report}");
    assert!(!report.contains("ghp_test_token_secret") && !report.contains("/slack/a"), "no secret: {report}");

    // Served: the valid event notifies; the log names file and key; the metric counts the load.
    let herald = herald_with(dir.path(), &url, None, &[]);
    send(&herald, "CHIME", vec![error_span("s", "e-1", 1, "boom")]).await;
    eventually(WAIT, async || (!f.slack("a").is_empty()).then_some(())).await;
    assert!(herald.log().contains("notifications.events.helix.event.b.slack.channel"), "{}", herald.log());
    assert_eq!(
        herald.metric("helix_notification_config_reload_errors_total", &[("instrument_id", "CHIME")]).await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_postgres_deliver_each_notification_once() {
    let (f, url) = fake().await;
    let db = postgres_support::TestDb::create(&postgres_support::pg_url(), "notify").await;
    let dir = tempfile::tempdir().unwrap();
    instrument_file(dir.path(), "chime.yml", &full_file("CHIME", "a", 600.0, 1000, "reopen", None));
    let replicas: Vec<Herald> = (0..3).map(|_| herald_with(dir.path(), &url, Some(db.url.clone()), &[])).collect();
    // 60 errors of 6 classes, each export to another replica.
    const CLASSES: [&str; 6] = ["disk full", "checksum mismatch", "timeout", "no beam", "bad header", "rfi storm"];
    for (i, chunk) in (0..60u64).collect::<Vec<_>>().chunks(10).enumerate() {
        let spans =
            chunk.iter().map(|n| error_span("s", &format!("p-{n}"), 900 + n, CLASSES[(*n % 6) as usize])).collect();
        send(&replicas[i % 3], "CHIME", spans).await;
    }
    let delivered = tokio::time::timeout(Duration::from_secs(40), async {
        while f.slack("a").len() < 60 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(delivered.is_ok(), "{} of 60 delivered; replica log: {}", f.slack("a").len(), replicas[0].log());
    settle().await;
    settle().await;
    let (n, entities) = f.slack_entities("a");
    assert_eq!((n, entities.len()), (60, 60), "each once");
    assert_eq!(
        f.issues().len(),
        6,
        "one issue per class: {:?}",
        f.issues().iter().map(|i| &i.title).collect::<Vec<_>>()
    );
    assert_eq!(f.creates(), 6);
    let total: i64 = f
        .issues()
        .iter()
        .map(|i| {
            i.body.split("**Total occurrences:** ").nth(1).unwrap().lines().next().unwrap().parse::<i64>().unwrap()
        })
        .sum();
    assert_eq!(total, 60, "every occurrence counted once");
    let mut sent = 0.0;
    for r in &replicas {
        sent += r.metric("helix_notifications_sent_total", &[("channel_type", "slack")]).await;
    }
    assert_eq!(sent, 60.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_slower_than_the_lease_is_not_taken_over_by_another_replica() {
    let (f, url) = fake().await;
    // Every Slack answer takes 2.5 s, the lease is 1 s: without renewal the other replica
    // would take each row over mid-send and deliver it a second time.
    f.slack_delay_ms.store(2500, Ordering::SeqCst);
    let db = postgres_support::TestDb::create(&postgres_support::pg_url(), "notify_lease").await;
    let dir = tempfile::tempdir().unwrap();
    instrument_file(dir.path(), "chime.yml", "instrument_id: CHIME\nnotifications:\n  slack_webhook_env: HOOK_a\n  events:\n    helix.error:\n      slack: {channel: \"#x\", max_per_window: 1000}\n");
    let lease = ["--notify-lease", "1s"];
    let first = herald_with(dir.path(), &url, Some(db.url.clone()), &lease);
    let second = herald_with(dir.path(), &url, Some(db.url.clone()), &lease);
    // Two classes of two errors each: each class's second send starts after its first ended.
    let spans = (0..4u64)
        .map(|n| error_span("s", &format!("slow-{n}"), 700 + n, ["disk full", "no beam"][n as usize % 2]))
        .collect();
    send(&first, "CHIME", spans).await;
    eventually(Duration::from_secs(30), async || (f.slack("a").len() >= 4).then_some(())).await;
    // Three more leases: time for a takeover to show.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (n, entities) = f.slack_entities("a");
    assert_eq!((n, entities.len()), (4, 4), "each once: {entities:?}");
    let mut sent = 0.0;
    for r in [&first, &second] {
        sent += r.metric("helix_notifications_sent_total", &[("channel_type", "slack")]).await;
    }
    assert_eq!(sent, 4.0);
    assert_eq!(first.metric("helix_notification_outbox_depth", &[]).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_coalesces_new_events_per_class_and_delivers_their_count() {
    full_outbox(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_on_postgres_coalesces_new_events_per_class_and_delivers_their_count() {
    let db = postgres_support::TestDb::create(&postgres_support::pg_url(), "notify_full").await;
    full_outbox(Some(db.url.clone())).await;
}

async fn full_outbox(db_url: Option<String>) {
    let (f, url) = fake().await;
    let dir = tempfile::tempdir().unwrap();
    instrument_file(dir.path(), "chime.yml", "instrument_id: CHIME\nnotifications:\n  slack_webhook_env: HOOK_a\n  events:\n    helix.error:\n      slack: {channel: \"#x\", max_per_window: 1000}\n");
    let herald = herald_with(dir.path(), &url, db_url, &["--notify-outbox-max", "5"]);
    assert_eq!(herald.metric("helix_notification_outbox_limit", &[]).await, 5.0);
    // Slack is down: nothing leaves the outbox while two bursts of one class arrive.
    f.slack_status.store(503, Ordering::SeqCst);
    let burst = |from: u64, n: u64| -> Vec<_> {
        (from..from + n)
            .map(|i| error_span("s", &format!("o-{i}"), 300 + i, &format!("disk full on node {i}")))
            .collect()
    };
    send(&herald, "CHIME", burst(0, 20)).await;
    send(&herald, "CHIME", burst(20, 10)).await;
    assert_eq!(
        herald.metric("helix_notification_channel_drops_total", &[]).await,
        25.0,
        "5 recorded one by one, the other 25 counted"
    );
    let warned = herald.log().matches("the notification outbox is full").count();
    assert_eq!(warned, 1, "logged once: {}", herald.log());
    // Every event is stored and acknowledged all the same.
    let (_, alerts) = herald.get("/api/v1/notifications/alerts?instrument_id=CHIME").await;
    assert_eq!(alerts[0]["occurrence_count"], 30, "{alerts}");

    f.slack_status.store(200, Ordering::SeqCst);
    let more = |messages: &[Value]| -> i64 {
        messages
            .iter()
            .filter_map(|m| m["text"].as_str())
            .filter(|t| t.contains("more occurrence(s) not notified one by one"))
            .map(|t| t.split(' ').next().unwrap().parse::<i64>().unwrap())
            .sum()
    };
    let single = |messages: &[Value]| -> usize {
        messages
            .iter()
            .filter(|m| m["text"].as_str().is_some_and(|t| t.lines().any(|l| l.starts_with("Entity: o-"))))
            .count()
    };
    let delivered = |m: &[Value]| (more(m), single(m));
    eventually(WAIT, async || (delivered(&f.slack_ok("a")) == (25, 5)).then_some(())).await;
    settle().await;
    assert_eq!(delivered(&f.slack_ok("a")), (25, 5), "every acknowledged event told of, none twice");
    assert_eq!(herald.metric("helix_notification_outbox_depth", &[]).await, 0.0);
}
