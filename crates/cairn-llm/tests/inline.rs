//! A model prompted, or an agent run, inside an action's body: the calls are part of that
//! action's step (no steps of their own), the tools run in the action's attempt with their
//! input checked, the action's credentials are the ones used, and an error keeps whether a
//! retry may help (a misuse is not retried).

mod support;

use std::sync::{
    LazyLock,
    atomic::{AtomicUsize, Ordering},
};

use cairn_core::StepStatus;
use cairn_engine::{Action, ActionCtx, Credential, Field, Workflow, WorkflowCtx};
use cairn_llm::{Agent, LlmOptions, LlmProvider, OPENAI, prompt_llm, register_provider};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use support::{OPENAI_KEY, env, env_registered, keys};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{header, method, path},
};

/// A word to count.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
struct Word {
    word: String,
}

/// How many letters it has.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
struct Letters {
    letters: usize,
}

/// How many times `count-letters` ran.
static COUNTED: AtomicUsize = AtomicUsize::new(0);

static COUNT_LETTERS: LazyLock<Action<Word, Letters>> = LazyLock::new(|| {
    Action::new("count-letters")
        .description("Counts a word's letters")
        .run(|input: Word, _ctx: ActionCtx| async move {
            COUNTED.fetch_add(1, Ordering::SeqCst);
            Ok(Letters {
                letters: input.word.chars().count(),
            })
        })
});

/// An action that runs an agent and then prompts for a title, all inside its own step.
static BRIEF: LazyLock<Action<String, String>> = LazyLock::new(|| {
    Action::new("brief")
        .description("Drafts a brief with a model, inside one step")
        .optional_credential(&OPENAI)
        .run(|name: String, _ctx: ActionCtx| async move {
            let agent = Agent::new("inner")
                .model("openai/gpt-test")
                .tools(&[&*COUNT_LETTERS]);
            let body = agent.prompt(format!("Brief on {name}")).await?;
            let title = prompt_llm("A title?", LlmOptions::new("openai/gpt-test")).await?;
            Ok(format!("{title}: {body}"))
        })
});

/// A Chat Completions answer with `text`.
fn answer(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "model": "gpt-test", "usage": {"prompt_tokens": 5, "completion_tokens": 2},
        "choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": text}}]
    }))
}

/// A Chat Completions answer calling `count-letters` with a good and a bad argument.
fn count_twice() -> ResponseTemplate {
    let call = |id: &str, arguments: &str| {
        json!({"id": id, "type": "function",
               "function": {"name": "count-letters", "arguments": arguments}})
    };
    ResponseTemplate::new(200).set_body_json(json!({
        "model": "gpt-test", "usage": {"prompt_tokens": 9, "completion_tokens": 4},
        "choices": [{"finish_reason": "tool_calls", "message": {"role": "assistant",
            "content": null,
            "tool_calls": [call("c1", r#"{"word": "ada"}"#), call("c2", r#"{"w": 1}"#)]}}]
    }))
}

#[tokio::test]
async fn an_agent_and_a_prompt_inside_an_action_are_part_of_its_step() {
    let server = MockServer::start().await;
    for (reply, times) in [(count_twice(), 1), (answer("three letters"), 1)] {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(header("authorization", format!("Bearer {OPENAI_KEY}")))
            .respond_with(reply)
            .up_to_n_times(times)
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(answer("Title"))
        .mount(&server)
        .await;
    let workflow = Workflow::new("brief-inside")
        .run(|name: String, _ctx: WorkflowCtx| async move { Ok(BRIEF.run(name).await?) });
    let env = env(&workflow, &server).await;
    let detail = env.run(&workflow, &"ada".to_owned()).await;

    assert_eq!(
        detail.run.output,
        Some(json!("Title: three letters")),
        "{:?}",
        detail.run.error
    );
    assert_eq!(
        keys(&detail),
        [("brief#0".into(), "action".into())],
        "one step"
    );
    assert_eq!(
        COUNTED.load(Ordering::SeqCst),
        1,
        "the good tool call ran once"
    );
    let requests = server.received_requests().await.expect("requests");
    assert_eq!(requests.len(), 3, "two agent turns and the title");
    // The bad call went back to the model as an error it can correct.
    let second: Value = requests[1].body_json().expect("JSON");
    let tool_results: Vec<&Value> = second["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] == "tool")
        .collect();
    assert_eq!(tool_results.len(), 2, "{second}");
    assert_eq!(
        tool_results[0]["content"],
        json!({"letters": 3}).to_string()
    );
    let refused = tool_results[1]["content"].as_str().expect("text");
    assert!(refused.contains("does not match the schema"), "{refused}");
    env.assert_no_key_stored(&detail);
}

static INNER_KEY: LazyLock<Credential> =
    LazyLock::new(|| Credential::new("inner-gateway-key").field("apiKey", Field::secret()));

static INNER_GATEWAY: LazyLock<LlmProvider> = LazyLock::new(|| {
    LlmProvider::openai_compatible("inner-gateway", "http://127.0.0.1:9/nowhere")
        .credential(&INNER_KEY)
});

/// Prompts the gateway without declaring its credential: a mistake no retry fixes.
static UNDECLARED: LazyLock<Action<String, String>> = LazyLock::new(|| {
    Action::new("undeclared").run(|prompt: String, _ctx: ActionCtx| async move {
        Ok(prompt_llm(prompt, LlmOptions::new("inner-gateway/any")).await?)
    })
});

#[tokio::test]
async fn a_prompt_inside_an_action_uses_its_credentials_and_a_misuse_is_not_retried() {
    let server = MockServer::start().await;
    let workflow = Workflow::new("undeclared-inside")
        .run(|_: (), _ctx: WorkflowCtx| async move { Ok(UNDECLARED.run("hi".to_owned()).await?) });
    let env = env_registered(
        &workflow,
        &server,
        |config| config,
        |registry| register_provider(registry, &INNER_GATEWAY).expect("the gateway"),
    );
    env.set_credential("inner-gateway-key", "ik-5ecret").await;
    let detail = env.run(&workflow, &()).await;
    let step = &detail.steps[0];
    assert_eq!(
        (step.status, step.attempts),
        (StepStatus::Failed, 1),
        "not retried"
    );
    let message = &step.error.as_ref().expect("an error").message;
    assert!(
        message.contains("did not declare the credential \"inner-gateway-key\""),
        "{message}"
    );
    assert!(
        server
            .received_requests()
            .await
            .expect("requests")
            .is_empty()
    );
}
