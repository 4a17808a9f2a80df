//! The shared `Store` conformance suite, run against `PostgresStore`: each test in a
//! PostgreSQL schema of its own (see `common`), so the tests run in parallel.

mod common;

use cairn_store::conformance::TestStore;
use common::TestSchema;

async fn fresh_store() -> TestStore {
    let schema = TestSchema::new();
    let store = schema.store().await;
    TestStore::with_guard(store, schema)
}

cairn_store::conformance_tests!(fresh_store);
