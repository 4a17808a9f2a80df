//! The shared `Store` conformance suite, run against `PostgresStore`: each test in a
//! PostgreSQL schema of its own (see `common`), so the tests run in parallel. Not run (and
//! reported so) when the test command found no PostgreSQL.

mod common;

use cairn_store::conformance::TestStore;
use common::TestSchema;

async fn fresh_store() -> Option<TestStore> {
    let schema = TestSchema::new()?;
    let store = schema.store().await;
    Some(TestStore::with_guard(store, schema))
}

cairn_store::conformance_tests!(fresh_store);
