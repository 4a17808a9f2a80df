//! Conformance: keeping and giving up leases (`renew_lease`, `release_lease`).

use std::sync::Arc;

use cairn_core::{Event, RunStatus};
use serde_json::json;

use super::support::{
    LEASE_MS, T0, create_queued_at, expect_claimed, get, ids, lease, started, worker,
};
use crate::{ClaimOutcome, RunId, Store, StoreError};

/// Renewing moves the lease's expiry; it fails with `LeaseLost` once another worker holds
/// the run, `RunEnded` once it was canceled, and `RunNotFound` for an unknown run.
pub async fn renew_lease_extends_and_is_fenced(store: Arc<dyn Store>) {
    let store = &*store;
    let (w1, w2) = (worker("w1"), worker("w2"));
    let id = create_queued_at(store, "poll", T0).await;
    expect_claimed(
        store
            .claim_run(id, &lease(&w1, T0 + LEASE_MS), T0)
            .await
            .expect("claim"),
        "w1",
    );

    store
        .renew_lease(id, &lease(&w1, T0 + 2 * LEASE_MS))
        .await
        .expect("the holder renews");
    assert_eq!(
        get(store, id).await.lease_expires_at_ms,
        Some(T0 + 2 * LEASE_MS)
    );
    match store
        .claim_run(id, &lease(&w2, T0 + 3 * LEASE_MS), T0 + LEASE_MS)
        .await
        .expect("claim")
    {
        ClaimOutcome::Held { by, until_ms } => {
            assert_eq!((by, until_ms), (w1.clone(), T0 + 2 * LEASE_MS))
        }
        other => panic!("a renewed lease must still hold the run, got {other:?}"),
    }

    let unknown = store
        .renew_lease(RunId::new(), &lease(&w1, T0 + LEASE_MS))
        .await;
    assert!(
        matches!(unknown, Err(StoreError::RunNotFound(_))),
        "renewing an unknown run: {unknown:?}"
    );
    let stranger = store.renew_lease(id, &lease(&w2, T0 + 3 * LEASE_MS)).await;
    assert!(
        matches!(stranger, Err(StoreError::LeaseLost { .. })),
        "only the holder renews: {stranger:?}"
    );

    expect_claimed(
        store
            .claim_run(id, &lease(&w2, T0 + 4 * LEASE_MS), T0 + 2 * LEASE_MS)
            .await
            .expect("claim"),
        "w2",
    );
    let lost = store.renew_lease(id, &lease(&w1, T0 + 5 * LEASE_MS)).await;
    assert!(
        matches!(&lost, Err(StoreError::LeaseLost { run, worker }) if *run == id && *worker == w1),
        "{lost:?}"
    );

    store
        .cancel_run(id, "stop", T0 + 2 * LEASE_MS + 1)
        .await
        .expect("cancel");
    let ended = store.renew_lease(id, &lease(&w2, T0 + 5 * LEASE_MS)).await;
    assert!(
        matches!(ended, Err(StoreError::RunEnded { run, status: RunStatus::Canceled }) if run == id),
        "renewing a canceled run: {ended:?}"
    );
}

/// Releasing frees the run (`running` becomes `queued`, the lease is gone) for any worker
/// from `ready_at_ms` on, fences the old holder off, and fails like `renew_lease` when the
/// caller does not hold the lease.
pub async fn release_lease_requeues_the_run_from_ready_at(store: Arc<dyn Store>) {
    let store = &*store;
    let (w1, w2) = (worker("w1"), worker("w2"));
    let id = create_queued_at(store, "nap", T0).await;
    expect_claimed(
        store
            .claim_run(id, &lease(&w1, T0 + LEASE_MS), T0)
            .await
            .expect("claim"),
        "w1",
    );
    store
        .append(id, &w1, &[started("a", 0)], T0 + 1)
        .await
        .expect("append");

    store
        .release_lease(id, &w1, T0 + 100)
        .await
        .expect("the holder releases");
    let record = get(store, id).await;
    assert_eq!(
        record.status,
        RunStatus::Queued,
        "a released running run is queued"
    );
    assert_eq!(
        (record.lease_owner, record.lease_expires_at_ms),
        (None, None),
        "the lease is gone"
    );
    assert_eq!((record.ready_at_ms, record.executions), (T0 + 100, 1));
    let fenced = store.append(id, &w1, &[started("b", 0)], T0 + 2).await;
    assert!(
        matches!(fenced, Err(StoreError::LeaseLost { .. })),
        "a released lease fences: {fenced:?}"
    );

    let workflows = ["nap".to_owned()];
    assert!(
        store
            .claim_ready(&workflows, &lease(&w2, T0 + 99 + LEASE_MS), T0 + 99, 5)
            .await
            .expect("claim")
            .is_empty()
    );
    assert_eq!(
        store
            .next_ready_at(&workflows)
            .await
            .expect("next_ready_at"),
        Some(T0 + 100)
    );
    let claimed = store
        .claim_ready(&workflows, &lease(&w2, T0 + 100 + LEASE_MS), T0 + 100, 5)
        .await
        .expect("claim");
    assert_eq!(ids(&claimed), vec![id], "ready at ready_at");

    let stale = store.release_lease(id, &w1, T0 + 200).await;
    assert!(
        matches!(stale, Err(StoreError::LeaseLost { .. })),
        "only the holder releases: {stale:?}"
    );
    let unknown = store.release_lease(RunId::new(), &w1, T0).await;
    assert!(
        matches!(unknown, Err(StoreError::RunNotFound(_))),
        "releasing an unknown run: {unknown:?}"
    );

    store
        .append(
            id,
            &w2,
            &[Event::RunCompleted {
                output: json!("done"),
            }],
            T0 + 101,
        )
        .await
        .expect("complete");
    let ended = store.release_lease(id, &w2, T0 + 200).await;
    assert!(
        matches!(
            ended,
            Err(StoreError::RunEnded {
                status: RunStatus::Succeeded,
                ..
            })
        ),
        "releasing an ended run: {ended:?}"
    );
}

/// The store's clock ([`Store::clock_ms`]), where it has one, reads the time of day (this
/// test's machine runs the store, so its clock agrees within a second) and moves forward.
pub async fn the_store_clock_reads_the_time_of_day(store: Arc<dyn Store>) {
    let system_ms = || {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970");
        i64::try_from(since.as_millis()).expect("ms fit")
    };
    let before = system_ms();
    let Some(first) = store.clock_ms().await.expect("read the clock") else {
        return;
    };
    assert!(
        (first - before).abs() < 1_000,
        "the store's clock reads {first} ms, the system's {before} ms"
    );
    let second = store
        .clock_ms()
        .await
        .expect("read the clock again")
        .expect("a clock answers every time");
    assert!(
        second >= first,
        "the store's clock went back: {first} then {second}"
    );
}
