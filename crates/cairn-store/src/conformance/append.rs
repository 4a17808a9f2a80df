//! Conformance: appending to logs (`append`), fencing and the terminal events that end a
//! run.

use std::sync::Arc;

use cairn_core::{ErrorInfo, ErrorKind, Event, RunStatus, StepKey};
use serde_json::json;

use super::support::{
    LEASE_MS, T0, completed, create_leased, create_queued_at, events, get, lease, run_created,
    started, worker,
};
use crate::{RunId, Store, StoreError};

/// Only the lease holder appends: anyone else (or anyone, on a run nobody holds) gets
/// `LeaseLost` and writes nothing; an unknown run is `RunNotFound`.
pub async fn append_is_fenced_by_the_lease(store: Arc<dyn Store>) {
    let store = &*store;
    let (w1, w2) = (worker("w1"), worker("w2"));
    let unknown = store
        .append(RunId::new(), &w1, &[started("a", 0)], T0)
        .await;
    assert!(
        matches!(unknown, Err(StoreError::RunNotFound(_))),
        "appending to an unknown run: {unknown:?}"
    );

    let queued = create_queued_at(store, "fence", T0).await;
    let unleased = store.append(queued, &w1, &[started("a", 0)], T0 + 1).await;
    assert!(
        matches!(unleased, Err(StoreError::LeaseLost { .. })),
        "appending without a lease: {unleased:?}"
    );
    assert_eq!(events(store, queued).await.len(), 1, "nothing was written");

    let held = create_leased(store, "fence", &w1, T0 + LEASE_MS).await;
    let stranger = store
        .append(
            held,
            &w2,
            &[started("a", 0), completed("a", 0, json!(1))],
            T0 + 1,
        )
        .await;
    assert!(
        matches!(&stranger, Err(StoreError::LeaseLost { run, worker }) if *run == held && *worker == w2),
        "another worker's append: {stranger:?}"
    );
    assert_eq!(
        events(store, held).await.len(),
        1,
        "a refused append writes none of its events"
    );
    store
        .append(
            held,
            &w1,
            &[started("a", 0), completed("a", 0, json!(1))],
            T0 + 2,
        )
        .await
        .expect("holder");
    assert_eq!(events(store, held).await.len(), 3);
}

/// Every append moves the run's `updated_at` to its time, one that changes nothing else
/// about the run included; the run's other fields stay as they were.
pub async fn an_append_moves_updated_at(store: Arc<dyn Store>) {
    let store = &*store;
    let w = worker("w");
    let id = create_leased(store, "touch", &w, T0 + LEASE_MS).await;
    let created = get(store, id).await;
    assert_eq!(created.updated_at_ms, T0, "created at T0");

    for (n, at) in [(0, T0 + 5), (1, T0 + 9)] {
        store
            .append(id, &w, &[started("a", n), completed("a", n, json!(n))], at)
            .await
            .expect("append");
        let record = get(store, id).await;
        assert_eq!(record.updated_at_ms, at, "step {n}'s append moved it");
        assert_eq!(
            (record.status, record.created_at_ms, record.lease_owner),
            (
                created.status,
                created.created_at_ms,
                created.lease_owner.clone()
            ),
            "nothing else changed"
        );
    }
    let listed = store
        .list_runs(&crate::RunFilter::default())
        .await
        .expect("list");
    let listed = listed.iter().find(|run| run.run_id == id).expect("listed");
    assert_eq!(listed.updated_at_ms, T0 + 9, "listing reads it the same");
}

/// `RunCompleted`, `RunFailed` and `RunCanceled` end the run: status, output or error and
/// `finished_at` are set, the lease is freed, and later appends get `RunEnded`.
pub async fn terminal_events_end_the_run(store: Arc<dyn Store>) {
    let store = &*store;
    let w = worker("w");
    let failure = ErrorInfo {
        retryable: true,
        ..ErrorInfo::new(ErrorKind::Action, "boom")
    }
    .at_step(StepKey::numbered("a", 0));
    let cases = [
        (
            Event::RunCompleted {
                output: json!({ "sent": 3 }),
            },
            RunStatus::Succeeded,
        ),
        (
            Event::RunFailed {
                error: failure.clone(),
            },
            RunStatus::Failed,
        ),
        (
            Event::RunCanceled {
                reason: "the user gave up".into(),
            },
            RunStatus::Canceled,
        ),
    ];
    for (n, (terminal, status)) in cases.into_iter().enumerate() {
        let id = create_leased(store, "end", &w, T0 + LEASE_MS).await;
        let at = T0 + 10 + n as i64;
        store
            .append(id, &w, &[completed("a", 0, json!(1)), terminal.clone()], at)
            .await
            .expect("append");

        let record = get(store, id).await;
        assert_eq!(record.status, status, "{terminal:?} sets the status");
        assert_eq!(
            (record.finished_at_ms, record.updated_at_ms),
            (Some(at), at),
            "{terminal:?} sets finished_at"
        );
        assert_eq!(
            (record.lease_owner, record.lease_expires_at_ms),
            (None, None),
            "{terminal:?} frees the lease"
        );
        match status {
            RunStatus::Succeeded => assert_eq!(
                (record.output, record.error),
                (Some(json!({ "sent": 3 })), None)
            ),
            RunStatus::Failed => {
                assert_eq!((record.output, record.error), (None, Some(failure.clone())))
            }
            _ => {
                assert_eq!(record.output, None);
                let error = record
                    .error
                    .expect("a canceled run carries a Canceled error");
                assert_eq!(error.kind, ErrorKind::Canceled);
                assert!(
                    error.message.contains("the user gave up"),
                    "the reason is in the error: {error:?}"
                );
            }
        }
        let late = store.append(id, &w, &[started("b", 0)], at + 1).await;
        assert!(
            matches!(late, Err(StoreError::RunEnded { run, status: s }) if run == id && s == status),
            "appending after {terminal:?}: {late:?}"
        );
        assert_eq!(
            events(store, id).await,
            vec![
                run_created("end", json!({})),
                completed("a", 0, json!(1)),
                terminal
            ]
        );
    }
    let leftovers = store
        .claim_ready(&["end".into()], &lease(&w, T0 + 2 * LEASE_MS), T0 + 100, 10)
        .await;
    assert!(
        leftovers.expect("claim_ready").is_empty(),
        "ended runs are never claimed"
    );
}

/// Many tasks appending to many runs at once: every event lands, in order, in its own run.
pub async fn concurrent_appends_to_many_runs_all_land(store: Arc<dyn Store>) {
    const RUNS: usize = 24;
    const STEPS: u32 = 10;
    let w = worker("w");
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        runs.push(create_leased(&*store, "busy", &w, T0 + LEASE_MS).await);
    }
    let tasks: Vec<_> = runs
        .iter()
        .map(|&id| {
            let (store, w) = (Arc::clone(&store), w.clone());
            tokio::spawn(async move {
                for n in 0..STEPS {
                    store
                        .append(id, &w, &[started("step", n)], T0 + 1)
                        .await
                        .expect("append");
                    store
                        .append(id, &w, &[completed("step", n, json!(n))], T0 + 2)
                        .await
                        .expect("append");
                }
                store
                    .append(
                        id,
                        &w,
                        &[Event::RunCompleted {
                            output: json!(STEPS),
                        }],
                        T0 + 3,
                    )
                    .await
                    .expect("end");
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("an appending task panicked");
    }
    let mut expected = vec![run_created("busy", json!({}))];
    for n in 0..STEPS {
        expected.extend([started("step", n), completed("step", n, json!(n))]);
    }
    expected.push(Event::RunCompleted {
        output: json!(STEPS),
    });
    for id in runs {
        assert_eq!(
            events(&*store, id).await,
            expected,
            "run {id} lost or reordered events"
        );
        assert_eq!(get(&*store, id).await.status, RunStatus::Succeeded);
    }
}
