//! Errors: the engine's own, a step's as the workflow sees it, an action's and a workflow's.

use std::error::Error as StdError;

use cairn_core::{ErrorInfo, ErrorKind, LimitExceeded, StepKey};
use cairn_store::{RunId, StoreError};

use super::{
    credential::CredentialError, oauth::OAuthError, schema::Violations, vault::VaultError,
};

/// Why an engine operation (start, inspect, retry, cancel…) failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No workflow with this slug is registered.
    #[error("unknown workflow {slug:?}; registered workflows: {known} (see `workflows list`)")]
    UnknownWorkflow {
        /// The slug asked for.
        slug: String,
        /// The registered slugs, comma-separated.
        known: String,
    },
    /// A run's input does not match the workflow's input schema. No run was created.
    #[error("input of workflow {workflow} does not match its schema: {violations}")]
    InvalidInput {
        /// The workflow slug.
        workflow: String,
        /// What is wrong, with JSON paths.
        violations: Violations,
    },
    /// The input could not be turned into JSON.
    #[error("input of workflow {workflow} cannot be serialized to JSON: {message}")]
    Unserializable {
        /// The workflow slug.
        workflow: String,
        /// serde's message.
        message: String,
    },
    /// A payload is over a limit.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    /// No run has this id.
    #[error("run {0} not found; `runs list` shows the runs there are")]
    RunNotFound(RunId),
    /// The run has no step with this key.
    #[error("run {run} has no step {step}; `runs get {run}` lists its steps")]
    StepNotFound {
        /// The run.
        run: RunId,
        /// The step key asked for.
        step: StepKey,
    },
    /// The run cannot be executed by this process.
    #[error("run {run} is of workflow {workflow:?}, which this binary does not register")]
    NotExecutable {
        /// The run.
        run: RunId,
        /// Its workflow slug.
        workflow: String,
    },
    /// A hook's resume payload does not match the hook's schema; the run keeps waiting.
    #[error("payload does not match the schema of hook {step}: {violations}")]
    InvalidPayload {
        /// The hook's step key.
        step: String,
        /// What is wrong, with JSON paths.
        violations: Violations,
    },
    /// A request was malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The registry is not usable: a bad slug, or two different definitions with one slug.
    #[error("{0}")]
    Registry(String),
    /// A schedule's cron expression, time zone or id is not valid.
    #[error(transparent)]
    Schedule(#[from] cairn_triggers::ScheduleError),
    /// A schedule asked for through the API is not valid (its workflow, input, expression
    /// or zone); nothing was saved. The paths name the fields of the request.
    #[error("schedule {id:?} is not valid: {violations}")]
    InvalidSchedule {
        /// The schedule's id.
        id: String,
        /// What is wrong, with JSON paths (`/workflow`, `/input/…`, `/cron`, `/timezone`).
        violations: Violations,
    },
    /// A schedule with this id exists with another spec (the id is the dedup key).
    #[error(
        "schedule {id:?} exists with a different spec ({difference}); delete it first \
         (`schedules delete {id}`) or choose another id"
    )]
    ScheduleConflict {
        /// The schedule's id.
        id: String,
        /// What differs, field by field.
        difference: String,
    },
    /// No registered action needs a credential type with this key.
    #[error(
        "unknown credential type {key:?}; the registered ones are {known} (an action declares \
         the types it needs with .credential(..), or register one with Registry::credential)"
    )]
    UnknownCredentialType {
        /// The key asked for.
        key: String,
        /// The registered keys, comma-separated.
        known: String,
    },
    /// A credential's fields do not fit its type.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// The master key is missing or wrong, or a sealed credential does not open.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// Connecting a credential with OAuth failed.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whose fault an [`EngineError`] is and what kind of answer it deserves: one classification
/// for every interface (the CLI's exit codes, the HTTP API's statuses, the web UI's messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The request itself is wrong (malformed, schema violation, bad option): fix it and
    /// send it again. CLI exit 2, HTTP 400/422.
    Invalid,
    /// What the request names does not exist (workflow, run, step, hook). CLI exit 2,
    /// HTTP 404.
    NotFound,
    /// The request is valid but the state does not allow it now (retry of a running run,
    /// cancel of an ended run, a second resume). CLI exit 2, HTTP 409.
    Conflict,
    /// A payload is over a limit. CLI exit 2, HTTP 413.
    TooLarge,
    /// The store is unreachable or busy: try again later. CLI exit 1, HTTP 503.
    Unavailable,
    /// Something inside Cairn or the application failed. CLI exit 1, HTTP 500.
    Internal,
}

impl ErrorClass {
    /// Whether the caller's request was at fault (the CLI's exit code 2).
    pub fn is_caller_error(self) -> bool {
        matches!(
            self,
            ErrorClass::Invalid
                | ErrorClass::NotFound
                | ErrorClass::Conflict
                | ErrorClass::TooLarge
        )
    }
}

impl EngineError {
    /// The error's class (see [`ErrorClass`]).
    pub fn class(&self) -> ErrorClass {
        match self {
            EngineError::UnknownWorkflow { .. }
            | EngineError::RunNotFound(_)
            | EngineError::StepNotFound { .. }
            | EngineError::Store(
                StoreError::RunNotFound(_)
                | StoreError::HookNotFound
                | StoreError::CredentialNotFound(_)
                | StoreError::ScheduleNotFound(_)
                | StoreError::PollSourceNotFound(_),
            ) => ErrorClass::NotFound,
            EngineError::InvalidInput { .. }
            | EngineError::Unserializable { .. }
            | EngineError::InvalidPayload { .. }
            | EngineError::BadRequest(_)
            | EngineError::UnknownCredentialType { .. }
            | EngineError::Schedule(_)
            | EngineError::InvalidSchedule { .. }
            | EngineError::Credential(_)
            | EngineError::OAuth(
                OAuthError::NotOAuth { .. }
                | OAuthError::BadState { .. }
                | OAuthError::StateExpired { .. }
                | OAuthError::Refused { .. },
            ) => ErrorClass::Invalid,
            EngineError::Limit(LimitExceeded::Payload { .. }) => ErrorClass::TooLarge,
            EngineError::Limit(LimitExceeded::Steps { .. }) => ErrorClass::Invalid,
            EngineError::NotExecutable { .. }
            | EngineError::ScheduleConflict { .. }
            | EngineError::Store(
                StoreError::HookNotPending { .. }
                | StoreError::NotRetryable { .. }
                | StoreError::RunEnded { .. }
                | StoreError::LeaseLost { .. }
                | StoreError::CredentialsChanged,
            ) => ErrorClass::Conflict,
            EngineError::Store(StoreError::Unavailable(_) | StoreError::MaybeCommitted(_)) => {
                ErrorClass::Unavailable
            }
            EngineError::Registry(_)
            | EngineError::Vault(_)
            | EngineError::OAuth(_)
            | EngineError::Store(_) => ErrorClass::Internal,
        }
    }
}

/// The error a step hands back to the workflow: retries exhausted, a fatal action error, an
/// invalid payload, a failed child run…
///
/// The workflow may handle it; if it propagates it (`?`), the run fails with this error and
/// its step recorded.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{info}")]
pub struct StepError {
    info: ErrorInfo,
}

impl StepError {
    pub(crate) fn new(info: ErrorInfo) -> Self {
        StepError { info }
    }

    pub(crate) fn misuse(message: impl Into<String>) -> Self {
        StepError::new(ErrorInfo::new(ErrorKind::Misuse, message))
    }

    /// An error about steps made by an integration on the workflow's behalf (a model's
    /// answers that never matched their schema, after re-asking): the workflow handles or
    /// propagates it like a step's own.
    pub fn from_info(info: ErrorInfo) -> Self {
        StepError::new(info)
    }

    /// The class of error.
    pub fn kind(&self) -> ErrorKind {
        self.info.kind
    }

    /// The message, without the step prefix.
    pub fn message(&self) -> &str {
        &self.info.message
    }

    /// The step that failed.
    pub fn step(&self) -> Option<&StepKey> {
        self.info.step.as_ref()
    }

    /// The error as recorded.
    pub fn info(&self) -> &ErrorInfo {
        &self.info
    }
}

/// The error an action returns: retryable (the default for any `std::error::Error` via `?`)
/// or fatal (never retried).
#[derive(Clone, Debug, PartialEq)]
pub struct ActionError {
    pub(crate) message: String,
    pub(crate) retryable: bool,
    pub(crate) kind: ErrorKind,
    /// Wait this long before the next attempt instead of the policy's backoff.
    pub(crate) retry_after: Option<std::time::Duration>,
}

impl ActionError {
    /// An error worth retrying (a timeout, a 503, a dropped connection).
    pub fn retryable(message: impl Into<String>) -> Self {
        ActionError {
            message: message.into(),
            retryable: true,
            kind: ErrorKind::Action,
            retry_after: None,
        }
    }

    /// An error retrying cannot fix (bad credentials, a 4xx, a business rule): the step fails
    /// at once.
    pub fn fatal(message: impl Into<String>) -> Self {
        ActionError {
            message: message.into(),
            retryable: false,
            kind: ErrorKind::Action,
            retry_after: None,
        }
    }

    /// The next attempt waits `delay` instead of the retry policy's backoff (a provider's
    /// `Retry-After`). It still counts against the policy's attempts.
    pub fn retry_after(mut self, delay: std::time::Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// The delay asked for with [`retry_after`](Self::retry_after).
    pub fn retry_delay(&self) -> Option<std::time::Duration> {
        self.retry_after
    }

    pub(crate) fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// Whether the step may be retried after this error.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn into_info(self) -> ErrorInfo {
        ErrorInfo {
            kind: self.kind,
            message: self.message,
            step: None,
            retryable: self.retryable,
        }
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for ActionError {
    fn from(error: E) -> Self {
        // A step's error (a model prompted inside the action) keeps its kind and whether a
        // retry may help.
        if let Some(step) = (&error as &dyn std::any::Any).downcast_ref::<StepError>() {
            let info = step.info();
            let error = match info.retryable {
                true => ActionError::retryable(info.message.clone()),
                false => ActionError::fatal(info.message.clone()),
            };
            return error.with_kind(info.kind);
        }
        ActionError::retryable(chain(&error))
    }
}

/// An action's error met by work done inside an action on a workflow's behalf (a model
/// prompted inside an action's body), handed on as a step's error.
impl From<ActionError> for StepError {
    fn from(error: ActionError) -> Self {
        StepError::new(error.into_info())
    }
}

/// The error a workflow body returns. Any `std::error::Error` converts into it with `?`; a
/// [`StepError`] keeps its kind and step, so the run records which step failed.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowError {
    info: ErrorInfo,
}

impl WorkflowError {
    /// An error raised by the workflow's own logic.
    pub fn new(message: impl Into<String>) -> Self {
        WorkflowError {
            info: ErrorInfo::new(ErrorKind::Workflow, message),
        }
    }

    /// The error as it will be recorded on the run.
    pub fn info(&self) -> &ErrorInfo {
        &self.info
    }

    pub(crate) fn into_info(self) -> ErrorInfo {
        self.info
    }

    pub(crate) fn from_info(info: ErrorInfo) -> Self {
        WorkflowError { info }
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for WorkflowError {
    fn from(error: E) -> Self {
        let boxed: Box<dyn StdError + Send + Sync> = Box::new(error);
        match boxed.downcast::<StepError>() {
            Ok(step_error) => WorkflowError {
                info: step_error.info,
            },
            Err(other) => WorkflowError::new(chain(other.as_ref())),
        }
    }
}

/// An error's message followed by its sources: `a: b: c`.
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_errors_keep_their_step_through_question_mark() {
        fn body() -> Result<(), WorkflowError> {
            let info = ErrorInfo::new(ErrorKind::Action, "no").at_step(StepKey::from("a#0"));
            Err(StepError::new(info))?
        }
        let err = body().unwrap_err();
        assert_eq!(err.info().kind, ErrorKind::Action);
        assert_eq!(err.info().step, Some(StepKey::from("a#0")));
    }

    #[test]
    fn other_errors_become_workflow_errors_with_their_sources() {
        let io = std::io::Error::other("disk full");
        let err = WorkflowError::from(io);
        assert_eq!(err.info().kind, ErrorKind::Workflow);
        assert_eq!(err.info().message, "disk full");
        let action: ActionError = serde_json::from_str::<u8>("x").unwrap_err().into();
        assert!(action.is_retryable());
    }
}
