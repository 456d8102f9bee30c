//! PostgreSQL side of the herald integration tests: the test server (`HELIX_TEST_PG_URL`, a
//! clear failure when missing), a fresh database per test (herald processes are started on it
//! with `support::Herald::on_database`), and throw-away clusters a test may stop and start.
#![allow(dead_code)] // each test binary uses part of it

use std::path::{Path, PathBuf};
use std::process::Command;

use helix_store::postgres::tokio_postgres::{self, Client, NoTls};

/// The test server; panics with instructions when it is not configured.
pub fn pg_url() -> String {
    match std::env::var("HELIX_TEST_PG_URL") {
        Ok(u) if !u.trim().is_empty() => u,
        _ => panic!(
            "HELIX_TEST_PG_URL is not set: the PostgreSQL tests need a server. Run `bash scripts/test.sh` \
             (it starts a throw-away cluster), or `source scripts/test.d/postgres-setup.sh` in your shell \
             first, or export HELIX_TEST_PG_URL=postgres://USER@127.0.0.1:PORT/DB for a server of yours"
        ),
    }
}

/// `url` with its database (last path segment) replaced by `db`; query parameters kept.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{db}?{q}"),
        None => format!("{host_part}/{db}"),
    }
}

pub async fn connect(url: &str) -> Client {
    let (client, conn) =
        tokio_postgres::connect(url, NoTls).await.unwrap_or_else(|e| panic!("connect to the test server: {e}"));
    tokio::spawn(conn);
    client
}

/// A database of its own on the server of `server_url`, dropped (best effort) at the end.
pub struct TestDb {
    pub url: String,
    server_url: String,
    name: String,
}

impl TestDb {
    pub async fn create(server_url: &str, tag: &str) -> TestDb {
        let name = format!("hx_{tag}_{}_{:08x}", std::process::id(), rand::random::<u32>());
        connect(server_url)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        TestDb { url: with_database(server_url, &name), server_url: server_url.to_owned(), name }
    }

    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    /// `SELECT count(*) …` as a number.
    pub async fn count(&self, sql: &str) -> i64 {
        self.client().await.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (self.server_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&server, NoTls).await.ok()?;
                tokio::spawn(conn);
                client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.ok()
            })
        })
        .join();
    }
}

/// A throw-away PostgreSQL cluster of the test's own (initdb from `HELIX_TEST_PG_BIN`, run as
/// `HELIX_TEST_PG_USER`), so a test can stop and start the server without disturbing others.
pub struct Cluster {
    bin: PathBuf,
    user: String,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

fn env_or_panic(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `bash scripts/test.sh` or `source scripts/test.d/postgres-setup.sh` first (it exports the PostgreSQL binaries the outage tests start their own cluster with)")
    })
}

impl Cluster {
    pub fn start() -> Cluster {
        let bin = PathBuf::from(env_or_panic("HELIX_TEST_PG_BIN"));
        let user = env_or_panic("HELIX_TEST_PG_USER");
        let dir = tempfile::Builder::new().prefix("helix-pg-outage-").tempdir_in("/tmp").expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let cluster = Cluster { bin, user, dir, port };
        cluster.chown();
        cluster.run(
            "initdb",
            &["-D", &cluster.data(), "-U", "helix", "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"],
        );
        cluster.pg_ctl_start();
        cluster
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn chown(&self) {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let ok = Command::new("chown")
                .args(["-R", &self.user])
                .arg(self.dir.path())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "chown of the cluster directory to {}", self.user);
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        // SAFETY: geteuid has no preconditions.
        let mut cmd = if unsafe { libc::geteuid() } == 0 {
            let mut c = Command::new("runuser");
            c.args(["-u", &self.user, "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).output().unwrap_or_else(|e| panic!("running {}: {e}", exe.display()));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn pg_ctl_start(&self) {
        let log = self.dir.path().join("server.log").display().to_string();
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        self.run("pg_ctl", &["-D", &self.data(), "-l", &log, "-w", "-t", "60", "-o", &opts, "start"]);
    }

    /// `pg_ctl stop -m fast`: sessions are terminated, the server shuts down cleanly.
    pub fn pg_ctl_stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://helix@127.0.0.1:{}/{db}", self.port)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let data = self.data();
        // SAFETY: geteuid has no preconditions.
        let _ = if unsafe { libc::geteuid() } == 0 {
            Command::new("runuser")
                .args(["-u", &self.user, "--"])
                .arg(&exe)
                .args(["-D", &data, "-m", "immediate", "stop"])
                .output()
        } else {
            Command::new(&exe).args(["-D", &data, "-m", "immediate", "stop"]).output()
        };
    }
}
