//! Conformance: operator controls on runs (`cancel_run`, `retry_run`).

use std::sync::Arc;

use cairn_core::{ErrorInfo, ErrorKind, Event, RunStatus};
use serde_json::json;

use super::support::{
    LEASE_MS, T0, completed, create_leased, create_queued_at, events, expect_claimed, get, ids,
    lease, worker,
};
use crate::{ClaimOutcome, RunId, Store, StoreError};

/// Canceling ends a run whoever holds it: it returns the previous status, logs `RunCanceled`
/// with the reason, records a `Canceled` error, frees the lease and fences the holder off.
/// An ended run gives `RunEnded`, an unknown one `RunNotFound`.
pub async fn cancel_run_ends_the_run_with_the_reason(store: Arc<dyn Store>) {
    let store = &*store;
    let w = worker("w");
    let queued = create_queued_at(store, "order", T0).await;
    let previous = store
        .cancel_run(queued, "duplicate order", T0 + 1)
        .await
        .expect("cancel a queued run");
    assert_eq!(
        previous,
        RunStatus::Queued,
        "cancel_run returns the status the run had"
    );
    let record = get(store, queued).await;
    assert_eq!(
        (record.status, record.finished_at_ms, record.updated_at_ms),
        (RunStatus::Canceled, Some(T0 + 1), T0 + 1)
    );
    let error = record.error.expect("a canceled run carries an error");
    assert_eq!(error.kind, ErrorKind::Canceled);
    assert!(
        error.message.contains("duplicate order"),
        "the error carries the reason: {error:?}"
    );
    let logged = events(store, queued).await;
    assert_eq!(
        logged.last(),
        Some(&Event::RunCanceled {
            reason: "duplicate order".into()
        })
    );

    let running = create_leased(store, "order", &w, T0 + LEASE_MS).await;
    assert_eq!(
        store
            .cancel_run(running, "stop", T0 + 2)
            .await
            .expect("cancel a running run"),
        RunStatus::Running
    );
    let record = get(store, running).await;
    assert_eq!(
        (record.lease_owner, record.lease_expires_at_ms),
        (None, None),
        "cancel frees the lease"
    );
    let append = store
        .append(running, &w, &[completed("a", 0, json!(1))], T0 + 3)
        .await;
    assert!(
        matches!(append, Err(StoreError::RunEnded { run, status: RunStatus::Canceled }) if run == running),
        "the holder finds out at its next append: {append:?}"
    );
    let claim = store
        .claim_run(running, &lease(&w, T0 + LEASE_MS), T0 + 3)
        .await
        .expect("claim_run");
    assert!(
        matches!(claim, ClaimOutcome::Ended(RunStatus::Canceled)),
        "{claim:?}"
    );

    let again = store.cancel_run(running, "again", T0 + 4).await;
    assert!(
        matches!(
            again,
            Err(StoreError::RunEnded {
                status: RunStatus::Canceled,
                ..
            })
        ),
        "{again:?}"
    );
    assert_eq!(
        events(store, running).await.len(),
        2,
        "a refused cancel appends nothing"
    );
    let unknown = store.cancel_run(RunId::new(), "x", T0).await;
    assert!(
        matches!(unknown, Err(StoreError::RunNotFound(_))),
        "canceling an unknown run: {unknown:?}"
    );
}

/// Retrying sends a failed or canceled run back to the queue (`RunRetried`, status queued,
/// ready now, output, error and `finished_at` cleared, completed steps kept); any other
/// status is `NotRetryable`, an unknown run `RunNotFound`.
pub async fn retry_run_requeues_failed_and_canceled_runs(store: Arc<dyn Store>) {
    let store = &*store;
    let w = worker("w");
    let failed = create_leased(store, "flaky", &w, T0 + LEASE_MS).await;
    let error = ErrorInfo::new(ErrorKind::Action, "upstream down");
    let history = vec![completed("a", 0, json!(1)), Event::RunFailed { error }];
    store
        .append(failed, &w, &history, T0 + 1)
        .await
        .expect("fail the run");

    store
        .retry_run(failed, T0 + 50)
        .await
        .expect("retry a failed run");
    let record = get(store, failed).await;
    assert_eq!(record.status, RunStatus::Queued, "a retried run is queued");
    assert_eq!(
        (record.output, record.error, record.finished_at_ms),
        (None, None, None),
        "the end is forgotten"
    );
    assert_eq!(
        (record.lease_owner, record.ready_at_ms, record.updated_at_ms),
        (None, T0 + 50, T0 + 50)
    );
    let logged = events(store, failed).await;
    assert_eq!(
        logged.len(),
        4,
        "RunCreated, the step, RunFailed, RunRetried: {logged:?}"
    );
    assert_eq!(
        (&logged[1], &logged[3]),
        (&completed("a", 0, json!(1)), &Event::RunRetried)
    );

    let next = lease(&w, T0 + 50 + LEASE_MS);
    let claimed = store
        .claim_ready(&["flaky".into()], &next, T0 + 50, 10)
        .await
        .expect("claim_ready");
    assert_eq!(
        ids(&claimed),
        vec![failed],
        "a retried run is claimable again"
    );
    assert_eq!(claimed[0].run.executions, 2);
    store
        .append(
            failed,
            &w,
            &[Event::RunCompleted {
                output: json!("ok"),
            }],
            T0 + 51,
        )
        .await
        .expect("complete");
    let record = get(store, failed).await;
    assert_eq!(
        (record.status, record.output, record.error),
        (RunStatus::Succeeded, Some(json!("ok")), None)
    );

    let canceled = create_queued_at(store, "flaky", T0).await;
    store
        .cancel_run(canceled, "oops", T0 + 1)
        .await
        .expect("cancel");
    store
        .retry_run(canceled, T0 + 2)
        .await
        .expect("retry a canceled run");
    assert_eq!(get(store, canceled).await.status, RunStatus::Queued);

    let running = create_queued_at(store, "flaky", T0).await;
    expect_claimed(
        store
            .claim_run(running, &lease(&w, T0 + LEASE_MS), T0)
            .await
            .expect("claim"),
        "running",
    );
    for (id, status) in [
        (canceled, RunStatus::Queued),
        (running, RunStatus::Running),
        (failed, RunStatus::Succeeded),
    ] {
        let refused = store.retry_run(id, T0 + 60).await;
        assert!(
            matches!(refused, Err(StoreError::NotRetryable { run, status: s }) if run == id && s == status),
            "retrying a {status} run: {refused:?}"
        );
    }
    let unknown = store.retry_run(RunId::new(), T0).await;
    assert!(
        matches!(unknown, Err(StoreError::RunNotFound(_))),
        "retrying an unknown run: {unknown:?}"
    );
}
