//! Runs the shared conformance suite against the PostgreSQL backend, each check in a fresh
//! schema of the server named by `HELIX_TEST_PG_URL` (scripts/test.sh provides one).

mod postgres_support;

use helix_store::conformance::Fixture;

async fn fresh_store() -> Fixture {
    let (store, guard) = postgres_support::fresh("conf").await;
    Fixture::new(Box::new(store), guard)
}

helix_store::conformance_tests!(fresh_store);
