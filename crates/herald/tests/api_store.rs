//! The HTTP API over a real SQLite store: JSON shapes of docs/api.md (compatible ones exactly),
//! pagination walks, hostile entity IDs through percent-encoded paths, 404s and 400s.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use helix_model::{EntityCreated, EntityEvent, EntitySpan, LogRecorded, Metadata, OperationRecorded, Status};
use helix_store::{SqliteOptions, SqliteStore, Store, WriteBatch, WriteRecord};
use herald::api::{app, ApiState};
use herald::metrics::Metrics;
use serde_json::{json, Value};
use tempfile::TempDir;
use tower::ServiceExt;

const INSTRUMENT: &str = "CHIME";
/// Base time of the fixture, ns.
const T0: i64 = 1_716_200_000_000_000_000;

/// An app over a fresh SQLite file; the directory lives as long as the harness.
struct Harness {
    app: Router,
    store: Arc<SqliteStore>,
    _dir: TempDir,
    next_span: u64,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(SqliteStore::open(&dir.path().join("herald.db"), SqliteOptions::default()).expect("open"));
        let metrics = Arc::new(Metrics::new());
        let auth = Arc::new(herald::auth::Auth::off(metrics.clone()));
        let state = ApiState {
            store: store.clone(),
            metrics,
            spans_stored: true,
            loki_scan_lines: herald::api::loki::DEFAULT_SCAN_LINES,
            prov_namespace: herald::export::DEFAULT_NAMESPACE.into(),
            auth,
            platform: herald::canary::PlatformStatus::disabled(),
        };
        Harness { app: app(state), store, _dir: dir, next_span: 1 }
    }

    fn span(&mut self) -> (String, String) {
        let n = self.next_span;
        self.next_span += 1;
        (format!("{n:032x}"), format!("{n:016x}"))
    }

    fn created(
        &mut self,
        id: &str,
        parents: &[&str],
        stage: &str,
        start_ns: i64,
        metadata: &[(&str, &str)],
    ) -> EntityCreated {
        let (trace_id, span_id) = self.span();
        EntityCreated(EntitySpan {
            entity_id: id.to_owned(),
            instrument_id: INSTRUMENT.to_owned(),
            name: stage.to_owned(),
            trace_id,
            span_id,
            start_ns,
            end_ns: start_ns + 5_000,
            parent_ids: parents.iter().map(|p| (*p).to_owned()).collect(),
            metadata: meta(metadata),
            service_name: Some("pipeline".to_owned()),
            process_name: Some("detector".to_owned()),
            status: Status::Ok,
            events: Vec::new(),
        })
    }

    fn operation(&mut self, id: &str, name: &str, start_ns: i64, metadata: &[(&str, &str)]) -> OperationRecorded {
        let (trace_id, span_id) = self.span();
        OperationRecorded(EntitySpan {
            entity_id: id.to_owned(),
            instrument_id: INSTRUMENT.to_owned(),
            name: name.to_owned(),
            trace_id,
            span_id,
            start_ns,
            end_ns: start_ns + 9_000,
            parent_ids: Vec::new(),
            metadata: meta(metadata),
            service_name: None,
            process_name: None,
            status: Status::Ok,
            events: Vec::new(),
        })
    }

    async fn write(&self, records: Vec<WriteRecord>) {
        self.store.write(&WriteBatch::of(records)).await.expect("write");
    }

    async fn get(&self, uri: &str) -> Reply {
        let request = Request::builder().uri(uri).body(Body::empty()).expect("request");
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let bytes = to_bytes(body, usize::MAX).await.expect("body");
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
        Reply { status: parts.status, headers: parts.headers, json }
    }

    /// GET expecting 200; returns the JSON body.
    async fn ok(&self, uri: &str) -> Value {
        let reply = self.get(uri).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.json);
        reply.json
    }

    /// GET expecting 400 whose message names `param`.
    async fn bad(&self, uri: &str, param: &str) {
        let reply = self.get(uri).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}: {}", reply.json);
        let message = reply.json["error"].as_str().expect("error message");
        assert!(message.contains(&format!("`{param}`")), "{uri}: {message}");
    }
}

fn meta(pairs: &[(&str, &str)]) -> Metadata {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Percent-encodes everything but RFC 3986 unreserved characters, as a careful client does
/// for a path segment or query value.
fn enc(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value.as_object().expect("object").keys().map(String::as_str).collect()
}

fn ids(list: &Value, field: &str) -> Vec<String> {
    list.as_array().expect("array").iter().map(|v| v[field].as_str().expect("id").to_owned()).collect()
}

/// block-1 → cand-1 → cls-1 (error), block-1 → cand-2; an archive operation and an event on
/// cand-1, a log line naming cand-1, and an operation on the never-created `ghost`.
async fn lineage_fixture() -> Harness {
    let mut h = Harness::new();
    let block = h.created("block-1", &[], "ingest", T0, &[("beam", "7")]);
    let mut cand1 = h.created("cand-1", &["block-1"], "detect", T0 + 10, &[("score", "0.97")]);
    cand1.0.events.push(EntityEvent {
        entity_id: "cand-1".into(),
        instrument_id: INSTRUMENT.into(),
        event_name: "helix.event.classified".into(),
        timestamp_ns: T0 + 12,
        metadata: meta(&[("class", "frb")]),
        trace_id: cand1.0.trace_id.clone(),
        span_id: cand1.0.span_id.clone(),
        ordinal: 0,
    });
    let cand2 = h.created("cand-2", &["block-1"], "detect", T0 + 20, &[("score", "0.12")]);
    let mut cls = h.created("cls-1", &["cand-1"], "classify", T0 + 30, &[]);
    cls.status = Status::Error;
    let archive = h.operation("cand-1", "archive", T0 + 40, &[("path", "/data/x.h5")]);
    let ghost_op = h.operation("ghost", "archive", T0 + 50, &[]);
    let log = LogRecorded {
        timestamp_ns: T0 + 11,
        observed_ns: T0 + 11,
        severity: "INFO".into(),
        severity_number: 9,
        body: "candidate found".into(),
        trace_id: None,
        span_id: None,
        entity_id: Some("cand-1".into()),
        instrument_id: Some(INSTRUMENT.into()),
        process_name: None,
        service_name: None,
        source: None,
        attributes: Metadata::new(),
        resource: Default::default(),
    };
    h.write(vec![
        WriteRecord::Created(block),
        WriteRecord::Created(cand1),
        WriteRecord::Created(cand2),
        WriteRecord::Created(cls),
        WriteRecord::Operation(archive),
        WriteRecord::Operation(ghost_op),
        WriteRecord::Log(log),
    ])
    .await;
    h
}

/// Named `api` so `cargo test -p herald api` selects these with the unit tests.
mod api {
    use super::*;

    #[tokio::test]
    async fn graph_has_the_compatible_shape() {
        let h = lineage_fixture().await;
        let graph = h.ok("/api/v1/entity/cand-1/graph").await;
        assert_eq!(keys(&graph), BTreeSet::from(["nodes", "edges"]));
        assert_eq!(ids(&graph["nodes"], "id"), ["cand-1", "block-1", "cls-1"]);
        let cand = &graph["nodes"][0];
        assert_eq!(
            keys(cand),
            BTreeSet::from(["id", "instrument_id", "trace_id", "timestamp_ns", "parent_ids", "metadata", "has_error"])
        );
        assert_eq!(cand["instrument_id"], INSTRUMENT);
        assert_eq!(cand["timestamp_ns"], T0 + 10);
        assert_eq!(cand["parent_ids"], json!(["block-1"]));
        assert_eq!(cand["metadata"], json!({"score": "0.97"}));
        assert_eq!(cand["has_error"], false);
        assert_eq!(cand["trace_id"].as_str().map(str::len), Some(32));
        assert_eq!(graph["nodes"][2]["has_error"], true);
        let edges: BTreeSet<(String, String)> = graph["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .map(|e| {
                assert_eq!(keys(e), BTreeSet::from(["source", "target"]));
                (e["source"].as_str().expect("s").to_owned(), e["target"].as_str().expect("t").to_owned())
            })
            .collect();
        assert_eq!(
            edges,
            BTreeSet::from([("block-1".to_owned(), "cand-1".to_owned()), ("cand-1".to_owned(), "cls-1".to_owned())])
        );
    }

    #[tokio::test]
    async fn graph_honours_up_down_and_limit() {
        let h = lineage_fixture().await;
        let graph = h.ok("/api/v1/entity/cand-1/graph?up=0&down=0").await;
        assert_eq!(ids(&graph["nodes"], "id"), ["cand-1"]);
        assert_eq!(graph["edges"], json!([]));
        let graph = h.ok("/api/v1/entity/block-1/graph?down=1&limit=2").await;
        assert_eq!(graph["nodes"].as_array().map(Vec::len), Some(2));
        assert_eq!(h.get("/api/v1/entity/nope/graph").await.status, StatusCode::NOT_FOUND);
        h.bad("/api/v1/entity/cand-1/graph?up=-1", "up").await;
        h.bad("/api/v1/entity/cand-1/graph?limit=0", "limit").await;
    }

    #[tokio::test]
    async fn operations_have_the_compatible_shape_with_the_creation_first() {
        let h = lineage_fixture().await;
        let ops = h.ok("/api/v1/entity/cand-1/operations").await;
        let rows = ops.as_array().expect("bare array");
        assert_eq!(rows.len(), 2);
        for row in rows {
            assert_eq!(keys(row), BTreeSet::from(["operation", "trace_id", "timestamp_ns", "duration_ns", "metadata"]));
        }
        let entity = h.ok("/api/v1/entity/cand-1").await;
        assert_eq!(
            rows[0],
            json!({"operation": "creation", "trace_id": entity["entity"]["trace_id"], "timestamp_ns": T0 + 10,
                   "duration_ns": 5_000, "metadata": {"score": "0.97"}})
        );
        assert_eq!(rows[1]["operation"], "archive");
        assert_eq!(rows[1]["timestamp_ns"], T0 + 40);
        assert_eq!(rows[1]["duration_ns"], 9_000);
        assert_eq!(rows[1]["metadata"], json!({"path": "/data/x.h5"}));

        // Created, never operated on: only the creation row.
        assert_eq!(h.ok("/api/v1/entity/cand-2/operations").await.as_array().map(Vec::len), Some(1));
        // A placeholder has no trace, so no creation row.
        assert_eq!(ids(&h.ok("/api/v1/entity/ghost/operations").await, "operation"), ["archive"]);
        // Unknown entirely: no operations, as the older herald answers (not a 404).
        let unknown = h.get("/api/v1/entity/nope/operations").await;
        assert_eq!((unknown.status, unknown.json), (StatusCode::OK, json!([])));
    }

    #[tokio::test]
    async fn operations_beyond_a_page_are_reached_through_the_cursor_header() {
        let mut h = Harness::new();
        let mut records = vec![WriteRecord::Created(h.created("e", &[], "make", T0, &[]))];
        for i in 0..5 {
            records.push(WriteRecord::Operation(h.operation("e", &format!("op-{i}"), T0 + 100 + i, &[])));
        }
        h.write(records).await;
        let mut names = Vec::new();
        let mut uri = "/api/v1/entity/e/operations?limit=2".to_owned();
        loop {
            let reply = h.get(&uri).await;
            assert_eq!(reply.status, StatusCode::OK);
            names.extend(ids(&reply.json, "operation"));
            let Some(cursor) = reply.headers.get("x-next-cursor") else {
                break;
            };
            uri = format!("/api/v1/entity/e/operations?limit=2&cursor={}", enc(cursor.to_str().expect("ascii")));
        }
        assert_eq!(names, ["creation", "op-0", "op-1", "op-2", "op-3", "op-4"]);
    }

    #[tokio::test]
    async fn entity_view_has_every_column_children_count_events_and_operations() {
        let h = lineage_fixture().await;
        let view = h.ok("/api/v1/entity/cand-1").await;
        let entity = &view["entity"];
        for column in [
            "id",
            "instrument_id",
            "trace_id",
            "span_id",
            "timestamp_ns",
            "end_ns",
            "stage",
            "service_name",
            "process_name",
            "status",
            "placeholder",
            "parent_ids",
            "metadata",
            "created_at",
            "children_count",
        ] {
            assert!(entity.get(column).is_some(), "missing column {column}");
        }
        assert_eq!(entity["id"], "cand-1");
        assert_eq!(entity["end_ns"], T0 + 10 + 5_000);
        assert_eq!(entity["stage"], "detect");
        assert_eq!(entity["status"], "ok");
        assert_eq!(entity["placeholder"], false);
        assert_eq!(entity["children_count"], 1);
        assert_eq!(ids(&view["events"], "event_name"), ["helix.event.classified"]);
        assert_eq!(ids(&view["operations"], "operation"), ["archive"]);

        assert_eq!(h.ok("/api/v1/entity/block-1").await["entity"]["children_count"], 2);
        let ghost = h.ok("/api/v1/entity/ghost").await;
        assert_eq!(ghost["entity"]["placeholder"], true);
        assert_eq!(ghost["entity"]["trace_id"], Value::Null);
        assert_eq!(h.ok("/api/v1/entity/cls-1").await["entity"]["status"], "error");

        let reply = h.get("/api/v1/entity/nope").await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert_eq!(reply.json, json!({"error": "entity `nope` not found"}));
    }

    #[tokio::test]
    async fn events_paginate_oldest_first() {
        let mut h = Harness::new();
        let mut created = h.created("e", &[], "make", T0, &[]);
        for i in 0..7u32 {
            created.0.events.push(EntityEvent {
                entity_id: "e".into(),
                instrument_id: INSTRUMENT.into(),
                event_name: format!("helix.event.n{i}"),
                timestamp_ns: T0 + i64::from(i),
                metadata: Metadata::new(),
                trace_id: created.0.trace_id.clone(),
                span_id: created.0.span_id.clone(),
                ordinal: i,
            });
        }
        h.write(vec![WriteRecord::Created(created)]).await;
        let mut names = Vec::new();
        let mut uri = "/api/v1/entity/e/events?limit=3".to_owned();
        loop {
            let page = h.ok(&uri).await;
            assert_eq!(keys(&page), BTreeSet::from(["events", "next_cursor"]));
            names.extend(ids(&page["events"], "event_name"));
            let Some(cursor) = page["next_cursor"].as_str() else {
                break;
            };
            uri = format!("/api/v1/entity/e/events?limit=3&cursor={}", enc(cursor));
        }
        let expected: Vec<String> = (0..7).map(|i| format!("helix.event.n{i}")).collect();
        assert_eq!(names, expected);
        assert_eq!(h.get("/api/v1/entity/nope/events").await.status, StatusCode::NOT_FOUND);
        h.bad("/api/v1/entity/e/events?cursor=zz", "cursor").await;
        h.bad("/api/v1/entity/e/events?limit=-3", "limit").await;
    }

    #[tokio::test]
    async fn logs_of_an_entity_are_listed() {
        let h = lineage_fixture().await;
        let page = h.ok("/api/v1/entity/cand-1/logs").await;
        assert_eq!(keys(&page), BTreeSet::from(["logs", "next_cursor"]));
        assert_eq!(ids(&page["logs"], "body"), ["candidate found"]);
        assert_eq!(page["next_cursor"], Value::Null);
        assert_eq!(h.ok("/api/v1/entity/cand-2/logs").await["logs"], json!([]));
    }

    #[tokio::test]
    async fn lineage_walks_both_directions_with_depth_and_pages() {
        let h = lineage_fixture().await;
        let up = h.ok("/api/v1/entity/cls-1/lineage").await;
        assert_eq!(keys(&up), BTreeSet::from(["root", "direction", "nodes", "edges", "partial", "next_cursor"]));
        assert_eq!(up["root"], "cls-1");
        assert_eq!(up["direction"], "ancestors");
        assert_eq!(up["partial"], false);
        assert_eq!(ids(&up["nodes"], "id"), ["cls-1", "cand-1", "block-1"]);
        let depths: Vec<i64> =
            up["nodes"].as_array().expect("nodes").iter().map(|n| n["depth"].as_i64().expect("depth")).collect();
        assert_eq!(depths, [0, 1, 2]);
        for node in up["nodes"].as_array().expect("nodes") {
            for field in ["id", "depth", "stage", "status", "instrument_id", "timestamp_ns", "parent_ids"] {
                assert!(node.get(field).is_some(), "lineage node lacks {field}");
            }
        }

        let down = h.ok("/api/v1/entity/block-1/lineage?direction=descendants&depth=1").await;
        assert_eq!(ids(&down["nodes"], "id"), ["block-1", "cand-1", "cand-2"]);

        // One node per page: the walk resumes from the cursor without loss or repetition.
        let mut seen = Vec::new();
        let mut uri = "/api/v1/entity/block-1/lineage?direction=descendants&limit=1".to_owned();
        for _ in 0..10 {
            let page = h.ok(&uri).await;
            seen.extend(ids(&page["nodes"], "id"));
            let Some(cursor) = page["next_cursor"].as_str() else {
                break;
            };
            assert_eq!(page["partial"], true);
            uri = format!("/api/v1/entity/block-1/lineage?direction=descendants&limit=1&cursor={}", enc(cursor));
        }
        // The root may head every page; every other node comes exactly once.
        let others: Vec<&String> = seen.iter().filter(|id| *id != "block-1").collect();
        assert_eq!(others.len(), others.iter().collect::<BTreeSet<_>>().len(), "no repeats: {seen:?}");
        let unique: BTreeSet<&str> = seen.iter().map(String::as_str).collect();
        assert_eq!(unique, BTreeSet::from(["block-1", "cand-1", "cand-2", "cls-1"]));

        assert_eq!(h.get("/api/v1/entity/nope/lineage").await.status, StatusCode::NOT_FOUND);
        h.bad("/api/v1/entity/cls-1/lineage?direction=up", "direction").await;
        h.bad("/api/v1/entity/cls-1/lineage?depth=0", "depth").await;
        h.bad("/api/v1/entity/cls-1/lineage?limit=100001", "limit").await;
        h.bad("/api/v1/entity/cls-1/lineage?cursor=00", "cursor").await;
    }

    #[tokio::test]
    async fn search_pages_walk_every_entity_once_newest_first() {
        let mut h = Harness::new();
        let mut records = Vec::new();
        // Pairs share a timestamp so the ID tie-break is exercised across page boundaries.
        for i in 0..25i64 {
            let stage = if i % 2 == 0 { "even" } else { "odd" };
            let parity = (i % 3).to_string();
            records.push(WriteRecord::Created(h.created(
                &format!("e-{i:02}"),
                &[],
                stage,
                T0 + i / 2,
                &[("mod3", &parity)],
            )));
        }
        h.write(records).await;

        let mut walked = Vec::new();
        let mut uri = "/api/v1/entities?limit=7".to_owned();
        let mut pages = 0;
        loop {
            let page = h.ok(&uri).await;
            assert_eq!(keys(&page), BTreeSet::from(["entities", "next_cursor"]));
            walked.extend(page["entities"].as_array().expect("entities").iter().cloned());
            pages += 1;
            let Some(cursor) = page["next_cursor"].as_str() else {
                break;
            };
            uri = format!("/api/v1/entities?limit=7&cursor={}", enc(cursor));
        }
        assert_eq!(pages, 4);
        let walked_ids = ids(&Value::Array(walked.clone()), "id");
        assert_eq!(walked_ids.iter().collect::<BTreeSet<_>>().len(), 25, "no duplicates, no losses");
        let times: Vec<i64> = walked.iter().map(|e| e["timestamp_ns"].as_i64().expect("ts")).collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
        assert!(walked[0].get("created_at").is_some() && walked[0].get("placeholder").is_some());

        let odd = h.ok("/api/v1/entities?stage=odd&instrument=CHIME&limit=100").await;
        assert_eq!(odd["entities"].as_array().map(Vec::len), Some(12));
        let by_meta = h.ok("/api/v1/entities?meta.mod3=0&stage=even").await;
        assert_eq!(ids(&by_meta["entities"], "id"), ["e-24", "e-18", "e-12", "e-06", "e-00"]);
        let prefix = h.ok("/api/v1/entities?q=e-1").await;
        assert_eq!(prefix["entities"].as_array().map(Vec::len), Some(10));
        // The window is half-open: `from_ns` inclusive, `to_ns` exclusive.
        let window = h.ok(&format!("/api/v1/entities?from_ns={}&to_ns={}", T0 + 1, T0 + 3)).await;
        assert_eq!(ids(&window["entities"], "id"), ["e-04", "e-05", "e-02", "e-03"]);
        assert_eq!(h.ok("/api/v1/entities?status=error").await["entities"], json!([]));
        assert_eq!(h.ok("/api/v1/entities?instrument=OTHER").await, json!({"entities": [], "next_cursor": null}));

        h.bad("/api/v1/entities?limit=10001", "limit").await;
        h.bad("/api/v1/entities?status=maybe", "status").await;
        h.bad("/api/v1/entities?cursor=not-hex", "cursor").await;
        h.bad("/api/v1/entities?meta.=x", "meta.").await;
        h.bad("/api/v1/entities?from_ns=9&to_ns=1", "from_ns").await;
    }

    #[tokio::test]
    async fn instruments_and_stages() {
        let h = lineage_fixture().await;
        assert_eq!(h.ok("/api/v1/instruments").await, json!([INSTRUMENT]));
        let stages = h.ok("/api/v1/stages?instrument=CHIME").await;
        let names = ids(&stages, "stage");
        assert_eq!(names, ["classify", "detect", "ingest"]);
        for row in stages.as_array().expect("stages") {
            assert_eq!(keys(row), BTreeSet::from(["stage", "count", "error_count", "last_seen_ns"]));
        }
        assert_eq!(stages[0]["error_count"], 1);
        assert_eq!(stages[1]["count"], 2);
        assert_eq!(h.ok("/api/v1/stages?instrument=NONE").await, json!([]));
        h.bad("/api/v1/stages", "instrument").await;
    }

    #[tokio::test]
    async fn hostile_ids_round_trip_through_every_entity_endpoint() {
        let mut h = Harness::new();
        let long = "x".repeat(4096);
        let hostile = [
            "a/b",
            "/leading/and/trailing/",
            "quote\"d 'single'",
            "<script>alert(1)</script>",
            "🚀 émoji ünïcode",
            "a%2Fb literal percent",
            "query?and#fragment&amp",
            "back\\slash",
            "..",
            long.as_str(),
        ];
        let root = h.created("root", &[], "ingest", T0, &[]);
        let mut records = vec![WriteRecord::Created(root)];
        for (i, id) in hostile.iter().enumerate() {
            let offset = i64::try_from(i).expect("small");
            records.push(WriteRecord::Created(h.created(id, &["root"], "detect", T0 + 1 + offset, &[("id", id)])));
            records.push(WriteRecord::Operation(h.operation(id, "archive", T0 + 100 + offset, &[])));
        }
        h.write(records).await;

        for id in hostile {
            let path = format!("/api/v1/entity/{}", enc(id));
            let view = h.ok(&path).await;
            assert_eq!(view["entity"]["id"], id);
            assert_eq!(view["entity"]["metadata"]["id"], id);
            assert_eq!(ids(&h.ok(&format!("{path}/graph?down=0")).await["nodes"], "id"), [id, "root"]);
            assert_eq!(ids(&h.ok(&format!("{path}/operations")).await, "operation"), ["creation", "archive"]);
            assert_eq!(h.ok(&format!("{path}/events")).await["events"], json!([]));
            assert_eq!(h.ok(&format!("{path}/lineage")).await["root"], id);
            let found = h.ok(&format!("/api/v1/entities?q={}", enc(id))).await;
            assert!(ids(&found["entities"], "id").iter().any(|found| found == id), "search by prefix {id:?}");
        }

        // Descendants of root, one per page: cursors carrying hostile (and 4 KB) IDs survive.
        let mut seen = BTreeSet::new();
        let mut uri = "/api/v1/entity/root/lineage?direction=descendants&limit=1".to_owned();
        for _ in 0..20 {
            let page = h.ok(&uri).await;
            seen.extend(ids(&page["nodes"], "id"));
            let Some(cursor) = page["next_cursor"].as_str() else {
                break;
            };
            uri = format!("/api/v1/entity/root/lineage?direction=descendants&limit=1&cursor={}", enc(cursor));
        }
        let expected: BTreeSet<String> = hostile.iter().map(|id| (*id).to_owned()).chain(["root".to_owned()]).collect();
        assert_eq!(seen, expected);

        let mut seen = BTreeSet::new();
        let mut uri = "/api/v1/entities?limit=1".to_owned();
        for _ in 0..20 {
            let page = h.ok(&uri).await;
            seen.extend(ids(&page["entities"], "id"));
            let Some(cursor) = page["next_cursor"].as_str() else {
                break;
            };
            uri = format!("/api/v1/entities?limit=1&cursor={}", enc(cursor));
        }
        assert_eq!(seen, expected);

        // Unencoded slashes are other paths; a control character is refused by name.
        assert_eq!(h.get("/api/v1/entity/a/b").await.status, StatusCode::NOT_FOUND);
        h.bad("/api/v1/entity/a%09b", "id").await;
        h.bad(&format!("/api/v1/entity/{}", "y".repeat(16 * 1024 + 1)), "id").await;
    }
}
