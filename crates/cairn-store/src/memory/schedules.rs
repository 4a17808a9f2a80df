//! The memory store's schedule table: rows by id and their missed fire times, kept in the
//! [`State`] beside the runs so that a fire's runs and the schedule's advance happen under
//! one lock, as one commit.

use std::collections::{BTreeMap, VecDeque};

use crate::{
    FireOutcome, MISSES_KEPT, ScheduleFire, ScheduleMiss, SchedulePut, ScheduleRecord, StoreError,
    StoreResult, put_decision,
};

use super::state::State;

/// Schedules by id, with their missed fire times (newest last).
#[derive(Default)]
pub(super) struct Schedules {
    rows: BTreeMap<String, ScheduleRecord>,
    misses: BTreeMap<String, VecDeque<ScheduleMiss>>,
}

impl Schedules {
    pub(super) fn put(&mut self, asked: ScheduleRecord) -> (SchedulePut, ScheduleRecord) {
        let (put, row) = put_decision(self.rows.get(&asked.id), asked);
        if put != SchedulePut::Unchanged {
            self.rows.insert(row.id.clone(), row.clone());
        }
        (put, row)
    }

    pub(super) fn get(&self, id: &str) -> Option<ScheduleRecord> {
        self.rows.get(id).cloned()
    }

    pub(super) fn list(&self) -> Vec<ScheduleRecord> {
        self.rows.values().cloned().collect()
    }

    pub(super) fn set_paused(
        &mut self,
        id: &str,
        paused: bool,
        next_fire_at_ms: i64,
        now_ms: i64,
    ) -> StoreResult<ScheduleRecord> {
        let row = self
            .rows
            .get_mut(id)
            .ok_or_else(|| StoreError::ScheduleNotFound(id.to_owned()))?;
        if !paused {
            row.next_fire_at_ms = next_fire_at_ms;
        }
        row.paused = paused;
        row.updated_at_ms = now_ms;
        Ok(row.clone())
    }

    pub(super) fn due(&self, now_ms: i64, limit: usize) -> Vec<ScheduleRecord> {
        let mut due: Vec<ScheduleRecord> = self
            .rows
            .values()
            .filter(|row| !row.paused && row.next_fire_at_ms <= now_ms)
            .cloned()
            .collect();
        due.sort_by(|a, b| (a.next_fire_at_ms, &a.id).cmp(&(b.next_fire_at_ms, &b.id)));
        due.truncate(limit);
        due
    }

    pub(super) fn delete(&mut self, id: &str) -> bool {
        self.misses.remove(id);
        self.rows.remove(id).is_some()
    }

    pub(super) fn misses(&self, id: &str) -> Vec<ScheduleMiss> {
        self.misses
            .get(id)
            .map(|misses| misses.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

impl State {
    /// Fires a schedule (see `Store::fire_schedule`): the check, then the runs (without
    /// history, as the contract asks, a create cannot be refused, so nothing needs undoing),
    /// then the schedule's advance and its misses.
    pub(crate) fn fire_schedule(&mut self, fire: ScheduleFire) -> StoreResult<FireOutcome> {
        let current = self.schedules.rows.get(&fire.schedule_id);
        if current
            .is_none_or(|row| row.paused || row.next_fire_at_ms != fire.expected_next_fire_at_ms)
        {
            return Ok(FireOutcome::Superseded);
        }
        if fire.runs.iter().any(|run| !run.history.is_empty()) {
            return Err(StoreError::Corrupt(
                "a schedule's runs start without history; this is a bug in the caller".to_owned(),
            ));
        }
        let mut outcomes = Vec::with_capacity(fire.runs.len());
        for run in fire.runs {
            outcomes.push(self.create_run(run)?);
        }
        let ScheduleFire {
            schedule_id,
            next_fire_at_ms,
            last_fire_at_ms,
            misses,
            now_ms,
            ..
        } = fire;
        if let Some(row) = self.schedules.rows.get_mut(&schedule_id) {
            row.next_fire_at_ms = next_fire_at_ms;
            row.last_fire_at_ms = last_fire_at_ms.or(row.last_fire_at_ms);
            row.updated_at_ms = now_ms;
        }
        let kept = self.schedules.misses.entry(schedule_id).or_default();
        kept.extend(misses);
        while kept.len() > MISSES_KEPT {
            kept.pop_front();
        }
        Ok(FireOutcome::Fired(outcomes))
    }
}
