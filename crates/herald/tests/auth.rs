//! Authentication and per-instrument authorisation against the real binary: sign-in at
//! `POST /auth/token`, every refusal on every ingest path (with the store's row counts before
//! and after), key rotation, instrument file reload, sign-in throttling, the read side, and
//! no secret in anything the herald prints.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use helix_model::builders::{kv, logs, pipeline_resource, string, traces, SpanBuilder};
use http::{HeaderMap, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use serde_json::{json, Value};
use sha2::Digest;
use support::*;

/// Two keys: the first signs, both verify.
const KEY_NEW: &str = "k-new-0b6f3c2a9e8d47f1a5c3b2d1e0f9a8b7c6d5e4f3";
const KEY_OLD: &str = "k-old-5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f";
const SECRET_A: &str = "secret-of-alpha-7f3e9b2c41d8a6e5f0b1c2d3e4f5a6b7";
const SECRET_B: &str = "secret-of-bravo-1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d";

fn sha256_ref(secret: &str) -> String {
    format!("sha256:{}", helix_model::ids::to_hex(&sha2::Sha256::digest(secret.as_bytes())))
}

fn secret_file(instrument: &str, secret: &str) -> String {
    format!("instrument_id: {instrument}\nauth:\n  type: secret\n  api_key_hash: \"{}\"\n", sha256_ref(secret))
}

/// A herald with auth on: instruments ALPHA and BRAVO (secrets), PLAIN (no auth block).
struct Site {
    herald: Herald,
    instruments: PathBuf,
    _dir: tempfile::TempDir,
}

impl Site {
    fn start(jwt_secret: &str, extra_env: &[(&str, &str)]) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let instruments = dir.path().join("instruments");
        std::fs::create_dir(&instruments).unwrap();
        std::fs::write(instruments.join("alpha.yml"), secret_file("ALPHA", SECRET_A)).unwrap();
        std::fs::write(instruments.join("bravo.yaml"), secret_file("BRAVO", SECRET_B)).unwrap();
        std::fs::write(instruments.join("plain.yml"), "instrument_id: PLAIN\n").unwrap();
        let mut env = vec![
            ("JWT_SECRET".to_owned(), jwt_secret.to_owned()),
            ("INSTRUMENTS_DIR".to_owned(), instruments.display().to_string()),
        ];
        env.extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let herald = Herald::start_with(HeraldOptions { env, ..Default::default() });
        Site { herald, instruments, _dir: dir }
    }

    async fn sign_in(&self, instrument: &str, credential: &str) -> (u16, Value, HeaderMap) {
        sign_in(&self.herald, instrument, credential).await
    }

    async fn token(&self, instrument: &str, credential: &str) -> String {
        let (status, body, _) = self.sign_in(instrument, credential).await;
        assert_eq!(status, 200, "sign-in of {instrument}: {body}");
        assert_eq!(body["expires_in"], 86_400);
        body["token"].as_str().expect("a token").to_owned()
    }
}

async fn sign_in(herald: &Herald, instrument: &str, credential: &str) -> (u16, Value, HeaderMap) {
    let response = reqwest::Client::new()
        .post(herald.api_url("/auth/token"))
        .json(&json!({"instrument_id": instrument, "credential": credential}))
        .send()
        .await
        .expect("POST /auth/token");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body, headers)
}

/// Rows of every table an export writes to.
fn rows(db: &Path) -> Vec<(&'static str, i64)> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    ["entities", "entity_operations", "entity_events", "entity_parents", "logs", "span_traces", "instruments"]
        .into_iter()
        .map(|t| (t, conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0)).unwrap()))
        .collect()
}

/// A token signed as the test says (to forge the bad ones).
fn forge(key: &str, alg: Algorithm, sub: &str, exp_from_now: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({"iss": "helixobs", "sub": sub, "iat": now, "exp": now.saturating_add_signed(exp_from_now)});
    jsonwebtoken::encode(&Header::new(alg), &claims, &EncodingKey::from_secret(key.as_bytes()).unwrap()).unwrap()
}

fn unsigned(sub: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({"iss": "helixobs", "sub": sub, "iat": now, "exp": now + 3600});
    format!("{}.{}.", b64.encode(br#"{"alg":"none","typ":"JWT"}"#), b64.encode(claims.to_string()))
}

/// How an export reaches the herald in these tests.
#[derive(Debug, Clone, Copy)]
enum Path_ {
    GrpcTraces,
    GrpcLogs,
    HttpTraces,
    HttpLogs,
}

const PATHS: [Path_; 4] = [Path_::GrpcTraces, Path_::GrpcLogs, Path_::HttpTraces, Path_::HttpLogs];

/// One export: its spans (or, on the log paths, one log record per span, same instrument).
#[derive(Clone)]
struct Export {
    traces: ExportTraceServiceRequest,
    logs: ExportLogsServiceRequest,
}

fn export(resource_instrument: Option<&str>, spans: Vec<SpanBuilder>) -> Export {
    let resource = match resource_instrument {
        Some(i) => pipeline_resource("svc", i),
        None => vec![kv("service.name", string("svc"))],
    };
    let records = spans
        .iter()
        .map(|s| {
            let span = s.clone().build();
            let named = span.attributes.iter().find(|a| a.key == "helix.instrument.id").cloned();
            LogRecord {
                body: Some(string(&format!("log of {}", span.name))),
                attributes: named.map(|a| vec![kv("helix_instrument_id", a.value.unwrap())]).unwrap_or_default(),
                time_unix_nano: span.start_time_unix_nano,
                ..Default::default()
            }
        })
        .collect();
    Export {
        traces: traces(resource.clone(), spans.into_iter().map(SpanBuilder::build).collect()),
        logs: logs(resource, records),
    }
}

/// The outcome of an export: Ok, or the gRPC code / HTTP status and the message.
#[derive(Debug)]
enum Outcome {
    Ok,
    Refused { code: String, message: String },
}

async fn send(herald: &Herald, path: Path_, token: Option<&str>, what: &Export) -> Outcome {
    let bearer = token.map(|t| format!("Bearer {t}"));
    match path {
        Path_::GrpcTraces | Path_::GrpcLogs => {
            let channel = tonic::transport::Channel::from_shared(herald.grpc_url()).unwrap().connect().await.unwrap();
            let result = if matches!(path, Path_::GrpcTraces) {
                let mut request = tonic::Request::new(what.traces.clone());
                if let Some(b) = &bearer {
                    request.metadata_mut().insert("authorization", b.parse().unwrap());
                }
                opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::new(channel)
                    .export(request)
                    .await
                    .map(|_| ())
            } else {
                let mut request = tonic::Request::new(what.logs.clone());
                if let Some(b) = &bearer {
                    request.metadata_mut().insert("authorization", b.parse().unwrap());
                }
                LogsServiceClient::new(channel).export(request).await.map(|_| ())
            };
            match result {
                Ok(()) => Outcome::Ok,
                Err(status) => {
                    Outcome::Refused { code: format!("{:?}", status.code()), message: status.message().to_owned() }
                }
            }
        }
        Path_::HttpTraces | Path_::HttpLogs => {
            let (url, body) = if matches!(path, Path_::HttpTraces) {
                (format!("http://{}/v1/traces", herald.http), what.traces.encode_to_vec())
            } else {
                (format!("http://{}/v1/logs", herald.http), what.logs.encode_to_vec())
            };
            let mut request =
                reqwest::Client::new().post(url).header("content-type", "application/x-protobuf").body(body);
            if let Some(b) = &bearer {
                request = request.header("authorization", b);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            if status == 200 {
                return Outcome::Ok;
            }
            let body: Value = response.json().await.unwrap_or(Value::Null);
            Outcome::Refused { code: status.to_string(), message: body["error"].as_str().unwrap_or("").to_owned() }
        }
    }
}

/// The refusal code a path answers with for "not authenticated" / "not allowed".
fn code(path: Path_, forbidden: bool) -> &'static str {
    match (path, forbidden) {
        (Path_::GrpcTraces | Path_::GrpcLogs, false) => "Unauthenticated",
        (Path_::GrpcTraces | Path_::GrpcLogs, true) => "PermissionDenied",
        (_, false) => "401",
        (_, true) => "403",
    }
}

fn ids(first: u64) -> impl FnMut() -> u64 {
    let mut n = first;
    move || {
        n += 1;
        n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_token_and_every_foreign_export_is_refused_on_every_path_and_stores_nothing() {
    let site = Site::start(&format!("{KEY_NEW},{KEY_OLD}"), &[]);
    let alpha = site.token("ALPHA", SECRET_A).await;
    let bravo = site.token("BRAVO", SECRET_B).await;
    let mut n = ids(0);
    // BRAVO owns an entity.
    let owned = export(Some("BRAVO"), vec![SpanBuilder::creation("ingest", "bravo-block-1", n())]);
    assert!(matches!(send(&site.herald, Path_::GrpcTraces, Some(&bravo), &owned).await, Outcome::Ok));
    let read_only = {
        let (status, out) = run_cli(&["token", "issue", "--read", "--name", "dashboards", "--ttl", "1h"], KEY_NEW);
        assert!(status.success(), "{out}");
        out.trim().to_owned()
    };

    let before = rows(&site.herald.db_path());
    let unauthenticated: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("garbage", Some("not-a-jwt".to_owned())),
        ("expired", Some(forge(KEY_NEW, Algorithm::HS256, "ALPHA", -3600))),
        ("unknown key", Some(forge("some-other-key-entirely-0123456789", Algorithm::HS256, "ALPHA", 3600))),
        ("alg none", Some(unsigned("ALPHA"))),
        ("HS512 with a known key", Some(forge(KEY_NEW, Algorithm::HS512, "ALPHA", 3600))),
    ];
    for path in PATHS {
        let own = export(Some("ALPHA"), vec![SpanBuilder::creation("ingest", &format!("alpha-{}", n()), n())]);
        for (case, token) in &unauthenticated {
            match send(&site.herald, path, token.as_deref(), &own).await {
                Outcome::Refused { code: c, .. } => assert_eq!(c, code(path, false), "{case} on {path:?}"),
                Outcome::Ok => panic!("{case} on {path:?} was accepted"),
            }
        }
        let forbidden: Vec<(&str, String, Export, Vec<&str>)> = vec![
            (
                "ALPHA's token with BRAVO's resource",
                alpha.clone(),
                export(Some("BRAVO"), vec![SpanBuilder::creation("ingest", &format!("x-{}", n()), n())]),
                vec!["ALPHA", "BRAVO"],
            ),
            (
                "ALPHA's token, one of its spans names BRAVO",
                alpha.clone(),
                export(
                    Some("ALPHA"),
                    vec![
                        SpanBuilder::creation("ingest", &format!("fine-{}", n()), n()),
                        SpanBuilder::creation("ingest", &format!("x-{}", n()), n()).instrument("BRAVO"),
                    ],
                ),
                vec!["ALPHA", "BRAVO"],
            ),
            ("a read-only token", read_only.clone(), own.clone(), vec!["read-only"]),
        ];
        for (case, token, what, named) in &forbidden {
            match send(&site.herald, path, Some(token), what).await {
                Outcome::Refused { code: c, message } => {
                    assert_eq!(c, code(path, true), "{case} on {path:?}: {message}");
                    for name in named {
                        assert!(message.contains(name), "{case} on {path:?}: the message names {name}: {message}");
                    }
                }
                Outcome::Ok => panic!("{case} on {path:?} was accepted"),
            }
        }
    }
    // ALPHA operating on BRAVO's entity (and re-creating it): refused whole, with its own
    // entity in the same export.
    for (case, span) in [
        ("operation", SpanBuilder::operation("archive", "bravo-block-1", n())),
        ("re-creation", SpanBuilder::creation("steal", "bravo-block-1", n())),
    ] {
        for path in [Path_::GrpcTraces, Path_::HttpTraces] {
            let what =
                export(None, vec![SpanBuilder::creation("ingest", &format!("alpha-own-{}", n()), n()), span.clone()]);
            match send(&site.herald, path, Some(&alpha), &what).await {
                Outcome::Refused { code: c, message } => {
                    assert_eq!(c, code(path, true), "{case} on {path:?}: {message}");
                    assert!(
                        message.contains("ALPHA") && message.contains("BRAVO") && message.contains("bravo-block-1"),
                        "{message}"
                    );
                }
                Outcome::Ok => panic!("ALPHA's {case} of BRAVO's entity was accepted on {path:?}"),
            }
        }
    }
    assert_eq!(rows(&site.herald.db_path()), before, "nothing of a refused export is stored");

    // The same herald takes ALPHA's own data on every path, unnamed records attributed to it.
    for path in PATHS {
        let id = format!("alpha-ok-{}", n());
        let what = export(None, vec![SpanBuilder::creation("ingest", &id, n())]);
        assert!(matches!(send(&site.herald, path, Some(&alpha), &what).await, Outcome::Ok), "{path:?}");
    }
    let after = rows(&site.herald.db_path());
    let count = |rows: &[(&str, i64)], t: &str| rows.iter().find(|(n, _)| *n == t).unwrap().1;
    assert_eq!(count(&after, "entities"), count(&before, "entities") + 2);
    assert_eq!(count(&after, "logs"), count(&before, "logs") + 2);
    let conn = rusqlite::Connection::open_with_flags(site.herald.db_path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let unattributed: i64 = conn
        .query_row("SELECT count(*) FROM entities WHERE instrument_id NOT IN ('ALPHA', 'BRAVO')", [], |r| r.get(0))
        .unwrap();
    assert_eq!(unattributed, 0, "records naming no instrument belong to the token's");

    let denied = |reason: &'static str| {
        let herald = &site.herald;
        async move { herald.metric("helix_auth_denied_total", &[("reason", reason)]).await }
    };
    assert_eq!(denied("missing_token").await, 4.0);
    assert_eq!(denied("expired_token").await, 4.0);
    assert_eq!(denied("bad_signature").await, 4.0);
    assert_eq!(denied("foreign_instrument").await, 8.0);
    assert_eq!(denied("foreign_entity").await, 4.0);
    assert_eq!(denied("read_only_token").await, 4.0);
    assert_eq!(denied("wrong_algorithm").await + denied("malformed_token").await, 12.0);
}

/// Run `herald ARGS` with JWT_SECRET set; its exit status and output.
fn run_cli(args: &[&str], jwt_secret: &str) -> (std::process::ExitStatus, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .env("JWT_SECRET", jwt_secret)
        .env_remove("INSTRUMENTS_DIR")
        .output()
        .expect("running the herald binary");
    (out.status, format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_answers_like_the_older_herald() {
    let site = Site::start(KEY_NEW, &[]);
    let (status, body, headers) = site.sign_in("ALPHA", SECRET_A).await;
    assert_eq!((status, body["expires_in"].as_u64()), (200, Some(86_400)), "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    let claims: Value = {
        let payload = body["token"].as_str().unwrap().split('.').nth(1).unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    };
    assert_eq!((claims["iss"].as_str(), claims["sub"].as_str()), (Some("helixobs"), Some("ALPHA")));
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 86_400);

    assert_eq!(site.sign_in("ALPHA", SECRET_B).await.0, 401, "wrong credential");
    let (status, body, _) = site.sign_in("PLAIN", "anything").await;
    assert_eq!(status, 401);
    assert!(body["error"].as_str().unwrap().contains("auth not configured"), "{body}");
    assert_eq!(site.sign_in("NOBODY", "anything").await.0, 401, "unknown instrument");
    let client = reqwest::Client::new();
    for body in ["not json", r#"{"instrument_id": "ALPHA"}"#, r#"{"credential": "x"}"#] {
        let response = client
            .post(site.herald.api_url("/auth/token"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{body}");
    }
    let response = client.get(site.herald.api_url("/auth/token")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers()["allow"], "POST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_off_everything_passes_and_sign_in_still_checks_the_credential() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alpha.yml"), secret_file("ALPHA", SECRET_A)).unwrap();
    let herald = Herald::start_with(HeraldOptions {
        env: vec![("INSTRUMENTS_DIR".into(), dir.path().display().to_string())],
        ..Default::default()
    });
    assert!(herald.log().contains("auth is off"), "the start-up says so:\n{}", herald.log());
    let (status, body, _) = sign_in(&herald, "ALPHA", SECRET_A).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 300, "short-lived while nothing requires it");
    assert_eq!(sign_in(&herald, "ALPHA", "wrong").await.0, 401, "a wrong credential shows before auth is on");
    let what = export(Some("ANY"), vec![SpanBuilder::creation("ingest", "open-1", 1)]);
    for path in PATHS {
        assert!(matches!(send(&herald, path, None, &what).await, Outcome::Ok), "{path:?}");
    }
    assert_eq!(herald.get("/api/v1/instruments").await, (200, json!(["ANY"])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_the_old_key_verifies_while_both_keys_are_listed_and_not_after() {
    let what = |n: u64| export(Some("ALPHA"), vec![SpanBuilder::creation("ingest", &format!("rot-{n}"), n)]);
    let old_only = Site::start(KEY_OLD, &[]);
    let old_token = old_only.token("ALPHA", SECRET_A).await;
    drop(old_only);

    let both = Site::start(&format!("{KEY_NEW},{KEY_OLD}"), &[]);
    assert!(matches!(send(&both.herald, Path_::GrpcTraces, Some(&old_token), &what(1)).await, Outcome::Ok));
    let new_token = both.token("ALPHA", SECRET_A).await;
    drop(both);

    let new_only = Site::start(KEY_NEW, &[]);
    assert!(
        matches!(send(&new_only.herald, Path_::GrpcTraces, Some(&new_token), &what(2)).await, Outcome::Ok),
        "the new key signed it"
    );
    match send(&new_only.herald, Path_::GrpcTraces, Some(&old_token), &what(3)).await {
        Outcome::Refused { code, .. } => assert_eq!(code, "Unauthenticated"),
        Outcome::Ok => panic!("a token of a dropped key was accepted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_instrument_file_signs_in_without_a_restart_and_a_broken_edit_keeps_the_last_good_one() {
    let site = Site::start(KEY_NEW, &[("HELIX_INSTRUMENTS_RELOAD", "1s")]);
    assert_eq!(site.sign_in("CHARLIE", "charlie-secret").await.0, 401);
    std::fs::write(site.instruments.join("charlie.yml"), secret_file("CHARLIE", "charlie-secret")).unwrap();
    let signed_in = eventually_status(&site, "CHARLIE", "charlie-secret", 200, Duration::from_secs(30)).await;
    assert!(signed_in < Duration::from_secs(30));

    // A broken edit: the previous credential keeps working, and the log names file and key.
    std::fs::write(
        site.instruments.join("alpha.yml"),
        "instrument_id: ALPHA\nauth:\n  type: secret\n  api_key_hash: \"sha256:not-hex\"\n",
    )
    .unwrap();
    let log_says =
        |site: &Site| site.herald.log().contains("alpha.yml") && site.herald.log().contains("auth.api_key_hash");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log_says(&site) {
        assert!(Instant::now() < deadline, "the broken file was not reported:\n{}", site.herald.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(site.sign_in("ALPHA", SECRET_A).await.0, 200, "the last good configuration stays");
    assert_eq!(site.herald.metric("helix_instrument_files_invalid", &[]).await, 1.0);
}

async fn eventually_status(site: &Site, instrument: &str, credential: &str, want: u16, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if site.sign_in(instrument, credential).await.0 == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{instrument} did not answer {want} within {limit:?}:\n{}",
            site.herald.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_instrument_files_at_once() {
    // The interval is long: only the signal can make the new file count within the test.
    let site = Site::start(KEY_NEW, &[("HELIX_INSTRUMENTS_RELOAD", "1h")]);
    std::fs::write(site.instruments.join("delta.yml"), secret_file("DELTA", "delta-secret")).unwrap();
    assert_eq!(site.sign_in("DELTA", "delta-secret").await.0, 401);
    site.herald.signal(libc::SIGHUP);
    eventually_status(&site, "DELTA", "delta-secret", 200, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_wrong_credentials_are_throttled_then_the_right_one_works_after_the_window() {
    // The window opens with the first failure and outlasts the hundred attempts even on a
    // loaded machine; the test then waits as long as Retry-After says.
    let site = Site::start(KEY_NEW, &[("HELIX_AUTH_THROTTLE_WINDOW", "20s")]);
    let mut statuses = Vec::new();
    let mut retry_after = Vec::new();
    for i in 0..100 {
        let (status, _, headers) = site.sign_in("ALPHA", &format!("wrong-guess-{i}")).await;
        statuses.push(status);
        if status == 429 {
            retry_after.push(headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap());
        }
    }
    assert!(statuses[..10].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    assert!(retry_after.iter().all(|s| (1..=20).contains(s)), "{retry_after:?}");
    let (status, _, headers) = site.sign_in("ALPHA", SECRET_A).await;
    assert_eq!(status, 429, "throttled means not even checked");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(200)).await;
    assert_eq!(site.sign_in("ALPHA", SECRET_A).await.0, 200, "the window is over");
    assert_eq!(site.herald.metric("helix_auth_denied_total", &[("reason", "throttled")]).await, 91.0);
    assert!(!site.herald.log().contains("wrong-guess-"), "a rejected credential is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_accepts_what_the_instruments_endpoint_accepts() {
    let (url, _server) = introspection_endpoint("upstream-token-ok").await;
    let site = Site::start(KEY_NEW, &[]);
    std::fs::write(
        site.instruments.join("sso.yml"),
        format!("instrument_id: SSO\nauth:\n  type: token_introspection\n  verify_url: {url}\n"),
    )
    .unwrap();
    site.herald.signal(libc::SIGHUP);
    eventually_status(&site, "SSO", "upstream-token-ok", 200, Duration::from_secs(10)).await;
    assert_eq!(site.sign_in("SSO", "upstream-token-bad").await.0, 401);
    // An endpoint that does not answer: retry later, not "rejected".
    std::fs::write(
        site.instruments.join("gone.yml"),
        "instrument_id: GONE\nauth:\n  type: token_introspection\n  verify_url: http://127.0.0.1:9/verify\n",
    )
    .unwrap();
    site.herald.signal(libc::SIGHUP);
    eventually_status(&site, "GONE", "whatever", 503, Duration::from_secs(10)).await;
}

/// A loopback token introspection endpoint: 200 for `Bearer <good>`, 401 otherwise.
pub async fn introspection_endpoint(good: &'static str) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().route(
        "/verify",
        axum::routing::get(move |headers: HeaderMap| async move {
            let ok = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {good}"));
            if ok {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/verify", listener.local_addr().unwrap());
    (url, tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_reports_every_error_with_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alpha.yml"), secret_file("ALPHA", SECRET_A)).unwrap();
    let run = |dir: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["check-config", "--instruments-dir"])
            .arg(dir)
            .env("JWT_SECRET", KEY_NEW)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, out) = run(dir.path());
    assert!(ok && out.contains("alpha.yml") && out.contains("instrument ALPHA, auth secret"), "{out}");
    assert!(!out.contains(KEY_NEW) && !out.contains(&sha256_ref(SECRET_A)[7..]), "no key or hash shown:\n{out}");
    std::fs::write(dir.path().join("bad.yaml"), "auth: {type: secret, api_key_hash: \"sha256:xyz\"}\n").unwrap();
    let (ok, out) = run(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("bad.yaml: instrument_id: missing"), "{out}");
    assert!(out.contains("bad.yaml: auth.api_key_hash:"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_hash_or_token_appears_in_anything_the_herald_prints() {
    let site = Site::start(&format!("{KEY_NEW},{KEY_OLD}"), &[("HELIX_AUTH_THROTTLE_FAILURES", "3")]);
    let alpha = site.token("ALPHA", SECRET_A).await;
    let what = export(Some("ALPHA"), vec![SpanBuilder::creation("ingest", "quiet-1", 1)]);
    for path in PATHS {
        assert!(matches!(send(&site.herald, path, Some(&alpha), &what).await, Outcome::Ok));
        let _ = send(&site.herald, path, Some(&forge(KEY_NEW, Algorithm::HS256, "ALPHA", -10)), &what).await;
        let _ = send(&site.herald, path, Some(&format!("{alpha}x")), &what).await;
    }
    for _ in 0..5 {
        let _ = site.sign_in("ALPHA", SECRET_B).await;
    }
    let foreign = export(Some("BRAVO"), vec![SpanBuilder::creation("ingest", "quiet-2", 2)]);
    let _ = send(&site.herald, Path_::GrpcTraces, Some(&alpha), &foreign).await;
    std::fs::write(site.instruments.join("broken.yml"), format!("instrument_id: [\"{SECRET_B}\"]\n")).unwrap();
    site.herald.signal(libc::SIGHUP);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, metrics) = site.herald.get_text("/metrics").await;
    let (_, ready) = site.herald.get_text("/readyz").await;
    let (_, bad_sign_in, _) = site.sign_in("ALPHA", SECRET_B).await;
    let printed = format!("{}\n{metrics}\n{ready}\n{bad_sign_in}", site.herald.log());
    let hash_a = sha256_ref(SECRET_A);
    for secret in [KEY_NEW, KEY_OLD, SECRET_A, SECRET_B, &hash_a[7..], &alpha, alpha.split('.').nth(2).unwrap()] {
        assert!(!printed.contains(secret), "the herald printed a secret ({}…):\n{printed}", &secret[..8]);
    }
}

/// A client that shows redirects instead of following them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_need_a_token_except_health_readiness_and_metrics() {
    let site = Site::start(KEY_NEW, &[]);
    let alpha = site.token("ALPHA", SECRET_A).await;
    let what = export(Some("ALPHA"), vec![SpanBuilder::creation("ingest", "read-1", 1)]);
    assert!(matches!(send(&site.herald, Path_::GrpcTraces, Some(&alpha), &what).await, Outcome::Ok));
    let (status, out) = run_cli(&["token", "issue", "--read", "--name", "grafana", "--ttl", "30d"], KEY_NEW);
    assert!(status.success(), "{out}");
    let reader = out.trim().to_owned();
    let client = no_redirects();
    let get = |path: &str, token: Option<&str>| {
        let mut request = client.get(site.herald.api_url(path));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        request.send()
    };
    for path in
        ["/api/v1/instruments", "/api/v1/entity/read-1", "/api/v1/", "/api/echo", "/api/search", "/api/v1/traces"]
    {
        let response = get(path, None).await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{path} without a token");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("authorization required"), "{path}: {body}");
        let garbage = get(path, Some("garbage")).await.unwrap();
        assert_eq!(garbage.status().as_u16(), 401, "{path} with a garbage token");
        for token in [&reader, &alpha] {
            assert_eq!(get(path, Some(token)).await.unwrap().status().as_u16(), 200, "{path} with a token");
        }
    }
    let body: Value = get("/api/v1/instruments", Some(&reader)).await.unwrap().json().await.unwrap();
    assert_eq!(body, json!(["ALPHA"]), "the read-only token reads what was stored");
    for path in ["/healthz", "/readyz", "/metrics", "/api/openapi.json"] {
        assert_eq!(get(path, None).await.unwrap().status().as_u16(), 200, "{path} stays open");
    }
    let metrics_port = reqwest::get(format!("http://{}/metrics", site.herald.metrics)).await.unwrap();
    assert_eq!(metrics_port.status().as_u16(), 200, "the metrics port stays open");
    // A person's browser is sent to the sign-in page, and comes back where it was going.
    let page = get("/entity/read-1?tab=graph", None).await.unwrap();
    assert_eq!(page.status().as_u16(), 303);
    assert_eq!(page.headers()["location"], "/sign-in?next=%2Fentity%2Fread-1%3Ftab%3Dgraph");
    let sign_in = get("/sign-in", None).await.unwrap();
    assert_eq!(sign_in.status().as_u16(), 200);
    assert!(sign_in.text().await.unwrap().contains("name=\"token\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_cookie_is_http_only_and_strict_and_cross_site_posts_are_refused() {
    let site = Site::start(KEY_NEW, &[]);
    let (status, out) = run_cli(&["token", "issue", "--read", "--name", "alice", "--ttl", "12h"], KEY_NEW);
    assert!(status.success(), "{out}");
    let token = out.trim().to_owned();
    let client = no_redirects();
    let origin = format!("http://{}", site.herald.api);
    let post_sign_in = |origin: Option<&str>, token: &str, tls: bool| {
        let mut request =
            client.post(site.herald.api_url("/sign-in")).form(&[("token", token), ("next", "/instruments")]);
        if let Some(o) = origin {
            request = request.header("origin", o);
        }
        if tls {
            request = request.header("x-forwarded-proto", "https");
        }
        request.send()
    };
    // Another site cannot sign this browser in (login CSRF), nor can a request with no origin.
    for other in [Some("http://evil.example"), Some("http://127.0.0.1:1"), None] {
        let refused = post_sign_in(other, &token, false).await.unwrap();
        assert_eq!(refused.status().as_u16(), 403, "{other:?}");
        assert!(refused.headers().get("set-cookie").is_none());
    }
    let wrong = post_sign_in(Some(&origin), "not-a-token", false).await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.text().await.unwrap().contains("not a well-formed JWT"));

    let signed_in = post_sign_in(Some(&origin), &token, false).await.unwrap();
    assert_eq!(signed_in.status().as_u16(), 303);
    assert_eq!(signed_in.headers()["location"], "/instruments");
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap().to_owned();
    for part in ["helix_session=", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let max_age: u64 = cookie.split("Max-Age=").nth(1).unwrap().split(';').next().unwrap().parse().unwrap();
    assert!((12 * 3600 - 60..=12 * 3600).contains(&max_age), "the cookie lasts as long as the token: {cookie}");
    let over_tls = post_sign_in(Some("https://obs.example.org"), &token, true).await.unwrap();
    assert_eq!(over_tls.status().as_u16(), 403, "the origin must be the host the request reached");
    let over_tls = client
        .post(site.herald.api_url("/sign-in"))
        .header("origin", "https://obs.example.org")
        .header("x-forwarded-host", "obs.example.org")
        .header("x-forwarded-proto", "https")
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert!(over_tls.headers()["set-cookie"].to_str().unwrap().contains("Secure"), "over TLS the cookie is Secure");

    let session = cookie.split(';').next().unwrap().to_owned();
    let with_cookie = |method: reqwest::Method, path: &str| {
        client.request(method, site.herald.api_url(path)).header("cookie", session.clone())
    };
    let page = with_cookie(reqwest::Method::GET, "/instruments").send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200, "the cookie reads the Inspector");
    let api = with_cookie(reqwest::Method::GET, "/api/v1/instruments").send().await.unwrap();
    assert_eq!(api.status().as_u16(), 200, "and the API it reads");
    // A state-changing request with the cookie from another origin (another port of the same
    // host is same-site, so SameSite alone would let it through): refused, still signed in.
    let cross =
        with_cookie(reqwest::Method::POST, "/sign-out").header("origin", "http://127.0.0.1:1").send().await.unwrap();
    assert_eq!(cross.status().as_u16(), 403);
    assert!(cross.headers().get("set-cookie").is_none());
    let body: Value = cross.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("cross-site request refused"), "{body}");
    let out = with_cookie(reqwest::Method::POST, "/sign-out").header("origin", origin.as_str()).send().await.unwrap();
    assert_eq!(out.status().as_u16(), 303);
    assert!(out.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(site.herald.metric("helix_auth_denied_total", &[("reason", "cross_site")]).await, 5.0);
}
