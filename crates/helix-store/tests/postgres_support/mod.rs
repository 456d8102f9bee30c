//! Shared by the PostgreSQL test files: the server URL from `HELIX_TEST_PG_URL` (a clear
//! failure, never a silent skip, when it is missing) and a fresh schema per test, dropped
//! when the test ends.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use helix_store::{PostgresOptions, PostgresStore};

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

/// A schema name unique to this process and call.
pub fn unique_schema(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "t_{tag}_{}_{}_{:06x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// Drops its schema when dropped (on its own thread and runtime: drops may happen inside the
/// test's runtime, where blocking on it is not allowed).
pub struct SchemaGuard {
    pub url: String,
    pub schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.ok()?;
                tokio::spawn(conn);
                client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await.ok()
            })
        })
        .join();
    }
}

/// Options for a test store in `schema`: a small pool, no background retention.
pub fn test_options(schema: &str) -> PostgresOptions {
    PostgresOptions { schema: Some(schema.to_owned()), pool_size: 4, retention: None, ..Default::default() }
}

/// A fresh, migrated store in its own schema, and the guard that drops the schema.
pub async fn fresh(tag: &str) -> (PostgresStore, SchemaGuard) {
    let url = pg_url();
    let schema = unique_schema(tag);
    let store = PostgresStore::open(&url, test_options(&schema)).await.expect("open the PostgreSQL store");
    (store, SchemaGuard { url, schema })
}

/// A plain connection with `search_path` set to `schema`, for looking at rows directly.
pub async fn raw_client(schema: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    client.batch_execute(&format!("SET search_path = {schema}")).await.expect("search_path");
    client
}
