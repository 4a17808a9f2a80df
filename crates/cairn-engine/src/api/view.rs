//! What every interface shows of a run: one camelCase JSON shape for `runs get --json`, the
//! HTTP API, the web UI and the testing harness's exports, decided here once.

use std::time::{Duration, UNIX_EPOCH};

use cairn_core::{
    AttemptError, ErrorInfo, EventRecord, Owner, RunStatus, StepKey, StepKind, StepStatus,
    StepSummary, UsedCredential,
};
use cairn_store::{ForkOrigin, HookRecord, HookState, RunId, RunRecord};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{api::engine::RunDetail, base::trigger::Trigger};

/// A run as shown, without its steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    /// Its id.
    pub run_id: RunId,
    /// The workflow slug.
    pub workflow: String,
    /// Where it is.
    pub status: RunStatus,
    /// Its input.
    pub input: Value,
    /// Its output, once succeeded.
    pub output: Option<Value>,
    /// Its error, once failed (or canceled).
    pub error: Option<ErrorInfo>,
    /// The idempotency key it was started with.
    pub idempotency_key: Option<String>,
    /// The parent run, for child runs.
    pub parent_run_id: Option<RunId>,
    /// The origin, for forked runs.
    pub forked_from: Option<ForkOrigin>,
    /// What started it, as stored.
    pub trigger: String,
    /// What started it, read (a schedule's id and fire time, a webhook's endpoint and
    /// delivery id, …); absent from views exported before it existed.
    #[serde(default)]
    pub started_by: Option<Trigger>,
    /// On whose behalf it runs (organization, project, user).
    pub owner: Owner,
    /// How many times a worker has claimed it.
    pub executions: u32,
    /// When it was created (RFC 3339, UTC).
    pub created_at: String,
    /// When it ended (RFC 3339, UTC).
    pub finished_at: Option<String>,
    /// From creation to end, in milliseconds.
    pub duration_ms: Option<i64>,
}

impl From<&RunRecord> for RunView {
    fn from(run: &RunRecord) -> Self {
        RunView {
            run_id: run.run_id,
            workflow: run.workflow.clone(),
            status: run.status,
            input: run.input.clone(),
            output: run.output.clone(),
            error: run.error.clone(),
            idempotency_key: run.idempotency_key.clone(),
            parent_run_id: run.parent_run_id,
            forked_from: run.forked_from.clone(),
            trigger: run.trigger.clone(),
            started_by: Some(Trigger::parse(&run.trigger)),
            owner: run.owner.clone(),
            executions: run.executions,
            created_at: timestamp(run.created_at_ms),
            finished_at: run.finished_at_ms.map(timestamp),
            duration_ms: run.finished_at_ms.map(|end| end - run.created_at_ms),
        }
    }
}

/// One step as shown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepView {
    /// The step key.
    pub key: StepKey,
    /// Its kind.
    pub kind: StepKind,
    /// The slug it called.
    pub slug: String,
    /// Where it is.
    pub status: StepStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// Its input, when an attempt was recorded.
    pub input: Option<Value>,
    /// Its output, when it completed.
    pub output: Option<Value>,
    /// The final error, or the last attempt's while retrying.
    pub error: Option<ErrorInfo>,
    /// Every failed (or interrupted) attempt, in order.
    pub attempt_errors: Vec<AttemptError>,
    /// Warnings recorded on replay (a changed input the workflow allowed).
    pub warnings: Vec<String>,
    /// The credentials its latest attempt used (ids and scopes, never values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<UsedCredential>,
    /// When its first attempt began (RFC 3339, UTC).
    pub started_at: String,
    /// When it completed or failed for good (RFC 3339, UTC).
    pub finished_at: Option<String>,
    /// From its first attempt to its end, in milliseconds.
    pub duration_ms: Option<i64>,
}

impl From<&StepSummary> for StepView {
    fn from(step: &StepSummary) -> Self {
        StepView {
            key: step.key.clone(),
            kind: step.kind,
            slug: step.slug.clone(),
            status: step.status,
            attempts: step.attempts,
            input: step.input.clone(),
            output: step.output.clone(),
            error: step.error.clone(),
            attempt_errors: step.attempt_errors.clone(),
            warnings: step.warnings.clone(),
            credentials: step.credentials.clone(),
            started_at: timestamp(step.started_at_ms),
            finished_at: step.finished_at_ms.map(timestamp),
            duration_ms: step.duration_ms(),
        }
    }
}

/// A run with its steps in execution order and its whole log: `runs get --json`,
/// `GET /runs/{id}`, and what `cairn::testing::replay` reads back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunDetailView {
    /// The run.
    #[serde(flatten)]
    pub run: RunView,
    /// Its steps.
    pub steps: Vec<StepView>,
    /// Its log.
    pub events: Vec<EventRecord>,
}

impl From<&RunDetail> for RunDetailView {
    fn from(detail: &RunDetail) -> Self {
        RunDetailView {
            run: RunView::from(&detail.run),
            steps: detail.steps.iter().map(StepView::from).collect(),
            events: detail.events.clone(),
        }
    }
}

/// A hook as shown: `hooks list --json`, `hooks resume --json` and what `POST /hooks/{token}`
/// answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HookView {
    /// The token that resumes it.
    pub token: String,
    /// Its run.
    pub run_id: RunId,
    /// Its step.
    pub step_key: StepKey,
    /// Where it is.
    pub state: HookState,
    /// JSON Schema its payload must match.
    pub schema: Value,
    /// When it was created (RFC 3339, UTC).
    pub created_at: String,
    /// When waiting on it gives up (RFC 3339, UTC), if ever.
    pub timeout_at: Option<String>,
    /// When it was resumed, timed out or closed (RFC 3339, UTC).
    pub closed_at: Option<String>,
}

impl From<&HookRecord> for HookView {
    fn from(hook: &HookRecord) -> Self {
        HookView {
            token: hook.token.clone(),
            run_id: hook.run_id,
            step_key: hook.step_key.clone(),
            state: hook.state,
            schema: hook.schema.clone(),
            created_at: timestamp(hook.created_at_ms),
            timeout_at: hook.timeout_at_ms.map(timestamp),
            closed_at: hook.closed_at_ms.map(timestamp),
        }
    }
}

/// A unix-ms time as RFC 3339 (UTC, milliseconds), as every view shows times.
pub fn timestamp(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(time).to_string()
}

/// An RFC 3339 time (`2026-03-29T00:30:00Z`, or with an offset) as unix milliseconds, or
/// `None` if it is not one: what `--from`/`--to` and the API's bodies take.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|at| at.timestamp_millis())
}
