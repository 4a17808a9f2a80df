//! The provider keys (credentials `openai` and `anthropic`) and the `llm` action: one model
//! call, recorded as a step of kind `llm` whose input is the request and whose output is the
//! answer with its tokens, finish reason and latency. `prompt_llm` and agents call it.

use std::{
    sync::LazyLock,
    time::{Duration, Instant},
};

use cairn_actions::{config::base_url, transport::endpoint};
use cairn_engine::{
    Action, ActionCtx, ActionError, Credential, Field, Registry, ResolvedCredential, Retry,
    StepKind,
};
use reqwest::{Url, header::HeaderName};

use crate::{
    anthropic,
    config::{self, DEFAULT_OPENAI_BASE_URL, LlmConfig},
    openai, provider,
    transport::{Post, send},
    types::{LlmRequest, LlmResponse, Wire},
};

/// The slug of model calls.
pub const LLM_SLUG: &str = "llm";
/// The engine-side limit of one model call's attempt (the request's own is shorter).
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);

/// An OpenAI (or OpenAI-compatible) API key:
/// `credentials set openai --field apiKey=@env:OPENAI_API_KEY`.
pub static OPENAI: LazyLock<Credential> = LazyLock::new(|| {
    Credential::new("openai")
        .description("An OpenAI API key (or an OpenAI-compatible server's), for openai/<model>")
        .field("apiKey", Field::secret().description("The API key (sk-…)"))
        .field(
            "baseUrl",
            Field::text()
                .optional()
                .description("Another OpenAI-compatible API, e.g. https://openrouter.ai/api/v1"),
        )
});

/// An Anthropic API key: `credentials set anthropic --field apiKey=@env:ANTHROPIC_API_KEY`.
pub static ANTHROPIC: LazyLock<Credential> = LazyLock::new(|| {
    Credential::new("anthropic")
        .description("An Anthropic API key, for anthropic/<model>")
        .field(
            "apiKey",
            Field::secret().description("The API key (sk-ant-…)"),
        )
        .field(
            "baseUrl",
            Field::text()
                .optional()
                .description("Another Messages API base URL (a proxy)"),
        )
});

/// One model call as a durable step of kind `llm` (key `llm#<n>`). [`prompt_llm`] and
/// agents call it; call it yourself for full control of the messages and tools.
///
/// [`prompt_llm`]: crate::prompt_llm
pub static LLM: LazyLock<Action<LlmRequest, LlmResponse>> = LazyLock::new(|| {
    Action::new(LLM_SLUG)
        .name("LLM call")
        .description("Calls a language model (openai/… or anthropic/…) and records its answer")
        .kind(StepKind::Llm)
        .optional_credential(&OPENAI)
        .optional_credential(&ANTHROPIC)
        .retry(model_call_retry())
        .timeout(ATTEMPT_TIMEOUT)
        .run(call_model)
});

/// How a model call is retried: 408, 429, 5xx and no answer, up to 5 attempts, backing off
/// from 2 s to 60 s (or as `Retry-After` says).
pub(crate) fn model_call_retry() -> Retry {
    Retry::exponential()
        .max_attempts(5)
        .initial_backoff(Duration::from_secs(2))
        .max_backoff(Duration::from_secs(60))
}

/// Registers the `llm` action, and so the `openai` and `anthropic` credential types (for
/// `credentials set`). Workflows prompt models without it.
pub fn register(registry: Registry) -> Registry {
    registry.action(&LLM)
}

/// Makes the call `request` asks for, to a built-in provider, and reads its answer.
pub(crate) async fn call_model(
    request: LlmRequest,
    ctx: ActionCtx,
) -> Result<LlmResponse, ActionError> {
    let (wire, name) =
        Wire::split(&request.model, &provider::names()).map_err(ActionError::fatal)?;
    let config = config::of(&ctx)?;
    let (service, base, credential) = match wire {
        Wire::OpenAi => (
            openai::SERVICE,
            &config.openai_base_url,
            ctx.optional_credential(&OPENAI),
        ),
        Wire::Anthropic => (
            anthropic::SERVICE,
            &config.anthropic_base_url,
            ctx.optional_credential(&ANTHROPIC),
        ),
    };
    let base = match credential.and_then(|c| c.get("baseUrl")) {
        Some(url) => base_url("the credential's baseUrl", url.expose())
            .map_err(|err| ActionError::fatal(err.to_string()))?,
        None => base.clone(),
    };
    let key = api_key(wire, &request.model, credential, &base)?;
    let target = Target {
        wire,
        service,
        base,
        key,
    };
    call(&request, name, &ctx, &config, target).await
}

/// Where one model call goes.
pub(crate) struct Target<'a> {
    /// The wire format.
    pub(crate) wire: Wire,
    /// The provider's name, for messages.
    pub(crate) service: &'a str,
    /// Its base URL.
    pub(crate) base: Url,
    /// The key to send, if any.
    pub(crate) key: Option<&'a str>,
}

/// Sends `request` for the model `name` (without its provider's prefix) to `target` and reads
/// the answer.
pub(crate) async fn call(
    request: &LlmRequest,
    name: &str,
    ctx: &ActionCtx,
    config: &LlmConfig,
    target: Target<'_>,
) -> Result<LlmResponse, ActionError> {
    let Target {
        wire,
        service,
        base,
        key,
    } = target;
    let (url, body, mut headers) = match wire {
        Wire::OpenAi => (
            endpoint(&base, &["chat", "completions"]),
            openai::body(request, name),
            Vec::new(),
        ),
        Wire::Anthropic => (
            endpoint(&base, &["messages"]),
            anthropic::body(request, name),
            vec![(
                HeaderName::from_static("anthropic-version"),
                anthropic::VERSION.to_owned(),
            )],
        ),
    };
    match (wire, key) {
        (Wire::OpenAi, Some(key)) => {
            headers.push((reqwest::header::AUTHORIZATION, format!("Bearer {key}")))
        }
        (Wire::Anthropic, Some(key)) => {
            headers.push((HeaderName::from_static("x-api-key"), key.to_owned()));
        }
        (_, None) => {}
    }
    let started = Instant::now();
    let post = Post {
        service,
        url,
        headers,
        body: &body,
    };
    let answer = send(ctx, config, post).await?;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let parsed = match wire {
        Wire::OpenAi => openai::answer(&answer, latency_ms),
        Wire::Anthropic => anthropic::answer(request, &answer, latency_ms),
    };
    parsed.map_err(|reason| {
        ActionError::fatal(format!(
            "{service} answered with JSON that is not the documented answer ({reason}); is the base URL {base} the right API?"
        ))
    })
}

/// The key the call is to send: the credential's; none for an OpenAI-compatible server
/// other than OpenAI's given without one (Ollama needs none); else a fatal error saying
/// which credential to set.
fn api_key<'a>(
    wire: Wire,
    model: &str,
    credential: Option<&'a ResolvedCredential>,
    base: &Url,
) -> Result<Option<&'a str>, ActionError> {
    if let Some(key) = credential.and_then(|c| c.get("apiKey")) {
        return Ok(Some(key.expose()));
    }
    let (key, var) = match wire {
        Wire::OpenAi if base.as_str() != DEFAULT_OPENAI_BASE_URL => return Ok(None),
        Wire::OpenAi => ("openai", "OPENAI_API_KEY"),
        Wire::Anthropic => ("anthropic", "ANTHROPIC_API_KEY"),
    };
    Err(ActionError::fatal(format!(
        "model {model} needs an API key: set one with `credentials set {key} --field apiKey=@env:{var}`"
    )))
}
