//! Providers of your own, named by the prefix of their models: `openrouter/meta-llama/…`,
//! `ollama/llama3`, `proxy/claude-…`. Each speaks one of the two wire formats (OpenAI's Chat
//! Completions or Anthropic's Messages) at its own base URL, with its key in a credential
//! type of its own, so a key set for one provider is never sent to another.
//!
//! A provider is declared once (usually in a `static`) and registered with
//! [`register_provider`], which adds its `llm-<name>` action to the registry and makes its
//! name known to [`prompt_llm`](crate::prompt_llm) and agents in this process. Its calls are
//! steps of kind `llm` keyed `llm#<n>` like the built-in providers' (their slug,
//! `llm-<name>`, says which provider answered).

use std::{
    collections::BTreeMap,
    sync::{Arc, LazyLock, RwLock},
};

use cairn_actions::{ConfigError, config::base_url};
use cairn_engine::{
    Action, ActionCtx, ActionError, Credential, Registry, StepCall, StepError, StepKind,
};
use reqwest::Url;

use crate::{
    action::{LLM, LLM_SLUG, Target, call, call_model, model_call_retry},
    config,
    types::{LlmRequest, LlmResponse, Wire},
};

/// A model provider of your own: a name (the prefix of its models), a wire format, a base
/// URL, and the credential type holding its key (if it takes one).
///
/// ```no_run
/// # use std::sync::LazyLock;
/// # use cairn_engine::{Credential, Field, Registry};
/// use cairn_llm::LlmProvider;
///
/// static OPENROUTER_KEY: LazyLock<Credential> = LazyLock::new(|| {
///     Credential::new("openrouter").field("apiKey", Field::secret())
/// });
/// static OPENROUTER: LazyLock<LlmProvider> = LazyLock::new(|| {
///     LlmProvider::openai_compatible("openrouter", "https://openrouter.ai/api/v1")
///         .credential(&OPENROUTER_KEY)
/// });
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Models `openrouter/<model>` now go to OpenRouter with the `openrouter` credential's key.
/// let registry = cairn_llm::register_provider(Registry::new(), &OPENROUTER)?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct LlmProvider {
    name: String,
    wire: Wire,
    base_url: String,
    credential: Option<Credential>,
}

impl LlmProvider {
    /// A provider speaking OpenAI's Chat Completions at `base_url` (`{base_url}/chat/completions`):
    /// OpenRouter, Ollama, vLLM, llama.cpp, a gateway.
    pub fn openai_compatible(name: impl Into<String>, base_url: impl Into<String>) -> LlmProvider {
        LlmProvider::new(name.into(), Wire::OpenAi, base_url.into())
    }

    /// A provider speaking Anthropic's Messages at `base_url` (`{base_url}/messages`): a proxy
    /// or a gateway in front of Anthropic.
    pub fn anthropic_compatible(
        name: impl Into<String>,
        base_url: impl Into<String>,
    ) -> LlmProvider {
        LlmProvider::new(name.into(), Wire::Anthropic, base_url.into())
    }

    fn new(name: String, wire: Wire, base_url: String) -> LlmProvider {
        LlmProvider {
            name,
            wire,
            base_url,
            credential: None,
        }
    }

    /// The credential type holding the key, in its field `apiKey` (sent as OpenAI's bearer
    /// token or Anthropic's `x-api-key`); a field `baseUrl`, when the type has one and it is
    /// set, wins over the base URL. A step finding none fails at once, saying what to set.
    /// Without this the provider is called with no key (a local Ollama).
    pub fn credential(mut self, credential: &Credential) -> LlmProvider {
        self.credential = Some(credential.clone());
        self
    }

    /// The name its models are prefixed with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The checked provider and its action.
    fn build(&self) -> Result<Named, ProviderError> {
        check_name(&self.name)?;
        let base_url = base_url(
            &format!("provider {}'s base URL", self.name),
            &self.base_url,
        )?;
        if let Some(credential) = &self.credential
            && !credential.fields().contains_key("apiKey")
        {
            return Err(ProviderError::NoKeyField {
                provider: self.name.clone(),
                credential: credential.key().to_owned(),
            });
        }
        let target = Arc::new(NamedTarget {
            name: self.name.clone(),
            wire: self.wire,
            base_url,
            credential: self.credential.clone(),
        });
        let builder = Action::new(&format!("{LLM_SLUG}-{}", self.name))
            .name(format!("LLM call ({})", self.name))
            .description(format!(
                "Calls a language model of provider {} ({}/…) and records its answer",
                self.name, self.name
            ))
            .kind(StepKind::Llm)
            .retry(model_call_retry())
            .timeout(crate::action::ATTEMPT_TIMEOUT);
        let builder = match &self.credential {
            Some(credential) => builder.credential(credential),
            None => builder,
        };
        let called = target.clone();
        let action = builder.run(move |request: LlmRequest, ctx: ActionCtx| {
            let target = called.clone();
            async move { call_named(request, ctx, &target).await }
        });
        Ok(Named { action, target })
    }
}

/// Why a provider cannot be registered.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The name cannot prefix a model.
    #[error(
        "provider name {0:?} is not usable: give 1 to 40 of a-z, 0-9 and '-', not openai or anthropic (those are built in)"
    )]
    Name(String),
    /// The base URL is not an absolute http(s) URL.
    #[error(transparent)]
    BaseUrl(#[from] ConfigError),
    /// The credential type has no `apiKey` field to read the key from.
    #[error(
        "provider {provider}'s credential type {credential:?} has no field apiKey; add .field(\"apiKey\", Field::secret()) to it"
    )]
    NoKeyField {
        /// The provider.
        provider: String,
        /// The credential type.
        credential: String,
    },
}

/// Checks that `name` can prefix a model and is not a built-in provider's.
fn check_name(name: &str) -> Result<(), ProviderError> {
    let usable = (1..=40).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !matches!(name, "openai" | "anthropic");
    if usable {
        Ok(())
    } else {
        Err(ProviderError::Name(name.to_owned()))
    }
}

/// What a registered provider's calls need.
#[derive(Debug)]
struct NamedTarget {
    name: String,
    wire: Wire,
    base_url: Url,
    credential: Option<Credential>,
}

/// A registered provider.
struct Named {
    action: Action<LlmRequest, LlmResponse>,
    target: Arc<NamedTarget>,
}

/// The providers registered in this process, by name.
static PROVIDERS: LazyLock<RwLock<BTreeMap<String, Arc<Named>>>> =
    LazyLock::new(|| RwLock::new(BTreeMap::new()));

/// Registers `provider`: its action in `registry` (and so its credential type, for
/// `credentials set`), and its name for the models of workflows in this process. Registering
/// a name again replaces what it meant (the last registration wins).
pub fn register_provider(
    registry: Registry,
    provider: &LlmProvider,
) -> Result<Registry, ProviderError> {
    let named = Arc::new(provider.build()?);
    let registry = registry.action(&named.action);
    PROVIDERS
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(provider.name.clone(), named);
    Ok(registry)
}

/// The names of the registered providers, for messages.
pub(crate) fn names() -> Vec<String> {
    let providers = PROVIDERS.read().unwrap_or_else(|p| p.into_inner());
    providers.keys().cloned().collect()
}

/// The registered provider the model's prefix names, if any.
fn named(model: &str) -> Option<Arc<Named>> {
    let prefix = model.split_once('/').map(|(prefix, _)| prefix)?;
    let providers = PROVIDERS.read().unwrap_or_else(|p| p.into_inner());
    providers.get(prefix).cloned()
}

/// One model call. In a workflow: the step `step` makes of the model call's step (the
/// registered provider's action when the model's prefix names one, else the built-in `llm`
/// action; keyed `llm#<n>` either way). Inside an action's body: made there, as part of that
/// action's step, with its credentials.
pub(crate) async fn ask(
    request: LlmRequest,
    step: impl FnOnce(StepCall<LlmResponse>) -> StepCall<LlmResponse>,
) -> Result<LlmResponse, StepError> {
    if let Some(ctx) = ActionCtx::current() {
        let answer = match named(&request.model) {
            Some(named) => call_named(request, ctx, &named.target).await,
            None => call_model(request, ctx).await,
        };
        return Ok(answer?);
    }
    let call = match named(&request.model) {
        Some(named) => named.action.run(request).numbered_key(LLM_SLUG),
        None => LLM.run(request),
    };
    step(call).await
}

/// One call to a registered provider.
async fn call_named(
    request: LlmRequest,
    ctx: ActionCtx,
    provider: &NamedTarget,
) -> Result<LlmResponse, ActionError> {
    let config = config::of(&ctx)?;
    let credential = match &provider.credential {
        Some(credential) => Some(ctx.credential(credential)?),
        None => None,
    };
    let base = match credential.and_then(|c| c.get("baseUrl")) {
        Some(url) => base_url("the credential's baseUrl", url.expose())
            .map_err(|err| ActionError::fatal(err.to_string()))?,
        None => config
            .provider_base_urls
            .get(&provider.name)
            .unwrap_or(&provider.base_url)
            .clone(),
    };
    let key = credential.map(|c| c.field("apiKey")).transpose()?;
    let model = request.model[provider.name.len() + 1..].to_owned();
    let target = Target {
        wire: provider.wire,
        service: &provider.name,
        base,
        key: key.map(|key| key.expose()),
    };
    call(&request, &model, &ctx, &config, target).await
}

#[cfg(test)]
mod tests {
    use cairn_engine::Field;

    use super::*;

    #[test]
    fn providers_are_checked_when_registered() {
        for bad in [
            "",
            "OpenRouter",
            "openai",
            "anthropic",
            "a/b",
            &"x".repeat(41),
        ] {
            let provider = LlmProvider::openai_compatible(bad, "http://127.0.0.1:1/v1");
            let err = register_provider(Registry::new(), &provider).err();
            assert!(
                matches!(err, Some(ProviderError::Name(_))),
                "{bad}: {err:?}"
            );
        }
        let provider = LlmProvider::openai_compatible("local", "127.0.0.1:1/v1");
        let err = register_provider(Registry::new(), &provider).err().unwrap();
        assert!(
            err.to_string().contains("not an absolute http(s) URL"),
            "{err}"
        );
        let keyless = Credential::new("local-key").field("token", Field::secret());
        let provider = LlmProvider::anthropic_compatible("local", "http://127.0.0.1:1/v1")
            .credential(&keyless);
        let err = register_provider(Registry::new(), &provider).err().unwrap();
        assert!(err.to_string().contains("no field apiKey"), "{err}");
    }
}
