//! Webhook deliveries, sans-IO: is a delivery signed by one of the endpoint's secrets (raw
//! bytes, before any parsing; constant-time compares; timestamps within five minutes of the
//! engine's clock either way), and which delivery id names it in its idempotency key
//! `wh:{endpoint}:{delivery id}`. The server reads the bytes and the engine starts the run.

use std::collections::BTreeMap;

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use hmac::{Hmac, KeyInit, Mac};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How far a signed timestamp may be from the engine's clock, either way.
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 5 * 60;

/// The longest delivery id taken from a delivery; a longer one (or one with control
/// characters) is not used and the body's SHA-256 names the delivery instead.
pub const MAX_DELIVERY_ID_LEN: usize = 128;

/// A delivery's headers: names lower-case, values that are not text left out.
pub type Headers = BTreeMap<String, String>;

/// How a provider signs its deliveries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Stripe: `Stripe-Signature: t={unix s},v1={hex}` (several `v1` while Stripe rolls a
    /// secret), HMAC-SHA256 of `{t}.{body}`; the delivery id is the event's `id`.
    Stripe,
    /// GitHub: `X-Hub-Signature-256: sha256={hex}`, HMAC-SHA256 of the body (no timestamp);
    /// the delivery id is `X-GitHub-Delivery`.
    GitHub,
    /// Standard Webhooks (Svix, Resend, …): `webhook-id`, `webhook-timestamp` and
    /// `webhook-signature: v1,{base64} …`, HMAC-SHA256 of `{id}.{ts}.{body}` with the
    /// base64 key after `whsec_`; the delivery id is `webhook-id`.
    StandardWebhooks,
    /// Slack: `X-Slack-Signature: v0={hex}` of `v0:{ts}:{body}` with
    /// `X-Slack-Request-Timestamp`; the delivery id is the event's `event_id`.
    Slack,
    /// Any provider that puts the hex HMAC-SHA256 of the body in one header.
    Hmac {
        /// The header (lower-case).
        header: String,
        /// What comes before the hex digest (`sha256=`, or empty).
        prefix: String,
        /// The header naming the delivery, if the provider sends one.
        id_header: Option<String>,
    },
}

/// Why a delivery is refused before it is parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header the scheme needs is absent.
    #[error(
        "the delivery has no {header} header; this endpoint only accepts deliveries signed by \
         its provider"
    )]
    MissingSignature {
        /// The header.
        header: String,
    },
    /// No signature matches any of the endpoint's secrets (or the header is malformed).
    #[error(
        "the delivery's signature does not match ({reason}); check that the endpoint's signing \
         secret is the one the provider shows, and that nothing re-encodes the body on the way"
    )]
    InvalidSignature {
        /// What did not match.
        reason: String,
    },
    /// The signed timestamp is over five minutes from the server's clock.
    #[error(
        "the delivery was signed at {timestamp} (unix seconds), {} s from the server's clock \
         (tolerance {TIMESTAMP_TOLERANCE_SECS} s); a replayed or delayed delivery is refused, \
         check the server's clock if every delivery is",
        (now - timestamp).abs()
    )]
    TimestampOutOfTolerance {
        /// The signed timestamp.
        timestamp: i64,
        /// The server's clock, unix seconds.
        now: i64,
    },
    /// A secret cannot be used with the scheme (a Standard Webhooks key that is not base64).
    #[error("the endpoint's signing secret cannot be used: {0}")]
    BadSecret(String),
}

impl Scheme {
    /// Checks that `body` with `headers` was signed with one of `secrets`, at most
    /// [`TIMESTAMP_TOLERANCE_SECS`] from `now_ms` when the scheme signs a timestamp.
    pub fn verify(
        &self,
        headers: &Headers,
        body: &[u8],
        secrets: &[&str],
        now_ms: i64,
    ) -> Result<(), VerifyError> {
        let keys: Vec<Vec<u8>> = secrets
            .iter()
            .map(|secret| self.key(secret))
            .collect::<Result<_, _>>()?;
        let (timestamp, signatures, signed): (Option<&str>, Vec<Vec<u8>>, Vec<&[u8]>) = match self {
            Scheme::Stripe => {
                let header = required(headers, "stripe-signature")?;
                let mut timestamp = None;
                let mut signatures = Vec::new();
                for (name, value) in header.split(',').filter_map(|part| part.split_once('=')) {
                    match name.trim() {
                        "t" => timestamp = Some(value.trim()),
                        "v1" => signatures.extend(from_hex(value.trim())),
                        _ => {}
                    }
                }
                let timestamp = timestamp.ok_or_else(|| invalid("Stripe-Signature has no t="))?;
                (
                    Some(timestamp),
                    signatures,
                    vec![timestamp.as_bytes(), b".", body],
                )
            }
            Scheme::GitHub => {
                let header = required(headers, "x-hub-signature-256")?;
                let digest = header.strip_prefix("sha256=").and_then(from_hex);
                (None, digest.into_iter().collect(), vec![body])
            }
            Scheme::StandardWebhooks => {
                let id = required(headers, "webhook-id")?;
                let timestamp = required(headers, "webhook-timestamp")?;
                let header = required(headers, "webhook-signature")?;
                let signatures = header
                    .split_whitespace()
                    .filter_map(|part| part.strip_prefix("v1,"))
                    .filter_map(|b64| BASE64.decode(b64).ok())
                    .collect();
                let signed = vec![id.as_bytes(), b".", timestamp.as_bytes(), b".", body];
                (Some(timestamp), signatures, signed)
            }
            Scheme::Slack => {
                let timestamp = required(headers, "x-slack-request-timestamp")?;
                let header = required(headers, "x-slack-signature")?;
                let digest = header.strip_prefix("v0=").and_then(from_hex);
                let signed = vec![b"v0:".as_slice(), timestamp.as_bytes(), b":", body];
                (Some(timestamp), digest.into_iter().collect(), signed)
            }
            Scheme::Hmac { header, prefix, .. } => {
                let value = required(headers, header)?;
                let digest = value.strip_prefix(prefix.as_str()).and_then(from_hex);
                (None, digest.into_iter().collect(), vec![body])
            }
        };
        if signatures.is_empty() {
            return Err(invalid("no signature of the expected form"));
        }
        let matched = keys.iter().any(|key| {
            let expected = hmac_sha256(key, &signed);
            // Every candidate is compared in full: no early exit on the first match.
            signatures
                .iter()
                .fold(0u8, |any, given| any | expected.ct_eq(given).unwrap_u8())
                == 1
        });
        if !matched {
            return Err(invalid("no signature matches the endpoint's secrets"));
        }
        if let Some(timestamp) = timestamp {
            let timestamp: i64 = timestamp
                .parse()
                .map_err(|_| invalid("the timestamp is not unix seconds"))?;
            let now = now_ms.div_euclid(1000);
            if (now - timestamp).abs() > TIMESTAMP_TOLERANCE_SECS {
                return Err(VerifyError::TimestampOutOfTolerance { timestamp, now });
            }
        }
        Ok(())
    }

    /// The HMAC key a secret stands for: its bytes, or for Standard Webhooks the base64
    /// after `whsec_`.
    fn key(&self, secret: &str) -> Result<Vec<u8>, VerifyError> {
        match self {
            Scheme::StandardWebhooks => BASE64
                .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
                .map_err(|_| {
                    VerifyError::BadSecret(
                        "a Standard Webhooks secret is `whsec_` followed by base64; copy it \
                         from the provider again"
                            .to_owned(),
                    )
                }),
            _ => Ok(secret.as_bytes().to_vec()),
        }
    }

    /// The delivery's id as the provider names it, else `sha256:{hex of the body}`.
    pub fn delivery_id(&self, headers: &Headers, body: &[u8], json: &Value) -> String {
        let from_body = |field: &str| json.get(field).and_then(Value::as_str);
        let named = match self {
            Scheme::Stripe => from_body("id"),
            Scheme::Slack => from_body("event_id"),
            Scheme::GitHub => headers.get("x-github-delivery").map(String::as_str),
            Scheme::StandardWebhooks => headers.get("webhook-id").map(String::as_str),
            Scheme::Hmac { id_header, .. } => id_header
                .as_ref()
                .and_then(|name| headers.get(name))
                .map(String::as_str),
        };
        match named.filter(|id| usable_id(id)) {
            Some(id) => id.to_owned(),
            None => body_id(body),
        }
    }
}

/// `sha256:` and the hex SHA-256 of `body`: the delivery id of a delivery without one.
pub fn body_id(body: &[u8]) -> String {
    format!("sha256:{}", to_hex(&Sha256::digest(body)))
}

/// A delivery id short enough for an idempotency key and printable.
fn usable_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_DELIVERY_ID_LEN && !id.chars().any(char::is_control)
}

/// A verified delivery, as a transform sees it: its headers, raw body and parsed JSON.
#[derive(Clone, Debug)]
pub struct WebhookRequest {
    headers: Headers,
    body: Vec<u8>,
    json: Value,
    delivery_id: String,
}

impl WebhookRequest {
    /// A verified delivery whose body parsed as `json`.
    pub fn new(headers: Headers, body: Vec<u8>, json: Value, delivery_id: String) -> Self {
        WebhookRequest {
            headers,
            body,
            json,
            delivery_id,
        }
    }

    /// The body as `T`; a mismatch is a [`TransformError`] naming where (422: the provider
    /// retries).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, TransformError> {
        T::deserialize(&self.json).map_err(|err| {
            TransformError::new(format!("the body does not have the expected shape: {err}"))
        })
    }

    /// The body as JSON.
    pub fn value(&self) -> &Value {
        &self.json
    }

    /// The raw body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// A header by name (any case), if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The delivery id in the run's idempotency key.
    pub fn delivery_id(&self) -> &str {
        &self.delivery_id
    }

    /// The same delivery named `id` instead, if `id` is usable in a key (1 to 128
    /// printable characters); else unchanged.
    pub fn named(mut self, id: Option<String>) -> Self {
        if let Some(id) = id.filter(|id| usable_id(id)) {
            self.delivery_id = id;
        }
        self
    }
}

/// Why a transform refused a delivery (answered 422, so the provider retries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransformError(String);

impl TransformError {
    /// A refusal saying what was wrong.
    pub fn new(message: impl Into<String>) -> Self {
        TransformError(message.into())
    }
}

fn required<'a>(headers: &'a Headers, name: &str) -> Result<&'a str, VerifyError> {
    headers
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| VerifyError::MissingSignature {
            header: name.to_owned(),
        })
}

fn invalid(reason: &str) -> VerifyError {
    VerifyError::InvalidSignature {
        reason: reason.to_owned(),
    }
}

/// HMAC-SHA256 of the concatenated `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // An HMAC key may have any length: new_from_slice cannot fail for it.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).ok())
        .collect()
}

#[cfg(test)]
#[path = "webhook_tests.rs"]
mod tests;
