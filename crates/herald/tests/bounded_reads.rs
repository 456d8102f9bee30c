//! Bounded reads against the real binary on a 120 000-descendant provenance graph: a burst of
//! 200 concurrent lineage requests is served within the class limit (the rest 503 +
//! Retry-After), holds no more database connections than the pool, keeps memory bounded and
//! gives it back within a minute. On PostgreSQL a read past `--query-timeout` is stopped by
//! the server (the sessions' `statement_timeout`) and answered 503; writes are not bounded by it.

mod postgres_support;
mod support;

use std::time::{Duration, Instant};

use helix_model::builders::{pipeline_resource, traces, SpanBuilder};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use support::*;

const CHILDREN: usize = 100;

/// The big-graph tests run one at a time: each keeps both cores busy, and measures its herald.
static BIG_GRAPH: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const GRANDCHILDREN: usize = 1_200;

/// root → 100 children → 1 200 grandchildren each: 120 100 descendants of `root`.
async fn build_graph(herald: &Herald) {
    let mut client = raw_client(herald).await;
    let export = |spans: Vec<SpanBuilder>| -> ExportTraceServiceRequest {
        traces(pipeline_resource("svc", "BIG"), spans.into_iter().map(SpanBuilder::build).collect())
    };
    let mut n = 1u64;
    let mut next = || {
        n += 1;
        n
    };
    let first: Vec<SpanBuilder> = std::iter::once(SpanBuilder::creation("ingest", "root", next()))
        .chain((0..CHILDREN).map(|c| SpanBuilder::creation("search", &format!("c{c:03}"), next()).parents("root")))
        .collect();
    client.export(export(first)).await.expect("stored");
    for c in 0..CHILDREN {
        let spans = (0..GRANDCHILDREN)
            .map(|g| {
                SpanBuilder::creation("classify", &format!("c{c:03}-g{g:04}"), next()).parents(&format!("c{c:03}"))
            })
            .collect();
        client.export(export(spans)).await.expect("stored");
    }
}

/// Open descriptors of the herald on its database file itself (one per SQLite connection).
fn database_handles(herald: &Herald) -> usize {
    let db = herald.db_path();
    std::fs::read_dir(format!("/proc/{}/fd", herald.pid()))
        .map(|fds| fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok()).filter(|target| *target == db).count())
        .unwrap_or(0)
}

const LINEAGE: &str = "/api/v1/entity/root/lineage?direction=descendants&limit=100000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_lineage_requests_is_bounded_in_connections_and_memory() {
    let _alone = BIG_GRAPH.lock().await;
    let pool = 4;
    let herald = Herald::start_with(HeraldOptions {
        // Twice as many walks as connections, so that some wait for one (within a budget long
        // enough for the shared machine).
        args: [
            "--store-spans=false",
            "--db-connections",
            &pool.to_string(),
            "--max-lineage-requests",
            "8",
            "--query-timeout",
            "120s",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    });
    build_graph(&herald).await;
    let one = herald.get_ok(LINEAGE).await;
    assert_eq!(
        one["nodes"].as_array().map(Vec::len),
        Some(100_001),
        "the root and a full page of its 120 100 descendants"
    );
    drop(one);
    let baseline = herald.memory("VmRSS");
    let baseline_anon = herald.memory("RssAnon");

    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let started = Instant::now();
    let burst = futures_util::future::join_all((0..200).map(|_| {
        let (client, url) = (&client, herald.api_url(LINEAGE));
        async move {
            let response = client.get(url).send().await.expect("an answer");
            let retry_after = response.headers().contains_key("retry-after");
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            (status, retry_after, body)
        }
    }));
    let watch = async {
        let (mut peak_rss, mut peak_handles) = (0, 0);
        while started.elapsed() < Duration::from_secs(120) {
            peak_rss = peak_rss.max(herald.memory("VmRSS"));
            peak_handles = peak_handles.max(database_handles(&herald));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (peak_rss, peak_handles)
    };
    let (outcomes, (peak_rss, peak_handles)) = tokio::select! {
        outcomes = burst => (outcomes, (herald.memory("VmHWM"), database_handles(&herald))),
        _ = watch => panic!("the burst took more than two minutes"),
    };
    let took = started.elapsed();
    let served = outcomes.iter().filter(|(s, ..)| *s == 200).count();
    let refused: Vec<_> = outcomes.iter().filter(|(s, ..)| *s == 503).collect();
    eprintln!(
        "200 lineage requests in {took:?}: {served} served, {} refused; RSS {} MB before, peak {} MB; {peak_handles} database handles",
        refused.len(),
        baseline / 1_000_000,
        peak_rss / 1_000_000
    );
    assert_eq!(served + refused.len(), 200, "every request is served or refused");
    assert!(served >= 8, "at least the class limit is served");
    for (_, retry_after, body) in &refused {
        assert!(*retry_after, "503 with Retry-After");
        assert!(body.contains("--max-lineage-requests"), "{body}");
    }
    assert!(peak_rss < 1_000_000_000, "peak RSS {} MB", peak_rss / 1_000_000);
    // The readers, the writer and the checkpoint thread's connection (docs/storage.md "Checkpoints").
    assert!(
        peak_handles <= pool + 2,
        "{peak_handles} handles on the database: the readers, the writer and the checkpointer at most"
    );

    // After the burst the herald gives the memory back: within 60 s its anonymous memory (what
    // it allocated) is within 20 % of what it was before. RSS also counts the database file's
    // pages mapped by each reader connection (mmap), the kernel's page cache, which every
    // reader that walked the graph keeps mapped and the kernel reclaims when it needs to.
    let burst_ended = Instant::now();
    let anon_baseline = baseline_anon;
    let mut after = herald.memory("RssAnon");
    while after > anon_baseline + anon_baseline / 5 && burst_ended.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        after = herald.memory("RssAnon");
    }
    eprintln!(
        "anonymous memory {} MB {:?} after the burst (baseline {} MB); RSS {} MB (baseline {} MB)",
        after / 1_000_000,
        burst_ended.elapsed(),
        anon_baseline / 1_000_000,
        herald.memory("VmRSS") / 1_000_000,
        baseline / 1_000_000
    );
    assert!(
        after <= anon_baseline + anon_baseline / 5,
        "anonymous memory {} MB a minute after the burst, baseline {} MB",
        after / 1_000_000,
        anon_baseline / 1_000_000
    );
    assert_eq!(herald.get_text("/healthz").await.0, 200);
}

/// On PostgreSQL the sessions carry `--query-timeout` as `statement_timeout`: a read stuck
/// behind a lock is stopped by the server and answered 503 + Retry-After saying to narrow it,
/// while a write stuck behind the same lock waits it out and is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_read_past_the_query_timeout_is_stopped_with_503_and_a_write_is_not() {
    let db = postgres_support::TestDb::create(&postgres_support::pg_url(), "qtimeout").await;
    let herald = Herald::start_with(HeraldOptions {
        db_url: Some(db.url.clone()),
        args: ["--query-timeout", "500ms"].map(String::from).to_vec(),
        ..Default::default()
    });
    let export =
        |id: &str, n: u64| traces(pipeline_resource("svc", "PG"), vec![SpanBuilder::creation("ingest", id, n).build()]);
    let mut client = raw_client(&herald).await;
    client.export(export("e-1", 1)).await.expect("stored");
    herald.get_ok("/api/v1/entity/e-1").await;

    // Another session holds the entities table: every statement on it waits.
    let locker = db.client().await;
    locker.batch_execute("BEGIN; LOCK TABLE entities IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let bounded = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let response = bounded.get(herald.api_url("/api/v1/entity/e-1")).send().await.expect("an answer, not a hang");
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"), "503 with Retry-After");
    let body = response.text().await.unwrap();
    assert!(body.contains("--query-timeout") && body.contains("narrow it"), "{body}");

    // A write behind the same lock is not cut by the read budget: it waits, then is acknowledged.
    let write = tokio::spawn(async move { client.export(export("e-2", 2)).await });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(!write.is_finished(), "the write waited for the lock past the read budget: {:?}", write.await);
    locker.batch_execute("COMMIT").await.unwrap();
    write.await.unwrap().expect("the write is acknowledged once the lock is gone");
    herald.get_ok("/api/v1/entity/e-2").await;
    assert!(herald.log().contains("api query stopped at its budget"), "{}", herald.log());
}

/// CPU time the herald has used so far (user + system), in seconds (`/proc/PID/stat`).
fn cpu_seconds(herald: &Herald) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", herald.pid())).expect("/proc/PID/stat");
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat format") + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a configuration value.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Clients that hang up on slow lineage walks after 1 s: within 2 s the herald stops working
/// on them (hyper does not read while answering, so the listener watches the socket's state).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_hang_up_on_slow_walks_stop_their_cpu_use_within_two_seconds() {
    let _alone = BIG_GRAPH.lock().await;
    let herald = Herald::start_with(HeraldOptions {
        args: ["--store-spans=false", "--max-lineage-requests", "32", "--query-timeout", "600s"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    });
    build_graph(&herald).await;
    // What one walk costs when answered in full; enough walks are abandoned that, were they
    // not stopped, they would keep both cores busy well past the 2 s.
    let before = cpu_seconds(&herald);
    herald.get_ok(LINEAGE).await;
    let one_walk = cpu_seconds(&herald) - before;
    let walks = ((12.0 / one_walk.max(0.1)).ceil() as usize).clamp(4, 32);

    let sockets: Vec<std::net::TcpStream> = (0..walks)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(herald.api).unwrap();
            std::io::Write::write_all(&mut s, format!("GET {LINEAGE} HTTP/1.1\r\nhost: herald\r\n\r\n").as_bytes())
                .unwrap();
            s
        })
        .collect();
    let at_start = cpu_seconds(&herald);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let busy = cpu_seconds(&herald) - at_start;
    drop(sockets);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_grace = cpu_seconds(&herald);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = cpu_seconds(&herald) - after_grace;
    eprintln!(
        "one walk {one_walk:.2} CPU-s; {walks} walks: {busy:.2} CPU-s in the first second, {idle:.2} CPU-s in the 2 s \
         starting 2 s after the hang-up"
    );
    assert!(busy > 0.5, "the walks were running when their clients hung up ({busy:.2} CPU-s in 1 s)");
    assert!(idle < 0.3, "{idle:.2} CPU-s used 2-4 s after the clients hung up");
    // The herald still answers (the abandoned walks gave their slots back).
    herald.get_ok("/api/v1/entity/root").await;
}
