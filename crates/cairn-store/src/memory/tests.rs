//! What the conformance suite leaves open but `MemoryStore` settles as the SQLite backend
//! does: shared clones, refused batches writing nothing, tie-breaks, parked runs in
//! `next_ready_at`. (The suite itself runs from `tests/conformance_memory.rs`.)

use cairn_core::{ErrorInfo, ErrorKind, Event, RunStatus, StepKey, StepKind};
use serde_json::json;

use super::MemoryStore;
use crate::{HookState, Lease, NEVER, NewRun, Park, RunFilter, RunId, Store, StoreError, WorkerId};

const T0: i64 = 1_000;

fn worker() -> WorkerId {
    WorkerId("w".into())
}

fn lease(expires_at_ms: i64) -> Lease {
    Lease {
        worker: worker(),
        expires_at_ms,
    }
}

fn run(workflow: &str, now_ms: i64, lease: Option<Lease>) -> NewRun {
    NewRun {
        id: RunId::new(),
        workflow: workflow.to_owned(),
        input: json!({}),
        idempotency_key: None,
        parent_run_id: None,
        forked_from: None,
        trigger: "test".to_owned(),
        owner: Default::default(),
        history: Vec::new(),
        lease,
        now_ms,
    }
}

fn hook_created(n: u32, token: &str) -> Event {
    Event::HookCreated {
        call: None,
        key: StepKey::numbered(cairn_core::HOOK_SLUG, n),
        token: token.to_owned(),
        schema: json!({}),
        timeout_at_ms: None,
    }
}

fn started(n: u32) -> Event {
    Event::StepStarted {
        call: None,
        key: StepKey::numbered("a", n),
        kind: StepKind::Action,
        slug: "a".to_owned(),
        input: json!(n),
        attempt: 1,
        credentials: Vec::new(),
    }
}

async fn create(store: &MemoryStore, run: NewRun) -> RunId {
    let outcome = store.create_run(run).await.expect("create_run");
    assert!(outcome.created);
    outcome.run_id
}

#[tokio::test]
async fn clones_share_one_state() {
    let store = MemoryStore::new();
    let id = create(&store.clone(), run("a", T0, None)).await;
    assert!(store.get_run(id).await.expect("get_run").is_some());
    assert!(format!("{store:?}").contains("runs: 1"));
}

#[tokio::test]
async fn a_refused_batch_writes_nothing() {
    let store = MemoryStore::new();
    let id = create(&store, run("a", T0, Some(lease(T0 + 100)))).await;
    store
        .append(id, &worker(), &[hook_created(0, "tok")], T0)
        .await
        .expect("first hook");

    let taken = store
        .append(id, &worker(), &[started(0), hook_created(1, "tok")], T0 + 1)
        .await;
    assert!(matches!(taken, Err(StoreError::Corrupt(_))), "{taken:?}");
    let twice = vec![started(0), hook_created(1, "x"), hook_created(2, "x")];
    let twice = store.append(id, &worker(), &twice, T0 + 1).await;
    assert!(matches!(twice, Err(StoreError::Corrupt(_))), "{twice:?}");

    let failed = Event::RunFailed {
        error: ErrorInfo::new(ErrorKind::Workflow, "no"),
    };
    let after_end = store
        .append(
            id,
            &worker(),
            &[hook_created(1, "new"), failed, started(1)],
            T0 + 2,
        )
        .await;
    assert!(
        matches!(
            after_end,
            Err(StoreError::RunEnded {
                status: RunStatus::Failed,
                ..
            })
        ),
        "{after_end:?}"
    );

    assert_eq!(store.events(id).await.expect("events").len(), 2);
    let record = store.get_run(id).await.expect("get_run").expect("the run");
    assert_eq!(
        (record.status, record.updated_at_ms),
        (RunStatus::Running, T0)
    );
    assert_eq!(store.get_hook("new").await.expect("get_hook"), None);
    let hook = store
        .get_hook("tok")
        .await
        .expect("get_hook")
        .expect("hook");
    assert_eq!(hook.state, HookState::Pending);
}

#[tokio::test]
async fn a_create_whose_history_is_refused_creates_nothing() {
    let store = MemoryStore::new();
    let mut bad = run("a", T0, None);
    bad.idempotency_key = Some("k".to_owned());
    bad.history = vec![Event::RunCompleted { output: json!(1) }, started(0)];
    let id = bad.id;
    let refused = store.create_run(bad).await;
    assert!(
        matches!(refused, Err(StoreError::RunEnded { .. })),
        "{refused:?}"
    );
    assert_eq!(store.get_run(id).await.expect("get_run"), None);

    let mut good = run("a", T0, None);
    good.idempotency_key = Some("k".to_owned());
    let good_id = create(&store, good).await;
    assert_ne!(good_id, id, "the refused create did not take the key");
}

#[tokio::test]
async fn ties_break_as_in_sqlite() {
    let store = MemoryStore::new();
    let b1 = create(&store, run("b", T0, None)).await;
    let a1 = create(&store, run("a", T0, None)).await;
    let b2 = create(&store, run("b", T0, None)).await;
    let a2 = create(&store, run("a", T0, None)).await;

    let listed: Vec<RunId> = store
        .list_runs(&RunFilter::default())
        .await
        .expect("list_runs")
        .into_iter()
        .map(|run| run.run_id)
        .collect();
    assert_eq!(
        listed,
        vec![a2, b2, a1, b1],
        "same created_at: last inserted first"
    );

    let workflows = ["b".to_owned(), "a".to_owned()];
    let claimed: Vec<RunId> = store
        .claim_ready(&workflows, &lease(T0 + 100), T0, 10)
        .await
        .expect("claim_ready")
        .into_iter()
        .map(|claimed| claimed.run.run_id)
        .collect();
    assert_eq!(
        claimed,
        vec![a1, a2, b1, b2],
        "same ready_at: by workflow, then first inserted first"
    );
}

#[tokio::test]
async fn a_run_waiting_without_timeout_counts_as_never_in_next_ready_at() {
    let store = MemoryStore::new();
    let id = create(&store, run("a", T0, Some(lease(T0 + 100)))).await;
    let park = Park {
        status: RunStatus::Waiting,
        wake_at_ms: NEVER,
        known_seq: 1,
        child: None,
    };
    assert!(store.park_run(id, &worker(), park, T0).await.expect("park"));
    let workflows = ["a".to_owned()];
    assert_eq!(
        store
            .next_ready_at(&workflows)
            .await
            .expect("next_ready_at"),
        Some(NEVER)
    );
    let claimed = store
        .claim_ready(&workflows, &lease(T0 + 100), T0 + 1_000_000, 10)
        .await
        .expect("claim_ready");
    assert!(claimed.is_empty(), "never due");
}

#[tokio::test]
async fn renew_and_release_keep_updated_at() {
    let store = MemoryStore::new();
    let id = create(&store, run("a", T0, Some(lease(T0 + 100)))).await;
    store
        .renew_lease(id, &lease(T0 + 200))
        .await
        .expect("renew");
    store
        .release_lease(id, &worker(), T0 + 300)
        .await
        .expect("release");
    let record = store.get_run(id).await.expect("get_run").expect("the run");
    assert_eq!(
        (record.status, record.ready_at_ms, record.updated_at_ms),
        (RunStatus::Queued, T0 + 300, T0)
    );
}
