//! Cron schedules from the engine's side: saving the registry's declared schedules when a
//! worker starts, firing the due ones (any worker fires any schedule; [`fire`]), starting an
//! occurrence by hand or backfilling a range ([`start`]), creating one through the API
//! ([`create`]), and the views and controls every interface shows (list, get, pause,
//! resume, delete).
//!
//! **Exactly once.** A worker reads the due schedules, works out with
//! [`Schedule::due`](cairn_triggers::Schedule::due) which fire times to start (the catch-up
//! and overlap policies) and which were missed, and commits them with
//! [`Store::fire_schedule`](cairn_store::Store::fire_schedule): each occurrence's run is
//! inserted under its idempotency key `sched:{id}:{UTC RFC 3339}` in the transaction that
//! moves the schedule's next fire time on, only if that is still the one the worker read.
//! A second worker firing the same fire time is told it was superseded; a crash between
//! read and commit leaves the schedule due, and the next worker fires it. No leader, no
//! in-memory timer: the stored next fire time is the truth. A backfill creates its runs
//! under the same keys, so a fire time already started starts nothing again.

mod create;
mod fire;
mod start;

use std::time::Duration;

use cairn_store::{
    CatchUpPolicy, OverlapPolicy, RunFilter, RunRecord, ScheduleMiss, SchedulePut, ScheduleRecord,
    ScheduleSpec, StoreError,
};
use cairn_triggers::{CatchUp, Overlap, Schedule};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use start::{BackfillRun, ScheduleStarted};

use crate::{
    api::{engine::Engine, view::RunView},
    base::{error::EngineError, trigger::schedule_trigger_prefix},
    registry::DeclaredSchedule,
};

/// How many upcoming fire times [`Engine::get_schedule`] shows.
const UPCOMING: usize = 5;
/// How many of a schedule's newest runs [`Engine::get_schedule`] shows.
const RECENT_RUNS: usize = 10;

/// A schedule with its next fire times, its newest runs and the fire times it missed, for
/// `schedules get`, `GET /schedules/{id}` and the web UI.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleDetail {
    /// The schedule as stored.
    pub schedule: ScheduleRecord,
    /// Its next fire times (unix ms), the stored next one first.
    pub upcoming_ms: Vec<i64>,
    /// The fire time waiting for the schedule's running run to end (overlap policy
    /// `bufferOne`), if one is (unix ms).
    pub buffered_ms: Option<i64>,
    /// The runs it started (fires, backfills, manual triggers), newest first, at most 10.
    pub recent_runs: Vec<RunView>,
    /// Fire times that started no run, and why; newest first.
    pub missed: Vec<ScheduleMiss>,
}

impl Engine {
    /// Saves every schedule declared in the registry ([`Registry::schedule`](crate::Registry::schedule))
    /// by id: a new one from its next fire time after now; an unchanged one stays as stored;
    /// an edited one is replaced, its next fire time the first after now (an edit never fires
    /// at once). Workers call it when they start. Returns what each save did.
    pub async fn declare_schedules(
        &self,
    ) -> Result<Vec<(SchedulePut, ScheduleRecord)>, EngineError> {
        let env = &self.runtime.env;
        let mut saved = Vec::new();
        for declared in self.runtime.registry.declared_schedules() {
            let record = new_record(&declared.schedule, spec_of(declared), env.clock.now_ms());
            saved.push(env.store.put_schedule(record).await?);
        }
        Ok(saved)
    }

    /// Every stored schedule, by id.
    pub async fn list_schedules(&self) -> Result<Vec<ScheduleRecord>, EngineError> {
        Ok(self.runtime.env.store.list_schedules().await?)
    }

    /// One schedule with its next fire times, its buffered fire time, its newest runs and
    /// its missed fire times.
    pub async fn get_schedule(&self, id: &str) -> Result<ScheduleDetail, EngineError> {
        let env = &self.runtime.env;
        let schedule = self.stored_schedule(id).await?;
        let cron = schedule_of(&schedule)?;
        let now_ms = env.clock.now_ms();
        let buffered_ms = (schedule.spec.overlap == OverlapPolicy::BufferOne
            && !schedule.paused
            && schedule.next_fire_at_ms <= now_ms
            && self.running_run_of(&schedule).await?.is_some())
        .then_some(schedule.next_fire_at_ms);
        let mut upcoming_ms = Vec::new();
        let mut at = match buffered_ms {
            // The stored next fire time is waiting: the upcoming ones come after now.
            Some(_) => utc(now_ms),
            None => {
                upcoming_ms.push(schedule.next_fire_at_ms);
                utc(schedule.next_fire_at_ms)
            }
        };
        while upcoming_ms.len() < UPCOMING {
            match cron.next_after(at) {
                Some(next) => {
                    upcoming_ms.push(next.timestamp_millis());
                    at = next;
                }
                None => break,
            }
        }
        let recent = self.runs_of(&schedule, false, RECENT_RUNS).await?;
        let missed = env.store.schedule_misses(id).await?;
        Ok(ScheduleDetail {
            schedule,
            upcoming_ms,
            buffered_ms,
            recent_runs: recent.iter().map(RunView::from).collect(),
            missed,
        })
    }

    /// Pauses a schedule: it fires no more until resumed.
    pub async fn pause_schedule(&self, id: &str) -> Result<ScheduleRecord, EngineError> {
        let env = &self.runtime.env;
        let now_ms = env.clock.now_ms();
        Ok(env.store.set_schedule_paused(id, true, 0, now_ms).await?)
    }

    /// Resumes a paused schedule from its next fire time after now: the fire times passed
    /// while it was paused are not caught up (a backfill starts them).
    pub async fn resume_schedule(&self, id: &str) -> Result<ScheduleRecord, EngineError> {
        let env = &self.runtime.env;
        let stored = self.stored_schedule(id).await?;
        let now_ms = env.clock.now_ms();
        let next = next_after(&schedule_of(&stored)?, now_ms);
        Ok(env
            .store
            .set_schedule_paused(id, false, next, now_ms)
            .await?)
    }

    /// Deletes a schedule and its recorded misses; the runs it started stay. A schedule
    /// still declared in a binary's registry comes back when one of its workers starts.
    pub async fn delete_schedule(&self, id: &str) -> Result<(), EngineError> {
        if self.runtime.env.store.delete_schedule(id).await? {
            Ok(())
        } else {
            Err(StoreError::ScheduleNotFound(id.to_owned()).into())
        }
    }

    /// The stored schedule `id`, or the error naming it.
    async fn stored_schedule(&self, id: &str) -> Result<ScheduleRecord, EngineError> {
        Ok(self
            .runtime
            .env
            .store
            .get_schedule(id)
            .await?
            .ok_or_else(|| StoreError::ScheduleNotFound(id.to_owned()))?)
    }

    /// The newest unended run the schedule started, if any: what its overlap policy waits
    /// for.
    async fn running_run_of(
        &self,
        schedule: &ScheduleRecord,
    ) -> Result<Option<RunRecord>, EngineError> {
        Ok(self.runs_of(schedule, true, 1).await?.into_iter().next())
    }

    /// The newest `limit` runs the schedule started (by their trigger), only unended ones
    /// if `unended`.
    async fn runs_of(
        &self,
        schedule: &ScheduleRecord,
        unended: bool,
        limit: usize,
    ) -> Result<Vec<RunRecord>, EngineError> {
        let filter = RunFilter {
            workflow: Some(schedule.spec.workflow.clone()),
            trigger_prefix: Some(schedule_trigger_prefix(&schedule.id)),
            unended,
            limit,
            ..RunFilter::default()
        };
        Ok(self.runtime.env.store.list_runs(&filter).await?)
    }
}

/// The spec a declared schedule stores.
fn spec_of(declared: &DeclaredSchedule) -> ScheduleSpec {
    let schedule = &declared.schedule;
    let catch_up = match schedule.catch_up_policy() {
        CatchUp::Latest => CatchUpPolicy::Latest,
        CatchUp::All { window } => CatchUpPolicy::All {
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
        },
        CatchUp::None => CatchUpPolicy::None,
    };
    let overlap = match schedule.overlap_policy() {
        Overlap::AllowAll => OverlapPolicy::AllowAll,
        Overlap::Skip => OverlapPolicy::Skip,
        Overlap::BufferOne => OverlapPolicy::BufferOne,
    };
    ScheduleSpec {
        workflow: declared.workflow.clone(),
        input: declared.input.clone(),
        expression: schedule.expression().to_owned(),
        timezone: schedule.timezone_name().to_owned(),
        catch_up,
        overlap,
    }
}

/// The record to save for a new schedule at `now_ms`: unpaused, next fire after now.
fn new_record(schedule: &Schedule, spec: ScheduleSpec, now_ms: i64) -> ScheduleRecord {
    ScheduleRecord {
        id: schedule.id().to_owned(),
        spec,
        paused: false,
        next_fire_at_ms: next_after(schedule, now_ms),
        last_fire_at_ms: None,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    }
}

/// The schedule a stored record describes.
fn schedule_of(record: &ScheduleRecord) -> Result<Schedule, EngineError> {
    Ok(schedule_of_spec(&record.id, &record.spec)?)
}

/// The schedule `id` with `spec`, or why the expression, zone or id is not valid.
fn schedule_of_spec(
    id: &str,
    spec: &ScheduleSpec,
) -> Result<Schedule, cairn_triggers::ScheduleError> {
    let catch_up = match spec.catch_up {
        CatchUpPolicy::Latest => CatchUp::Latest,
        CatchUpPolicy::All { window_ms } => CatchUp::All {
            window: Duration::from_millis(window_ms),
        },
        CatchUpPolicy::None => CatchUp::None,
    };
    let overlap = match spec.overlap {
        OverlapPolicy::AllowAll => Overlap::AllowAll,
        OverlapPolicy::Skip => Overlap::Skip,
        OverlapPolicy::BufferOne => Overlap::BufferOne,
    };
    Ok(Schedule::cron(id, &spec.expression)?
        .timezone(&spec.timezone)?
        .catch_up(catch_up)
        .overlap(overlap))
}

/// The first fire time of `schedule` strictly after `now_ms` (unix ms), `i64::MAX` if none.
fn next_after(schedule: &Schedule, now_ms: i64) -> i64 {
    schedule
        .next_after(utc(now_ms))
        .map_or(i64::MAX, |next| next.timestamp_millis())
}

/// Unix milliseconds as a UTC time (the latest one representable past its range).
fn utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MAX_UTC)
}
