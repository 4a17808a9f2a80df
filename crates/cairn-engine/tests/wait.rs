//! `Engine::wait_until_ended`: it returns the ended run whoever ends it: this process's
//! execution, another engine on the same store file (another process), or a cancel made here
//! or there while this process is executing the run.

mod support;

use std::{sync::Arc, time::Duration};

use cairn_core::RunStatus;
use cairn_engine::{
    Action, ActionCtx, Engine, EngineConfig, Registry, StartOptions, Workflow, WorkflowCtx,
};
use cairn_store::RunId;
use cairn_store_sqlite::SqliteStore;
use support::{Num, engine, engine_with, spawn_execute, start, wait_for_status};
use tokio::sync::Semaphore;

/// Long enough for any of these waits on a loaded machine; far longer than they need.
const DEADLINE: Duration = Duration::from_secs(20);

/// A workflow of one step that returns its input once `gate` gives a permit, or stops when
/// its run is canceled.
fn gated(gate: Arc<Semaphore>) -> Workflow<Num, Num> {
    let hold = Action::new("hold").run(move |input: Num, ctx: ActionCtx| {
        let gate = gate.clone();
        async move {
            tokio::select! {
                permit = gate.acquire() => drop(permit),
                () = ctx.cancellation().cancelled() => {}
            }
            Ok(input)
        }
    });
    Workflow::new("gated").run(move |input: Num, _ctx: WorkflowCtx| {
        let hold = hold.clone();
        async move { Ok(hold.run(input).await?) }
    })
}

async fn wait(engine: &Engine, id: RunId) -> cairn_store::RunRecord {
    tokio::time::timeout(DEADLINE, engine.wait_until_ended(id))
        .await
        .expect("the wait ends within the deadline")
        .expect("the wait succeeds")
}

#[tokio::test]
async fn a_wait_returns_the_run_this_process_ends() {
    let gate = Arc::new(Semaphore::new(0));
    let workflow = gated(gate.clone());
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let id = start(&engine, &workflow, Num { n: 4 }).await;
    let execution = spawn_execute(&engine, id);
    wait_for_status(&engine, id, RunStatus::Running).await;
    let waiting = {
        let engine = engine.clone();
        tokio::spawn(async move { wait(&engine, id).await })
    };
    gate.add_permits(1);
    let ended = waiting.await.expect("the waiter");
    assert_eq!(ended.status, RunStatus::Succeeded);
    assert_eq!(ended.output, Some(serde_json::json!({"n": 4})));
    execution.await.expect("joined").expect("executed");
    // An ended run answers at once.
    assert_eq!(wait(&engine, id).await.status, RunStatus::Succeeded);
}

#[tokio::test]
async fn a_wait_returns_the_run_another_process_ends() {
    let gate = Arc::new(Semaphore::new(1));
    let workflow = gated(gate);
    let registry = || Registry::new().workflow(&workflow);
    let (engine, dir) = engine(registry());
    let other = Engine::builder(
        Arc::new(SqliteStore::open_in_dir(dir.path()).expect("a second store on the file")),
        registry(),
    )
    .build()
    .expect("valid registry");
    let id = start(&engine, &workflow, Num { n: 5 }).await;
    let waiting = {
        let engine = engine.clone();
        tokio::spawn(async move { wait(&engine, id).await })
    };
    other
        .execute(id)
        .await
        .expect("executed by the other engine");
    let ended = waiting.await.expect("the waiter");
    assert_eq!(ended.status, RunStatus::Succeeded);
}

#[tokio::test]
async fn a_wait_returns_a_run_canceled_here_or_elsewhere_while_it_executes_here() {
    for canceled_here in [true, false] {
        let gate = Arc::new(Semaphore::new(0));
        let workflow = gated(gate);
        let registry = || Registry::new().workflow(&workflow);
        let (engine, dir) = engine_with(registry(), EngineConfig::default());
        let other = Engine::builder(
            Arc::new(SqliteStore::open_in_dir(dir.path()).expect("a second store on the file")),
            registry(),
        )
        .build()
        .expect("valid registry");
        let id = engine
            .start(&workflow, &Num { n: 6 }, StartOptions::default())
            .await
            .expect("start")
            .run_id;
        let execution = spawn_execute(&engine, id);
        wait_for_status(&engine, id, RunStatus::Running).await;
        let mut waiting = {
            let engine = engine.clone();
            tokio::spawn(async move { wait(&engine, id).await })
        };
        // Not a sleep to wait for something: the wait must not return a running run, and in
        // this time it has read the run once and is waiting for a change.
        let early = tokio::time::timeout(Duration::from_millis(300), &mut waiting).await;
        assert!(early.is_err(), "the wait returned a running run: {early:?}");
        let canceler = if canceled_here { &engine } else { &other };
        canceler.cancel(id, "test").await.expect("canceled");
        let ended = waiting.await.expect("the waiter");
        assert_eq!(
            ended.status,
            RunStatus::Canceled,
            "canceled here: {canceled_here}"
        );
        drop(execution);
    }
}
