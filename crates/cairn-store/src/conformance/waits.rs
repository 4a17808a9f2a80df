//! Durable waits: parking runs, and hooks registered by `HookCreated`, resumed once by token,
//! timed out under the lease, closed when their run ends.

use std::sync::Arc;

use cairn_core::{ErrorInfo, ErrorKind, Event, RunStatus, StepKey, StepKind};
use serde_json::json;

use super::support::{LEASE_MS, T0, create_leased, events, get, hook_created, worker};
use crate::{HookFilter, HookState, NEVER, Park, RunId, Store, StoreError, WorkerId};

fn hook_timed_out(n: u32) -> Event {
    Event::StepFailed {
        call: None,
        key: StepKey::numbered(cairn_core::HOOK_SLUG, n),
        kind: StepKind::Hook,
        slug: cairn_core::HOOK_SLUG.to_owned(),
        error: ErrorInfo::new(ErrorKind::Timeout, "hook timed out"),
        attempts: 1,
    }
}

/// A run leased to `holder` with one pending hook `token`; returns the run and the seq of its
/// last event.
async fn run_with_hook(
    store: &dyn Store,
    holder: &WorkerId,
    token: &str,
    timeout: Option<i64>,
) -> (RunId, u64) {
    let id = create_leased(store, "wf", holder, T0 + LEASE_MS).await;
    store
        .append(id, holder, &[hook_created(0, token, timeout)], T0)
        .await
        .expect("append HookCreated");
    (id, events(store, id).await.len() as u64)
}

/// Parking frees the lease, sets the status and the wake time; a parked run is claimed only
/// once it is due.
pub async fn park_run_frees_the_lease_until_the_wake_time(store: Arc<dyn Store>) {
    let store = &*store;
    let w = worker("w1");
    let id = create_leased(store, "wf", &w, T0 + LEASE_MS).await;
    let known = events(store, id).await.len() as u64;
    let park = Park {
        status: RunStatus::Sleeping,
        wake_at_ms: T0 + 5_000,
        known_seq: known,
        child: None,
    };
    assert!(
        store.park_run(id, &w, park, T0).await.expect("park_run"),
        "nothing happened meanwhile: parked"
    );
    let run = get(store, id).await;
    assert_eq!(run.status, RunStatus::Sleeping);
    assert_eq!((run.lease_owner, run.ready_at_ms), (None, T0 + 5_000));
    let lease = super::support::lease(&worker("w2"), T0 + 10_000 + LEASE_MS);
    let early = store
        .claim_ready(&["wf".to_owned()], &lease, T0 + 4_999, 10)
        .await
        .expect("claim_ready");
    assert!(
        early.is_empty(),
        "a sleeping run is not claimed before its wake time"
    );
    assert_eq!(
        store
            .next_ready_at(&["wf".to_owned()])
            .await
            .expect("next_ready_at"),
        Some(T0 + 5_000)
    );
    let due = store
        .claim_ready(&["wf".to_owned()], &lease, T0 + 5_000, 10)
        .await
        .expect("claim_ready");
    assert_eq!(due.len(), 1, "a sleeping run is claimed once due");
    assert_eq!(due[0].run.status, RunStatus::Running);

    let err = store
        .park_run(id, &w, park, T0)
        .await
        .expect_err("w1 lost the lease");
    assert!(
        matches!(err, StoreError::LeaseLost { .. }),
        "park_run is fenced: {err:?}"
    );
}

/// A hook resumed after its run parked appends `HookResumed` and wakes the run at once; a
/// second resume is refused and changes nothing.
pub async fn resume_hook_records_the_payload_once_and_wakes_the_run(store: Arc<dyn Store>) {
    let store = &*store;
    let w = worker("w1");
    let (id, known) = run_with_hook(store, &w, "tok-1", None).await;
    let park = Park {
        status: RunStatus::Waiting,
        wake_at_ms: NEVER,
        known_seq: known,
        child: None,
    };
    assert!(store.park_run(id, &w, park, T0).await.expect("park_run"));
    assert_eq!(get(store, id).await.status, RunStatus::Waiting);
    let hook = store
        .get_hook("tok-1")
        .await
        .expect("get_hook")
        .expect("the hook exists");
    assert_eq!(
        (hook.run_id, hook.state, hook.step_key.to_string()),
        (id, HookState::Pending, "cairn.hook#0".into())
    );
    assert_eq!(hook.schema, json!({"type": "object"}));

    let resumed = store
        .resume_hook("tok-1", json!({"ok": true}), T0 + 100)
        .await
        .expect("resume_hook");
    assert_eq!(
        (resumed.state, resumed.closed_at_ms),
        (HookState::Resumed, Some(T0 + 100))
    );
    let run = get(store, id).await;
    assert_eq!(
        (run.status, run.ready_at_ms),
        (RunStatus::Queued, T0 + 100),
        "a resume wakes a parked run"
    );
    let log = events(store, id).await;
    assert_eq!(
        log.last(),
        Some(&Event::HookResumed {
            key: StepKey::from("cairn.hook#0"),
            payload: json!({"ok": true})
        })
    );

    let again = store
        .resume_hook("tok-1", json!({"ok": false}), T0 + 200)
        .await;
    assert!(
        matches!(
            again,
            Err(StoreError::HookNotPending {
                state: HookState::Resumed,
                ..
            })
        ),
        "{again:?}"
    );
    assert_eq!(
        events(store, id).await,
        log,
        "a refused resume writes nothing"
    );
    let unknown = store.resume_hook("no-such-token", json!({}), T0).await;
    assert!(
        matches!(unknown, Err(StoreError::HookNotFound)),
        "{unknown:?}"
    );
}

/// A resume that lands while the run is still executing is not lost: parking afterwards
/// finds the log grew and leaves the run ready instead.
pub async fn a_resume_before_parking_is_not_lost(store: Arc<dyn Store>) {
    let store = &*store;
    let w = worker("w1");
    let (id, known) = run_with_hook(store, &w, "tok-2", None).await;
    store
        .resume_hook("tok-2", json!({}), T0 + 10)
        .await
        .expect("resume_hook");
    assert_eq!(
        get(store, id).await.lease_owner,
        Some(w.clone()),
        "a resume does not touch a held lease"
    );
    let park = Park {
        status: RunStatus::Waiting,
        wake_at_ms: NEVER,
        known_seq: known,
        child: None,
    };
    let parked = store
        .park_run(id, &w, park, T0 + 20)
        .await
        .expect("park_run");
    assert!(!parked, "the log grew past known_seq: not parked");
    let run = get(store, id).await;
    assert_eq!(
        (run.status, run.ready_at_ms, run.lease_owner),
        (RunStatus::Queued, T0 + 20, None)
    );
}

/// Timing a hook out is fenced, appends the step's failure once, and loses to an earlier
/// resume.
pub async fn time_out_hook_is_fenced_and_loses_to_a_resume(store: Arc<dyn Store>) {
    let store = &*store;
    let w = worker("w1");
    let (id, _) = run_with_hook(store, &w, "tok-3", Some(T0 + 50)).await;
    let fenced = store
        .time_out_hook("tok-3", &worker("other"), hook_timed_out(0), T0 + 60)
        .await;
    assert!(
        matches!(fenced, Err(StoreError::LeaseLost { .. })),
        "{fenced:?}"
    );
    assert!(
        store
            .time_out_hook("tok-3", &w, hook_timed_out(0), T0 + 60)
            .await
            .expect("time_out_hook")
    );
    assert_eq!(
        store
            .get_hook("tok-3")
            .await
            .expect("get_hook")
            .map(|h| h.state),
        Some(HookState::TimedOut)
    );
    assert_eq!(events(store, id).await.last(), Some(&hook_timed_out(0)));
    let late = store.resume_hook("tok-3", json!({}), T0 + 70).await;
    assert!(
        matches!(
            late,
            Err(StoreError::HookNotPending {
                state: HookState::TimedOut,
                ..
            })
        ),
        "{late:?}"
    );

    store
        .append(id, &w, &[hook_created(1, "tok-4", Some(T0 + 50))], T0)
        .await
        .expect("second hook");
    store
        .resume_hook("tok-4", json!({"first": true}), T0 + 55)
        .await
        .expect("resume first");
    let before = events(store, id).await;
    assert!(
        !store
            .time_out_hook("tok-4", &w, hook_timed_out(1), T0 + 60)
            .await
            .expect("time_out_hook")
    );
    assert_eq!(
        events(store, id).await,
        before,
        "a timeout after a resume writes nothing"
    );
}

/// When a run ends, its pending hooks close; resuming one is refused. Hooks list by run and
/// state, newest first.
pub async fn hooks_close_with_their_run_and_list_by_run_and_state(store: Arc<dyn Store>) {
    let store = &*store;
    let w = worker("w1");
    let (first, _) = run_with_hook(store, &w, "tok-a", None).await;
    let (second, _) = run_with_hook(store, &w, "tok-b", Some(T0 + 1_000)).await;
    let pending = HookFilter {
        state: Some(HookState::Pending),
        ..HookFilter::default()
    };
    let tokens: Vec<_> = store
        .list_hooks(&pending)
        .await
        .expect("list_hooks")
        .into_iter()
        .map(|h| h.token)
        .collect();
    assert_eq!(tokens.len(), 2);
    let of_second = HookFilter {
        run_id: Some(second),
        ..HookFilter::default()
    };
    let listed = store.list_hooks(&of_second).await.expect("list_hooks");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].token.as_str(), listed[0].timeout_at_ms),
        ("tok-b", Some(T0 + 1_000))
    );

    store
        .cancel_run(first, "no longer needed", T0 + 5)
        .await
        .expect("cancel_run");
    assert_eq!(
        store
            .get_hook("tok-a")
            .await
            .expect("get_hook")
            .map(|h| h.state),
        Some(HookState::Closed)
    );
    let refused = store.resume_hook("tok-a", json!({}), T0 + 6).await;
    assert!(
        matches!(
            refused,
            Err(StoreError::HookNotPending {
                state: HookState::Closed,
                ..
            })
        ),
        "{refused:?}"
    );
    let tokens: Vec<_> = store
        .list_hooks(&pending)
        .await
        .expect("list_hooks")
        .into_iter()
        .map(|h| h.token)
        .collect();
    assert_eq!(tokens, ["tok-b"]);
}
