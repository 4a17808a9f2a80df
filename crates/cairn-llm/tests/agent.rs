//! Agents through real workflows on an engine (SQLite), against a local server playing the
//! providers' wire formats, scripted to call tools and then answer: the requests (tools and
//! their schemas, tool results), the steps and their keys, a bad tool call handed back to the
//! model, a failed run retried without repeating any recorded model or tool call, limits.

mod support;

use std::sync::{
    LazyLock,
    atomic::{AtomicUsize, Ordering},
};

use cairn_core::{RunStatus, StepStatus};
use cairn_engine::{Action, ActionCtx, Workflow, WorkflowCtx};
use cairn_llm::Agent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use support::env;
use wiremock::{
    Mock, MockServer, Request, ResponseTemplate,
    matchers::{body_partial_json, method, path},
};

/// A company to look up.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
struct Lookup {
    /// Its web domain.
    domain: String,
}

/// What is known of it.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
struct Company {
    name: String,
    employees: u32,
}

/// How many times the lookup action ran for `acme.com` (one test's domain: tests run in
/// parallel).
static ACME_LOOKUPS: AtomicUsize = AtomicUsize::new(0);

static LOOKUP_COMPANY: LazyLock<Action<Lookup, Company>> = LazyLock::new(|| {
    Action::new("lookup-company")
        .description("Looks up a company by its domain")
        .run(|input: Lookup, _ctx: ActionCtx| async move {
            if input.domain == "acme.com" {
                ACME_LOOKUPS.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Company {
                name: input.domain.trim_end_matches(".com").to_uppercase(),
                employees: 12,
            })
        })
});

/// A Chat Completions answer that calls tools `calls` (`(id, name, arguments)`).
fn tool_calls(calls: &[(&str, &str, &str)]) -> ResponseTemplate {
    let calls: Vec<Value> = calls
        .iter()
        .map(|(id, name, arguments)| {
            json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
        })
        .collect();
    ResponseTemplate::new(200).set_body_json(json!({
        "model": "gpt-test", "usage": {"prompt_tokens": 40, "completion_tokens": 10},
        "choices": [{"finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": null, "tool_calls": calls}}]
    }))
}

/// A Chat Completions answer with `text`.
fn final_answer(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "model": "gpt-test", "usage": {"prompt_tokens": 80, "completion_tokens": 6},
        "choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": text}}]
    }))
}

/// The bodies of the requests `server` received.
async fn bodies(server: &MockServer) -> Vec<Value> {
    let requests: Vec<Request> = server.received_requests().await.expect("recorded requests");
    requests
        .iter()
        .map(|r| r.body_json().expect("JSON"))
        .collect()
}

fn researcher() -> Agent {
    Agent::new("researcher")
        .model("openai/gpt-test")
        .system_prompt("You research companies.")
        .tools(&[&LOOKUP_COMPANY])
        .max_turns(4)
}

#[tokio::test]
async fn every_turn_and_tool_call_is_a_step_and_a_retry_repeats_none_that_was_recorded() {
    let server = MockServer::start().await;
    let first_turn = json!({"messages": [{"role": "system"}, {"role": "user"}]});
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(first_turn))
        .respond_with(tool_calls(&[
            ("call_1", "lookup-company", r#"{"domain": "acme.com"}"#),
            ("call_2", "lookup-company", r#"{"dom": 1}"#),
        ]))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    // The second turn fails once (the run fails), then answers after the run's retry.
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"error": {"message": "overloaded context"}})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(final_answer("ACME has 12 people."))
        .mount(&server)
        .await;
    let workflow = Workflow::new("research").run(|domain: String, _ctx: WorkflowCtx| async move {
        Ok(researcher()
            .prompt(format!("Who is behind {domain}?"))
            .await?)
    });
    let env = env(&workflow, &server).await;
    let failed = env.run(&workflow, &"acme.com".to_owned()).await;
    assert_eq!(failed.run.status, RunStatus::Failed);
    assert_eq!(ACME_LOOKUPS.load(Ordering::SeqCst), 1);
    env.engine.retry(failed.run.run_id).await.expect("retry");
    let detail = env.execute(failed.run.run_id).await;
    assert_eq!(
        detail.run.output,
        Some(json!("ACME has 12 people.")),
        "{:?}",
        detail.run.error
    );
    assert_eq!(
        ACME_LOOKUPS.load(Ordering::SeqCst),
        1,
        "the recorded tool call was replayed"
    );
    // The two tool calls of one turn ran in parallel: the summary lists them as recorded.
    let mut steps: Vec<(String, String, StepStatus)> = detail
        .steps
        .iter()
        .map(|s| (s.key.to_string(), s.kind.to_string(), s.status))
        .collect();
    steps.sort_by(|a, b| a.0.cmp(&b.0));
    let row = |key: &str, kind: &str, status| (key.to_owned(), kind.to_owned(), status);
    assert_eq!(
        steps,
        [
            row("agent:researcher/model#0", "llm", StepStatus::Completed),
            row("agent:researcher/model#1", "llm", StepStatus::Completed),
            row(
                "agent:researcher/tool:lookup-company#0",
                "action",
                StepStatus::Completed
            ),
            row(
                "agent:researcher/tool:lookup-company#1",
                "action",
                StepStatus::Failed
            ),
        ]
    );

    let bodies = bodies(&server).await;
    assert_eq!(bodies.len(), 3, "turn 1 once, turn 2 failed then answered");
    let tool = &bodies[0]["tools"][0];
    assert_eq!(tool["type"], "function");
    assert_eq!(tool["function"]["name"], "lookup-company");
    assert_eq!(
        tool["function"]["description"],
        "Looks up a company by its domain"
    );
    assert_eq!(
        tool["function"]["parameters"]["required"],
        json!(["domain"])
    );
    let messages = bodies[2]["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 5, "{messages:#?}");
    assert_eq!(
        messages[2]["tool_calls"][0]["function"]["arguments"],
        r#"{"domain":"acme.com"}"#
    );
    assert_eq!(messages[3]["tool_call_id"], "call_1");
    let result: Value =
        serde_json::from_str(messages[3]["content"].as_str().expect("text")).expect("JSON");
    assert_eq!(result, json!({"name": "ACME", "employees": 12}));
    assert_eq!(messages[4]["tool_call_id"], "call_2");
    let refused = messages[4]["content"].as_str().expect("text");
    assert!(
        refused.contains("does not match the schema of action lookup-company"),
        "{refused}"
    );
    env.assert_no_key_stored(&detail);
    server.verify().await;
}

#[tokio::test]
async fn an_anthropic_agent_gets_tool_results_and_its_limits_are_named() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "model": "claude-test", "stop_reason": "tool_use",
            "usage": {"input_tokens": 50, "output_tokens": 20},
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "no-such-tool", "input": {}}
            ]
        })))
        .mount(&server)
        .await;
    let workflow = Workflow::new("research").run(|domain: String, _ctx: WorkflowCtx| async move {
        let agent = researcher().model("anthropic/claude-test").max_turns(2);
        Ok(agent.prompt(format!("Who is behind {domain}?")).await?)
    });
    let env = env(&workflow, &server).await;
    let detail = env.run(&workflow, &"acme.com".to_owned()).await;
    assert_eq!(detail.run.status, RunStatus::Failed);
    let error = detail.run.error.as_ref().expect("an error");
    assert!(
        error
            .message
            .contains("agent researcher made 2 model calls without a final answer"),
        "{}",
        error.message
    );
    let bodies = bodies(&server).await;
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["tools"][0]["name"], "lookup-company");
    assert_eq!(
        bodies[0]["tools"][0]["input_schema"]["required"],
        json!(["domain"])
    );
    let messages = bodies[1]["messages"].as_array().expect("messages");
    assert_eq!(messages[1]["content"][1]["type"], "tool_use");
    let result = &messages[2]["content"][0];
    assert_eq!(
        (result["type"].as_str(), result["is_error"].as_bool()),
        (Some("tool_result"), Some(true))
    );
    let text = result["content"].as_str().expect("text");
    assert!(
        text.contains("no tool named \"no-such-tool\"; the tools are: lookup-company"),
        "{text}"
    );
}

/// A brief the agent is asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Brief {
    company: String,
    headcount: u32,
}

#[tokio::test]
async fn a_structured_agent_answer_carries_the_schema_and_is_re_asked_when_it_does_not_match() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(tool_calls(&[(
            "call_1",
            "lookup-company",
            r#"{"domain": "initech.com"}"#,
        )]))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(final_answer(r#"{"company": "INITECH"}"#))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(final_answer(r#"{"company": "INITECH", "headcount": 12}"#))
        .mount(&server)
        .await;
    let workflow = Workflow::new("brief").run(|domain: String, _ctx: WorkflowCtx| async move {
        let agent = researcher().key("brief");
        Ok(agent
            .prompt_as::<Brief>(format!("Brief me on {domain}"))
            .await?)
    });
    let env = env(&workflow, &server).await;
    let detail = env.run(&workflow, &"initech.com".to_owned()).await;
    assert_eq!(
        detail.run.output,
        Some(json!({"company": "INITECH", "headcount": 12})),
        "{:?}",
        detail.run.error
    );
    let keys: Vec<String> = detail.steps.iter().map(|s| s.key.to_string()).collect();
    assert_eq!(
        keys,
        [
            "brief/model#0",
            "brief/tool:lookup-company#0",
            "brief/model#1",
            "brief/model#2"
        ]
    );
    let bodies = bodies(&server).await;
    for body in &bodies {
        assert_eq!(body["response_format"]["json_schema"]["name"], "Brief");
        assert_eq!(body["tools"][0]["function"]["name"], "lookup-company");
    }
    let last = bodies[2]["messages"].as_array().expect("messages");
    let reask = last[last.len() - 1]["content"].as_str().expect("text");
    assert!(reask.contains("headcount"), "{reask}");
    env.assert_no_key_stored(&detail);
}
