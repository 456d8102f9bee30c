//! A real `herald` process on loopback for the client's tests, and its JSON API.
//!
//! The herald is another crate's binary, so Cargo does not build it for this crate's tests:
//! it comes from `HERALD_BIN`, else `<workspace>/target/debug/herald` (`cargo test --workspace`
//! and `scripts/test.sh` build it before any test runs; alone, run `cargo build -p herald`).
#![allow(dead_code)] // each test binary uses part of the harness

pub mod capture;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The herald binary to test against.
pub fn herald_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("HERALD_BIN") {
        return PathBuf::from(path);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("target"));
    let bin = target.join("debug").join("herald");
    assert!(
        bin.exists(),
        "no herald binary at {}: run `cargo build -p herald` (or `cargo test --workspace`), or set HERALD_BIN",
        bin.display()
    );
    bin
}

/// One herald process with its own SQLite database; killed on drop.
pub struct Herald {
    child: Child,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub api: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Herald {
    pub fn start() -> Herald {
        Herald::start_with(&[], &[])
    }

    /// Start with extra arguments (e.g. a fixed `--otlp-grpc-addr`, which then wins over the
    /// free-port default) and environment.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Herald {
        let dir = tempfile::tempdir().expect("temp dir");
        let ready = dir.path().join("ready.json");
        let log = dir.path().join("herald.log");
        let log_file = || std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("log file");
        let mut listeners = vec![];
        for (flag, default) in [
            ("--otlp-grpc-addr", "127.0.0.1:0"),
            ("--otlp-http-addr", "127.0.0.1:0"),
            ("--api-addr", "127.0.0.1:0"),
            ("--metrics-addr", "127.0.0.1:0"),
        ] {
            if !args.contains(&flag) {
                listeners.extend([flag, default]);
            }
        }
        let mut cmd = Command::new(herald_bin());
        cmd.args(&listeners)
            .arg("--db-url")
            .arg(format!("sqlite://{}", dir.path().join("herald.db").display()))
            .arg("--ready-file")
            .arg(&ready)
            .args(args)
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .stdout(log_file())
            .stderr(log_file());
        for var in [
            "COLLECTOR_ENDPOINT",
            "DB_URL",
            "HELIX_READY_FILE",
            "JWT_SECRET",
            "INSTRUMENTS_DIR",
            "HERALD_ADDR",
            "API_ADDR",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        // A test process that aborts (no Drop) must not leave its herald running.
        // SAFETY: prctl only, between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawning the herald binary");
        let deadline = Instant::now() + Duration::from_secs(60);
        let ready: Value = loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                break serde_json::from_str(&text).expect("ready file is JSON");
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the herald exited ({status}) before it was ready; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "the herald was not ready within 60 s; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let addr = |key: &str| -> SocketAddr {
            ready[key]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("ready file: no {key} in {ready}"))
        };
        Herald { grpc: addr("otlp_grpc"), http: addr("otlp_http"), api: addr("api"), child, dir }
    }

    /// `host:port` of OTLP/gRPC, as a user would pass to `.endpoint(..)`.
    pub fn endpoint(&self) -> String {
        self.grpc.to_string()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("herald.log")).unwrap_or_default()
    }

    /// GET an API path: (status, JSON body or the text as a JSON string).
    pub fn request(&self, path: &str) -> (u16, Value) {
        let url = format!("http://{}{}", self.api, path);
        // A blocking request on its own thread: tests call this from sync and async code alike.
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    let response = reqwest::get(&url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
                    let status = response.status().as_u16();
                    let text = response.text().await.expect("API body");
                    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
                })
            })
            .join()
            .expect("API request thread")
        })
    }

    pub fn get(&self, path: &str) -> Value {
        let (status, body) = self.request(path);
        assert_eq!(status, 200, "GET {path} → {status}: {body}");
        body
    }

    pub fn status_of(&self, entity: &str) -> u16 {
        self.request(&format!("/api/v1/entity/{}", enc(entity))).0
    }

    pub fn entity_body(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/entity/{}", enc(id)))
    }

    /// The entity row of a created (not placeholder) entity, sanity-checked.
    pub fn created(&self, id: &str) -> Value {
        let entity = self.entity_body(id)["entity"].clone();
        assert_eq!(entity["id"], id);
        assert_eq!(entity["instrument_id"], "MY_INST", "{entity}");
        assert_eq!(entity["placeholder"], false, "{entity}");
        assert!(is_hex(&entity["trace_id"], 32), "{entity}");
        assert!(is_hex(&entity["span_id"], 16), "{entity}");
        assert!(entity["end_ns"].as_i64() >= entity["timestamp_ns"].as_i64(), "{entity}");
        entity
    }

    pub fn operations(&self, id: &str) -> Vec<Value> {
        self.get(&format!("/api/v1/entity/{}/operations", enc(id))).as_array().cloned().unwrap_or_default()
    }

    pub fn events(&self, id: &str) -> Vec<Value> {
        self.walk(&format!("/api/v1/entity/{}/events", enc(id)), "events")
    }

    pub fn logs(&self, id: &str) -> Vec<Value> {
        self.walk(&format!("/api/v1/entity/{}/logs", enc(id)), "logs")
    }

    pub fn graph(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/entity/{}/graph", enc(id)))
    }

    pub fn lineage(&self, id: &str, direction: &str) -> Value {
        self.get(&format!("/api/v1/entity/{}/lineage?direction={direction}", enc(id)))
    }

    pub fn trace(&self, trace_id: &str) -> Value {
        self.get(&format!("/api/v1/trace/{trace_id}"))
    }

    /// Sorted IDs of every entity of MY_INST.
    pub fn entity_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .walk("/api/v1/entities?instrument=MY_INST", "entities")
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    }

    pub fn walk(&self, path: &str, key: &str) -> Vec<Value> {
        let mut rows = Vec::new();
        let mut cursor: Option<String> = None;
        let sep = if path.contains('?') { '&' } else { '?' };
        loop {
            let page = match &cursor {
                None => self.get(path),
                Some(c) => self.get(&format!("{path}{sep}cursor={}", enc(c))),
            };
            rows.extend(page[key].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(c) if !c.is_empty() => cursor = Some(c.to_owned()),
                _ => return rows,
            }
        }
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The set of (source, target) edges of a graph or lineage body.
pub fn edges(body: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = body["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["source"].as_str().unwrap().to_owned(), e["target"].as_str().unwrap().to_owned()))
        .collect();
    out.sort();
    out
}

pub fn is_hex(v: &Value, len: usize) -> bool {
    v.as_str().is_some_and(|s| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
}

/// Percent-encode an entity ID for a URL path segment.
pub fn enc(id: &str) -> String {
    let mut out = String::new();
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The instrument of the guide's set-up, pointed at `herald`.
pub fn tel(herald: &Herald) -> helixobs::Instrument {
    helixobs::Instrument::builder("my-pipeline")
        .instrument_id("MY_INST")
        .endpoint(herald.endpoint())
        .process_name("MY_INST/ingest")
        .build()
        .expect("building the instrument")
}

pub fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}
