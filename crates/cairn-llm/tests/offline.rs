//! An agent tested offline with `cairn::testing`: the `llm` action is mocked by turn like any
//! action (`mock_sequence(&LLM, ..)`), so no provider, key or server is needed.

use std::sync::LazyLock;

use cairn::testing::TestEnv;
use cairn_engine::{Action, ActionCtx, Workflow, WorkflowCtx};
use cairn_llm::{Agent, LLM, LlmResponse, ToolCall};
use serde_json::json;

static LOOKUP: LazyLock<Action<String, String>> = LazyLock::new(|| {
    Action::new("lookup")
        .run(|domain: String, _ctx: ActionCtx| async move { Ok(format!("{domain} sells anvils")) })
});

/// A scripted answer: `text`, calling `tool_calls`.
fn turn(text: &str, tool_calls: Vec<ToolCall>) -> LlmResponse {
    LlmResponse {
        text: text.to_owned(),
        tool_calls,
        model: "scripted".into(),
        input_tokens: 10,
        output_tokens: 5,
        finish_reason: "stop".into(),
        latency_ms: 0,
    }
}

#[tokio::test]
async fn an_agent_runs_against_a_scripted_model() {
    let workflow = Workflow::new("research").run(|domain: String, _ctx: WorkflowCtx| async move {
        let agent = Agent::new("researcher")
            .model("openai/any")
            .tools(&[&LOOKUP]);
        Ok(agent.prompt(format!("What does {domain} do?")).await?)
    });
    let call = ToolCall {
        id: "c1".into(),
        name: "lookup".into(),
        arguments: json!("acme.com"),
    };
    let env = TestEnv::new()
        .mock_sequence(
            &LLM,
            vec![
                Ok(turn("", vec![call])),
                Ok(turn("Acme sells anvils.", vec![])),
            ],
        )
        .register(&workflow);
    let outcome = env.execute_workflow(&workflow, "acme.com".to_owned()).await;
    assert_eq!(outcome.completed().as_deref(), Some("Acme sells anvils."));
    let run = env.last_run().expect("a run");
    let steps = env.steps(run).await;
    let keys: Vec<String> = steps.iter().map(|s| s.key.to_string()).collect();
    assert_eq!(
        keys,
        [
            "agent:researcher/model#0",
            "agent:researcher/tool:lookup#0",
            "agent:researcher/model#1"
        ]
    );
    assert_eq!(steps[1].output, Some(json!("acme.com sells anvils")));
}
