//! Errors a store reports.

use cairn_core::RunStatus;

use crate::{RunId, WorkerId};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No run has this id.
    #[error("run {0} not found; `runs list` shows the runs there are")]
    RunNotFound(RunId),
    /// The worker no longer holds the run's lease: another worker took the run over.
    #[error(
        "worker {worker} lost the lease on run {run} to another worker; it must stop executing the run"
    )]
    LeaseLost {
        /// The run.
        run: RunId,
        /// The worker that lost it.
        worker: WorkerId,
    },
    /// The run has ended (e.g. it was canceled) and takes no more events.
    #[error("run {run} has already ended ({status})")]
    RunEnded {
        /// The run.
        run: RunId,
        /// Its final status.
        status: RunStatus,
    },
    /// Only failed or canceled runs can be retried.
    #[error("run {run} is {status}; only failed or canceled runs can be retried")]
    NotRetryable {
        /// The run.
        run: RunId,
        /// Its status.
        status: RunStatus,
    },
    /// No hook has this token.
    #[error("no hook has this token; check the token (or the resume URL) you were given")]
    HookNotFound,
    /// The hook cannot be resumed any more.
    #[error("hook {step} of run {run} is {state}; a hook can be resumed once, while its run waits")]
    HookNotPending {
        /// The hook's run.
        run: RunId,
        /// The hook's step.
        step: String,
        /// Its state.
        state: crate::HookState,
    },
    /// No credential has this id.
    #[error("credential {0:?} not found; `credentials list` shows the credentials there are")]
    CredentialNotFound(String),
    /// Credentials changed while they were being re-encrypted.
    #[error(
        "credentials changed while the master key was being rotated; nothing was written: run \
         `credentials rotate-key` again"
    )]
    CredentialsChanged,
    /// No schedule has this id.
    #[error("schedule {0:?} not found; `schedules list` shows the schedules there are")]
    ScheduleNotFound(String),
    /// No poll source has this name.
    #[error("poll source {0:?} not found; `sources list` shows the poll sources there are")]
    PollSourceNotFound(String),
    /// The database could not be reached or refused the operation; retrying may help.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The write was in flight when the store's answer was lost (the connection broke): it
    /// may or may not have been committed. Sending it again may record it twice; read what
    /// was committed first (an execution gives its run back, and the next claim reads the
    /// log as committed). A create with the same run id is harmless to send again.
    #[error("store unavailable: the write may or may not have been committed: {0}")]
    MaybeCommitted(String),
    /// Stored data could not be read back (a bug or a damaged database).
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether the same call may succeed later (the database was briefly unreachable or busy).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::MaybeCommitted(_)
        )
    }
}
