//! Cron schedules from the engine's side: saving the registry's declared schedules when a
//! worker starts, firing the due ones (any worker fires any schedule), and the views and
//! controls the CLI shows (list, get, pause, resume).
//!
//! **Exactly once.** A worker reads the due schedules, works out with
//! [`Schedule::due`](cairn_triggers::Schedule::due) which fire times to start (the catch-up
//! policy) and which were missed, and commits them with
//! [`Store::fire_schedule`](cairn_store::Store::fire_schedule): each occurrence's run is
//! inserted under its idempotency key `sched:{id}:{UTC RFC 3339}` in the transaction that
//! moves the schedule's next fire time on, only if that is still the one the worker read.
//! A second worker firing the same fire time is told it was superseded; a crash between
//! read and commit leaves the schedule due, and the next worker fires it. No leader, no
//! in-memory timer: the stored next fire time is the truth.

use std::time::Duration;

use cairn_store::{
    CatchUpPolicy, FireOutcome, NewRun, OverlapPolicy, ScheduleFire, ScheduleMiss, SchedulePut,
    ScheduleRecord, ScheduleSpec, StoreError,
};
use cairn_triggers::{CatchUp, Overlap, Schedule};
use chrono::{DateTime, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::{api::engine::Engine, base::error::EngineError, registry::DeclaredSchedule};

/// Most due schedules one call of [`Engine::fire_due_schedules`] fires.
const DUE_PER_CALL: usize = 100;
/// How many upcoming fire times [`Engine::get_schedule`] shows.
const UPCOMING: usize = 5;

/// A schedule with its next fire times and the fire times it missed, for `schedules get`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleDetail {
    /// The schedule as stored.
    pub schedule: ScheduleRecord,
    /// Its next fire times (unix ms), the stored next one first.
    pub upcoming_ms: Vec<i64>,
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
            let record = declared_record(declared, env.clock.now_ms());
            saved.push(env.store.put_schedule(record).await?);
        }
        Ok(saved)
    }

    /// Fires every due schedule (up to 100 a call): starts a run for each fire time its
    /// catch-up policy keeps, records the ones it passes over, and moves its next fire time
    /// on, each schedule in one commit, exactly once whichever workers race for it (see the
    /// module docs). The worker loop calls it once per poll interval. Returns how many runs
    /// it created.
    pub async fn fire_due_schedules(&self) -> Result<usize, EngineError> {
        let env = &self.runtime.env;
        let now_ms = env.clock.now_ms();
        let mut created = 0;
        for record in env.store.due_schedules(now_ms, DUE_PER_CALL).await? {
            let schedule = match schedule_of(&record) {
                Ok(schedule) => schedule,
                Err(error) => {
                    tracing::warn!(schedule = %record.id, %error, "a stored schedule cannot be read; it is not fired");
                    continue;
                }
            };
            created += self.fire(&schedule, record, now_ms).await?;
        }
        if created > 0 {
            self.runtime.new_work.notify_waiters();
        }
        Ok(created)
    }

    /// Fires one due schedule (see [`fire_due_schedules`](Self::fire_due_schedules)).
    async fn fire(
        &self,
        schedule: &Schedule,
        record: ScheduleRecord,
        now_ms: i64,
    ) -> Result<usize, EngineError> {
        let env = &self.runtime.env;
        let due = schedule.due(utc(record.next_fire_at_ms), utc(now_ms));
        let runs = due
            .fire
            .iter()
            .map(|at| NewRun {
                id: env.new_run_id(),
                workflow: record.spec.workflow.clone(),
                input: record.spec.input.clone(),
                idempotency_key: Some(schedule.occurrence_key(*at)),
                parent_run_id: None,
                forked_from: None,
                trigger: format!(
                    "schedule:{}@{}",
                    record.id,
                    at.to_rfc3339_opts(SecondsFormat::Secs, true)
                ),
                owner: Default::default(),
                history: Vec::new(),
                lease: None,
                now_ms,
            })
            .collect();
        let misses = due
            .missed
            .iter()
            .map(|missed| ScheduleMiss {
                first_ms: missed.first.timestamp_millis(),
                last_ms: missed.last.timestamp_millis(),
                reason: missed.reason.to_owned(),
                recorded_at_ms: now_ms,
            })
            .collect();
        let fire = ScheduleFire {
            schedule_id: record.id.clone(),
            expected_next_fire_at_ms: record.next_fire_at_ms,
            runs,
            next_fire_at_ms: due.next.timestamp_millis(),
            last_fire_at_ms: due.fire.last().map(DateTime::timestamp_millis),
            misses,
            now_ms,
        };
        Ok(match env.store.fire_schedule(fire).await? {
            FireOutcome::Fired(outcomes) => {
                let created = outcomes.iter().filter(|outcome| outcome.created).count();
                tracing::info!(schedule = %record.id, created, "schedule fired");
                created
            }
            FireOutcome::Superseded => 0,
        })
    }

    /// Every stored schedule, by id.
    pub async fn list_schedules(&self) -> Result<Vec<ScheduleRecord>, EngineError> {
        Ok(self.runtime.env.store.list_schedules().await?)
    }

    /// One schedule with its next fire times and its missed ones.
    pub async fn get_schedule(&self, id: &str) -> Result<ScheduleDetail, EngineError> {
        let store = &self.runtime.env.store;
        let schedule = store
            .get_schedule(id)
            .await?
            .ok_or_else(|| StoreError::ScheduleNotFound(id.to_owned()))?;
        let cron = schedule_of(&schedule)?;
        let mut upcoming_ms = vec![schedule.next_fire_at_ms];
        let mut at = utc(schedule.next_fire_at_ms);
        while upcoming_ms.len() < UPCOMING {
            match cron.next_after(at) {
                Some(next) => {
                    upcoming_ms.push(next.timestamp_millis());
                    at = next;
                }
                None => break,
            }
        }
        let missed = store.schedule_misses(id).await?;
        Ok(ScheduleDetail {
            schedule,
            upcoming_ms,
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
    /// while it was paused are not caught up.
    pub async fn resume_schedule(&self, id: &str) -> Result<ScheduleRecord, EngineError> {
        let env = &self.runtime.env;
        let stored = env
            .store
            .get_schedule(id)
            .await?
            .ok_or_else(|| StoreError::ScheduleNotFound(id.to_owned()))?;
        let now_ms = env.clock.now_ms();
        let next = next_after(&schedule_of(&stored)?, now_ms);
        Ok(env
            .store
            .set_schedule_paused(id, false, next, now_ms)
            .await?)
    }
}

/// The record to save for a declared schedule at `now_ms`.
fn declared_record(declared: &DeclaredSchedule, now_ms: i64) -> ScheduleRecord {
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
    ScheduleRecord {
        id: schedule.id().to_owned(),
        spec: ScheduleSpec {
            workflow: declared.workflow.clone(),
            input: declared.input.clone(),
            expression: schedule.expression().to_owned(),
            timezone: schedule.timezone_name().to_owned(),
            catch_up,
            overlap,
        },
        paused: false,
        next_fire_at_ms: next_after(schedule, now_ms),
        last_fire_at_ms: None,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    }
}

/// The schedule a stored record describes.
fn schedule_of(record: &ScheduleRecord) -> Result<Schedule, EngineError> {
    let spec = &record.spec;
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
    Ok(Schedule::cron(&record.id, &spec.expression)?
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
