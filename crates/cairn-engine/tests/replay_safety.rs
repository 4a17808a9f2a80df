//! Replay safety: the order of calls and their inputs are checked before anything runs
//! again; `ctx.patched` lets code change under runs in flight; a panicking body fails its run;
//! an interrupted attempt is not the action's failure, up to a limit.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicUsize, Ordering},
    },
    time::Duration,
};

use cairn_core::{ChangedInput, ErrorKind, Event, Limits, RunStatus, StepKind, StepStatus};
use cairn_engine::{
    Action, ActionCtx, Clock, Engine, EngineConfig, ManualClock, Registry, Retry, StartOptions,
    Workflow, WorkflowCtx, WorkflowError,
};
use cairn_store::{Lease, MemoryStore, NewRun, RunId, WorkerId};
use support::{Num, engine};

/// An action that adds `add` and counts its executions.
fn adder(slug: &str, add: i64, calls: Arc<AtomicUsize>) -> Action<Num, Num> {
    Action::new(slug)
        .retry(Retry::none())
        .run(move |input: Num, _ctx: ActionCtx| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(Num { n: input.n + add })
            }
        })
}

/// Which version of a workflow's code runs: the "deployment" a test switches.
#[derive(Clone, Default)]
struct Version(Arc<AtomicU8>);

impl Version {
    fn get(&self) -> u8 {
        self.0.load(Ordering::SeqCst)
    }
    fn set(&self, version: u8) {
        self.0.store(version, Ordering::SeqCst);
    }
}

fn stop_here() -> WorkflowError {
    WorkflowError::new("version 0 stops here")
}

/// Runs `workflow` under version 0 (it fails), switches to version 1 and retries it.
async fn retried_under_v1(
    engine: &Engine,
    workflow: &Workflow<Num, Num>,
    version: &Version,
) -> cairn_store::RunRecord {
    let first = engine
        .run(workflow, &Num { n: 1 }, StartOptions::default())
        .await
        .expect("run");
    assert_eq!(first.status, RunStatus::Failed);
    version.set(1);
    engine.retry(first.run_id).await.expect("retry");
    engine.execute(first.run_id).await.expect("execute")
}

#[tokio::test]
async fn reordered_calls_fail_the_retry_before_any_step_runs_again() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, b) = (adder("a", 1, calls.clone()), adder("b", 10, calls.clone()));
    let version = Version::default();
    let v = version.clone();
    let workflow = Workflow::new("reorder").run(move |input: Num, _ctx: WorkflowCtx| {
        let (a, b, v) = (a.clone(), b.clone(), v.get());
        async move {
            if v == 0 {
                let x = a.run(input).await?;
                b.run(x).await?;
                return Err(stop_here());
            }
            let x = b.run(input).await?;
            Ok(a.run(x).await?)
        }
    });
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let run = retried_under_v1(&engine, &workflow, &version).await;
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.error.expect("error");
    assert_eq!(error.kind, ErrorKind::NonDeterminism);
    assert!(
        error.message.contains("at call 0")
            && error.message.contains("a#0 (action a)")
            && error.message.contains("b#0 (action b)"),
        "{error}"
    );
    assert!(
        error
            .message
            .contains(&format!("runs rerun {} --from a#0", run.run_id)),
        "says how to fix it: {error}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "nothing ran again");
    let stored = engine.get_run(run.run_id).await.expect("get").run;
    assert_eq!(stored.status, RunStatus::Failed, "the failure is recorded");
    assert_eq!(
        stored.error.map(|e| e.kind),
        Some(ErrorKind::NonDeterminism)
    );
}

#[tokio::test]
async fn calls_appended_after_the_recorded_ones_continue_the_run() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, b) = (adder("a", 1, calls.clone()), adder("b", 10, calls.clone()));
    let version = Version::default();
    let v = version.clone();
    let workflow = Workflow::new("append").run(move |input: Num, _ctx: WorkflowCtx| {
        let (a, b, v) = (a.clone(), b.clone(), v.get());
        async move {
            let x = a.run(input).await?;
            if v == 0 {
                return Err(stop_here());
            }
            Ok(b.run(x).await?)
        }
    });
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let run = retried_under_v1(&engine, &workflow, &version).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.output, Some(serde_json::json!({"n": 12})));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "a ran once, b once");
}

#[tokio::test]
async fn a_call_the_code_no_longer_makes_fails_the_run_when_the_body_ends() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, b) = (adder("a", 1, calls.clone()), adder("b", 10, calls.clone()));
    let version = Version::default();
    let v = version.clone();
    let workflow = Workflow::new("removed").run(move |input: Num, _ctx: WorkflowCtx| {
        let (a, b, v) = (a.clone(), b.clone(), v.get());
        async move {
            let x = a.run(input).await?;
            if v == 0 {
                b.run(x).await?;
                return Err(stop_here());
            }
            Ok(x)
        }
    });
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let run = retried_under_v1(&engine, &workflow, &version).await;
    let error = run.error.expect("error");
    assert_eq!(error.kind, ErrorKind::NonDeterminism);
    assert!(
        error.message.contains("at call 1") && error.message.contains("no longer makes"),
        "{error}"
    );
}

fn changed_input_workflow(
    slug: &str,
    changed: ChangedInput,
    a: Action<Num, Num>,
    version: &Version,
) -> Workflow<Num, Num> {
    let v = version.clone();
    Workflow::new(slug)
        .on_changed_input(changed)
        .run(move |input: Num, _ctx: WorkflowCtx| {
            let (a, v) = (a.clone(), v.get());
            async move {
                let x = a
                    .run(Num {
                        n: input.n + i64::from(v),
                    })
                    .await?;
                if v == 0 {
                    return Err(stop_here());
                }
                Ok(x)
            }
        })
}

#[tokio::test]
async fn a_changed_input_is_non_determinism_unless_the_workflow_allows_it() {
    let calls = Arc::new(AtomicUsize::new(0));
    let a = adder("a", 1, calls.clone());
    let version = Version::default();
    let strict = changed_input_workflow("strict", ChangedInput::Fail, a.clone(), &version);
    let (strict_engine, _dir) = engine(Registry::new().workflow(&strict));
    let run = retried_under_v1(&strict_engine, &strict, &version).await;
    let error = run.error.expect("error");
    assert_eq!(error.kind, ErrorKind::NonDeterminism);
    assert!(
        error.message.contains(r#"{"n":1}"#)
            && error.message.contains(r#"{"n":2}"#)
            && error.message.contains("--from a#0"),
        "{error}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let version = Version::default();
    let lenient = changed_input_workflow("lenient", ChangedInput::UseRecorded, a, &version);
    let (engine, _dir) = engine(Registry::new().workflow(&lenient));
    let run = retried_under_v1(&engine, &lenient, &version).await;
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(
        run.output,
        Some(serde_json::json!({"n": 2})),
        "the recorded output"
    );
    let detail = engine.get_run(run.run_id).await.expect("get");
    let warnings = &detail.steps[0].warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("recorded output was used"),
        "{warnings:?}"
    );
}

/// An engine on a memory store with a manual clock: time moves when the test says.
fn on_manual_clock(registry: Registry) -> (Engine, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_767_225_600_000));
    let engine = Engine::builder(Arc::new(MemoryStore::new()), registry)
        .clock(clock.clone())
        .config(EngineConfig {
            in_process_wait_limit: Duration::ZERO,
            limits: Limits {
                max_step_recoveries: 3,
                ..Limits::default()
            },
            ..EngineConfig::default()
        })
        .build()
        .expect("valid registry");
    (engine, clock)
}

#[tokio::test]
async fn patched_keeps_runs_recorded_before_a_change_on_the_old_path() {
    let (a_calls, sms_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let a = adder("a", 1, a_calls.clone());
    let sms = adder("sms", 100, sms_calls.clone());
    let version = Version::default();
    let v = version.clone();
    // Version 1 sends an SMS between the first step and the sleep: a run parked in the
    // sleep under version 0 has passed that point without it.
    let workflow = Workflow::new("patchy").run(move |input: Num, ctx: WorkflowCtx| {
        let (a, sms, v) = (a.clone(), sms.clone(), v.get());
        async move {
            let mut x = a.run(input).await?;
            if v == 1 && ctx.patched("send-sms-too") {
                x = sms.run(x).await?;
            }
            ctx.sleep("1h").await?;
            Ok(x)
        }
    });
    let (engine, clock) = on_manual_clock(Registry::new().workflow(&workflow));
    let start = async |engine: &Engine| {
        let started = engine
            .start(&workflow, &Num { n: 1 }, StartOptions::default())
            .await
            .expect("start");
        engine.execute_ready().await.expect("execute");
        started.run_id
    };
    let old = start(&engine).await;
    assert_eq!(
        engine.get_run(old).await.unwrap().run.status,
        RunStatus::Sleeping
    );
    version.set(1);
    let new = start(&engine).await;
    clock.advance(Duration::from_secs(3600));
    while engine.execute_ready().await.expect("execute") > 0 {}
    let old = engine.get_run(old).await.expect("old");
    let new = engine.get_run(new).await.expect("new");
    assert_eq!(
        old.run.output,
        Some(serde_json::json!({"n": 2})),
        "old path"
    );
    assert_eq!(
        new.run.output,
        Some(serde_json::json!({"n": 102})),
        "new path"
    );
    assert_eq!(sms_calls.load(Ordering::SeqCst), 1);
    assert!(!old.steps.iter().any(|s| s.kind == StepKind::Patch));
    assert!(new.steps.iter().any(|s| s.kind == StepKind::Patch));
}

#[tokio::test]
async fn a_panicking_body_fails_its_run_and_the_worker_goes_on() {
    let healthy =
        Workflow::new("healthy").run(|input: Num, _ctx: WorkflowCtx| async move { Ok(input) });
    let broken = Workflow::new("broken").run(|input: Num, _ctx: WorkflowCtx| async move {
        if input.n > 0 {
            panic!("the body blew up at n={}", input.n);
        }
        Ok(input)
    });
    let registry = Registry::new().workflow(&healthy).workflow(&broken);
    let (engine, _clock) = on_manual_clock(registry);
    let broken_run = engine
        .start(&broken, &Num { n: 3 }, StartOptions::default())
        .await
        .expect("start")
        .run_id;
    let healthy_run = engine
        .start(&healthy, &Num { n: 1 }, StartOptions::default())
        .await
        .expect("start")
        .run_id;
    while engine.execute_ready().await.expect("execute") > 0 {}
    let run = engine.get_run(broken_run).await.expect("get").run;
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.error.expect("error");
    assert_eq!(error.kind, ErrorKind::Panic);
    assert!(error.message.contains("the body blew up at n=3"), "{error}");
    assert_eq!(
        engine.get_run(healthy_run).await.unwrap().run.status,
        RunStatus::Succeeded
    );
    engine.retry(broken_run).await.expect("retry");
    while engine.execute_ready().await.expect("execute") > 0 {}
    let run = engine.get_run(broken_run).await.expect("get").run;
    assert_eq!(
        (run.status, run.executions),
        (RunStatus::Failed, 2),
        "fails again, once"
    );
}

/// A run of `workflow` whose first step `flaky#0` was started `interrupted` times by workers
/// that died mid-attempt (the last of them leaving no outcome), as the store holds it.
async fn interrupted_run(engine: &Engine, clock: &ManualClock, interrupted: u32) -> RunId {
    let store = engine.store();
    let id = RunId::new();
    let dead = WorkerId("dead-worker".into());
    let now = clock.now_ms();
    let started = |attempt| Event::StepStarted {
        key: "flaky#0".into(),
        kind: StepKind::Action,
        slug: "flaky".into(),
        input: serde_json::json!({"n": 1}),
        attempt,
        call: Some(0),
        credentials: Vec::new(),
    };
    let mut history = Vec::new();
    for attempt in 1..interrupted {
        history.push(started(attempt));
        history.push(Event::StepAttemptFailed {
            key: "flaky#0".into(),
            attempt,
            error: cairn_core::ErrorInfo::new(ErrorKind::Interrupted, "worker stopped"),
            retry_at_ms: now,
        });
    }
    history.push(started(interrupted));
    store
        .create_run(NewRun {
            id,
            workflow: "interrupted".into(),
            input: serde_json::json!({"n": 1}),
            idempotency_key: None,
            parent_run_id: None,
            forked_from: None,
            trigger: "test".into(),
            owner: Default::default(),
            history,
            lease: Some(Lease {
                worker: dead,
                expires_at_ms: now + 1,
            }),
            now_ms: now,
        })
        .await
        .expect("create");
    clock.advance(Duration::from_millis(10));
    id
}

#[tokio::test]
async fn an_interrupted_attempt_is_recorded_as_such_and_not_counted_as_a_failure() {
    let calls = Arc::new(AtomicUsize::new(0));
    let flaky = adder("flaky", 1, calls.clone());
    let workflow = Workflow::new("interrupted").run(move |input: Num, _ctx: WorkflowCtx| {
        let flaky = flaky.clone();
        async move { Ok(flaky.run(input).await?) }
    });
    let (engine, clock) = on_manual_clock(Registry::new().workflow(&workflow));

    // Interrupted once, with Retry::none(): the interruption leaves the one attempt allowed.
    let id = interrupted_run(&engine, &clock, 1).await;
    while engine.execute_ready().await.expect("execute") > 0 {}
    let detail = engine.get_run(id).await.expect("get");
    assert_eq!(
        detail.run.status,
        RunStatus::Succeeded,
        "{:?}",
        detail.run.error
    );
    let step = &detail.steps[0];
    assert_eq!((step.attempts, step.status), (2, StepStatus::Completed));
    assert_eq!(step.attempt_errors.len(), 1);
    assert_eq!(step.attempt_errors[0].error.kind, ErrorKind::Interrupted);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Interrupted as often as the limit allows: a poison pill, given up on without running.
    let id = interrupted_run(&engine, &clock, 3).await;
    while engine.execute_ready().await.expect("execute") > 0 {}
    let run = engine.get_run(id).await.expect("get").run;
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.error.expect("error");
    assert_eq!(error.kind, ErrorKind::Recoveries);
    assert!(
        error.message.contains("flaky#0") && error.message.contains("interrupted 3 times"),
        "{error}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the poison pill did not run again"
    );
}
