//! The credential flow: a bearer token from `POST /auth/token` at `build()` (failing fast with
//! the reason), sent on every trace and log export, refreshed before it expires — and never a
//! secret in an error message.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::capture::Receiver;
use support::Herald;
use tracing_subscriber::layer::SubscriberExt;

const SECRET: &str = "s3cr3t-credential-that-must-never-be-printed";

#[test]
fn a_herald_without_auth_for_the_instrument_fails_the_build_with_the_reason() {
    // No instrument file gives MY_INST an auth block: the herald refuses the sign-in.
    let herald = Herald::start();
    let err = helixobs::Instrument::builder("my-pipeline")
        .instrument_id("MY_INST")
        .endpoint(herald.endpoint())
        .credential(SECRET)
        .auth_endpoint(format!("http://{}/auth/token", herald.api))
        .build()
        .expect_err("no credential configured for the instrument: the build must fail");
    let text = err.to_string();
    assert!(matches!(err, helixobs::Error::Auth(_)), "{err:?}");
    assert!(text.contains("HTTP 401"), "{text}");
    assert!(text.contains("auth not configured for instrument"), "{text}");
    assert!(text.contains(&format!("http://{}/auth/token", herald.api)), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}

#[test]
fn an_unreachable_auth_endpoint_fails_the_build() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // freed at once
    let err = helixobs::Instrument::builder("my-pipeline")
        .instrument_id("MY_INST")
        .credential_with(|| SECRET.to_owned())
        .auth_endpoint(format!("{closed}/auth/token"))
        .build()
        .expect_err("nothing listens there");
    let text = err.to_string();
    assert!(text.contains("cannot reach the auth endpoint"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}

#[test]
fn credential_and_endpoint_go_together() {
    let err = helixobs::Instrument::builder("p").instrument_id("MY_INST").credential(SECRET).build().unwrap_err();
    assert!(err.to_string().contains("without auth_endpoint"), "{err}");
    let err = helixobs::Instrument::builder("p").instrument_id("MY_INST").auth_endpoint("h:1").build().unwrap_err();
    assert!(err.to_string().contains("without a credential"), "{err}");
    let err = helixobs::Instrument::builder("p").build().unwrap_err();
    assert!(err.to_string().contains(".instrument_id(\"MY_INST\")"), "{err}");
}

/// A token endpoint issuing `token-1`, `token-2`, … with a lifetime of `lifetime_s`, recording
/// the requests it got.
struct TokenEndpoint {
    addr: std::net::SocketAddr,
    issued: Arc<AtomicUsize>,
    requests: Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    _runtime: tokio::runtime::Runtime,
}

impl TokenEndpoint {
    fn start(lifetime_s: u64) -> TokenEndpoint {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let issued = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (n, seen) = (issued.clone(), requests.clone());
        let app = axum::Router::new().route(
            "/auth/token",
            axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let (n, seen) = (n.clone(), seen.clone());
                async move {
                    seen.lock().unwrap().push(body);
                    let k = n.fetch_add(1, Ordering::SeqCst) + 1;
                    axum::Json(serde_json::json!({"token": format!("token-{k}"), "expires_in": lifetime_s}))
                }
            }),
        );
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        TokenEndpoint { addr, issued, requests, _runtime: runtime }
    }
}

#[test]
fn the_token_is_sent_on_trace_and_log_exports_and_refreshed_before_expiry() {
    let endpoint = TokenEndpoint::start(2);
    let receiver = Receiver::start();
    let asked = Arc::new(AtomicUsize::new(0));
    let asked_by_fn = asked.clone();
    let tel = helixobs::Instrument::builder("my-pipeline")
        .instrument_id("MY_INST")
        .endpoint(format!("http://{}", receiver.addr))
        .credential_with(move || {
            asked_by_fn.fetch_add(1, Ordering::SeqCst);
            SECRET.to_owned()
        })
        .auth_endpoint(format!("http://{}/auth/token", endpoint.addr))
        .build()
        .unwrap();
    // Fetched at build, before anything was sent.
    assert_eq!(endpoint.issued.load(Ordering::SeqCst), 1);
    assert_eq!(
        endpoint.requests.lock().unwrap()[0],
        serde_json::json!({"instrument_id": "MY_INST", "credential": SECRET})
    );
    let subscriber = tracing_subscriber::registry().with(tel.tracing_layer());
    tracing::subscriber::with_default(subscriber, || {
        let _block = tel.create("ingest", "block-001").start();
        tracing::info!("ingesting");
    });
    tel.flush().unwrap();
    assert_eq!(receiver.bearers(), [Some("Bearer token-1".to_owned()), Some("Bearer token-1".to_owned())]);

    // A 2 s token is refreshed within its first half-life, then used for the next exports.
    let deadline = Instant::now() + Duration::from_secs(10);
    while endpoint.issued.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the token was not refreshed");
        std::thread::sleep(Duration::from_millis(50));
    }
    receiver.clear();
    {
        let _cand = tel.create("search", "candidate-42").parents(["block-001"]).start();
    }
    tel.flush().unwrap();
    let bearers = receiver.bearers();
    assert_eq!(bearers.len(), 1);
    let token = bearers[0].clone().unwrap();
    assert!(token.starts_with("Bearer token-") && token != "Bearer token-1", "{token}");
    assert!(asked.load(Ordering::SeqCst) >= 2, "the credential function is asked at every fetch");
    tel.shutdown().unwrap();
}
