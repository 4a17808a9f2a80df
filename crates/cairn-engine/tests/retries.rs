//! Retry policies, fatal errors, timeouts and how step errors reach the workflow.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use cairn_core::{ErrorKind, RunStatus, StepKey, StepStatus};
use cairn_engine::{Action, ActionCtx, ActionError, Registry, Retry, Workflow, WorkflowCtx};
use serde_json::json;
use support::{Num, engine, start};

fn fast(attempts: u32) -> Retry {
    Retry::default()
        .max_attempts(attempts)
        .initial_backoff(Duration::from_millis(5))
        .jitter(0.0)
}

/// Fails with a retryable error until its `failures` are used up.
fn flaky(failures: u32, policy: Retry, calls: Arc<AtomicU32>) -> Action<Num, Num> {
    Action::new("flaky")
        .retry(policy)
        .run(move |input: Num, ctx: ActionCtx| {
            let calls = calls.clone();
            async move {
                let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
                assert_eq!(ctx.attempt(), call, "the attempt number counts attempts");
                if call <= failures {
                    Err(ActionError::retryable(format!("hiccup {call}")))
                } else {
                    Ok(input)
                }
            }
        })
}

fn single_step(action: Action<Num, Num>) -> Workflow<Num, Num> {
    Workflow::new("single").run(move |input: Num, _ctx: WorkflowCtx| {
        let action = action.clone();
        async move { Ok(action.run(input).await?) }
    })
}

#[tokio::test]
async fn retryable_errors_are_retried_and_every_attempt_is_recorded() {
    let calls = Arc::new(AtomicU32::new(0));
    let workflow = single_step(flaky(2, fast(3), calls.clone()));
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let id = start(&engine, &workflow, Num { n: 5 }).await;
    let run = engine.execute(id).await.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    let step = &engine.get_run(id).await.unwrap().steps[0];
    assert_eq!(step.attempts, 3);
    let errors: Vec<_> = step
        .attempt_errors
        .iter()
        .map(|e| (e.attempt, e.error.message.clone()))
        .collect();
    assert_eq!(
        errors,
        [(1, "hiccup 1".to_owned()), (2, "hiccup 2".to_owned())]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn exhausted_retries_fail_the_run_with_the_step_recorded() {
    let calls = Arc::new(AtomicU32::new(0));
    let workflow = single_step(flaky(10, fast(2), calls.clone()));
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let id = start(&engine, &workflow, Num { n: 5 }).await;
    let run = engine.execute(id).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.error.unwrap();
    assert_eq!(
        (error.kind, error.step),
        (ErrorKind::Action, Some(StepKey::from("flaky#0")))
    );
    assert_eq!(error.message, "hiccup 2");
    let step = &engine.get_run(id).await.unwrap().steps[0];
    assert_eq!((step.status, step.attempts), (StepStatus::Failed, 2));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn fatal_errors_are_not_retried() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let action = Action::new("fatal")
        .retry(fast(5))
        .run(move |_input: Num, _ctx: ActionCtx| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { Err::<Num, _>(ActionError::fatal("card declined")) }
        });
    let workflow = single_step(action);
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let id = start(&engine, &workflow, Num { n: 1 }).await;
    assert_eq!(engine.execute(id).await.unwrap().status, RunStatus::Failed);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_workflow_may_handle_a_failed_step() {
    let calls = Arc::new(AtomicU32::new(0));
    let action = flaky(10, fast(1), calls);
    let workflow = Workflow::new("fallback").run(move |input: Num, _ctx: WorkflowCtx| {
        let action = action.clone();
        async move {
            match action.run(input).await {
                Ok(out) => Ok(out),
                Err(err) => {
                    assert_eq!(err.step(), Some(&StepKey::from("flaky#0")));
                    Ok(Num { n: -1 })
                }
            }
        }
    });
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let id = start(&engine, &workflow, Num { n: 1 }).await;
    let run = engine.execute(id).await.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.output, Some(json!({"n": -1})));
}

#[tokio::test]
async fn a_slow_attempt_times_out_and_sees_its_cancellation() {
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let flag = saw_cancel.clone();
    let action = Action::new("slow")
        .retry(Retry::none())
        .timeout(Duration::from_millis(50))
        .run(move |input: Num, ctx: ActionCtx| {
            let flag = flag.clone();
            async move {
                ctx.cancellation().cancelled().await;
                flag.store(true, Ordering::SeqCst);
                Ok(input)
            }
        });
    let workflow = single_step(action);
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let id = start(&engine, &workflow, Num { n: 1 }).await;
    let run = engine.execute(id).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.error.unwrap();
    assert_eq!(error.kind, ErrorKind::Timeout);
    assert!(error.message.contains("timed out"), "{error}");
    assert!(
        support::eventually(Duration::from_secs(5), async || saw_cancel
            .load(Ordering::SeqCst))
        .await
    );
}

#[tokio::test]
async fn a_panicking_action_is_a_retryable_failure() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let action = Action::new("panicky")
        .retry(fast(2))
        .run(move |input: Num, _ctx: ActionCtx| {
            let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                assert!(!first, "boom on the first attempt");
                Ok(input)
            }
        });
    let workflow = single_step(action);
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let id = start(&engine, &workflow, Num { n: 1 }).await;
    assert_eq!(
        engine.execute(id).await.unwrap().status,
        RunStatus::Succeeded
    );
    let step = &engine.get_run(id).await.unwrap().steps[0];
    assert!(
        step.attempt_errors[0].error.message.contains("panicked"),
        "{:?}",
        step.attempt_errors
    );
}
