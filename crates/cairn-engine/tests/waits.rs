//! Durable sleeps and hooks: parking, waking, resuming, timing out, canceling while parked.

mod support;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use cairn_core::{ErrorKind, RunStatus, StepKind, StepStatus};
use cairn_engine::{
    Action, ActionCtx, Engine, EngineConfig, EngineError, HookOptions, Registry, Workflow,
    WorkflowCtx, WorkflowError,
};
use cairn_store::{HookFilter, HookState, RunId, StoreError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use support::{Num, Text, engine_with, spawn_execute, start, wait_for_status};

/// Parks every wait longer than 20 ms.
fn parking() -> EngineConfig {
    EngineConfig {
        in_process_wait_limit: Duration::from_millis(20),
        ..EngineConfig::default()
    }
}

fn counter(slug: &str, calls: Arc<AtomicUsize>) -> Action<Num, Num> {
    Action::new(slug).run(move |input: Num, _ctx: ActionCtx| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { Ok(input) }
    })
}

async fn status(engine: &Engine, id: RunId) -> RunStatus {
    engine.get_run(id).await.unwrap().run.status
}

#[tokio::test]
async fn a_long_sleep_parks_the_run_and_wakes_it_without_repeating_steps() {
    let calls = Arc::new(AtomicUsize::new(0));
    let before = counter("before", calls.clone());
    let workflow = Workflow::new("sleepy").run(move |input: Num, ctx: WorkflowCtx| {
        let before = before.clone();
        async move {
            let out = before.run(input).await?;
            ctx.sleep("300ms").await?;
            Ok(out)
        }
    });
    let (engine, _dir) = engine_with(Registry::new().workflow(&workflow), parking());
    let id = start(&engine, &workflow, Num { n: 7 }).await;
    let started = Instant::now();
    let execution = spawn_execute(&engine, id);
    wait_for_status(&engine, id, RunStatus::Sleeping).await;
    let parked = engine.get_run(id).await.unwrap();
    assert_eq!(parked.run.lease_owner, None, "a parked run holds no lease");
    assert_eq!(parked.steps[1].status, StepStatus::Sleeping);
    let run = execution.await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(run.executions, 2, "parked once, woken once");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the step before the sleep ran once"
    );
    let steps = engine.get_run(id).await.unwrap().steps;
    assert_eq!(
        (steps[1].kind, steps[1].status),
        (StepKind::Sleep, StepStatus::Completed)
    );
}

#[tokio::test]
async fn a_short_sleep_is_waited_in_process() {
    let workflow = Workflow::new("nap").run(|input: Num, ctx: WorkflowCtx| async move {
        ctx.sleep(Duration::from_millis(50)).await?;
        Ok(input)
    });
    let (engine, _dir) = engine_with(Registry::new().workflow(&workflow), EngineConfig::default());
    let id = start(&engine, &workflow, Num { n: 1 }).await;
    let run = engine.execute(id).await.unwrap();
    assert_eq!((run.status, run.executions), (RunStatus::Succeeded, 1));
}

#[tokio::test]
async fn a_malformed_duration_is_a_clear_step_error() {
    let workflow = Workflow::new("bad-nap").run(|input: Num, ctx: WorkflowCtx| async move {
        ctx.sleep("1h30").await?;
        Ok(input)
    });
    let (engine, _dir) = engine_with(Registry::new().workflow(&workflow), EngineConfig::default());
    let id = start(&engine, &workflow, Num { n: 1 }).await;
    let error = engine.execute(id).await.unwrap().error.unwrap();
    assert_eq!(error.kind, ErrorKind::Misuse);
    assert!(
        error.message.contains("invalid duration \"1h30\""),
        "{error}"
    );
}

#[tokio::test]
async fn canceling_a_sleeping_run_ends_it() {
    let workflow = Workflow::new("long-nap").run(|input: Num, ctx: WorkflowCtx| async move {
        ctx.sleep("1d").await?;
        Ok(input)
    });
    let (engine, _dir) = engine_with(Registry::new().workflow(&workflow), parking());
    let id = start(&engine, &workflow, Num { n: 1 }).await;
    let execution = spawn_execute(&engine, id);
    wait_for_status(&engine, id, RunStatus::Sleeping).await;
    assert_eq!(
        engine.cancel(id, "not worth the wait").await.unwrap(),
        RunStatus::Sleeping
    );
    assert_eq!(
        execution.await.unwrap().unwrap().status,
        RunStatus::Canceled
    );
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Approval {
    approved: bool,
    #[schemars(length(min = 1))]
    by: String,
}

/// A workflow that hands its hook's token to an action (as a Slack message would), then waits.
fn approval_workflow(tokens: Arc<Mutex<Vec<String>>>, options: HookOptions) -> Workflow<Num, Text> {
    let notify = Action::new("notify").run(move |input: Text, _ctx: ActionCtx| {
        tokens.lock().unwrap().push(input.text.clone());
        async move { Ok(input) }
    });
    Workflow::new("approval").run(move |_input: Num, ctx: WorkflowCtx| {
        let (notify, options) = (notify.clone(), options.clone());
        async move {
            let hook = ctx.hook_with::<Approval>(options);
            assert!(
                hook.resume_url()
                    .ends_with(&format!("/hooks/{}", hook.token()))
            );
            notify
                .run(Text {
                    text: hook.token().to_owned(),
                })
                .await?;
            match hook.await {
                Ok(approval) => Ok(Text {
                    text: format!("approved={} by {}", approval.approved, approval.by),
                }),
                Err(err) if err.kind() == ErrorKind::Timeout => Ok(Text {
                    text: "timed out".into(),
                }),
                Err(err) => Err(WorkflowError::from(err)),
            }
        }
    })
}

#[tokio::test]
async fn a_hook_parks_the_run_until_resumed_with_a_valid_payload_once() {
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let workflow = approval_workflow(tokens.clone(), HookOptions::new());
    let (engine, _dir) = engine_with(Registry::new().workflow(&workflow), parking());
    let id = start(&engine, &workflow, Num { n: 1 }).await;
    let execution = spawn_execute(&engine, id);
    wait_for_status(&engine, id, RunStatus::Waiting).await;
    let token = tokens.lock().unwrap()[0].clone();
    assert!(
        token.len() >= 32,
        "the token carries at least 128 bits: {token}"
    );
    let pending = engine
        .list_hooks(&HookFilter {
            run_id: Some(id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((pending.len(), pending[0].state), (1, HookState::Pending));

    let err = engine
        .resume_hook(&token, json!({"approved": "yes", "by": ""}))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::InvalidPayload { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("/approved") && text.contains("/by"),
        "every violation is named: {text}"
    );
    assert_eq!(
        status(&engine, id).await,
        RunStatus::Waiting,
        "a bad payload leaves the run waiting"
    );
    let err = engine.resume_hook("hk_nope", json!({})).await.unwrap_err();
    assert!(
        matches!(err, EngineError::Store(StoreError::HookNotFound)),
        "{err}"
    );

    engine
        .resume_hook(&token, json!({"approved": true, "by": "ada"}))
        .await
        .unwrap();
    let second = engine
        .resume_hook(&token, json!({"approved": false, "by": "bob"}))
        .await
        .unwrap_err();
    assert!(second.to_string().contains("is resumed"), "{second}");
    let run = execution.await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.output, Some(json!({"text": "approved=true by ada"})));
    assert_eq!(
        tokens.lock().unwrap().len(),
        1,
        "the notify step ran once; the token stayed the same"
    );
}

#[tokio::test]
async fn a_hook_that_times_out_returns_a_timeout_error_the_workflow_can_handle() {
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let options = HookOptions::new()
        .key("approval")
        .timeout(Duration::from_millis(200));
    let workflow = approval_workflow(tokens.clone(), options);
    let (engine, _dir) = engine_with(Registry::new().workflow(&workflow), parking());
    let id = start(&engine, &workflow, Num { n: 1 }).await;
    let run = engine.execute(id).await.unwrap();
    assert_eq!(run.output, Some(json!({"text": "timed out"})));
    let token = tokens.lock().unwrap()[0].clone();
    assert_eq!(
        engine.get_hook(&token).await.unwrap().state,
        HookState::TimedOut
    );
    let late = engine
        .resume_hook(&token, json!({"approved": true, "by": "ada"}))
        .await
        .unwrap_err();
    assert!(late.to_string().contains("timed out"), "{late}");
    let steps = engine.get_run(id).await.unwrap().steps;
    let hook = steps.iter().find(|s| s.key.as_str() == "approval").unwrap();
    assert_eq!(
        (hook.kind, hook.status),
        (StepKind::Hook, StepStatus::Failed)
    );
}
