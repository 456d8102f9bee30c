//! Security headers on every answer, and no credential the operator configures (DB_URL, COLLECTOR_ENDPOINT, GRAFANA_URL,
//! OPENLINEAGE_URL, JWT_SECRET, an instrument's secret or verify_url) appears in anything the
//! real herald prints or serves: its output, any API response (headers too), any Inspector page.

mod postgres_support;
mod support;

use std::time::Duration;

use helix_model::builders::{pipeline_resource, traces, SpanBuilder};
use serde_json::{json, Value};
use sha2::Digest;
use support::*;

const PG_PASSWORD: &str = "pgpass-SECRET-5d1c";
const COLLECTOR_PASSWORD: &str = "collpass-SECRET-77ab";
const COLLECTOR_USER: &str = "colluser-SECRET-0e2f";
const GRAFANA_PASSWORD: &str = "gfpass-SECRET-a9c4";
const OPENLINEAGE_PASSWORD: &str = "olpass-SECRET-3b8e";
const OPENLINEAGE_TOKEN: &str = "oltoken-SECRET-c0de";
const JWT_KEY: &str = "jwtkey-SECRET-6f2e9d1c0b3a48577e6d5c4b3a291807";
const CREDENTIAL: &str = "credential-SECRET-1b2c3d4e5f60718293a4b5c6d7e8f901";
const SSO_PASSWORD: &str = "ssopass-SECRET-88aa";
const SSO_TOKEN: &str = "ssotoken-SECRET-4242";

/// `url` with `password` set on its user (the test server trusts loopback, so it is ignored).
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (user, host) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => (userinfo.split(':').next().unwrap_or("").to_owned(), host),
        None => (std::env::var("HELIX_TEST_PG_USER").unwrap_or_else(|_| "postgres".into()), authority),
    };
    format!("{scheme}://{user}:{password}@{host}{tail}")
}

/// A loopback port nobody listens on (connections to it are refused at once).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_configured_credential_appears_in_output_responses_or_pages() {
    let db = postgres_support::TestDb::create(&postgres_support::pg_url(), "secrets").await;
    let instruments = tempfile::tempdir().unwrap();
    let hash = helix_model::ids::to_hex(&sha2::Sha256::digest(CREDENTIAL.as_bytes()));
    std::fs::write(
        instruments.path().join("secrets.yml"),
        format!("instrument_id: SECRETS\nauth:\n  type: secret\n  api_key_hash: \"sha256:{hash}\"\n"),
    )
    .unwrap();
    let verify_url = format!("http://sso:{SSO_PASSWORD}@127.0.0.1:{}/verify?token={SSO_TOKEN}", dead_port());
    std::fs::write(
        instruments.path().join("sso.yml"),
        format!("instrument_id: SSO\nauth:\n  type: token_introspection\n  verify_url: \"{verify_url}\"\n"),
    )
    .unwrap();
    let env = [
        ("COLLECTOR_ENDPOINT", format!("http://{COLLECTOR_USER}:{COLLECTOR_PASSWORD}@127.0.0.1:{}", dead_port())),
        ("GRAFANA_URL", format!("https://viewer:{GRAFANA_PASSWORD}@grafana.example:3000/")),
        (
            "OPENLINEAGE_URL",
            format!("http://ol:{OPENLINEAGE_PASSWORD}@127.0.0.1:{}/?api_key={OPENLINEAGE_TOKEN}", dead_port()),
        ),
        ("JWT_SECRET", JWT_KEY.to_owned()),
        ("INSTRUMENTS_DIR", instruments.path().display().to_string()),
        // Every level of our own logs, not only what a default deployment shows.
        ("RUST_LOG", "debug,h2=info,hyper=info,tower=info,rustls=info".to_owned()),
    ];
    let mut herald = Herald::start_with(HeraldOptions {
        db_url: Some(with_password(&db.url, PG_PASSWORD)),
        env: env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        ..Default::default()
    });
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    // Everything the herald answered, headers included (but the token it issued).
    let mut served = String::new();

    // Sign-ins: the right credential, a wrong one, and one the (unreachable) SSO must check.
    let mut token = String::new();
    for (instrument, credential) in [("SECRETS", CREDENTIAL), ("SECRETS", "wrong"), ("SSO", "anything")] {
        let response = client
            .post(herald.api_url("/auth/token"))
            .json(&json!({"instrument_id": instrument, "credential": credential}))
            .send()
            .await
            .unwrap();
        let body = response.text().await.unwrap_or_default();
        if credential == CREDENTIAL {
            token = serde_json::from_str::<Value>(&body).unwrap()["token"].as_str().expect("a token").to_owned();
        } else {
            served.push_str(&format!("== sign-in {instrument}\n{body}\n"));
        }
    }
    assert!(!token.is_empty(), "signed in");

    // Data to read back: a creation with a parent, an operation and an error event, over gRPC.
    let export = traces(
        pipeline_resource("svc", "SECRETS"),
        vec![
            SpanBuilder::creation("ingest", "sec-0", 1).build(),
            SpanBuilder::creation("search", "sec-1", 2).parents("sec-0").build(),
            SpanBuilder::operation("archive", "sec-1", 3).event("helix.error", 4, vec![]).error_status().build(),
        ],
    );
    let mut grpc = raw_client(&herald).await;
    let mut request = tonic::Request::new(export);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    grpc.export(request).await.expect("export accepted");

    // Every GET route of the OpenAPI document, with its required parameters, then the pages.
    let entity: Value = client
        .get(herald.api_url("/api/v1/entity/sec-1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let trace_id = entity["trace_id"].as_str().unwrap_or("00000000000000000000000000000001").to_owned();
    let openapi: Value = client.get(herald.api_url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut paths: Vec<String> = Vec::new();
    for (path, methods) in openapi["paths"].as_object().expect("paths") {
        let Some(get) = methods.get("get") else { continue };
        let filled = path
            .replace("{id}", "sec-1")
            .replace("{trace_id}", &trace_id)
            .replace("{traceID}", &trace_id)
            .replace("{name}", "service_name");
        let required: Vec<String> = get["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query" && p["required"] == true)
            .map(|p| {
                let value = match p["name"].as_str().unwrap_or("") {
                    "instrument" => "SECRETS",
                    _ => "{service_name=\"svc\"}",
                };
                format!("{}={}", p["name"].as_str().unwrap_or(""), urlencode(value))
            })
            .collect();
        paths.push(if required.is_empty() { filled } else { format!("{filled}?{}", required.join("&")) });
    }
    assert!(paths.len() >= 30, "the document lists the routes: {paths:?}");
    for page in ["/", "/entity/sec-1", "/errors", "/monitor", "/instruments", "/traces", "/logs", "/sign-in"] {
        paths.push(page.to_owned());
    }
    paths.extend([format!("/trace/{trace_id}"), "/ui/app.js".to_owned(), "/api/v1/entity/missing".to_owned()]);
    for path in &paths {
        for bearer in [Some(token.as_str()), None] {
            let mut request = client.get(herald.api_url(path));
            if let Some(t) = bearer {
                request = request.bearer_auth(t);
            }
            let response = request.send().await.unwrap();
            let head = format!("== GET {path} {} {:?}", response.status(), response.headers());
            let body = response.text().await.unwrap_or_default();
            served.push_str(&format!("{head}\n{body}\n"));
        }
    }
    let metrics = client.get(format!("http://{}/metrics", herald.metrics)).send().await.unwrap();
    let body = metrics.text().await.unwrap_or_default();
    served.push_str(&body);
    let page = client.get(herald.api_url("/")).bearer_auth(&token).send().await.unwrap();
    let shell = page.text().await.unwrap();
    assert!(shell.contains("https://grafana.example:3000/"), "the Inspector still links to Grafana: {shell}");
    served.push_str(&shell);

    // OpenLineage delivery and forwarding fail against their dead ports and log why (the
    // forwarder when the shutdown cuts its retries short).
    eventually(Duration::from_secs(30), async || {
        let log = herald.log();
        log.contains("OpenLineage consumer unreachable").then_some(())
    })
    .await;
    herald.stop();
    let log = herald.log();
    assert!(log.contains(":***@127.0.0.1"), "the store is shown with its password redacted: {log}");
    assert!(log.contains("forwarding to COLLECTOR_ENDPOINT failed"), "{log}");
    assert!(log.contains("***@127.0.0.1"), "the collector and consumer are shown redacted: {log}");

    let token_signature = token.rsplit('.').next().unwrap_or("").to_owned();
    let secrets = [
        PG_PASSWORD,
        COLLECTOR_PASSWORD,
        COLLECTOR_USER,
        GRAFANA_PASSWORD,
        OPENLINEAGE_PASSWORD,
        OPENLINEAGE_TOKEN,
        JWT_KEY,
        CREDENTIAL,
        &hash,
        SSO_PASSWORD,
        SSO_TOKEN,
        &token_signature,
    ];
    for secret in secrets {
        assert!(!log.contains(secret), "the herald's output shows a secret ({}…):\n{log}", &secret[..10]);
        if secret != token_signature {
            assert!(!served.contains(secret), "a response shows a secret ({}…):\n{served}", &secret[..10]);
        }
    }
}

/// Percent-encode a query value.
fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_answers_are_nosniff_and_not_stored() {
    let herald = Herald::start();
    let client = reqwest::Client::new();
    for url in [
        herald.api_url("/api/v1/instruments"),
        herald.api_url("/api/v1/entity/missing"),
        herald.api_url("/api/v1/entities?limit=0"),
        herald.api_url("/readyz"),
        format!("http://{}/metrics", herald.metrics),
        format!("http://{}/v1/traces", herald.http),
    ] {
        let response = client.get(&url).send().await.unwrap();
        let headers = response.headers();
        assert_eq!(headers.get("x-content-type-options").map(|v| v.to_str().unwrap()), Some("nosniff"), "{url}");
        assert_eq!(headers.get("cache-control").map(|v| v.to_str().unwrap()), Some("no-store"), "{url}");
    }
    // The Inspector's pages keep their own policy (revalidate, not refetch).
    let page = client.get(herald.api_url("/")).send().await.unwrap();
    assert_eq!(page.headers()["cache-control"], "no-cache");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
}
