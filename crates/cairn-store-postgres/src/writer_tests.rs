//! Unit tests of group commit: one batch, many commands, each failing or succeeding alone.

use cairn_core::{ErrorInfo, ErrorKind, Event, RunStatus, StepKey, StepKind};
use cairn_store::{HookState, Lease, NewRun, RunId, Store, StoreError, WorkerId};
use serde_json::json;

use super::{Op, Output};
use crate::batch::{Batch, Link};
use crate::{
    codec::{PreparedEvent, PreparedRun},
    common::TestSchema,
};

pub(crate) const NOW: i64 = 1_700_000_000_000;

pub(crate) fn leased_run(holder: &WorkerId) -> PreparedRun {
    let run = NewRun {
        id: RunId::new(),
        workflow: "batch".into(),
        input: json!({}),
        idempotency_key: None,
        parent_run_id: None,
        forked_from: None,
        trigger: "test".into(),
        owner: Default::default(),
        history: Vec::new(),
        lease: Some(Lease {
            worker: holder.clone(),
            expires_at_ms: NOW + 60_000,
        }),
        now_ms: NOW,
    };
    PreparedRun::new(run).expect("encode the run")
}

pub(crate) fn append(id: RunId, worker: &WorkerId, events: &[Event]) -> Op {
    Op::Append {
        id,
        worker: worker.clone(),
        events: PreparedEvent::all(events).expect("encode the events"),
        now_ms: NOW + 1,
    }
}

pub(crate) fn completed(n: u32) -> Event {
    Event::StepCompleted {
        call: None,
        key: StepKey::numbered("step", n),
        kind: StepKind::Action,
        slug: "step".into(),
        output: json!(n),
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

/// Runs `ops` as one batch on the store's pool, as the write task would.
pub(crate) async fn run_batch(
    store: &crate::PostgresStore,
    ops: &[Op],
) -> Vec<Result<Output, StoreError>> {
    let changes = cairn_store::watch::ChangeHub::new();
    let batch = Batch {
        connect: &store.connect,
        schema: &store.schema,
        instance: "writer-tests",
        changes: &changes,
        timer: &cairn_store::CommitTimer::default(),
    };
    let ops: Vec<&Op> = ops.iter().collect();
    batch
        .run(&mut Link::default(), &ops)
        .await
        .expect("the batch commits")
}

#[tokio::test]
async fn a_refused_command_fails_alone_and_the_rest_commit_in_order() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let store = schema.store().await;
    let (w, stranger) = (WorkerId("w".into()), WorkerId("stranger".into()));
    let first = leased_run(&w);
    let (a, b) = (first.id, RunId::new());
    let mut second = leased_run(&w);
    second.id = b;
    let ops = [
        Op::CreateRun(first),
        append(a, &w, &[completed(0)]),
        append(a, &stranger, &[completed(1)]),
        Op::CreateRun(second),
        append(a, &w, &[completed(1)]),
        append(b, &w, &[completed(0)]),
        Op::Flush,
    ];
    let results = run_batch(&store, &ops).await;
    let ok: Vec<bool> = results.iter().map(Result::is_ok).collect();
    assert_eq!(ok, [true, true, false, true, true, true, true]);
    assert!(
        matches!(&results[2], Err(StoreError::LeaseLost { worker, .. }) if *worker == stranger),
        "the stranger's append is fenced off"
    );
    let log: Vec<Event> = store
        .events(a)
        .await
        .expect("events")
        .into_iter()
        .map(|record| record.event)
        .collect();
    assert_eq!(&log[1..], &[completed(0), completed(1)]);
    assert_eq!(store.events(b).await.expect("events").len(), 2);
}

#[tokio::test]
async fn a_statement_error_rolls_back_only_its_own_command() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let store = schema.store().await;
    let w = WorkerId("w".into());
    let (first, second) = (leased_run(&w), leased_run(&w));
    let (a, b) = (first.id, second.id);
    run_batch(&store, &[Op::CreateRun(first), Op::CreateRun(second)]).await;
    // A second hook with a taken token violates the primary key: PostgreSQL aborts the
    // statement, and without its savepoint the whole transaction would be lost.
    let ops = [
        append(a, &w, &[hook_created(0, "tok")]),
        append(b, &w, &[hook_created(0, "tok")]),
        append(b, &w, &[completed(0)]),
    ];
    let results = run_batch(&store, &ops).await;
    assert!(results[0].is_ok(), "{:?}", results[0].as_ref().err());
    assert!(
        matches!(&results[1], Err(StoreError::Corrupt(message)) if message.contains("23505")),
        "{:?}",
        results[1].as_ref().err()
    );
    assert!(results[2].is_ok(), "{:?}", results[2].as_ref().err());
    assert_eq!(store.events(a).await.expect("events").len(), 2);
    let log = store.events(b).await.expect("events");
    assert_eq!(log.len(), 2, "b has RunCreated and the completion only");
    assert_eq!(log[1].event, completed(0));
}

#[tokio::test]
async fn a_lone_failing_command_writes_nothing() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let store = schema.store().await;
    let w = WorkerId("w".into());
    let run = leased_run(&w);
    let id = run.id;
    run_batch(&store, &[Op::CreateRun(run)]).await;
    let results = run_batch(
        &store,
        &[append(
            id,
            &w,
            &[Event::RunCompleted { output: json!(1) }, completed(1)],
        )],
    )
    .await;
    assert!(
        matches!(results[0], Err(StoreError::RunEnded { .. })),
        "nothing may follow a terminal event in one append"
    );
    assert_eq!(store.events(id).await.expect("events").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_connection_dies_before_commit_runs_again_on_a_new_one() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let app = format!("cairn-batch-{}", &schema.name[11..23]);
    let store = std::sync::Arc::new(
        crate::PostgresStore::connect_with(&schema.url, schema.options(&app))
            .await
            .expect("connect"),
    );
    let w = WorkerId("w".into());
    let run = leased_run(&w);
    let id = run.id;
    run_batch(&store, &[Op::CreateRun(run)]).await;

    // Hold the run's row so that the append's batch waits on it, then kill that batch's
    // connection while it waits: nothing was committed, so the batch must run again.
    let mut holder = schema.raw().await;
    let lock = format!(
        "BEGIN; SELECT 1 FROM {}.runs WHERE id = '{id}' FOR UPDATE",
        schema.name
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(lock))
        .execute(&mut holder)
        .await
        .expect("lock the run");
    let appending = {
        let (store, w) = (std::sync::Arc::clone(&store), w.clone());
        tokio::spawn(async move { store.append(id, &w, &[completed(0)], NOW + 1).await })
    };
    let mut killer = schema.raw().await;
    let kill_the_waiter = "SELECT coalesce(bool_or(pg_terminate_backend(pid, 5000)), false) \
                           FROM pg_stat_activity \
                           WHERE application_name = $1 AND wait_event_type = 'Lock'";
    until_lock_waiter(&mut killer, &app, kill_the_waiter).await;
    sqlx::raw_sql("COMMIT")
        .execute(&mut holder)
        .await
        .expect("unlock");
    appending
        .await
        .expect("the appending task panicked")
        .expect("the append succeeds on a new connection");
    let log = store.events(id).await.expect("events");
    assert_eq!(log.len(), 2, "appended exactly once: {log:?}");
    assert_eq!(log[1].event, completed(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_that_waited_for_another_process_append_takes_the_next_seq() {
    waits_for_another_process_append(&[completed(1)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_end_that_waited_for_another_process_append_takes_the_next_seq() {
    waits_for_another_process_append(&[completed(1), Event::RunCompleted { output: json!(1) }])
        .await;
}

/// Another process (a hook resumed, say) locks a run and appends seq 2; the store's append
/// of `events` starts meanwhile, so its statement's snapshot cannot see that event; it must
/// take the seqs after it.
async fn waits_for_another_process_append(events: &[Event]) {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let (store, app) = schema.store_named("cairn-race").await;
    let store = std::sync::Arc::new(store);
    let w = WorkerId("w".into());
    let run = leased_run(&w);
    let id = run.id;
    run_batch(&store, &[Op::CreateRun(run)]).await;

    let mut other = schema.raw().await;
    let payload = serde_json::to_string(&completed(0)).expect("encode");
    let sql = format!(
        "BEGIN; SELECT 1 FROM {name}.runs WHERE id = '{id}' FOR UPDATE; \
         INSERT INTO {name}.events (run_id, seq, at, type, step_key, payload) \
         VALUES ('{id}', 2, {NOW}, 'step_completed', 'step#0', '{payload}')",
        name = schema.name,
        id = id.0,
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut other)
        .await
        .expect("append from the other process");
    let appending = {
        let (store, w, events) = (std::sync::Arc::clone(&store), w.clone(), events.to_vec());
        tokio::spawn(async move { store.append(id, &w, &events, NOW + 1).await })
    };
    let mut watcher = schema.raw().await;
    let a_waiter = "SELECT count(*) > 0 FROM pg_stat_activity \
                    WHERE application_name = $1 AND wait_event_type = 'Lock'";
    until_lock_waiter(&mut watcher, &app, a_waiter).await;
    sqlx::raw_sql("COMMIT")
        .execute(&mut other)
        .await
        .expect("commit the other append");
    appending
        .await
        .expect("the appending task panicked")
        .expect("the append takes the next seqs");
    let log = store.events(id).await.expect("events");
    let seqs: Vec<u64> = log.iter().map(|record| record.seq).collect();
    let expected: Vec<u64> = (1..=2 + events.len() as u64).collect();
    assert_eq!(seqs, expected);
    assert_eq!(log[1].event, completed(0));
    let appended: Vec<Event> = log[2..].iter().map(|record| record.event.clone()).collect();
    assert_eq!(appended, events);
}

/// Runs `query` (one boolean about the sessions named `app` that wait for a lock) until it
/// answers true, failing after 10 s: the append under test never waited for the lock.
async fn until_lock_waiter(conn: &mut sqlx::PgConnection, app: &str, query: &'static str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let done: bool = sqlx::query_scalar(query)
            .bind(app)
            .fetch_one(&mut *conn)
            .await
            .expect("pg_stat_activity");
        if done {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the append never waited for the lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A worker cut off from the database inside a write transaction (a network partition, a
/// frozen process) holds its runs' rows locked: another worker's claims skip locked rows, so
/// the runs could not be taken over when their leases lapse, for as long as the server kept
/// the transaction (with PostgreSQL's defaults, forever). The store's connections end such
/// a transaction after `idle_in_transaction_timeout` (decision 0047).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_cut_off_inside_its_transaction_lets_its_runs_be_taken_over() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let mut options = schema.options("cut-off");
    options.idle_in_transaction_timeout = std::time::Duration::from_millis(300);
    let store = crate::PostgresStore::connect_with(&schema.url, options)
        .await
        .expect("connect");
    let other = schema.store().await;
    let w = WorkerId("w".into());
    let run = leased_run(&w);
    let id = run.id;
    run_batch(&store, &[Op::CreateRun(run)]).await;

    // The writer's connection, as a batch leaves it when its client stops answering: inside
    // a transaction that holds the run's row.
    let mut cut_off = sqlx::ConnectOptions::connect(&store.connect)
        .await
        .expect("the writer's connection");
    let lock = format!("BEGIN; SELECT 1 FROM runs WHERE id = '{}' FOR UPDATE", id.0);
    sqlx::raw_sql(sqlx::AssertSqlSafe(lock))
        .execute(&mut cut_off)
        .await
        .expect("lock the run's row");

    // Another worker claims it once its lease lapsed (60 s after NOW).
    let lease = Lease {
        worker: WorkerId("other".into()),
        expires_at_ms: NOW + 120_000,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let claimed = other
            .claim_ready(&["batch".to_owned()], &lease, NOW + 90_000, 10)
            .await
            .expect("claim");
        if claimed.iter().any(|claimed| claimed.run.run_id == id) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run stayed locked by the cut-off writer's transaction"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let gone = sqlx::raw_sql("SELECT 1").execute(&mut cut_off).await;
    assert!(
        gone.is_err(),
        "the server ended the idle transaction's session"
    );
}

/// Appends that end their runs gather into one statement with step appends (see `append`):
/// each run ends with its output or error and its pending hooks close, a stranger's end is
/// fenced off alone, and a child's end, deferred to `end::end_run`, wakes its parked parent.
#[tokio::test]
async fn ends_gathered_with_step_appends_end_their_runs_and_wake_a_parked_parent() {
    let Some(schema) = TestSchema::new() else {
        return;
    };
    let store = schema.store().await;
    let (w, stranger) = (WorkerId("w".into()), WorkerId("stranger".into()));
    let runs: Vec<PreparedRun> = (0..5).map(|_| leased_run(&w)).collect();
    let [a, b, d, e, parent] = [0, 1, 2, 3, 4].map(|i| runs[i].id);
    let mut child = leased_run(&w);
    child.parent_run_id = Some(parent.0);
    let c = child.id;
    let mut setup: Vec<Op> = runs.into_iter().map(Op::CreateRun).collect();
    setup.push(Op::CreateRun(child));
    setup.push(append(b, &w, &[hook_created(0, "b-hook")]));
    assert!(run_batch(&store, &setup).await.iter().all(Result::is_ok));
    let park = cairn_store::Park {
        status: RunStatus::Waiting,
        wake_at_ms: cairn_store::NEVER,
        known_seq: 1,
        child: Some(c),
    };
    assert!(store.park_run(parent, &w, park, NOW).await.expect("park"));

    let done = |output: &str| Event::RunCompleted {
        output: json!(output),
    };
    let failed = Event::RunFailed {
        error: ErrorInfo::new(ErrorKind::Action, "b broke"),
    };
    let ops = [
        append(a, &w, &[completed(0), done("a")]),
        append(b, &w, &[completed(1), failed.clone()]),
        append(c, &w, &[completed(0), done("c")]),
        append(d, &stranger, &[done("d")]),
        append(e, &w, &[completed(0)]),
    ];
    let results = run_batch(&store, &ops).await;
    let errors: Vec<Option<String>> = results
        .iter()
        .map(|result| result.as_ref().err().map(ToString::to_string))
        .collect();
    assert_eq!(
        errors.iter().map(Option::is_none).collect::<Vec<_>>(),
        [true, true, true, false, true],
        "{errors:?}"
    );
    assert!(
        matches!(&results[3], Err(StoreError::LeaseLost { worker, .. }) if *worker == stranger),
        "the stranger's end is fenced off: {:?}",
        errors[3]
    );

    let log = |id| {
        let store = &store;
        async move {
            let records = store.events(id).await.expect("events");
            records
                .into_iter()
                .skip(1)
                .map(|record| record.event)
                .collect::<Vec<_>>()
        }
    };
    let run = |id| {
        let store = &store;
        async move { store.get_run(id).await.expect("get_run").expect("the run") }
    };
    assert_eq!(log(a).await, [completed(0), done("a")]);
    let ended = run(a).await;
    assert_eq!(
        (
            ended.status,
            ended.output,
            ended.lease_owner,
            ended.finished_at_ms
        ),
        (RunStatus::Succeeded, Some(json!("a")), None, Some(NOW + 1))
    );
    assert_eq!(
        log(b).await,
        [hook_created(0, "b-hook"), completed(1), failed]
    );
    let ended = run(b).await;
    assert_eq!(ended.status, RunStatus::Failed);
    assert_eq!(
        ended.error.map(|error| error.message).as_deref(),
        Some("b broke")
    );
    let hook = store
        .get_hook("b-hook")
        .await
        .expect("get_hook")
        .expect("the hook");
    assert_eq!(hook.state, HookState::Closed, "an ended run's hooks close");
    assert_eq!(run(c).await.status, RunStatus::Succeeded);
    let woken = run(parent).await;
    assert_eq!(
        (woken.status, woken.ready_at_ms, woken.lease_owner),
        (RunStatus::Queued, NOW + 1, None),
        "the child's end wakes its parked parent"
    );
    let fenced = run(d).await;
    assert_eq!((fenced.status, log(d).await), (RunStatus::Running, vec![]));
    assert_eq!(log(e).await, [completed(0)]);
}
