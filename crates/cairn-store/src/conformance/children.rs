//! Conformance: the child-run rule. A parent parks while its child runs; the child's end
//! (append, cancel, a create whose history ends it) makes a parked parent ready, and parking
//! with a child that has already ended makes the parent ready at once.

use std::sync::Arc;

use cairn_core::{ErrorInfo, ErrorKind, Event, RunStatus};
use serde_json::json;

use super::{
    follow::expect_change,
    support::{LEASE_MS, T0, create, events, get, lease, new_run, worker},
};
use crate::{NEVER, NewRun, Park, RunId, Store, StoreError, WorkerId};

/// A parent leased to `holder` and its child, leased to `child_holder`.
async fn parent_and_child(
    store: &dyn Store,
    holder: &WorkerId,
    child_holder: &WorkerId,
) -> (RunId, RunId) {
    let parent = create(
        store,
        NewRun {
            lease: Some(lease(holder, T0 + LEASE_MS)),
            ..new_run("parent", json!({}))
        },
    )
    .await;
    let child = create(
        store,
        NewRun {
            parent_run_id: Some(parent),
            trigger: "child".into(),
            lease: Some(lease(child_holder, T0 + LEASE_MS)),
            ..new_run("child", json!({}))
        },
    )
    .await;
    (parent, child)
}

/// Parks `parent` (held by `holder`) waiting for `child`, with no wake time of its own.
async fn park_for(store: &dyn Store, parent: RunId, holder: &WorkerId, child: RunId) -> bool {
    let park = Park {
        status: RunStatus::Waiting,
        wake_at_ms: NEVER,
        known_seq: events(store, parent).await.len() as u64,
        child: Some(child),
    };
    store
        .park_run(parent, holder, park, T0 + 1)
        .await
        .expect("park_run")
}

/// Checks that `parent` is queued, ready at `at`, without a lease, and claimable then.
async fn assert_woken(store: &dyn Store, parent: RunId, at: i64, how: &str) {
    let run = get(store, parent).await;
    assert_eq!(
        (run.status, run.ready_at_ms, run.lease_owner),
        (RunStatus::Queued, at, None),
        "{how}: the parked parent must become queued and ready at the child's end"
    );
    let claimed = store
        .claim_ready(
            &["parent".to_owned()],
            &lease(&worker("w9"), at + LEASE_MS),
            at,
            10,
        )
        .await
        .expect("claim_ready");
    assert_eq!(
        claimed.iter().map(|c| c.run.run_id).collect::<Vec<_>>(),
        vec![parent],
        "{how}: the woken parent is claimable at once"
    );
}

/// A parked parent is woken by its child's end through an append (and the watch reports
/// the parent), through a cancel, and through a create whose history ends the child.
pub async fn a_child_end_wakes_its_parked_parent(store: Arc<dyn Store>) {
    let store = &*store;
    let (p, c) = (worker("parent-worker"), worker("child-worker"));

    let (parent, child) = parent_and_child(store, &p, &c).await;
    assert!(
        park_for(store, parent, &p, child).await,
        "the child runs: parked"
    );
    assert_eq!(get(store, parent).await.status, RunStatus::Waiting);
    let mut watch = store.watch_changes().await.expect("watch_changes");
    let done = Event::RunCompleted { output: json!(7) };
    store
        .append(child, &c, &[done], T0 + 5)
        .await
        .expect("end the child");
    expect_change(&mut *watch, parent, "a parent woken by its child's end").await;
    assert_woken(store, parent, T0 + 5, "append").await;

    let (parent, child) = parent_and_child(store, &p, &c).await;
    assert!(park_for(store, parent, &p, child).await);
    store
        .cancel_run(child, "operator", T0 + 6)
        .await
        .expect("cancel the child");
    assert_woken(store, parent, T0 + 6, "cancel_run").await;

    let (parent, _) = parent_and_child(store, &p, &c).await;
    let child = RunId::new();
    let sleeping = Park {
        status: RunStatus::Sleeping,
        wake_at_ms: T0 + 60_000,
        known_seq: events(store, parent).await.len() as u64,
        child: None,
    };
    assert!(
        store
            .park_run(parent, &p, sleeping, T0 + 1)
            .await
            .expect("park")
    );
    let failed = Event::RunFailed {
        error: ErrorInfo::new(ErrorKind::Internal, "copied failure"),
    };
    create(
        store,
        NewRun {
            id: child,
            parent_run_id: Some(parent),
            history: vec![failed],
            now_ms: T0 + 7,
            ..new_run("child", json!({}))
        },
    )
    .await;
    assert_woken(store, parent, T0 + 7, "create_run with an ending history").await;
}

/// A child's end leaves a parent that is not parked alone: a running parent keeps its
/// lease and status (it finds the child ended when it parks).
pub async fn a_child_end_leaves_a_running_parent_alone(store: Arc<dyn Store>) {
    let store = &*store;
    let (p, c) = (worker("parent-worker"), worker("child-worker"));
    let (parent, child) = parent_and_child(store, &p, &c).await;
    let before = get(store, parent).await;
    let done = Event::RunCompleted { output: json!(1) };
    store
        .append(child, &c, &[done], T0 + 5)
        .await
        .expect("end the child");
    let after = get(store, parent).await;
    assert_eq!(
        (after.status, after.lease_owner, after.ready_at_ms),
        (before.status, before.lease_owner, before.ready_at_ms),
        "a running parent is not touched by its child's end"
    );
    assert!(
        !park_for(store, parent, &p, child).await,
        "parking with an ended child does not park"
    );
}

/// Parking with a child that has ended makes the run queued and ready now (`false`);
/// with a child that runs, it parks (`true`); with an unknown child it is refused with
/// `RunNotFound` naming the child, and nothing changes.
pub async fn park_with_a_child_depends_on_the_child(store: Arc<dyn Store>) {
    let store = &*store;
    let (p, c) = (worker("parent-worker"), worker("child-worker"));

    let (parent, child) = parent_and_child(store, &p, &c).await;
    store
        .cancel_run(child, "gone", T0)
        .await
        .expect("cancel the child");
    assert!(
        !park_for(store, parent, &p, child).await,
        "an ended child: not parked"
    );
    let run = get(store, parent).await;
    assert_eq!(
        (run.status, run.ready_at_ms, run.lease_owner),
        (RunStatus::Queued, T0 + 1, None),
        "parking with an ended child makes the run ready now"
    );

    let (parent, child) = parent_and_child(store, &p, &c).await;
    assert!(
        park_for(store, parent, &p, child).await,
        "a running child: parked"
    );
    let run = get(store, parent).await;
    assert_eq!(
        (run.status, run.ready_at_ms, run.lease_owner),
        (RunStatus::Waiting, NEVER, None)
    );

    let (parent, _) = parent_and_child(store, &p, &c).await;
    let missing = RunId::new();
    let park = Park {
        status: RunStatus::Waiting,
        wake_at_ms: NEVER,
        known_seq: events(store, parent).await.len() as u64,
        child: Some(missing),
    };
    let refused = store.park_run(parent, &p, park, T0 + 1).await;
    assert!(
        matches!(refused, Err(StoreError::RunNotFound(id)) if id == missing),
        "parking with an unknown child is refused, naming it: {refused:?}"
    );
    let run = get(store, parent).await;
    assert_eq!(
        (run.status, run.lease_owner),
        (RunStatus::Running, Some(p.clone())),
        "a refused park changes nothing"
    );
}
