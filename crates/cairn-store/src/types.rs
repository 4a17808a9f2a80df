//! Types shared by the store trait, its backends and the engine.

use std::{fmt, str::FromStr, sync::Arc};

use cairn_core::{ErrorInfo, Event, EventRecord, Owner, RunStatus, StepKey, StepKind, patch_key};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// A run's id: a UUIDv7, so ids sort by creation time.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct RunId(pub Uuid);

impl RunId {
    /// A new, time-ordered id.
    pub fn new() -> RunId {
        RunId(Uuid::now_v7())
    }
}

impl Default for RunId {
    fn default() -> Self {
        RunId::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for RunId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim()).map(RunId).map_err(|_| {
            format!(
                "{s:?} is not a run id (run ids are UUIDs, as printed by `run` and `runs list`)"
            )
        })
    }
}

/// Who holds a lease: one engine instance (a process), e.g. `host:1234:0193…`. Shared, not
/// copied, when cloned: every write of a run names its worker.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkerId(pub Arc<str>);

impl WorkerId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The right to execute a run until `expires_at_ms`, renewed by heartbeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The holder.
    pub worker: WorkerId,
    /// When it lapses unless renewed (unix ms).
    pub expires_at_ms: i64,
}

/// Where a forked run came from (`runs rerun <id> --from <step>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForkOrigin {
    /// The original run.
    pub run_id: RunId,
    /// The step the fork executes from.
    pub step: StepKey,
}

/// A run to create.
#[derive(Clone, Debug)]
pub struct NewRun {
    /// Its id.
    pub id: RunId,
    /// The workflow slug.
    pub workflow: String,
    /// The validated input.
    pub input: Value,
    /// Starting twice with one key (per workflow) yields one run.
    pub idempotency_key: Option<String>,
    /// The run that started this one as a child step, if any.
    pub parent_run_id: Option<RunId>,
    /// The run and step this one was forked from, if any.
    pub forked_from: Option<ForkOrigin>,
    /// What started it: `cli`, `api`, `child`, `rerun`, …
    pub trigger: String,
    /// On whose behalf it runs (a child run inherits its parent's).
    pub owner: Owner,
    /// Events to record after `RunCreated` (a fork's copied steps, an execution's first
    /// events), in the same commit. They take effect as if appended by the run's creator
    /// (see [`run_effect`](crate::rules::run_effect)): an ending event ends the run, a
    /// `HookCreated` registers its hook.
    pub history: Vec<Event>,
    /// Create the run already leased to this worker (so nobody else claims it first).
    pub lease: Option<Lease>,
    /// Creation time (unix ms).
    pub now_ms: i64,
}

/// The result of [`Store::create_run`](crate::Store::create_run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateOutcome {
    /// The run's id: the new one, or the existing run with the same idempotency key.
    pub run_id: RunId,
    /// Whether a new run was created.
    pub created: bool,
}

/// A run as stored, without its log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
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
    /// What started it.
    pub trigger: String,
    /// On whose behalf it runs.
    #[serde(default)]
    pub owner: Owner,
    /// How many times a worker has claimed it.
    pub executions: u32,
    /// The current lease holder, if any.
    pub lease_owner: Option<WorkerId>,
    /// When the current lease lapses (unix ms).
    pub lease_expires_at_ms: Option<i64>,
    /// When it may next be claimed (unix ms).
    pub ready_at_ms: i64,
    /// Creation time (unix ms).
    pub created_at_ms: i64,
    /// Last change (unix ms).
    pub updated_at_ms: i64,
    /// When it ended (unix ms).
    pub finished_at_ms: Option<i64>,
}

/// A run as a listing shows it: [`RunRecord`] without its payloads (input, output, error),
/// its lease or its owner, so a page of runs reads a few small columns per run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Its id.
    pub run_id: RunId,
    /// The workflow slug.
    pub workflow: String,
    /// Where it is.
    pub status: RunStatus,
    /// The idempotency key it was started with.
    pub idempotency_key: Option<String>,
    /// The parent run, for child runs.
    pub parent_run_id: Option<RunId>,
    /// What started it.
    pub trigger: String,
    /// How many times a worker has claimed it.
    pub executions: u32,
    /// Creation time (unix ms).
    pub created_at_ms: i64,
    /// Last change (unix ms).
    pub updated_at_ms: i64,
    /// When it ended (unix ms).
    pub finished_at_ms: Option<i64>,
}

impl From<&RunRecord> for RunSummary {
    fn from(run: &RunRecord) -> Self {
        RunSummary {
            run_id: run.run_id,
            workflow: run.workflow.clone(),
            status: run.status,
            idempotency_key: run.idempotency_key.clone(),
            parent_run_id: run.parent_run_id,
            trigger: run.trigger.clone(),
            executions: run.executions,
            created_at_ms: run.created_at_ms,
            updated_at_ms: run.updated_at_ms,
            finished_at_ms: run.finished_at_ms,
        }
    }
}

/// A claimed run and its whole log.
#[derive(Clone, Debug)]
pub struct ClaimedRun {
    /// The run, now `running` under the caller's lease.
    pub run: RunRecord,
    /// Its log, in order.
    pub events: Vec<EventRecord>,
}

/// The result of [`Store::claim_run`](crate::Store::claim_run).
#[derive(Clone, Debug)]
pub enum ClaimOutcome {
    /// The caller holds the lease now.
    Claimed(Box<ClaimedRun>),
    /// Another worker holds a live lease.
    Held {
        /// The holder.
        by: WorkerId,
        /// When its lease lapses unless renewed (unix ms).
        until_ms: i64,
    },
    /// The run has ended.
    Ended(RunStatus),
    /// No such run.
    NotFound,
}

/// Which runs to list.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    /// Only this workflow.
    pub workflow: Option<String>,
    /// Only this status.
    pub status: Option<RunStatus>,
    /// Only children of this run.
    pub parent_run_id: Option<RunId>,
    /// Only runs listed after this one (older, in the listing's newest-first order): the
    /// last run of the previous page, for pagination. None when the run does not exist.
    pub before: Option<RunId>,
    /// At most this many (0 means the default, 50).
    pub limit: usize,
    /// Only runs that have not ended (queued, running, sleeping or waiting).
    pub unended: bool,
    /// Only runs whose history has, or lacks, a patch's marker.
    pub patch: Option<PatchFilter>,
    /// Only runs whose trigger starts with this text (e.g. `schedule:{id}@`: the runs a
    /// schedule started).
    pub trigger_prefix: Option<String>,
    /// Only runs in one of these statuses (empty: any; with `status`, both apply).
    pub statuses: Vec<RunStatus>,
    /// Only runs created at or after this time (unix ms).
    pub created_after_ms: Option<i64>,
    /// Only runs created before this time (unix ms).
    pub created_before_ms: Option<i64>,
    /// Only the runs whose id starts with this text, or whose idempotency key is it.
    pub search: Option<String>,
}

/// Runs whose history has, or lacks, the marker `ctx.patched(id)` records (a `patch` step
/// keyed `cairn.patch:<id>`): which runs still replay the old code path of a patch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatchFilter {
    /// Only runs whose history has the marker of patch `id`.
    With(String),
    /// Only runs whose history lacks the marker of patch `id`.
    Without(String),
}

impl PatchFilter {
    /// Whether the filter keeps the runs that have the marker.
    pub fn wants_marker(&self) -> bool {
        matches!(self, PatchFilter::With(_))
    }

    /// The patch's id.
    pub fn id(&self) -> &str {
        match self {
            PatchFilter::With(id) | PatchFilter::Without(id) => id,
        }
    }

    /// Whether `event` is the marker of this filter's patch.
    pub fn is_marker(&self, event: &Event) -> bool {
        matches!(event, Event::StepCompleted { key, kind: StepKind::Patch, .. }
            if key.as_str() == patch_key(self.id()))
    }

    /// How the marker's JSON (as `serde_json` writes an [`Event`]) begins: a stored log whose
    /// text contains it holds the marker. For backends that keep events as JSON text.
    pub fn marker_json(&self) -> String {
        let key = serde_json::Value::from(patch_key(self.id()));
        format!(r#"{{"type":"step_completed","key":{key},"kind":"patch""#)
    }
}

impl RunFilter {
    /// The effective limit.
    pub fn effective_limit(&self) -> usize {
        if self.limit == 0 {
            50
        } else {
            self.limit.min(10_000)
        }
    }
}

/// A `ready_at` that never comes: a run waiting on a hook without timeout.
pub const NEVER: i64 = i64::MAX;

/// How to park a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Park {
    /// `Sleeping` or `Waiting`.
    pub status: RunStatus,
    /// When to wake it (unix ms), or [`NEVER`].
    pub wake_at_ms: i64,
    /// The `seq` of the last event the parking worker knows of.
    pub known_seq: u64,
    /// The child run the parked run waits for, if any. If it has already ended, the run is
    /// made `queued` and ready at once instead of parked; if it ends later, its end makes the
    /// parked run ready (see [`Store::park_run`](crate::Store::park_run)).
    pub child: Option<RunId>,
}

/// Where a hook is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HookState {
    /// Waiting to be resumed.
    Pending,
    /// Resumed with a payload.
    Resumed,
    /// Its timeout passed first.
    TimedOut,
    /// Its run ended (succeeded, failed or canceled) while it was pending.
    Closed,
}

impl HookState {
    /// The state as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            HookState::Pending => "pending",
            HookState::Resumed => "resumed",
            HookState::TimedOut => "timed_out",
            HookState::Closed => "closed",
        }
    }
}

impl fmt::Display for HookState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HookState::TimedOut => "timed out",
            other => other.as_str(),
        })
    }
}

impl FromStr for HookState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            HookState::Pending,
            HookState::Resumed,
            HookState::TimedOut,
            HookState::Closed,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
        .ok_or_else(|| format!("unknown hook state {s:?}"))
    }
}

/// A hook as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookRecord {
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
    /// When it was created (unix ms).
    pub created_at_ms: i64,
    /// When waiting on it gives up (unix ms), if ever.
    pub timeout_at_ms: Option<i64>,
    /// When it was resumed, timed out or closed (unix ms).
    pub closed_at_ms: Option<i64>,
}

/// Which hooks to list.
#[derive(Clone, Debug, Default)]
pub struct HookFilter {
    /// Only this run's.
    pub run_id: Option<RunId>,
    /// Only in this state.
    pub state: Option<HookState>,
    /// At most this many (0 means the default, 50).
    pub limit: usize,
}

impl HookFilter {
    /// The effective limit.
    pub fn effective_limit(&self) -> usize {
        if self.limit == 0 {
            50
        } else {
            self.limit.min(10_000)
        }
    }
}

#[cfg(test)]
mod tests {
    use cairn_core::{Event, StepKey, StepKind, patch_key};

    use super::PatchFilter;

    #[test]
    fn a_marker_event_is_found_by_its_json_and_no_other_patch_is() {
        for id in ["sms", "with \"quotes\" and ünïcode", "a%_b"] {
            let marker = Event::StepCompleted {
                key: StepKey::custom(patch_key(id)),
                kind: StepKind::Patch,
                slug: cairn_core::PATCH_SLUG.to_owned(),
                output: id.into(),
                call: Some(3),
            };
            let json = serde_json::to_string(&marker).expect("json");
            let filter = PatchFilter::With(id.to_owned());
            assert!(json.starts_with(&filter.marker_json()), "{json}");
            assert!(filter.is_marker(&marker));
            let other = PatchFilter::Without(format!("{id}-2"));
            assert!(!json.contains(&other.marker_json()), "{json}");
            assert!(!other.is_marker(&marker));
        }
    }
}
