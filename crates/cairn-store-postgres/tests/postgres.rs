//! What only PostgreSQL has, through the public API: several stores (two pools, as two worker
//! processes) on one schema, `LISTEN/NOTIFY` wake-ups, and reconnecting after the server
//! dropped the store's connections or was unreachable for a while.

mod common;
#[path = "common/proxy.rs"]
mod proxy;

use std::{collections::HashSet, sync::Arc, time::Duration};

use cairn_core::{Event, StepKey, StepKind};
use cairn_store::{ClaimOutcome, Lease, NewRun, RunId, Store, StoreError, WorkerId};
use cairn_store_postgres::PostgresStore;
use common::{TestSchema, eventually};
use serde_json::json;

const T0: i64 = 1_700_000_000_000;
const LEASE_MS: i64 = 30_000;
/// Generous bound for anything that should happen "promptly" on a loaded CI machine.
const PROMPTLY: Duration = Duration::from_secs(10);

fn new_run(workflow: &str) -> NewRun {
    NewRun {
        id: RunId::new(),
        workflow: workflow.to_owned(),
        input: json!({}),
        idempotency_key: None,
        parent_run_id: None,
        forked_from: None,
        trigger: "test".into(),
        owner: Default::default(),
        history: Vec::new(),
        lease: None,
        now_ms: T0,
    }
}

fn lease(worker: &str, expires_at_ms: i64) -> Lease {
    Lease {
        worker: WorkerId(worker.into()),
        expires_at_ms,
    }
}

fn completed(n: u32) -> Event {
    Event::StepCompleted {
        call: None,
        key: StepKey::numbered("step", n),
        kind: StepKind::Action,
        slug: "step".into(),
        output: json!(n),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_claiming_at_once_never_share_a_run() {
    const RUNS: usize = 60;
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let (a, b) = schema.two_stores().await;
    let mut created = HashSet::new();
    for n in 0..RUNS {
        let run = NewRun {
            now_ms: T0 + n as i64,
            ..new_run("race")
        };
        created.insert(a.create_run(run).await.expect("create").run_id);
    }
    let claimers: Vec<_> = [&a, &b, &a, &b]
        .into_iter()
        .enumerate()
        .map(|(n, store)| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                let me = lease(&format!("w{n}"), T0 + 10 * LEASE_MS);
                let mut mine = Vec::new();
                loop {
                    let claimed = store
                        .claim_ready(&["race".to_owned()], &me, T0 + 1_000, 2)
                        .await
                        .expect("claim_ready");
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
    assert_eq!(unique.len(), claimed.len(), "a run was claimed twice");
    assert_eq!(unique, created, "the claimers drained the queue");
    for id in created {
        let run = b.get_run(id).await.expect("get_run").expect("exists");
        assert_eq!(run.executions, 1, "run {id} was claimed more than once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_race_of_two_starts_with_one_key_yields_one_run() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let (a, b) = schema.two_stores().await;
    for n in 0..20 {
        let keyed = || NewRun {
            idempotency_key: Some(format!("order-{n}")),
            ..new_run("charge")
        };
        let (first, second) = tokio::join!(a.create_run(keyed()), b.create_run(keyed()));
        let (first, second) = (first.expect("create"), second.expect("create"));
        assert_eq!(first.run_id, second.run_id, "one key, one run");
        assert!(
            first.created != second.created,
            "exactly one create made it: {first:?} {second:?}"
        );
    }
    let filter = cairn_store::RunFilter {
        workflow: Some("charge".into()),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(a.list_runs(&filter).await.expect("list").len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_lost_its_lease_to_another_process_cannot_commit() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let (a, b) = schema.two_stores().await;
    let id = a.create_run(new_run("sync")).await.expect("create").run_id;
    let (wa, wb) = (WorkerId("a".into()), WorkerId("b".into()));
    let claimed = a.claim_run(id, &lease("a", T0 + LEASE_MS), T0).await;
    assert!(matches!(claimed, Ok(ClaimOutcome::Claimed(_))));
    a.append(id, &wa, &[completed(0)], T0 + 1)
        .await
        .expect("the holder appends");

    let taken = b
        .claim_run(id, &lease("b", T0 + 3 * LEASE_MS), T0 + LEASE_MS)
        .await;
    assert!(matches!(taken, Ok(ClaimOutcome::Claimed(_))), "{taken:?}");
    let late = a.append(id, &wa, &[completed(1)], T0 + LEASE_MS + 1).await;
    assert!(
        matches!(late, Err(StoreError::LeaseLost { .. })),
        "{late:?}"
    );
    b.append(id, &wb, &[completed(1)], T0 + LEASE_MS + 2)
        .await
        .expect("the new holder appends");
    let log = b.events(id).await.expect("events");
    assert_eq!(log.len(), 3, "RunCreated and one completion of each step");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_racing_a_take_over_stop_at_the_take_over() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let (a, b) = schema.two_stores().await;
    let id = a.create_run(new_run("sync")).await.expect("create").run_id;
    assert!(matches!(
        a.claim_run(id, &lease("a", T0 + LEASE_MS), T0).await,
        Ok(ClaimOutcome::Claimed(_))
    ));
    let appender = {
        let a = Arc::clone(&a);
        tokio::spawn(async move {
            let wa = WorkerId("a".into());
            for n in 0.. {
                match a.append(id, &wa, &[completed(n)], T0 + 1).await {
                    Ok(()) => {}
                    Err(StoreError::LeaseLost { .. }) => return n,
                    Err(error) => panic!("append {n}: {error}"),
                }
            }
            unreachable!("the loop only ends by returning")
        })
    };
    // Let a few appends land, then take the run over from the other process.
    eventually(PROMPTLY, "a's first appends", || async {
        (a.events(id).await.expect("events").len() > 3).then_some(())
    })
    .await;
    let taken = b
        .claim_run(id, &lease("b", T0 + 3 * LEASE_MS), T0 + LEASE_MS)
        .await;
    assert!(matches!(taken, Ok(ClaimOutcome::Claimed(_))), "{taken:?}");
    let marker = completed(1_000_000);
    b.append(
        id,
        &WorkerId("b".into()),
        std::slice::from_ref(&marker),
        T0 + LEASE_MS,
    )
    .await
    .expect("the new holder appends");
    let landed = appender.await.expect("the appender panicked");

    let log = b.events(id).await.expect("events");
    let seqs: Vec<u64> = log.iter().map(|record| record.seq).collect();
    assert_eq!(seqs, (1..=log.len() as u64).collect::<Vec<_>>(), "no gaps");
    assert_eq!(log.len() as u32, landed + 2, "RunCreated, a's appends, b's");
    assert_eq!(log.last().map(|record| &record.event), Some(&marker));
    for (n, record) in log[1..log.len() - 1].iter().enumerate() {
        assert_eq!(record.event, completed(n as u32), "a's appends in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_waiters_of_other_processes_promptly() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let (a, b) = schema.two_stores().await;
    let mut waiter = b.ready_waiter(&["mail".to_owned()]).await.expect("listen");

    // Sent before the wait: the waiter, made first, still hears it.
    let id = a.create_run(new_run("mail")).await.expect("create").run_id;
    assert!(
        waiter.wait(PROMPTLY).await,
        "a created run wakes the waiter"
    );

    let w = WorkerId("w".into());
    assert!(matches!(
        a.claim_run(id, &lease("w", T0 + LEASE_MS), T0).await,
        Ok(ClaimOutcome::Claimed(_))
    ));
    a.release_lease(id, &w, T0 + 5).await.expect("release");
    assert!(
        waiter.wait(PROMPTLY).await,
        "a released run wakes the waiter"
    );

    let Some(other) = TestSchema::new() else {
        return;
    };
    let elsewhere = other.store().await;
    elsewhere.create_run(new_run("mail")).await.expect("create");
    a.create_run(new_run("other-workflow"))
        .await
        .expect("create");
    assert!(
        !waiter.wait(Duration::from_millis(200)).await,
        "runs of other schemas and other workflows do not wake it"
    );

    a.cancel_run(id, "stop", T0 + 6).await.expect("cancel");
    a.retry_run(id, T0 + 7).await.expect("retry");
    assert!(
        waiter.wait(PROMPTLY).await,
        "a retried run wakes the waiter"
    );
    let woken = b
        .wait_for_work(&["mail".to_owned()], Duration::from_millis(1))
        .await
        .expect("wait_for_work");
    assert!(!woken, "nothing new since");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_reconnects_after_its_connections_were_terminated() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let (store, app) = schema.store_named("cairn-kill").await;
    let other = schema.store().await;
    let mut waiter = store
        .ready_waiter(&["job".to_owned()])
        .await
        .expect("listen");
    let w = WorkerId("w".into());
    let id = store
        .create_run(NewRun {
            lease: Some(lease("w", T0 + LEASE_MS)),
            ..new_run("job")
        })
        .await
        .expect("create")
        .run_id;
    store.get_run(id).await.expect("read");
    assert!(
        schema.terminate(&app, "%").await >= 2,
        "the pool's and the listener's connections were open"
    );

    // Every call succeeds again, at worst after one `Unavailable`.
    let (mut failed_writes, mut failed_reads) = (0, 0);
    for n in 0..2 {
        if let Err(error) = store.append(id, &w, &[completed(n)], T0 + 1).await {
            assert!(error.is_transient(), "{error}");
            failed_writes += 1;
        }
        if let Err(error) = store.events(id).await {
            assert!(error.is_transient(), "{error}");
            failed_reads += 1;
        }
    }
    assert!(
        failed_writes + failed_reads <= 1,
        "{failed_writes} writes and {failed_reads} reads failed after the connections were terminated"
    );
    let log = store.events(id).await.expect("events");
    assert_eq!(
        log.len(),
        3 - failed_writes,
        "the appends that succeeded are there"
    );

    // The listener comes back by itself: after its reconnect (one resync wake-up at most),
    // notifications from another process arrive again.
    eventually(PROMPTLY, "the LISTEN connection to come back", || async {
        let mut raw = schema.raw().await;
        let listening: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'",
        )
        .bind(&app)
        .fetch_one(&mut raw)
        .await
        .expect("count listeners");
        (listening > 0).then_some(())
    })
    .await;
    for _ in 0..2 {
        other.create_run(new_run("job")).await.expect("create");
        assert!(waiter.wait(PROMPTLY).await, "woken after the reconnect");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_unavailable_while_the_database_is_down_and_work_once_it_is_back() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let proxy = proxy::Proxy::start(&schema.url).await;
    let mut options = schema.options("through-proxy");
    options.acquire_timeout = Duration::from_millis(500);
    let store = PostgresStore::connect_with(&proxy.url, options)
        .await
        .expect("connect through the proxy");
    let direct = schema.store().await;
    let mut waiter = store
        .ready_waiter(&["job".to_owned()])
        .await
        .expect("listen");
    let w = WorkerId("w".into());
    let id = store
        .create_run(NewRun {
            lease: Some(lease("w", T0 + LEASE_MS)),
            ..new_run("job")
        })
        .await
        .expect("create")
        .run_id;

    proxy.down();
    let read = store.get_run(id).await;
    assert!(
        matches!(&read, Err(error) if error.is_transient()),
        "a read while the database is down: {read:?}"
    );
    let write = store.append(id, &w, &[completed(0)], T0 + 1).await;
    assert!(
        matches!(&write, Err(error) if error.is_transient()),
        "a write while the database is down: {write:?}"
    );

    proxy.up();
    eventually(
        PROMPTLY,
        "the store to reach the database again",
        || async { store.append(id, &w, &[completed(0)], T0 + 2).await.ok() },
    )
    .await;
    assert_eq!(store.events(id).await.expect("events").len(), 2);
    // The listener reconnected by itself and told its waiters to look (notifications sent
    // meanwhile are lost); then notifications flow again.
    assert!(waiter.wait(PROMPTLY).await, "woken after the reconnect");
    for _ in 0..2 {
        direct.create_run(new_run("job")).await.expect("create");
        assert!(waiter.wait(PROMPTLY).await, "woken by a new run");
    }
}
