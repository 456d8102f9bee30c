//! Runs the shared conformance suite against the SQLite backend, one fresh database file per
//! check in its own temporary directory.

use helix_store::conformance::Fixture;
use helix_store::{SqliteOptions, SqliteStore};

async fn fresh_store() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested").join("herald.db");
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path, SqliteOptions::default()))
        .await
        .expect("open task")
        .expect("open store");
    Fixture::new(Box::new(store), dir)
}

helix_store::conformance_tests!(fresh_store);
