//! Schemas, payload limits and misuse: bad input gets a clear error and loses nothing.

mod support;

use std::sync::LazyLock;

use cairn_core::{ErrorKind, RunStatus};
use cairn_engine::{
    Action, ActionCtx, EngineConfig, EngineError, Registry, Retry, StartOptions, Workflow,
    WorkflowCtx,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use support::{Num, Text, engine, engine_with, start};

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
struct Signup {
    name: String,
    #[schemars(email)]
    email: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
struct Bounded {
    #[schemars(range(min = 0, max = 10))]
    n: i64,
}

fn echo_signup() -> Workflow<Signup, Signup> {
    Workflow::new("signup").run(|input: Signup, _ctx: WorkflowCtx| async move { Ok(input) })
}

#[tokio::test]
async fn a_bad_run_input_names_the_path_and_rule_and_creates_no_run() {
    let workflow = echo_signup();
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let err = engine
        .start_json(
            "signup",
            json!({"name": "Ada", "email": "x"}),
            StartOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::InvalidInput { .. }));
    assert_eq!(
        err.to_string(),
        r#"input of workflow signup does not match its schema: /email: "x" is not a "email""#
    );
    assert!(
        engine
            .list_runs(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );

    let err = engine
        .start_json("nope", json!({}), StartOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown workflow \"nope\"") && err.to_string().contains("signup"),
        "{err}"
    );
}

#[tokio::test]
async fn action_output_is_validated_before_it_is_recorded() {
    let action = Action::new("too-big")
        .retry(Retry::none())
        .run(|_input: Num, _ctx: ActionCtx| async move { Ok(Bounded { n: 99 }) });
    let workflow = Workflow::new("outputs").run(move |input: Num, _ctx: WorkflowCtx| {
        let action = action.clone();
        async move {
            Ok(Num {
                n: action.run(input).await?.n,
            })
        }
    });
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let id = start(&engine, &workflow, Num { n: 1 }).await;
    let run = engine.execute(id).await.unwrap();
    let error = run.error.unwrap();
    assert_eq!(error.kind, ErrorKind::InvalidOutput);
    assert!(
        error
            .message
            .contains("/n: 99 is greater than the maximum of 10"),
        "{error}"
    );
    let step = &engine.get_run(id).await.unwrap().steps[0];
    assert_eq!(step.output, None, "an invalid output is never recorded");
}

#[tokio::test]
async fn action_input_is_validated_before_the_action_runs() {
    let action = Action::new("bounded").run(|input: Bounded, _ctx: ActionCtx| async move {
        panic!("must not run with {input:?}")
    });
    let workflow = Workflow::new("inputs").run(move |_input: Num, _ctx: WorkflowCtx| {
        let action = action.clone();
        async move {
            let out: Bounded = action.run(Bounded { n: -5 }).await?;
            Ok(Num { n: out.n })
        }
    });
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let id = start(&engine, &workflow, Num { n: 1 }).await;
    let error = engine.execute(id).await.unwrap().error.unwrap();
    assert_eq!(error.kind, ErrorKind::InvalidInput);
    assert!(
        error
            .message
            .contains("/n: -5 is less than the minimum of 0"),
        "{error}"
    );
}

#[tokio::test]
async fn workflow_output_is_validated_at_the_end() {
    let workflow = Workflow::new("bad-end")
        .run(|_input: Num, _ctx: WorkflowCtx| async move { Ok(Bounded { n: 11 }) });
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let id = start(&engine, &workflow, Num { n: 1 }).await;
    let run = engine.execute(id).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert!(
        run.error
            .unwrap()
            .message
            .contains("/n: 11 is greater than the maximum of 10")
    );
}

#[tokio::test]
async fn payloads_over_the_limit_are_rejected_with_the_limit_named() {
    let action = Action::new("grow").run(|input: Text, _ctx: ActionCtx| async move {
        Ok(Text {
            text: input.text.repeat(100),
        })
    });
    let workflow = Workflow::new("big").run(move |input: Text, _ctx: WorkflowCtx| {
        let action = action.clone();
        async move { Ok(action.run(input).await?) }
    });
    let mut config = EngineConfig::default();
    config.limits.max_payload_bytes = 1_000;
    let (engine, _dir) = engine_with(Registry::new().workflow(&workflow), config);
    let err = engine
        .start(
            &workflow,
            &Text {
                text: "x".repeat(2_000),
            },
            StartOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("over the payload limit of 1000 bytes"),
        "{err}"
    );

    let id = engine
        .start(
            &workflow,
            &Text {
                text: "x".repeat(50),
            },
            StartOptions::default(),
        )
        .await
        .unwrap()
        .run_id;
    let error = engine.execute(id).await.unwrap().error.unwrap();
    assert_eq!(error.kind, ErrorKind::PayloadTooLarge);
    assert!(error.message.contains("output of step grow#0"), "{error}");
}

static INNER: LazyLock<Action<Num, Num>> = LazyLock::new(|| {
    Action::new("inner").run(|input: Num, _ctx: ActionCtx| async move { Ok(input) })
});

#[tokio::test]
async fn an_action_cannot_call_an_action() {
    let outer = Action::new("outer")
        .retry(Retry::none())
        .run(|input: Num, _ctx: ActionCtx| async move { Ok(INNER.run(input).await?) });
    let workflow = Workflow::new("nested").run(move |input: Num, _ctx: WorkflowCtx| {
        let outer = outer.clone();
        async move { Ok(outer.run(input).await?) }
    });
    let (engine, _dir) = engine(Registry::new().workflow(&workflow));
    let id = start(&engine, &workflow, Num { n: 1 }).await;
    let error = engine.execute(id).await.unwrap().error.unwrap();
    assert!(
        error.message.contains("called from inside action `outer`"),
        "{error}"
    );
}

#[tokio::test]
async fn calling_an_action_outside_a_workflow_fails_clearly() {
    let err = INNER.run(Num { n: 1 }).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Misuse);
    assert!(err.message().contains("outside a workflow"), "{err}");
}
