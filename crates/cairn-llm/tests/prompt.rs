//! `prompt_llm` and `prompt_llm_as` through real workflows on an engine (SQLite), against a
//! local server playing OpenAI's and Anthropic's wire formats: the exact requests, the
//! recorded `llm` steps and tokens, replay without a second call, structured output and its
//! re-ask, the mapping of the providers' errors, and keys kept out of the store.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use cairn_core::{ErrorKind, RunStatus, StepStatus};
use cairn_engine::{Workflow, WorkflowCtx, WorkflowError};
use cairn_llm::{LlmOptions, LlmResponse, prompt_llm, prompt_llm_as};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use support::{ANTHROPIC_KEY, OPENAI_KEY, env, env_with, env_without_keys, keys};
use wiremock::{
    Mock, MockServer, Request, ResponseTemplate,
    matchers::{body_partial_json, header, method, path},
};

/// An OpenAI Chat Completions answer with `content`.
fn openai_answer(content: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 21, "completion_tokens": 4, "total_tokens": 25}
    }))
}

/// An Anthropic Messages answer whose `answer` tool call has `input`.
fn anthropic_answer(input: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test-1",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "Verdict", "input": input}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 30, "output_tokens": 9}
    }))
}

/// The body of the `n`-th request `server` received.
async fn request_body(server: &MockServer, n: usize) -> Value {
    let requests: Vec<Request> = server.received_requests().await.expect("recorded requests");
    requests[n].body_json().expect("a JSON body")
}

/// A verdict the model is asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Verdict {
    /// From 1 to 5.
    #[schemars(range(min = 1, max = 5))]
    score: u8,
    /// Why.
    reason: String,
}

#[tokio::test]
async fn a_prompt_is_one_llm_step_with_its_tokens_and_is_replayed_not_repeated() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header(
            "authorization",
            format!("Bearer {OPENAI_KEY}").as_str(),
        ))
        .and(body_partial_json(json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Describe Ada Lovelace"}
            ],
            "temperature": 0.2,
            "max_tokens": 50
        })))
        .respond_with(openai_answer("A mathematician."))
        .expect(1)
        .mount(&server)
        .await;
    let executions = Arc::new(AtomicUsize::new(0));
    let workflow = Workflow::new("describe").run({
        let executions = executions.clone();
        move |name: String, _ctx: WorkflowCtx| {
            let executions = executions.clone();
            async move {
                let options = LlmOptions {
                    model: "openai/gpt-4o-mini".into(),
                    system: Some("Be brief.".into()),
                    temperature: Some(0.2),
                    max_tokens: Some(50),
                    ..Default::default()
                };
                let text = prompt_llm(format!("Describe {name}"), options).await?;
                if executions.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err(WorkflowError::new("a later step failed"));
                }
                Ok(text)
            }
        }
    });
    let env = env(&workflow, &server).await;
    let failed = env.run(&workflow, &"Ada Lovelace".to_owned()).await;
    assert_eq!(failed.run.status, RunStatus::Failed);
    env.engine.retry(failed.run.run_id).await.expect("retry");
    let detail = env.execute(failed.run.run_id).await;
    assert_eq!(detail.run.output, Some(json!("A mathematician.")));
    assert_eq!(keys(&detail), [("llm#0".to_owned(), "llm".to_owned())]);
    let step = &detail.steps[0];
    let answer: LlmResponse =
        serde_json::from_value(step.output.clone().expect("an output")).expect("an answer");
    assert_eq!(
        (
            answer.model.as_str(),
            answer.input_tokens,
            answer.output_tokens
        ),
        ("gpt-4o-mini-2024-07-18", 21, 4)
    );
    assert_eq!(answer.finish_reason, "stop");
    assert_eq!(
        step.input.as_ref().expect("an input")["model"],
        "openai/gpt-4o-mini"
    );
    env.assert_no_key_stored(&detail);
    // `expect(1)`: the retry replayed the recorded answer.
    server.verify().await;
}

#[tokio::test]
async fn a_structured_answer_uses_the_schema_and_an_invalid_one_is_re_asked() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", ANTHROPIC_KEY))
        .and(header("anthropic-version", "2023-06-01"))
        .respond_with(anthropic_answer(json!({"score": 9, "reason": "great"})))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(anthropic_answer(json!({"score": 4, "reason": "solid"})))
        .expect(1)
        .mount(&server)
        .await;
    let workflow = Workflow::new("judge").run(|pitch: String, _ctx: WorkflowCtx| async move {
        Ok(prompt_llm_as::<Verdict>(pitch, LlmOptions::new("anthropic/claude-test")).await?)
    });
    let env = env(&workflow, &server).await;
    let detail = env.run(&workflow, &"Rate this pitch".to_owned()).await;
    assert_eq!(
        detail.run.status,
        RunStatus::Succeeded,
        "{:?}",
        detail.run.error
    );
    assert_eq!(
        detail.run.output,
        Some(json!({"score": 4, "reason": "solid"}))
    );
    assert_eq!(
        keys(&detail),
        [
            ("llm#0".to_owned(), "llm".to_owned()),
            ("llm#1".to_owned(), "llm".to_owned())
        ]
    );
    let first = request_body(&server, 0).await;
    assert_eq!(first["model"], "claude-test");
    assert_eq!(
        first["tool_choice"],
        json!({"type": "tool", "name": "Verdict"})
    );
    let schema = &first["tools"][0]["input_schema"];
    assert_eq!(schema["properties"]["score"]["maximum"], 5);
    assert_eq!(schema["required"], json!(["score", "reason"]));
    let second = request_body(&server, 1).await;
    let messages = second["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[1]["role"], "assistant");
    let reask = messages[2]["content"].as_str().expect("a text");
    assert!(
        reask.contains("/score") && reask.contains("maximum"),
        "{reask}"
    );
    env.assert_no_key_stored(&detail);
    server.verify().await;
}

#[tokio::test]
async fn answers_that_never_match_fail_naming_the_paths_after_the_re_asks() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(
            json!({"response_format": {"type": "json_schema",
            "json_schema": {"name": "Verdict", "strict": false}}}),
        ))
        .respond_with(openai_answer(r#"{"score": "high", "reason": "x"}"#))
        .expect(3)
        .mount(&server)
        .await;
    let workflow = Workflow::new("judge").run(|pitch: String, _ctx: WorkflowCtx| async move {
        Ok(prompt_llm_as::<Verdict>(pitch, LlmOptions::new("openai/gpt-4o-mini")).await?)
    });
    let env = env(&workflow, &server).await;
    let detail = env.run(&workflow, &"Rate this".to_owned()).await;
    assert_eq!(detail.run.status, RunStatus::Failed);
    let error = detail.run.error.as_ref().expect("an error");
    assert_eq!(error.kind, ErrorKind::InvalidOutput);
    assert!(
        error.message.contains("answered 3 times") && error.message.contains("/score"),
        "{}",
        error.message
    );
    assert_eq!(detail.steps.len(), 3);
    let schema = &request_body(&server, 0).await["response_format"]["json_schema"]["schema"];
    assert_eq!(schema["properties"]["reason"]["type"], "string");
    server.verify().await;
}

#[tokio::test]
async fn rate_limits_are_retried_after_retry_after_and_bad_requests_fail_with_the_message() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"model": "busy"})))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "7")
                .set_body_json(json!({"error": {"message": "Rate limit reached"}})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"model": "busy"})))
        .respond_with(openai_answer("done"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"model": "nope"})))
        .respond_with(ResponseTemplate::new(404).set_body_json(
            json!({"error": {"message": "The model `nope` does not exist", "type": "invalid_request_error"}}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let workflow = Workflow::new("ask").run(|model: String, _ctx: WorkflowCtx| async move {
        Ok(prompt_llm("hi", LlmOptions::new(format!("openai/{model}"))).await?)
    });
    let env = env(&workflow, &server).await;

    let busy = env.run(&workflow, &"busy".to_owned()).await;
    assert_eq!(busy.run.output, Some(json!("done")));
    assert_eq!(busy.steps[0].attempts, 2);
    let retry = busy.events.iter().find_map(|record| match record.event {
        cairn_core::Event::StepAttemptFailed {
            retry_at_ms,
            ref error,
            ..
        } => Some((retry_at_ms - record.at_ms, error.message.clone())),
        _ => None,
    });
    let (delay_ms, message) = retry.expect("a failed attempt");
    assert_eq!(delay_ms, 7_000);
    assert!(
        message.contains("HTTP 429") && message.contains("Rate limit reached"),
        "{message}"
    );

    let missing = env.run(&workflow, &"nope".to_owned()).await;
    let step = &missing.steps[0];
    assert_eq!((step.status, step.attempts), (StepStatus::Failed, 1));
    let error = step.error.as_ref().expect("an error");
    assert!(!error.retryable);
    assert!(
        error.message.contains("The model `nope` does not exist"),
        "{}",
        error.message
    );
    assert!(!error.message.contains(OPENAI_KEY));
    env.assert_no_key_stored(&missing);
    server.verify().await;
}

#[tokio::test]
async fn a_missing_key_or_an_unknown_provider_fails_at_once_saying_what_to_do() {
    let server = MockServer::start().await;
    let workflow = Workflow::new("ask").run(|model: String, _ctx: WorkflowCtx| async move {
        Ok(prompt_llm("hi", LlmOptions::new(model)).await?)
    });
    let env = env_without_keys(&workflow, &server);
    let keyless = env
        .run(&workflow, &"anthropic/claude-test".to_owned())
        .await;
    let step = &keyless.steps[0];
    assert_eq!((step.status, step.attempts), (StepStatus::Failed, 1));
    let error = step.error.as_ref().expect("an error");
    assert!(
        error
            .message
            .contains("credentials set anthropic --field apiKey="),
        "{}",
        error.message
    );
    let unknown = env.run(&workflow, &"mistral/large".to_owned()).await;
    let error = unknown.run.error.as_ref().expect("an error");
    assert!(
        error.message.contains("names no known provider"),
        "{}",
        error.message
    );
    assert!(
        server
            .received_requests()
            .await
            .expect("requests")
            .is_empty()
    );

    // An OpenAI-compatible server other than OpenAI's (Ollama) is called without a key.
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(openai_answer("local"))
        .expect(1)
        .mount(&server)
        .await;
    let local = env.run(&workflow, &"openai/llama3".to_owned()).await;
    assert_eq!(local.run.output, Some(json!("local")));
    let requests = server.received_requests().await.expect("requests");
    assert!(requests[0].headers.get("authorization").is_none());
}

#[tokio::test]
async fn a_slow_answer_is_retried_and_an_oversized_one_fails() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"model": "slow"})))
        .respond_with(openai_answer("late").set_delay(Duration::from_secs(3)))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"model": "slow"})))
        .respond_with(openai_answer("in time"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"model": "verbose"})))
        .respond_with(openai_answer(&"word ".repeat(2_000)))
        .expect(1)
        .mount(&server)
        .await;
    let workflow = Workflow::new("ask").run(|model: String, _ctx: WorkflowCtx| async move {
        Ok(prompt_llm("hi", LlmOptions::new(format!("openai/{model}"))).await?)
    });
    let env = env_with(&workflow, &server, |config| {
        config
            .request_timeout(Duration::from_millis(300))
            .max_response_bytes(4_096)
    })
    .await;

    let slow = env.run(&workflow, &"slow".to_owned()).await;
    assert_eq!(slow.run.output, Some(json!("in time")));
    assert_eq!(slow.steps[0].attempts, 2);
    let timed_out = slow.events.iter().find_map(|record| match &record.event {
        cairn_core::Event::StepAttemptFailed { error, .. } => Some(error.message.clone()),
        _ => None,
    });
    let message = timed_out.expect("a failed attempt");
    assert!(message.contains("did not answer within 300ms"), "{message}");

    let verbose = env.run(&workflow, &"verbose".to_owned()).await;
    let error = verbose.steps[0].error.as_ref().expect("an error");
    assert!(!error.retryable);
    assert!(
        error.message.contains("more than 4096 bytes"),
        "{}",
        error.message
    );
    server.verify().await;
}
