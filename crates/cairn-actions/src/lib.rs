//! Ready-made integration actions for Cairn workflows: Slack, a generic HTTP request, email
//! over SMTP, GitHub issues and comments. Call them directly as steps; never wrap them in an
//! action of your own.
//!
//! ```no_run
//! # use std::sync::LazyLock;
//! # use cairn_engine::{Registry, Scope, Workflow, WorkflowCtx};
//! use cairn_actions::slack::{SEND_MESSAGE, SendMessage, SentMessage};
//!
//! static NOTIFY: LazyLock<Workflow<SendMessage, SentMessage>> = LazyLock::new(|| {
//!     Workflow::new("notify").run(|input: SendMessage, _ctx: WorkflowCtx| async move {
//!         Ok(SEND_MESSAGE.run(input).scope(Scope::User).await?)
//!     })
//! });
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = cairn_actions::register(Registry::new().workflow(&NOTIFY))
//!     .resource(cairn_actions::Config::from_env()?);
//! # Ok(()) }
//! ```
//!
//! Each provider module has the same parts in the same order: its credential, its typed
//! inputs and outputs, its actions, and its error mapping (which provider errors are fatal,
//! which are retried, and after how long). Every action declares its credential, sends
//! `User-Agent: cairn`, has a timeout, honours `Retry-After`, and never puts a secret in an
//! error. [`Config`] (a registry resource) sets the base URLs, the HTTP client and the
//! timeouts. `docs/integrations.md` has the tables.
//!
//! Cargo feature `email` (on by default) adds the SMTP action and its dependency, lettre;
//! without it the crate needs only the HTTP client.

pub mod config;
#[cfg(feature = "email")]
pub mod email;
pub mod github;
pub mod http;
pub mod slack;
pub mod transport;

use std::time::Duration;

use cairn_engine::{Registry, Retry};

pub use config::{Config, ConfigError};

/// The engine-side limit of one attempt of a one-request action.
const ACTION_TIMEOUT: Duration = Duration::from_secs(60);
/// The engine-side limit of one attempt of an action that may make many requests.
const LONG_ACTION_TIMEOUT: Duration = Duration::from_secs(300);

/// The integration actions' retry policy: 5 attempts, backing off from 2 s to at most 60 s
/// (a provider's `Retry-After` replaces the backoff).
fn retry_policy() -> Retry {
    Retry::exponential()
        .max_attempts(5)
        .initial_backoff(Duration::from_secs(2))
        .max_backoff(Duration::from_secs(60))
}

/// Registers every integration action (and so their credential types, for
/// `credentials set`). Workflows call the actions without this; registering lists them
/// (`workflows list`, tools) and lets credentials of their types be set.
pub fn register(registry: Registry) -> Registry {
    let registry = slack::register(registry);
    let registry = http::register(registry);
    #[cfg(feature = "email")]
    let registry = email::register(registry);
    github::register(registry)
}

#[cfg(all(test, feature = "email"))]
mod tests {
    use super::*;

    #[test]
    fn register_lists_every_action_and_its_credential_type() {
        let registry = register(Registry::new());
        registry.check().expect("usable definitions");
        let slugs: Vec<&str> = registry.actions().map(|a| a.slug.as_str()).collect();
        assert_eq!(
            slugs,
            [
                "email-send",
                "github-add-comment",
                "github-create-issue",
                "http-request",
                "slack-list-channels",
                "slack-send-message",
            ]
        );
        let keys: Vec<&str> = registry.credentials().map(|c| c.key()).collect();
        assert_eq!(keys, ["github", "http", "slack", "smtp"]);
        let secrets: Vec<&str> = registry
            .credentials()
            .flat_map(|c| c.fields().iter())
            .filter(|(_, field)| field.is_secret())
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(
            secrets,
            [
                "token",
                "apiKey",
                "basicPassword",
                "bearerToken",
                "botToken",
                "password"
            ]
        );
    }
}
