//! Declaring webhook sources: an endpoint (`POST /triggers/{endpoint}`), how its deliveries
//! are signed (the signing secrets are a credential, resolved for the endpoint's owner), and
//! the workflow each delivery starts with the input a transform makes of it:
//! `WebhookSource::new("stripe").verify(StripeSignature::new(&SECRET)).attach(&BILLING, ..)`.

use std::sync::Arc;

use cairn_core::Owner;
use cairn_triggers::{Scheme, TransformError, WebhookRequest};
use serde_json::Value;

use crate::{
    base::{credential::Credential, schema::Payload},
    run::body::ErasedWorkflow,
    steps::workflow::Workflow,
};

/// The longest endpoint name.
const MAX_ENDPOINT_LEN: usize = 64;

/// How an endpoint's deliveries are signed, and the credential whose secret fields are the
/// signing secrets (each secret field is tried: a second field carries the old or new secret
/// while the provider rotates it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    pub(crate) scheme: Scheme,
    pub(crate) credential: Credential,
}

macro_rules! verifier {
    ($(#[$doc:meta])* $name:ident => $scheme:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $name(Verifier);

        impl $name {
            /// Verifies with the secret fields of `credential`.
            pub fn new(credential: &Credential) -> Self {
                $name(Verifier {
                    scheme: $scheme,
                    credential: credential.clone(),
                })
            }
        }

        impl From<$name> for Verifier {
            fn from(verifier: $name) -> Verifier {
                verifier.0
            }
        }
    };
}

verifier!(
    /// Stripe's `Stripe-Signature: t=…,v1=…` (HMAC-SHA256 of `{t}.{body}`); the event's `id`
    /// names the delivery.
    StripeSignature => Scheme::Stripe
);
verifier!(
    /// GitHub's `X-Hub-Signature-256: sha256=…`; `X-GitHub-Delivery` names the delivery.
    GitHubSignature => Scheme::GitHub
);
verifier!(
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,…`; a
    /// `whsec_` secret); `webhook-id` names the delivery.
    StandardWebhooks => Scheme::StandardWebhooks
);
verifier!(
    /// Slack's `X-Slack-Signature: v0=…` over `v0:{ts}:{body}`; `event_id` names the delivery.
    SlackSignature => Scheme::Slack
);

/// Any provider that sends the hex HMAC-SHA256 of the body in one header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HmacHeader(Verifier);

impl HmacHeader {
    /// The digest is in `header` (any case), with nothing before it.
    pub fn new(credential: &Credential, header: &str) -> Self {
        HmacHeader(Verifier {
            scheme: Scheme::Hmac {
                header: header.to_ascii_lowercase(),
                prefix: String::new(),
                id_header: None,
            },
            credential: credential.clone(),
        })
    }

    /// What comes before the hex digest (`sha256=`).
    pub fn prefix(mut self, text: &str) -> Self {
        if let Scheme::Hmac { prefix, .. } = &mut self.0.scheme {
            *prefix = text.to_owned();
        }
        self
    }

    /// The header naming each delivery (else the body's SHA-256 does).
    pub fn delivery_id_header(mut self, header: &str) -> Self {
        if let Scheme::Hmac { id_header, .. } = &mut self.0.scheme {
            *id_header = Some(header.to_ascii_lowercase());
        }
        self
    }
}

impl From<HmacHeader> for Verifier {
    fn from(verifier: HmacHeader) -> Verifier {
        verifier.0
    }
}

/// A function naming a delivery from its request.
type NameFn = dyn Fn(&WebhookRequest) -> Option<String> + Send + Sync;

/// Names a delivery from its request (see [`WebhookSource::delivery_id`]).
#[derive(Clone)]
pub(crate) struct NameDelivery(Arc<NameFn>);

impl NameDelivery {
    /// `request`, named as the function says when it names it usably.
    pub(crate) fn apply(&self, request: WebhookRequest) -> WebhookRequest {
        let id = (self.0)(&request);
        request.named(id)
    }
}

impl std::fmt::Debug for NameDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NameDelivery(..)")
    }
}

/// A webhook endpoint being declared; [`attach`](Self::attach) it to a workflow and register
/// the result with [`Registry::webhook`](crate::Registry::webhook).
#[derive(Clone, Debug)]
pub struct WebhookSource {
    endpoint: String,
    verifier: Option<Verifier>,
    unverified: bool,
    owner: Option<Owner>,
    name_delivery: Option<NameDelivery>,
}

impl WebhookSource {
    /// The endpoint `POST /triggers/{endpoint}` (1–64 of `a-z 0-9 - _`).
    pub fn new(endpoint: impl Into<String>) -> Self {
        WebhookSource {
            endpoint: endpoint.into(),
            verifier: None,
            unverified: false,
            owner: None,
            name_delivery: None,
        }
    }

    /// Names each verified delivery (the `{delivery id}` of its run's key
    /// `wh:{endpoint}:{delivery id}`) with `name`, for a provider whose id the verifier does
    /// not know (a field of the body, another header). When `name` answers `None`, or an id
    /// that is empty, over 128 characters or not printable, the verifier's id stands (else
    /// the body's SHA-256).
    pub fn delivery_id<F>(mut self, name: F) -> Self
    where
        F: Fn(&WebhookRequest) -> Option<String> + Send + Sync + 'static,
    {
        self.name_delivery = Some(NameDelivery(Arc::new(name)));
        self
    }

    /// How deliveries are signed ([`StripeSignature`], [`GitHubSignature`],
    /// [`StandardWebhooks`], [`SlackSignature`], [`HmacHeader`]).
    pub fn verify(mut self, verifier: impl Into<Verifier>) -> Self {
        self.verifier = Some(verifier.into());
        self
    }

    /// Accepts deliveries nobody signed: anyone who can reach the server can start runs.
    pub fn insecure_unverified(mut self) -> Self {
        self.unverified = true;
        self
    }

    /// On whose behalf the runs execute, and whose credential holds the signing secrets
    /// (default: organization and project `default`).
    pub fn owner(mut self, owner: Owner) -> Self {
        self.owner = Some(owner);
        self
    }

    /// Each verified delivery starts `workflow` with the input `transform` makes of it:
    /// `Ok(Some(input))` starts a run, `Ok(None)` ignores the delivery (answered 200), an
    /// error refuses it (422: the provider retries).
    pub fn attach<I, O, F>(self, workflow: &Workflow<I, O>, transform: F) -> Webhook
    where
        I: Payload,
        O: Payload,
        F: Fn(&WebhookRequest) -> Result<Option<I>, TransformError> + Send + Sync + 'static,
    {
        let transform: Transform = Arc::new(move |request| {
            transform(request)?
                .map(|input| {
                    serde_json::to_value(&input).map_err(|err| {
                        TransformError::new(format!(
                            "the transform's input does not serialize: {err}"
                        ))
                    })
                })
                .transpose()
        });
        Webhook {
            problem: self.problem(),
            endpoint: self.endpoint,
            verifier: self.verifier,
            owner: self.owner,
            name_delivery: self.name_delivery,
            slug: workflow.slug().to_owned(),
            invalid: workflow.invalid().map(str::to_owned),
            workflow: workflow.erased(),
            transform,
        }
    }

    /// What makes the declaration unusable, if anything.
    fn problem(&self) -> Option<String> {
        let endpoint = &self.endpoint;
        let well_formed = !endpoint.is_empty()
            && endpoint.len() <= MAX_ENDPOINT_LEN
            && endpoint
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !well_formed {
            return Some(format!(
                "webhook endpoint {endpoint:?} is not usable in a URL path: use 1 to \
                 {MAX_ENDPOINT_LEN} of a-z, 0-9, - and _"
            ));
        }
        if self.verifier.is_none() && !self.unverified {
            return Some(format!(
                "webhook endpoint {endpoint:?} has no verifier: add .verify(..) with the \
                 provider's signature (or .insecure_unverified() to accept anyone's deliveries)"
            ));
        }
        None
    }
}

/// A delivery's input, made by the transform given to [`WebhookSource::attach`].
pub(crate) type Transform =
    Arc<dyn Fn(&WebhookRequest) -> Result<Option<Value>, TransformError> + Send + Sync>;

/// A webhook source attached to a workflow, ready for [`Registry::webhook`](crate::Registry::webhook).
#[derive(Clone)]
pub struct Webhook {
    pub(crate) endpoint: String,
    pub(crate) verifier: Option<Verifier>,
    pub(crate) owner: Option<Owner>,
    pub(crate) name_delivery: Option<NameDelivery>,
    pub(crate) slug: String,
    pub(crate) workflow: Arc<dyn ErasedWorkflow>,
    pub(crate) invalid: Option<String>,
    pub(crate) problem: Option<String>,
    pub(crate) transform: Transform,
}

impl Webhook {
    /// Its endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("endpoint", &self.endpoint)
            .field("verifier", &self.verifier.as_ref().map(|v| &v.scheme))
            .field("workflow", &self.slug)
            .finish_non_exhaustive()
    }
}
