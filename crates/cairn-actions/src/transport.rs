//! What every provider shares: the `Failure` a call ends in (its message, and whether a
//! retry may help and when), sending one HTTP request (timeout, `User-Agent`, cancellation, a
//! bounded body) and reading `Retry-After`. The small helpers other integration crates need
//! too (`cairn-llm`) are public: which statuses are retried, `Retry-After`, a URL shown
//! without its secrets, an excerpt of a body, an error's chain.

use std::{
    error::Error as StdError,
    fmt,
    time::{Duration, SystemTime},
};

use cairn_engine::{ActionCtx, ActionError};
use reqwest::{
    RequestBuilder, StatusCode,
    header::{HeaderMap, RETRY_AFTER, USER_AGENT as USER_AGENT_HEADER},
};

use crate::config::Config;

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = "cairn";
/// The longest wait a provider's `Retry-After` (or rate-limit reset) is honoured with.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// How much of a provider's answer an error message quotes.
const EXCERPT_CHARS: usize = 300;

/// Whether a failed call may succeed if made again, and after how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Retrying cannot help (bad credentials, a bad request, a missing resource).
    Never,
    /// A retry may help: after the delay the provider asked for, else the policy's backoff.
    After(Option<Duration>),
}

/// Why a call to a provider failed. Every message says which service and request, what it
/// answered, and (where it can) what to do; none holds a secret.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// The input cannot make a valid request.
    #[error("{0}")]
    Invalid(String),
    /// The request never got an answer: DNS, connection refused or reset, TLS.
    #[error("{service} could not be reached ({target}): {reason}")]
    Unreachable {
        /// The provider.
        service: &'static str,
        /// Method and URL (without its query).
        target: String,
        /// The transport's error chain.
        reason: String,
    },
    /// No complete answer within the request timeout.
    #[error("{service} did not answer within {after:?} ({target}); the limit is {setting}")]
    TimedOut {
        /// The provider.
        service: &'static str,
        /// Method and URL (without its query).
        target: String,
        /// The timeout.
        after: Duration,
        /// Where it is set.
        setting: &'static str,
    },
    /// The step was canceled (the run was, or its attempt timed out) before the answer.
    #[error("the attempt was canceled before {service} answered ({target})")]
    Canceled {
        /// The provider.
        service: &'static str,
        /// Method and URL (without its query).
        target: String,
    },
    /// The answer is larger than the configured limit.
    #[error(
        "{service} answered {target} with more than {limit} bytes; ask for less, or raise \
         cairn_actions::Config::max_response_bytes"
    )]
    TooLarge {
        /// The provider.
        service: &'static str,
        /// Method and URL (without its query).
        target: String,
        /// The limit.
        limit: usize,
    },
    /// An HTTP status that is an error.
    #[error("{service} answered {target} with HTTP {status}: {detail}")]
    Status {
        /// The provider.
        service: &'static str,
        /// Method and URL (without its query).
        target: String,
        /// The status.
        status: StatusCode,
        /// The provider's own message (and a hint).
        detail: String,
        /// Whether to retry.
        retry: Retry,
    },
    /// The provider said no in its own terms: an error code in a successful HTTP answer
    /// (Slack's `ok: false`), an SMTP reply.
    #[error("{service} refused {operation}: {reason}{hint}")]
    Refused {
        /// The provider.
        service: &'static str,
        /// What was asked (an API method, the login).
        operation: &'static str,
        /// The provider's answer (an error code, a reply).
        reason: String,
        /// What to do about it, starting with "; " (or empty).
        hint: String,
        /// Whether to retry.
        retry: Retry,
    },
    /// The answer is not what the provider documents.
    #[error("{service} answered {target} with a body that is not the documented JSON: {reason}")]
    Unexpected {
        /// The provider.
        service: &'static str,
        /// Method and URL (without its query).
        target: String,
        /// What did not fit.
        reason: String,
    },
    /// An error the engine made (a missing credential field, a misconfigured resource).
    #[error("{}", .0.message())]
    Engine(ActionError),
}

impl From<ActionError> for Failure {
    fn from(error: ActionError) -> Self {
        Failure::Engine(error)
    }
}

impl Failure {
    /// Whether a retry may help, and when.
    fn retry(&self) -> Retry {
        match self {
            Failure::Invalid(_) | Failure::TooLarge { .. } | Failure::Unexpected { .. } => {
                Retry::Never
            }
            Failure::Unreachable { .. } | Failure::TimedOut { .. } | Failure::Canceled { .. } => {
                Retry::After(None)
            }
            Failure::Status { retry, .. } | Failure::Refused { retry, .. } => *retry,
            Failure::Engine(error) if error.is_retryable() => Retry::After(error.retry_delay()),
            Failure::Engine(_) => Retry::Never,
        }
    }

    /// The step's error: fatal or retryable (after the provider's delay), with this message.
    pub(crate) fn into_action(self) -> ActionError {
        let retry = self.retry();
        if let Failure::Engine(error) = self {
            return error;
        }
        let message = self.to_string();
        match retry {
            Retry::Never => ActionError::fatal(message),
            Retry::After(None) => ActionError::retryable(message),
            Retry::After(Some(delay)) => ActionError::retryable(message).retry_after(delay),
        }
    }
}

/// A provider's answer, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    /// Method and URL (without its query), for messages.
    pub(crate) target: String,
    /// The status.
    pub(crate) status: StatusCode,
    /// The headers.
    pub(crate) headers: HeaderMap,
    /// The body.
    pub(crate) body: Vec<u8>,
}

impl Reply {
    /// The body as JSON of type `T`, or why it is not.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(
        &self,
        service: &'static str,
    ) -> Result<T, Failure> {
        serde_json::from_slice(&self.body).map_err(|err| Failure::Unexpected {
            service,
            target: self.target.clone(),
            reason: format!("{err} (the body begins {:?})", excerpt(&self.body)),
        })
    }

    /// A failure for this answer's status: retryable after `Retry-After` for 408, 429 and
    /// 5xx, fatal otherwise.
    pub(crate) fn status_failure(&self, service: &'static str, detail: String) -> Failure {
        let retry = if is_retryable_status(self.status) {
            Retry::After(retry_after(&self.headers))
        } else {
            Retry::Never
        };
        Failure::Status {
            service,
            target: self.target.clone(),
            status: self.status,
            detail,
            retry,
        }
    }
}

/// Sends `request` with the configured timeout and `User-Agent: cairn`, and reads the answer
/// (up to the configured size). Stops early if the attempt is canceled. Any status is
/// returned: the provider decides which are errors.
pub(crate) async fn send(
    ctx: &ActionCtx,
    config: &Config,
    service: &'static str,
    request: RequestBuilder,
) -> Result<Reply, Failure> {
    let request = request
        .header(USER_AGENT_HEADER, USER_AGENT)
        .timeout(config.request_timeout)
        .build()
        .map_err(|err| {
            Failure::Invalid(format!(
                "the request to {service} cannot be built: {}",
                chain(&err.without_url())
            ))
        })?;
    let target = target(request.method(), request.url());
    let exchange = async {
        let transport = |err: reqwest::Error| {
            if err.is_timeout() {
                Failure::TimedOut {
                    service,
                    target: target.clone(),
                    after: config.request_timeout,
                    setting: "cairn_actions::Config::request_timeout",
                }
            } else {
                Failure::Unreachable {
                    service,
                    target: target.clone(),
                    reason: chain(&err.without_url()),
                }
            }
        };
        let mut response = config.client.execute(request).await.map_err(transport)?;
        let too_large = || Failure::TooLarge {
            service,
            target: target.clone(),
            limit: config.max_response_bytes,
        };
        let limit = config.max_response_bytes;
        if response
            .content_length()
            .is_some_and(|length| length > limit as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply {
            target: target.clone(),
            status: response.status(),
            headers: response.headers().clone(),
            body,
        })
    };
    tokio::select! {
        biased;
        () = ctx.cancellation().cancelled() => Err(Failure::Canceled { service, target: target.clone() }),
        reply = exchange => reply,
    }
}

/// `base` with `segments` appended, each percent-encoded as one path segment.
pub fn endpoint(base: &reqwest::Url, segments: &[&str]) -> reqwest::Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// `METHOD url` without the URL's user info, query or fragment (they may carry a key).
pub fn target(method: impl fmt::Display, url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _no_user_info = shown.set_username("").and(shown.set_password(None));
    format!("{method} {shown}")
}

/// Whether a retry may help with this status: 408, 429 and 5xx.
pub fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// The delay a `Retry-After` header asks for (seconds or an HTTP date), at most
/// [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let delay = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(SystemTime::now())
            .unwrap_or_default(),
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// The start of a body, as text, for an error message.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None if text.is_empty() => "(an empty body)".to_owned(),
        None => text.to_owned(),
    }
}

/// An error and its sources, joined with ": " (a source its parent already quotes is left
/// out).
pub fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_dates_and_is_capped() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("99999"));
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&soon).unwrap());
        let delay = retry_after(&headers).unwrap();
        assert!(delay > Duration::from_secs(100) && delay <= Duration::from_secs(120));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn failures_say_fatal_or_retryable() {
        let status = |code: u16| Failure::Status {
            service: "X",
            target: "GET http://x/".into(),
            status: StatusCode::from_u16(code).unwrap(),
            detail: "no".into(),
            retry: if is_retryable_status(StatusCode::from_u16(code).unwrap()) {
                Retry::After(Some(Duration::from_secs(2)))
            } else {
                Retry::Never
            },
        };
        let fatal = status(404).into_action();
        assert!(!fatal.is_retryable());
        assert_eq!(
            fatal.message(),
            "X answered GET http://x/ with HTTP 404 Not Found: no"
        );
        for code in [408, 429, 500, 503] {
            let retryable = status(code).into_action();
            assert!(retryable.is_retryable(), "{code}");
            assert_eq!(retryable.retry_delay(), Some(Duration::from_secs(2)));
        }
        let url = reqwest::Url::parse("https://me:pw@h/p?key=secret#f").unwrap();
        assert_eq!(target("GET", &url), "GET https://h/p");
        assert_eq!(excerpt(b"  "), "(an empty body)");
        assert!(excerpt("é".repeat(400).as_bytes()).ends_with('…'));
    }
}
