//! Change watches and the child-run rule across processes: two stores (two pools, as two
//! worker processes) on one schema. A watch hears the other store's commits through
//! `LISTEN/NOTIFY` and says `Unknown` after its connection was lost; a parent parking while
//! its child ends in the other process is never left parked.

mod common;

use std::time::Duration;

use cairn_core::{Event, RunStatus};
use cairn_store::{Changes, Lease, NEVER, NewRun, Park, RunId, Store, WorkerId, conformance};
use cairn_store_postgres::PostgresStore;
use common::TestSchema;
use serde_json::json;

const T0: i64 = 1_700_000_000_000;
const LEASE_MS: i64 = 30_000;
/// Generous bound for anything that should happen "promptly" on a loaded machine.
const PROMPTLY: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_sees_another_processes_commits() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let (a, b) = schema.two_stores().await;
    conformance::a_watch_sees_another_instances_commits(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_in_one_process_sees_every_event_another_writes() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let (a, b) = schema.two_stores().await;
    conformance::a_follower_sees_every_event_once_in_order(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_says_unknown_after_its_listen_connection_was_lost() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let (watched, app) = schema.store_named("cairn-watch").await;
    let other = schema.store().await;
    let mut watch = watched.watch_changes().await.expect("watch");

    // The watch's connection last took the watch keys, after its `LISTEN`.
    assert_eq!(
        schema
            .terminate(&app, "SELECT pg_advisory_lock_shared%")
            .await,
        1,
        "one change-watch connection per store"
    );
    let changes = tokio::time::timeout(PROMPTLY, watch.changed())
        .await
        .expect("the watch hears of the lost connection")
        .expect("the store is open");
    assert_eq!(
        changes,
        Changes::Unknown,
        "notifications may have been lost"
    );

    // Listening again, holding the watch keys again: another process's commits are heard,
    // by run id.
    let id = other
        .create_run(new_run("after-reconnect", None))
        .await
        .expect("create")
        .run_id;
    let deadline = tokio::time::Instant::now() + PROMPTLY;
    loop {
        let changes = tokio::time::timeout_at(deadline, watch.changed())
            .await
            .expect("the watch hears the other process after reconnecting")
            .expect("the store is open");
        if changes == Changes::Runs(vec![id]) {
            break;
        }
    }
}

fn new_run(workflow: &str, parent: Option<RunId>) -> NewRun {
    NewRun {
        id: RunId::new(),
        workflow: workflow.to_owned(),
        input: json!({}),
        idempotency_key: None,
        parent_run_id: parent,
        forked_from: None,
        trigger: "test".into(),
        owner: Default::default(),
        history: Vec::new(),
        lease: None,
        now_ms: T0,
    }
}

fn leased(run: NewRun, worker: &WorkerId) -> NewRun {
    NewRun {
        lease: Some(Lease {
            worker: worker.clone(),
            expires_at_ms: T0 + LEASE_MS,
        }),
        ..run
    }
}

/// A parent leased to `wa` (created through `a`), its child leased to `wb` (through `b`),
/// and the parent's park waiting for the child.
async fn family(
    a: &PostgresStore,
    wa: &WorkerId,
    b: &PostgresStore,
    wb: &WorkerId,
) -> (RunId, RunId, Park) {
    let parent = a
        .create_run(leased(new_run("parent", None), wa))
        .await
        .expect("create the parent")
        .run_id;
    let child = b
        .create_run(leased(new_run("child", Some(parent)), wb))
        .await
        .expect("create the child")
        .run_id;
    let park = Park {
        status: RunStatus::Waiting,
        wake_at_ms: NEVER,
        known_seq: 1,
        child: Some(child),
    };
    (parent, child, park)
}

/// How many parent/child pairs race in
/// [`a_parent_parking_while_its_child_ends_elsewhere_is_never_left_parked`].
const RACES: usize = 30;

/// A parent parks (store `a`) exactly while its child ends (store `b`, another process), many
/// times: whichever commits first, the parent ends up ready, never parked for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_parking_while_its_child_ends_elsewhere_is_never_left_parked() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let (a, b) = schema.two_stores().await;
    let (wa, wb) = (
        WorkerId("parent-worker".into()),
        WorkerId("child-worker".into()),
    );
    let mut parked_first = 0;
    for n in 0..RACES {
        let (parent, child, park) = family(&a, &wa, &b, &wb).await;
        let end = async {
            if n % 2 == 0 {
                let done = Event::RunCompleted { output: json!(n) };
                b.append(child, &wb, &[done], T0 + 2).await
            } else {
                b.cancel_run(child, "race", T0 + 2).await.map(drop)
            }
        };
        let (parked, ended) = tokio::join!(a.park_run(parent, &wa, park, T0 + 1), end);
        ended.expect("the child ends");
        if parked.expect("the parent parks or is made ready") {
            parked_first += 1;
        }
        let run = a.get_run(parent).await.expect("read").expect("exists");
        assert_eq!(
            run.status,
            RunStatus::Queued,
            "race {n}: the parent must end up ready, not parked (park returned {parked_first} times true so far)"
        );
    }
    eprintln!("{parked_first} of {RACES} parks committed before the child's end");
}

/// A child's end, one statement committed alone, announces its parked parent: a worker of
/// the parent's workflow waiting in another process wakes, and finds the parent queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_childs_end_wakes_workers_of_its_parked_parent_in_another_process() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let (a, b) = schema.two_stores().await;
    let w = WorkerId("w".into());
    let (parent, child, park) = family(&a, &w, &a, &w).await;
    assert!(
        a.park_run(parent, &w, park, T0 + 1).await.expect("park"),
        "the parent parks: its child runs"
    );
    let mut waiter = b
        .ready_waiter(&["parent".to_owned()])
        .await
        .expect("listen");
    let done = [Event::RunCompleted { output: json!(1) }];
    a.append(child, &w, &done, T0 + 2)
        .await
        .expect("the child ends");
    assert!(waiter.wait(PROMPTLY).await, "woken by the child's end");
    let run = b.get_run(parent).await.expect("read").expect("exists");
    assert_eq!(run.status, RunStatus::Queued);
}
