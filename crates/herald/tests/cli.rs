//! The command line as a new user meets it: `herald demo` on a store of one's choosing (or a
//! temporary one that leaves nothing behind), logs without colour codes when they go to a
//! file, and the same footer on every help that lists the addresses.

mod support;

use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use helix_store::{SqliteStore, Store};
use support::*;

/// Run the herald in `cwd` with its output in `cwd/out.log`; kill it and panic if it has not
/// exited within a minute.
fn run_to_end(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let log_path = cwd.join("out.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("DB_URL")
        .env_remove("COLLECTOR_ENDPOINT")
        .env_remove("NO_COLOR")
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawning the herald binary");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("herald {args:?} still running after 60 s:\n{}", std::fs::read_to_string(&log_path).unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, std::fs::read_to_string(&log_path).unwrap())
}

fn demo_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["demo", "--duration", "3s", "--rate", "200"];
    args.extend(LOOPBACK);
    args.extend(extra);
    args
}

/// Entities per stage the simulated telescope left in the SQLite store at `path`.
async fn demo_entities(path: &Path) -> u64 {
    let store = SqliteStore::open(path, Default::default()).expect("the demo's store is there");
    let instruments = store.instruments().await.unwrap();
    assert_eq!(instruments, [herald::simulate::INSTRUMENT]);
    store.stages(herald::simulate::INSTRUMENT).await.unwrap().iter().map(|s| s.count).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_keeps_its_data_in_the_store_db_url_names() {
    let cwd = tempfile::tempdir().unwrap();
    let db = cwd.path().join("kept.db");
    let url = format!("sqlite://{}", db.display());
    let (status, out) = run_to_end(cwd.path(), &demo_args(&["--db-url", &url]), &[]);
    assert!(status.success(), "{status}:\n{out}");
    assert!(out.contains("the data stays in"), "the demo says where its data is:\n{out}");
    assert!(demo_entities(&db).await > 0, "no entities stored:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_keeps_its_data_in_the_store_db_url_names_from_the_environment() {
    let cwd = tempfile::tempdir().unwrap();
    let db = cwd.path().join("env.db");
    let url = format!("sqlite://{}", db.display());
    let (status, out) = run_to_end(cwd.path(), &demo_args(&[]), &[("DB_URL", &url)]);
    assert!(status.success(), "{status}:\n{out}");
    assert!(demo_entities(&db).await > 0, "no entities stored:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_without_a_store_leaves_nothing_behind() {
    let cwd = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let tmp_dir = tmp.path().display().to_string();
    let (status, out) = run_to_end(cwd.path(), &demo_args(&[]), &[("TMPDIR", &tmp_dir)]);
    assert!(status.success(), "{status}:\n{out}");
    assert!(out.contains("deleted on exit"), "{out}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "temporary store left behind: {left:?}");
    let in_cwd: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(in_cwd, ["out.log"], "the demo wrote a store in the working directory");
}

async fn logs_of_a_short_run(args: &[&str]) -> String {
    let mut herald =
        Herald::start_with(HeraldOptions { args: args.iter().map(|a| a.to_string()).collect(), ..Default::default() });
    let p = Pipeline::new(&herald, Transport::Grpc, "svc", "CHIME");
    p.create("ingest", "b-1", &[]);
    p.flush().await;
    p.shutdown().await;
    let status = herald.stop_within(Duration::from_secs(60)).expect("the herald stops");
    assert!(status.success(), "{status}");
    herald.log()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_written_to_a_file_carry_no_colour_codes() {
    let log = logs_of_a_short_run(&[]).await;
    assert!(log.contains("task stopped"), "the log has the shutdown reports:\n{log}");
    assert!(!log.contains('\x1b'), "ANSI escape in a log file:\n{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_plain_json() {
    let log = logs_of_a_short_run(&["--log-format", "json"]).await;
    assert!(!log.contains('\x1b'), "ANSI escape in a JSON log:\n{log:?}");
    // The human-readable stdout lines share the file; every stderr line is one JSON object.
    let json: Vec<&str> = log.lines().filter(|l| l.starts_with('{')).collect();
    assert!(json.len() >= 5, "{log}");
    for line in json {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.is_object());
    }
}

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_herald")).args(args).output().expect("herald --help");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    // Undo clap's line wrapping.
    String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn serve_and_demo_help_end_with_the_address_footer_of_herald_help() {
    let footer = herald::config::ADDRESS_HELP.split_whitespace().collect::<Vec<_>>().join(" ");
    for args in [&["--help"][..], &["serve", "--help"], &["demo", "--help"], &["serve", "-h"]] {
        let text = help(args);
        assert!(text.contains(&footer), "herald {args:?} lacks the footer: {text}");
    }
    assert!(help(&["demo", "--help"]).contains("unless --db-url / DB_URL names one"));
    assert!(help(&["serve", "--help"]).contains("--shutdown-timeout"));
}
