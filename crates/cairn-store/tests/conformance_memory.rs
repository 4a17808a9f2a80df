//! The shared `Store` conformance suite, run against `MemoryStore`: each test on a fresh,
//! empty store.

cairn_store::conformance_tests!(|| async {
    cairn_store::conformance::TestStore::new(cairn_store::MemoryStore::new())
});

/// Two clones of one `MemoryStore` share it, as two instances of a backend share a database.
fn two_clones() -> (
    std::sync::Arc<dyn cairn_store::Store>,
    std::sync::Arc<dyn cairn_store::Store>,
) {
    let store = cairn_store::MemoryStore::new();
    (
        std::sync::Arc::new(store.clone()),
        std::sync::Arc::new(store),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_sees_another_clones_commits() {
    let (a, b) = two_clones();
    cairn_store::conformance::a_watch_sees_another_instances_commits(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_sees_every_event_once_in_order() {
    let (a, b) = two_clones();
    cairn_store::conformance::a_follower_sees_every_event_once_in_order(a, b).await;
}
