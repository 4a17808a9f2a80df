//! What a poll function gets and returns: [`PollCtx`] (the source, an HTTP client, the
//! application's resources, the credentials the source declared, the engine's clock for
//! `Retry-After`), [`Polled`] (the items and the next cursor) and [`PollError`] (what went
//! wrong, and how long the server asked to wait).

use std::{error::Error as StdError, sync::Arc, time::Duration};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::base::{
    credential::{Credential, ResolvedCredential},
    error::ActionError,
    resources::Resources,
};

/// What a poll function knows: which source it polls, an HTTP client, the resources the
/// application registered, and the credentials the source declared, resolved for its owner.
#[derive(Clone)]
pub struct PollCtx {
    pub(crate) source: String,
    pub(crate) http: reqwest::Client,
    pub(crate) resources: Resources,
    pub(crate) credentials: Arc<[ResolvedCredential]>,
    pub(crate) now_ms: i64,
    pub(crate) cancel: CancellationToken,
}

impl PollCtx {
    /// The source's name.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// An HTTP client (rustls; shared by every poll of the process, so connections are
    /// reused).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The resource of type `T` the application registered (`Registry::resource`); a missing
    /// one is an error naming the type.
    pub fn resource<T: Send + Sync + 'static>(&self) -> Result<Arc<T>, PollError> {
        self.resources.get::<T>().ok_or_else(|| {
            PollError::new(format!(
                "no resource of type {} is registered; add it with Registry::resource(..)",
                std::any::type_name::<T>()
            ))
        })
    }

    /// The credential of type `credential`, resolved for the source's owner; the source must
    /// declare it with [`PollSource::credential`](crate::PollSource::credential).
    pub fn credential(&self, credential: &Credential) -> Result<&ResolvedCredential, PollError> {
        self.credentials
            .iter()
            .find(|resolved| resolved.key() == credential.key())
            .ok_or_else(|| {
                PollError::new(format!(
                    "poll source {:?} did not declare the credential {:?}; add \
                     `.credential(..)` to its PollSource",
                    self.source,
                    credential.key()
                ))
            })
    }

    /// How long an HTTP `Retry-After` value (seconds or an HTTP date, read on the engine's
    /// clock) asks to wait; `None` if it is neither.
    pub fn retry_after(&self, value: &str) -> Option<Duration> {
        cairn_triggers::poll::parse_retry_after(value, self.now_ms)
    }

    /// Fired when the poll timed out or the worker stops: stop early.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }
}

impl std::fmt::Debug for PollCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollCtx")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// What one poll found: the items (oldest first, as they should start) and the cursor the
/// next poll starts from (stored only if the poll's commit lands).
#[derive(Clone, Debug)]
pub struct Polled<T> {
    /// The items.
    pub items: Vec<T>,
    /// The next poll's cursor (`None`: none).
    pub cursor: Option<Value>,
}

impl<T> Polled<T> {
    /// The items, and the cursor the next poll gets.
    pub fn new(items: Vec<T>, cursor: Option<Value>) -> Polled<T> {
        Polled { items, cursor }
    }
}

/// Why a poll failed: nothing it found is recorded, the cursor stays, and the source is
/// polled again after a backoff (at least `retry_after`). `?` on any error makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollError {
    message: String,
    retry_after: Option<Duration>,
}

impl PollError {
    /// A failure described by `message` (no secrets: it is stored and shown).
    pub fn new(message: impl Into<String>) -> PollError {
        PollError {
            message: message.into(),
            retry_after: None,
        }
    }

    /// The server asked not to be polled again before `wait` (HTTP 429/503 `Retry-After`;
    /// [`PollCtx::retry_after`] reads the header).
    pub fn retry_after(mut self, wait: Option<Duration>) -> PollError {
        self.retry_after = wait;
        self
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// How long the server asked to wait, if it did.
    pub fn wait(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl std::fmt::Display for PollError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for PollError {
    fn from(error: E) -> PollError {
        PollError::new(error.to_string())
    }
}

impl From<ActionError> for PollError {
    /// Keeps the message and the `Retry-After` an action error carries (the shared
    /// integrations' transports report HTTP failures as action errors).
    fn from(error: ActionError) -> PollError {
        PollError::new(error.message).retry_after(error.retry_after)
    }
}
