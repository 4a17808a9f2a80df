//! `TestEnv::mock_llm` (feature `llm`): an agent workflow and a structured `prompt_llm_as`
//! run offline against a model scripted by turn; every turn and tool call is a recorded step.

use std::sync::{
    LazyLock,
    atomic::{AtomicUsize, Ordering},
};

use cairn::llm::{Agent, LlmOptions, prompt_llm_as};
use cairn::testing::{ModelTurn, TestEnv};
use cairn::{Action, ActionCtx, StepKind, Workflow, WorkflowCtx};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// How many times the lookup action really ran.
static LOOKUPS: AtomicUsize = AtomicUsize::new(0);

static LOOKUP: LazyLock<Action<String, String>> = LazyLock::new(|| {
    Action::new("lookup").run(|domain: String, _ctx: ActionCtx| async move {
        LOOKUPS.fetch_add(1, Ordering::SeqCst);
        Ok(format!("{domain} sells anvils"))
    })
});

static RESEARCH: LazyLock<Workflow<String, String>> = LazyLock::new(|| {
    Workflow::new("research").run(|domain: String, _ctx: WorkflowCtx| async move {
        let agent = Agent::new("researcher")
            .model("openai/any")
            .tools(&[&LOOKUP]);
        Ok(agent.prompt(format!("What does {domain} do?")).await?)
    })
});

#[tokio::test]
async fn an_agent_calls_tools_then_answers_against_a_scripted_model() {
    let env = TestEnv::new()
        .mock_llm([
            ModelTurn::tool_call("lookup", "acme.com")
                .and_call("lookup", "acme.org")
                .tokens(12, 3),
            ModelTurn::text("Acme sells anvils.").tokens(40, 6),
        ])
        .register(&RESEARCH);
    let outcome = env.execute_workflow(&RESEARCH, "acme.com".to_owned()).await;
    assert_eq!(outcome.completed().as_deref(), Some("Acme sells anvils."));
    assert_eq!(
        LOOKUPS.load(Ordering::SeqCst),
        2,
        "both tool calls ran the action"
    );

    let steps = env.steps(env.last_run().expect("a run")).await;
    let keys: Vec<String> = steps.iter().map(|s| s.key.to_string()).collect();
    assert_eq!(
        keys,
        [
            "agent:researcher/model#0",
            "agent:researcher/tool:lookup#0",
            "agent:researcher/tool:lookup#1",
            "agent:researcher/model#1"
        ]
    );
    assert_eq!(steps[0].kind, StepKind::Llm);
    assert_eq!(steps[1].kind, StepKind::Action);
    let first = steps[0].output.as_ref().expect("the first turn's answer");
    assert_eq!(first["tool_calls"][1]["arguments"], json!("acme.org"));
    assert_eq!(first["input_tokens"], json!(12));
    assert_eq!(steps[2].output, Some(json!("acme.org sells anvils")));
    // The final turn saw both tool results, answering the scripted call ids.
    let last_input = steps[3].input.as_ref().expect("the last turn's request");
    let tool_messages: Vec<_> = last_input["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| (m["call_id"].clone(), m["content"].clone()))
        .collect();
    assert_eq!(
        tool_messages,
        [
            (json!("call-0-0"), json!("\"acme.com sells anvils\"")),
            (json!("call-0-1"), json!("\"acme.org sells anvils\""))
        ]
    );
}

#[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Verdict {
    qualified: bool,
    reason: String,
}

static QUALIFY: LazyLock<Workflow<String, Verdict>> = LazyLock::new(|| {
    Workflow::new("qualify").run(|lead: String, _ctx: WorkflowCtx| async move {
        Ok(
            prompt_llm_as::<Verdict>(format!("Qualify {lead}"), LlmOptions::new("openai/any"))
                .await?,
        )
    })
});

#[tokio::test]
async fn a_structured_answer_is_scripted_as_json_and_a_bad_one_is_re_asked() {
    let env = TestEnv::new()
        .mock_llm([
            ModelTurn::structured(json!({ "qualified": "yes" })),
            ModelTurn::structured(Verdict {
                qualified: true,
                reason: "big budget".into(),
            }),
        ])
        .register(&QUALIFY);
    let outcome = env.execute_workflow(&QUALIFY, "Ada".to_owned()).await;
    assert_eq!(
        outcome.completed(),
        Some(Verdict {
            qualified: true,
            reason: "big budget".into()
        })
    );
    let steps = env.steps(env.last_run().expect("a run")).await;
    assert_eq!(
        steps.len(),
        2,
        "the invalid answer was re-asked once: {steps:?}"
    );
    assert!(steps.iter().all(|s| s.kind == StepKind::Llm));
}
