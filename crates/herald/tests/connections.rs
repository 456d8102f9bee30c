//! Connection hygiene against the real binary: fifteen thousand idle connections to the API
//! port do not take the herald down — the cap refuses what is over it, `/healthz` answers, the
//! other listeners ingest, the refusals are logged as a rate, and the herald closes the idle
//! sockets after its idle timeout.

mod support;

use std::time::{Duration, Instant};

use helix_model::builders::{pipeline_resource, traces, SpanBuilder};
use prost::Message;
use support::*;

const IDLE: usize = 15_000;

/// Raise this test's open-files limit to what it needs (within the hard limit).
fn allow_open_files(wanted: u64) -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        let raised =
            libc::rlimit { rlim_cur: wanted.min(limit.rlim_max).max(limit.rlim_cur), rlim_max: limit.rlim_max };
        libc::setrlimit(libc::RLIMIT_NOFILE, &raised);
        raised.rlim_cur
    }
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifteen_thousand_idle_connections_leave_health_and_ingest_working_and_are_closed() {
    let limit = allow_open_files(IDLE as u64 + 2_000);
    assert!(limit >= IDLE as u64 + 1_000, "this test needs {} open files; the hard limit is {limit}", IDLE + 1_000);
    // The default connection cap; a short idle timeout so the test need not wait a minute.
    let herald = Herald::start_with(HeraldOptions {
        args: vec!["--http-idle-timeout".into(), "20s".into()],
        ..Default::default()
    });
    let before = open_files(herald.pid());

    let opening = Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        match tokio::net::TcpStream::connect(herald.api).await {
            Ok(stream) => idle.push(stream),
            Err(e) => panic!("connection {} to the API port failed: {e}", idle.len()),
        }
    }
    let during = open_files(herald.pid());
    eprintln!(
        "herald open files: {before} before, {during} with {IDLE} idle connections (opened in {:?})",
        opening.elapsed()
    );
    assert!(during < before + 4096 + 200, "the cap (4096) bounds the herald's sockets, not the file limit: {during}");

    // A probe gives up after 1 s, as orchestrators' probes do. Reserve places held by idle
    // sockets are freed after a second.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let probe = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    let started = Instant::now();
    let health = probe.get(herald.api_url("/healthz")).send().await.expect("/healthz answers within 1 s");
    eprintln!("/healthz answered in {:?} with {IDLE} idle connections open", started.elapsed());
    assert_eq!(health.status(), 200);
    let ready = probe.get(herald.api_url("/readyz")).send().await.expect("/readyz answers within 1 s");
    assert_eq!(ready.status(), 200);
    let busy = probe.get(herald.api_url("/api/v1/instruments")).send().await.expect("an answer");
    assert_eq!(busy.status(), 503, "the API says it is full");
    assert!(busy.headers().contains_key("retry-after"));

    let export = traces(pipeline_resource("svc", "CONN"), vec![SpanBuilder::creation("ingest", "conn-1", 1).build()]);
    let ingested = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", herald.http))
        .header("content-type", "application/x-protobuf")
        .body(export.encode_to_vec())
        .send()
        .await
        .expect("OTLP/HTTP answers");
    assert_eq!(ingested.status(), 200, "OTLP/HTTP has its own connections");

    // The herald closes every idle socket: the ones over the cap at once, the rest after the idle timeout.
    let all_closed = eventually(Duration::from_secs(30), async || {
        let open = idle.iter().filter(|s| !is_closed(s)).count();
        (open == 0).then_some(())
    })
    .await;
    let () = all_closed;
    let after = open_files(herald.pid());
    eprintln!("herald open files after the idle timeout: {after}");
    assert!(after < before + 50, "the herald let its sockets go: {after} open files (was {before})");
    assert_eq!(herald.get("/api/v1/entity/conn-1").await.0, 200, "the API serves again");

    // The refusals are one line per ten seconds, not one per socket.
    let log = eventually(Duration::from_secs(15), async || {
        let log = herald.log();
        log.contains("connections over --max-connections").then_some(log)
    })
    .await;
    let lines = log.lines().filter(|l| l.contains("connections over --max-connections")).count();
    assert!(lines <= 3, "{lines} lines about refused connections");
}

/// Whether the peer has closed the socket (end of file, or reset).
fn is_closed(stream: &tokio::net::TcpStream) -> bool {
    match stream.try_read(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}
