//! The providers' configuration, shared through the registry as a resource: base URLs (a
//! proxy, Ollama, vLLM, a local test server), the HTTP client, the request timeout, the
//! largest answer read. Without one, the defaults (the providers' public APIs) are used.

use std::{
    collections::BTreeMap,
    sync::{Arc, LazyLock},
    time::Duration,
};

use cairn_actions::{ConfigError, config::base_url};
use cairn_engine::{ActionCtx, ActionError};
use reqwest::Url;

/// OpenAI's API (Chat Completions lives under it).
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// Anthropic's API (Messages lives under it).
pub const DEFAULT_ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com/v1";
/// The variable [`LlmConfig::from_env`] reads the OpenAI-compatible base URL from.
pub const OPENAI_BASE_URL_VAR: &str = "CAIRN_OPENAI_BASE_URL";
/// The variable [`LlmConfig::from_env`] reads Anthropic's base URL from.
pub const ANTHROPIC_BASE_URL_VAR: &str = "CAIRN_ANTHROPIC_BASE_URL";

/// How long one model call may take by default (models answer slowly).
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read by default.
const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The model providers' configuration: `Registry::new().resource(LlmConfig::from_env()?)`.
/// A credential's `baseUrl` field, when set, wins over the base URL here.
#[derive(Clone, Debug)]
pub struct LlmConfig {
    pub(crate) openai_base_url: Url,
    pub(crate) anthropic_base_url: Url,
    /// Base URLs of providers registered by name, instead of their declared ones.
    pub(crate) provider_base_urls: BTreeMap<String, Url>,
    pub(crate) client: reqwest::Client,
    pub(crate) request_timeout: Duration,
    pub(crate) max_response_bytes: usize,
}

impl LlmConfig {
    /// The defaults: the providers' public APIs, a 120 s request timeout, answers up to 1 MiB.
    pub fn new() -> Result<LlmConfig, ConfigError> {
        cairn_actions::config::install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(cairn_actions::transport::USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|err| ConfigError::Client(err.without_url().to_string()))?;
        Ok(LlmConfig {
            openai_base_url: base_url("OpenAI's base URL", DEFAULT_OPENAI_BASE_URL)?,
            anthropic_base_url: base_url("Anthropic's base URL", DEFAULT_ANTHROPIC_BASE_URL)?,
            provider_base_urls: BTreeMap::new(),
            client,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        })
    }

    /// The defaults, with the base URLs in `CAIRN_OPENAI_BASE_URL` and
    /// `CAIRN_ANTHROPIC_BASE_URL` where they are set.
    pub fn from_env() -> Result<LlmConfig, ConfigError> {
        let mut config = LlmConfig::new()?;
        if let Ok(url) = std::env::var(OPENAI_BASE_URL_VAR) {
            config.openai_base_url = base_url(OPENAI_BASE_URL_VAR, &url)?;
        }
        if let Ok(url) = std::env::var(ANTHROPIC_BASE_URL_VAR) {
            config.anthropic_base_url = base_url(ANTHROPIC_BASE_URL_VAR, &url)?;
        }
        Ok(config)
    }

    /// Sends `openai/…` models' calls to `url` (`{url}/chat/completions`): Ollama
    /// (`http://127.0.0.1:11434/v1`), vLLM, llama.cpp, OpenRouter, a proxy.
    pub fn openai_base_url(mut self, url: &str) -> Result<LlmConfig, ConfigError> {
        self.openai_base_url = base_url("OpenAI's base URL", url)?;
        Ok(self)
    }

    /// Sends `anthropic/…` models' calls to `url` (`{url}/messages`).
    pub fn anthropic_base_url(mut self, url: &str) -> Result<LlmConfig, ConfigError> {
        self.anthropic_base_url = base_url("Anthropic's base URL", url)?;
        Ok(self)
    }

    /// Sends the calls of the provider registered as `name` (see
    /// [`LlmProvider`](crate::LlmProvider)) to `url` instead of its declared base URL: a test
    /// server, another deployment. A credential's `baseUrl` still wins.
    pub fn provider_base_url(mut self, name: &str, url: &str) -> Result<LlmConfig, ConfigError> {
        let url = base_url(&format!("provider {name}'s base URL"), url)?;
        self.provider_base_urls.insert(name.to_owned(), url);
        Ok(self)
    }

    /// How long one model call may take, from connecting to the last byte (default 120 s).
    /// A call that takes longer fails its attempt, which is retried.
    pub fn request_timeout(mut self, timeout: Duration) -> LlmConfig {
        self.request_timeout = timeout;
        self
    }

    /// The largest answer read (default 1 MiB); a larger one fails the step.
    pub fn max_response_bytes(mut self, bytes: usize) -> LlmConfig {
        self.max_response_bytes = bytes;
        self
    }

    /// Uses `client` for every call (proxies, extra root certificates).
    pub fn client(mut self, client: reqwest::Client) -> LlmConfig {
        self.client = client;
        self
    }
}

/// The configuration an attempt uses: the registered one, else the defaults.
pub(crate) fn of(ctx: &ActionCtx) -> Result<Arc<LlmConfig>, ActionError> {
    static DEFAULT: LazyLock<Result<Arc<LlmConfig>, String>> = LazyLock::new(|| {
        LlmConfig::new()
            .map(Arc::new)
            .map_err(|err| err.to_string())
    });
    if let Ok(config) = ctx.resource::<LlmConfig>() {
        return Ok(config);
    }
    DEFAULT.clone().map_err(ActionError::fatal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_lose_their_trailing_slash() {
        let config = LlmConfig::new()
            .unwrap()
            .openai_base_url("http://127.0.0.1:11434/v1/")
            .unwrap();
        assert_eq!(config.openai_base_url.as_str(), "http://127.0.0.1:11434/v1");
        for bad in ["api.openai.com/v1", "ftp://x", "http://x/v1?key=1"] {
            let err = LlmConfig::new()
                .unwrap()
                .anthropic_base_url(bad)
                .unwrap_err();
            assert!(
                err.to_string().contains("not an absolute http(s) URL"),
                "{err}"
            );
        }
    }
}
