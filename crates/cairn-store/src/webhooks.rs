//! The webhook deliveries log: one row per delivery to a known endpoint, whatever its
//! answer (a started run, a duplicate, an ignored event, a refused signature, an oversized
//! or malformed body), with its HTTP status, a reason and the run it names. Never the body,
//! its headers or a signing secret: the log says what happened, not what was sent.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::RunId;

/// One logged delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// The endpoint it was posted to (`POST /triggers/{endpoint}`).
    pub endpoint: String,
    /// When it was received (unix ms).
    pub received_at_ms: i64,
    /// The HTTP status it was answered with.
    pub status: u16,
    /// What became of it, as a slug: `started`, `duplicate`, `ignored`, `challenge`, or the
    /// refusal's problem slug (`invalid_signature`, `payload_too_large`, …).
    pub outcome: String,
    /// Why, in words, for a refusal (the error's message: no body, no secret); empty when it
    /// was accepted.
    pub reason: String,
    /// The provider's delivery id, once the signature was verified.
    pub delivery_id: Option<String>,
    /// The run it started or named (a duplicate names the first delivery's run).
    pub run_id: Option<RunId>,
}

/// Most deliveries kept per endpoint; older ones are dropped as new ones are recorded.
pub const DELIVERIES_KEPT: usize = 1_000;
