//! Two store instances on one database, as two processes have them: a watch on one sees the
//! other's commits, and a follower driven by the watch sees every event once, in order.
//!
//! Not part of [`conformance_tests!`](crate::conformance_tests) (it needs two instances
//! on one database, which only a backend knows how to open): a backend with shared storage
//! calls these from its own tests.

use std::sync::Arc;

use cairn_core::{Event, EventRecord};
use serde_json::json;

use super::{
    follow::{WATCH_DEADLINE, expect_change},
    support::{LEASE_MS, T0, completed, create, create_leased, lease, new_run, started, worker},
};
use crate::{NewRun, RunId, Store};

/// A watch on `a` reports `b`'s create and append of a run (by id or as `Unknown`), within
/// the deadline.
pub async fn a_watch_sees_another_instances_commits(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let mut watch = a.watch_changes().await.expect("watch_changes");
    let w = worker("w-b");
    let id = create_leased(&*b, "wf", &w, T0 + LEASE_MS).await;
    expect_change(&mut *watch, id, "another instance's create_run").await;
    super::follow::drain(&mut *watch).await;
    b.append(id, &w, &[started("a", 0)], T0 + 1)
        .await
        .expect("append");
    expect_change(&mut *watch, id, "another instance's append").await;
}

/// How many appends the writer makes in [`a_follower_sees_every_event_once_in_order`].
const FOLLOWED_APPENDS: u32 = 40;

/// A follower on `a` reads a run that `b` writes, with `events_after` each time its watch
/// reports a change, and sees every event exactly once, in order, ending with the run's end.
/// The watch is made first; the run is created and written while the follower follows.
pub async fn a_follower_sees_every_event_once_in_order(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let id = RunId::new();
    let mut watch = a.watch_changes().await.expect("watch_changes");
    let writer = tokio::spawn(async move { write_run(&*b, id).await });

    let deadline = tokio::time::Instant::now() + WATCH_DEADLINE * 3;
    let mut seen: Vec<EventRecord> = Vec::new();
    loop {
        let after = seen.last().map_or(0, |record| record.seq);
        let new = a
            .events_after(id, after)
            .await
            .expect("events_after must succeed");
        seen.extend(new);
        if seen
            .last()
            .is_some_and(|record| matches!(record.event, Event::RunCompleted { .. }))
        {
            break;
        }
        match tokio::time::timeout_at(deadline, watch.changed()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => panic!("the change watch failed: {error}"),
            Err(_) => panic!(
                "the follower did not see the run end (saw {} events)",
                seen.len()
            ),
        }
    }
    let written = writer.await.expect("the writer task panicked");
    let seqs: Vec<u64> = seen.iter().map(|record| record.seq).collect();
    assert_eq!(
        seqs,
        (1..=written.len() as u64).collect::<Vec<_>>(),
        "the follower sees every seq once, in order"
    );
    assert_eq!(
        seen, written,
        "the follower sees exactly what the writer wrote"
    );
}

/// Creates run `id` on `store` and writes it: appends of one to three events, then its end.
/// Returns its whole log as `store` reads it.
async fn write_run(store: &dyn Store, id: RunId) -> Vec<EventRecord> {
    let w = worker("w-b");
    create(
        store,
        NewRun {
            id,
            lease: Some(lease(&w, T0 + LEASE_MS)),
            ..new_run("followed", json!({}))
        },
    )
    .await;
    for n in 0..FOLLOWED_APPENDS {
        let batch: Vec<Event> = match n % 3 {
            0 => vec![started("s", n)],
            1 => vec![completed("s", n - 1, json!(n)), started("s", n)],
            _ => vec![
                completed("s", n, json!(n)),
                started("t", n),
                completed("t", n, json!(0)),
            ],
        };
        store
            .append(id, &w, &batch, T0 + i64::from(n))
            .await
            .expect("append");
        tokio::task::yield_now().await;
    }
    let end = Event::RunCompleted {
        output: json!("done"),
    };
    store.append(id, &w, &[end], T0 + 100).await.expect("end");
    store.events(id).await.expect("events")
}
