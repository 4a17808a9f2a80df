//! Conformance: claiming runs (`claim_run`, `claim_ready`) and `next_ready_at`.

use std::{collections::HashSet, sync::Arc};

use cairn_core::{Event, RunStatus};
use serde_json::json;

use super::support::{
    LEASE_MS, T0, create, create_leased, create_queued_at, events, expect_claimed, get, ids, lease,
    new_run, run_created, started, worker,
};
use crate::{ClaimOutcome, NewRun, RunId, Store, StoreError, WorkerId};

/// `claim_run` answers `NotFound`, `Claimed` (running, leased, counted, with the whole log,
/// whatever the run's `ready_at`), `Held` while another worker's lease is live, and `Ended`.
pub async fn claim_run_outcomes(store: Arc<dyn Store>) {
    let store = &*store;
    let (w1, w2) = (worker("w1"), worker("w2"));
    let until = T0 + 1 + LEASE_MS;
    let outcome = store
        .claim_run(RunId::new(), &lease(&w1, until), T0)
        .await
        .expect("claim_run");
    assert!(
        matches!(outcome, ClaimOutcome::NotFound),
        "an unknown run is NotFound, got {outcome:?}"
    );

    let id = create(
        store,
        NewRun {
            history: vec![started("a", 0)],
            ..new_run("mail", json!({ "to": "x" }))
        },
    )
    .await;
    let claimed = expect_claimed(
        store
            .claim_run(id, &lease(&w1, until), T0 + 1)
            .await
            .expect("claim_run"),
        "w1",
    );
    assert_eq!(claimed.run.status, RunStatus::Running);
    assert_eq!(
        (
            claimed.run.lease_owner.clone(),
            claimed.run.lease_expires_at_ms
        ),
        (Some(w1.clone()), Some(until))
    );
    assert_eq!(
        (claimed.run.executions, claimed.run.updated_at_ms),
        (1, T0 + 1)
    );
    let logged: Vec<Event> = claimed
        .events
        .iter()
        .map(|record| record.event.clone())
        .collect();
    assert_eq!(
        logged,
        vec![run_created("mail", json!({ "to": "x" })), started("a", 0)],
        "the log comes with it"
    );
    assert_eq!(
        claimed.run,
        get(store, id).await,
        "the claimed record is the stored one"
    );

    match store
        .claim_run(id, &lease(&w2, until + LEASE_MS), T0 + 2)
        .await
        .expect("claim_run")
    {
        ClaimOutcome::Held { by, until_ms } => assert_eq!((by, until_ms), (w1.clone(), until)),
        other => panic!("a live lease must hold the run, got {other:?}"),
    }

    store
        .release_lease(id, &w1, T0 + 3_600_000)
        .await
        .expect("release");
    let again = store
        .claim_run(id, &lease(&w2, until), T0 + 2)
        .await
        .expect("claim_run");
    let again = expect_claimed(again, "claim_run ignores ready_at (it resumes parked runs)");
    assert_eq!(again.run.executions, 2);

    store
        .append(id, &w2, &[Event::RunCompleted { output: json!(1) }], T0 + 3)
        .await
        .expect("complete");
    let outcome = store
        .claim_run(id, &lease(&w1, until), T0 + 4)
        .await
        .expect("claim_run");
    assert!(
        matches!(outcome, ClaimOutcome::Ended(RunStatus::Succeeded)),
        "an ended run is Ended, got {outcome:?}"
    );
}

/// Once a lease lapses (at `expires_at_ms`), another worker takes the run over; the old
/// holder is fenced off from then on.
pub async fn claim_run_takes_over_a_lapsed_lease(store: Arc<dyn Store>) {
    let store = &*store;
    let (w1, w2) = (worker("w1"), worker("w2"));
    let id = create_queued_at(store, "sync", T0).await;
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
        .expect("w1 appends");

    let early = store
        .claim_run(id, &lease(&w2, T0 + 3 * LEASE_MS), T0 + LEASE_MS - 1)
        .await
        .expect("claim");
    assert!(
        matches!(early, ClaimOutcome::Held { .. }),
        "the lease is live until it expires, got {early:?}"
    );
    let taken = store
        .claim_run(id, &lease(&w2, T0 + 3 * LEASE_MS), T0 + LEASE_MS)
        .await
        .expect("claim");
    let taken = expect_claimed(taken, "a lease lapses at its expiry time");
    assert_eq!(taken.run.lease_owner, Some(w2.clone()));
    assert_eq!(
        taken.run.executions, 2,
        "the take-over is the second execution"
    );
    assert_eq!(
        taken.events.len(),
        2,
        "the new holder gets the old holder's events"
    );

    let refused = store
        .append(id, &w1, &[started("b", 0)], T0 + LEASE_MS + 1)
        .await;
    assert!(
        matches!(refused, Err(StoreError::LeaseLost { run, worker }) if run == id && worker == w1)
    );
    let refused = store.renew_lease(id, &lease(&w1, T0 + 4 * LEASE_MS)).await;
    assert!(
        matches!(refused, Err(StoreError::LeaseLost { .. })),
        "renew after take-over: {refused:?}"
    );
    store
        .append(id, &w2, &[started("b", 0)], T0 + LEASE_MS + 2)
        .await
        .expect("the new holder appends");
    assert_eq!(
        events(store, id).await.len(),
        3,
        "the fenced append wrote nothing"
    );
}

/// `claim_ready` takes only runs of the listed workflows that are ready by `now`, not ended
/// and not under a live lease (lapsed leases are taken over), oldest `ready_at` first, at
/// most `limit` of them.
pub async fn claim_ready_takes_ready_runs_oldest_first(store: Arc<dyn Store>) {
    let store = &*store;
    let (w, other) = (worker("w"), worker("other"));
    let q3 = create_queued_at(store, "a", T0 + 30).await;
    let q1 = create_queued_at(store, "a", T0 + 10).await;
    let q2 = create_queued_at(store, "b", T0 + 20).await;
    create_queued_at(store, "z", T0).await;
    let parked = create_queued_at(store, "a", T0 + 5).await;
    expect_claimed(
        store
            .claim_run(parked, &lease(&other, T0 + 6), T0 + 5)
            .await
            .expect("claim"),
        "parked",
    );
    store
        .release_lease(parked, &other, T0 + 1_000)
        .await
        .expect("release");
    let ended = create_queued_at(store, "a", T0 + 1).await;
    store.cancel_run(ended, "no", T0 + 2).await.expect("cancel");
    let live = create_leased(store, "a", &other, T0 + 5_000).await;
    let lapsed = create(
        store,
        NewRun {
            lease: Some(lease(&other, T0 + 50)),
            now_ms: T0 + 40,
            ..new_run("b", json!({}))
        },
    )
    .await;

    let workflows = ["a".to_owned(), "b".to_owned()];
    let mine = lease(&w, T0 + 100 + LEASE_MS);
    assert!(
        store
            .claim_ready(&workflows, &mine, T0 + 100, 0)
            .await
            .expect("claim_ready")
            .is_empty(),
        "limit 0"
    );
    assert!(
        store
            .claim_ready(&[], &mine, T0 + 100, 10)
            .await
            .expect("claim_ready")
            .is_empty(),
        "no workflows"
    );

    let first = store
        .claim_ready(&workflows, &mine, T0 + 100, 2)
        .await
        .expect("claim_ready");
    assert_eq!(
        ids(&first),
        vec![q1, q2],
        "oldest ready_at first, at most `limit`"
    );
    let second = store
        .claim_ready(&workflows, &mine, T0 + 100, 10)
        .await
        .expect("claim_ready");
    assert_eq!(
        ids(&second),
        vec![q3, lapsed],
        "then the rest, with the lapsed lease taken over"
    );
    for claimed in first.iter().chain(&second) {
        assert_eq!(claimed.run.status, RunStatus::Running);
        assert_eq!(claimed.run.lease_owner, Some(w.clone()));
        assert_eq!(claimed.run.lease_expires_at_ms, Some(T0 + 100 + LEASE_MS));
        assert_eq!(
            claimed.run,
            get(store, claimed.run.run_id).await,
            "the claimed record is the stored one"
        );
        assert!(
            matches!(
                claimed.events.first().map(|r| &r.event),
                Some(Event::RunCreated { .. })
            ),
            "with its log"
        );
    }
    assert_eq!(
        second[1].run.executions, 2,
        "the take-over counts as an execution"
    );
    assert!(
        store
            .claim_ready(&workflows, &mine, T0 + 999, 10)
            .await
            .expect("claim_ready")
            .is_empty()
    );

    let later = store
        .claim_ready(&workflows, &lease(&w, T0 + 2_000), T0 + 1_000, 10)
        .await
        .expect("claim_ready");
    assert_eq!(
        ids(&later),
        vec![parked],
        "a released run is ready at its ready_at, not before"
    );
    assert_eq!(
        get(store, live).await.lease_owner,
        Some(other),
        "a live lease is never taken"
    );
}

/// Two workers calling `claim_ready` at the same time never both get one run, and between
/// them they drain the queue.
pub async fn claim_ready_concurrent_calls_never_share_a_run(store: Arc<dyn Store>) {
    const RUNS: usize = 40;
    let mut created = HashSet::new();
    for n in 0..RUNS {
        created.insert(create_queued_at(&*store, "race", T0 + n as i64).await);
    }
    let claimers: Vec<_> = (0..4)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let me = lease(&WorkerId(format!("w{n}").into()), T0 + 10 * LEASE_MS);
                let mut mine = Vec::new();
                loop {
                    let claimed = store
                        .claim_ready(&["race".to_owned()], &me, T0 + 1_000, 3)
                        .await
                        .expect("claim");
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(claimed.into_iter().map(|claimed| claimed.run.run_id));
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for claimer in claimers {
        claimed.extend(claimer.await.expect("a claimer panicked"));
    }
    let unique: HashSet<RunId> = claimed.iter().copied().collect();
    assert_eq!(
        unique.len(),
        claimed.len(),
        "a run was handed to two claimers"
    );
    assert_eq!(
        unique, created,
        "between them the claimers must drain the queue"
    );
    for id in created {
        assert_eq!(
            get(&*store, id).await.executions,
            1,
            "each run is claimed exactly once"
        );
    }
}

/// `next_ready_at` is the earliest `ready_at` of an unleased, unended run of the listed
/// workflows, or the earliest lapse of a live lease, whichever comes first.
pub async fn next_ready_at_reports_the_earliest_wake_up(store: Arc<dyn Store>) {
    let store = &*store;
    let w = worker("w");
    let next = |workflows: &[&str]| {
        let workflows: Vec<String> = workflows.iter().map(|name| (*name).to_owned()).collect();
        async move {
            store
                .next_ready_at(&workflows)
                .await
                .expect("next_ready_at")
        }
    };
    assert_eq!(next(&["a"]).await, None, "nothing to run");

    let sleeper = create_queued_at(store, "a", T0).await;
    expect_claimed(
        store
            .claim_run(sleeper, &lease(&w, T0 + LEASE_MS), T0)
            .await
            .expect("claim"),
        "sleeper",
    );
    store
        .release_lease(sleeper, &w, T0 + 500)
        .await
        .expect("release");
    assert_eq!(
        next(&["a"]).await,
        Some(T0 + 500),
        "a released run wakes at its ready_at"
    );
    assert_eq!(next(&[]).await, None, "no workflows, nothing to run");

    let ended = create_queued_at(store, "a", T0 + 1).await;
    store.cancel_run(ended, "no", T0 + 1).await.expect("cancel");
    create_queued_at(store, "z", T0 + 2).await;
    assert_eq!(
        next(&["a"]).await,
        Some(T0 + 500),
        "ended runs and other workflows do not count"
    );
    assert_eq!(
        next(&["z"]).await,
        Some(T0 + 2),
        "a queued run is ready at its creation"
    );

    create_leased(store, "a", &w, T0 + 300).await;
    assert_eq!(
        next(&["a"]).await,
        Some(T0 + 300),
        "a live lease lapsing first counts"
    );
    create_queued_at(store, "b", T0 + 10).await;
    assert_eq!(
        next(&["a", "b"]).await,
        Some(T0 + 10),
        "the earliest over all listed workflows"
    );
}
