//! Concurrency against a real herald: many tasks on a multi-thread runtime, guards that move
//! between threads, panics inside tracked steps, and a burst flushed by `shutdown()`.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{s, tel, Herald};
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

/// The spans of the trace of `entity`'s creation, with the entity row.
fn creation_trace(herald: &Herald, entity: &str) -> (Value, Vec<Value>) {
    let row = herald.created(entity);
    let trace = herald.trace(s(&row["trace_id"]));
    (row, trace["spans"].as_array().unwrap().clone())
}

#[test]
fn a_thousand_tasks_each_with_its_own_child_span() {
    let herald = Herald::start();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    let tel = tel(&herald);
    let logs = tracing::Dispatch::new(tracing_subscriber::registry().with(tel.tracing_layer()));
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..1000 {
            let tel = tel.clone();
            let task = async move {
                let id = format!("cand-{i:04}");
                if i % 2 == 0 {
                    // The async form: the step follows the future across .await and threads.
                    tel.create("search", &id)
                        .parents(["block-001"])
                        .in_scope(async {
                            tokio::task::yield_now().await;
                            let _filter = tel.child_span("filter");
                            tokio::time::sleep(Duration::from_millis(1 + (i % 7) as u64)).await;
                            tracing::info!("searched {id}");
                            let _nested = tel.child_span("score");
                        })
                        .await;
                } else {
                    // A guard from start() in synchronous code inside a task.
                    let _token = tel.create("search", &id).parents(["block-001"]).start();
                    let _filter = tel.child_span("filter");
                    tracing::info!("searched {id}");
                    let _nested = tel.child_span("score");
                }
            };
            tasks.push(tokio::spawn(task.with_subscriber(logs.clone())));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    tel.flush().unwrap();

    for i in 0..1000 {
        let id = format!("cand-{i:04}");
        let (row, spans) = creation_trace(&herald, &id);
        assert_eq!(spans.len(), 3, "{id}: {spans:?}");
        let by_name = |n: &str| spans.iter().find(|x| x["name"] == n).unwrap_or_else(|| panic!("{id}: no {n}"));
        let (creation, filter, score) = (by_name("search"), by_name("filter"), by_name("score"));
        assert_eq!(creation["parent_span_id"], Value::Null, "{id}: a creation at the top of its task is a root");
        assert_eq!(filter["parent_span_id"], row["span_id"], "{id}");
        assert_eq!(score["parent_span_id"], filter["span_id"], "{id}");
        assert_eq!(filter["attributes"]["helix.log.entity_id"], id.as_str());
        assert_eq!(score["attributes"]["helix.log.entity_id"], id.as_str());
        let lines = herald.logs(&id);
        assert_eq!(lines.len(), 1, "{id}: {lines:?}");
        assert_eq!(lines[0]["body"], format!("searched {id}"));
        assert_eq!(lines[0]["attributes"]["helix_entity_id"], id.as_str());
        assert_eq!(lines[0]["span_id"], filter["span_id"], "{id}");
    }
    let stages = herald.get("/api/v1/stages?instrument=MY_INST");
    assert_eq!(stages[0]["count"], 1000);
}

#[test]
fn a_guard_moved_to_another_thread_completes_there() {
    let herald = Herald::start();
    let tel = tel(&herald);
    let token = tel.create("search", "candidate-42").parents(["block-001"]).start();
    let moved_span = token.span_context();
    std::thread::spawn(move || {
        token.set_attribute("worker", "thread-2");
        token.complete_with([("score", 0.97)]);
    })
    .join()
    .unwrap();
    // The finished step is not the current span of the thread that started it any more.
    {
        let _next = tel.create("ingest", "block-002").start();
        let _child = tel.child_span("read");
    }
    // Explicit tokens started here (each current until it ends, as in the Python client),
    // completed by several threads in reverse order.
    let tokens: Vec<_> =
        (0..8).map(|i| tel.create("search", format!("cand-{i}")).parents(["block-001"]).start()).collect();
    {
        let _block = tel.create("ingest", "block-001").start();
        let _child = tel.child_span("read-block");
    }
    let threads: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .rev()
        .map(|(i, t)| std::thread::spawn(move || t.complete_with([("worker", i as i64)])))
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // None of the finished candidates is current here any more.
    {
        let _after = tel.create("ingest", "block-003").start();
    }
    tel.flush().unwrap();

    let cand = herald.created("candidate-42");
    assert_eq!(cand["status"], "ok");
    assert_eq!(cand["metadata"]["worker"], "thread-2");
    assert_eq!(cand["metadata"]["score"], "0.97");
    assert_eq!(s(&cand["span_id"]), moved_span.span_id().to_string());
    let (next, spans) = creation_trace(&herald, "block-002");
    assert_ne!(next["trace_id"], cand["trace_id"]);
    assert_eq!(spans.len(), 2);
    let read = spans.iter().find(|x| x["name"] == "read").unwrap();
    assert_eq!(read["attributes"]["helix.log.entity_id"], "block-002");
    for i in 0..8 {
        let c = herald.created(&format!("cand-{i}"));
        assert_eq!(c["metadata"]["worker"], i.to_string());
        assert_eq!(c["parent_ids"], json!(["block-001"]));
    }
    // The eight candidates and candidate-42.
    assert_eq!(herald.lineage("block-001", "descendants")["edges"].as_array().unwrap().len(), 9);
    let (_, spans) = creation_trace(&herald, "block-001");
    let read = spans.iter().find(|x| x["name"] == "read-block").unwrap();
    assert_eq!(read["attributes"]["helix.log.entity_id"], "block-001");
    let (_, spans) = creation_trace(&herald, "block-003");
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0]["parent_span_id"], Value::Null);
}

#[test]
fn a_guard_moved_between_tasks_completes_there() {
    let herald = Herald::start();
    let tel = tel(&herald);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let starter = tokio::spawn({
            let tel = tel.clone();
            async move {
                let token = tel.create("ingest", "block-001").start();
                tx.send(token).unwrap();
                done_rx.await.unwrap();
                // Completed by the other task: no longer current in this one.
                let _other = tel.create("ingest", "block-002").start();
            }
        });
        let finisher = tokio::spawn(async move {
            let token = rx.await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            token.complete_with([("finished_by", "task-2")]);
            done_tx.send(()).unwrap();
        });
        starter.await.unwrap();
        finisher.await.unwrap();
    });
    tel.flush().unwrap();
    let block = herald.created("block-001");
    assert_eq!(block["metadata"]["finished_by"], "task-2");
    let other = herald.created("block-002");
    assert_ne!(other["trace_id"], block["trace_id"]);
}

#[test]
fn a_panic_inside_a_tracked_step_records_helix_error() {
    let herald = Herald::start();
    let tel = tel(&herald);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let step = tel.create("search", "cand-async").parents(["block-001"]).in_scope(async {
            tokio::task::yield_now().await;
            panic!("bad block {}", 7);
        });
        let joined = tokio::spawn(step).await;
        assert!(joined.unwrap_err().is_panic());
        // The sibling in the same runtime after it is fine.
        tel.create("search", "cand-ok").in_scope(async {}).await;
    });
    // A panic in a synchronous step on a worker thread.
    let _ = std::thread::spawn({
        let tel = tel.clone();
        move || {
            let _token = tel.operate("archive", "cand-ok").start();
            let _child = tel.child_span("write");
            panic!("disk full");
        }
    })
    .join();
    tel.flush().unwrap();

    let failed = herald.created("cand-async");
    assert_eq!(failed["status"], "error");
    let events = herald.events("cand-async");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event_name"], "helix.error");
    assert_eq!(events[0]["metadata"], json!({"message": "panic", "exception.message": "bad block 7"}));
    assert_eq!(herald.created("cand-ok")["status"], "error"); // the archive operation failed it
    let ops = herald.operations("cand-ok");
    assert_eq!(ops.len(), 2);
    let archive = &ops[1];
    let spans = herald.trace(s(&archive["trace_id"]))["spans"].as_array().unwrap().clone();
    let write = spans.iter().find(|x| x["name"] == "write").unwrap();
    assert_eq!(write["status"]["code"], "error");
    assert_eq!(write["status"]["message"], "panic: disk full");
}

#[test]
fn shutdown_after_a_burst_loses_nothing() {
    let herald = Herald::start();
    let tel = tel(&herald);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let tel = tel.clone();
            std::thread::spawn(move || {
                for i in 0..2500 {
                    let token = tel.create("burst", format!("b-{t}-{i:05}")).start();
                    token.set_attribute("i", i);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    tel.shutdown().unwrap(); // no flush before: shutdown alone delivers the queue
    let stages = herald.get("/api/v1/stages?instrument=MY_INST");
    assert_eq!(
        stages,
        json!([{"stage": "burst", "count": 10000, "error_count": 0, "last_seen_ns": stages[0]["last_seen_ns"]}])
    );
    herald.created("b-3-02499");
}
