//! Poll sources: declaring, what is due, the lease a poll is claimed under (with its fencing
//! token), pause/resume/poll-now, and the poll commit that records items, starts the new
//! ones' runs and advances the cursor at once, fenced by the lease, exactly once however
//! many commits race.

use std::sync::Arc;

use serde_json::{Value, json};

use super::support::{LEASE_MS, T0, create, lease, new_run, worker};
use crate::{
    ITEM_KEYS_KEPT_MS, NewRun, PollClaim, PollCommit, PollCommitOutcome, PollControl, PollItem,
    PollLease, PollResult, PollSourceRecord, PollState, Store, StoreError, WorkerId,
};

const MINUTE: i64 = 60_000;

/// The run of item `key` of source `source`, keyed as the engine keys it.
fn item_run(source: &str, key: &str) -> NewRun {
    NewRun {
        idempotency_key: Some(format!("poll:{source}:{key}")),
        trigger: format!("poll:{source}:{key}"),
        ..new_run("w", json!({ "item": key }))
    }
}

/// Items `keys` of `source`, each with its run (or none when `seeding`).
fn items(source: &str, keys: &[&str], seeding: bool) -> Vec<PollItem> {
    keys.iter()
        .map(|key| PollItem {
            key: (*key).to_owned(),
            run: (!seeding).then(|| item_run(source, key)),
        })
        .collect()
}

/// A successful poll's commit under `lease` at `now`.
fn success(lease: &PollLease, items: Vec<PollItem>, cursor: Value, now: i64) -> PollCommit {
    PollCommit {
        lease: lease.clone(),
        result: PollResult::Items {
            items,
            cursor: Some(cursor),
        },
        next_poll_at_ms: now + 5 * MINUTE,
        now_ms: now,
    }
}

async fn declare(store: &dyn Store, name: &str) -> PollSourceRecord {
    store
        .declare_poll_source(PollSourceRecord::new(name, "w", T0))
        .await
        .expect("declare_poll_source must succeed")
}

async fn stored(store: &dyn Store, name: &str) -> PollSourceRecord {
    store
        .get_poll_source(name)
        .await
        .expect("get_poll_source must succeed")
        .expect("the source must exist")
}

async fn claim(store: &dyn Store, name: &str, holder: &WorkerId, now: i64) -> Option<PollClaim> {
    store
        .claim_poll_source(name, &lease(holder, now + LEASE_MS), now)
        .await
        .expect("claim_poll_source must succeed")
}

async fn commit(store: &dyn Store, commit: PollCommit) -> PollCommitOutcome {
    store
        .commit_poll(commit)
        .await
        .expect("commit_poll must succeed")
}

async fn runs_of(store: &dyn Store) -> usize {
    store
        .list_runs(&Default::default())
        .await
        .expect("list_runs")
        .len()
}

/// Declaring inserts once and then only follows the workflow; due sources are the
/// unpaused, due, unleased ones; a claim takes the lease and grows the fencing token; pause,
/// resume and poll-now change what is due.
pub async fn poll_sources_are_declared_claimed_and_controlled(store: Arc<dyn Store>) {
    let store = &*store;
    let declared = declare(store, "issues").await;
    assert_eq!(declared, PollSourceRecord::new("issues", "w", T0));
    let (w1, w2) = (worker("w1"), worker("w2"));
    let claimed = claim(store, "issues", &w1, T0).await.expect("due at once");
    assert_eq!(claimed.lease.token, 1, "the first claim's token");
    assert_eq!(claimed.source.lease_owner, Some(w1.clone()));
    assert!(
        store
            .due_poll_sources(T0, 10)
            .await
            .expect("due")
            .is_empty(),
        "a leased source is not due"
    );
    assert!(
        claim(store, "issues", &w2, T0 + 1).await.is_none(),
        "a live lease refuses a second claim"
    );
    let redeclared = store
        .declare_poll_source(PollSourceRecord::new("issues", "w2", T0 + 5))
        .await
        .expect("declare again");
    assert_eq!(redeclared.workflow, "w2", "a declaration sets the workflow");
    assert_eq!(
        redeclared.lease_owner,
        Some(w1.clone()),
        "and keeps the rest"
    );
    let taken = claim(store, "issues", &w2, T0 + LEASE_MS)
        .await
        .expect("a lapsed lease may be taken");
    assert_eq!(taken.lease.token, 2, "each claim grows the token");
    assert!(claim(store, "none", &w1, T0).await.is_none());

    // Until T0 + 60 s, w2 holds "issues": only "later" can be due.
    declare(store, "later").await;
    let paused = store
        .control_poll_source("later", PollControl::Pause, T0 + 1)
        .await
        .expect("pause");
    assert_eq!(paused.state, PollState::Paused);
    assert!(
        store
            .due_poll_sources(T0 + 40_000, 10)
            .await
            .expect("due")
            .is_empty(),
        "a paused source is not due"
    );
    assert!(claim(store, "later", &w1, T0 + 40_000).await.is_none());
    let now = store
        .control_poll_source("later", PollControl::PollNow, T0 + 2)
        .await
        .expect("poll now");
    assert_eq!(
        (now.state, now.next_poll_at_ms),
        (PollState::Paused, T0 + 2),
        "poll-now leaves a paused source paused"
    );
    let resumed = store
        .control_poll_source(
            "later",
            PollControl::Resume {
                next_poll_at_ms: T0 + 40_000,
            },
            T0 + 3,
        )
        .await
        .expect("resume");
    assert_eq!(
        (resumed.state, resumed.next_poll_at_ms),
        (PollState::Active, T0 + 40_000)
    );
    let due = store.due_poll_sources(T0 + 40_000, 10).await.expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].name, "later");
    assert!(matches!(
        store.control_poll_source("none", PollControl::Pause, T0).await,
        Err(StoreError::PollSourceNotFound(name)) if name == "none"
    ));
    let names: Vec<String> = store
        .list_poll_sources()
        .await
        .expect("list")
        .into_iter()
        .map(|source| source.name)
        .collect();
    assert_eq!(names, ["issues", "later"]);
}

/// The seeding poll records items without runs; the next one starts the new items only;
/// a failure keeps the cursor and records the streak; an existing key answers its run.
pub async fn a_poll_commit_records_items_and_starts_the_new_ones(store: Arc<dyn Store>) {
    let store = &*store;
    declare(store, "issues").await;
    let w1 = worker("w1");
    let first = claim(store, "issues", &w1, T0).await.expect("claim");
    let seeded = commit(
        store,
        success(
            &first.lease,
            items("issues", &["a", "b"], true),
            json!(2),
            T0,
        ),
    )
    .await;
    assert_eq!(
        seeded,
        PollCommitOutcome::Committed {
            runs: Vec::new(),
            seen_before: 0
        }
    );
    assert_eq!(runs_of(store).await, 0, "seeding starts nothing");
    let source = stored(store, "issues").await;
    assert!(source.seeded && source.lease_owner.is_none());
    assert_eq!(source.cursor, Some(json!(2)));
    assert_eq!(source.next_poll_at_ms, T0 + 5 * MINUTE);
    assert_eq!(source.last_polled_at_ms, Some(T0));

    let at = T0 + 5 * MINUTE;
    let existing = create(store, item_run("issues", "d")).await;
    let second = claim(store, "issues", &w1, at).await.expect("claim");
    let outcome = commit(
        store,
        success(
            &second.lease,
            items("issues", &["b", "c", "d"], false),
            json!(4),
            at,
        ),
    )
    .await;
    let PollCommitOutcome::Committed { runs, seen_before } = outcome else {
        panic!("the commit must land, got {outcome:?}");
    };
    assert_eq!(seen_before, 1, "b was seen by the seeding poll");
    assert_eq!(runs.len(), 2, "c and d are new items");
    assert!(runs[0].created, "c starts a run");
    assert_eq!(
        (runs[1].run_id, runs[1].created),
        (existing, false),
        "d's key has a run already: it is the item's run"
    );
    assert_eq!(runs_of(store).await, 2);

    let failing_at = at + 5 * MINUTE;
    let third = claim(store, "issues", &w1, failing_at)
        .await
        .expect("claim");
    let failed = PollCommit {
        lease: third.lease.clone(),
        result: PollResult::Failed {
            error: "HTTP 500".into(),
            consecutive_errors: 5,
            state: PollState::Failing,
        },
        next_poll_at_ms: failing_at + 20 * MINUTE,
        now_ms: failing_at,
    };
    assert!(matches!(
        commit(store, failed).await,
        PollCommitOutcome::Committed { .. }
    ));
    let source = stored(store, "issues").await;
    assert_eq!(source.cursor, Some(json!(4)), "a failure keeps the cursor");
    assert_eq!(
        (source.state, source.consecutive_errors),
        (PollState::Failing, 5)
    );
    assert_eq!(source.last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(source.next_poll_at_ms, failing_at + 20 * MINUTE);

    let later = failing_at + 20 * MINUTE;
    let fourth = claim(store, "issues", &w1, later).await.expect("claim");
    store
        .control_poll_source("issues", PollControl::Pause, later)
        .await
        .expect("pause while polling");
    commit(store, success(&fourth.lease, Vec::new(), json!(5), later)).await;
    let source = stored(store, "issues").await;
    assert_eq!(
        (source.state, source.consecutive_errors, source.last_error),
        (PollState::Paused, 0, None),
        "a success clears the streak; a pause made meanwhile stands"
    );
}

/// A poll whose lease lapsed and was claimed by another worker writes nothing: no runs, no
/// item keys, no cursor; the new holder's commit lands; a lease commits once.
pub async fn a_stale_poll_lease_writes_nothing(store: Arc<dyn Store>) {
    let store = &*store;
    declare(store, "issues").await;
    let (w1, w2) = (worker("w1"), worker("w2"));
    let stale = claim(store, "issues", &w1, T0).await.expect("claim");
    let fresh = claim(store, "issues", &w2, T0 + LEASE_MS)
        .await
        .expect("the lapsed lease is taken");
    let late = commit(
        store,
        success(
            &stale.lease,
            items("issues", &["a"], false),
            json!("old"),
            T0 + LEASE_MS + 1,
        ),
    )
    .await;
    assert_eq!(late, PollCommitOutcome::LeaseLost);
    assert_eq!(runs_of(store).await, 0, "a stale commit starts nothing");
    let source = stored(store, "issues").await;
    assert_eq!(source.cursor, None, "a stale commit moves no cursor");
    assert_eq!(source.lease_owner, Some(w2.clone()));
    let landed = commit(
        store,
        success(
            &fresh.lease,
            items("issues", &["a"], false),
            json!("new"),
            T0 + LEASE_MS + 2,
        ),
    )
    .await;
    let PollCommitOutcome::Committed { runs, seen_before } = landed else {
        panic!("the holder's commit must land, got {landed:?}");
    };
    assert_eq!(
        (runs.len(), seen_before),
        (1, 0),
        "the stale commit recorded no item key"
    );
    assert_eq!(
        commit(
            store,
            success(&fresh.lease, Vec::new(), json!("again"), T0 + LEASE_MS + 3)
        )
        .await,
        PollCommitOutcome::LeaseLost,
        "a committed poll's lease is spent"
    );
    assert_eq!(stored(store, "issues").await.cursor, Some(json!("new")));
}

/// Eight racing commits of one poll, and a stale lease's commit racing its successor's:
/// one commit lands, and each item has one run.
pub async fn racing_poll_commits_start_one_set_of_runs(store: Arc<dyn Store>) {
    declare(&*store, "issues").await;
    let (w1, w2) = (worker("w1"), worker("w2"));
    let stale = claim(&*store, "issues", &w1, T0).await.expect("claim");
    let fresh = claim(&*store, "issues", &w2, T0 + LEASE_MS)
        .await
        .expect("claim");
    let leases = [&stale.lease, &fresh.lease];
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let store = Arc::clone(&store);
            let commit = success(
                leases[n % 2],
                items("issues", &["a", "b", "c"], false),
                json!(n),
                T0 + LEASE_MS + 1,
            );
            tokio::spawn(async move { store.commit_poll(commit).await.expect("commit") })
        })
        .collect();
    let mut landed = 0;
    for task in tasks {
        if let PollCommitOutcome::Committed { runs, .. } = task.await.expect("the task") {
            landed += 1;
            assert_eq!(runs.len(), 3, "the landed commit starts every new item");
        }
    }
    assert_eq!(landed, 1, "exactly one of the racing commits must land");
    assert_eq!(runs_of(&*store).await, 3, "each item must have one run");
}

/// Item keys are remembered for seven days: an item polled again within them starts
/// nothing, after them it is new again (its run, if it had one, answers by its key).
pub async fn item_keys_are_forgotten_after_seven_days(store: Arc<dyn Store>) {
    let store = &*store;
    declare(store, "issues").await;
    let w1 = worker("w1");
    let mut now = T0;
    let mut poll = |keys: &'static [&'static str]| {
        now += ITEM_KEYS_KEPT_MS / 2 + 1;
        let at = now;
        let w1 = w1.clone();
        async move {
            let claimed = claim(store, "issues", &w1, at).await.expect("claim");
            let outcome = commit(
                store,
                success(&claimed.lease, items("issues", keys, true), json!(at), at),
            )
            .await;
            let PollCommitOutcome::Committed { seen_before, .. } = outcome else {
                panic!("the commit must land, got {outcome:?}");
            };
            seen_before
        }
    };
    assert_eq!(poll(&["a", "b"]).await, 0);
    assert_eq!(poll(&["b"]).await, 1, "b is remembered, and seen again now");
    assert_eq!(
        poll(&["a", "b"]).await,
        1,
        "a, last seen over seven days ago, is forgotten; b is not"
    );
}
