//! The events a run's log is made of, and the run statuses they lead to.
//!
//! The log is append-only. A run's state (its status, each step's result) is a fold of its
//! events; the store keeps a few columns (status, output, error) in step with it for listing.

use std::{fmt, str::FromStr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::StepKey;

/// Where a run is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Created, waiting for a worker.
    Queued,
    /// A worker holds its lease and executes it.
    Running,
    /// Parked until a wake-up time.
    Sleeping,
    /// Parked until a hook is resumed.
    Waiting,
    /// Finished with an output.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Stopped on request.
    Canceled,
}

impl RunStatus {
    /// Every status, in life order.
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Sleeping,
        RunStatus::Waiting,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Canceled,
    ];

    /// The status as stored and shown (`"queued"`, `"running"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Sleeping => "sleeping",
            RunStatus::Waiting => "waiting",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Canceled => "canceled",
        }
    }

    /// Whether the run has ended (no worker will execute it again unless it is retried).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Canceled
        )
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<_> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown run status {s:?}; expected one of {}",
                    all.join(", ")
                )
            })
    }
}

/// What kind of step a log entry is about. Grows with the product (sleeps, hooks, LLM calls).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// A call of a user's action.
    Action,
    /// A child workflow run.
    Workflow,
    /// A recorded `ctx.now()`.
    Now,
    /// A recorded `ctx.random()`.
    Random,
    /// A recorded `ctx.uuid()`.
    Uuid,
    /// A durable `ctx.sleep(..)`.
    Sleep,
    /// A durable wait for a hook to be resumed.
    Hook,
    /// A `ctx.patched(id)` marker: this run took the new code path at this point.
    Patch,
    /// A call of a language model (an action made with kind `llm`: `prompt_llm`, an agent's
    /// turn). Replayed and executed like an action.
    Llm,
}

impl StepKind {
    /// The kind as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Action => "action",
            StepKind::Workflow => "workflow",
            StepKind::Now => "now",
            StepKind::Random => "random",
            StepKind::Uuid => "uuid",
            StepKind::Sleep => "sleep",
            StepKind::Hook => "hook",
            StepKind::Patch => "patch",
            StepKind::Llm => "llm",
        }
    }

    /// Whether the step does work outside the workflow body (an action attempt, a child
    /// run). Such a step is never started while the execution is stopping or suspending.
    pub fn does_work(self) -> bool {
        matches!(self, StepKind::Action | StepKind::Workflow | StepKind::Llm)
    }

    /// Whether replay compares a call's input with the recorded one. Waits record their
    /// wake-up time or token as input, which a new call cannot know, so they are not compared.
    pub fn compares_input(self) -> bool {
        matches!(self, StepKind::Action | StepKind::Workflow | StepKind::Llm)
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class of an error recorded on a step or a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The action returned an error.
    Action,
    /// The action did not finish within its timeout.
    Timeout,
    /// An input did not match its JSON schema.
    InvalidInput,
    /// An output did not match its JSON schema.
    InvalidOutput,
    /// A payload was over the size limit.
    PayloadTooLarge,
    /// Replay met a recorded step that differs from the call being made.
    NonDeterminism,
    /// Replaying a recorded history (`cairn::testing::replay`) reached a step the history
    /// does not have.
    Unrecorded,
    /// A child workflow run failed.
    ChildFailed,
    /// The workflow body returned an error of its own.
    Workflow,
    /// The API was used where it cannot work (e.g. an action called from inside an action).
    Misuse,
    /// The run or step was canceled.
    Canceled,
    /// A workflow body panicked.
    Panic,
    /// An attempt was cut off: its worker stopped (crash, kill) before it finished. Not the
    /// action's failure: it does not count against the retry policy.
    Interrupted,
    /// A step's attempts were interrupted too often (a step that takes its worker down).
    Recoveries,
    /// A step's action needs a credential that nothing resolves to for the run (none set at
    /// the scopes tried). Set one, then retry the run.
    MissingCredentials,
    /// A credential was found but cannot be used: it does not open with the master key, it
    /// lacks a field, or its OAuth client is not configured.
    CredentialUnavailable,
    /// A credential's token expired and could not be refreshed (no refresh token, or the
    /// provider refused it). Reconnect it (`/credentials/connect/{key}`), then retry the run.
    CredentialExpired,
    /// Something inside Cairn went wrong (a store error).
    Internal,
}

/// An error as recorded in the log: what class it is, what it says, which step raised it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorInfo {
    /// The class of error.
    pub kind: ErrorKind,
    /// Human-readable text: what was wrong and, where possible, what to do.
    pub message: String,
    /// The step that raised it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepKey>,
    /// Whether retrying could help.
    #[serde(default)]
    pub retryable: bool,
}

impl ErrorInfo {
    /// A non-retryable error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ErrorInfo {
            kind,
            message: message.into(),
            step: None,
            retryable: false,
        }
    }

    /// The same error, attributed to `step`.
    pub fn at_step(mut self, step: StepKey) -> Self {
        self.step = Some(step);
        self
    }
}

impl fmt::Display for ErrorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.step {
            Some(step) => write!(f, "step {step}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// One entry of a run's log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum Event {
    /// The run was created with this (validated) input.
    RunCreated {
        /// Slug of the workflow.
        workflow: String,
        /// The run's input.
        input: Value,
    },
    /// An attempt of a step began. Written without waiting for the commit: it is for
    /// inspection, replay never depends on it.
    StepStarted {
        /// The step.
        key: StepKey,
        /// Its kind.
        kind: StepKind,
        /// The action or workflow slug it calls.
        slug: String,
        /// Its input.
        input: Value,
        /// Attempt number, from 1.
        attempt: u32,
        /// The call's position in the order the workflow body makes its step calls (from
        /// 0): replay checks that the n-th call is the one recorded n-th. Absent in runs
        /// recorded before positions were kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<u32>,
        /// The credentials the attempt was given (ids and scopes, never values).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        credentials: Vec<crate::UsedCredential>,
    },
    /// An attempt failed and another will follow at `retry_at_ms`.
    StepAttemptFailed {
        /// The step.
        key: StepKey,
        /// The failed attempt's number.
        attempt: u32,
        /// Why it failed.
        error: ErrorInfo,
        /// When the next attempt may start (unix ms).
        retry_at_ms: i64,
    },
    /// The step finished; replay returns `output` instead of running it again.
    StepCompleted {
        /// The step.
        key: StepKey,
        /// Its kind.
        kind: StepKind,
        /// The action or workflow slug it called.
        slug: String,
        /// Its recorded output.
        output: Value,
        /// The call's position in the order the workflow body makes its step calls (from
        /// 0): replay checks that the n-th call is the one recorded n-th. Absent in runs
        /// recorded before positions were kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<u32>,
    },
    /// The step failed for good (retries exhausted or a fatal error); replay returns the error.
    StepFailed {
        /// The step.
        key: StepKey,
        /// Its kind.
        kind: StepKind,
        /// The action or workflow slug it called.
        slug: String,
        /// The final error.
        error: ErrorInfo,
        /// How many attempts were made.
        attempts: u32,
        /// The call's position in the order the workflow body makes its step calls (from
        /// 0): replay checks that the n-th call is the one recorded n-th. Absent in runs
        /// recorded before positions were kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<u32>,
    },
    /// A hook was created: `token` resumes it. The store registers the token when it appends
    /// this event.
    HookCreated {
        /// The hook's step.
        key: StepKey,
        /// The unguessable token that resumes it.
        token: String,
        /// JSON Schema its payload must match.
        schema: Value,
        /// When waiting on it gives up (unix ms), if ever.
        timeout_at_ms: Option<i64>,
        /// The call's position in the order the workflow body makes its step calls (from
        /// 0): replay checks that the n-th call is the one recorded n-th. Absent in runs
        /// recorded before positions were kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<u32>,
    },
    /// A hook was resumed with `payload` (written by the store's resume, not by a worker).
    HookResumed {
        /// The hook's step.
        key: StepKey,
        /// The (validated) payload.
        payload: Value,
    },
    /// A replayed step's recorded input differs from the input the workflow passes now, and
    /// the workflow allows it (`ChangedInput::UseRecorded`): the recorded output was used.
    StepWarning {
        /// The step.
        key: StepKey,
        /// What differs.
        message: String,
    },
    /// The run finished with this (validated) output.
    RunCompleted {
        /// The output.
        output: Value,
    },
    /// The run failed.
    RunFailed {
        /// The error, with the failing step if there was one.
        error: ErrorInfo,
    },
    /// The run was canceled.
    RunCanceled {
        /// Why, as given by whoever canceled it.
        reason: String,
    },
    /// A failed or canceled run was sent back to the queue: completed steps stay recorded,
    /// everything else runs again.
    RunRetried,
}

impl Event {
    /// The short name stored next to the event (`"step_completed"`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::RunCreated { .. } => "run_created",
            Event::StepStarted { .. } => "step_started",
            Event::StepAttemptFailed { .. } => "step_attempt_failed",
            Event::StepCompleted { .. } => "step_completed",
            Event::StepFailed { .. } => "step_failed",
            Event::HookCreated { .. } => "hook_created",
            Event::HookResumed { .. } => "hook_resumed",
            Event::StepWarning { .. } => "step_warning",
            Event::RunCompleted { .. } => "run_completed",
            Event::RunFailed { .. } => "run_failed",
            Event::RunCanceled { .. } => "run_canceled",
            Event::RunRetried => "run_retried",
        }
    }

    /// The step this event is about, if any.
    pub fn step_key(&self) -> Option<&StepKey> {
        match self {
            Event::StepStarted { key, .. }
            | Event::StepAttemptFailed { key, .. }
            | Event::StepCompleted { key, .. }
            | Event::StepFailed { key, .. }
            | Event::HookCreated { key, .. }
            | Event::HookResumed { key, .. }
            | Event::StepWarning { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The run status this event moves the run to, if it changes it.
    pub fn resulting_status(&self) -> Option<RunStatus> {
        match self {
            Event::RunCompleted { .. } => Some(RunStatus::Succeeded),
            Event::RunFailed { .. } => Some(RunStatus::Failed),
            Event::RunCanceled { .. } => Some(RunStatus::Canceled),
            Event::RunRetried => Some(RunStatus::Queued),
            _ => None,
        }
    }
}

/// An event as stored: its position in the run's log and when it was written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    /// Position in the run's log, from 1, without gaps.
    pub seq: u64,
    /// When it was appended (unix ms).
    pub at_ms: i64,
    /// The event.
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_round_trip_as_tagged_json() {
        let event = Event::StepCompleted {
            call: None,
            key: StepKey::numbered("a", 0),
            kind: StepKind::Action,
            slug: "a".into(),
            output: json!({"x": 1}),
        };
        let text = serde_json::to_value(&event).unwrap();
        assert_eq!(
            text,
            json!({"type": "step_completed", "key": "a#0", "kind": "action", "slug": "a", "output": {"x": 1}})
        );
        assert_eq!(serde_json::from_value::<Event>(text).unwrap(), event);
        assert_eq!(event.type_name(), "step_completed");
    }

    #[test]
    fn llm_steps_are_stored_as_llm_and_do_work_like_actions() {
        assert_eq!(serde_json::to_value(StepKind::Llm).unwrap(), json!("llm"));
        assert_eq!(StepKind::Llm.to_string(), "llm");
        assert!(StepKind::Llm.does_work() && StepKind::Llm.compares_input());
    }

    #[test]
    fn statuses_parse_and_print() {
        for status in RunStatus::ALL {
            assert_eq!(status.as_str().parse::<RunStatus>().unwrap(), status);
        }
        let err = "done".parse::<RunStatus>().unwrap_err();
        assert!(err.contains("succeeded"), "{err}");
    }

    #[test]
    fn terminal_events_set_the_status() {
        assert_eq!(
            Event::RunRetried.resulting_status(),
            Some(RunStatus::Queued)
        );
        assert_eq!(
            Event::RunFailed {
                error: ErrorInfo::new(ErrorKind::Workflow, "x")
            }
            .resulting_status(),
            Some(RunStatus::Failed)
        );
    }
}
