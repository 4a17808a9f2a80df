//! The engine's shared machinery seen from outside: the steps limit on every kind of step,
//! seeded randomness, events published after commit, registration errors and resources.

mod support;

use std::{sync::Arc, time::Duration};

use cairn_core::{ErrorKind, Event, Limits, RunStatus};
use cairn_engine::{
    Action, ActionCtx, Engine, EngineConfig, EngineError, ManualClock, Registry, SeededEntropy,
    StartOptions, Workflow, WorkflowCtx,
};
use cairn_store::{HookFilter, MemoryStore};
use support::{Empty, Num, engine_with};

/// A config allowing `steps` step calls per run.
fn limited(steps: usize) -> EngineConfig {
    EngineConfig {
        limits: Limits {
            max_steps_per_run: steps,
            ..Limits::default()
        },
        ..EngineConfig::default()
    }
}

/// Which kind of step the over-the-limit call is.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Action,
    Child,
    Sleep,
    Hook,
    Now,
    Random,
    Uuid,
}

#[tokio::test]
async fn the_steps_limit_applies_to_every_kind_of_step() {
    let echo = Action::new("echo").run(|input: Num, _ctx: ActionCtx| async move { Ok(input) });
    let child =
        Workflow::new("child").run(|input: Num, _ctx: WorkflowCtx| async move { Ok(input) });
    for kind in [
        Kind::Action,
        Kind::Child,
        Kind::Sleep,
        Kind::Hook,
        Kind::Now,
        Kind::Random,
        Kind::Uuid,
    ] {
        let (echo, called) = (echo.clone(), child.clone());
        let workflow = Workflow::new("busy").run(move |input: Num, ctx: WorkflowCtx| {
            let (echo, child) = (echo.clone(), called.clone());
            async move {
                // Two calls within the limit, then the third of `kind`, over it.
                ctx.now();
                echo.run(input.clone()).await?;
                match kind {
                    Kind::Action => {
                        let _ = echo.run(input.clone()).await?;
                    }
                    Kind::Child => {
                        let _ = child.run(input.clone()).await?;
                    }
                    Kind::Sleep => ctx.sleep(Duration::from_millis(1)).await?,
                    Kind::Hook => {
                        let _ = ctx.hook::<Empty>().await?;
                    }
                    Kind::Now => {
                        let _ = ctx.now();
                    }
                    Kind::Random => {
                        let _ = ctx.random();
                    }
                    Kind::Uuid => {
                        let _ = ctx.uuid();
                    }
                }
                // A sync call over the limit stops the body at its next await.
                echo.run(input.clone()).await?;
                Ok(input)
            }
        });
        let registry = Registry::new().workflow(&workflow).workflow(&child);
        let (engine, _dir) = engine_with(registry, limited(2));
        let run = engine
            .run(&workflow, &Num { n: 1 }, StartOptions::default())
            .await
            .expect("run");
        assert_eq!(run.status, RunStatus::Failed, "{kind:?}");
        let error = run.error.expect("error");
        assert!(
            error.message.contains("more than 2 step calls"),
            "{kind:?}: {error}"
        );
        let detail = engine.get_run(run.run_id).await.expect("get");
        assert_eq!(
            detail.steps.len(),
            2,
            "{kind:?}: nothing over the limit is recorded"
        );
    }
}

/// An engine on its own memory store, with a fixed clock and seeded randomness.
fn seeded(seed: u64, workflow: &Workflow<Empty, Empty>) -> Engine {
    Engine::builder(
        Arc::new(MemoryStore::new()),
        Registry::new().workflow(workflow),
    )
    .clock(Arc::new(ManualClock::new(1_767_225_600_000)))
    .entropy(Arc::new(SeededEntropy::new(seed)))
    .config(EngineConfig {
        in_process_wait_limit: Duration::ZERO,
        ..EngineConfig::default()
    })
    .build()
    .expect("valid registry")
}

#[tokio::test]
async fn a_seeded_engine_makes_the_same_run_ids_hook_tokens_and_draws() {
    let workflow = Workflow::new("seeded").run(|input: Empty, ctx: WorkflowCtx| async move {
        ctx.random();
        ctx.uuid();
        ctx.hook::<Empty>().await?;
        Ok(input)
    });
    let mut seen = Vec::new();
    for seed in [7, 7, 8] {
        let engine = seeded(seed, &workflow);
        let mut runs = Vec::new();
        for _ in 0..2 {
            let started = engine
                .start(&workflow, &Empty {}, StartOptions::default())
                .await
                .expect("start");
            engine.execute_ready().await.expect("execute");
            let detail = engine.get_run(started.run_id).await.expect("get");
            assert_eq!(detail.run.status, RunStatus::Waiting);
            let outputs: Vec<_> = detail.steps.iter().map(|s| s.output.clone()).collect();
            let hooks = engine
                .list_hooks(&HookFilter {
                    run_id: Some(started.run_id),
                    ..HookFilter::default()
                })
                .await
                .expect("hooks");
            runs.push((started.run_id, outputs, hooks[0].token.clone()));
        }
        seen.push(runs);
    }
    assert_eq!(seen[0], seen[1], "the same seed makes the same choices");
    assert_ne!(seen[0][0].0, seen[2][0].0, "another seed, other run ids");
    assert_ne!(
        seen[0][0].2, seen[2][0].2,
        "another seed, other hook tokens"
    );
}

#[tokio::test]
async fn subscribers_see_committed_events_once_in_order_with_their_seq() {
    let echo = Action::new("echo").run(|input: Num, _ctx: ActionCtx| async move { Ok(input) });
    let workflow = Workflow::new("three").run(move |input: Num, _ctx: WorkflowCtx| {
        let echo = echo.clone();
        async move {
            let mut n = input;
            for _ in 0..3 {
                n = echo.run(n).await?;
            }
            Ok(n)
        }
    });
    let (engine, _dir) = engine_with(Registry::new().workflow(&workflow), EngineConfig::default());
    let mut events = engine.subscribe();
    let store = engine.store().clone();
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            let event = events.recv().await.expect("no lag, no close");
            // Published after the commit: the store has it already.
            let stored = store.events(event.run_id).await.expect("events");
            let at = stored.iter().find(|record| record.seq == event.seq);
            assert_eq!(at.map(|record| &record.event), Some(&event.event));
            let ended = matches!(event.event, Event::RunCompleted { .. });
            seen.push(event);
            if ended {
                return seen;
            }
        }
    });
    let run = engine
        .run(&workflow, &Num { n: 1 }, StartOptions::default())
        .await
        .expect("run");
    let seen = tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .expect("in time")
        .expect("watcher");
    let stored = engine.store().events(run.run_id).await.expect("events");
    let seqs: Vec<u64> = seen.iter().map(|event| event.seq).collect();
    assert_eq!(seqs, (1..=stored.len() as u64).collect::<Vec<_>>());
    assert!(seen.iter().all(|event| event.run_id == run.run_id));
}

#[tokio::test]
async fn a_bad_slug_is_an_error_when_registered_not_a_panic_when_used() {
    let bad = Action::new("Bad Slug").run(|input: Num, _ctx: ActionCtx| async move { Ok(input) });
    let workflow =
        Workflow::new("fine").run(|input: Num, _ctx: WorkflowCtx| async move { Ok(input) });
    let err = Engine::new(
        Arc::new(MemoryStore::new()),
        Registry::new().workflow(&workflow).action(&bad),
    )
    .expect_err("a bad slug");
    assert!(matches!(err, EngineError::Registry(_)), "{err:?}");
    assert!(err.to_string().contains("\"Bad Slug\""), "{err}");

    let other = Workflow::new("fine").run(|input: Num, _ctx: WorkflowCtx| async move { Ok(input) });
    let err = Engine::new(
        Arc::new(MemoryStore::new()),
        Registry::new().workflow(&workflow).workflow(&other),
    )
    .expect_err("one slug, two workflows");
    assert!(err.to_string().contains("two different workflows"), "{err}");

    // Called without being registered, the bad action fails its step, not the process.
    let caller = Workflow::new("caller").run(move |input: Num, _ctx: WorkflowCtx| {
        let bad = bad.clone();
        async move { Ok(bad.run(input).await?) }
    });
    let (engine, _dir) = engine_with(Registry::new().workflow(&caller), EngineConfig::default());
    let run = engine
        .run(&caller, &Num { n: 1 }, StartOptions::default())
        .await
        .expect("run");
    let error = run.error.expect("failed");
    assert_eq!(error.kind, ErrorKind::Misuse);
    assert!(error.message.contains("invalid slug"), "{error}");
}

/// A resource an application shares with its actions.
struct Greeting(&'static str);

#[tokio::test]
async fn actions_read_registered_resources_and_a_missing_one_is_a_fatal_error() {
    let greet = Action::new("greet").run(|_input: Empty, ctx: ActionCtx| async move {
        let greeting = ctx.resource::<Greeting>()?;
        Ok(Num {
            n: greeting.0.len() as i64,
        })
    });
    let workflow = Workflow::new("greeter").run(move |_input: Empty, _ctx: WorkflowCtx| {
        let greet = greet.clone();
        async move { Ok(greet.run(Empty {}).await?) }
    });
    let registry = Registry::new().workflow(&workflow);
    let (engine, _dir) = engine_with(
        registry.clone().resource(Greeting("hello")),
        EngineConfig::default(),
    );
    let run = engine
        .run(&workflow, &Empty {}, StartOptions::default())
        .await
        .expect("run");
    assert_eq!(run.output, Some(serde_json::json!({"n": 5})));

    let (engine, _dir) = engine_with(registry, EngineConfig::default());
    let run = engine
        .run(&workflow, &Empty {}, StartOptions::default())
        .await
        .expect("run");
    let detail = engine.get_run(run.run_id).await.expect("get");
    let error = run.error.expect("failed");
    assert!(error.message.contains("Greeting"), "{error}");
    assert_eq!(detail.steps[0].attempts, 1, "fatal: not retried");
}

#[tokio::test]
async fn a_follower_on_another_store_instance_sees_every_event_once_in_order() {
    let echo = Action::new("echo").run(|input: Num, _ctx: ActionCtx| async move { Ok(input) });
    let workflow = Workflow::new("followed").run(move |input: Num, ctx: WorkflowCtx| {
        let echo = echo.clone();
        async move {
            let n = echo.run(input).await?;
            ctx.sleep(Duration::from_millis(30)).await?;
            Ok(echo.run(n).await?)
        }
    });
    let dir = tempfile::TempDir::new().expect("temp dir");
    let open = || -> Arc<dyn cairn_store::Store> {
        Arc::new(cairn_store_sqlite::SqliteStore::open_in_dir(dir.path()).expect("open"))
    };
    let registry = Registry::new().workflow(&workflow);
    let executing = Engine::new(open(), registry.clone()).expect("engine");
    let following = Engine::new(open(), registry).expect("engine");
    let started = executing
        .start(&workflow, &Num { n: 1 }, StartOptions::default())
        .await
        .expect("start");
    let follow = following.follow(started.run_id, 0);
    let collected = tokio::spawn(futures::StreamExt::collect::<Vec<_>>(follow));
    executing.execute(started.run_id).await.expect("execute");
    let seen: Vec<_> = tokio::time::timeout(Duration::from_secs(10), collected)
        .await
        .expect("the follower saw the end in time")
        .expect("follower task")
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("no error");
    let stored = executing
        .store()
        .events(started.run_id)
        .await
        .expect("events");
    assert_eq!(seen, stored, "every committed event, once, in order");
    assert!(matches!(
        seen.last().map(|r| &r.event),
        Some(Event::RunCompleted { .. })
    ));

    // Following from the middle hands out the rest; an ended run's stream ends at once.
    let rest: Vec<_> =
        futures::StreamExt::collect::<Vec<_>>(following.follow(started.run_id, 3)).await;
    assert_eq!(rest.len(), stored.len() - 3);
    let unknown: Vec<_> =
        futures::StreamExt::collect::<Vec<_>>(following.follow(cairn_store::RunId::new(), 0)).await;
    assert!(matches!(
        unknown.as_slice(),
        [Err(EngineError::RunNotFound(_))]
    ));
}

#[tokio::test]
async fn replay_every_step_gives_the_run_back_before_each_step_after_the_first() {
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = calls.clone();
    let step = Action::new("step").run(move |input: Num, _ctx: ActionCtx| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move { Ok(Num { n: input.n + 1 }) }
    });
    let called = step.clone();
    let workflow = Workflow::new("three").run(move |input: Num, _ctx: WorkflowCtx| {
        let step = called.clone();
        async move {
            let one = step.run(input).await?;
            let two = step.run(one).await?;
            Ok(step.run(two).await?)
        }
    });
    let engine = Engine::builder(
        Arc::new(MemoryStore::new()),
        Registry::new().workflow(&workflow).action(&step),
    )
    .config(EngineConfig {
        replay_every_step: true,
        ..EngineConfig::default()
    })
    .build()
    .expect("valid registry");
    let started = engine
        .start(&workflow, &Num { n: 0 }, StartOptions::default())
        .await
        .expect("start");
    let mut executions = 0;
    while engine.execute_ready().await.expect("execute") > 0 {
        executions += 1;
    }
    let detail = engine.get_run(started.run_id).await.expect("get");
    assert_eq!(detail.run.status, RunStatus::Succeeded);
    assert_eq!(detail.run.output, Some(serde_json::json!({ "n": 3 })));
    assert_eq!(
        executions, 3,
        "one execution per step: each began with a replay"
    );
    assert_eq!(detail.run.executions, 3);
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "no step ran twice"
    );
}
