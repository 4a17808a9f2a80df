//! The shared `Store` conformance suite, run against `SqliteStore`: each test on its own
//! database file in its own temporary directory.

use cairn_store::conformance::TestStore;
use cairn_store_sqlite::SqliteStore;

async fn fresh_store() -> TestStore {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open_in_dir(dir.path()).expect("open a fresh SQLite store");
    TestStore::with_guard(store, dir)
}

cairn_store::conformance_tests!(fresh_store);
