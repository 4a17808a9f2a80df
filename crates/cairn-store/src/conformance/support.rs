//! Builders and checks the conformance functions share.

use cairn_core::{Event, EventRecord, StepKey, StepKind};
use serde_json::{Value, json};

use crate::{ClaimOutcome, ClaimedRun, Lease, NewRun, RunId, RunRecord, Store, WorkerId};

/// The suite's "now": every time in it is an offset from this.
pub(crate) const T0: i64 = 1_700_000_000_000;

/// The lease length the suite uses.
pub(crate) const LEASE_MS: i64 = 30_000;

pub(crate) fn worker(name: &str) -> WorkerId {
    WorkerId(name.into())
}

pub(crate) fn lease(worker: &WorkerId, expires_at_ms: i64) -> Lease {
    Lease {
        worker: worker.clone(),
        expires_at_ms,
    }
}

/// A run of `workflow` created at `T0`, without key, parent, history or lease.
pub(crate) fn new_run(workflow: &str, input: Value) -> NewRun {
    NewRun {
        id: RunId::new(),
        workflow: workflow.to_owned(),
        input,
        idempotency_key: None,
        parent_run_id: None,
        forked_from: None,
        trigger: "api".to_owned(),
        owner: Default::default(),
        history: Vec::new(),
        lease: None,
        now_ms: T0,
    }
}

/// Creates `run`, checking that a new run was made.
pub(crate) async fn create(store: &dyn Store, run: NewRun) -> RunId {
    let id = run.id;
    let outcome = store
        .create_run(run)
        .await
        .expect("create_run of a new run must succeed");
    assert!(
        outcome.created,
        "create_run of a new run must report created: true"
    );
    assert_eq!(
        outcome.run_id, id,
        "create_run must keep the id it was given"
    );
    id
}

/// A queued run of `workflow` created (and ready) at `at_ms`.
pub(crate) async fn create_queued_at(store: &dyn Store, workflow: &str, at_ms: i64) -> RunId {
    create(
        store,
        NewRun {
            now_ms: at_ms,
            ..new_run(workflow, json!({}))
        },
    )
    .await
}

/// A run of `workflow` created at `T0` already leased to `holder` until `expires_at_ms`.
pub(crate) async fn create_leased(
    store: &dyn Store,
    workflow: &str,
    holder: &WorkerId,
    expires_at_ms: i64,
) -> RunId {
    create(
        store,
        NewRun {
            lease: Some(lease(holder, expires_at_ms)),
            ..new_run(workflow, json!({}))
        },
    )
    .await
}

/// The run, which must exist.
pub(crate) async fn get(store: &dyn Store, id: RunId) -> RunRecord {
    store
        .get_run(id)
        .await
        .expect("get_run must succeed")
        .expect("the run must exist")
}

/// The run's events without their positions, after checking the positions are 1..=n.
pub(crate) async fn events(store: &dyn Store, id: RunId) -> Vec<Event> {
    let records = store.events(id).await.expect("events must succeed");
    assert_numbered(&records);
    records.into_iter().map(|record| record.event).collect()
}

/// Checks `seq` runs 1, 2, … n without gaps.
pub(crate) fn assert_numbered(records: &[EventRecord]) {
    let seqs: Vec<u64> = records.iter().map(|record| record.seq).collect();
    let expected: Vec<u64> = (1..=records.len() as u64).collect();
    assert_eq!(
        seqs, expected,
        "event seqs must run 1..=n without gaps, in order"
    );
}

/// The `RunCreated` event a run of `workflow` with `input` starts with.
pub(crate) fn run_created(workflow: &str, input: Value) -> Event {
    Event::RunCreated {
        workflow: workflow.to_owned(),
        input,
    }
}

/// `StepStarted` of the `n`-th call of `slug`.
pub(crate) fn started(slug: &str, n: u32) -> Event {
    Event::StepStarted {
        call: None,
        key: StepKey::numbered(slug, n),
        kind: StepKind::Action,
        slug: slug.to_owned(),
        input: json!({ "n": n }),
        attempt: 1,
        credentials: Vec::new(),
    }
}

/// `StepCompleted` of the `n`-th call of `slug` with `output`.
pub(crate) fn completed(slug: &str, n: u32, output: Value) -> Event {
    Event::StepCompleted {
        call: None,
        key: StepKey::numbered(slug, n),
        kind: StepKind::Action,
        slug: slug.to_owned(),
        output,
    }
}

/// The claimed run, or a panic naming what came back instead.
pub(crate) fn expect_claimed(outcome: ClaimOutcome, why: &str) -> ClaimedRun {
    match outcome {
        ClaimOutcome::Claimed(claimed) => *claimed,
        other => panic!("{why}: expected Claimed, got {other:?}"),
    }
}

/// The ids of claimed runs, in the order they came.
pub(crate) fn ids(claimed: &[ClaimedRun]) -> Vec<RunId> {
    claimed.iter().map(|claimed| claimed.run.run_id).collect()
}

/// `HookCreated` for hook number `n` with `token`, accepting any object.
pub(crate) fn hook_created(n: u32, token: &str, timeout_at_ms: Option<i64>) -> Event {
    Event::HookCreated {
        call: None,
        key: StepKey::numbered(cairn_core::HOOK_SLUG, n),
        token: token.to_owned(),
        schema: json!({"type": "object"}),
        timeout_at_ms,
    }
}
