//! The poll lease's fence, end to end: two engines on one SQLite file, the second's clock
//! 100 s ahead (skew), so it takes over the source while the first one's poll is still
//! fetching. The first poll's late commit writes nothing (no run, no cursor moved back), and
//! the item only it had seen is started by the next poll: nothing lost, nothing twice.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use cairn_engine::{
    Clock, Engine, ManualClock, Poll, PollCtx, PollSource, Polled, Registry, StartFrom, Workflow,
    WorkflowCtx,
};
use cairn_store::{RunFilter, Store};
use cairn_store_sqlite::SqliteStore;
use serde_json::json;
use support::{Text, eventually};
use tempfile::TempDir;
use tokio::sync::Semaphore;

const T0: i64 = 1_772_409_600_000;

/// The source: its first poll waits for `release` and then finds issues 1 to 3; the second
/// finds 1 and 2 (the tracker lagging); later ones 1 to 3 again.
fn source(calls: &Arc<AtomicUsize>, release: &Arc<Semaphore>) -> Poll {
    let (calls, release) = (calls.clone(), release.clone());
    let triage: Workflow<Text, Text> =
        Workflow::new("triage").run(|input: Text, _ctx: WorkflowCtx| async move { Ok(input) });
    PollSource::new("issues")
        .every("1m")
        .start_from(StartFrom::Beginning)
        .poll(move |_ctx: PollCtx, _cursor| {
            let (calls, release) = (calls.clone(), release.clone());
            async move {
                let issues = match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => {
                        release.acquire().await.expect("the gate").forget();
                        vec![1, 2, 3]
                    }
                    1 => vec![1, 2],
                    _ => vec![1, 2, 3],
                };
                let cursor = issues.len();
                Ok(Polled::new(issues, Some(json!(cursor))))
            }
        })
        .item_key(|id: &u64| id.to_string())
        .attach(&triage, |id: u64| {
            Ok(Some(Text {
                text: id.to_string(),
            }))
        })
}

fn engine_at(store: &Arc<SqliteStore>, clock: &Arc<ManualClock>, poll: Poll) -> Engine {
    let clock: Arc<dyn Clock> = clock.clone();
    Engine::builder(store.clone(), Registry::new().poll(poll))
        .clock(clock)
        .build()
        .expect("a valid registry")
}

async fn triggers(store: &SqliteStore) -> Vec<String> {
    let mut triggers: Vec<String> = store
        .list_runs(&RunFilter::default())
        .await
        .expect("runs")
        .into_iter()
        .map(|run| run.trigger)
        .collect();
    triggers.sort();
    triggers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_whose_lease_was_taken_over_commits_nothing() {
    let dir = TempDir::new().expect("temp dir");
    let store = Arc::new(SqliteStore::open_in_dir(dir.path()).expect("open"));
    let (calls, release) = (Arc::new(AtomicUsize::new(0)), Arc::new(Semaphore::new(0)));
    let late_clock = Arc::new(ManualClock::new(T0));
    let late = engine_at(&store, &late_clock, source(&calls, &release));
    let ahead_clock = Arc::new(ManualClock::new(T0 + 100_000));
    let ahead = engine_at(&store, &ahead_clock, source(&calls, &release));
    late.declare_poll_sources().await.expect("declare");

    let stale = tokio::spawn(async move { late.poll_due_sources().await });
    assert!(
        eventually(Duration::from_secs(10), async || calls
            .load(Ordering::SeqCst)
            == 1)
        .await,
        "the first engine's poll is fetching"
    );
    // 100 s ahead, the first engine's lease (60 s timeout + 15 s) has lapsed.
    assert_eq!(ahead.poll_due_sources().await.expect("poll"), 2);
    release.add_permits(1);
    assert_eq!(
        stale.await.expect("the task").expect("poll"),
        0,
        "the stale poll's commit is fenced off"
    );
    assert_eq!(triggers(&store).await, ["poll:issues:1", "poll:issues:2"]);
    let source = store
        .get_poll_source("issues")
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(
        source.cursor,
        Some(json!(2)),
        "the stale cursor was not stored"
    );
    assert!(source.lease_owner.is_none());

    ahead_clock.advance(Duration::from_secs(60));
    assert_eq!(ahead.poll_due_sources().await.expect("poll"), 1);
    assert_eq!(
        triggers(&store).await,
        ["poll:issues:1", "poll:issues:2", "poll:issues:3"],
        "issue 3, seen only by the fenced-off poll, is started by the next one, once"
    );
}
