//! Providers of one's own and per-tool credential scopes, through real workflows on an engine
//! (SQLite) against a local server playing the providers' wire formats: a registered
//! provider's models go to its base URL with its own credential's key (never another
//! provider's), a missing key fails at once naming its credential type, and an agent's tool
//! added with `scoped_tools` resolves its credential at its own scope.

mod support;

use std::sync::LazyLock;

use cairn_core::{Holder, Owner, Scope, StepStatus};
use cairn_engine::{
    Action, ActionCtx, Credential, Field, Registry, StartOptions, Workflow, WorkflowCtx,
};
use cairn_llm::{Agent, LlmOptions, LlmProvider, prompt_llm, register_provider};
use serde_json::{Value, json};
use support::{ANTHROPIC_KEY, OPENAI_KEY, env_registered, keys};
use wiremock::{
    Mock, MockServer, Request, ResponseTemplate,
    matchers::{header, method, path},
};

/// The key the gateway's credential holds.
const GATEWAY_KEY: &str = "gw-test-5ecret";

static GATEWAY_CREDENTIAL: LazyLock<Credential> = LazyLock::new(|| {
    Credential::new("gateway-key")
        .description("The test gateway's key")
        .field("apiKey", Field::secret())
});

/// An OpenAI-compatible gateway whose declared base URL answers nothing: the tests point it
/// at the mock server through `LlmConfig::provider_base_url`.
static GATEWAY: LazyLock<LlmProvider> = LazyLock::new(|| {
    LlmProvider::openai_compatible("gateway", "http://127.0.0.1:9/nowhere")
        .credential(&GATEWAY_CREDENTIAL)
});

/// An Anthropic-compatible proxy that takes no key.
static PROXY: LazyLock<LlmProvider> =
    LazyLock::new(|| LlmProvider::anthropic_compatible("proxy", "http://127.0.0.1:9/nowhere"));

/// A Chat Completions answer with `text`.
fn openai_answer(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "model": "served", "usage": {"prompt_tokens": 7, "completion_tokens": 3},
        "choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": text}}]
    }))
}

/// A Messages answer with `text`.
fn anthropic_answer(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "model": "served", "stop_reason": "end_turn",
        "usage": {"input_tokens": 5, "output_tokens": 2},
        "content": [{"type": "text", "text": text}]
    }))
}

/// The requests `server` received.
async fn received(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.expect("recorded requests")
}

#[tokio::test]
async fn a_registered_provider_gets_its_models_with_its_own_key_and_base_url() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/gw/chat/completions"))
        .and(header("authorization", format!("Bearer {GATEWAY_KEY}")))
        .respond_with(openai_answer("from the gateway"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/px/messages"))
        .respond_with(anthropic_answer("from the proxy"))
        .expect(1)
        .mount(&server)
        .await;
    let workflow = Workflow::new("ask-providers").run(|_: (), _ctx: WorkflowCtx| async move {
        let gateway = prompt_llm("hi", LlmOptions::new("gateway/meta/llama-3")).await?;
        let proxy = prompt_llm("hi", LlmOptions::new("proxy/claude-test")).await?;
        Ok(vec![gateway, proxy])
    });
    let gateway_url = format!("{}/gw", server.uri());
    let proxy_url = format!("{}/px", server.uri());
    let env = env_registered(
        &workflow,
        &server,
        |config| {
            config
                .provider_base_url("gateway", &gateway_url)
                .and_then(|c| c.provider_base_url("proxy", &proxy_url))
                .expect("base URLs")
        },
        |registry| {
            let registry = register_provider(registry, &GATEWAY).expect("the gateway");
            register_provider(registry, &PROXY).expect("the proxy")
        },
    );
    // The built-in providers' keys are stored too: neither may reach the gateway or the proxy.
    env.set_credential("openai", OPENAI_KEY).await;
    env.set_credential("anthropic", ANTHROPIC_KEY).await;
    env.set_credential("gateway-key", GATEWAY_KEY).await;

    let detail = env.run(&workflow, &()).await;
    assert_eq!(
        detail.run.output,
        Some(json!(["from the gateway", "from the proxy"])),
        "{:?}",
        detail.run.error
    );
    assert_eq!(
        keys(&detail),
        [
            ("llm#0".into(), "llm".into()),
            ("llm#1".into(), "llm".into())
        ]
    );
    let slugs: Vec<&str> = detail.steps.iter().map(|s| s.slug.as_str()).collect();
    assert_eq!(slugs, ["llm-gateway", "llm-proxy"]);
    let used = &detail.steps[0].credentials;
    assert_eq!(used.len(), 1, "{used:?}");
    assert_eq!(used[0].key, "gateway-key");
    assert!(detail.steps[1].credentials.is_empty());

    let requests = received(&server).await;
    assert_eq!(requests.len(), 2);
    let gateway: Value = requests[0].body_json().expect("JSON");
    assert_eq!(gateway["model"], "meta/llama-3", "the prefix is not sent");
    let proxy: Value = requests[1].body_json().expect("JSON");
    assert_eq!(proxy["model"], "claude-test");
    assert!(requests[1].headers.get("x-api-key").is_none());
    for request in &requests {
        let headers = format!("{:?}", request.headers);
        assert!(!headers.contains(OPENAI_KEY) && !headers.contains(ANTHROPIC_KEY));
    }
    let events = serde_json::to_string(&detail.events).expect("JSON");
    assert!(
        !events.contains(GATEWAY_KEY),
        "the gateway's key is in the run's events"
    );
    server.verify().await;
}

#[tokio::test]
async fn a_provider_without_its_key_fails_at_once_naming_its_credential() {
    let server = MockServer::start().await;
    let workflow = Workflow::new("ask-gateway").run(|_: (), _ctx: WorkflowCtx| async move {
        Ok(prompt_llm("hi", LlmOptions::new("gateway/any")).await?)
    });
    let gateway_url = format!("{}/gw", server.uri());
    let env = env_registered(
        &workflow,
        &server,
        |config| {
            config
                .provider_base_url("gateway", &gateway_url)
                .expect("a base URL")
        },
        |registry| register_provider(registry, &GATEWAY).expect("the gateway"),
    );
    env.set_credential("openai", OPENAI_KEY).await;
    let detail = env.run(&workflow, &()).await;
    let step = &detail.steps[0];
    assert_eq!((step.status, step.attempts), (StepStatus::Failed, 1));
    let message = &step.error.as_ref().expect("an error").message;
    assert!(message.contains("gateway-key"), "{message}");
    assert!(received(&server).await.is_empty(), "nothing was sent");

    // An unknown prefix names the registered providers.
    let unknown = Workflow::new("ask-unknown").run(|_: (), _ctx: WorkflowCtx| async move {
        Ok(prompt_llm("hi", LlmOptions::new("mistral/large")).await?)
    });
    let env = env_registered(
        &unknown,
        &server,
        |config| config,
        |registry| register_provider(registry, &GATEWAY).expect("the gateway"),
    );
    let detail = env.run(&unknown, &()).await;
    let message = &detail.run.error.as_ref().expect("an error").message;
    assert!(
        message.contains("names no known provider") && message.contains("gateway"),
        "{message}"
    );
}

static CHAT: LazyLock<Credential> =
    LazyLock::new(|| Credential::new("chat").field("token", Field::secret()));

/// A tool answering the scope of the `chat` credential it was given.
fn whoami(slug: &str) -> Action<Value, Value> {
    Action::new(slug)
        .description("Says whose chat credential it holds")
        .credential(&CHAT)
        .run(|_: Value, ctx: ActionCtx| async move {
            let chat = ctx.credential(&CHAT)?;
            Ok(json!({"scope": chat.scope().to_string()}))
        })
}

static WHOAMI_SHARED: LazyLock<Action<Value, Value>> = LazyLock::new(|| whoami("whoami-shared"));
static WHOAMI_PERSONAL: LazyLock<Action<Value, Value>> =
    LazyLock::new(|| whoami("whoami-personal"));

/// A Chat Completions answer calling both tools.
fn both_tools() -> ResponseTemplate {
    let call = |id: &str, name: &str| json!({"id": id, "type": "function", "function": {"name": name, "arguments": "{}"}});
    ResponseTemplate::new(200).set_body_json(json!({
        "model": "gpt-test", "usage": {"prompt_tokens": 9, "completion_tokens": 4},
        "choices": [{"finish_reason": "tool_calls", "message": {"role": "assistant",
            "content": null,
            "tool_calls": [call("c1", "whoami-shared"), call("c2", "whoami-personal")]}}]
    }))
}

#[tokio::test]
async fn a_scoped_tool_resolves_its_credentials_at_its_own_scope() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(both_tools())
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(openai_answer("done"))
        .mount(&server)
        .await;
    let workflow = Workflow::new("scoped-agent").run(|_: (), _ctx: WorkflowCtx| async move {
        let agent = Agent::new("poster")
            .model("openai/gpt-test")
            .scope(Scope::Organization)
            .tools(&[&*WHOAMI_SHARED])
            .scoped_tools(Scope::User, &[&*WHOAMI_PERSONAL]);
        Ok(agent.prompt("Who are you?").await?)
    });
    let env = env_registered(
        &workflow,
        &server,
        |config| config,
        |registry: Registry| registry.action(&WHOAMI_SHARED).action(&WHOAMI_PERSONAL),
    );
    env.set_credential("openai", OPENAI_KEY).await;
    let holder = |scope, user: Option<&str>| Holder {
        scope,
        org: "default".into(),
        project: None,
        user: user.map(str::to_owned),
    };
    env.set_credential_of(
        "chat",
        holder(Scope::Organization, None),
        "token",
        "org-token",
    )
    .await;
    env.set_credential_of(
        "chat",
        holder(Scope::User, Some("ada")),
        "token",
        "ada-token",
    )
    .await;
    let options = StartOptions {
        owner: Some(Owner {
            user: Some("ada".into()),
            ..Owner::default()
        }),
        ..StartOptions::default()
    };

    let detail = env.run_with(&workflow, &(), options).await;
    assert_eq!(
        detail.run.output,
        Some(json!("done")),
        "{:?}",
        detail.run.error
    );
    let output = |key: &str| {
        let step = detail.steps.iter().find(|s| s.key.as_str() == key);
        step.and_then(|s| s.output.clone())
            .unwrap_or_else(|| panic!("no step {key}: {:?}", keys(&detail)))
    };
    // The agent's scope for its tools; the scoped tool's own scope wins over it.
    assert_eq!(
        output("agent:poster/tool:whoami-shared#0"),
        json!({"scope": "organization"})
    );
    assert_eq!(
        output("agent:poster/tool:whoami-personal#0"),
        json!({"scope": "user"})
    );
    // The model's key is the organization's, as the agent's scope says.
    let model = detail
        .steps
        .iter()
        .find(|s| s.key.as_str() == "agent:poster/model#0")
        .expect("the first turn");
    assert_eq!(model.credentials[0].scope, Scope::Organization);
}
