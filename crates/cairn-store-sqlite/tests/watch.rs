//! Change watches across store instances on one file, as two processes would have them:
//! another connection's commits are seen through `PRAGMA data_version`.

use std::sync::Arc;

use cairn_store::{Store, conformance};
use cairn_store_sqlite::SqliteStore;

/// Two stores on one new file, and the directory holding it.
fn two_stores() -> (Arc<dyn Store>, Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let a = SqliteStore::open_in_dir(dir.path()).expect("open a");
    let b = SqliteStore::open_in_dir(dir.path()).expect("open b");
    (Arc::new(a), Arc::new(b), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_sees_another_stores_commits() {
    let (a, b, _dir) = two_stores();
    conformance::a_watch_sees_another_instances_commits(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_on_one_store_sees_every_event_another_writes() {
    let (a, b, _dir) = two_stores();
    conformance::a_follower_sees_every_event_once_in_order(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_fail_once_their_store_is_closed_and_a_new_watch_polls_again() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open_in_dir(dir.path()).expect("open");
    let mut first = store.watch_changes().await.expect("watch");
    drop(first);
    let mut watch = store.watch_changes().await.expect("watch again");
    drop(store);
    let error = watch.changed().await.expect_err("the store is closed");
    assert!(error.to_string().contains("closed"), "{error}");

    // A watch made after the last one was dropped starts the poll again.
    let (a, b, _dir) = two_stores();
    first = a.watch_changes().await.expect("watch");
    drop(first);
    conformance::a_watch_sees_another_instances_commits(a, b).await;
}
