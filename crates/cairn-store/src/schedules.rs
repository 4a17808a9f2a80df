//! Schedule rows as a store keeps them: the spec (workflow, input, cron expression, time
//! zone, policies, as plain data: the store knows no cron), the paused flag and the next
//! fire time, plus the fire commit's types and the missed fire times kept with a reason.
//!
//! **Exactly once.** [`Store::fire_schedule`](crate::Store::fire_schedule) creates an
//! occurrence's runs (each under its idempotency key, an existing key being no error and no
//! new run) and advances the schedule in one transaction, only if the schedule's next fire
//! time is still the one the caller read: two workers that read the same due schedule
//! cannot both advance it, and the unique index on keys decides any other race.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{CreateOutcome, NewRun};

/// What a schedule starts and when: compared whole by
/// [`Store::put_schedule`](crate::Store::put_schedule) to tell an edit from a repeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    /// The workflow it starts.
    pub workflow: String,
    /// The input each run starts with.
    pub input: Value,
    /// The cron expression (5 fields, or 6 with seconds first).
    pub expression: String,
    /// The IANA time zone the expression is read in.
    pub timezone: String,
    /// What to do about fire times missed while no worker ran.
    pub catch_up: CatchUpPolicy,
    /// What to do when a fire time comes while the previous run has not ended.
    pub overlap: OverlapPolicy,
}

/// A catch-up policy as stored (see `cairn_triggers::CatchUp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum CatchUpPolicy {
    /// One run, for the newest missed fire time of the last 24 hours.
    Latest,
    /// A run for every missed fire time within the window.
    #[serde(rename_all = "camelCase")]
    All {
        /// How far back to catch up, in milliseconds.
        window_ms: u64,
    },
    /// No catch-up.
    None,
}

impl std::fmt::Display for CatchUpPolicy {
    /// `latest`, `all within N s` or `none`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatchUpPolicy::Latest => f.write_str("latest"),
            CatchUpPolicy::All { window_ms } => write!(f, "all within {} s", window_ms / 1_000),
            CatchUpPolicy::None => f.write_str("none"),
        }
    }
}

/// An overlap policy as stored (see `cairn_triggers::Overlap`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OverlapPolicy {
    /// Start every occurrence.
    AllowAll,
    /// Skip an occurrence while the previous run has not ended.
    Skip,
    /// Keep one occurrence waiting until the previous run ends.
    BufferOne,
}

impl std::fmt::Display for OverlapPolicy {
    /// `allow all`, `skip` or `buffer one`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OverlapPolicy::AllowAll => "allow all",
            OverlapPolicy::Skip => "skip",
            OverlapPolicy::BufferOne => "buffer one",
        })
    }
}

/// A stored schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleRecord {
    /// Its id (the dedup key of declarations).
    pub id: String,
    /// What it starts and when.
    pub spec: ScheduleSpec,
    /// Whether it is paused (a paused schedule is never due).
    pub paused: bool,
    /// The next fire time (unix ms): due once it is not after now.
    pub next_fire_at_ms: i64,
    /// The newest fire time a run was started for, if any.
    pub last_fire_at_ms: Option<i64>,
    /// When it was first saved (unix ms).
    pub created_at_ms: i64,
    /// When its spec, pause flag or fire times last changed (unix ms).
    pub updated_at_ms: i64,
}

impl ScheduleRecord {
    /// `paused` or `active`.
    pub fn state(&self) -> &'static str {
        if self.paused { "paused" } else { "active" }
    }
}

/// What [`Store::put_schedule`](crate::Store::put_schedule) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SchedulePut {
    /// No schedule had the id: it was inserted.
    Created,
    /// The stored spec is the same: nothing was written.
    Unchanged,
    /// The spec changed: it was replaced and the next fire time set to the one given.
    Updated,
}

/// Fire times of a schedule that started no run, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleMiss {
    /// The oldest of them (unix ms).
    pub first_ms: i64,
    /// The newest of them (unix ms).
    pub last_ms: i64,
    /// Why they were not fired.
    pub reason: String,
    /// When this was recorded (unix ms).
    pub recorded_at_ms: i64,
}

/// One fire of a schedule, for [`Store::fire_schedule`](crate::Store::fire_schedule).
#[derive(Clone, Debug)]
pub struct ScheduleFire {
    /// The schedule.
    pub schedule_id: String,
    /// The next fire time the caller read: the fire commits only if it is still stored
    /// (and the schedule is not paused).
    pub expected_next_fire_at_ms: i64,
    /// The runs to create, each with its occurrence's idempotency key and no history.
    pub runs: Vec<NewRun>,
    /// The schedule's new next fire time.
    pub next_fire_at_ms: i64,
    /// The newest fire time started, if `runs` is not empty.
    pub last_fire_at_ms: Option<i64>,
    /// Fire times passed over, recorded in the same commit.
    pub misses: Vec<ScheduleMiss>,
    /// The time of the commit (unix ms).
    pub now_ms: i64,
}

/// What [`Store::fire_schedule`](crate::Store::fire_schedule) did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FireOutcome {
    /// The schedule advanced; one outcome per run asked for, in order: the new run, or the
    /// run that already had its key (`created: false`).
    Fired(Vec<CreateOutcome>),
    /// The schedule's next fire time was no longer the one read (another worker fired it,
    /// it was edited or resumed), it was paused, or it is gone: nothing was written.
    Superseded,
}

/// Most missed spans kept per schedule; older ones are dropped as new ones are recorded.
pub const MISSES_KEPT: usize = 100;

/// What [`Store::put_schedule`](crate::Store::put_schedule) does, every backend alike: given
/// the stored row (if any) and the one asked for, what it does and the row as stored after
/// (to write, unless [`SchedulePut::Unchanged`]).
pub fn put_decision(
    stored: Option<&ScheduleRecord>,
    asked: ScheduleRecord,
) -> (SchedulePut, ScheduleRecord) {
    match stored {
        None => (SchedulePut::Created, asked),
        Some(stored) if stored.spec == asked.spec => (SchedulePut::Unchanged, stored.clone()),
        Some(stored) => (
            SchedulePut::Updated,
            ScheduleRecord {
                paused: stored.paused,
                last_fire_at_ms: stored.last_fire_at_ms,
                created_at_ms: stored.created_at_ms,
                ..asked
            },
        ),
    }
}
