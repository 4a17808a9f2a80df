//! One model call over HTTP: a JSON `POST` with the key in a header marked sensitive, the
//! configured timeout, the attempt's cancellation and a bounded answer; its failure mapped to
//! the step's error: 408, 429 and 5xx (and no answer) retryable after `Retry-After`, other
//! statuses fatal with the provider's own message. No message holds a key.

use cairn_actions::transport::{chain, excerpt, is_retryable_status, retry_after, target};
use cairn_engine::{ActionCtx, ActionError};
use reqwest::{
    Url,
    header::{CONTENT_TYPE, HeaderName, HeaderValue},
};
use serde_json::Value;

use crate::config::LlmConfig;

/// A JSON request to a provider.
pub(crate) struct Post<'a> {
    /// The provider, for messages.
    pub(crate) service: &'a str,
    /// Where.
    pub(crate) url: Url,
    /// Headers, the key's among them (sent marked sensitive, never shown).
    pub(crate) headers: Vec<(HeaderName, String)>,
    /// The body.
    pub(crate) body: &'a Value,
}

/// Sends `post` and returns the answer's JSON body, or the step's error.
pub(crate) async fn send(
    ctx: &ActionCtx,
    config: &LlmConfig,
    post: Post<'_>,
) -> Result<Value, ActionError> {
    let Post {
        service,
        url,
        headers,
        body,
    } = post;
    let target = target("POST", &url);
    let mut request = config
        .client
        .post(url)
        .timeout(config.request_timeout)
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_string());
    for (name, value) in headers {
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            ActionError::fatal(format!(
                "the {name} header for {service} holds characters a header cannot; check the credential's fields"
            ))
        })?;
        value.set_sensitive(true);
        request = request.header(name, value);
    }
    let exchange = async {
        let failed = |err: reqwest::Error| {
            if err.is_timeout() {
                ActionError::retryable(format!(
                    "{service} did not answer within {:?} ({target}); the limit is cairn_llm::LlmConfig::request_timeout",
                    config.request_timeout
                ))
            } else {
                ActionError::retryable(format!(
                    "{service} could not be reached ({target}): {}",
                    chain(&err.without_url())
                ))
            }
        };
        let mut response = request.send().await.map_err(failed)?;
        let limit = config.max_response_bytes;
        let too_large = || {
            ActionError::fatal(format!(
                "{service} answered {target} with more than {limit} bytes; lower max_tokens, or raise cairn_llm::LlmConfig::max_response_bytes"
            ))
        };
        if response
            .content_length()
            .is_some_and(|length| length > limit as u64)
        {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if bytes.len() + chunk.len() > limit {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((response.status(), response.headers().clone(), bytes))
    };
    let (status, headers, bytes) = tokio::select! {
        biased;
        () = ctx.cancellation().cancelled() => {
            return Err(ActionError::retryable(format!(
                "the attempt was canceled before {service} answered ({target})"
            )));
        }
        answer = exchange => answer?,
    };
    if !status.is_success() {
        let message = format!(
            "{service} answered {target} with HTTP {status}: {}",
            provider_message(&bytes)
        );
        if !is_retryable_status(status) {
            return Err(ActionError::fatal(message));
        }
        let error = ActionError::retryable(message);
        return Err(match retry_after(&headers) {
            Some(delay) => error.retry_after(delay),
            None => error,
        });
    }
    serde_json::from_slice(&bytes).map_err(|err| {
        ActionError::fatal(format!(
            "{service} answered {target} with a body that is not JSON: {err} (it begins {:?})",
            excerpt(&bytes)
        ))
    })
}

/// The provider's explanation in an error body: `error.message` (both providers' shape), else
/// the body's start.
fn provider_message(bytes: &[u8]) -> String {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|body| {
            let error = body.get("error")?;
            error
                .get("message")
                .or(Some(error))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| excerpt(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_providers_message_is_quoted() {
        let openai = br#"{"error": {"message": "Invalid model", "type": "invalid_request_error"}}"#;
        assert_eq!(provider_message(openai), "Invalid model");
        let ollama = br#"{"error": "model not found"}"#;
        assert_eq!(provider_message(ollama), "model not found");
        assert_eq!(provider_message(b"Bad Gateway"), "Bad Gateway");
    }
}
