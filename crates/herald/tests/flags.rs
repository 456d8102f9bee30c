//! Flags and suspicion against the real binary: a telescope-like run sent by the OpenTelemetry
//! SDK's OTLP exporter, a raw block flagged bad, every descendant (across instruments, also one
//! written after the flag) read back suspect with its path, two flags cleared independently,
//! the `suspect` search filter, and, with auth on, who may flag.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use helix_model::builders::{pipeline_resource, traces, SpanBuilder};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use serde_json::{json, Value};
use support::*;

async fn post_flag(herald: &Herald, id: &str, body: Value, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(herald.api_url(&format!("/api/v1/entity/{}/flags", enc(id))));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.json(&body).send().await.expect("POST flag");
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

async fn delete_flag(herald: &Herald, id: &str, flag_id: &str, query: &str, token: Option<&str>) -> (u16, Value) {
    let url = herald.api_url(&format!("/api/v1/entity/{}/flags/{}{query}", enc(id), enc(flag_id)));
    let mut request = reqwest::Client::new().delete(url);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.expect("DELETE flag");
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

/// `(flag_id, path)` of every reason the entity is suspect, and its `suspect` field.
async fn suspicion(herald: &Herald, id: &str) -> (bool, Vec<(String, Vec<String>)>) {
    let e = herald.get_ok(&format!("/api/v1/entity/{}", enc(id))).await;
    let reasons = e["entity"]["suspect_because"]
        .as_array()
        .expect("suspect_because")
        .iter()
        .map(|b| {
            let path = b["path"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_owned()).collect();
            (b["flag_id"].as_str().unwrap().to_owned(), path)
        })
        .collect();
    (e["entity"]["suspect"].as_bool().expect("suspect"), reasons)
}

/// Descendants of `root` with their depth and parents, from `/lineage` (the reference).
async fn descendants(herald: &Herald, root: &str) -> BTreeMap<String, (u64, Vec<String>)> {
    let l = herald.get_ok(&format!("/api/v1/entity/{}/lineage?direction=descendants", enc(root))).await;
    assert_eq!(l["partial"], false);
    l["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["id"] != root)
        .map(|n| {
            let parents = n["parent_ids"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_owned()).collect();
            (n["id"].as_str().unwrap().to_owned(), (n["depth"].as_u64().unwrap(), parents))
        })
        .collect()
}

async fn suspect_search(herald: &Herald) -> BTreeSet<String> {
    let page = herald.get_ok("/api/v1/entities?suspect=true&limit=1000").await;
    page["entities"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
}

const HOSTILE: &str = "blk <script>alert(\"x\")</script> é/2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flagged_raw_block_makes_every_descendant_suspect_until_each_flag_is_cleared() {
    let herald = Herald::start();
    let chime = Pipeline::new(&herald, Transport::Grpc, "chime-pipeline", "CHIME");
    let archive = Pipeline::new(&herald, Transport::HttpProtobuf, "archiver", "ARCHIVE");
    // Two raw blocks; candidates from each; events clustering candidates (a diamond from the
    // hostile block through c1 and c2 to ev1); an archive product of another instrument.
    chime.create("raw", HOSTILE, &[]);
    chime.create("raw", "blk-2", &[]);
    chime.create("search", "c1", &[HOSTILE]);
    chime.create("search", "c2", &[HOSTILE]);
    chime.create("search", "c3", &[HOSTILE, "blk-2"]);
    chime.create("search", "c4", &["blk-2"]);
    chime.create("cluster", "ev1", &["c1", "c2"]);
    chime.create("cluster", "ev2", &["c3"]);
    chime.create("classify", "cls1", &["ev1"]);
    chime.flush().await;
    archive.create("archive", "arch1", &["cls1"]);
    archive.flush().await;

    let reason = "<img src=x onerror=alert(1)> corrupt: ADC saturated";
    let (status, flag1) =
        post_flag(&herald, HOSTILE, json!({"reason": reason, "flagged_by": "ana <ops>", "severity": "bad"}), None)
            .await;
    assert_eq!(status, 201, "{flag1}");
    assert_eq!((flag1["entity_id"].as_str(), flag1["reason"].as_str()), (Some(HOSTILE), Some(reason)));
    assert_eq!((flag1["severity"].as_str(), flag1["flagged_by"].as_str()), (Some("bad"), Some("ana <ops>")));
    assert!(flag1["cleared_at"].is_null());
    let f1 = flag1["flag_id"].as_str().unwrap().to_owned();

    // Every descendant in /lineage is suspect through f1, by a path of edges of the DAG from
    // the block down to it, as short as its depth: the diamond gives ev1 one reason, not two.
    let reference = descendants(&herald, HOSTILE).await;
    assert_eq!(reference.keys().cloned().collect::<Vec<_>>(), ["arch1", "c1", "c2", "c3", "cls1", "ev1", "ev2"]);
    for (id, (depth, _)) in &reference {
        let (suspect, reasons) = suspicion(&herald, id).await;
        assert!(suspect, "{id}");
        assert_eq!(reasons.len(), 1, "{id}: {reasons:?}");
        let (flag_id, path) = &reasons[0];
        assert_eq!(flag_id, &f1);
        assert_eq!((path.first().map(String::as_str), path.last()), (Some(HOSTILE), Some(id)));
        assert_eq!(path.len() as u64, depth + 1, "{id}: {path:?}");
        for pair in path.windows(2) {
            assert!(reference[&pair[1]].1.contains(&pair[0]), "{id}: {:?} is not a parent of {:?}", pair[0], pair[1]);
        }
    }
    for clean in ["blk-2", "c4"] {
        assert_eq!(suspicion(&herald, clean).await, (false, vec![]), "{clean}");
    }
    // The flagged entity carries its flag and is suspect by its own flag.
    let block = herald.get_ok(&format!("/api/v1/entity/{}", enc(HOSTILE))).await;
    assert_eq!(block["entity"]["flags"].as_array().unwrap().len(), 1);
    assert_eq!(block["entity"]["suspect"], true);

    // Written after the flag, from a suspect parent: suspect on arrival.
    archive.create("archive", "arch2", &["ev2"]);
    archive.flush().await;
    let (suspect, reasons) = suspicion(&herald, "arch2").await;
    assert!(suspect);
    assert_eq!(reasons[0].1, [HOSTILE, "c3", "ev2", "arch2"]);

    let mut expected: BTreeSet<String> = reference.keys().cloned().collect();
    expected.extend([HOSTILE.to_owned(), "arch2".to_owned()]);
    assert_eq!(suspect_search(&herald).await, expected);

    // A second flag on the other block: c3 (and what derives from it) has two reasons.
    let (status, flag2) =
        post_flag(&herald, "blk-2", json!({"reason": "bad RFI mask", "flagged_by": "bo", "severity": "suspect"}), None)
            .await;
    assert_eq!(status, 201);
    let f2 = flag2["flag_id"].as_str().unwrap().to_owned();
    let c3: BTreeSet<String> = suspicion(&herald, "c3").await.1.into_iter().map(|(f, _)| f).collect();
    assert_eq!(c3, BTreeSet::from([f1.clone(), f2.clone()]));

    // Clearing f1 clears exactly what f1 caused.
    let (status, cleared) = delete_flag(&herald, HOSTILE, &f1, "?cleared_by=shift%20lead", None).await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["cleared_by"], "shift lead");
    for id in ["c1", "c2", "ev1", "cls1", "arch1"] {
        assert_eq!(suspicion(&herald, id).await, (false, vec![]), "{id} restored");
    }
    for id in ["c3", "ev2", "arch2", "c4"] {
        let (suspect, reasons) = suspicion(&herald, id).await;
        assert!(suspect, "{id} still suspect through blk-2");
        assert_eq!(reasons.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(), [f2.as_str()], "{id}");
    }
    let (status, again) = delete_flag(&herald, HOSTILE, &f1, "", None).await;
    assert_eq!((status, &again["cleared_by"]), (200, &json!("shift lead")), "clearing twice changes nothing");
    assert_eq!(delete_flag(&herald, "blk-2", &f2, "", None).await.0, 200);
    assert!(suspect_search(&herald).await.is_empty());
    assert_eq!(suspicion(&herald, "arch2").await, (false, vec![]));

    // The history keeps both flags, cleared, with who and when.
    let history = herald.get_ok(&format!("/api/v1/entity/{}/flags", enc(HOSTILE))).await;
    let flags = history["flags"].as_array().unwrap();
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0]["flag_id"], f1.as_str());
    assert!(flags[0]["cleared_at"].as_str().is_some_and(|t| t >= flags[0]["created_at"].as_str().unwrap()));
    let blk2 = herald.get_ok("/api/v1/entity/blk-2/flags").await;
    assert_eq!(blk2["flags"][0]["cleared_by"], "anonymous");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_requests_are_checked_and_unknown_entities_are_404() {
    let herald = Herald::start();
    let p = Pipeline::new(&herald, Transport::Grpc, "svc", "CHIME");
    p.create("raw", "b1", &[]);
    p.flush().await;
    let ok = json!({"reason": "r", "flagged_by": "me"});
    let (status, body) = post_flag(&herald, "nope", ok.clone(), None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("entity `nope` not found")));
    for (bad, named) in [
        (json!({"reason": "r"}), "`flagged_by`"),
        (json!({"reason": " ", "flagged_by": "me"}), "`reason`"),
        (json!({"reason": "r", "flagged_by": "me", "severity": "awful"}), "`severity`"),
        (json!(["r"]), "`body`"),
    ] {
        let (status, body) = post_flag(&herald, "b1", bad.clone(), None).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"].as_str().unwrap().contains(named), "{bad}: {body}");
    }
    let (status, body) = delete_flag(&herald, "b1", "no-such-flag", "", None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("entity `b1` has no flag `no-such-flag`")));
    assert_eq!(herald.get("/api/v1/entity/nope/flags").await.0, 404);
    assert_eq!(herald.get("/api/v1/entities?suspect=maybe").await.0, 400);
    let (status, flag) = post_flag(&herald, "b1", ok, None).await;
    assert_eq!(status, 201);
    assert!(flag["principal"].is_null(), "auth off: no token subject");
}

const KEY: &str = "k-flags-0b6f3c2a9e8d47f1a5c3b2d1e0f9a8b7c6d5e4f3";
const SECRET_A: &str = "secret-of-alpha-7f3e9b2c41d8a6e5f0b1c2d3e4f5a6b7";
const SECRET_B: &str = "secret-of-bravo-1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d";

fn secret_file(instrument: &str, secret: &str) -> String {
    use sha2::Digest;
    let hash = helix_model::ids::to_hex(&sha2::Sha256::digest(secret.as_bytes()));
    format!("instrument_id: {instrument}\nauth:\n  type: secret\n  api_key_hash: \"sha256:{hash}\"\n")
}

async fn token(herald: &Herald, instrument: &str, credential: &str) -> String {
    let response = reqwest::Client::new()
        .post(herald.api_url("/auth/token"))
        .json(&json!({"instrument_id": instrument, "credential": credential}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_on_only_a_token_of_the_entitys_instrument_may_flag_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alpha.yml"), secret_file("ALPHA", SECRET_A)).unwrap();
    std::fs::write(dir.path().join("bravo.yml"), secret_file("BRAVO", SECRET_B)).unwrap();
    let herald = Herald::start_with(HeraldOptions {
        env: vec![("JWT_SECRET".into(), KEY.into()), ("INSTRUMENTS_DIR".into(), dir.path().display().to_string())],
        ..Default::default()
    });
    let (alpha, bravo) = (token(&herald, "ALPHA", SECRET_A).await, token(&herald, "BRAVO", SECRET_B).await);
    let mut request = tonic::Request::new(traces(
        pipeline_resource("svc", "ALPHA"),
        vec![SpanBuilder::creation("raw", "alpha-block", 1).build()],
    ));
    request.metadata_mut().insert("authorization", format!("Bearer {alpha}").parse().unwrap());
    TraceServiceClient::connect(herald.grpc_url()).await.unwrap().export(request).await.expect("export");
    let read_only = {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["token", "issue", "--read", "--name", "dashboards", "--ttl", "1h"])
            .env("JWT_SECRET", KEY)
            .env_remove("INSTRUMENTS_DIR")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let body = json!({"reason": "bad gains", "flagged_by": "ana"});
    let (status, _) = post_flag(&herald, "alpha-block", body.clone(), None).await;
    assert_eq!(status, 401);
    let (status, refused) = post_flag(&herald, "alpha-block", body.clone(), Some(&bravo)).await;
    assert_eq!(status, 403, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("\"ALPHA\""), "{refused}");
    let (status, refused) = post_flag(&herald, "alpha-block", body.clone(), Some(&read_only)).await;
    assert_eq!(status, 403, "{refused}");
    let (status, flag) = post_flag(&herald, "alpha-block", body, Some(&alpha)).await;
    assert_eq!(status, 201, "{flag}");
    assert_eq!(flag["principal"], "ALPHA", "the token's subject is audited");
    let f = flag["flag_id"].as_str().unwrap();
    assert_eq!(delete_flag(&herald, "alpha-block", f, "", Some(&bravo)).await.0, 403);
    let (status, cleared) = delete_flag(&herald, "alpha-block", f, "", Some(&alpha)).await;
    assert_eq!((status, cleared["cleared_by"].as_str()), (200, Some("ALPHA")));
    assert_eq!(herald.metric("helix_auth_denied_total", &[("reason", "foreign_entity")]).await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_impact_is_counted_once_and_its_csv_streams_every_descendant() {
    let herald = Herald::start();
    let chime = Pipeline::new(&herald, Transport::Grpc, "chime-pipeline", "CHIME");
    // 2 400 candidates of one block; 1 200 events each from two neighbouring candidates (1 200
    // diamonds); a product on every tenth event: 3 720 descendants, several CSV chunks.
    chime.create("raw", "big-blk", &[]);
    chime.flush().await;
    for c in 0..2_400 {
        chime.create("search", &format!("big-c{c:04}"), &["big-blk"]);
        if c % 500 == 499 {
            chime.flush().await;
        }
    }
    chime.flush().await;
    for e in 0..1_200 {
        let (a, b) = (format!("big-c{:04}", 2 * e), format!("big-c{:04}", (2 * e + 1) % 2_400));
        chime.create("cluster", &format!("big-e{e:04}"), &[&a, &b]);
        if e % 10 == 0 {
            chime.create("classify", &format!("big-p{e:04}"), &[&format!("big-e{e:04}")]);
        }
        if e % 400 == 399 {
            chime.flush().await;
        }
    }
    chime.flush().await;

    // The reference: /lineage's descendants, paged.
    let mut reference: Vec<String> = Vec::new();
    let mut cursor = String::new();
    loop {
        let page =
            herald.get_ok(&format!("/api/v1/entity/big-blk/lineage?direction=descendants&limit=1000{cursor}")).await;
        reference.extend(
            page["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["id"] != "big-blk")
                .map(|n| n["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={}", enc(c)),
            None => break,
        }
    }
    assert_eq!(reference.len(), 3_720);

    let impact = herald.get_ok("/api/v1/entity/big-blk/impact?limit=100").await;
    assert_eq!(impact["total"], 3_720);
    assert_eq!(impact["by_stage"], json!({"search": 2_400, "cluster": 1_200, "classify": 120}));
    let first: Vec<&str> = impact["entities"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(first, reference[..100].iter().map(String::as_str).collect::<Vec<_>>(), "the first page");
    let e0 = impact["entities"].as_array().unwrap().iter().find(|n| n["depth"] == 1).unwrap();
    assert_eq!(e0["parent_ids"], json!(["big-blk"]), "listed entities carry their parents");

    let response = reqwest::get(herald.api_url("/api/v1/entity/big-blk/impact?format=csv")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(response.content_length().is_none(), "streamed: no length known up front");
    let body = response.text().await.unwrap();
    let lines: Vec<&str> = body.lines().collect();
    let header = "id,depth,instrument_id,stage,status,timestamp_ns,placeholder";
    assert_eq!(lines[0], header);
    assert_eq!(lines.iter().filter(|l| **l == header).count(), 1, "the header once");
    assert!(body.ends_with('\n'), "the last record is complete");
    let ids: Vec<&str> = lines[1..].iter().map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(ids.len() as u64, impact["total"].as_u64().unwrap(), "a row per descendant");
    assert_eq!(ids, reference.iter().map(String::as_str).collect::<Vec<_>>(), "in walk order, each once");
    assert!(lines[1..].iter().all(|l| l.split(',').count() == 7), "every record has the seven fields");
}
