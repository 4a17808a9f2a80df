//! Conformance: following runs. `events_after` reads what follows a `seq`; a change watch
//! reports every kind of committed change with the run's id (or `Unknown`).

use std::{sync::Arc, time::Duration};

use cairn_core::{ErrorInfo, ErrorKind, Event, EventRecord, RunStatus};
use serde_json::json;

use super::support::{
    LEASE_MS, T0, completed, create, create_leased, create_queued_at, hook_created, lease, new_run,
    started, worker,
};
use crate::{ChangeWatch, NEVER, NewRun, Park, RunId, Store};

/// How long a watch may take to report a change: generous, for a loaded machine.
pub(crate) const WATCH_DEADLINE: Duration = Duration::from_secs(20);

/// Waits (up to [`WATCH_DEADLINE`]) until `watch` reports `run` (or `Unknown`); `what` names
/// the change in the failure.
pub(crate) async fn expect_change(watch: &mut dyn ChangeWatch, run: RunId, what: &str) {
    let deadline = tokio::time::Instant::now() + WATCH_DEADLINE;
    loop {
        let changed = tokio::time::timeout_at(deadline, watch.changed()).await;
        match changed {
            Err(_) => panic!(
                "{what}: the change watch did not report run {run} within {WATCH_DEADLINE:?}"
            ),
            Ok(Err(error)) => panic!("{what}: the change watch failed: {error}"),
            Ok(Ok(changes)) if changes.may_include(run) => return,
            Ok(Ok(_)) => {}
        }
    }
}

/// Takes whatever `watch` has collected already, without waiting, so the next report is
/// about what happens next.
pub(crate) async fn drain(watch: &mut dyn ChangeWatch) {
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::ZERO, watch.changed()).await {}
}

/// Checks that `events_after(id, after)` is exactly the log's part after `after`.
async fn check_after(store: &dyn Store, id: RunId, log: &[EventRecord], after: u64) {
    let expected: Vec<EventRecord> = log
        .iter()
        .filter(|record| record.seq > after)
        .cloned()
        .collect();
    let got = store
        .events_after(id, after)
        .await
        .expect("events_after must succeed");
    assert_eq!(
        got, expected,
        "events_after({after}) must return the events with seq > {after}, in order"
    );
}

/// `events_after` returns the events with a greater `seq`, in order: from 0 (the whole log,
/// `RunCreated` first), from the middle (also inside one append of several events), from the
/// last or past the end (nothing), for an unknown run (nothing), and after `RunRetried`.
pub async fn events_after_returns_the_events_that_follow_a_seq(store: Arc<dyn Store>) {
    let store = &*store;
    let w = worker("w1");
    let id = create(
        store,
        NewRun {
            history: vec![started("a", 0)],
            lease: Some(lease(&w, T0 + LEASE_MS)),
            ..new_run("wf", json!({"n": 1}))
        },
    )
    .await;
    let batches = [
        vec![completed("a", 0, json!(1))],
        vec![
            started("b", 0),
            completed("b", 0, json!(2)),
            started("c", 0),
        ],
        vec![completed("c", 0, json!(3))],
    ];
    for (n, batch) in batches.iter().enumerate() {
        store
            .append(id, &w, batch, T0 + 1 + n as i64)
            .await
            .expect("append");
    }
    let log = store.events(id).await.expect("events");
    assert_eq!(log.len(), 7, "RunCreated, the history and six appended");
    assert!(
        matches!(log[0].event, Event::RunCreated { .. }),
        "events_after(0) starts with RunCreated"
    );
    for after in 0..=log.len() as u64 + 2 {
        check_after(store, id, &log, after).await;
    }
    let unknown = store
        .events_after(RunId::new(), 0)
        .await
        .expect("events_after of an unknown run");
    assert!(unknown.is_empty(), "an unknown run has no events");

    let failed = Event::RunFailed {
        error: ErrorInfo::new(ErrorKind::Internal, "boom"),
    };
    store.append(id, &w, &[failed], T0 + 10).await.expect("end");
    let ended_at = log.len() as u64 + 1;
    store.retry_run(id, T0 + 11).await.expect("retry");
    let after_retry = store
        .events_after(id, ended_at)
        .await
        .expect("events_after the end");
    assert_eq!(
        after_retry
            .iter()
            .map(|r| (r.seq, &r.event))
            .collect::<Vec<_>>(),
        vec![(ended_at + 1, &Event::RunRetried)],
        "what follows a retried run's end is its RunRetried"
    );
    let log = store.events(id).await.expect("events");
    for after in [0, 3, ended_at - 1, ended_at] {
        check_after(store, id, &log, after).await;
    }
}

/// A watch reports every kind of committed change with the run's id (or `Unknown`): create,
/// claim, append, release, claim of ready runs, park, hook resume, hook time-out, cancel,
/// retry. (Lease renewals need not be reported.) What was committed before the watch was
/// made need not be reported.
pub async fn a_watch_reports_every_kind_of_change(store: Arc<dyn Store>) {
    let store = &*store;
    let w = worker("w1");
    let before = create_queued_at(store, "wf", T0).await;
    let mut watch = store.watch_changes().await.expect("watch_changes");
    let watch = &mut *watch;

    let id = create_queued_at(store, "wf", T0).await;
    expect_change(watch, id, "create_run").await;

    let claim = store
        .claim_run(id, &lease(&w, T0 + LEASE_MS), T0 + 1)
        .await
        .expect("claim_run");
    assert!(matches!(claim, crate::ClaimOutcome::Claimed(_)));
    expect_change(watch, id, "claim_run").await;

    drain(watch).await;
    store
        .append(id, &w, &[started("a", 0)], T0 + 2)
        .await
        .expect("append");
    expect_change(watch, id, "append").await;

    drain(watch).await;
    store.release_lease(id, &w, T0 + 3).await.expect("release");
    expect_change(watch, id, "release_lease").await;

    drain(watch).await;
    let claimed = store
        .claim_ready(&["wf".to_owned()], &lease(&w, T0 + LEASE_MS), T0 + 4, 10)
        .await
        .expect("claim_ready");
    assert_eq!(claimed.len(), 2, "both runs are ready");
    expect_change(watch, id, "claim_ready").await;
    store
        .cancel_run(before, "not needed", T0 + 4)
        .await
        .expect("cancel");

    drain(watch).await;
    store
        .append(
            id,
            &w,
            &[hook_created(0, "tok-watch", Some(T0 + 100))],
            T0 + 5,
        )
        .await
        .expect("append HookCreated");
    let known = store.events(id).await.expect("events").len() as u64;
    let park = Park {
        status: RunStatus::Waiting,
        wake_at_ms: T0 + 100,
        known_seq: known,
        child: None,
    };
    drain(watch).await;
    assert!(store.park_run(id, &w, park, T0 + 6).await.expect("park"));
    expect_change(watch, id, "park_run").await;

    drain(watch).await;
    store
        .resume_hook("tok-watch", json!({"ok": true}), T0 + 7)
        .await
        .expect("resume_hook");
    expect_change(watch, id, "resume_hook").await;

    let other = create_leased(store, "wf", &w, T0 + LEASE_MS).await;
    store
        .append(other, &w, &[hook_created(0, "tok-late", Some(T0 + 10))], T0)
        .await
        .expect("append HookCreated");
    drain(watch).await;
    let timed_out = Event::StepFailed {
        call: None,
        key: cairn_core::StepKey::numbered(cairn_core::HOOK_SLUG, 0),
        kind: cairn_core::StepKind::Hook,
        slug: cairn_core::HOOK_SLUG.to_owned(),
        error: ErrorInfo::new(ErrorKind::Timeout, "hook timed out"),
        attempts: 1,
    };
    assert!(
        store
            .time_out_hook("tok-late", &w, timed_out, T0 + 10)
            .await
            .expect("time_out_hook")
    );
    expect_change(watch, other, "time_out_hook").await;

    drain(watch).await;
    store.cancel_run(id, "done", T0 + 8).await.expect("cancel");
    expect_change(watch, id, "cancel_run").await;

    drain(watch).await;
    store.retry_run(id, T0 + 9).await.expect("retry");
    expect_change(watch, id, "retry_run").await;
}

/// Every watch of a store sees a change, whoever made it; a watch dropped meanwhile does
/// not hold the others up.
pub async fn every_watch_sees_a_change(store: Arc<dyn Store>) {
    let store = &*store;
    let mut first = store.watch_changes().await.expect("watch_changes");
    let dropped = store.watch_changes().await.expect("watch_changes");
    let mut second = store.watch_changes().await.expect("watch_changes");
    drop(dropped);
    let id = create_queued_at(store, "wf", T0).await;
    expect_change(&mut *first, id, "create_run, first watch").await;
    expect_change(&mut *second, id, "create_run, second watch").await;
    let parked = Park {
        status: RunStatus::Sleeping,
        wake_at_ms: NEVER,
        known_seq: 0,
        child: None,
    };
    // A refused write changes nothing; a change after it is still reported.
    store
        .park_run(id, &worker("nobody"), parked, T0)
        .await
        .expect_err("park without the lease is refused");
    store.cancel_run(id, "x", T0 + 1).await.expect("cancel");
    expect_change(&mut *first, id, "cancel_run after a refused park").await;
}
