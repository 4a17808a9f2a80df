//! Starting a schedule's occurrences outside the worker's fires: `schedules trigger` (one
//! run now, the schedule's next fire time untouched) and `schedules backfill` (a run for
//! every fire time of a past range, under the very keys live fires use, so a fire time
//! already started, by a fire or an earlier backfill, starts nothing and answers its run).
//! Neither applies the overlap policy: they are asked for explicitly.

use cairn_store::{RunId, ScheduleRecord};
use cairn_triggers::{Schedule, schedule::MAX_CATCH_UP};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{schedule_of, utc};
use crate::{
    api::engine::{Engine, StartOptions},
    base::{
        error::EngineError,
        trigger::{ScheduleStart, rfc3339, schedule_trigger},
    },
};

/// A run started for a schedule by hand.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStarted {
    /// The run.
    pub run_id: RunId,
    /// `false` when the occurrence's key named an existing run (a trigger repeated within
    /// the same second).
    pub created: bool,
}

/// One fire time of a backfill and its run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackfillRun {
    /// The fire time (unix ms).
    pub scheduled_at_ms: i64,
    /// Its run: new, or the one its key already had.
    pub run_id: RunId,
    /// `false` when the fire time had its run already (a fire or an earlier backfill).
    pub created: bool,
}

impl Engine {
    /// Starts a run of schedule `id` now, outside its fire times: its key is
    /// `sched:{id}:manual:{now, UTC RFC 3339}` (a trigger repeated within a second answers
    /// the same run) and its trigger says it was manual. The schedule's next fire time does
    /// not move, paused or not.
    pub async fn trigger_schedule(&self, id: &str) -> Result<ScheduleStarted, EngineError> {
        let record = self.stored_schedule(id).await?;
        let schedule = schedule_of(&record)?;
        let now = utc(self.runtime.env.clock.now_ms());
        let options = StartOptions {
            idempotency_key: Some(format!("sched:{id}:manual:{}", rfc3339(now))),
            trigger: Some(schedule_trigger(
                id,
                now,
                &record.spec.timezone,
                schedule.previous_before(now),
                ScheduleStart::Manual,
            )),
            ..StartOptions::default()
        };
        let started = self
            .start_json(&record.spec.workflow, record.spec.input.clone(), options)
            .await?;
        Ok(ScheduleStarted {
            run_id: started.run_id,
            created: started.created,
        })
    }

    /// Starts a run for every fire time of schedule `id` in `[from_ms, to_ms]` (unix ms,
    /// both in the range, `to_ms` not after now), oldest first, each under the key a live
    /// fire uses: a fire time that has its run (started by a fire or an earlier backfill)
    /// starts nothing and answers that run, so a backfill repeated is harmless. At most
    /// 1,000 fire times: a wider range is refused before anything starts.
    pub async fn backfill_schedule(
        &self,
        id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<BackfillRun>, EngineError> {
        let record = self.stored_schedule(id).await?;
        let schedule = schedule_of(&record)?;
        let (from, to) = (utc(from_ms), utc(to_ms));
        let now = utc(self.runtime.env.clock.now_ms());
        if from > to {
            return Err(EngineError::BadRequest(format!(
                "the backfill range starts ({}) after it ends ({}); give --from before --to",
                rfc3339(from),
                rfc3339(to)
            )));
        }
        if to > now {
            return Err(EngineError::BadRequest(format!(
                "the backfill range ends ({}) after now ({}); future fire times are started by \
                 the schedule itself: end the range at now or before",
                rfc3339(to),
                rfc3339(now)
            )));
        }
        let times = schedule
            .fire_times_between(from, to, MAX_CATCH_UP)
            .map_err(|error| EngineError::BadRequest(error.to_string()))?;
        let mut runs = Vec::with_capacity(times.len());
        for at in times {
            runs.push(self.start_occurrence(&record, &schedule, at).await?);
        }
        Ok(runs)
    }

    /// Starts (or finds) the run of fire time `at` under its occurrence key.
    async fn start_occurrence(
        &self,
        record: &ScheduleRecord,
        schedule: &Schedule,
        at: DateTime<Utc>,
    ) -> Result<BackfillRun, EngineError> {
        let options = StartOptions {
            idempotency_key: Some(schedule.occurrence_key(at)),
            trigger: Some(schedule_trigger(
                &record.id,
                at,
                &record.spec.timezone,
                schedule.previous_before(at),
                ScheduleStart::Backfill,
            )),
            ..StartOptions::default()
        };
        let started = self
            .start_json(&record.spec.workflow, record.spec.input.clone(), options)
            .await?;
        Ok(BackfillRun {
            scheduled_at_ms: at.timestamp_millis(),
            run_id: started.run_id,
            created: started.created,
        })
    }
}
