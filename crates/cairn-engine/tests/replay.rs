//! Durable steps and replay: completed steps are recorded and never run again; retries of a
//! failed run, forks from a step and recorded nondeterminism replay correctly.

mod support;

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use cairn_core::{ErrorKind, RunStatus, StepKey, StepKind, StepStatus};
use cairn_engine::{
    Action, ActionCtx, ActionError, Registry, Retry, StartOptions, Workflow, WorkflowCtx,
};
use serde_json::json;
use support::{Num, engine, start};

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

#[tokio::test]
async fn steps_are_recorded_in_order_with_their_keys() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, b) = (adder("a", 1, calls.clone()), adder("b", 10, calls.clone()));
    let workflow = Workflow::new("chain").run(move |input: Num, _ctx: WorkflowCtx| {
        let (a, b) = (a.clone(), b.clone());
        async move {
            let x = a.run(input).await?;
            let y = b.run(x).await?;
            Ok(a.run(y).await?)
        }
    });
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let started = engine
        .start(&workflow, &Num { n: 1 }, StartOptions::default())
        .await
        .unwrap();
    let run = engine.execute(started.run_id).await.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.output, Some(json!({"n": 13})));
    let detail = engine.get_run(started.run_id).await.unwrap();
    let keys: Vec<_> = detail.steps.iter().map(|s| s.key.to_string()).collect();
    assert_eq!(keys, ["a#0", "b#0", "a#1"]);
    assert!(
        detail
            .steps
            .iter()
            .all(|s| s.status == StepStatus::Completed && s.attempts == 1)
    );
    assert_eq!(detail.steps[1].input, Some(json!({"n": 2})));
    assert_eq!(detail.steps[1].output, Some(json!({"n": 12})));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn retrying_a_failed_run_skips_completed_steps() {
    let first_calls = Arc::new(AtomicUsize::new(0));
    let first = adder("first", 1, first_calls.clone());
    let healthy = Arc::new(AtomicBool::new(false));
    let flaky = {
        let healthy = healthy.clone();
        Action::new("flaky")
            .retry(Retry::none())
            .run(move |input: Num, _ctx: ActionCtx| {
                let healthy = healthy.load(Ordering::SeqCst);
                async move {
                    if healthy {
                        Ok(input)
                    } else {
                        Err(ActionError::fatal("downstream said no"))
                    }
                }
            })
    };
    let workflow = Workflow::new("two").run(move |input: Num, _ctx: WorkflowCtx| {
        let (first, flaky) = (first.clone(), flaky.clone());
        async move { Ok(flaky.run(first.run(input).await?).await?) }
    });
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let id = start(&engine, &workflow, Num { n: 1 }).await;
    let run = engine.execute(id).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.error.unwrap();
    assert_eq!(error.step, Some(StepKey::from("flaky#0")));
    assert!(error.message.contains("downstream said no"), "{error}");

    healthy.store(true, Ordering::SeqCst);
    engine.retry(id).await.unwrap();
    let run = engine.execute(id).await.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.output, Some(json!({"n": 2})));
    assert_eq!(
        first_calls.load(Ordering::SeqCst),
        1,
        "the completed step must not run again"
    );
    let err = engine.retry(id).await.unwrap_err();
    assert!(
        err.to_string().contains("only failed or canceled runs"),
        "{err}"
    );
}

#[tokio::test]
async fn rerun_from_a_step_forks_a_new_run_and_keeps_earlier_steps() {
    let calls: Vec<_> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let (a, b, c) = (
        adder("a", 1, calls[0].clone()),
        adder("b", 2, calls[1].clone()),
        adder("c", 3, calls[2].clone()),
    );
    let workflow = Workflow::new("three").run(move |input: Num, _ctx: WorkflowCtx| {
        let (a, b, c) = (a.clone(), b.clone(), c.clone());
        async move { Ok(c.run(b.run(a.run(input).await?).await?).await?) }
    });
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let original = engine
        .start(&workflow, &Num { n: 0 }, StartOptions::default())
        .await
        .unwrap()
        .run_id;
    engine.execute(original).await.unwrap();
    let before = engine.get_run(original).await.unwrap();

    let fork = engine
        .rerun_from(original, &StepKey::from("b#0"), StartOptions::default())
        .await
        .unwrap();
    let run = engine.execute(fork).await.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.output, Some(json!({"n": 6})));
    assert_eq!(
        run.forked_from
            .as_ref()
            .map(|f| (f.run_id, f.step.to_string())),
        Some((original, "b#0".into()))
    );
    let counts: Vec<_> = calls.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    assert_eq!(
        counts,
        [1, 2, 2],
        "a is kept from the original; b and c run again"
    );
    let after = engine.get_run(original).await.unwrap();
    assert_eq!(
        after.events, before.events,
        "the original's history is never rewritten"
    );
    let err = engine
        .rerun_from(original, &StepKey::from("zzz#0"), StartOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("has no step zzz#0"), "{err}");
}

#[tokio::test]
async fn now_random_and_uuid_are_recorded_and_replayed() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let healthy = Arc::new(AtomicBool::new(false));
    let gate = {
        let healthy = healthy.clone();
        Action::new("gate")
            .retry(Retry::none())
            .run(move |input: Num, _ctx: ActionCtx| {
                let ok = healthy.load(Ordering::SeqCst);
                async move {
                    if ok {
                        Ok(input)
                    } else {
                        Err(ActionError::fatal("not yet"))
                    }
                }
            })
    };
    let workflow = {
        let seen = seen.clone();
        Workflow::new("values").run(move |input: Num, ctx: WorkflowCtx| {
            let (seen, gate) = (seen.clone(), gate.clone());
            async move {
                let values = (ctx.now(), ctx.random(), ctx.uuid());
                seen.lock().unwrap().push(values);
                Ok(gate.run(input).await?)
            }
        })
    };
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let id = start(&engine, &workflow, Num { n: 1 }).await;
    assert_eq!(engine.execute(id).await.unwrap().status, RunStatus::Failed);
    healthy.store(true, Ordering::SeqCst);
    engine.retry(id).await.unwrap();
    assert_eq!(
        engine.execute(id).await.unwrap().status,
        RunStatus::Succeeded
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], seen[1], "a replay sees the recorded values");
    let kinds: Vec<_> = engine
        .get_run(id)
        .await
        .unwrap()
        .steps
        .iter()
        .map(|s| s.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            StepKind::Now,
            StepKind::Random,
            StepKind::Uuid,
            StepKind::Action
        ]
    );
}

#[tokio::test]
async fn a_different_step_at_a_recorded_key_is_non_determinism() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (left, right) = (
        adder("left", 1, calls.clone()),
        adder("right", 2, calls.clone()),
    );
    let fail_once = Arc::new(AtomicBool::new(true));
    let workflow = {
        let fail_once = fail_once.clone();
        Workflow::new("branchy").run(move |input: Num, _ctx: WorkflowCtx| {
            let (left, right, fail) = (
                left.clone(),
                right.clone(),
                fail_once.swap(false, Ordering::SeqCst),
            );
            async move {
                // The "code change" between executions: the step at key "pick" changes slug.
                let picked = if fail {
                    left.run(input).key("pick").await?
                } else {
                    right.run(input).key("pick").await?
                };
                if fail {
                    return Err(cairn_engine::WorkflowError::new(
                        "first execution ends here",
                    ));
                }
                Ok(picked)
            }
        })
    };
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let id = start(&engine, &workflow, Num { n: 1 }).await;
    assert_eq!(engine.execute(id).await.unwrap().status, RunStatus::Failed);
    engine.retry(id).await.unwrap();
    let run = engine.execute(id).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.error.unwrap();
    assert_eq!(error.kind, ErrorKind::NonDeterminism);
    assert!(
        error.message.contains("action left") && error.message.contains("action right"),
        "{error}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the conflicting step did not run"
    );
}

#[tokio::test]
async fn starting_with_a_used_idempotency_key_returns_the_same_run() {
    let workflow =
        Workflow::new("idem").run(|input: Num, _ctx: WorkflowCtx| async move { Ok(input) });
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let options = || StartOptions {
        idempotency_key: Some("order-42".into()),
        ..StartOptions::default()
    };
    let first = engine
        .start(&workflow, &Num { n: 1 }, options())
        .await
        .unwrap();
    let second = engine
        .start(&workflow, &Num { n: 2 }, options())
        .await
        .unwrap();
    assert!(first.created && !second.created);
    assert_eq!(first.run_id, second.run_id);
    assert_eq!(
        engine.list_runs(&Default::default()).await.unwrap().len(),
        1
    );
}
