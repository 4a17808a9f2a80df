//! A webhook delivery, from raw bytes to a run, started once per delivery: the endpoint's
//! source, its signing secrets (the credential resolved for its owner), the signature checked
//! on the raw bytes, the body parsed, the transform, and the run started under the key
//! `wh:{endpoint}:{delivery id}` (trigger `webhook:{endpoint}:{delivery id}`), so a
//! duplicate delivery names the same run. No error starts anything.

use cairn_core::{Owner, Scope};
use cairn_triggers::{Headers, TransformError, VerifyError, WebhookRequest};
use serde_json::Value;

use cairn_triggers::Scheme;

use crate::{
    api::engine::{Engine, StartOptions},
    base::{credential::NeededCredential, error::EngineError},
    call::credentials::{CredentialPin, resolve},
    steps::webhook::Webhook,
};
use cairn_store::{RunId, WebhookDelivery};

/// What a delivery did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivered {
    /// It names this run: started now (`created`) or by an earlier delivery of it.
    Run {
        /// The run.
        run_id: RunId,
        /// `false` for a duplicate delivery.
        created: bool,
        /// The provider's id of the delivery (or `sha256:` of its body).
        delivery_id: String,
    },
    /// The transform ignored it.
    Ignored {
        /// The provider's id of the delivery (or `sha256:` of its body).
        delivery_id: String,
    },
    /// Slack's `url_verification` when the endpoint is set up: answered with its challenge,
    /// no run.
    Challenge(String),
}

/// Why a delivery started nothing.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// No webhook source has the endpoint.
    #[error("no webhook source has the endpoint {endpoint:?}; the endpoints are {known}")]
    UnknownEndpoint {
        /// The endpoint asked for.
        endpoint: String,
        /// The registered endpoints, comma-separated (or `none`).
        known: String,
    },
    /// Its signature does not verify.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The endpoint's signing secrets cannot be read (no credential set, or the vault is
    /// locked); the message names the credential type, never a value.
    #[error("webhook endpoint {endpoint:?} cannot read its signing secrets: {reason}")]
    Secrets {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The verified body is not JSON.
    #[error(
        "the body is not valid JSON: {message} at line {line}, column {column}; webhook \
         sources take JSON bodies"
    )]
    NotJson {
        /// serde's message.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// The transform refused the delivery.
    #[error("the webhook source's transform refused the delivery: {0}")]
    Transform(#[from] TransformError),
    /// Starting the run failed (an input that breaks the workflow's schema, the store).
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl Engine {
    /// Handles one delivery to `endpoint` (see the module docs): `body` is the raw bytes,
    /// `headers` their names in lower case.
    pub async fn deliver_webhook(
        &self,
        endpoint: &str,
        headers: Headers,
        body: Vec<u8>,
    ) -> Result<Delivered, WebhookError> {
        let webhook = self.webhook_source(endpoint)?;
        let owner = webhook.owner.clone().unwrap_or_default();
        if let Some(verifier) = &webhook.verifier {
            let secrets = self.signing_secrets(webhook, &owner).await?;
            let secrets: Vec<&str> = secrets.iter().map(|secret| secret.as_str()).collect();
            let now_ms = self.runtime.env.clock.now_ms();
            verifier.scheme.verify(&headers, &body, &secrets, now_ms)?;
        }
        let json: Value = serde_json::from_slice(&body).map_err(|err| WebhookError::NotJson {
            message: err
                .to_string()
                .split(" at line ")
                .next()
                .unwrap_or_default()
                .to_owned(),
            line: err.line(),
            column: err.column(),
        })?;
        if let Some(challenge) = slack_challenge(webhook, &json) {
            return Ok(Delivered::Challenge(challenge));
        }
        let delivery_id = match &webhook.verifier {
            Some(verifier) => verifier.scheme.delivery_id(&headers, &body, &json),
            None => cairn_triggers::webhook::body_id(&body),
        };
        let mut request = WebhookRequest::new(headers, body, json, delivery_id);
        if let Some(name) = &webhook.name_delivery {
            request = name.apply(request);
        }
        let delivery_id = request.delivery_id().to_owned();
        let Some(input) = (webhook.transform)(&request)? else {
            return Ok(Delivered::Ignored { delivery_id });
        };
        let options = StartOptions {
            idempotency_key: Some(format!("wh:{endpoint}:{delivery_id}")),
            trigger: Some(format!("webhook:{endpoint}:{delivery_id}")),
            execute_here: false,
            owner: Some(owner),
        };
        let started = self.start_json(&webhook.slug, input, options).await?;
        Ok(Delivered::Run {
            run_id: started.run_id,
            created: started.created,
            delivery_id,
        })
    }

    /// Logs a delivery to a known endpoint (see [`WebhookDelivery`]: never its body).
    pub async fn record_webhook_delivery(
        &self,
        delivery: WebhookDelivery,
    ) -> Result<(), EngineError> {
        Ok(self
            .runtime
            .env
            .store
            .record_webhook_delivery(delivery)
            .await?)
    }

    /// The newest `limit` logged deliveries to `endpoint`, newest first; an endpoint no
    /// source has is an error naming the endpoints there are.
    pub async fn webhook_deliveries(
        &self,
        endpoint: &str,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, WebhookError> {
        self.webhook_source(endpoint)?;
        let store = &self.runtime.env.store;
        Ok(store
            .webhook_deliveries(endpoint, limit)
            .await
            .map_err(EngineError::from)?)
    }

    /// The webhook source of `endpoint`, or the error naming the endpoints there are.
    pub(crate) fn webhook_source(&self, endpoint: &str) -> Result<&Webhook, WebhookError> {
        let registry = &self.runtime.registry;
        registry.webhook_at(endpoint).ok_or_else(|| {
            let known: Vec<&str> = registry.webhook_endpoints().collect();
            WebhookError::UnknownEndpoint {
                endpoint: endpoint.to_owned(),
                known: if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                },
            }
        })
    }

    /// `Ok` if a webhook source has `endpoint` (checked before a delivery's body is read).
    pub fn check_webhook_endpoint(&self, endpoint: &str) -> Result<(), WebhookError> {
        self.webhook_source(endpoint).map(|_| ())
    }

    /// The secret fields of the endpoint's credential, resolved for `owner` as a step's
    /// would be (its project's default, then its organization's).
    async fn signing_secrets(
        &self,
        webhook: &Webhook,
        owner: &Owner,
    ) -> Result<Vec<String>, WebhookError> {
        let Some(verifier) = &webhook.verifier else {
            return Ok(Vec::new());
        };
        let need = NeededCredential {
            credential: verifier.credential.clone(),
            scopes: vec![Scope::Project, Scope::Organization],
            optional: false,
        };
        let failed = |reason: String| WebhookError::Secrets {
            endpoint: webhook.endpoint.clone(),
            reason,
        };
        let resolved = resolve(
            &self.runtime.env,
            std::slice::from_ref(&need),
            owner,
            &CredentialPin::default(),
        )
        .await
        .map_err(|err| failed(err.message))?;
        let credential = verifier.credential.fields();
        let secrets: Vec<String> = resolved
            .credentials
            .iter()
            .flat_map(|resolved| resolved.fields.iter())
            .filter(|(name, _)| credential.get(*name).is_some_and(|field| field.is_secret()))
            .map(|(_, secret)| secret.expose().to_owned())
            .collect();
        if secrets.is_empty() {
            return Err(failed(format!(
                "credential type {:?} declares no secret field; declare the signing secret \
                 with Field::secret()",
                verifier.credential.key()
            )));
        }
        Ok(secrets)
    }
}

/// The challenge of a verified Slack `url_verification` request.
fn slack_challenge(webhook: &Webhook, json: &Value) -> Option<String> {
    let verifier = webhook.verifier.as_ref()?;
    if verifier.scheme != Scheme::Slack || json.get("type")?.as_str()? != "url_verification" {
        return None;
    }
    json.get("challenge")?.as_str().map(str::to_owned)
}
