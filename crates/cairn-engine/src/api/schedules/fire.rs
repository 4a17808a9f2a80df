//! Firing due schedules: the catch-up policy (which fire times after downtime), then the
//! overlap policy (what to do while a run the schedule started has not ended), then one
//! compare-and-set commit per schedule.
//!
//! **Overlap.** `AllowAll` starts every fire time. `Skip` starts nothing while the
//! schedule's newest unended run is running: the fire times are recorded as missed, naming
//! that run, and the schedule moves on. `BufferOne` keeps the first fire time that came
//! while a run was going *as the schedule's next fire time*: the schedule stays due, each
//! worker pass looks again, and once the run has ended the waiting fire time starts under
//! its own key, the fire times that came meanwhile are recorded as missed, and the schedule
//! moves on to its next fire time after now. That a fire time waited is read back from the
//! store (the newest run of the schedule was created before it and ended after it), so no
//! column keeps the buffer and any worker can release it. With either policy, at most one
//! run starts per commit: of several fire times caught up after downtime, the newest.

use cairn_store::{
    FireOutcome, NewRun, OverlapPolicy, RunRecord, ScheduleFire, ScheduleMiss, ScheduleRecord,
};
use cairn_triggers::{Due, Schedule};
use chrono::{DateTime, Utc};

use super::{schedule_of, utc};
use crate::{
    api::engine::Engine,
    base::{
        error::EngineError,
        trigger::{ScheduleStart, rfc3339, schedule_trigger},
    },
};

/// Most due schedules one call of [`Engine::fire_due_schedules`] fires.
const DUE_PER_CALL: usize = 100;

/// What one fire of a schedule commits: the fire times to start, the ones missed (with
/// their reasons), and the next fire time.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    fire: Vec<DateTime<Utc>>,
    misses: Vec<(DateTime<Utc>, DateTime<Utc>, String)>,
    next: DateTime<Utc>,
}

/// What the runs a schedule started are doing, for its overlap policy.
#[derive(Debug)]
enum Previous {
    /// This run has not ended.
    Running(RunRecord),
    /// None is running; this is the newest, if any.
    Ended(Option<RunRecord>),
}

impl Engine {
    /// Fires every due schedule (up to 100 a call): starts a run for each fire time its
    /// catch-up and overlap policies keep, records the ones they pass over, and moves its
    /// next fire time on, each schedule in one commit, exactly once whichever workers race
    /// for it (see the module docs). The worker loop calls it once per poll interval.
    /// Returns how many runs it created.
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
        let now = utc(now_ms);
        let due = schedule.due(utc(record.next_fire_at_ms), now);
        let plan = match record.spec.overlap {
            OverlapPolicy::AllowAll => Some(plan_all(due)),
            policy => {
                let previous = match self.running_run_of(&record).await? {
                    Some(run) => Previous::Running(run),
                    None => Previous::Ended(self.runs_of(&record, false, 1).await?.pop()),
                };
                plan_overlap(
                    schedule,
                    policy,
                    &previous,
                    record.next_fire_at_ms,
                    now,
                    due,
                )
            }
        };
        let Some(plan) = plan else {
            tracing::debug!(schedule = %record.id, "a fire time waits for the running run");
            return Ok(0);
        };
        let runs = plan
            .fire
            .iter()
            .map(|at| NewRun {
                id: env.new_run_id(),
                workflow: record.spec.workflow.clone(),
                input: record.spec.input.clone(),
                idempotency_key: Some(schedule.occurrence_key(*at)),
                parent_run_id: None,
                forked_from: None,
                trigger: schedule_trigger(
                    &record.id,
                    *at,
                    &record.spec.timezone,
                    schedule.previous_before(*at),
                    ScheduleStart::Fire,
                ),
                owner: Default::default(),
                history: Vec::new(),
                lease: None,
                now_ms,
            })
            .collect();
        let misses = plan
            .misses
            .into_iter()
            .map(|(first, last, reason)| ScheduleMiss {
                first_ms: first.timestamp_millis(),
                last_ms: last.timestamp_millis(),
                reason,
                recorded_at_ms: now_ms,
            })
            .collect();
        let fire = ScheduleFire {
            schedule_id: record.id.clone(),
            expected_next_fire_at_ms: record.next_fire_at_ms,
            runs,
            next_fire_at_ms: plan.next.timestamp_millis(),
            last_fire_at_ms: plan.fire.last().map(DateTime::timestamp_millis),
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
}

/// `AllowAll`: every fire time the catch-up policy keeps.
fn plan_all(due: Due) -> Plan {
    Plan {
        misses: downtime(&due),
        fire: due.fire,
        next: due.next,
    }
}

/// `Skip` or `BufferOne` (see the module docs): `None` while a buffered fire time waits.
fn plan_overlap(
    schedule: &Schedule,
    policy: OverlapPolicy,
    previous: &Previous,
    next_ms: i64,
    now: DateTime<Utc>,
    due: Due,
) -> Option<Plan> {
    let next = utc(next_ms);
    match (policy, previous) {
        (OverlapPolicy::BufferOne, Previous::Running(_)) => None,
        (OverlapPolicy::BufferOne, Previous::Ended(Some(run)))
            if run.created_at_ms <= next_ms
                && run.finished_at_ms.is_some_and(|end| end > next_ms) =>
        {
            // The stored next fire time came while `run` was going: it was buffered.
            let mut misses = Vec::new();
            if let (Some(first), Some(last)) = (
                schedule.next_after(next).filter(|first| *first <= now),
                schedule.previous_before(now + chrono::Duration::milliseconds(1)),
            ) && last > next
            {
                misses.push((
                    first,
                    last,
                    format!(
                        "overlap: the fire time {} was already waiting for run {} to end",
                        rfc3339(next),
                        run.run_id
                    ),
                ));
            }
            Some(Plan {
                fire: vec![next],
                misses,
                next: due.next,
            })
        }
        (OverlapPolicy::Skip, Previous::Running(run)) => {
            let mut misses = downtime(&due);
            if let (Some(first), Some(last)) = (due.fire.first(), due.fire.last()) {
                misses.push((
                    *first,
                    *last,
                    format!("overlap: previous run {} still running", run.run_id),
                ));
            }
            Some(Plan {
                fire: Vec::new(),
                misses,
                next: due.next,
            })
        }
        _ => {
            // Nothing running: one run, for the newest fire time kept.
            let mut misses = downtime(&due);
            let mut fire = due.fire;
            let newest = fire.pop();
            if let (Some(first), Some(last)) = (fire.first(), fire.last()) {
                misses.push((
                    *first,
                    *last,
                    "overlap: one run at a time; only the newest caught-up fire time started"
                        .to_owned(),
                ));
            }
            Some(Plan {
                fire: newest.into_iter().collect(),
                misses,
                next: due.next,
            })
        }
    }
}

/// The span the catch-up policy passed over, if any.
fn downtime(due: &Due) -> Vec<(DateTime<Utc>, DateTime<Utc>, String)> {
    due.missed
        .iter()
        .map(|missed| (missed.first, missed.last, missed.reason.to_owned()))
        .collect()
}
