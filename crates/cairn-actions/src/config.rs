//! The actions' shared configuration: each provider's base URL, one HTTP client, timeouts.
//! An application registers it as a resource (`Registry::resource(Config::from_env()?)`);
//! without one, the actions use the defaults.

use std::{
    sync::{Arc, LazyLock, Once},
    time::Duration,
};

use cairn_engine::{ActionCtx, ActionError};
use reqwest::Url;

/// Slack's Web API.
pub const DEFAULT_SLACK_BASE_URL: &str = "https://slack.com/api";
/// GitHub's REST API.
pub const DEFAULT_GITHUB_BASE_URL: &str = "https://api.github.com";
/// The variable [`Config::from_env`] reads Slack's base URL from.
pub const SLACK_BASE_URL_VAR: &str = "CAIRN_SLACK_BASE_URL";
/// The variable [`Config::from_env`] reads GitHub's base URL from.
pub const GITHUB_BASE_URL_VAR: &str = "CAIRN_GITHUB_BASE_URL";

/// How long one HTTP request may take by default, from connecting to the last byte.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long each SMTP command may take by default.
const DEFAULT_SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest response body read by default (the engine's default payload limit).
const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Why a [`Config`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A base URL is not an absolute `http` or `https` URL.
    #[error(
        "{what} {url:?} is not an absolute http(s) URL ({reason}); give one such as https://api.example.com/v1"
    )]
    BaseUrl {
        /// Which setting (and where it came from).
        what: String,
        /// The value given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built (its TLS set-up failed).
    #[error("the HTTP client could not be built: {0}")]
    Client(String),
}

/// The integration actions' configuration, shared through the registry:
/// `Registry::new().resource(Config::from_env()?)`. Without it the actions use
/// [`Config::new`]'s defaults.
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) slack_base_url: Url,
    pub(crate) github_base_url: Url,
    pub(crate) client: reqwest::Client,
    pub(crate) request_timeout: Duration,
    pub(crate) smtp_timeout: Duration,
    pub(crate) max_response_bytes: usize,
}

impl Config {
    /// The defaults: the providers' public APIs, a 30 s request timeout, responses up to
    /// 1 MiB.
    pub fn new() -> Result<Config, ConfigError> {
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(crate::transport::USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|err| ConfigError::Client(err.without_url().to_string()))?;
        Ok(Config {
            slack_base_url: base_url("Slack's base URL", DEFAULT_SLACK_BASE_URL)?,
            github_base_url: base_url("GitHub's base URL", DEFAULT_GITHUB_BASE_URL)?,
            client,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            smtp_timeout: DEFAULT_SMTP_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        })
    }

    /// The defaults, with the base URLs in `CAIRN_SLACK_BASE_URL` and `CAIRN_GITHUB_BASE_URL`
    /// where they are set (a proxy, GitHub Enterprise, a local test server).
    pub fn from_env() -> Result<Config, ConfigError> {
        let mut config = Config::new()?;
        if let Ok(url) = std::env::var(SLACK_BASE_URL_VAR) {
            config.slack_base_url = base_url(SLACK_BASE_URL_VAR, &url)?;
        }
        if let Ok(url) = std::env::var(GITHUB_BASE_URL_VAR) {
            config.github_base_url = base_url(GITHUB_BASE_URL_VAR, &url)?;
        }
        Ok(config)
    }

    /// Sends Slack calls to `url` instead of `https://slack.com/api`.
    pub fn slack_base_url(mut self, url: &str) -> Result<Config, ConfigError> {
        self.slack_base_url = base_url("Slack's base URL", url)?;
        Ok(self)
    }

    /// Sends GitHub calls to `url` instead of `https://api.github.com` (GitHub Enterprise:
    /// `https://HOST/api/v3`).
    pub fn github_base_url(mut self, url: &str) -> Result<Config, ConfigError> {
        self.github_base_url = base_url("GitHub's base URL", url)?;
        Ok(self)
    }

    /// How long one HTTP request may take, from connecting to the last byte of the answer
    /// (default 30 s). A request that takes longer fails its attempt, which is retried.
    pub fn request_timeout(mut self, timeout: Duration) -> Config {
        self.request_timeout = timeout;
        self
    }

    /// How long each SMTP command may take (default 30 s).
    pub fn smtp_timeout(mut self, timeout: Duration) -> Config {
        self.smtp_timeout = timeout;
        self
    }

    /// The largest response body an action reads (default 1 MiB); a larger one fails the
    /// step.
    pub fn max_response_bytes(mut self, bytes: usize) -> Config {
        self.max_response_bytes = bytes;
        self
    }

    /// Uses `client` for every HTTP request (proxies, extra root certificates). The actions
    /// still set their own `User-Agent`, authorization and timeouts per request.
    pub fn client(mut self, client: reqwest::Client) -> Config {
        self.client = client;
        self
    }
}

/// The configuration an attempt uses: the registered one, else the defaults.
pub(crate) fn of(ctx: &ActionCtx) -> Result<Arc<Config>, ActionError> {
    static DEFAULT: LazyLock<Result<Arc<Config>, String>> =
        LazyLock::new(|| Config::new().map(Arc::new).map_err(|err| err.to_string()));
    if let Ok(config) = ctx.resource::<Config>() {
        return Ok(config);
    }
    DEFAULT.clone().map_err(ActionError::fatal)
}

/// Installs rustls' ring provider as the process default, once (reqwest is built without
/// one; another crate may have installed it already, which is as good). Call it before
/// building a `reqwest::Client` of your own.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
    });
}

/// `url` checked as a base URL (absolute `http(s)`, no query or fragment), without a trailing
/// slash; `what` names the setting in the error. Shared with other integration crates.
pub fn base_url(what: &str, url: &str) -> Result<Url, ConfigError> {
    let error = |reason: String| ConfigError::BaseUrl {
        what: what.to_owned(),
        url: url.to_owned(),
        reason,
    };
    let parsed = Url::parse(url.trim_end_matches('/')).map_err(|err| error(err.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
        return Err(error(format!("the scheme is {:?}", parsed.scheme())));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(error("it has a query or a fragment".to_owned()));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_lose_their_trailing_slash() {
        let config = Config::new()
            .unwrap()
            .slack_base_url("http://127.0.0.1:9/api/")
            .unwrap();
        assert_eq!(config.slack_base_url.as_str(), "http://127.0.0.1:9/api");
        for bad in ["slack.com/api", "ftp://slack.com", "http://x/api?token=1"] {
            let err = Config::new().unwrap().github_base_url(bad).unwrap_err();
            assert!(
                err.to_string().contains("not an absolute http(s) URL"),
                "{err}"
            );
        }
    }
}
