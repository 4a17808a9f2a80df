//! Conformance: creating runs (`create_run`), idempotency, and reading one run back.

use std::sync::Arc;

use cairn_core::{Event, RunStatus, StepKey};
use serde_json::json;

use super::support::{
    LEASE_MS, T0, completed, create, create_leased, create_queued_at, events, get, hook_created,
    lease, new_run, run_created, started, worker,
};
use crate::{ClaimOutcome, CreateOutcome, ForkOrigin, HookState, NewRun, RunFilter, RunId, Store};

/// A new run is queued with every field as given, and its log is `RunCreated` followed by the
/// history, all stamped with the creation time.
pub async fn create_run_records_run_created_and_history(store: Arc<dyn Store>) {
    let store = &*store;
    let parent = create_queued_at(store, "parent", T0).await;
    let input = json!({ "email": "ada@example.com", "plan": { "seats": 3 } });
    let history = vec![
        started("enrich", 0),
        completed("enrich", 0, json!({ "score": 7 })),
    ];
    let run = NewRun {
        idempotency_key: Some("signup-ada".into()),
        parent_run_id: Some(parent),
        forked_from: Some(ForkOrigin {
            run_id: parent,
            step: StepKey::numbered("enrich", 1),
        }),
        trigger: "rerun".into(),
        history: history.clone(),
        now_ms: T0 + 5,
        ..new_run("signup", input.clone())
    };
    let id = create(store, run).await;

    let record = get(store, id).await;
    assert_eq!(record.run_id, id);
    assert_eq!(record.workflow, "signup");
    assert_eq!(
        record.status,
        RunStatus::Queued,
        "a new run without a lease is queued"
    );
    assert_eq!(record.input, input);
    assert_eq!((record.output, record.error), (None, None));
    assert_eq!(record.idempotency_key.as_deref(), Some("signup-ada"));
    assert_eq!(record.parent_run_id, Some(parent));
    assert_eq!(
        record.forked_from,
        Some(ForkOrigin {
            run_id: parent,
            step: StepKey::numbered("enrich", 1)
        })
    );
    assert_eq!(record.trigger, "rerun");
    assert_eq!(record.executions, 0, "nobody has claimed the run yet");
    assert_eq!(
        (record.lease_owner, record.lease_expires_at_ms),
        (None, None)
    );
    assert_eq!(
        record.ready_at_ms,
        T0 + 5,
        "a new run is ready at its creation time"
    );
    assert_eq!(
        (record.created_at_ms, record.updated_at_ms),
        (T0 + 5, T0 + 5)
    );
    assert_eq!(record.finished_at_ms, None);

    let records = store.events(id).await.expect("events");
    assert!(
        records.iter().all(|record| record.at_ms == T0 + 5),
        "events carry the creation time: {records:?}"
    );
    let mut expected = vec![run_created("signup", input)];
    expected.extend(history);
    assert_eq!(
        events(store, id).await,
        expected,
        "the log is RunCreated followed by the history"
    );
}

/// One idempotency key per workflow yields one run: a second create returns the first run's
/// id with `created: false` and writes nothing; the same key in another workflow is a new run.
pub async fn idempotency_key_yields_one_run_per_workflow(store: Arc<dyn Store>) {
    let store = &*store;
    let keyed = |workflow: &str, n: i64| NewRun {
        idempotency_key: Some("order-1".into()),
        ..new_run(workflow, json!({ "n": n }))
    };
    let first = create(store, keyed("charge", 1)).await;

    let again = keyed("charge", 2);
    let again_id = again.id;
    let outcome = store
        .create_run(again)
        .await
        .expect("a repeated key is not an error");
    assert_eq!(
        outcome,
        CreateOutcome {
            run_id: first,
            created: false
        },
        "the same key must yield the same run"
    );
    assert_eq!(
        store.get_run(again_id).await.expect("get_run"),
        None,
        "the second id must not exist"
    );
    assert_eq!(
        get(store, first).await.input,
        json!({ "n": 1 }),
        "the first run keeps its input"
    );
    assert_eq!(
        events(store, first).await,
        vec![run_created("charge", json!({ "n": 1 }))],
        "nothing is appended"
    );

    let other = create(store, keyed("refund", 3)).await;
    assert_ne!(
        other, first,
        "the same key in another workflow is another run"
    );
    let filter = RunFilter {
        workflow: Some("charge".into()),
        ..RunFilter::default()
    };
    assert_eq!(
        store.list_runs(&filter).await.expect("list_runs").len(),
        1,
        "one charge run"
    );
}

/// Creating a run whose id exists (a create retried after a lost reply) writes nothing.
pub async fn create_run_with_an_existing_id_writes_nothing(store: Arc<dyn Store>) {
    let store = &*store;
    let run = new_run("import", json!({ "file": "a.csv" }));
    let retried = NewRun {
        input: json!({ "file": "b.csv" }),
        now_ms: T0 + 9,
        ..run.clone()
    };
    let id = create(store, run).await;

    let outcome = store
        .create_run(retried)
        .await
        .expect("a repeated id is not an error");
    assert_eq!(
        outcome,
        CreateOutcome {
            run_id: id,
            created: false
        }
    );
    let record = get(store, id).await;
    assert_eq!(
        (record.input, record.created_at_ms),
        (json!({ "file": "a.csv" }), T0),
        "the run is unchanged"
    );
    assert_eq!(events(store, id).await.len(), 1, "nothing is appended");
}

/// A run created with a lease is running under it, as if claimed: nobody else may claim it
/// until the lease lapses, and the creator may append at once.
pub async fn create_run_with_a_lease_is_held_by_its_creator(store: Arc<dyn Store>) {
    let store = &*store;
    let (w1, w2) = (worker("w1"), worker("w2"));
    let id = create_leased(store, "report", &w1, T0 + LEASE_MS).await;

    let record = get(store, id).await;
    assert_eq!(
        record.status,
        RunStatus::Running,
        "a run created with a lease is running"
    );
    assert_eq!(record.lease_owner, Some(w1.clone()));
    assert_eq!(record.lease_expires_at_ms, Some(T0 + LEASE_MS));
    assert_eq!(
        record.executions, 1,
        "creating with a lease counts as a claim"
    );

    match store
        .claim_run(id, &lease(&w2, T0 + 2 * LEASE_MS), T0 + 1)
        .await
        .expect("claim_run")
    {
        ClaimOutcome::Held { by, until_ms } => {
            assert_eq!((by, until_ms), (w1.clone(), T0 + LEASE_MS))
        }
        other => panic!("another worker must find the run held by its creator, got {other:?}"),
    }
    let claimed = store
        .claim_ready(
            &["report".into()],
            &lease(&w2, T0 + 2 * LEASE_MS),
            T0 + 1,
            10,
        )
        .await;
    assert!(
        claimed.expect("claim_ready").is_empty(),
        "claim_ready must not take a run under a live lease"
    );

    store
        .append(id, &w1, &[started("render", 0)], T0 + 2)
        .await
        .expect("the creator may append");
    assert_eq!(events(store, id).await.len(), 2);
}

/// A creation's history takes effect as if its creator had appended it, in the same
/// commit: a `HookCreated` registers its hook, and an ending event ends the run (status,
/// output, `finished_at`, no lease, hooks closed).
pub async fn create_run_history_takes_effect_like_an_append(store: Arc<dyn Store>) {
    let store = &*store;
    let w1 = worker("w1");
    let waiting = NewRun {
        history: vec![
            completed("a", 0, json!(1)),
            hook_created(0, "tok-created", None),
        ],
        lease: Some(lease(&w1, T0 + LEASE_MS)),
        ..new_run("approve", json!({}))
    };
    let waiting = create(store, waiting).await;
    let hook = store.get_hook("tok-created").await.expect("get_hook");
    let hook = hook.expect("a HookCreated in the history registers the hook");
    assert_eq!((hook.run_id, hook.state), (waiting, HookState::Pending));
    assert_eq!(get(store, waiting).await.status, RunStatus::Running);

    let ended = NewRun {
        history: vec![
            hook_created(0, "tok-ended", None),
            completed("a", 0, json!(1)),
            Event::RunCompleted {
                output: json!({ "ok": true }),
            },
        ],
        lease: Some(lease(&w1, T0 + LEASE_MS)),
        now_ms: T0 + 3,
        ..new_run("echo", json!({}))
    };
    let ended = create(store, ended).await;
    let record = get(store, ended).await;
    assert_eq!(
        (record.status, record.output),
        (RunStatus::Succeeded, Some(json!({ "ok": true }))),
        "an ending event in the history ends the run"
    );
    assert_eq!(record.finished_at_ms, Some(T0 + 3));
    assert_eq!(
        (record.lease_owner, record.lease_expires_at_ms),
        (None, None),
        "an ended run holds no lease"
    );
    let hook = store.get_hook("tok-ended").await.expect("get_hook");
    assert_eq!(
        hook.expect("the hook exists").state,
        HookState::Closed,
        "the run's end closes its hooks"
    );
    assert_eq!(events(store, ended).await.len(), 4);
}

/// An unknown id has no run and an empty log (not an error).
pub async fn get_run_and_events_of_an_unknown_run(store: Arc<dyn Store>) {
    let store = &*store;
    create_queued_at(store, "noise", T0).await;
    let unknown = RunId::new();
    assert_eq!(
        store
            .get_run(unknown)
            .await
            .expect("get_run of an unknown id is not an error"),
        None
    );
    assert!(
        store
            .events(unknown)
            .await
            .expect("events of an unknown id is not an error")
            .is_empty()
    );
}

/// A backend that times its commits (`commit_timer`) records each durable write in the
/// histogram it was given, once observed; a second observer is refused.
pub async fn commits_are_timed_once_observed(store: Arc<dyn Store>) {
    let Some(timer) = store.commit_timer() else {
        return; // This backend does not time commits (nothing to make durable).
    };
    let recorded = Arc::new(Recorded::default());
    assert!(
        timer.observe(metrics::Histogram::from_arc(recorded.clone())),
        "the first observer gets the commits"
    );
    assert!(
        !timer.observe(metrics::Histogram::noop()),
        "a second observer is refused"
    );
    create(&*store, new_run("etl", json!({}))).await;
    create(&*store, new_run("etl", json!({}))).await;
    store.flush().await.expect("flush");
    let seconds = recorded.0.lock().expect("lock").clone();
    assert!(
        seconds.len() >= 2,
        "two creates committed separately are two timed commits: {seconds:?}"
    );
    assert!(
        seconds.iter().all(|took| (0.0..60.0).contains(took)),
        "commit latencies are seconds: {seconds:?}"
    );
}

/// What a histogram was given.
#[derive(Default)]
struct Recorded(std::sync::Mutex<Vec<f64>>);

impl metrics::HistogramFn for Recorded {
    fn record(&self, value: f64) {
        self.0.lock().expect("lock").push(value);
    }
}
