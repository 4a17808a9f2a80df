//! What an action's body knows about the step it executes, and the resources the
//! application shares with it.

use std::sync::Arc;

use cairn_core::StepKey;
use cairn_store::RunId;
use tokio_util::sync::CancellationToken;

use crate::base::{
    credential::{Credential, ResolvedCredential},
    error::ActionError,
    resources::Resources,
};

/// What an action's body knows about the step it executes.
#[derive(Clone, Debug)]
pub struct ActionCtx {
    pub(crate) run_id: RunId,
    pub(crate) step_key: StepKey,
    pub(crate) attempt: u32,
    pub(crate) cancel: CancellationToken,
    pub(crate) span: tracing::Span,
    pub(crate) resources: Resources,
    /// The credentials resolved for this attempt.
    pub(crate) credentials: Arc<[ResolvedCredential]>,
}

impl ActionCtx {
    /// The context of the action attempt the current task runs, if it runs one: for helpers
    /// that work both in a workflow (as steps of their own) and inside an action's body (as
    /// part of that action's step), as `cairn_llm::prompt_llm` does.
    pub fn current() -> Option<ActionCtx> {
        crate::run::scope::current_action()
    }

    /// The run this step belongs to.
    pub fn run_id(&self) -> RunId {
        self.run_id
    }

    /// The step's key.
    pub fn step_key(&self) -> &StepKey {
        &self.step_key
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// `<run-id>:<step-key>`: the same for every attempt of this step. Pass it to APIs that
    /// deduplicate requests so a retried step does its side effect once.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}", self.run_id, self.step_key)
    }

    /// Fired when the run is canceled or the attempt timed out: stop work early.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Whether the cancellation signal has fired.
    pub fn is_canceled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The tracing span of this attempt.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The resource of type `T` the application registered (`Registry::resource`), e.g. an
    /// HTTP client or a configuration. A missing resource is a fatal error naming the type, so
    /// the step fails at once instead of retrying a mistake in the application's set-up.
    pub fn resource<T: Send + Sync + 'static>(&self) -> Result<Arc<T>, ActionError> {
        self.resources.get::<T>().ok_or_else(|| {
            let known = self.resources.names();
            ActionError::fatal(format!(
                "no resource of type {} is registered (registered: {}); add it with Registry::resource(..)",
                std::any::type_name::<T>(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    /// The credential of type `credential` resolved for this attempt (see
    /// [`ActionBuilder::credential`](crate::ActionBuilder::credential)): its id, scope and
    /// fields. A type the action did not declare is a fatal error saying to declare it.
    pub fn credential(&self, credential: &Credential) -> Result<&ResolvedCredential, ActionError> {
        self.optional_credential(credential).ok_or_else(|| {
            ActionError::fatal(format!(
                "this action did not declare the credential {:?}; add \
                     `.credential(&{})` to its definition",
                credential.key(),
                credential.key().to_uppercase().replace('-', "_")
            ))
            .with_kind(cairn_core::ErrorKind::Misuse)
        })
    }

    /// The credential of type `credential` resolved for this attempt, if one was: for
    /// credentials declared with
    /// [`ActionBuilder::optional_credential`](crate::ActionBuilder::optional_credential).
    pub fn optional_credential(&self, credential: &Credential) -> Option<&ResolvedCredential> {
        self.credentials
            .iter()
            .find(|resolved| resolved.key() == credential.key())
    }
}
