//! The shared `Store` conformance suite, run against `MemoryStore`: each test on a fresh,
//! empty store.

cairn_store::conformance_tests!(|| async {
    cairn_store::conformance::TestStore::new(cairn_store::MemoryStore::new())
});
