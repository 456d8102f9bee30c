//! PostgreSQL-only behaviour the shared suite cannot see: migrations and their refusals,
//! replicas migrating at the same time, atomicity of a failed batch, an unreachable server
//! reported as transient without the password, and the retention job of plain PostgreSQL.

mod postgres_support;

use std::time::Duration;

use helix_store::conformance::{creation, event, log, operation};
use helix_store::postgres::{migrate, RetentionConfig, SCHEMA_VERSION};
use helix_store::{PostgresOptions, PostgresStore, Store, StoreError, WriteBatch, WriteRecord};
use postgres_support::*;

async fn versions(schema: &str) -> Vec<(i32, String)> {
    raw_client(schema)
        .await
        .query("SELECT version, name FROM schema_migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_recorded_and_applied_once() {
    let (store, guard) = fresh("mig").await;
    let v = versions(&guard.schema).await;
    assert_eq!(v.iter().map(|(n, _)| *n as u32).collect::<Vec<_>>(), (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    assert_eq!(v[3].1, "spans", "plain tables without TimescaleDB: {v:?}");
    assert_eq!(v[4].1, "log_search");
    assert!(v[2].1.starts_with("timescale"), "the TimescaleDB step is recorded either way: {v:?}");
    assert!(!store.uses_timescale().await.unwrap(), "plain PostgreSQL here");
    drop(store);
    assert_eq!(migrate(&pg_url(), Some(&guard.schema)).await.unwrap(), Vec::<u32>::new());
    let no_migrate = PostgresOptions { migrate: false, ..test_options(&guard.schema) };
    PostgresStore::open(&pg_url(), no_migrate).await.expect("a current schema opens without migrating");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once() {
    let schema = unique_schema("race");
    let _guard = SchemaGuard { url: pg_url(), schema: schema.clone() };
    let opens = (0..4).map(|_| {
        let schema = schema.clone();
        tokio::spawn(async move { PostgresStore::open(&pg_url(), test_options(&schema)).await })
    });
    for o in opens {
        o.await.unwrap().expect("every replica opens");
    }
    assert_eq!(versions(&schema).await.len(), SCHEMA_VERSION as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_newer_and_failed_schemas_are_refused() {
    let schema = unique_schema("refuse");
    let guard = SchemaGuard { url: pg_url(), schema: schema.clone() };
    raw_client(&schema).await.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
    // Behind, without permission to migrate.
    let err =
        PostgresStore::open(&pg_url(), PostgresOptions { migrate: false, ..test_options(&schema) }).await.unwrap_err();
    assert!(matches!(&err, StoreError::Schema(m) if m.contains("herald migrate")), "{err:?}");
    // A foreign table in the way makes migration 1 fail: refused, nothing recorded.
    let client = raw_client(&schema).await;
    client.batch_execute("CREATE TABLE entities (x INTEGER)").await.unwrap();
    let err = PostgresStore::open(&pg_url(), test_options(&schema)).await.unwrap_err();
    assert!(matches!(&err, StoreError::Schema(m) if m.contains("001_core") && m.contains("failed")), "{err:?}");
    assert_eq!(client.query_one("SELECT count(*) FROM schema_migrations", &[]).await.unwrap().get::<_, i64>(0), 0);
    // Newer than this binary.
    client.batch_execute("DROP TABLE entities").await.unwrap();
    drop(PostgresStore::open(&pg_url(), test_options(&schema)).await.unwrap());
    client.batch_execute("INSERT INTO schema_migrations (version, name) VALUES (99, 'future')").await.unwrap();
    let err = PostgresStore::open(&pg_url(), test_options(&schema)).await.unwrap_err();
    assert!(matches!(&err, StoreError::Schema(m) if m.contains("99") && m.contains("newer")), "{err:?}");
    assert!(migrate(&pg_url(), Some(&schema)).await.is_err());
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_batch_leaves_no_partial_rows() {
    let (store, guard) = fresh("atomic").await;
    raw_client(&guard.schema)
        .await
        .batch_execute(
            "CREATE FUNCTION reject_boom() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN RAISE EXCEPTION 'rejected for the test'; END $$;
             CREATE TRIGGER reject_boom BEFORE INSERT ON entity_operations
                 FOR EACH ROW WHEN (NEW.operation = 'boom') EXECUTE FUNCTION reject_boom();",
        )
        .await
        .unwrap();
    helix_store::conformance::failed_batch_leaves_no_partial_rows(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_transient_and_the_password_is_never_shown() {
    // Nothing listens on port 1 of loopback.
    let url = "postgres://helix:hunter2@127.0.0.1:1/helix";
    let err = PostgresStore::open(
        url,
        PostgresOptions { connect_timeout: Duration::from_secs(2), retention: None, ..Default::default() },
    )
    .await
    .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let text = err.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("helix:***@127.0.0.1:1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_operations_events_and_logs_but_keeps_entities() {
    let (store, guard) = fresh("ret").await;
    let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    let day = 86_400_000_000_000i64;
    // The conformance builders date records at T0 (2024): "old". Shift some to now: "recent".
    let shift = now_ns - helix_store::conformance::T0;
    let mut records = Vec::new();
    for i in 0..30 {
        let id = format!("old-{i}");
        let mut c = creation(&id, &[], i);
        c.events = vec![event(&id, &c.trace_id, &c.span_id, "helix.event.x", 0, i)];
        records.push(WriteRecord::Created(c));
        records.push(WriteRecord::Operation(operation(&id, "op", &format!("old-op-{i}"), i)));
        records.push(WriteRecord::Log(log(i, "old", None, Some(&id))));
    }
    let mut recent = operation("old-0", "op", "recent-op", shift - day);
    recent.events = vec![event("old-0", &recent.trace_id, &recent.span_id, "helix.event.y", 0, shift - day)];
    records.push(WriteRecord::Operation(recent));
    records.push(WriteRecord::Log(log(shift - day, "recent", None, Some("old-0"))));
    store.write(&WriteBatch::of(records)).await.unwrap();

    let cfg = RetentionConfig {
        batch_rows: 7, // several batches per table
        pause: Duration::from_millis(1),
        ..RetentionConfig::default()
    };
    let report = store.run_retention(&cfg).await.unwrap();
    assert_eq!(report.deleted, [("entity_operations", 30), ("entity_events", 30), ("logs", 30)]);
    assert!(report.hypertables.is_empty());
    let client = raw_client(&guard.schema).await;
    let count = |sql: &'static str| {
        let client = &client;
        async move { client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(count("SELECT count(*) FROM entities").await, 30, "entities are kept");
    assert_eq!(count("SELECT count(*) FROM entity_operations").await, 1);
    assert_eq!(count("SELECT count(*) FROM entity_events").await, 1);
    assert_eq!(count("SELECT count(*) FROM logs").await, 1);
    // Keep-forever settings delete nothing.
    let keep = RetentionConfig { operations: None, events: None, logs: None, ..cfg };
    assert!(!keep.enabled());
    assert!(store.run_retention(&keep).await.unwrap().deleted.is_empty());
}

/// An event's outbox row holds no copy of the event's metadata (009_outbox_slim.sql): the
/// retention job keeps an event until its notification is delivered, then deletes it; if the
/// event row is gone anyway (a TimescaleDB chunk dropped), the notification is still delivered
/// as its class with a message saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_an_event_until_its_notification_is_delivered() {
    use helix_store::conformance::{failing, notifying, LEASE_NS};
    use helix_store::notify::{RoundWrites, Settle};
    let (store, guard) = fresh("ntret").await;
    // Dated T0 (2024): older than any retention age.
    let (old, gone) = (failing("old-err", 0), failing("gone-err", 10));
    store.write(&notifying(vec![WriteRecord::Created(old.clone()), WriteRecord::Created(gone.clone())])).await.unwrap();
    let client = raw_client(&guard.schema).await;
    let copies: i64 = client
        .query_one("SELECT count(*) FROM notification_outbox WHERE metadata IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(copies, 0, "no copy of the events' metadata in the outbox");
    let cfg =
        RetentionConfig { operations: None, logs: None, pause: Duration::from_millis(1), ..RetentionConfig::default() };
    assert_eq!(store.run_retention(&cfg).await.unwrap().deleted, [("entity_events", 0)], "both wait for delivery");
    let notify = store.notify().unwrap();
    let now = helix_store::notify::now_ns();
    let mut items = notify.claim_outbox("d", now, LEASE_NS, 10).await.unwrap();
    items.sort_by(|a, b| a.entity_id.cmp(&b.entity_id));
    assert_eq!(items.iter().map(|i| i.entity_id.as_str()).collect::<Vec<_>>(), ["gone-err", "old-err"]);
    assert_eq!(items[1].metadata, old.events[0].metadata, "read from the event row");
    assert_eq!(items[1].timestamp_ns, old.events[0].timestamp_ns);
    // old-err delivered: its event goes with the next pass. gone-err handed back, and its
    // event row dropped behind the job's back.
    let writes = RoundWrites {
        settle: vec![
            Settle::Finish { id: items[1].id },
            Settle::Retry {
                id: items[0].id,
                attempts: 1,
                next_ns: now,
                error: "HTTP 500".into(),
                progress: Default::default(),
            },
        ],
        ..Default::default()
    };
    notify.write_round("d", now, &writes).await.unwrap();
    assert_eq!(store.run_retention(&cfg).await.unwrap().deleted, [("entity_events", 1)]);
    let left: Vec<String> =
        client.query("SELECT entity_id FROM entity_events", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(left, ["gone-err"]);
    client.execute("DELETE FROM entity_events WHERE entity_id = 'gone-err'", &[]).await.unwrap();
    let after = notify.claim_outbox("d", now, LEASE_NS, 10).await.unwrap();
    assert_eq!(after.len(), 1, "still there to deliver");
    let (b, a) = (&items[0], &after[0]);
    assert_eq!(
        (&a.instrument_id, &a.event_name, &a.entity_id, &a.fingerprint, &a.stage),
        (&b.instrument_id, &b.event_name, &b.entity_id, &b.fingerprint, &b.stage)
    );
    assert_eq!(a.metadata["message"], helix_store::notify::OCCURRENCE_GONE);
}
