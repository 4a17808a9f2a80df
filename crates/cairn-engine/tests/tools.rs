//! Actions seen as tools and as model calls: `ActionBuilder::kind` records an action's calls
//! as `llm` steps that replay like actions; `run_json` and the `Tool` trait call actions of
//! different types with JSON, checked against their schemas.

mod support;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use cairn_core::{ErrorKind, RunStatus, StepKind, StepStatus};
use cairn_engine::{
    Action, ActionCtx, Registry, Retry, Tool, Workflow, WorkflowCtx, WorkflowError,
    validate_payload,
};
use serde_json::{Value, json};
use support::{Empty, Num, Text, engine, start};

/// An action of kind `llm` that counts its executions and answers `n + 1`.
fn model(calls: Arc<AtomicUsize>) -> Action<Num, Num> {
    Action::new("model")
        .kind(StepKind::Llm)
        .retry(Retry::none())
        .run(move |input: Num, _ctx: ActionCtx| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(Num { n: input.n + 1 })
            }
        })
}

#[tokio::test]
async fn an_llm_kind_action_is_recorded_as_llm_and_replayed_on_retry() {
    let calls = Arc::new(AtomicUsize::new(0));
    let action = model(calls.clone());
    let fail_once = Arc::new(AtomicUsize::new(0));
    let workflow = Workflow::new("asks").run({
        let fail_once = fail_once.clone();
        move |input: Num, _ctx: WorkflowCtx| {
            let (action, fail_once) = (action.clone(), fail_once.clone());
            async move {
                let answer = action.run(input).await?;
                if fail_once.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err(WorkflowError::new("a later step failed"));
                }
                Ok(answer)
            }
        }
    });
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let id = start(&engine, &workflow, Num { n: 1 }).await;
    assert_eq!(engine.execute(id).await.unwrap().status, RunStatus::Failed);
    engine.retry(id).await.unwrap();
    let run = engine.execute(id).await.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.output, Some(json!({"n": 2})));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "replayed, not called again"
    );
    let detail = engine.get_run(id).await.unwrap();
    let step = &detail.steps[0];
    assert_eq!(
        (step.kind, step.key.to_string()),
        (StepKind::Llm, "model#0".into())
    );
    assert_eq!(step.status, StepStatus::Completed);
}

#[tokio::test]
async fn numbered_keys_count_per_family_and_replay_on_retry() {
    let calls = Arc::new(AtomicUsize::new(0));
    let action = model(calls.clone());
    let executions = Arc::new(AtomicUsize::new(0));
    let workflow = Workflow::new("turns").run({
        let executions = executions.clone();
        move |input: Num, _ctx: WorkflowCtx| {
            let (action, executions) = (action.clone(), executions.clone());
            async move {
                let first = action.run(input).numbered_key("agent:x/model").await?;
                let second = action.run(first).numbered_key("agent:x/model").await?;
                if executions.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err(WorkflowError::new("a later step failed"));
                }
                Ok(action.run(second).await?)
            }
        }
    });
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let id = start(&engine, &workflow, Num { n: 0 }).await;
    assert_eq!(engine.execute(id).await.unwrap().status, RunStatus::Failed);
    engine.retry(id).await.unwrap();
    let run = engine.execute(id).await.unwrap();
    assert_eq!(run.output, Some(json!({"n": 3})), "{:?}", run.error);
    assert_eq!(calls.load(Ordering::SeqCst), 3, "the first two replayed");
    let detail = engine.get_run(id).await.unwrap();
    let keys: Vec<String> = detail.steps.iter().map(|s| s.key.to_string()).collect();
    assert_eq!(keys, ["agent:x/model#0", "agent:x/model#1", "model#2"]);
}

#[tokio::test]
async fn actions_of_different_types_are_called_as_tools_with_checked_json() {
    let calls = Arc::new(AtomicUsize::new(0));
    let shout: Action<Text, Text> = Action::new("shout").description("Upper-cases a text").run(
        |input: Text, _ctx: ActionCtx| async move {
            Ok(Text {
                text: input.text.to_uppercase(),
            })
        },
    );
    let tools: Vec<Arc<dyn Tool>> = vec![Arc::new(model(calls.clone())), Arc::new(shout)];
    assert_eq!(tools[1].info().slug, "shout");
    assert_eq!(tools[1].info().description, "Upper-cases a text");
    assert_eq!(tools[1].info().input_schema["required"], json!(["text"]));
    let workflow = Workflow::new("tools").run(move |_input: Empty, _ctx: WorkflowCtx| {
        let tools = tools.clone();
        async move {
            let number = tools[0].run_json(json!({"n": 41})).await?;
            let text = tools[1].run_json(json!({"text": "hi"})).await?;
            let refused = tools[1].run_json(json!({"txt": 1})).await.unwrap_err();
            Ok(json!({"number": number, "text": text, "refused": refused.to_string()}))
        }
    });
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let id = start(&engine, &workflow, Empty {}).await;
    let run = engine.execute(id).await.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    let output: Value = run.output.unwrap();
    assert_eq!(output["number"], json!({"n": 42}));
    assert_eq!(output["text"], json!({"text": "HI"}));
    let refused = output["refused"].as_str().unwrap();
    assert!(
        refused.contains("does not match the schema of action shout") && refused.contains("text"),
        "{refused}"
    );
    let detail = engine.get_run(id).await.unwrap();
    let kinds: Vec<_> = detail.steps.iter().map(|s| (s.kind, s.status)).collect();
    assert_eq!(
        kinds,
        [
            (StepKind::Llm, StepStatus::Completed),
            (StepKind::Action, StepStatus::Completed),
            (StepKind::Action, StepStatus::Failed),
        ]
    );
    let error = detail.steps[2].error.as_ref().unwrap();
    assert_eq!(error.kind, ErrorKind::InvalidInput);
}

static DOUBLE: std::sync::LazyLock<Action<Num, Num>> = std::sync::LazyLock::new(|| {
    Action::new("double")
        .run(|input: Num, _ctx: ActionCtx| async move { Ok(Num { n: input.n * 2 }) })
});

#[test]
fn an_action_in_a_static_is_a_tool_as_it_is() {
    let tools: &[&'static dyn Tool] = &[&DOUBLE];
    assert_eq!(tools[0].info().slug, "double");
}

#[test]
fn payloads_are_validated_against_a_type_naming_the_paths() {
    assert!(validate_payload::<Num>(&json!({"n": 1})).is_ok());
    let violations = validate_payload::<Num>(&json!({"n": "one"})).unwrap_err();
    assert_eq!(violations.0[0].path, "/n");
}

#[test]
fn an_action_cannot_be_given_a_kind_that_does_no_work() {
    let action: Action<Num, Num> = Action::new("napper")
        .kind(StepKind::Sleep)
        .run(|input: Num, _ctx: ActionCtx| async move { Ok(input) });
    let err = Registry::new().action(&action).check().unwrap_err();
    assert!(err.to_string().contains("kind sleep"), "{err}");
}
