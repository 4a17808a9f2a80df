//! Parallel steps, child workflows, cancellation, and two engines sharing one store file
//! (as two processes would): each run has one executor at a time and no step runs twice.

mod support;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use cairn_core::{RunStatus, StepKind};
use cairn_engine::{
    Action, ActionCtx, CancellationToken, Engine, EngineConfig, Registry, StartOptions, Workflow,
    WorkflowCtx,
};
use cairn_store::RunFilter;
use cairn_store_sqlite::SqliteStore;
use futures::future::try_join_all;
use serde_json::json;
use support::{Num, engine, eventually, spawn_execute, start};

#[tokio::test]
async fn parallel_steps_get_keys_in_call_order_and_replay_the_same() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let double = Action::new("double").run(move |input: Num, _ctx: ActionCtx| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            // Finish in reverse order of the calls.
            tokio::time::sleep(Duration::from_millis((5 - input.n as u64) * 5)).await;
            Ok(Num { n: input.n * 2 })
        }
    });
    let workflow = Workflow::new("fan-out").run(move |_input: Num, _ctx: WorkflowCtx| {
        let double = double.clone();
        async move {
            let outs = try_join_all((1..=4).map(|n| double.run(Num { n }))).await?;
            Ok(Num {
                n: outs.iter().map(|o| o.n).sum(),
            })
        }
    });
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let id = start(&engine, &workflow, Num { n: 0 }).await;
    let run = engine.execute(id).await.unwrap();
    assert_eq!(run.output, Some(json!({"n": 20})));
    let steps = engine.get_run(id).await.unwrap().steps;
    let by_key: HashMap<_, _> = steps
        .iter()
        .map(|s| (s.key.to_string(), s.input.clone().unwrap()))
        .collect();
    for n in 1..=4 {
        assert_eq!(by_key[&format!("double#{}", n - 1)], json!({"n": n}));
    }
    // Fork from the step the timeline shows last: the parallel steps before it replay by key
    // (whatever order they finished in), only it runs again.
    let last = steps.last().unwrap().key.clone();
    let fork = engine
        .rerun_from(id, &last, StartOptions::default())
        .await
        .unwrap();
    assert_eq!(
        engine.execute(fork).await.unwrap().output,
        Some(json!({"n": 20}))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn a_child_workflow_is_a_step_with_its_own_linked_run() {
    let inc = Action::new("inc")
        .run(|input: Num, _ctx: ActionCtx| async move { Ok(Num { n: input.n + 1 }) });
    let child = Workflow::new("child").run(move |input: Num, _ctx: WorkflowCtx| {
        let inc = inc.clone();
        async move { Ok(inc.run(inc.run(input).await?).await?) }
    });
    let parent = {
        let child = child.clone();
        Workflow::new("parent").run(move |input: Num, _ctx: WorkflowCtx| {
            let child = child.clone();
            async move { Ok(child.run(input).await?) }
        })
    };
    let (engine, _dir) = engine(Registry::new().workflow(&parent).workflow(&child));
    let id = start(&engine, &parent, Num { n: 1 }).await;
    let run = engine.execute(id).await.unwrap();
    assert_eq!(run.output, Some(json!({"n": 3})));
    let steps = engine.get_run(id).await.unwrap().steps;
    assert_eq!(
        (steps[0].kind, steps[0].key.to_string()),
        (StepKind::Workflow, "child#0".into())
    );
    let children = engine
        .list_runs(&RunFilter {
            parent_run_id: Some(id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].status, RunStatus::Succeeded);
    assert_eq!(
        engine
            .get_run(children[0].run_id)
            .await
            .unwrap()
            .steps
            .len(),
        2
    );
}

#[tokio::test]
async fn canceling_a_run_signals_the_step_in_flight() {
    let started = Arc::new(AtomicBool::new(false));
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let (started_flag, cancel_flag) = (started.clone(), saw_cancel.clone());
    let wait = Action::new("wait-forever").run(move |input: Num, ctx: ActionCtx| {
        let (started, canceled) = (started_flag.clone(), cancel_flag.clone());
        async move {
            started.store(true, Ordering::SeqCst);
            ctx.cancellation().cancelled().await;
            canceled.store(true, Ordering::SeqCst);
            Ok(input)
        }
    });
    let workflow = Workflow::new("cancelable").run(move |input: Num, _ctx: WorkflowCtx| {
        let wait = wait.clone();
        async move { Ok(wait.run(input).await?) }
    });
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let id = start(&engine, &workflow, Num { n: 1 }).await;
    let execution = spawn_execute(&engine, id);
    assert!(
        eventually(Duration::from_secs(5), async || started
            .load(Ordering::SeqCst))
        .await
    );
    assert_eq!(
        engine.cancel(id, "user changed their mind").await.unwrap(),
        RunStatus::Running
    );
    let run = execution.await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Canceled);
    assert!(
        run.error
            .unwrap()
            .message
            .contains("user changed their mind")
    );
    assert!(
        eventually(Duration::from_secs(5), async || saw_cancel
            .load(Ordering::SeqCst))
        .await
    );
    let err = engine.cancel(id, "again").await.unwrap_err();
    assert!(err.to_string().contains("already ended"), "{err}");
}

#[tokio::test]
async fn an_action_that_cancels_its_own_signal_leaves_the_run_and_later_steps_alone() {
    // The token an action holds is its attempt's: cancelling it (to stop its own helpers,
    // say) must not cancel the run or reach the steps after it.
    let quit = Action::new("quit-early").run(|input: Num, ctx: ActionCtx| async move {
        ctx.cancellation().cancel();
        Ok(input)
    });
    let probe = Action::new("probe").run(|_input: Num, ctx: ActionCtx| async move {
        Ok(Num {
            n: i64::from(ctx.is_canceled()),
        })
    });
    let workflow = Workflow::new("self-cancel").run(move |input: Num, _ctx: WorkflowCtx| {
        let (quit, probe) = (quit.clone(), probe.clone());
        async move {
            let value = quit.run(input).await?;
            Ok(probe.run(value).await?)
        }
    });
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let id = start(&engine, &workflow, Num { n: 7 }).await;
    let run = engine.execute(id).await.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(
        run.output,
        Some(json!({"n": 0})),
        "the next step saw a cancellation signal"
    );
}

#[tokio::test]
async fn two_engines_on_one_file_never_run_a_step_twice() {
    let dir = tempfile::TempDir::new().unwrap();
    let ledger = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let step = |slug: &'static str| {
        let ledger = ledger.clone();
        Action::new(slug).run(move |input: Num, ctx: ActionCtx| {
            let ledger = ledger.clone();
            async move {
                ledger
                    .lock()
                    .unwrap()
                    .push((ctx.run_id().to_string(), ctx.step_key().to_string()));
                tokio::time::sleep(Duration::from_millis(2)).await;
                Ok(input)
            }
        })
    };
    let (a, b, c) = (step("a"), step("b"), step("c"));
    let workflow = Workflow::new("ledgered").run(move |input: Num, _ctx: WorkflowCtx| {
        let (a, b, c) = (a.clone(), b.clone(), c.clone());
        async move { Ok(c.run(b.run(a.run(input).await?).await?).await?) }
    });
    let config = EngineConfig {
        poll_interval: Duration::from_millis(5),
        ..EngineConfig::default()
    };
    let make = || {
        let store = SqliteStore::open_in_dir(dir.path()).unwrap();
        Engine::builder(Arc::new(store), Registry::new().workflow(&workflow))
            .config(config.clone())
            .build()
            .expect("valid registry")
    };
    let (first, second) = (make(), make());
    let total = 40;
    for n in 0..total {
        first
            .start(&workflow, &Num { n }, StartOptions::default())
            .await
            .unwrap();
    }
    let shutdown = CancellationToken::new();
    let workers: Vec<_> = [first.clone(), second.clone()]
        .into_iter()
        .map(|engine| {
            let shutdown = shutdown.clone();
            tokio::spawn(async move { engine.run_worker(shutdown).await })
        })
        .collect();
    let done = eventually(Duration::from_secs(30), async || {
        let filter = RunFilter {
            status: Some(RunStatus::Succeeded),
            limit: 1_000,
            ..Default::default()
        };
        first.list_runs(&filter).await.unwrap().len() == total as usize
    })
    .await;
    shutdown.cancel();
    for worker in workers {
        worker.await.unwrap().unwrap();
    }
    assert!(done, "all runs finish");
    let ledger = ledger.lock().unwrap();
    let mut seen = std::collections::HashSet::new();
    for entry in ledger.iter() {
        assert!(seen.insert(entry.clone()), "step executed twice: {entry:?}");
    }
    assert_eq!(ledger.len(), total as usize * 3);
}

#[tokio::test]
async fn a_step_in_flight_shows_as_running_before_it_finishes() {
    let release = Arc::new(tokio::sync::Notify::new());
    let gate = release.clone();
    let slow = Action::new("slow").run(move |input: Num, _ctx: ActionCtx| {
        let gate = gate.clone();
        async move {
            gate.notified().await;
            Ok(input)
        }
    });
    let workflow = Workflow::new("inspectable").run(move |input: Num, _ctx: WorkflowCtx| {
        let slow = slow.clone();
        async move { Ok(slow.run(input).await?) }
    });
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let id = start(&engine, &workflow, Num { n: 1 }).await;
    let execution = spawn_execute(&engine, id);
    let shown = eventually(Duration::from_secs(10), async || {
        let steps = engine.get_run(id).await.unwrap().steps;
        steps
            .first()
            .is_some_and(|step| step.status == cairn_core::StepStatus::Running)
    })
    .await;
    assert!(
        shown,
        "a step running longer than a moment is visible in flight"
    );
    release.notify_one();
    assert_eq!(
        execution.await.unwrap().unwrap().status,
        RunStatus::Succeeded
    );
    let steps = engine.get_run(id).await.unwrap().steps;
    assert_eq!(
        (steps.len(), steps[0].attempts),
        (1, 1),
        "its start is recorded once"
    );
}
