//! TLS on the OTLP and API listeners (`--tls-cert` / `--tls-key`): the real OTLP exporters
//! deliver over TLS with a test CA, plain text to a TLS port fails cleanly while the herald
//! keeps serving, and SIGHUP swaps the certificate for new connections only (a bad file on
//! reload keeps the old one). The CA and certificates are made here, at test time.

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use opentelemetry::trace::{Tracer, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use support::{enc, Herald, HeraldOptions};

/// A certificate authority made for one test.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        TestCa { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for 127.0.0.1 and localhost, written as `<name>.crt` / `<name>.key`.
    fn server_files(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

/// A herald whose OTLP and API listeners use `cert`/`key`, plus extra flags.
fn tls_herald(cert: &Path, key: &Path, extra: &[&str]) -> Herald {
    let mut args = vec!["--tls-cert".to_owned(), path(cert), "--tls-key".to_owned(), path(key)];
    args.extend(extra.iter().map(|s| s.to_string()));
    Herald::start_with(HeraldOptions { args, ..Default::default() })
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// An HTTPS client that trusts only `ca` (no system roots), keeping connections open.
fn https_client(ca: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .pool_idle_timeout(Duration::from_secs(300))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A gRPC channel over TLS that trusts only `ca`.
async fn grpc_tls_channel(herald: &Herald, ca: &str) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let tls = tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(ca));
    tonic::transport::Endpoint::from_shared(format!("https://{}", herald.grpc))?.tls_config(tls)?.connect().await
}

/// One creation span, as the raw OTLP protobuf types carry it.
fn creation(id: &str) -> ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue as Kv};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let kv = |k: &str, v: &str| Kv {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut trace_id = [0u8; 16];
    trace_id[..id.len().min(16)].copy_from_slice(&id.as_bytes()[..id.len().min(16)]);
    trace_id[15] = 1;
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "tls-test"), kv("helix.instrument.id", "TLS")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: trace_id.to_vec(),
                    span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
                    name: "acquire".into(),
                    start_time_unix_nano: now,
                    end_time_unix_nano: now + 1_000,
                    attributes: vec![kv("helix.entity.id", id)],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn entity_status(client: &reqwest::Client, herald: &Herald, id: &str) -> reqwest::Result<u16> {
    let url = format!("https://{}/api/v1/entity/{}", herald.api, enc(id));
    Ok(client.get(url).send().await?.status().as_u16())
}

/// Wait (bounded) for a line of the herald's log.
async fn log_line(herald: &Herald, needle: &str) {
    support::eventually(Duration::from_secs(20), async || herald.log().contains(needle).then_some(())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_otlp_exporters_deliver_over_tls_with_a_test_ca_and_the_api_shows_the_spans() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("helix test CA");
    let (cert, key) = ca.server_files(dir.path(), "herald");
    let herald = tls_herald(&cert, &key, &[]);
    assert!(herald.log().contains("listening on") && herald.log().contains("(TLS)"), "{}", herald.log());

    let retry =
        || opentelemetry_otlp::RetryPolicy::default().with_max_retries(5).with_max_delay(Duration::from_millis(500));
    let grpc = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("https://{}", herald.grpc))
        .with_tls_config(
            tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(ca.pem())),
        )
        .with_retry_policy(retry())
        .build()
        .unwrap();

    // The SDK's gRPC exporter over TLS. The OTLP/HTTP leg posts the protobuf request with an
    // HTTPS client that trusts the test CA: the SDK's HTTP exporter takes a reqwest 0.13 client,
    // whose TLS needs a crypto provider chosen for the whole workspace build.
    let processor = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
        grpc,
        opentelemetry_sdk::runtime::Tokio,
    )
    .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("tls-pipeline")
        .with_attribute(KeyValue::new("helix.instrument.id", "TLS"))
        .build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("tls-test");
    tracer.in_span("acquire", |cx| {
        use opentelemetry::trace::TraceContextExt;
        cx.span().set_attribute(KeyValue::new("helix.entity.id", "tls-grpc-1"));
    });
    let flushed = provider.clone();
    tokio::task::spawn_blocking(move || flushed.force_flush()).await.unwrap().expect("export acknowledged over TLS");
    tokio::task::spawn_blocking(move || provider.shutdown()).await.unwrap().unwrap();

    let posted = https_client(&ca.pem())
        .post(format!("https://{}/v1/traces", herald.http))
        .header("content-type", "application/x-protobuf")
        .body(creation("tls-http-1").encode_to_vec())
        .send()
        .await
        .expect("OTLP/HTTP over TLS");
    assert_eq!(posted.status(), 200, "{:?}", posted.text().await);

    let api = https_client(&ca.pem());
    for id in ["tls-grpc-1", "tls-http-1"] {
        let body: serde_json::Value = api
            .get(format!("https://{}/api/v1/entity/{id}", herald.api))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["entity"]["id"], id, "{body}");
        assert_eq!(body["entity"]["stage"], "acquire", "{body}");
    }
    // The health checks and the metrics on the API listener are TLS too; the metrics listener is not.
    assert_eq!(api.get(format!("https://{}/healthz", herald.api)).send().await.unwrap().status(), 200);
    assert!(herald.metric("helix_spans_received_total", &[]).await >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_to_a_tls_port_fails_cleanly_and_the_herald_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("helix test CA");
    let (cert, key) = ca.server_files(dir.path(), "herald");
    // A short idle timeout bounds the handshake too.
    let mut herald = tls_herald(&cert, &key, &["--http-idle-timeout", "1s"]);

    // Plain HTTP to the API and OTLP/HTTP ports: a 400 that says to use https.
    let plain = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    for url in [format!("http://{}/healthz", herald.api), format!("http://{}/v1/traces", herald.http)] {
        let response = plain.get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(response.status(), 400, "{url}");
        let body = response.text().await.unwrap();
        assert!(body.contains("speaks TLS") && body.contains("https://"), "{url}: {body}");
    }

    // Plain-text gRPC: the export fails (the connection is closed), it does not hang.
    let plain_grpc = tokio::time::timeout(Duration::from_secs(20), async {
        let mut client = TraceServiceClient::connect(herald.grpc_url()).await.map_err(|e| e.to_string())?;
        client.export(creation("plain-grpc")).await.map(|_| ()).map_err(|s| s.to_string())
    })
    .await
    .expect("a plain-text gRPC export to a TLS port ends");
    assert!(plain_grpc.is_err(), "a plain-text export to the TLS port was accepted");

    // A client that opens a socket and never completes its hello is closed after the timeout.
    for addr in [herald.api, herald.grpc] {
        for hello in [&b""[..], &[0x16u8, 0x03, 0x01][..]] {
            let mut socket = std::net::TcpStream::connect(addr).unwrap();
            socket.write_all(hello).unwrap();
            socket.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            let started = Instant::now();
            let mut buf = [0u8; 64];
            let read = socket.read(&mut buf);
            assert!(
                matches!(read, Ok(0)) || read.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
                "{addr}: a stalled handshake was not closed: {read:?} after {:?}",
                started.elapsed()
            );
        }
    }

    // Still serving over TLS, on both OTLP ports and the API.
    let mut client = TraceServiceClient::new(grpc_tls_channel(&herald, &ca.pem()).await.unwrap());
    client.export(creation("after-plain")).await.expect("TLS export after the plain-text attempts");
    let api = https_client(&ca.pem());
    assert_eq!(entity_status(&api, &herald, "after-plain").await.unwrap(), 200);
    assert_eq!(entity_status(&api, &herald, "plain-grpc").await.unwrap(), 404, "the plain-text export stored nothing");
    assert!(herald.is_running());
    let log = herald.log();
    assert!(log.contains("TLS handshakes failed"), "the refusals are reported: {log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_serves_a_new_certificate_to_new_connections_keeps_open_ones_and_keeps_the_old_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (TestCa::new("old CA"), TestCa::new("new CA"));
    let (cert, key) = old_ca.server_files(dir.path(), "herald");
    let herald = tls_herald(&cert, &key, &[]);

    // Connections opened under the old certificate: an HTTP/1.1 keep-alive and a gRPC channel.
    let kept_api = https_client(&old_ca.pem());
    assert_eq!(entity_status(&kept_api, &herald, "none").await.unwrap(), 404);
    let mut kept_grpc = TraceServiceClient::new(grpc_tls_channel(&herald, &old_ca.pem()).await.unwrap());
    kept_grpc.export(creation("before-reload")).await.unwrap();

    // Replace the files with a certificate from another CA, then SIGHUP.
    let (fresh_cert, fresh_key) = new_ca.server_files(dir.path(), "fresh");
    std::fs::copy(&fresh_cert, &cert).unwrap();
    std::fs::copy(&fresh_key, &key).unwrap();
    herald.signal(libc::SIGHUP);
    log_line(&herald, "TLS certificate reloaded").await;

    // New connections get the new certificate: trusted with the new CA, refused with the old.
    let new_api = https_client(&new_ca.pem());
    assert_eq!(entity_status(&new_api, &herald, "before-reload").await.unwrap(), 200);
    let refused = entity_status(&https_client(&old_ca.pem()), &herald, "before-reload").await;
    assert!(refused.is_err(), "a new connection trusting only the old CA was accepted: {refused:?}");
    assert!(grpc_tls_channel(&herald, &old_ca.pem()).await.is_err(), "new gRPC connections get the new certificate");
    let mut new_grpc = TraceServiceClient::new(grpc_tls_channel(&herald, &new_ca.pem()).await.unwrap());
    new_grpc.export(creation("after-reload")).await.unwrap();

    // The connections opened before the reload keep working (a new one would be refused).
    kept_grpc.export(creation("kept-channel")).await.expect("the gRPC connection opened before the reload");
    assert_eq!(entity_status(&kept_api, &herald, "kept-channel").await.unwrap(), 200, "the kept HTTP connection");

    // A file that does not load is reported; the certificate in use stays.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    herald.signal(libc::SIGHUP);
    log_line(&herald, "TLS certificate not reloaded").await;
    let log = herald.log();
    assert!(log.contains(&format!("{} holds no certificate", cert.display())), "the error names the file: {log}");
    assert_eq!(entity_status(&https_client(&new_ca.pem()), &herald, "after-reload").await.unwrap(), 200);
    // A key that does not fit the certificate is refused too.
    std::fs::copy(&fresh_cert, &cert).unwrap();
    let (_, other_key) = new_ca.server_files(dir.path(), "other");
    std::fs::copy(&other_key, &key).unwrap();
    herald.signal(libc::SIGHUP);
    support::eventually(Duration::from_secs(20), async || {
        herald.log().contains("does not fit the certificate").then_some(())
    })
    .await;
    assert_eq!(entity_status(&https_client(&new_ca.pem()), &herald, "after-reload").await.unwrap(), 200);
    assert!(!herald.log().contains("PRIVATE KEY"), "no key material in the log");
}

/// `herald` with `args` and the loopback listeners, run to its exit: (success, stderr).
fn run_to_exit(args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("h.db").display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(support::LOOPBACK)
        .args(["--db-url", &db])
        .args(args)
        .env_remove("HELIX_TLS_CERT")
        .env_remove("HELIX_TLS_KEY")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_certificate_that_does_not_load_stops_the_start_with_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("helix test CA");
    let (cert, key) = ca.server_files(dir.path(), "herald");
    let (_, other_key) = ca.server_files(dir.path(), "other");
    let missing = dir.path().join("missing.crt");
    let (cert, key, other_key, missing) = (path(&cert), path(&key), path(&other_key), path(&missing));

    let (ok, err) = run_to_exit(&["--tls-cert", &missing, "--tls-key", &key]);
    assert!(!ok);
    assert!(
        err.contains(&format!("cannot read the TLS certificate (--tls-cert / HELIX_TLS_CERT) file {missing}")),
        "{err}"
    );

    let (ok, err) = run_to_exit(&["--tls-cert", &key, "--tls-key", &key]);
    assert!(!ok);
    assert!(err.contains("holds no certificate"), "{err}");

    let (ok, err) = run_to_exit(&["--tls-cert", &cert, "--tls-key", &cert]);
    assert!(!ok);
    assert!(err.contains("holds no usable private key"), "{err}");
    assert!(!err.contains("BEGIN"), "no file content in the error: {err}");

    let (ok, err) = run_to_exit(&["--tls-cert", &cert, "--tls-key", &other_key]);
    assert!(!ok);
    assert!(err.contains("does not fit the certificate"), "{err}");

    let (ok, err) = run_to_exit(&["--tls-cert", &cert]);
    assert!(!ok);
    assert!(err.contains("--tls-key"), "a certificate without its key is refused by the flags: {err}");
}
